// Package framework is the harness of the end-to-end and crash tests
// (tests/e2e), in the manner of etcd's tests/framework/e2e: it builds the
// real etcd-rescue binary (go build ./cmd/etcd-rescue) once per top-level
// test, runs it as a subprocess against a lab (package lab) broken the way
// a plan expects, and checks the cluster through the lab and the etcd client
// API, never through etcd-rescue itself. The helpers that need no lab are in
// tests/framework/testutil, which the lab's own tests share.
package framework

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"gopkg.in/yaml.v3"

	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework/testutil"
)

// e2eLabDir is this test process's lab state dir. Only one lab can be up
// on a machine; Up makes a second one wait (WaitBusy). The dir is per
// process so that a test never takes down a lab it did not start: two
// `go test` runs at once (make test and a developer's) each wait for the
// other's lab instead of removing it.
var e2eLabDir = fmt.Sprintf("%s-%d", e2eLabPrefix, os.Getpid())

const e2eLabPrefix = "/var/tmp/etcd-rescue-lab-e2e"

// waitBusy is how long Up waits for another lab (the lab package's tests,
// running in parallel under `go test ./...`) to go down.
const waitBusy = 30 * time.Minute

// NeedE2E skips in -short mode; without root or Linux it skips, or fails
// under CI=true: in CI a missing prerequisite is a failure, never a skip.
func NeedE2E(t *testing.T) {
	t.Helper()
	testutil.Need(t, "e2e", lab.Unavailable())
}

// E2E is what every end-to-end test needs: the built binary and the
// checkout (the CLI runs there, so examples/X.yaml and lab/bin resolve).
type E2E struct {
	// Bin is the etcd-rescue binary built for the test.
	Bin string
	// Repo is the checkout; the CLI runs there.
	Repo string
}

// goTool is the go command: go test puts its own GOROOT/bin first in PATH.
func goTool(t *testing.T) string {
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go tool to build etcd-rescue: %v\nhint: run the tests with go test, which puts go on PATH", err)
	}
	return p
}

// NewE2E builds etcd-rescue (go build ./cmd/etcd-rescue in the checkout)
// into the test's temp dir: once per top-level test, the Go build cache
// makes the later builds cheap.
func NewE2E(t *testing.T) *E2E {
	t.Helper()
	NeedE2E(t)
	repo, err := lab.RepoRoot()
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "etcd-rescue")
	t0 := time.Now()
	cmd := exec.Command(goTool(t), "build", "-o", bin, "./cmd/etcd-rescue")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build etcd-rescue: %v\n%s", err, out)
	}
	t.Logf("built %s in %.1fs", bin, time.Since(t0).Seconds())
	return &E2E{Bin: bin, Repo: repo}
}

// Result of one etcd-rescue invocation.
type Result struct {
	Args   []string
	Code   int
	Stdout string
	Stderr string
	Wall   time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("etcd-rescue %s: exit %d after %.1fs\n--- stdout (tail)\n%s\n--- stderr\n%s",
		strings.Join(r.Args, " "), r.Code, r.Wall.Seconds(), TailLines(r.Stdout, 80), r.Stderr)
}

func TailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// cli runs etcd-rescue to completion, without a terminal.
func (e *E2E) CLI(t *testing.T, args ...string) Result {
	t.Helper()
	p := e.Start(t, args...)
	return p.Wait(t)
}

// Proc is an etcd-rescue process that runs in the background; its stdout
// is read line by line so that a test can act on a progress line at once.
type Proc struct {
	args  []string
	cmd   *exec.Cmd
	start time.Time

	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	hook   func(p *Proc, line string) // called in the reader goroutine, for every stdout line

	readDone chan struct{}
	exited   chan struct{}
	code     int
	wall     time.Duration
}

func (e *E2E) Start(t *testing.T, args ...string) *Proc {
	t.Helper()
	return e.StartHook(t, nil, args...)
}

// startHook starts etcd-rescue with hook watching its stdout from the
// first line on.
func (e *E2E) StartHook(t *testing.T, hook func(*Proc, string), args ...string) *Proc {
	t.Helper()
	return e.StartProc(t, hook, nil, args...)
}

