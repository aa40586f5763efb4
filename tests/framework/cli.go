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
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework/testutil"
)

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
	if len(env) > 0 {
		env = append(os.Environ(), env...)
	}
	return e.startEnv(t, hook, env, args...)
}

// StartOnlyEnv starts etcd-rescue with env as its whole environment, as
// systemd starts a service: nothing of the test's own environment.
func (e *E2E) StartOnlyEnv(t *testing.T, hook func(*Proc, string), env []string, args ...string) *Proc {
	t.Helper()
	return e.startEnv(t, hook, append([]string{}, env...), args...)
}

// startEnv starts etcd-rescue with args and the environment env (nil: the
// test's own).
func (e *E2E) startEnv(t *testing.T, hook func(*Proc, string), env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{args: args, readDone: make(chan struct{}), exited: make(chan struct{}), hook: hook}
	p.cmd = exec.Command(e.Bin, args...)
	p.cmd.Env = env
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

// Pid is the process id of etcd-rescue.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

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
