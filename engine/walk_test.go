package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

func TestWalkOrder(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: run, on: all, with: {cmd: a}}
  - {id: b, type: run, on: all, needs: [a], with: {cmd: b}}
  - {id: c, type: once, needs: [b], with: {cmd: c}}
  - {id: d, type: run, on: h2, with: {cmd: d}}
`)
	res, err := h.apply(h.opts())
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, h.progress.String())
	}
	cmds := h.w.commands()
	pos := map[string]int{}
	for i, c := range cmds {
		pos[c] = i
	}
	if len(cmds) != 8 {
		t.Fatalf("ran %d commands, want 8: %v", len(cmds), cmds)
	}
	// b starts only when a is done on EVERY host (node-level needs), c
	// after every b.
	for _, x := range []string{"h1", "h2", "h3"} {
		for _, y := range []string{"h1", "h2", "h3"} {
			if pos[x+": a"] > pos[y+": b"] {
				t.Errorf("a@%s ran after b@%s: %v", x, y, cmds)
			}
		}
		if pos[x+": b"] > pos["h1: c"] {
			t.Errorf("b@%s ran after c: %v", x, cmds)
		}
	}
	wantStatuses(t, res.State, map[string]string{"a@h1": "done", "b@h3": "done", "c": "done", "d@h2": "done"})
	if res.State.Outcome != runstate.OutcomeDone {
		t.Errorf("outcome %s", res.State.Outcome)
	}
}

// The semaphore bounds the step-hosts executing at once, and is never held
// while a node waits for its needs (with parallelism 1, holding it while
// waiting would deadlock the chain below).
func TestParallelismBound(t *testing.T) {
	h := newHarness(t, "", `
  - {id: p, type: run, on: all, with: {cmd: block}}
  - {id: q, type: run, on: all, with: {cmd: block}}
  - {id: r, type: run, on: h1, needs: [p, q], with: {cmd: r}}
`)
	entered := make(chan string, 10)
	release := make(chan struct{})
	h.w.handler = func(host, cmd string) (string, int, error) {
		if cmd == "block" {
			entered <- host
			<-release
		}
		return "", 0, nil
	}
	o := h.opts()
	o.Parallelism = 2
	done := make(chan error, 1)
	go func() { _, err := h.apply(o); done <- err }()
	// Two enter; then each release lets exactly one more in.
	<-entered
	<-entered
	for i := 0; i < 6; i++ {
		release <- struct{}{}
		if i < 4 {
			<-entered
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("apply: %v", err)
	}
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	if h.w.maxIn != 2 {
		t.Errorf("max step-hosts in flight %d, want 2", h.w.maxIn)
	}
	if len(h.w.cmds) != 7 {
		t.Errorf("ran %d commands, want 7", len(h.w.cmds))
	}

	// Parallelism 1 with a chain and an independent branch completes.
	h2 := newHarness(t, "", `
  - {id: a, type: run, on: all, with: {cmd: a}}
  - {id: b, type: run, on: all, needs: [a], with: {cmd: b}}
  - {id: c, type: run, on: h3, with: {cmd: c}}
`)
	o2 := h2.opts()
	o2.Parallelism = 1
	if _, err := h2.apply(o2); err != nil {
		t.Fatal(err)
	}
	if h2.w.maxIn != 1 {
		t.Errorf("parallelism 1: max in flight %d", h2.w.maxIn)
	}
}

func TestFailureSkipsDependentsAndReportsRootCauses(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: run, on: all, with: {cmd: a}}
  - {id: b, type: run, on: all, needs: [a], with: {cmd: b}}
  - {id: c, type: once, needs: [b], with: {cmd: c}}
  - {id: d, type: run, on: h1, with: {cmd: d}}
`)
	h.w.handler = func(host, cmd string) (string, int, error) {
		if host == "h2" && cmd == "a" {
			return "", 3, nil
		}
		return "", 0, nil
	}
	res, err := h.apply(h.opts())
	re := runErrOf(t, err)
	if re.Interrupted || len(re.Failed) == 0 {
		t.Errorf("want a failed step, not interrupted: %+v", re)
	}
	if len(re.Failed) != 1 {
		t.Fatalf("want exactly one root cause, got %d: %v", len(re.Failed), err)
	}
	f := re.Failed[0]
	if f.Step != "a" || f.Host != "h2" || f.ExitCode != 3 || f.Cmd != "a" || !strings.Contains(f.Stderr, "stderr of a") {
		t.Errorf("root cause %+v", f)
	}
	if f.Pos.Line == 0 || !strings.HasSuffix(f.Pos.File, "plan.yaml") {
		t.Errorf("root cause has no position: %v", f.Pos)
	}
	var ee *steps.ExitError
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Errorf("errors.As(ExitError) through RunError: %v", ee)
	}
	var se *StepError
	if !errors.As(err, &se) || se.Step != "a" {
		t.Errorf("errors.As(StepError): %v", se)
	}
	if !strings.Contains(err.Error(), `plan.yaml:`) || !strings.Contains(err.Error(), `step "a" on h2`) {
		t.Errorf("message: %s", err)
	}
	wantStatuses(t, res.State, map[string]string{
		"a@h1": "done", "a@h2": "failed", "a@h3": "done",
		"b@h1": "skipped", "b@h2": "skipped", "b@h3": "skipped", "c": "skipped", "d@h1": "done",
	})
	if re.Skipped != 4 {
		t.Errorf("skipped %d, want 4", re.Skipped)
	}
	if h.w.ran("h1", "b") != 0 {
		t.Error("b ran after a failed")
	}
	if res.State.Outcome != runstate.OutcomeFailed {
		t.Errorf("outcome %s", res.State.Outcome)
	}
}