// startProc starts etcd-rescue with args, env added to the environment.
func (e *E2E) StartProc(t *testing.T, hook func(*Proc, string), env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{args: args, readDone: make(chan struct{}), exited: make(chan struct{}), hook: hook}
	p.cmd = exec.Command(e.Bin, args...)
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Dir = e.Repo
	p.cmd.Stdin = nil // /dev/null: no terminal, as in CI
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start etcd-rescue: %v", err)
	}
	// a test that fails half-way must not leave an etcd-rescue running
	// against the lab it tears down
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.exited
		}
	})
	go func() {
		defer close(p.readDone)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stdout.WriteString(line + "\n")
			h := p.hook
			p.mu.Unlock()
			if h != nil {
				h(p, line)
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() {
		<-p.readDone
		err := p.cmd.Wait()
		p.wall = time.Since(p.start)
		p.code = exitStatus(err)
		close(p.exited)
	}()
	return p
}

func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// Signal sends sig to the process (SIGSTOP to freeze it, SIGKILL to crash it).
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Exited is closed once the process has exited and its output is read.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Output is the process's stdout and stderr so far.
func (p *Proc) Output() (string, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String(), p.stderr.String()
}

// SafetyLimit bounds every wait of these tests so that a hang ends in a
// failure with the output so far; it is not a performance assertion.
const SafetyLimit = testutil.SafetyLimit

func (p *Proc) Wait(t *testing.T) Result {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(SafetyLimit):
		_ = p.cmd.Process.Kill()
		<-p.exited
		out, errs := p.Output()
		t.Fatalf("etcd-rescue %s still running after the safety limit of %s; killed\n%s\n%s", strings.Join(p.args, " "), SafetyLimit, TailLines(out, 60), errs)
	}
	out, errs := p.Output()
	return Result{Args: p.args, Code: p.code, Stdout: out, Stderr: errs, Wall: p.wall}
}

// kill9 kills the process with SIGKILL, as a dying laptop would, and
// waits for it to be gone.
func (p *Proc) Kill9(t *testing.T) Result {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("kill -9 %d: %v", p.cmd.Process.Pid, err)
	}
	return p.Wait(t)
}

// RunIDOf finds the run id in apply's "run ID, state in DIR" line.
var runLineRE = regexp.MustCompile(`(?m)^\S+ run (\S+), state in `)

func RunIDOf(stdout string) string {
	if m := runLineRE.FindStringSubmatch(stdout); m != nil {
		return m[1]
	}
	return ""
}

// RunState is the part of `status -o json` (and of state.json) the tests read.
type RunState struct {
	RunID     string            `json:"runId"`
	PlanName  string            `json:"planName"`
	Outcome   string            `json:"outcome"`
	Sessions  int               `json:"sessions"`
	Facts     map[string]string `json:"facts"`
	Steps     []StepState       `json:"steps"`
	Lock      *struct{ Held bool }
	Approvals map[string]any `json:"approvals"`
}

type StepState struct {
	ID    string      `json:"id"`
	Type  string      `json:"type"`
	Hosts []HostState `json:"hosts"`
}

