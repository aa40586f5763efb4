package etcdstate

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// etcdVersion is the lab build the tests run: lab/bin/<etcdVersion>/etcd.
const etcdVersion = "v3.6.16"

// etcdBinary finds lab/bin/v3.6.16/etcd above the package dir; absent, it
// skips the test, or fails it under CI=true.
func etcdBinary(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	bin := filepath.Join(dir, "lab", "bin", etcdVersion, "etcd")
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("no etcd binary at %s; hint: make etcd-bins", bin)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// freePort is a 127.0.0.1 port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// etcdProc is a real one-member etcd on 127.0.0.1, its data in a temp dir.
type etcdProc struct {
	t        testing.TB
	bin      string
	dataDir  string
	endpoint string // host:port of the client URL
	scheme   string
	args     []string
	tls      *tls.Config // for the readiness probe of an https member
	log      string

	cmd  *exec.Cmd
	done chan struct{}
}

// etcdOpts: TLS files make the client URL https (with client certificate
// auth when clientCA is set).
type etcdOpts struct {
	cert, key, clientCA string
	probeTLS            *tls.Config
}

// startEtcd starts a member and stops it when the test ends. It returns
// once the member reports itself healthy.
func startEtcd(t testing.TB, o etcdOpts) *etcdProc {
	t.Helper()
	bin := etcdBinary(t)
	dir := t.TempDir()
	p := &etcdProc{t: t, bin: bin, dataDir: filepath.Join(dir, "data"), log: filepath.Join(dir, "etcd.log"),
		endpoint: fmt.Sprintf("127.0.0.1:%d", freePort(t)), scheme: "http", tls: o.probeTLS}
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	if o.cert != "" {
		p.scheme = "https"
	}
	client := p.scheme + "://" + p.endpoint
	p.args = []string{
		"--name", "store", "--data-dir", p.dataDir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "store=" + peer, "--initial-cluster-state", "new",
		// A member that becomes leader fast, and short lease TTLs.
		"--heartbeat-interval", "50", "--election-timeout", "250",
		"--log-level", "warn",
	}
	if o.cert != "" {
		p.args = append(p.args, "--cert-file", o.cert, "--key-file", o.key)
		if o.clientCA != "" {
			p.args = append(p.args, "--trusted-ca-file", o.clientCA, "--client-cert-auth")
		}
	}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *etcdProc) start() {
	t := p.t
	t.Helper()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", p.bin, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(p.done)
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: p.tls}}
	var last string
	// Readiness wait, bounded; not an assertion on time.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-p.done:
			t.Fatalf("etcd exited at start: %v\nlog:\n%s", cmd.ProcessState, p.readLog())
		default:
		}
		resp, err := hc.Get(p.scheme + "://" + p.endpoint + "/health")
		if err != nil {
			last = err.Error()
			continue
		}
		var h struct{ Health string }
		_ = json.NewDecoder(resp.Body).Decode(&h)
		_ = resp.Body.Close()
		if h.Health == "true" {
			return
		}
		last = "health " + h.Health
	}
	t.Fatalf("etcd on %s never healthy (%s)\nlog:\n%s", p.endpoint, last, p.readLog())
}

func (p *etcdProc) readLog() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// kill SIGKILLs the member (no clean shutdown) and waits for it.
func (p *etcdProc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// restart starts the member again on the same data dir and ports.
func (p *etcdProc) restart() {
	p.t.Helper()
	p.kill()
	p.start()
}

func (p *etcdProc) stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// open opens a store on p with the test's defaults (a 2 s lock TTL) and
// closes it when the test ends.
func open(t testing.TB, p *etcdProc, cfg Config) *Store {
	t.Helper()
	cfg.Endpoints = []string{p.endpoint}
	if cfg.LockTTL == 0 {
		cfg.LockTTL = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v\netcd log:\n%s", err, p.readLog())
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func contains(t testing.TB, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not contain %q", err, w)
		}
	}
}
