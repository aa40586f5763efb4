// Package weedserver is what starting a SeaweedFS S3 server (`weed server
// -s3`: master, volume server, filer and S3 gateway in one process) needs,
// shared by the lab's long-lived store (lab up --s3) and the tests that
// start one of their own (package weedtest): the argument list, the static
// identity config, free ports on 127.0.0.1, a minio-go client, and waiting
// until a signed request answers.  Who starts the process, and how it is
// kept or stopped, is the caller's.
package weedserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// PortFlags are the flags of `weed server` that set the ports it listens
// on, all on 127.0.0.1; s3.port is the S3 API.
var PortFlags = []string{"s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc"}

// Ports are weed's ports by the flag that sets them (PortFlags).
type Ports map[string]int

// S3 is the S3 API's port.
func (p Ports) S3() int { return p["s3.port"] }

// FreePorts returns n distinct ports free on 127.0.0.1 at the time.
// Another process may take one before they are used: the lab starts weed
// again on other ports when that happens.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// NewPorts picks a free port (FreePorts) for each of PortFlags.
func NewPorts() (Ports, error) {
	ports, err := FreePorts(len(PortFlags))
	if err != nil {
		return nil, err
	}
	p := Ports{}
	for i, name := range PortFlags {
		p[name] = ports[i]
	}
	return p, nil
}

// RemoveSockets removes the unix sockets weed puts in /tmp for its gRPC
// ports (it leaves them behind when it is killed).
func RemoveSockets(p Ports) {
	for _, svc := range []string{"master", "volume", "filer", "s3"} {
		if n := p[svc+".port.grpc"]; n != 0 {
			_ = os.Remove(fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", svc, n))
		}
	}
}

// Defaults of Config: small volumes keep the server's memory small.
const (
	DefaultVolumeSizeMB = 256
	DefaultVolumeMax    = 16
)

// Config is one `weed server -s3`.
type Config struct {
	// Dir is weed's config dir (-config_dir) and where its own unix
	// sockets go; the caller runs weed in it.
	Dir string
	// DataDir holds the master's, volume server's and filer's data (-dir).
	DataDir string
	Ports   Ports
	// CertFile and KeyFile serve the S3 API over TLS; both empty, plain
	// http.
	CertFile, KeyFile string
	// IdentitiesFile is the static identity config (-s3.config), as
	// Identities writes it.
	IdentitiesFile string
	// VolumeSizeMB (-master.volumeSizeLimitMB) and VolumeMax
	// (-volume.max); 0 is the default.
	VolumeSizeMB, VolumeMax int
}

// Args is the argument list of weed for c.
func Args(c Config) []string {
	size, max := c.VolumeSizeMB, c.VolumeMax
	if size == 0 {
		size = DefaultVolumeSizeMB
	}
	if max == 0 {
		max = DefaultVolumeMax
	}
	args := []string{
		"-logtostderr", "-config_dir=" + c.Dir,
		"server",
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-dir=" + c.DataDir,
		"-master.telemetry=false",
		"-master.volumeSizeLimitMB=" + strconv.Itoa(size),
		"-master.defaultReplication=000",
		"-volume.max=" + strconv.Itoa(max),
		"-volume.preStopSeconds=0",
		"-filer.localSocket=" + filepath.Join(c.Dir, "filer.sock"),
		"-s3",
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.iam=false",
	}
	if c.CertFile != "" || c.KeyFile != "" {
		args = append(args, "-s3.cert.file="+c.CertFile, "-s3.key.file="+c.KeyFile)
	}
	args = append(args,
		"-s3.config="+c.IdentitiesFile,
		"-s3.localSocket="+filepath.Join(c.Dir, "s3.sock"),
	)
	for _, name := range PortFlags {
		args = append(args, fmt.Sprintf("-%s=%d", name, c.Ports[name]))
	}
	return args
}

// Env is weed's whole environment: nothing inherited, HOME its dir, and
// with memLimit (e.g. "128MiB") a Go heap goal (GOMEMLIMIT) that makes
// the garbage collector work harder as the heap nears it.
func Env(home, memLimit string) []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home}
	if memLimit != "" {
		env = append(env, "GOMEMLIMIT="+memLimit)
	}
	return env
}

// Identities is weed's static identity config (-s3.config): one identity
// named name with the key pair and every action; anonymous requests are
// refused.
func Identities(name, access, secret string) ([]byte, error) {
	type cred struct {
		AccessKey string `json:"accessKey"`
		SecretKey string `json:"secretKey"`
	}
	type identity struct {
		Name        string   `json:"name"`
		Credentials []cred   `json:"credentials"`
		Actions     []string `json:"actions"`
	}
	return json.MarshalIndent(map[string][]identity{"identities": {{
		Name:        name,
		Credentials: []cred{{access, secret}},
		Actions:     []string{"Admin", "Read", "List", "Tagging", "Write"},
	}}}, "", "  ")
}

// Client is a minio-go client (path-style, signed with the key pair) of
// the S3 API at endpoint (https:// or http://); caFile, for https, is the
// CA it trusts.
func Client(endpoint, caFile, region, access, secret string) (*minio.Client, error) {
	host, secure := strings.CutPrefix(endpoint, "https://")
	if !secure {
		host = strings.TrimPrefix(endpoint, "http://")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if secure {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(access, secret, ""),
		Secure:       secure,
		Transport:    tr,
		Region:       region,
		BucketLookup: minio.BucketLookupPath,
	})
}

// ErrExited: the server exited before it answered.
var ErrExited = errors.New("weed exited before its S3 API answered")

// WaitAnswers waits until the S3 API answers a signed ListBuckets,
// asking every 250 ms; before each try it asks alive whether the process
// still runs (ErrExited when not).  It returns how many tries failed
// before the answer, and the last failure when the deadline passes.
func WaitAnswers(ctx context.Context, cli *minio.Client, deadline time.Time, alive func() bool) (failed int, err error) {
	for {
		if !alive() {
			return failed, ErrExited
		}
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := cli.ListBuckets(rctx)
		cancel()
		if err == nil {
			return failed, nil
		}
		failed++
		if time.Now().After(deadline) {
			return failed, fmt.Errorf("the S3 API at %s does not answer a signed ListBuckets: %w", cli.EndpointURL().Host, err)
		}
		select {
		case <-ctx.Done():
			return failed, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// MakeBucket creates bucket (one that exists already is fine) and checks
// that a signed HeadBucket finds it, trying again every 500 ms until the
// deadline: the filer may take a moment after the S3 API first answers.
func MakeBucket(ctx context.Context, cli *minio.Client, bucket, region string, deadline time.Time) error {
	for {
		bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := cli.MakeBucket(bctx, bucket, minio.MakeBucketOptions{Region: region})
		if err != nil {
			if resp := minio.ToErrorResponse(err); resp.Code == "BucketAlreadyOwnedByYou" || resp.Code == "BucketAlreadyExists" {
				err = nil
			}
		}
		if err == nil {
			var ok bool
			ok, err = cli.BucketExists(bctx, bucket)
			if err == nil && !ok {
				err = fmt.Errorf("bucket %s not found right after it was created", bucket)
			}
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("create bucket %s at %s: %w", bucket, cli.EndpointURL().Host, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