// Every transition is on disk before the next thing happens: while a
// step-host's command runs, state.json already says running.
func TestCheckpointAtEveryTransition(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: run, on: [h1, h2], with: {cmd: a}}
  - {id: b, type: run, on: h1, needs: [a], with: {cmd: b}}
`)
	var mu sync.Mutex
	seen := map[string]string{}
	var statePath string
	h.w.handler = func(host, cmd string) (string, int, error) {
		var st runstate.State
		if err := json.Unmarshal([]byte(readFile(t, statePath)), &st); err != nil {
			t.Errorf("state.json unreadable mid-run: %v", err)
			return "", 0, nil
		}
		mu.Lock()
		seen[host+" "+cmd] = st.Find(cmd, host).Status
		if cmd == "b" {
			seen["a@h2 seen by b"] = st.Find("a", "h2").Status
		}
		mu.Unlock()
		return "", 0, nil
	}
	o := h.opts()
	o.OnStart = func(r *runstate.Run) { statePath = filepath.Join(r.Dir(), "state.json") }
	res, err := h.apply(o)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"h1 a": "running", "h2 a": "running", "h1 b": "running", "a@h2 seen by b": "done"} {
		if seen[k] != v {
			t.Errorf("%s: on disk %q, want %q", k, seen[k], v)
		}
	}
	// The journal has running then done for each step-host.
	ev := readFile(t, filepath.Join(res.StateDir, "runs", res.RunID, "events.jsonl"))
	var trans []string
	for _, line := range strings.Split(strings.TrimSpace(ev), "\n") {
		var e runstate.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("bad journal line %q: %v", line, err)
		}
		if e.Type == "step" {
			trans = append(trans, runstate.Key(e.Step, e.Host)+"="+e.Status)
		}
	}
	for _, k := range []string{"a@h1", "a@h2", "b@h1"} {
		i, j := indexOf(trans, k+"=running"), indexOf(trans, k+"=done")
		if i < 0 || j < i {
			t.Errorf("%s: journal transitions %v", k, trans)
		}
	}
	fi, err := os.Stat(filepath.Join(res.StateDir, "runs", res.RunID, "state.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state.json mode: %v %v", fi.Mode(), err)
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// crashAt runs apply and keeps a copy of state.json as it was on disk
// while cmd ran on host: what a kill -9 at that moment leaves behind. The
// copy is put back after the run, as if the engine had died there.
func crashAt(t *testing.T, h *harness, host, cmd string) string {
	t.Helper()
	var statePath string
	var saved []byte
	prev := h.w.handler
	h.w.handler = func(hh, c string) (string, int, error) {
		if hh == host && c == cmd && saved == nil {
			saved = []byte(readFile(t, statePath))
		}
		if prev != nil {
			return prev(hh, c)
		}
		return "", 0, nil
	}
	o := h.opts()
	o.OnStart = func(r *runstate.Run) { statePath = filepath.Join(r.Dir(), "state.json") }
	res, _ := h.apply(o)
	if saved == nil {
		t.Fatalf("%s never ran on %s", cmd, host)
	}
	if err := runstate.WriteFileAtomic(statePath, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	h.w.handler = prev
	return res.RunID
}

func TestCrashThenResume(t *testing.T) {
	stepsYAML := `
  - {id: a, type: run, on: all, with: {cmd: a}}
  - {id: b, type: %s, on: h1, needs: [a], with: {cmd: b}}
  - {id: c, type: run, on: all, needs: [b], with: {cmd: c}}
