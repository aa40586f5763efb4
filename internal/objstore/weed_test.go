package objstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// The *S3Lab tests run against a real SeaweedFS (weed) that the test
// starts on 127.0.0.1 in a temp dir, with TLS from a CA of its own and a
// static identity. The binary is the lab's (make s3-bins builds
// lab/bin/seaweedfs/<version>/weed); ETCD_RESCUE_WEED names another one.

const testBucket = "etcd-backups"

// weedServer is a running weed and how to reach it.
type weedServer struct {
	cfg Config // endpoint, CA, region, path style, the good keys
	dir string
	cmd *exec.Cmd
	log string
}

// findWeed returns the weed binary, or skips (fails under CI=true).
func findWeed(t *testing.T) string {
	t.Helper()
	cands := []string{os.Getenv("ETCD_RESCUE_WEED"), "../../lab/bin/seaweedfs/weed"}
	if m, _ := filepath.Glob("../../lab/bin/seaweedfs/*/weed"); len(m) > 0 {
		cands = append(cands, m...)
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

// weedSlot is one weed the S3Lab tests of a run share (each test works
// under a prefix of its own); TestMain stops it.
type weedSlot struct {
	once sync.Once
	w    *weedServer
	err  error
	stop func()
}

// shared serves S3 over TLS (as the lab does); plain serves http://.
var shared, plain weedSlot

func TestMain(m *testing.M) {
	code := m.Run()
	for _, s := range []*weedSlot{&shared, &plain} {
		if s.stop != nil {
			s.stop()
		}
	}
	os.Exit(code)
}

// startWeed returns the shared TLS weed with testBucket in it, starting
// it on first use.
func startWeed(t *testing.T) *weedServer { return startSlot(t, &shared, true) }

// startPlainWeed is startWeed for a weed serving plain http://.
func startPlainWeed(t *testing.T) *weedServer { return startSlot(t, &plain, false) }

func startSlot(t *testing.T, s *weedSlot, tls bool) *weedServer {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a SeaweedFS server")
	}
	bin := findWeed(t)
	s.once.Do(func() { s.w, s.stop, s.err = launchWeed(bin, tls) })
	if s.err != nil {
		t.Fatal(s.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(s.w.log)
			t.Logf("weed log (last lines):\n%s", tail(string(b), 30))
		}
	})
	return s.w
}

// launchWeed starts weed (master, volume, filer and S3 gateway, all on
// 127.0.0.1; with tls, TLS from a fresh CA) in a temp dir and creates
// testBucket.
func launchWeed(bin string, tls bool) (w *weedServer, stop func(), err error) {
	dir, err := os.MkdirTemp("", "objstore-weed-")
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			if stop != nil {
				stop()
			} else {
				os.RemoveAll(dir)
			}
		}
	}()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, nil, err
	}
	caFile, err := writeTestPKI(dir)
	if err != nil {
		return nil, nil, err
	}
	access, secret := "AKLABTEST0001", "lab-secret-"+randHex(12)
	ids, _ := json.Marshal(map[string]any{"identities": []map[string]any{{
		"name":        "test",
		"credentials": []map[string]string{{"accessKey": access, "secretKey": secret}},
		"actions":     []string{"Admin", "Read", "List", "Tagging", "Write"},
	}}})
	if err := os.WriteFile(filepath.Join(dir, "s3.json"), ids, 0o600); err != nil {
		return nil, nil, err
	}
	names := []string{"s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc"}
	ports, err := freeTestPorts(len(names))
	if err != nil {
		return nil, nil, err
	}
	args := []string{
		"-logtostderr", "-config_dir=" + dir,
		"server",
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-dir=" + filepath.Join(dir, "data"),
		"-master.telemetry=false",
		"-master.volumeSizeLimitMB=256",
		"-master.defaultReplication=000",
		"-volume.max=16",
		"-volume.preStopSeconds=0",
		"-filer.localSocket=" + filepath.Join(dir, "filer.sock"),
		"-s3",
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.iam=false",
		"-s3.config=" + filepath.Join(dir, "s3.json"),
		"-s3.localSocket=" + filepath.Join(dir, "s3.sock"),
	}
	if tls {
		args = append(args, "-s3.cert.file="+filepath.Join(dir, "tls.crt"), "-s3.key.file="+filepath.Join(dir, "tls.key"))
	}
	for i, n := range names {
		args = append(args, fmt.Sprintf("-%s=%d", n, ports[i]))
	}
	logPath := filepath.Join(dir, "weed.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + dir}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop = func() {
		// weed and nothing else: the process group it leads.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		for _, p := range ports {
			for _, svc := range []string{"master", "volume", "filer", "s3"} {
				os.Remove(fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", svc, p))
			}
		}
		os.RemoveAll(dir)
	}
	scheme := "https"
	if !tls {
		scheme, caFile = "http", ""
	}
	w = &weedServer{dir: dir, cmd: cmd, log: logPath, cfg: Config{
		Endpoint:  fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[0]),
		Region:    "us-east-1",
		PathStyle: true,
		CAFile:    caFile,
		AccessKey: access,
		SecretKey: secret,
	}}
	c, err := New(w.cfg)
	if err != nil {
		return nil, stop, err
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			return nil, stop, fmt.Errorf("weed exited before its S3 API answered:\n%s", tail(string(b), 30))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.mc.MakeBucket(ctx, testBucket, minio.MakeBucketOptions{Region: "us-east-1"})
		cancel()
		if err == nil {
			return w, stop, nil
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			return nil, stop, fmt.Errorf("weed's S3 API did not answer in 90 s: %v\n%s", err, tail(string(b), 30))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func (w *weedServer) client(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freeTestPorts(n int) ([]int, error) {
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
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return fmt.Sprintf("%x", b)
}

// writeTestPKI writes ca.crt, tls.crt and tls.key (for 127.0.0.1) into
// dir and returns the CA file.
func writeTestPKI(dir string) (string, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "objstore test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	for name, b := range map[string]*pem.Block{
		"ca.crt":  {Type: "CERTIFICATE", Bytes: caDER},
		"tls.crt": {Type: "CERTIFICATE", Bytes: der},
		"tls.key": {Type: "PRIVATE KEY", Bytes: kb},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(b), 0o600); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "ca.crt"), nil
}