type HostState struct {
	Host     string `json:"host"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	Elapsed  int64  `json:"elapsedMs"`
	Remote   int64  `json:"remoteMs"`
	API      int64  `json:"apiMs"`
	Cmds     int    `json:"commands"`
	Error    string `json:"error"`
	Why      string `json:"why"`
}

func (s *RunState) Find(step, host string) *HostState {
	for i := range s.Steps {
		if s.Steps[i].ID != step {
			continue
		}
		for j := range s.Steps[i].Hosts {
			if s.Steps[i].Hosts[j].Host == host {
				return &s.Steps[i].Hosts[j]
			}
		}
	}
	return nil
}

// notDone lists the step-hosts that are not done, with their status.
func (s *RunState) NotDone() []string {
	var out []string
	for _, st := range s.Steps {
		for _, h := range st.Hosts {
			if h.Status != "done" {
				out = append(out, fmt.Sprintf("%s@%s=%s(%s%s)", st.ID, h.Host, h.Status, h.Error, h.Why))
			}
		}
	}
	return out
}

// statusJSON runs `status RUN -o json` and decodes it.
func (e *E2E) StatusJSON(t *testing.T, stateDir, runID string) *RunState {
	t.Helper()
	r := e.CLI(t, "status", runID, "-o", "json", "--state-dir", stateDir)
	if r.Code != 0 {
		t.Fatalf("status: %s", r)
	}
	var st RunState
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, r.Stdout)
	}
	return &st
}

// ReadState reads runs/<id>/state.json directly (what a crash leaves).
func ReadState(t *testing.T, stateDir, runID string) *RunState {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "runs", runID, "state.json"))
	if err != nil {
		t.Fatalf("read state: %v", err)
	}
	var st RunState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("decode state.json: %v", err)
	}
	return &st
}

// OnlyRun returns the one run id in stateDir (failing if there are more).
func OnlyRun(t *testing.T, stateDir string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(stateDir, "runs"))
	if err != nil {
		t.Fatalf("runs: %v", err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("want exactly one run in %s, have %v", stateDir, names)
	}
	return ents[0].Name()
}

// --- the lab -----------------------------------------------------------

// UpLab brings up a lab for t in e2eLabDir and takes it down when t ends
// (after collecting diagnostics if t failed). E2E_KEEP_LAB=1 keeps a failed
// test's lab up for a look (the next test takes it down).
func UpLab(t *testing.T, o lab.Options) *lab.Lab {
	t.Helper()
	ctx := context.Background()
	downStaleLabs(t)
	o.StateDir = e2eLabDir
	o.Log = testutil.Log{T: t, Prefix: "lab: "}
	o.WaitBusy = waitBusy
	t0 := time.Now()
	l, err := lab.Up(ctx, o)
	var pe *lab.PrereqError
	if errors.As(err, &pe) && os.Getenv("CI") != "true" {
		t.Skipf("e2e: %v; hints: %s (or: make lab-prereqs)", err, strings.Join(pe.Hints(), "; "))
	}
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Logf("lab up: %d member(s), etcd %s, %s mode, in %.1fs", len(l.Members()), l.Version(), l.Mode(), time.Since(t0).Seconds())
	t.Cleanup(func() {
		if t.Failed() {
			labDiagnostics(t, l)
			if os.Getenv("E2E_KEEP_LAB") == "1" {
				t.Logf("E2E_KEEP_LAB=1: lab left up in %s (the next test takes it down; or: etcd-rescue lab down --state-dir %s)", l.StateDir(), l.StateDir())
				return
			}
		}
		l.SetLog(io.Discard)
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// downStaleLabs takes down labs these tests left behind: this process's
// own (kept by E2E_KEEP_LAB), and those of test processes that are gone
// (killed, or ended by the -timeout panic). A lab whose test process still
// runs is never touched.
func downStaleLabs(t *testing.T) {
	t.Helper()
	dirs, _ := filepath.Glob(e2eLabPrefix + "-*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(d, e2eLabPrefix+"-"))
		if err != nil || (pid != os.Getpid() && processAlive(pid)) {
			continue
		}
		if err := lab.DownDir(context.Background(), d, nil); err != nil {
			t.Fatalf("take down the lab left in %s: %v", d, err)
		}
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// labDiagnostics logs the lab's status and the tail of every host's etcd
// journal and env file.
func labDiagnostics(t *testing.T, l *lab.Lab) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Logf("lab status after the failure:\n%s", statusText(l.Status(ctx)))
	for _, h := range l.Hosts() {
		out, err := l.Run(ctx, h.Name, "cat /etc/etcd/etcd.env 2>&1; ls -la /var/lib | grep etcd; systemctl is-active etcd; journalctl -u etcd -n 40 --no-pager -o short-precise 2>&1 | grep -v 'recognized and used environment variable' | cut -c1-400", nil)
		t.Logf("host %s (%s): %v\n%s", h.Name, h.Address, err, out)
	}
}

// HostRun runs a command on a lab host and fails the test on error.
func HostRun(t *testing.T, l *lab.Lab, host, cmd string) string {
	t.Helper()
	return testutil.HostRun(t, l, host, cmd)
}

// ClusterRevision is the store revision through the client API (a
// linearizable read: it needs a leader).
func ClusterRevision(t *testing.T, l *lab.Lab) int64 {
	t.Helper()
	cli, err := l.Client()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("read the cluster revision: %v", err)
	}
	return r.Header.Revision
}

// MemberRevisions is every inventory member's own revision (Status).
func MemberRevisions(t *testing.T, l *lab.Lab) map[string]int64 {
	t.Helper()
	cli, err := l.Client()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	out := map[string]int64{}
	for _, m := range l.Members() {
		_, url, err := l.MemberURLs(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, url)
		cancel()
		if err != nil {
			t.Fatalf("status of %s: %v", m.Name, err)
		}
		out[m.Name] = st.Header.Revision
	}
	return out
}

func PutKey(t *testing.T, l *lab.Lab, key, value string) {
	t.Helper()
	cli, err := l.Client()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// GetKey returns the value of key and whether it exists.
func GetKey(t *testing.T, l *lab.Lab, key string) (string, bool) {
	t.Helper()
	cli, err := l.Client()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(r.Kvs) == 0 {
		return "", false
	}
	return string(r.Kvs[0].Value), true
}

// InventoryWithVars writes a copy of the lab's inventory with extra vars
// (an operator's choice such as where backups go).
func InventoryWithVars(t *testing.T, l *lab.Lab, vars map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(l.InventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	var inv map[string]any
	if err := yaml.Unmarshal(b, &inv); err != nil {
		t.Fatalf("decode the lab inventory: %v", err)
	}
	vs, _ := inv["vars"].(map[string]any)
	if vs == nil {
		vs = map[string]any{}
	}
	for k, v := range vars {
		vs[k] = v
	}
	inv["vars"] = vs
	out, err := yaml.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// DataDirInfo is what a host's data dir (or a moved-aside copy) holds.
type DataDirInfo struct {
	Exists bool // the directory exists
	Member bool // ... and holds member/snap/db (non-empty) and member/wal
	Marker bool // ... and the marker string occurs in member/ (db or WAL)
}

// DataDirs looks at dir on every host of the lab. A marker (a key written
// just before) proves that a moved-aside copy holds the newest data, not
// merely some directory.
func DataDirs(t *testing.T, l *lab.Lab, dir, marker string) map[string]DataDirInfo {
	t.Helper()
	out := map[string]DataDirInfo{}
	for _, h := range l.Hosts() {
		cmd := fmt.Sprintf(`d=%s; [ -e "$d" ] && echo exists; [ -s "$d/member/snap/db" ] && [ -d "$d/member/wal" ] && echo member; `, dir)
		if marker != "" {
			cmd += fmt.Sprintf(`grep -rqaF -- %q "$d/member" 2>/dev/null && echo marker; `, marker)
		}
		s := HostRun(t, l, h.Name, cmd+"true")
		var in DataDirInfo
		for _, f := range strings.Fields(s) {
			switch f {
			case "exists":
				in.Exists = true
			case "member":
				in.Member = true
			case "marker":
				in.Marker = true
			}
		}
		out[h.Name] = in
	}
	return out
}

// CheckAsideDirs checks that on every host where wipe-dir ran in the run
// and found a data dir, that dir was moved aside to
// /var/lib/etcd.rescue-<run>, not deleted, with the member (and the marker)
// it held. before is /var/lib/etcd just before the run.
func CheckAsideDirs(t *testing.T, l *lab.Lab, st *RunState, before map[string]DataDirInfo, marker string) {
	t.Helper()
	aside := lab.DataDir + ".rescue-" + st.RunID
	after := DataDirs(t, l, aside, marker)
	checked := 0
	for _, s := range st.Steps {
		if s.Type != "wipe-dir" {
			continue
		}
		for _, h := range s.Hosts {
			b, ok := before[h.Host]
			if !ok || !b.Exists {
				t.Logf("wipe-dir %s@%s: there was no %s before the run: nothing to move aside", s.ID, h.Host, lab.DataDir)
				continue
			}
			a := after[h.Host]
			switch {
			case !a.Exists:
				t.Errorf("DATA DIR DESTROYED: %s@%s: %s existed before the run (member: %v) but %s does not exist", s.ID, h.Host, lab.DataDir, b.Member, aside)
			case b.Member && !a.Member:
				t.Errorf("DATA DIR DESTROYED: %s@%s: %s held a member before the run, %s holds none", s.ID, h.Host, lab.DataDir, aside)
			case b.Marker && !a.Marker:
				t.Errorf("DATA DIR DESTROYED: %s@%s: %s held the newest data (%q) before the run, %s does not", s.ID, h.Host, lab.DataDir, marker, aside)
			default:
				checked++
				t.Logf("wipe-dir %s@%s: the old data dir is kept as %s (member: %v, newest data: %v)", s.ID, h.Host, aside, a.Member, a.Marker)
			}
		}
	}
	if checked == 0 {
		t.Logf("no moved-aside data dir to check in run %s", st.RunID)
	}
}

// --- snapshots ------------------------------------------------------------

// CheckSnapshotFile checks an etcd snapshot file independently of
// etcd-rescue: its last 32 bytes are the sha256 of the rest (the trailer
// etcd's snapshot API appends), and FILE.sha256 names the sha256 of the
// whole file. It returns the file's sha256.
func CheckSnapshotFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if len(b) <= sha256.Size {
		t.Fatalf("snapshot %s is %d bytes", path, len(b))
	}
	body, trailer := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], trailer) {
		t.Errorf("snapshot %s: the sha256 trailer does not match its content", path)
	}
	whole := fmt.Sprintf("%x", sha256.Sum256(b))
	side, err := os.ReadFile(path + ".sha256")
	if err != nil {
		t.Errorf("snapshot %s: no .sha256 file: %v", path, err)
		return whole
	}
	f := strings.Fields(string(side))
	if len(f) < 1 || f[0] != whole {
		t.Errorf("snapshot %s: %s.sha256 says %q, the file's sha256 is %s", path, filepath.Base(path), strings.TrimSpace(string(side)), whole)
	}
	if len(f) >= 2 && f[1] != filepath.Base(path) {
		t.Errorf("snapshot %s: %s.sha256 names %q", path, filepath.Base(path), f[1])
	}
	return whole
}

// SnapshotStatus runs the lab's etcdutl snapshot status on a local file.
func SnapshotStatus(t *testing.T, l *lab.Lab, path string) (rev int64, keys int64) {
	t.Helper()
	out, err := exec.Command(filepath.Join(l.BinDir(), "etcdutl"), "snapshot", "status", "-w", "json", path).CombinedOutput()
	if err != nil {
		t.Errorf("etcdutl snapshot status %s: %v\n%s", path, err, out)
		return 0, 0
	}
	var st struct {
		Revision  int64 `json:"revision"`
		TotalKeys int64 `json:"totalKey"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Errorf("etcdutl snapshot status: %v: %s", err, out)
	}
	return st.Revision, st.TotalKeys
}