`
	cases := map[string]struct {
		typ       string
		checkDone bool
		wantRerun bool // b runs again on resume
		wantWait  bool // resume stops for the operator (exit 5)
	}{
		"non-destructive without check is re-applied":  {typ: "run", wantRerun: true},
		"check says done: marked done, not re-applied": {typ: "checked", checkDone: true},
		"check says not done: re-applied":              {typ: "checked", wantRerun: true},
		"destructive without check: operator decides":  {typ: "destroy", wantWait: true},
		"destructive, check done: marked done":         {typ: "destroy-checked", checkDone: true},
		"destructive, check not done, not repeat-safe": {typ: "destroy-checked", wantWait: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, "", fmt.Sprintf(stepsYAML, tc.typ))
			runID := crashAt(t, h, "h1", "b")
			st, err := (&runstate.Store{Dir: h.stateDir}).Load(runID)
			if err != nil {
				t.Fatal(err)
			}
			wantStatuses(t, st, map[string]string{"a@h1": "done", "a@h3": "done", "b@h1": "running", "c@h1": "pending"})

			// A fresh world: the resumed engine must not touch a.
			h.w = &world{handler: func(host, cmd string) (string, int, error) {
				if cmd == "check b" && !tc.checkDone {
					return "", 1, nil
				}
				return "", 0, nil
			}}
			res, err := h.resume(runID, h.opts())
			if h.w.ran("h1", "a")+h.w.ran("h2", "a") != 0 {
				t.Error("resume re-ran a step that was done")
			}
			if got := h.w.ran("h1", "b") > 0; got != tc.wantRerun {
				t.Errorf("b re-applied: %v, want %v", got, tc.wantRerun)
			}
			if tc.wantWait {
				re := runErrOf(t, err)
				if re.Interrupted || len(re.Failed) > 0 || len(re.Waiting) != 1 || re.Waiting[0].Step != "b" {
					t.Fatalf("want waiting on b and nothing failed: %+v: %v", re, err)
				}
				if !strings.Contains(strings.Join(re.Waiting[0].Hints, "\n"), "--rerun b@h1") ||
					!strings.Contains(strings.Join(re.Waiting[0].Hints, "\n"), "--mark-done b@h1") {
					t.Errorf("hints: %v", re.Waiting[0].Hints)
				}
				wantStatuses(t, res.State, map[string]string{"b@h1": "running", "c@h1": "pending"})
				if res.State.Outcome != runstate.OutcomeWaiting {
					t.Errorf("outcome %s", res.State.Outcome)
				}
				// The operator decides; the run completes.
				o := h.opts()
				o.MarkDone = []Selector{ParseSelector("b@h1")}
				res, err = h.resume(runID, o)
				if err != nil {
					t.Fatalf("resume --mark-done: %v", err)
				}
				if h.w.ran("h1", "b") != 0 {
					t.Error("--mark-done ran b")
				}
				if hs := res.State.Find("b", "h1"); !strings.Contains(hs.Why, "--mark-done") {
					t.Errorf("why: %q", hs.Why)
				}
			} else if err != nil {
				t.Fatalf("resume: %v\n%s", err, h.progress.String())
			}
			wantStatuses(t, res.State, map[string]string{"b@h1": "done", "c@h1": "done", "c@h2": "done"})
			if tc.checkDone {
				if hs := res.State.Find("b", "h1"); !strings.Contains(hs.Why, "check passed") {
					t.Errorf("why not recorded: %q", hs.Why)
				}
			}
			if res.State.Sessions < 2 {
				t.Errorf("sessions %d", res.State.Sessions)
			}
		})
	}
}

func TestDecideResumeTable(t *testing.T) {
	cases := map[string]struct {
		p    probe
		want resumeAction
	}{
		"check done":                             {probe{HasCheck: true, CheckDone: true, CheckWhy: "x", Destructive: true}, actDone},
		"no check, not destructive":              {probe{}, actRun},
		"check not done, not destructive":        {probe{HasCheck: true}, actRun},
		"destructive, check not done, safe":      {probe{Destructive: true, HasCheck: true, RepeatSafe: true}, actRun},
		"destructive, check not done, not safe":  {probe{Destructive: true, HasCheck: true}, actStop},
		"destructive, no check":                  {probe{Destructive: true}, actStop},
		"destructive, no check, repeat-safe too": {probe{Destructive: true, RepeatSafe: true}, actStop},
	}
	for name, tc := range cases {
		if got, why := decideResume(tc.p); got != tc.want || why == "" {
			t.Errorf("%s: got %v (%q), want %v", name, got, why, tc.want)
		}
	}
}

// The real step types' properties feed the table as intended.
func TestRealTypesResumeProperties(t *testing.T) {
	h := newHarness(t, "", `
  - {id: stop, type: stop-service, on: members}
  - {id: wipe, type: wipe-dir, on: members, needs: [stop]}
  - {id: fnc, type: force-new-cluster, on: h1, needs: [wipe]}
  - {id: x1, type: exec, on: h1, with: {command: "rm -rf /x", destructive: true}}
  - {id: x2, type: exec, on: h1, with: {command: "rm -rf /x", destructive: true, creates: /y}}
  - {id: x3, type: exec, on: h1, with: {command: "true"}}
`)
	c := compileTest(t, h.plan)
	type props struct{ destructive, check, safe bool }
	want := map[string]props{
		"stop": {false, true, false}, "wipe": {true, true, true}, "fnc": {true, true, true},
		"x1": {true, false, false}, "x2": {true, true, true}, "x3": {false, false, false},
	}
	for id, p := range want {
		n := c.ByID[id]
		tg := n.Targets[0]
		got := props{destructive(tg), checker(tg) != nil, isRepeatSafe(tg)}
		if got != p {
			t.Errorf("%s: got %+v, want %+v", id, got, p)
		}
	}
}

func TestRetries(t *testing.T) {
	h := newHarness(t, "", `
  - {id: flaky, type: run, on: h1, retries: 2, with: {cmd: flaky}}
  - {id: bad, type: destroy, on: h2, retries: 2, with: {cmd: bad}}
