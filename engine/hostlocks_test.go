package engine

import (
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

// A session holds the run lock of its hosts while it runs, and frees it
// at the end; a lock its session lost mid-run is taken again before the
// next command there.
func TestHostLockHeldForTheSession(t *testing.T) {
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	lock := filepath.Join(dir, "host.lock")
	plan := sshPlan(t, srv, dir, `
  - {id: seen, type: exec, on: all, with: {command: "cat `+lock+`.owner > ${vars.dir}/seen", creates: "${vars.dir}/seen"}}
  - {id: break, type: exec, on: all, needs: [seen], with: {command: "kill -9 $(sed -n 's/^holderPid=//p' `+lock+`.owner) && sleep 1 && touch ${vars.dir}/broken", creates: "${vars.dir}/broken"}}
  - {id: after, type: exec, on: all, needs: [break], with: {command: "cat `+lock+`.owner > ${vars.dir}/after", creates: "${vars.dir}/after"}}
`)
	// A short heartbeat: the killed holder is noticed at the next one.
	o := Options{RetryDelay: -1, StateDir: filepath.Join(dir, "state"), HostLock: &hostlock.Options{Path: lock, Heartbeat: 200 * time.Millisecond}}
	res, err := Apply(testCtx(t), loadReal(t, plan), o)
	if err != nil {
		t.Fatal(err)
	}
	seen := readFile(t, filepath.Join(dir, "seen"))
	for _, want := range []string{"run=" + res.RunID + "\n", "stateDir=" + res.StateDir + "\n", "holderPid="} {
		if !strings.Contains(seen, want) {
			t.Errorf("owner record during the run lacks %q:\n%s", want, seen)
		}
	}
	if after := readFile(t, filepath.Join(dir, "after")); !strings.Contains(after, "run="+res.RunID+"\n") {
		t.Errorf("lock not taken again after it was lost:\n%s", after)
	}
	ev := readFile(t, filepath.Join(res.StateDir, "runs", res.RunID, "events.jsonl"))
	for _, want := range []string{"run lock " + lock + " held on local for this session", "run lock taken again"} {
		if !strings.Contains(ev, want) {
			t.Errorf("journal lacks %q:\n%s", want, ev)
		}
	}
	if _, err := os.Stat(lock + ".owner"); !os.IsNotExist(err) {
		t.Errorf("owner record left after the session: %v", err)
	}
}

// A second run on a host whose lock another run holds is refused before
// anything runs, naming the holder; no run is created.
func TestHostLockedByAnotherRun(t *testing.T) {
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	lock := filepath.Join(dir, "host.lock")
	c, err := sshx.New("local", sshx.Config{Address: srv.Host, Port: srv.Port, User: srv.User, IdentityFiles: []string{srv.ClientKey}, KnownHosts: srv.KnownHosts})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := hostlock.Owner{RunID: "20261202T030000Z-aaaa", Operator: "ann@laptop", PID: 4242, StateDir: "/home/ann/.etcd-rescue", Started: time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)}
	held, err := hostlock.Acquire(testCtx(t), "local", c, first, hostlock.Options{Path: lock})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()

	plan := sshPlan(t, srv, dir, `
  - {id: touch, type: exec, on: all, with: {command: "touch ${vars.dir}/changed", creates: "${vars.dir}/changed"}}
`)
	state := filepath.Join(dir, "state")
	_, err = Apply(testCtx(t), loadReal(t, plan), Options{RetryDelay: -1, StateDir: state, HostLock: &hostlock.Options{Path: lock}})
	var le *HostLockedError
	if !errors.As(err, &le) {
		t.Fatalf("want a *HostLockedError, got %v", err)
	}
	want := "local is locked by run 20261202T030000Z-aaaa of ann@laptop (pid 4242, state dir /home/ann/.etcd-rescue) since 2026-12-02T03:00:00Z"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "changed")); !os.IsNotExist(err) {
		t.Error("the step ran despite the lock")
	}
	if runs, _ := os.ReadDir(filepath.Join(state, "runs")); len(runs) != 0 {
		t.Errorf("a run was created: %v", runs)
	}
}

// An apply session connects to each host once: the facts at its start,
// the host gate, its run lock, its steps and the facts at its end share
// that connection (sshd logs one accepted login).
func TestApplyConnectsOncePerHost(t *testing.T) {
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	lock := filepath.Join(dir, "host.lock")
	plan := sshPlan(t, srv, dir, `
  - {id: one, type: exec, on: all, with: {command: "cat `+lock+`.owner > ${vars.dir}/one", creates: "${vars.dir}/one"}}
  - {id: two, type: exec, on: all, needs: [one], with: {command: "touch ${vars.dir}/two", creates: "${vars.dir}/two"}}
`)
	res, err := Apply(testCtx(t), loadReal(t, plan), Options{RetryDelay: -1, StateDir: filepath.Join(dir, "state"), HostLock: &hostlock.Options{Path: lock}})
	if err != nil {
		t.Fatal(err)
	}
	if one := readFile(t, filepath.Join(dir, "one")); !strings.Contains(one, "run="+res.RunID+"\n") {
		t.Errorf("the step did not run under the session's lock:\n%s", one)
	}
	ev := readFile(t, filepath.Join(res.StateDir, "runs", res.RunID, "events.jsonl"))
	for _, want := range []string{"at session start: facts collected", "at session end: facts collected", "host gate: 1 host(s) reachable and trusted"} {
		if !strings.Contains(ev, want) {
			t.Errorf("journal lacks %q:\n%s", want, ev)
		}
	}
	if n := strings.Count(srv.Log(), "Accepted publickey"); n != 1 {
		t.Errorf("sshd accepted %d logins during one apply session, want 1:\n%s", n, srv.Log())
	}
	if _, err := os.Stat(lock + ".owner"); !os.IsNotExist(err) {
		t.Errorf("owner record left after the session: %v", err)
	}
}