// --- processes in a lab host ------------------------------------------------

// HostPids lists the processes in a lab host's network namespace with their
// command lines (as the host machine's root sees them).
func HostPids(t *testing.T, l *lab.Lab, host string) map[int]string {
	t.Helper()
	h, ok := l.Host(host)
	if !ok {
		t.Fatalf("no lab host %s", host)
	}
	out, err := exec.Command("ip", "netns", "pids", h.Netns()).Output()
	if err != nil {
		t.Fatalf("ip netns pids %s: %v", h.Netns(), err)
	}
	procs := map[int]string{}
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue // gone meanwhile
		}
		procs[pid] = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	}
	return procs
}

// FindHostProcs returns the pids in host whose command line contains s.
func FindHostProcs(t *testing.T, l *lab.Lab, host, s string) []int {
	var pids []int
	for pid, c := range HostPids(t, l, host) {
		if strings.Contains(c, s) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// Poll calls f every interval until it returns true; the safety limit
// ends a wait for something that never happens (no performance claim).
func Poll(t *testing.T, what string, interval time.Duration, f func() bool) {
	t.Helper()
	testutil.Poll(t, what, interval, f)
}

// --- measurements ------------------------------------------------------------

// Measurement is one apply (or resume) of a plan on the lab, for
// docs/measurements.md.
type Measurement struct {
	Test     string
	Plan     string
	Version  string
	Members  int
	Wall     time.Duration // the etcd-rescue process, start to exit
	Sessions int
	Steps    []StepTimes
	Summary  string // the time table apply printed
}

type StepTimes struct {
	ID                              string
	Hosts                           int
	Elapsed, Remote, API, Cmds, Att int64
}

func TimesOf(st *RunState) []StepTimes {
	var out []StepTimes
	for _, s := range st.Steps {
		x := StepTimes{ID: s.ID, Hosts: len(s.Hosts)}
		for _, h := range s.Hosts {
			x.Elapsed += h.Elapsed
			x.Remote += h.Remote
			x.API += h.API
			x.Cmds += int64(h.Cmds)
			x.Att += int64(h.Attempts)
		}
		out = append(out, x)
	}
	return out
}

// SummaryOf cuts the time summary (from "run ID: outcome" on) out of
// apply's stdout.
func SummaryOf(stdout string) string {
	i := strings.LastIndex(stdout, "\nrun ")
	if i < 0 {
		return ""
	}
	return strings.TrimSpace(stdout[i+1:])
}

var measureMu sync.Mutex // serializes appends to E2E_MEASUREMENTS

// Record logs m and, when E2E_MEASUREMENTS names a file, appends it there
// as one JSON line (the figures of docs/measurements.md come from these).
func Record(t *testing.T, m Measurement) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s on etcd %s, %d member(s): wall %.1fs", m.Test, m.Plan, m.Version, m.Members, m.Wall.Seconds())
	for _, s := range m.Steps {
		fmt.Fprintf(&b, "\n  %-16s engine %6dms  ssh %6dms  api %6dms  other %6dms  (%d cmds, %d attempts on %d host(s))",
			s.ID, s.Elapsed, s.Remote, s.API, max(0, s.Elapsed-s.Remote-s.API), s.Cmds, s.Att, s.Hosts)
	}
	t.Log(b.String())
	if p := os.Getenv("E2E_MEASUREMENTS"); p != "" {
		measureMu.Lock()
		defer measureMu.Unlock()
		f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Errorf("E2E_MEASUREMENTS: %v", err)
			return
		}
		defer f.Close()
		line, _ := json.Marshal(m)
		f.Write(append(line, '\n'))
	}
}

// statusText is a short form of `etcd-rescue lab status` for diagnostics.
func statusText(s *lab.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "lab %s: %s mode, etcd %s, TLS %v\n", s.StateDir, s.Mode, s.Version, s.TLS)
	for _, h := range s.Hosts {
		fmt.Fprintf(&b, "host %s %s: ssh %v, etcd %s, data dir %v\n", h.Name, h.Address, h.SSH, h.Etcd, h.DataDir)
	}
	for _, m := range s.Members {
		state := fmt.Sprintf("leader %x, revision %d, etcd %s", m.Leader, m.Revision, m.Version)
		if m.Err != "" {
			state = "down: " + m.Err
		}
		fmt.Fprintf(&b, "member %s on %s (%s): %s\n", m.Name, m.Host, m.ClientURL, state)
	}
	for _, m := range s.MemberList {
		fmt.Fprintf(&b, "member list: %s\n", m)
	}
	fmt.Fprintf(&b, "keys: %d under %s", s.Keys, lab.KeyPrefix)
	return b.String()
}