`)
	n := 0
	h.w.handler = func(host, cmd string) (string, int, error) {
		switch cmd {
		case "flaky":
			n++
			if n < 3 {
				return "", 1, nil
			}
		case "bad":
			return "", 1, nil
		}
		return "", 0, nil
	}
	res, err := h.apply(h.opts())
	re := runErrOf(t, err)
	if len(re.Failed) != 1 || re.Failed[0].Step != "bad" {
		t.Fatalf("failures: %v", err)
	}
	if a := res.State.Find("flaky", "h1"); a.Status != runstate.StatusDone || a.Attempts != 3 {
		t.Errorf("flaky: %+v", a)
	}
	// A destructive step without a Check is never retried blindly.
	if a := res.State.Find("bad", "h2"); a.Attempts != 1 || h.w.ran("h2", "bad") != 1 {
		t.Errorf("bad: attempts %d, ran %d times", a.Attempts, h.w.ran("h2", "bad"))
	}
}

// A dropped connection mid-command leaves the outcome unknown: probe, then
// repeat only what is safe to repeat.
func TestOutcomeUnknown(t *testing.T) {
	h := newHarness(t, "", `
  - {id: safe, type: checked, on: h1, with: {cmd: safe}}
  - {id: unsafe, type: destroy, on: h2, with: {cmd: unsafe}}
`)
	drops := map[string]int{}
	var mu sync.Mutex
	h.w.handler = func(host, cmd string) (string, int, error) {
		mu.Lock()
		defer mu.Unlock()
		switch cmd {
		case "check safe":
			return "", 1, nil
		case "safe", "unsafe":
			drops[cmd]++
			if drops[cmd] == 1 {
				return "", -1, fmt.Errorf("%w: connection reset", ErrOutcomeUnknown)
			}
		}
		return "", 0, nil
	}
	res, err := h.apply(h.opts())
	re := runErrOf(t, err)
	if re.Interrupted || len(re.Failed) > 0 || len(re.Waiting) != 1 || re.Waiting[0].Step != "unsafe" {
		t.Fatalf("want unsafe waiting for the operator: %+v: %v", re, err)
	}
	if a := res.State.Find("safe", "h1"); a.Status != runstate.StatusDone || a.Attempts != 2 {
		t.Errorf("safe: %+v", a)
	}
	if h.w.ran("h2", "unsafe") != 1 {
		t.Error("unsafe repeated blindly")
	}
}

func TestUnreachableSkip(t *testing.T) {
	h := newHarness(t, "", `
  - {id: stop-api, type: stop-service, on: all, with: {unit: kube-apiserver, unreachable: skip}}
  - {id: after, type: run, on: h1, needs: [stop-api], with: {cmd: after}}
`)
	h.w.handler = func(host, cmd string) (string, int, error) {
		if host == "h3" {
			return "", -1, fmt.Errorf("%w: dial tcp 10.0.0.3:22: no route to host", ErrUnreachable)
		}
		return "", 0, nil
	}
	res, err := h.apply(h.opts())
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	wantStatuses(t, res.State, map[string]string{"stop-api@h1": "done", "stop-api@h3": "skipped", "after@h1": "done"})
	if !strings.Contains(res.State.Find("stop-api", "h3").Why, "unreachable") {
		t.Errorf("why: %q", res.State.Find("stop-api", "h3").Why)
	}
}

func TestExecCreatesIsCheckedFirst(t *testing.T) {
	h := newHarness(t, "", `
  - {id: once-only, type: exec, on: h1, with: {command: "make-it", creates: /made}}
`)
	h.w.handler = func(host, cmd string) (string, int, error) { return "", 0, nil } // /made exists
	res, err := h.apply(h.opts())
	if err != nil {
		t.Fatal(err)
	}
	if h.w.ran("h1", "make-it") != 0 {
		t.Error("exec ran although creates: exists")
	}
	if hs := res.State.Find("once-only", "h1"); hs.Status != runstate.StatusDone || !strings.Contains(hs.Why, "/made exists") {
		t.Errorf("%+v", hs)
	}
}

func TestApproval(t *testing.T) {
	h := newHarness(t, "", `
  - {id: ok, type: approve, with: {message: "the snapshot is the right one"}}
  - {id: after, type: run, on: h1, needs: [ok], with: {cmd: after}}
`)
	res, err := h.apply(h.opts())
	re := runErrOf(t, err)
	if re.Interrupted || len(re.Failed) > 0 || len(re.Waiting) != 1 || !strings.Contains(strings.Join(re.Waiting[0].Hints, " "), "--approve ok") {
		t.Fatalf("want waiting for approval: %v (%v)", err, re.Waiting)
	}
	wantStatuses(t, res.State, map[string]string{"ok": "pending", "after@h1": "pending"})

	o := h.opts()
	o.Approve = []string{"ok"}
	res, err = h.resume(res.RunID, o)
	if err != nil {
		t.Fatal(err)
	}
	if a := res.State.Approvals["ok"]; a == nil || a.How != "flag" {
		t.Errorf("approval not recorded: %+v", res.State.Approvals)
	}
	if h.w.ran("h1", "after") != 1 {
		t.Error("after did not run")
	}

	// On a terminal the operator is asked; a "no" fails the step.
	h2 := newHarness(t, "", `
  - {id: ok, type: approve, with: {message: "sure?"}}
