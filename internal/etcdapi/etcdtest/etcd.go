// Package etcdtest starts real etcd members on 127.0.0.1 for tests, from the
// binaries the lab builds (lab/bin/v3.*/etcd, or $ETCD_RESCUE_ETCD_BIN).
//
// A missing binary skips the test, or fails it when the environment variable CI is
// "true" (hint: make etcd-bins).
package etcdtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// EnvBinary overrides the etcd binary used.
const EnvBinary = "ETCD_RESCUE_ETCD_BIN"

// Binaries returns the etcd binaries to test against, keyed by version directory
// ("v3.5.35"): $ETCD_RESCUE_ETCD_BIN alone when set ("env"), else every
// lab/bin/v3.*/etcd of the repository. None found fails (CI) or skips the test.
func Binaries(t testing.TB) map[string]string {
	t.Helper()
	if b := os.Getenv(EnvBinary); b != "" {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("%s=%s: %v", EnvBinary, b, err)
		}
		return map[string]string{"env": b}
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	found, _ := filepath.Glob(filepath.Join(root, "lab", "bin", "v3.*", "etcd"))
	out := map[string]string{}
	for _, f := range found {
		if fi, err := os.Stat(f); err == nil && fi.Mode()&0o111 != 0 {
			out[filepath.Base(filepath.Dir(f))] = f
		}
	}
	if len(out) == 0 {
		msg := fmt.Sprintf("no etcd binary: neither $%s nor %s/lab/bin/v3.*/etcd\nhint: make etcd-bins", EnvBinary, root)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return out
}

// Binary returns one etcd binary: the newest of [Binaries].
func Binary(t testing.TB) string {
	t.Helper()
	bins := Binaries(t)
	keys := make([]string, 0, len(bins))
	for k := range bins {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return bins[keys[len(keys)-1]]
}

// repoRoot finds the directory holding this module's go.mod, upwards from the
// working directory (a package directory under go test).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/etcd-rescue/etcd-rescue\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("repository root not found above the working directory")
		}
		dir = parent
	}
}

// Member is a running etcd process.
type Member struct {
	Name      string
	DataDir   string
	ClientURL string
	PeerURL   string
	LogFile   string

	bin  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Options describe a member to start.
type Options struct {
	Binary string
	Name   string
	// InitialCluster is "name=peerURL,..."; empty means a new one-member cluster
	// of this member alone.
	InitialCluster string
	// Existing joins an existing cluster (--initial-cluster-state existing).
	Existing bool
	// PeerURL and ClientURL are picked on free 127.0.0.1 ports when empty.
	PeerURL, ClientURL string
	// DataDir defaults to a fresh temporary directory.
	DataDir string
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
}

// FreeURL returns http://127.0.0.1:PORT on a port that was free a moment ago.
func FreeURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// Start starts a member and stops it when the test ends. It returns once the
// client port accepts connections (a joining member may not be healthy yet).
func Start(t testing.TB, o Options) *Member {
	t.Helper()
	if o.Binary == "" {
		o.Binary = Binary(t)
	}
	if o.Name == "" {
		o.Name = "m1"
	}
	if o.PeerURL == "" {
		o.PeerURL = FreeURL(t)
	}
	if o.ClientURL == "" {
		o.ClientURL = FreeURL(t)
	}
	if o.DataDir == "" {
		o.DataDir = filepath.Join(t.TempDir(), o.Name+".etcd")
	}
	if o.InitialCluster == "" {
		o.InitialCluster = o.Name + "=" + o.PeerURL
	}
	m := &Member{Name: o.Name, DataDir: o.DataDir, ClientURL: o.ClientURL, PeerURL: o.PeerURL,
		LogFile: filepath.Join(filepath.Dir(o.DataDir), o.Name+".log"), bin: o.Binary}
	state := "new"
	if o.Existing {
		state = "existing"
	}
	args := []string{
		"--name", o.Name,
		"--data-dir", o.DataDir,
		"--listen-client-urls", o.ClientURL,
		"--advertise-client-urls", o.ClientURL,
		"--listen-peer-urls", o.PeerURL,
		"--initial-advertise-peer-urls", o.PeerURL,
		"--initial-cluster", o.InitialCluster,
		"--initial-cluster-state", state,
		"--initial-cluster-token", "etcdtest",
		"--log-level", "warn",
	}
	args = append(args, o.ExtraArgs...)
	m.start(t, args)
	return m
}

func (m *Member) start(t testing.TB, args []string) {
	t.Helper()
	logf, err := os.OpenFile(m.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(m.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", m.bin, err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(m.done)
	t.Cleanup(m.Stop)
	addr := strings.TrimPrefix(m.ClientURL, "http://")
	addr = strings.TrimPrefix(addr, "https://")
	// Readiness wait, bounded; not an assertion on time.
	for i := 0; i < 600; i++ {
		select {
		case <-m.done:
			t.Fatalf("etcd %s exited at start: %v\nlog:\n%s", m.Name, cmd.ProcessState, m.Log())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("etcd %s never listened on %s\nlog:\n%s", m.Name, addr, m.Log())
}

// WaitHealthy polls the member's /health endpoint (http client URLs only) until it
// reports healthy.
func (m *Member) WaitHealthy(t testing.TB) {
	t.Helper()
	var last string
	for i := 0; i < 600; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var h struct{ Health string }
			_ = json.NewDecoder(resp.Body).Decode(&h)
			_ = resp.Body.Close()
			if h.Health == "true" {
				cancel()
				return
			}
			last = "health=" + h.Health
		} else {
			last = err.Error()
		}
		cancel()
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("etcd %s never healthy (%s)\nlog:\n%s", m.Name, last, m.Log())
}

// Log returns what the member logged so far.
func (m *Member) Log() string {
	b, _ := os.ReadFile(m.LogFile)
	return string(b)
}

// PID is the member's process id.
func (m *Member) PID() int { return m.cmd.Process.Pid }

// Stop kills the member (SIGTERM, then SIGKILL) and waits for it.
func (m *Member) Stop() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

// Port returns the port of a URL like http://127.0.0.1:2379.
func Port(url string) int {
	i := strings.LastIndexByte(url, ':')
	p, _ := strconv.Atoi(url[i+1:])
	return p
}

// StartCluster starts one member per name as a new cluster on free loopback
// ports and waits until every member is healthy. The members are stopped
// when the test ends.
func StartCluster(t testing.TB, bin string, names ...string) map[string]*Member {
	t.Helper()
	peers, clients := map[string]string{}, map[string]string{}
	var initial []string
	for _, n := range names {
		peers[n], clients[n] = FreeURL(t), FreeURL(t)
		initial = append(initial, n+"="+peers[n])
	}
	ms := map[string]*Member{}
	for _, n := range names {
		ms[n] = Start(t, Options{Binary: bin, Name: n, PeerURL: peers[n], ClientURL: clients[n],
			InitialCluster: strings.Join(initial, ",")})
	}
	for _, n := range names {
		ms[n].WaitHealthy(t)
	}
	return ms
}
