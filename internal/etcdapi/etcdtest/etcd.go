// Package etcdtest starts real etcd members on 127.0.0.1 for tests, from the
// binaries the lab builds (lab/bin/v3.*/etcd, or $ETCD_RESCUE_ETCD_BIN).
//
// A missing binary skips the test, or fails it when the environment variable CI is
// "true" (hint: make etcd-bins).
package etcdtest

import (
	"crypto/tls"
	"encoding/json"
	"errors"
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

// VersionBinary returns lab/bin/<version>/etcd of the repository (version
// as "v3.6.16"), for tests that run one version only. Absent, it skips the
// test, or fails it when CI is "true".
func VersionBinary(t testing.TB, version string) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "lab", "bin", version, "etcd")
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("no etcd binary at %s; hint: make etcd-bins", bin)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
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
	args []string
	tls  *tls.Config
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
	// ExtraArgs are appended to the command line (e.g. --cert-file and
	// --key-file for an https ClientURL).
	ExtraArgs []string
	// ProbeTLS is the client TLS configuration WaitHealthy uses on an https
	// ClientURL.
	ProbeTLS *tls.Config
}

// FreeURL returns http://127.0.0.1:PORT on a port that was free a moment ago.
func FreeURL(t testing.TB) string {
	t.Helper()
	u, err := freeURL()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func freeURL() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return "http://" + l.Addr().String(), nil
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
	m := newMember(o)
	t.Cleanup(m.Stop)
	if err := m.launch(); err != nil {
		t.Fatal(err)
	}
	return m
}

// Run starts a member as Start does, for a program rather than a test:
// o.Binary and o.DataDir are required, free ports are picked for empty
// URLs, and the log is written beside the data dir. On success the caller
// stops the member (Stop).
func Run(o Options) (*Member, error) {
	if o.Binary == "" || o.DataDir == "" {
		return nil, errors.New("etcdtest.Run: Options.Binary and Options.DataDir are required")
	}
	if o.Name == "" {
		o.Name = "m1"
	}
	for _, u := range []*string{&o.PeerURL, &o.ClientURL} {
		if *u == "" {
			var err error
			if *u, err = freeURL(); err != nil {
				return nil, err
			}
		}
	}
	if o.InitialCluster == "" {
		o.InitialCluster = o.Name + "=" + o.PeerURL
	}
	m := newMember(o)
	if err := m.launch(); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

// newMember is the member of o, its defaults filled, not started.
func newMember(o Options) *Member {
	m := &Member{Name: o.Name, DataDir: o.DataDir, ClientURL: o.ClientURL, PeerURL: o.PeerURL,
		LogFile: filepath.Join(filepath.Dir(o.DataDir), o.Name+".log"), bin: o.Binary, tls: o.ProbeTLS}
	state := "new"
	if o.Existing {
		state = "existing"
	}
	m.args = []string{
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
	m.args = append(m.args, o.ExtraArgs...)
	return m
}

// launch starts the member's process and returns once its client port
// accepts connections.
func (m *Member) launch() error {
	logf, err := os.OpenFile(m.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(m.bin, m.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %v", m.bin, err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(m.done)
	addr := m.Endpoint()
	// Readiness wait, bounded; not an assertion on time.
	for i := 0; i < 600; i++ {
		select {
		case <-m.done:
			return fmt.Errorf("etcd %s exited at start: %v\nlog:\n%s", m.Name, cmd.ProcessState, m.Log())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd %s never listened on %s\nlog:\n%s", m.Name, addr, m.Log())
}

// Endpoint is the host:port of the member's client URL.
func (m *Member) Endpoint() string {
	return strings.TrimPrefix(strings.TrimPrefix(m.ClientURL, "http://"), "https://")
}

// WaitHealthy polls the member's /health endpoint until it reports
// healthy (an https ClientURL with Options.ProbeTLS).
func (m *Member) WaitHealthy(t testing.TB) {
	t.Helper()
	if err := m.Healthy(time.Minute); err != nil {
		t.Fatal(err)
	}
}

// Healthy polls the member's /health endpoint until it reports healthy,
// for at most timeout.
func (m *Member) Healthy(timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	if m.tls != nil {
		hc.Transport = &http.Transport{TLSClientConfig: m.tls}
	}
	var last string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := hc.Get(m.ClientURL + "/health")
		if err != nil {
			last = err.Error()
			continue
		}
		var h struct{ Health string }
		_ = json.NewDecoder(resp.Body).Decode(&h)
		_ = resp.Body.Close()
		if h.Health == "true" {
			return nil
		}
		last = "health=" + h.Health
	}
	return fmt.Errorf("etcd %s never healthy (%s)\nlog:\n%s", m.Name, last, m.Log())
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

// Kill SIGKILLs the member (no clean shutdown) and waits for it.
func (m *Member) Kill() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.done
	m.cmd = nil
}

// Restart kills the member and starts it again with the same command line
// (data dir, ports, flags); it returns once the client port accepts
// connections.
func (m *Member) Restart(t testing.TB) {
	t.Helper()
	m.Kill()
	if err := m.launch(); err != nil {
		t.Fatal(err)
	}
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