`)
	o2 := h2.opts()
	asked := ""
	o2.Ask = func(ctx context.Context, q string) (bool, error) { asked = q; return false, nil }
	_, err = h2.apply(o2)
	if re := runErrOf(t, err); (re.Interrupted || len(re.Failed) == 0) || !strings.Contains(asked, "sure?") {
		t.Errorf("denied approval: %+v, asked %q", re, asked)
	}
}

// First interrupt: what runs finishes and is checkpointed, nothing new
// starts, exit 130; resume completes.
func TestSoftInterrupt(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: run, on: h1, with: {cmd: a}}
  - {id: b, type: run, on: h1, needs: [a], with: {cmd: b}}
`)
	stop := make(chan struct{})
	h.w.handler = func(host, cmd string) (string, int, error) {
		if cmd == "a" {
			close(stop) // Ctrl-C while a runs
		}
		return "", 0, nil
	}
	o := h.opts()
	o.Stop = stop
	res, err := h.apply(o)
	re := runErrOf(t, err)
	if !re.Interrupted {
		t.Fatalf("want interrupted: %+v: %v", re, err)
	}
	wantStatuses(t, res.State, map[string]string{"a@h1": "done", "b@h1": "pending"})
	if res.State.Outcome != runstate.OutcomeInterrupted {
		t.Errorf("outcome %s", res.State.Outcome)
	}
	h.w.handler = nil
	res, err = h.resume(res.RunID, h.opts())
	if err != nil {
		t.Fatal(err)
	}
	wantStatuses(t, res.State, map[string]string{"a@h1": "done", "b@h1": "done"})
	if h.w.ran("h1", "a") != 1 {
		t.Error("a ran twice")
	}
}

// Second interrupt: the context is cancelled and running steps stop.
func TestHardInterrupt(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: run, on: h1, with: {cmd: a}}
  - {id: b, type: run, on: h1, needs: [a], with: {cmd: b}}
`)
	ctx, cancel := context.WithCancel(testCtx(t))
	h.w.handler = func(host, cmd string) (string, int, error) {
		cancel()
		return "", 0, context.Canceled
	}
	res, err := Apply(ctx, compileTest(t, h.plan), h.opts())
	re := runErrOf(t, err)
	if !re.Interrupted {
		t.Fatalf("want interrupted: %+v: %v", re, err)
	}
	wantStatuses(t, res.State, map[string]string{"a@h1": "failed", "b@h1": "skipped"})
}

func TestRunIDBoundIntoParams(t *testing.T) {
	h := newHarness(t, "", `
  - {id: stop, type: stop-service, on: h1}
  - {id: wipe, type: wipe-dir, on: h1, needs: [stop]}
  - {id: x, type: run, on: h1, needs: [wipe], with: {cmd: "echo ${run.id}"}}
`)
	h.w.handler = func(host, cmd string) (string, int, error) {
		if cmd == "echo "+"${run.id}" {
			return "", 0, nil
		}
		if strings.HasPrefix(cmd, "echo ") {
			return "", 1, nil // fail once, to resume below
		}
		return "", 0, nil
	}
	res, err := h.apply(h.opts())
	runErrOf(t, err)
	id := res.RunID
	wipe := fmt.Sprintf("if [ -e /var/lib/etcd ]; then mv -T -- /var/lib/etcd /var/lib/etcd.rescue-%s; fi && mkdir -p -m 0700 -- /var/lib/etcd && chown -- etcd:etcd /var/lib/etcd", id)
	if h.w.ran("h1", wipe) != 1 {
		t.Errorf("wipe-dir did not use the run id: %v", h.w.commands())
	}
	if h.w.ran("h1", "echo "+id) != 1 {
		t.Errorf("${run.id} not bound: %v", h.w.commands())
	}
	h.w.handler = nil
	if _, err := h.resume(id, h.opts()); err != nil {
		t.Fatal(err)
	}
	if h.w.ran("h1", "echo "+id) != 2 {
		t.Errorf("resume did not bind the same run id: %v", h.w.commands())
	}
}

// Steps record facts durably, and a resumed run sees them.
func TestFactsSurviveResume(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: fact}
  - {id: b, type: run, on: h1, needs: [a], with: {cmd: b}}
`)
	h.w.handler = func(host, cmd string) (string, int, error) { return "", 1, nil }
	res, err := h.apply(h.opts())
	runErrOf(t, err)
	if res.State.Facts["member.m1.id"] != "18446744073709551615" {
		t.Errorf("facts: %v", res.State.Facts)
	}
	st, err := (&runstate.Store{Dir: h.stateDir}).Load(res.RunID)
	if err != nil || st.Facts["member.m1.id"] != "18446744073709551615" {
		t.Fatalf("facts on disk: %v %v", st, err)
	}
	h.w.handler = nil
	res, err = h.resume(res.RunID, h.opts())
	if err != nil || res.State.Facts["member.m1.id"] != "18446744073709551615" {
		t.Fatalf("after resume: %v %v", res.State.Facts, err)
	}
}

// factStep records a member id as a fact (uint64 max: no float on the way).
type factStep struct{}

