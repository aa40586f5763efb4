// Package weedtest starts a real SeaweedFS S3 server for a test: in a
// temp dir, on 127.0.0.1, with TLS from a CA it makes (or files it is
// given) and a static identity.  The binary is the lab's (`make s3-bins`
// builds lab/bin/seaweedfs/<version>/weed); ETCD_RESCUE_WEED names
// another one.
package weedtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/internal/weedserver"
)

// Region is the region a Server's endpoint is given (weed accepts any).
const Region = "us-east-1"

// readyTimeout is how long Start waits for the S3 API and the buckets.
const readyTimeout = 90 * time.Second

// Options are what a test wants of its server; the zero value is a TLS
// server with a CA Start makes, fresh keys and no bucket.
type Options struct {
	// Plain serves http:// (no TLS).
	Plain bool
	// CAFile, CertFile and KeyFile: the CA and the server's certificate
	// (for 127.0.0.1) and key; all empty, Start makes them.
	CAFile, CertFile, KeyFile string
	// AccessKey and SecretKey of the one identity; empty, Start makes them.
	AccessKey, SecretKey string
	// Buckets are created before Start returns.
	Buckets []string
}

// Server is a running weed and how to reach it.
type Server struct {
	Endpoint  string // https://127.0.0.1:PORT (http:// with Options.Plain)
	Region    string
	CAFile    string // empty with Options.Plain
	AccessKey string
	SecretKey string
	Dir       string // the temp dir: data/, weed.log, s3.json, the PKI Start made
	LogFile   string
	Ports     weedserver.Ports
}

// LogTail is the last n lines of weed's output.
func (s *Server) LogTail(n int) string {
	b, _ := os.ReadFile(s.LogFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Bin returns the weed binary: ETCD_RESCUE_WEED, else the lab's
// (lab/bin/seaweedfs/weed or lab/bin/seaweedfs/*/weed of the module this
// test runs in).  Without one it skips the test, with the hint `make
// s3-bins`; under CI=true it fails it.
func Bin(t testing.TB) string {
	t.Helper()
	cands := []string{os.Getenv("ETCD_RESCUE_WEED")}
	if root := moduleRoot(); root != "" {
		sw := filepath.Join(root, "lab", "bin", "seaweedfs")
		cands = append(cands, filepath.Join(sw, "weed"))
		if m, _ := filepath.Glob(filepath.Join(sw, "*", "weed")); len(m) > 0 {
			cands = append(cands, m...)
		}
	}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			abs, _ := filepath.Abs(c)
			return abs
		}
	}
	msg := "no SeaweedFS binary (lab/bin/seaweedfs/weed)\nhint: make s3-bins builds it (or set ETCD_RESCUE_WEED to a weed binary)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// moduleRoot is the nearest directory above the working directory (a
// test's is its package's) that has a go.mod.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			return ""
		}
		dir = up
	}
}

// StartT starts a server for t (skipped under -short: it is no unit
// test) and stops it when t ends; when t failed, the end of weed's log
// goes to t's log first.
func StartT(t testing.TB, o Options) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a SeaweedFS server")
	}
	s, stop, err := Start(Bin(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("weed log (last lines):\n%s", s.LogTail(30))
		}
		stop()
	})
	return s
}

// Start starts bin as a server in a new temp dir, waits until its S3 API
// answers a signed request and creates o.Buckets.  stop (SIGTERM, SIGKILL
// after 10 s) ends weed and removes the dir; on an error Start has
// stopped it already.
func Start(bin string, o Options) (_ *Server, stop func(), err error) {
	dir, err := os.MkdirTemp("", "weedtest-")
	if err != nil {
		return nil, nil, err
	}
	// cleanup undoes what is done so far when Start fails
	cleanup := func() { os.RemoveAll(dir) }
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	s := &Server{Region: Region, Dir: dir, LogFile: filepath.Join(dir, "weed.log"), CAFile: o.CAFile,
		AccessKey: o.AccessKey, SecretKey: o.SecretKey}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, nil, err
	}
	cfg := weedserver.Config{Dir: dir, DataDir: data, IdentitiesFile: filepath.Join(dir, "s3.json")}
	if !o.Plain {
		cfg.CertFile, cfg.KeyFile = o.CertFile, o.KeyFile
		if o.CAFile == "" && o.CertFile == "" && o.KeyFile == "" {
			if s.CAFile, cfg.CertFile, cfg.KeyFile, err = writePKI(dir); err != nil {
				return nil, nil, err
			}
		}
		if s.CAFile == "" || cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, nil, errors.New("weedtest: give all of CAFile, CertFile and KeyFile, or none")
		}
	}
	if s.AccessKey == "" {
		s.AccessKey = "AKWEEDTEST" + strings.ToUpper(randHex(5))
	}
	if s.SecretKey == "" {
		s.SecretKey = "weedtest-secret-" + randHex(12)
	}
	ids, err := weedserver.Identities("test", s.AccessKey, s.SecretKey)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(cfg.IdentitiesFile, ids, 0o600); err != nil {
		return nil, nil, err
	}
	if cfg.Ports, err = weedserver.NewPorts(); err != nil {
		return nil, nil, err
	}
	s.Ports = cfg.Ports
	scheme := "https"
	if o.Plain {
		scheme = "http"
	}
	s.Endpoint = fmt.Sprintf("%s://127.0.0.1:%d", scheme, cfg.Ports.S3())

	logf, err := os.Create(s.LogFile)
	if err != nil {
		return nil, nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, weedserver.Args(cfg)...)
	cmd.Dir, cmd.Env = dir, weedserver.Env(dir, "")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	cleanup = func() {
		// weed and nothing else: the process group it leads
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		weedserver.RemoveSockets(cfg.Ports)
		os.RemoveAll(dir)
	}

	cli, err := weedserver.Client(s.Endpoint, s.CAFile, s.Region, s.AccessKey, s.SecretKey)
	if err != nil {
		return nil, nil, err
	}
	ctx := context.Background()
	deadline := time.Now().Add(readyTimeout)
	alive := func() bool {
		select {
		case <-exited:
			return false
		default:
			return true
		}
	}
	if _, err := weedserver.WaitAnswers(ctx, cli, deadline, alive); err != nil {
		return nil, nil, fmt.Errorf("%w\n%s", err, s.LogTail(30))
	}
	for _, b := range o.Buckets {
		if err := weedserver.MakeBucket(ctx, cli, b, s.Region, deadline); err != nil {
			return nil, nil, fmt.Errorf("%w\n%s", err, s.LogTail(30))
		}
	}
	return s, cleanup, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// writePKI writes ca.crt, tls.crt and tls.key (for 127.0.0.1, ::1 and
// localhost) into dir.
func writePKI(dir string) (caFile, certFile, keyFile string, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weedtest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", "", "", err
	}
	crt, key, err := pki.Issue(&pki.CA{Cert: caCert, Key: caKey}, pki.Request{
		CommonName: "127.0.0.1",
		IPs:        []net.IP{net.ParseIP("127.0.0.1").To4(), net.IPv6loopback},
		DNSNames:   []string{"localhost"},
		Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyType:    pki.ECDSAP256,
		Valid:      24 * time.Hour,
	})
	if err != nil {
		return "", "", "", err
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	for name, b := range map[string][]byte{
		caFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		certFile: crt,
		keyFile:  key,
	} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			return "", "", "", err
		}
	}
	return caFile, certFile, keyFile, nil
}
