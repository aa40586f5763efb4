package engine

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// fakeLane is fakeRun of a type that is per host (steps.LaneSafe).
type fakeLane struct {
	Cmd      string `yaml:"cmd" doc:"command"`
	destroys bool
}

func (*fakeLane) LaneSafe() bool       { return true }
func (s *fakeLane) DestroysData() bool { return s.destroys }

func (s *fakeLane) Describe(c *steps.Ctx, t steps.Target) []steps.Action {
	return (&fakeRun{Cmd: s.Cmd}).Describe(c, t)
}

// fakeLaneChecked is a destructive fakeChecked of a per-host type.
type fakeLaneChecked struct {
	Cmd string `yaml:"cmd" doc:"command"`
}

func (*fakeLaneChecked) LaneSafe() bool     { return true }
func (*fakeLaneChecked) DestroysData() bool { return true }

func (s *fakeLaneChecked) Describe(c *steps.Ctx, t steps.Target) []steps.Action {
	return (&fakeRun{Cmd: s.Cmd}).Describe(c, t)
}

func (s *fakeLaneChecked) Check(ctx context.Context, c *steps.Ctx, env steps.Env, t steps.Target) (bool, string, error) {
	return (&fakeChecked{Cmd: s.Cmd}).Check(ctx, c, env, t)
}

func edgeKinds(c *Compiled) map[string]EdgeKind {
	out := map[string]EdgeKind{}
	for _, n := range c.Nodes {
		for _, e := range n.Edges {
			out[n.ID()+"<-"+e.Need.ID()] = e.Kind
		}
	}
	return out
}

// The compile decides each need's kind; the total-loss example pipelines
// ship, check, set-aside, restore and config per host, and keeps barriers
// where the runbooks or the cluster need every host.
func TestLaneEdgesOfRestoreExample(t *testing.T) {
	c, fs := Load("../examples/restore-all-from-snapshot.yaml", "")
	if c == nil {
		t.Fatal(fs)
	}
	want := map[string]EdgeKind{
		"stop-etcd<-record":          EdgeBarrier, // check-quorum runs once
		"stop-etcd<-stop-apiserver":  EdgeBarrier, // kube-apiserver everywhere first
		"set-aside<-stop-etcd":       EdgeLane,
		"check-snapshot<-ship":       EdgeLane,
		"restore<-set-aside":         EdgeLane,
		"restore<-check-snapshot":    EdgeLane,
		"config<-restore":            EdgeLane,
		"start<-config":              EdgeBarrier, // members start together
		"healthy<-start":             EdgeBarrier,
		"same-data<-healthy":         EdgeBarrier,
		"start-apiserver<-same-data": EdgeBarrier,
	}
	got := edgeKinds(c)
	if len(got) != len(want) {
		t.Errorf("edges %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}

// barrier: true on a step turns its lanes into barriers.
func TestBarrierOverride(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: lane, on: all, with: {cmd: a}}
  - {id: b, type: lane, on: all, needs: [a], with: {cmd: b}}
  - {id: c, type: lane, on: all, needs: [a], barrier: true, with: {cmd: c}}
  - {id: d, type: run, on: all, needs: [a], with: {cmd: d}}
`)
	got := edgeKinds(compileTest(t, h.plan))
	want := map[string]EdgeKind{"b<-a": EdgeLane, "c<-a": EdgeBarrier, "d<-a": EdgeBarrier}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}

// With lanes, h1 goes through a chain of three steps while h2 is still
// held in the first: no wave barrier. Deterministic: h2's a is released
// only once h1's c has run.
func TestLanesPipeline(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: lane, on: all, with: {cmd: a}}
  - {id: b, type: lane, on: all, needs: [a], with: {cmd: b}}
  - {id: c, type: lane, on: all, needs: [b], with: {cmd: c}}
`)
	h1Through := make(chan struct{})
	var once sync.Once
	h.w.handler = func(host, cmd string) (string, int, error) {
		switch {
		case host == "h2" && cmd == "a":
			<-h1Through
		case host == "h1" && cmd == "c":
			once.Do(func() { close(h1Through) })
		}
		return "", 0, nil
	}
	res, err := h.apply(h.opts())
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, h.progress.String())
	}
	cmds := h.w.commands()
	pos := map[string]int{}
	for i, c := range cmds {
		pos[c] = i
	}
	if pos["h1: c"] > pos["h2: b"] {
		t.Errorf("h2's b ran before h1's c although h2's a was held until then: %v", cmds)
	}
	wantStatuses(t, res.State, map[string]string{"a@h2": "done", "c@h1": "done", "c@h2": "done", "c@h3": "done"})
}

// A barrier edge waits for every host: a need that fails on h2 skips the
// step on every host; the same need as a lane skips it on h2 only.
func TestBarrierWaitsForEveryHost(t *testing.T) {
	for name, tc := range map[string]struct {
		barrier string
		want    map[string]string
	}{
		"lane":    {"", map[string]string{"b@h1": "done", "b@h2": "skipped", "b@h3": "done"}},
		"barrier": {", barrier: true", map[string]string{"b@h1": "skipped", "b@h2": "skipped", "b@h3": "skipped"}},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, "", `
  - {id: a, type: lane, on: all, with: {cmd: a}}
  - {id: b, type: lane, on: all, needs: [a]`+tc.barrier+`, with: {cmd: b}}
`)
			h.w.handler = func(host, cmd string) (string, int, error) {
				if host == "h2" && cmd == "a" {
					return "", 3, nil
				}
				return "", 0, nil
			}
			res, err := h.apply(h.opts())
			if re := runErrOf(t, err); len(re.Failed) != 1 || re.Failed[0].Step != "a" {
				t.Fatalf("want a@h2 as the one root cause: %v", err)
			}
			wantStatuses(t, res.State, tc.want)
		})
	}
}