func (*factStep) Describe(c *steps.Ctx, t steps.Target) []steps.Action {
	return []steps.Action{{Kind: steps.API, Cmd: "record", Run: func(ctx context.Context, env steps.Env) error {
		if v, ok := env.Fact("member.m1.id"); ok {
			return fmt.Errorf("fact recorded twice (%s)", v)
		}
		return env.SetFact("member.m1.id", "18446744073709551615")
	}}}
}

// wipe-dir and restore are destructive but written to be repeated after a
// Check says "not done": a crash in the middle re-applies them
// (force-new-cluster: TestForceNewClusterKilledMidStepResumes).
func TestResumeRealDestructiveTypes(t *testing.T) {
	for name, tc := range map[string]struct {
		dirGone   bool // what wipe-dir's Check finds on resume
		wantRerun bool
	}{
		"moved aside before the crash": {dirGone: true},
		"crashed before the move":      {dirGone: false, wantRerun: true},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, "", `
  - {id: stop, type: stop-service, on: h1}
  - {id: wipe, type: wipe-dir, on: h1, needs: [stop]}
  - {id: after, type: run, on: h1, needs: [wipe], with: {cmd: after}}
`)
			var wipeCmd string
			h.w.handler = func(host, cmd string) (string, int, error) {
				if strings.HasPrefix(cmd, "if [ -e /var/lib/etcd ]") {
					wipeCmd = cmd
				}
				return "", 0, nil
			}
			runID := crashAtPrefix(t, h, "h1", "if [ -e /var/lib/etcd ]")
			h.w = &world{handler: func(host, cmd string) (string, int, error) {
				if strings.HasPrefix(cmd, "[ -d /var/lib/etcd ]") && !tc.dirGone {
					return "", 1, nil
				}
				return "", 0, nil
			}}
			res, err := h.resume(runID, h.opts())
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			if got := h.w.ran("h1", wipeCmd) == 1; got != tc.wantRerun {
				t.Errorf("wipe re-applied %v, want %v (%v)", got, tc.wantRerun, h.w.commands())
			}
			if !strings.Contains(wipeCmd, ".rescue-"+runID) {
				t.Errorf("aside dir is not per run: %s", wipeCmd)
			}
			wantStatuses(t, res.State, map[string]string{"wipe@h1": "done", "after@h1": "done"})
		})
	}
}

// crashAtPrefix is crashAt for the first command starting with prefix.
func crashAtPrefix(t *testing.T, h *harness, host, prefix string) string {
	t.Helper()
	var statePath string
	var saved []byte
	prev := h.w.handler
	h.w.handler = func(hh, c string) (string, int, error) {
		if hh == host && strings.HasPrefix(c, prefix) && saved == nil {
			saved = []byte(readFile(t, statePath))
		}
		return prev(hh, c)
	}
	o := h.opts()
	o.OnStart = func(r *runstate.Run) { statePath = filepath.Join(r.Dir(), "state.json") }
	res, _ := h.apply(o)
	if saved == nil {
		t.Fatalf("%s... never ran on %s", prefix, host)
	}
	if err := runstate.WriteFileAtomic(statePath, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	return res.RunID
}

// timeout: bounds each attempt of a step on a host.
func TestStepTimeout(t *testing.T) {
	h := newHarness(t, "", `
  - {id: stuck, type: run, on: h1, timeout: 20ms, with: {cmd: hang}}
  - {id: other, type: run, on: h2, with: {cmd: other}}
`)
	res, err := h.apply(h.opts())
	re := runErrOf(t, err)
	if len(re.Failed) != 1 || !strings.Contains(err.Error(), "timed out after 20ms") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a timeout failure: %v", err)
	}
	wantStatuses(t, res.State, map[string]string{"stuck@h1": "failed", "other@h2": "done"})
}

// With no timeout:, a step-host is bounded by its type's default deadline,
// and the failure says which limit it hit and how to change it.
func TestStepDefaultDeadline(t *testing.T) {
	h := newHarness(t, "", `
  - {id: stuck, type: slow, on: h1, with: {cmd: hang, within: 20ms}}
  - {id: other, type: run, on: h2, with: {cmd: other}}
`)
	res, err := h.apply(h.opts())
	re := runErrOf(t, err)
	want := "timed out after 20ms (the default deadline of a slow step, within: 20ms; set timeout: on the step to change it)"
	if len(re.Failed) != 1 || !strings.Contains(err.Error(), want) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want %q: %v", want, err)
	}
	wantStatuses(t, res.State, map[string]string{"stuck@h1": "failed", "other@h2": "done"})
	// The dry-run shows each step's deadline and where it comes from.
	d := BuildDryRun(compileTest(t, h.plan))
	got := map[string]string{}
	for _, w := range d.Waves {
		for _, s := range w.Steps {
			got[s.ID] = s.Timeout + " " + s.TimeoutFrom
		}
	}
	if got["stuck"] != "20ms default: within: 20ms" || got["other"] != "10m default" {
		t.Fatalf("dry-run deadlines %v", got)
	}
}

// Test doubles: fake step types and a fake world of hosts.

