package hostlock_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/hostlock"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
)

func client(t *testing.T, srv *sshxtest.Server) *sshx.Client {
	t.Helper()
	c, err := sshx.New("h1", sshx.Config{Address: srv.Host, Port: srv.Port, User: srv.User,
		IdentityFiles: []string{srv.ClientKey}, KnownHosts: srv.KnownHosts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func owner(run string) hostlock.Owner {
	return hostlock.Owner{RunID: run, Operator: "op@laptop", PID: 4242, StateDir: "/state/" + run, Started: time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// waitFree waits until the lock file can be taken by someone else.
func waitFree(t *testing.T, c *sshx.Client, o hostlock.Options, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		l, err := hostlock.Acquire(ctx(t), "h1", c, owner("probe"), o)
		if err == nil {
			l.Release()
			return time.Since(start)
		}
		var he *hostlock.HeldError
		if !errors.As(err, &he) {
			t.Fatalf("probe: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the lock was not freed within %s", within)
	return 0
}

// A second holder is refused with the first one's record; the first's
// release frees the lock at once, and the owner record goes with it.
func TestSecondHolderRefusedAndRelease(t *testing.T) {
	srv := sshxtest.Start(t)
	o := hostlock.Options{Path: filepath.Join(t.TempDir(), "etcd-rescue.lock")}
	first, err := hostlock.Acquire(ctx(t), "h1", client(t, srv), owner("RUN1"), o)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := os.ReadFile(o.Path + ".owner")
	if err != nil || !strings.Contains(string(rec), "run=RUN1\n") || !strings.Contains(string(rec), "holderPid=") {
		t.Fatalf("owner record %q, %v", rec, err)
	}

	_, err = hostlock.Acquire(ctx(t), "h1", client(t, srv), owner("RUN2"), o)
	var he *hostlock.HeldError
	if !errors.As(err, &he) {
		t.Fatalf("second holder: want a *HeldError, got %v", err)
	}
	want := "h1 is locked by run RUN1 of op@laptop (pid 4242, state dir /state/RUN1) since 2026-12-02T03:00:00Z"
	if !strings.Contains(err.Error(), want) || he.Owner.HolderPID == 0 {
		t.Errorf("error %q lacks %q (holder pid %d)", err, want, he.Owner.HolderPID)
	}
	if lost, _ := first.Lost(); lost {
		t.Error("the first lock was lost")
	}

	first.Release()
	if _, err := os.Stat(o.Path + ".owner"); !os.IsNotExist(err) {
		t.Errorf("owner record left after release: %v", err)
	}
	second, err := hostlock.Acquire(ctx(t), "h1", client(t, srv), owner("RUN2"), o)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	second.Release()
}

// The holder's connection closing (etcd-rescue killed) frees the lock at
// once: the script reads EOF.
func TestReleaseOnConnectionClose(t *testing.T) {
	srv := sshxtest.Start(t)
	o := hostlock.Options{Path: filepath.Join(t.TempDir(), "etcd-rescue.lock")}
	c := client(t, srv)
	l, err := hostlock.Acquire(ctx(t), "h1", c, owner("RUN1"), o)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close() // what the kernel does for a killed process
	if took := waitFree(t, client(t, srv), o, 5*time.Second); took > 3*time.Second {
		t.Errorf("freed after %s, want at once", took)
	}
	if lost, why := l.Lost(); !lost {
		t.Errorf("Lost() = false after the connection closed (%v)", why)
	}
}

// A half-open connection (the holder's machine lost power: no EOF, no
// heartbeat) frees the lock after Silence.
func TestReleaseAfterSilence(t *testing.T) {
	srv := sshxtest.Start(t)
	o := hostlock.Options{Path: filepath.Join(t.TempDir(), "etcd-rescue.lock"), Silence: 2 * time.Second}
	// A runner whose input never ends and never speaks: the script hears
	// nothing, as over a half-open connection.
	c := client(t, srv)
	silent := &muteRunner{c: c}
	if _, err := hostlock.Acquire(ctx(t), "h1", silent, owner("RUN1"), o); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFree(t, client(t, srv), o, 10*time.Second)
	if took := time.Since(start); took < time.Second {
		t.Errorf("freed after %s, before the silence", took)
	}
}

// muteRunner replaces the holder's input with one that never delivers a
// heartbeat nor EOF.
type muteRunner struct{ c *sshx.Client }

func (m *muteRunner) Run(ctx context.Context, cmd string, opts sshx.RunOpts) (sshx.Result, error) {
	opts.Stdin = blockingReader{ctx}
	return m.c.Run(ctx, cmd, opts)
}

type blockingReader struct{ ctx context.Context }

func (b blockingReader) Read([]byte) (int, error) {
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

// The holder keeps the lock through silence while its heartbeat runs.
func TestHeartbeatKeepsTheLock(t *testing.T) {
	srv := sshxtest.Start(t)
	o := hostlock.Options{Path: filepath.Join(t.TempDir(), "etcd-rescue.lock"), Silence: 2 * time.Second, Heartbeat: 300 * time.Millisecond}
	l, err := hostlock.Acquire(ctx(t), "h1", client(t, srv), owner("RUN1"), o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	time.Sleep(3 * time.Second)
	if lost, why := l.Lost(); lost {
		t.Fatalf("lost despite the heartbeat: %v", why)
	}
	_, err = hostlock.Acquire(ctx(t), "h1", client(t, srv), owner("RUN2"), o)
	if !errors.As(err, new(*hostlock.HeldError)) {
		t.Fatalf("want held, got %v", err)
	}
}

// The same run waits for its previous session's lock to go (a resume right
// after a kill -9); another run does not.
func TestSameRunWaits(t *testing.T) {
	srv := sshxtest.Start(t)
	o := hostlock.Options{Path: filepath.Join(t.TempDir(), "etcd-rescue.lock"), SameRunWait: 5 * time.Second}
	old, err := hostlock.Acquire(ctx(t), "h1", client(t, srv), owner("RUN1"), o)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(time.Second)
		old.Release()
	}()
	start := time.Now()
	resumed := owner("RUN1")
	resumed.PID = 4343 // the resume is another process
	l, err := hostlock.Acquire(ctx(t), "h1", client(t, srv), resumed, o)
	if err != nil {
		t.Fatalf("same run: %v", err)
	}
	l.Release()
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("took %s: did not wait for the release", took)
	}
}

// A host without flock gets a clear prerequisite error.
func TestMissingFlock(t *testing.T) {
	srv := sshxtest.Start(t)
	bin := t.TempDir()
	for _, tool := range []string{"bash", "grep", "cat", "mv", "rm", "printf"} {
		if p, err := lookPath(tool); err == nil {
			_ = os.Symlink(p, filepath.Join(bin, tool))
		}
	}
	o := hostlock.Options{Path: filepath.Join(t.TempDir(), "etcd-rescue.lock")}
	r := &pathRunner{c: client(t, srv), path: bin}
	_, err := hostlock.Acquire(ctx(t), "h1", r, owner("RUN1"), o)
	var me *hostlock.MissingError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "host h1 cannot hold the run lock: flock (util-linux) is not installed") {
		t.Fatalf("want a *MissingError for flock, got %v", err)
	}
}

type pathRunner struct {
	c    *sshx.Client
	path string
}

func (p *pathRunner) Run(ctx context.Context, cmd string, opts sshx.RunOpts) (sshx.Result, error) {
	return p.c.Run(ctx, "PATH="+p.path+" "+strings.Replace(cmd, "exec bash", "exec "+p.path+"/bash", 1), opts)
}

func lookPath(name string) (string, error) {
	for _, d := range []string{"/usr/bin", "/bin"} {
		if p := filepath.Join(d, name); fileExists(p) {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// The same process reaching one machine under two host names shares the
// lock it holds there.
func TestSameProcessShares(t *testing.T) {
	srv := sshxtest.Start(t)
	o := hostlock.Options{Path: filepath.Join(t.TempDir(), "etcd-rescue.lock")}
	a, err := hostlock.Acquire(ctx(t), "h1", client(t, srv), owner("RUN1"), o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	start := time.Now()
	b, err := hostlock.Acquire(ctx(t), "h1-alias", client(t, srv), owner("RUN1"), o)
	if err != nil {
		t.Fatalf("same process, second name: %v", err)
	}
	b.Release()
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s: waited instead of sharing", took)
	}
	if _, err := os.Stat(o.Path + ".owner"); err != nil {
		t.Errorf("the sharer's release removed the holder's record: %v", err)
	}
}

// Break kills a live holder: its lock is free at once, and the holder
// sees it lost.
func TestBreak(t *testing.T) {
	srv := sshxtest.Start(t)
	o := hostlock.Options{Path: filepath.Join(t.TempDir(), "etcd-rescue.lock"), Heartbeat: 200 * time.Millisecond}
	b, err := hostlock.Break(ctx(t), client(t, srv), o)
	if err != nil || b.Held || b.Killed {
		t.Fatalf("break of a free lock: %+v %v", b, err)
	}
	l, err := hostlock.Acquire(ctx(t), "h1", client(t, srv), owner("RUN1"), o)
	if err != nil {
		t.Fatal(err)
	}
	b, err = hostlock.Break(ctx(t), client(t, srv), o)
	if err != nil || !b.Held || !b.Killed || b.Owner.RunID != "RUN1" {
		t.Fatalf("break: %+v %v", b, err)
	}
	waitFree(t, client(t, srv), o, 3*time.Second)
	deadline := time.Now().Add(3 * time.Second)
	for {
		if lost, _ := l.Lost(); lost {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder did not see its lock lost")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