// Once a step-host has failed, no destructive step-host starts anywhere,
// lane or not; non-destructive ones in a lane that is fine go on.
func TestFailureStopsNewDestructiveSteps(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: lane, on: all, with: {cmd: a}}
  - {id: look, type: lane, on: all, needs: [a], with: {cmd: look}}
  - {id: wipe, type: lane-destroy, on: all, needs: [a], with: {cmd: wipe}}
`)
	recorded := make(chan struct{})
	var once sync.Once
	rootCauseRecorded = func() { once.Do(func() { close(recorded) }) }
	t.Cleanup(func() { rootCauseRecorded = nil })
	h.w.handler = func(host, cmd string) (string, int, error) {
		switch {
		case host == "h2" && cmd == "a":
			return "", 3, nil
		case cmd == "a":
			// h1 and h3 finish a only once h2's failure is recorded.
			<-recorded
		}
		return "", 0, nil
	}
	res, err := h.apply(h.opts())
	re := runErrOf(t, err)
	if len(re.Failed) != 1 || re.Failed[0].Step != "a" || re.Failed[0].Host != "h2" {
		t.Fatalf("want a@h2 as the one root cause: %v", err)
	}
	for _, host := range []string{"h1", "h2", "h3"} {
		if h.w.ran(host, "wipe") != 0 {
			t.Errorf("wipe ran on %s after a@h2 failed", host)
		}
	}
	wantStatuses(t, res.State, map[string]string{"look@h1": "done", "look@h3": "done", "look@h2": "skipped",
		"wipe@h1": "skipped", "wipe@h2": "skipped", "wipe@h3": "skipped"})
	if hs := res.State.Find("wipe", "h1"); !strings.Contains(hs.Why, "a on h2 failed") {
		t.Errorf("why: %q", hs.Why)
	}
	if res.State.Outcome != runstate.OutcomeFailed {
		t.Errorf("outcome %s", res.State.Outcome)
	}
}

// A kill mid-lane: h2 and h3 went through their whole lane while h1 was in
// its destructive middle step. Resume probes h1's step, runs the rest of
// h1's lane, and repeats nothing done.
func TestResumeAfterKillMidLane(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: lane, on: all, with: {cmd: a}}
  - {id: b, type: lane-checked, on: all, needs: [a], with: {cmd: b}}
  - {id: c, type: lane, on: all, needs: [b], with: {cmd: c}}
`)
	others := make(chan string, 2)
	h.w.handler = func(host, cmd string) (string, int, error) {
		switch {
		case host == "h1" && cmd == "a":
			// h1 starts b only when h2 and h3 are through c.
			<-others
			<-others
		case host != "h1" && cmd == "c":
			others <- host
		}
		return "", 0, nil
	}
	runID := crashAt(t, h, "h1", "b")
	st, err := (&runstate.Store{Dir: h.stateDir}).Load(runID)
	if err != nil {
		t.Fatal(err)
	}
	wantStatuses(t, st, map[string]string{"a@h1": "done", "b@h1": "running", "c@h1": "pending", "c@h2": "done", "c@h3": "done"})

	h.w = &world{} // check b passes: b@h1 was done before the kill
	res, err := h.resume(runID, h.opts())
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, h.progress.String())
	}
	if got := h.w.commands(); len(got) != 2 || got[0] != "h1: check b" || got[1] != "h1: c" {
		t.Errorf("resume ran %v, want only h1's check of b and h1's c", got)
	}
	wantStatuses(t, res.State, map[string]string{"b@h1": "done", "c@h1": "done"})
}

// A destructive step-host left running by a killed session keeps that
// record when a failure in the resumed session stops new starts: the next
// resume must still probe it.
func TestFailureKeepsRunningRecord(t *testing.T) {
	h := newHarness(t, "", `
  - {id: g, type: lane, on: all, with: {cmd: g}}
  - {id: wipe, type: lane-destroy, on: h1, needs: [g], with: {cmd: wipe}}
  - {id: f, type: run, on: h2, with: {cmd: f}}
`)
	runID := crashAt(t, h, "h1", "wipe")
	// As if g@h1 had not been recorded done: the resume runs it again
	// before it reaches wipe@h1.
	store := &runstate.Store{Dir: h.stateDir}
	st, err := store.Load(runID)
	if err != nil {
		t.Fatal(err)
	}
	st.Find("g", "h1").Status = runstate.StatusPending
	st.Find("f", "h2").Status = runstate.StatusPending
	b, _ := json.Marshal(st)
	if err := runstate.WriteFileAtomic(filepath.Join(h.stateDir, "runs", runID, "state.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	recorded := make(chan struct{})
	var once sync.Once
	rootCauseRecorded = func() { once.Do(func() { close(recorded) }) }
	t.Cleanup(func() { rootCauseRecorded = nil })
	h.w = &world{handler: func(host, cmd string) (string, int, error) {
		switch cmd {
		case "f":
			return "", 3, nil
		case "g":
			if host == "h1" {
				<-recorded
			}
		}
		return "", 0, nil
	}}
	res, err := h.resume(runID, h.opts())
	if re := runErrOf(t, err); len(re.Failed) != 1 || re.Failed[0].Step != "f" {
		t.Fatalf("want f@h2 as the one root cause: %v", err)
	}
	if h.w.ran("h1", "wipe")+h.w.ran("h1", "check wipe") != 0 {
		t.Error("wipe was touched after f failed")
	}
	wantStatuses(t, res.State, map[string]string{"g@h1": "done", "wipe@h1": "running", "f@h2": "failed"})
}