// Fake step types for walk tests. Each runs its cmd: on its host; the
// checked variants' Check runs "check <cmd>" there (exit 0: done), so
// every outcome is scripted by the fake world's handler.

type fakeRun struct {
	Cmd      string `yaml:"cmd" doc:"command"`
	destroys bool   // the destroy types: never repeated blindly
}

func (s *fakeRun) DestroysData() bool { return s.destroys }

func (s *fakeRun) Describe(c *steps.Ctx, t steps.Target) []steps.Action {
	return []steps.Action{{Host: t.Name(), Kind: steps.Shell, Cmd: s.Cmd}}
}

// fakeSlow is fakeRun with a default deadline of its within:.
type fakeSlow struct {
	Cmd    string         `yaml:"cmd" doc:"command"`
	Within plans.Duration `yaml:"within" doc:"default deadline"`
}

func (s *fakeSlow) Describe(c *steps.Ctx, t steps.Target) []steps.Action {
	return []steps.Action{{Host: t.Name(), Kind: steps.Shell, Cmd: s.Cmd}}
}

func (s *fakeSlow) DefaultTimeout() (time.Duration, string) {
	return s.Within.D(), "within: " + steps.FormatDuration(s.Within.D())
}

type fakeChecked struct {
	Cmd      string `yaml:"cmd" doc:"command"`
	destroys bool
}

func (s *fakeChecked) DestroysData() bool { return s.destroys }

func (s *fakeChecked) Describe(c *steps.Ctx, t steps.Target) []steps.Action {
	return []steps.Action{{Host: t.Name(), Kind: steps.Shell, Cmd: s.Cmd}}
}

func (s *fakeChecked) Check(ctx context.Context, c *steps.Ctx, env steps.Env, t steps.Target) (bool, string, error) {
	r, err := env.Shell(t.Name())
	if err != nil {
		return false, "", err
	}
	_, err = r.Run(ctx, "check "+s.Cmd, nil)
	var ee *steps.ExitError
	switch {
	case err == nil:
		return true, "check passed", nil
	case errors.As(err, &ee):
		return false, "", nil
	}
	return false, "", err
}

// fakeOnce runs once, on the first host, through a Run func.
type fakeOnce struct {
	Cmd string `yaml:"cmd" doc:"command"`
}

func (s *fakeOnce) Describe(c *steps.Ctx, t steps.Target) []steps.Action {
	return []steps.Action{{Kind: steps.API, Cmd: s.Cmd, Run: func(ctx context.Context, env steps.Env) error {
		r, err := env.Shell("h1")
		if err != nil {
			return err
		}
		_, err = r.Run(ctx, s.Cmd, nil)
		return err
	}}}
}

func testRegistry() map[string]*steps.Type {
	reg := steps.Registry()
	for _, t := range []*steps.Type{
		{Name: "run", New: func() steps.Step { return &fakeRun{} }},
		{Name: "slow", New: func() steps.Step { return &fakeSlow{} }},
		{Name: "checked", New: func() steps.Step { return &fakeChecked{} }},
		{Name: "destroy", New: func() steps.Step { return &fakeRun{destroys: true} }},
		{Name: "destroy-checked", New: func() steps.Step { return &fakeChecked{destroys: true} }},
		{Name: "lane", New: func() steps.Step { return &fakeLane{} }},
		{Name: "lane-destroy", New: func() steps.Step { return &fakeLane{destroys: true} }},
		{Name: "lane-checked", New: func() steps.Step { return &fakeLaneChecked{} }},
		{Name: "once", Scope: steps.Once, New: func() steps.Step { return &fakeOnce{} }},
		{Name: "fact", Scope: steps.Once, New: func() steps.Step { return &factStep{} }},
		{Name: "fact-then-run", New: func() steps.Step { return &factThenRun{} }},
		{Name: "fact-secret", Scope: steps.Once, New: func() steps.Step { return &factSecret{} }},
	} {
		reg[t.Name] = t
	}
	return reg
}

// world is a fake set of hosts: it records every command and answers with
// handler (default: exit 0).
type world struct {
	mu       sync.Mutex
	cmds     []string // "host: cmd"
	handler  func(host, cmd string) (stdout string, code int, err error)
	inflight int
	maxIn    int
	etcd     *fakeEtcd // nil: a fake etcd where no member runs
}

func (w *world) backend(*Compiled) (Backend, error) { return &fakeBackend{w}, nil }

func (w *world) commands() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.cmds...)
}

// ran reports whether cmd ran on host.
func (w *world) ran(host, cmd string) int {
	n := 0
	for _, c := range w.commands() {
		if c == host+": "+cmd {
			n++
		}
	}
	return n
}

type fakeBackend struct{ w *world }

func (b *fakeBackend) Shell(host string) (steps.Runner, error) {
	return &fakeRunner{w: b.w, host: host}, nil
}
func (b *fakeBackend) Etcd(context.Context) (steps.Etcd, error) {
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	if b.w.etcd == nil {
		// By default nothing listens on any client URL: every member
		// is stopped, as in a fake world without etcd.
		b.w.etcd = newFakeEtcd()
	}
	return b.w.etcd, nil
}
func (b *fakeBackend) Close() error { return nil }

type fakeRunner struct {
	w    *world
	host string
}

func (r *fakeRunner) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	w := r.w
	w.mu.Lock()
	w.cmds = append(w.cmds, r.host+": "+cmd)
	w.inflight++
	if w.inflight > w.maxIn {
		w.maxIn = w.inflight
	}
	h := w.handler
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.inflight--
		w.mu.Unlock()
	}()
	if cmd == "hang" { // waits for its context, like a stuck remote command
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if h == nil {
		return nil, nil
	}
	out, code, err := h(r.host, cmd)
	if err != nil {
		return []byte(out), err
	}
	if code != 0 {
		return []byte(out), &steps.ExitError{Host: r.host, Cmd: cmd, Code: code, Stderr: "stderr of " + cmd}
	}
	if ctx.Err() != nil {
		return []byte(out), ctx.Err()
	}
	return []byte(out), nil
}

func (r *fakeRunner) Upload(ctx context.Context, local, remote string, mode os.FileMode) (string, error) {
	_, err := r.Run(ctx, "upload "+local+" "+remote, nil)
	return "0000", err
}

const planHead = `version: 1
name: test-plan
cluster:
  name: test
  token: test-token
  etcdVersion: "3.5.17"
  members:
    - {name: m1, host: h1, peerURL: "http://10.0.0.1:2380", clientURL: "http://10.0.0.1:2379"}
    - {name: m2, host: h2, peerURL: "http://10.0.0.2:2380", clientURL: "http://10.0.0.2:2379"}
    - {name: m3, host: h3, peerURL: "http://10.0.0.3:2380", clientURL: "http://10.0.0.3:2379"}
hosts:
  h1: {address: 10.0.0.1}
  h2: {address: 10.0.0.2}
  h3: {address: 10.0.0.3}
ssh: {user: root, knownHosts: /nonexistent}
`

// writePlan writes a plan with the fixed head, vars and the given steps
// (YAML under steps:) into dir and returns its path.
func writePlan(t testing.TB, dir, vars, stepsYAML string) string {
	t.Helper()
	body := planHead
	if vars != "" {
		body += "vars:\n" + vars
	}
	body += "steps:\n" + stepsYAML
	path := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// compileTest loads and compiles a plan with the test registry.
func compileTest(t testing.TB, path string) *Compiled {
	t.Helper()
	p, fs := plans.Load(path, "")
	if fs.Errors() > 0 {
		t.Fatalf("plan findings: %v", fs.Err())
	}
	c, cfs := Compile(p, testRegistry())
	if c == nil {
		t.Fatalf("compile: %v", cfs.Err())
	}
	return c
}

// harness runs Apply and Resume against a world.
type harness struct {
	t        *testing.T
	dir      string
	plan     string
	stateDir string
	w        *world
	progress bytes.Buffer
}

func newHarness(t *testing.T, vars, stepsYAML string) *harness {
	dir := t.TempDir()
	h := &harness{t: t, dir: dir, w: &world{}, stateDir: filepath.Join(dir, "state")}
	h.plan = writePlan(t, dir, vars, stepsYAML)
	return h
}

func (h *harness) opts() Options {
	return Options{StateDir: h.stateDir, Backend: h.w.backend, Registry: testRegistry(), RetryDelay: -1,
		Progress: &syncWriter{w: &h.progress}}
}

func (h *harness) apply(o Options) (*Result, error) {
	h.t.Helper()
	return Apply(testCtx(h.t), compileTest(h.t, h.plan), o)
}

func (h *harness) resume(runID string, o Options) (*Result, error) {
	h.t.Helper()
	return Resume(testCtx(h.t), runID, o)
}

// testCtx bounds a test's run: a deadlock fails instead of hanging.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// statuses maps step@host to status.
func statuses(st *runstate.State) map[string]string {
	m := map[string]string{}
	for _, s := range st.Steps {
		for _, h := range s.Hosts {
			m[runstate.Key(s.ID, h.Host)] = h.Status
		}
	}
	return m
}

func wantStatuses(t *testing.T, st *runstate.State, want map[string]string) {
	t.Helper()
	got := statuses(st)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: status %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

func runErrOf(t *testing.T, err error) *RunError {
	t.Helper()
	var re *RunError
	if !errors.As(err, &re) {
		t.Fatalf("want a *RunError, got %T: %v", err, err)
	}
	return re
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// factSecret logs and records the plan's apiPassword, as a careless step
// might.
type factSecret struct{}

func (*factSecret) Describe(c *steps.Ctx, t steps.Target) []steps.Action {
	return []steps.Action{{Kind: steps.API, Cmd: "note", Run: func(ctx context.Context, env steps.Env) error {
		v := c.Plan.Vars["apiPassword"]
		env.Logf("the password is %s", v)
		return env.SetFact("note", "pw="+v)
	}}}
}

func loadPlanWithInventory(t *testing.T, plan, inv string) (*plans.Plan, plans.Findings) {
	t.Helper()
	p, fs := plans.Load(plan, inv)
	if p == nil || fs.Errors() > 0 {
		t.Fatalf("load: %v", fs.Err())
	}
	return p, fs
}
