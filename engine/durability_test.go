package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// Which "running" transitions are written durably, on the real step types:
// those a resume would otherwise apply again without a Check.
func TestRunningDurability(t *testing.T) {
	for name, tc := range map[string]struct {
		params steps.Step
		want   runstate.Durability
	}{
		"stop-service":                      {&steps.StopService{}, runstate.Lazy},
		"start-service":                     {&steps.StartService{}, runstate.Lazy},
		"snapshot-copy":                     {&steps.SnapshotCopy{}, runstate.Lazy},
		"wipe-dir":                          {&steps.WipeDir{}, runstate.Durable},
		"restore":                           {&steps.Restore{}, runstate.Durable},
		"member-add":                        {&steps.MemberAdd{}, runstate.Durable},
		"member-remove":                     {&steps.MemberRemove{}, runstate.Durable},
		"force-new-cluster":                 {&steps.ForceNewCluster{}, runstate.Durable},
		"exec":                              {&steps.Exec{Command: "x"}, runstate.Lazy},
		"exec destructive":                  {&steps.Exec{Command: "x", Destructive: true}, runstate.Durable},
		"exec destructive with creates":     {&steps.Exec{Command: "x", Destructive: true, Creates: "/f"}, runstate.Lazy},
		"exec destructive with unless":      {&steps.Exec{Command: "x", Destructive: true, Unless: "true"}, runstate.Lazy},
		"fake destructive without a check":  {&fakeRun{destroys: true}, runstate.Durable},
		"fake destructive, check not first": {&fakeChecked{destroys: true}, runstate.Durable},
	} {
		if got := runningDurability(&Target{Params: tc.params}); got != tc.want {
			t.Errorf("%s: running is durable=%v, want %v", name, got, tc.want)
		}
	}
}

// powerLossAt runs apply and keeps what a power loss while cmd ran on host
// could leave at worst: the last durable checkpoint (state.json.durable
// while state.json holds lazy writes, else state.json), and an empty
// state.json beside it (a rename committed before its data).
func powerLossAt(t *testing.T, h *harness, host, cmd string) (runID string, saved *runstate.State) {
	t.Helper()
	var statePath string
	var b []byte
	prev := h.w.handler
	h.w.handler = func(hh, c string) (string, int, error) {
		if hh == host && c == cmd && b == nil {
			var err error
			if b, err = os.ReadFile(statePath + ".durable"); err != nil {
				b = []byte(readFile(t, statePath))
			}
		}
		if prev != nil {
			return prev(hh, c)
		}
		return "", 0, nil
	}
	o := h.opts()
	o.OnStart = func(r *runstate.Run) { statePath = filepath.Join(r.Dir(), "state.json") }
	res, _ := h.apply(o)
	if b == nil {
		t.Fatalf("%s never ran on %s", cmd, host)
	}
	if err := os.WriteFile(statePath+".durable", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.w.handler = prev
	st, err := (&runstate.Store{Dir: h.stateDir}).Load(res.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Recovered == "" {
		t.Error("Load of an empty state.json did not say it read the durable checkpoint")
	}
	return res.RunID, st
}

// After a power loss, a destructive step-host is never applied again
// blindly: its "running" was durable before its first command, so the
// resume finds it and asks the operator, wherever the loss struck after it
// began. Lazily recorded step-hosts are applied again.
func TestPowerLossThenResume(t *testing.T) {
	stepsYAML := `
  - {id: a, type: run, on: all, with: {cmd: a}}
  - {id: b, type: destroy, on: h1, needs: [a], with: {cmd: b}}
  - {id: c, type: run, on: all, needs: [b], with: {cmd: c}}
`
	for name, tc := range map[string]struct {
		host, cmd string
		wantWait  bool // the resume stops at b for the operator
	}{
		"while the non-destructive a runs":        {host: "h1", cmd: "a"},
		"while the destructive b runs":            {host: "h1", cmd: "b", wantWait: true},
		"while c runs, after b was done (lazily)": {host: "h2", cmd: "c", wantWait: true},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, "", stepsYAML)
			runID, st := powerLossAt(t, h, tc.host, tc.cmd)
			if got := st.Find("b", "h1").Status; tc.wantWait && got != runstate.StatusRunning {
				t.Fatalf("b@h1 is %s in the durable checkpoint, want running", got)
			}
			h.w = &world{}
			h.progress.Reset()
			res, err := h.resume(runID, h.opts())
			want := 0
			if !tc.wantWait {
				want = 1 // b had not begun: applied now, once
			}
			if n := h.w.ran("h1", "b"); n != want {
				t.Errorf("b applied %d time(s) by the resume, want %d", n, want)
			}
			if !strings.Contains(h.progress.String(), "state.json.durable") {
				t.Errorf("the resume did not say it read the durable checkpoint:\n%s", h.progress.String())
			}
			if tc.wantWait {
				re := runErrOf(t, err)
				if len(re.Waiting) != 1 || re.Waiting[0].Step != "b" || len(re.Failed) > 0 {
					t.Fatalf("want waiting on b: %+v: %v", re, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("resume: %v\n%s", err, h.progress.String())
			}
			wantStatuses(t, res.State, map[string]string{"a@h1": "done", "b@h1": "done", "c@h1": "done", "c@h2": "done"})
			journal := readFile(t, filepath.Join(h.stateDir, "runs", runID, "events.jsonl"))
			if !strings.Contains(journal, `"status":"recovered"`) {
				t.Error("the journal has no line saying the durable checkpoint was read")
			}
		})
	}
}

// factThenRun records a fact and then runs a command on its host, as
// restore records its revision bump before it restores.
type factThenRun struct {
	Cmd string `yaml:"cmd" doc:"command"`
}

func (*factThenRun) DestroysData() bool { return true }

func (s *factThenRun) Describe(c *steps.Ctx, t steps.Target) []steps.Action {
	return []steps.Action{{Host: t.Name(), Kind: steps.Shell, Cmd: s.Cmd, Run: func(ctx context.Context, env steps.Env) error {
		if err := env.SetFact("bump", "1000"); err != nil {
			return err
		}
		r, err := env.Shell(t.Name())
		if err != nil {
			return err
		}
		_, err = r.Run(ctx, s.Cmd, nil)
		return err
	}}}
}

// A destructive step-host's fact is durable before its next command: a
// power loss cannot keep what it did and lose the value it did it with.
func TestDestructiveFactDurableBeforeNextCommand(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: run, on: h1, with: {cmd: a}}
  - {id: b, type: fact-then-run, on: h1, needs: [a], with: {cmd: b}}
`)
	_, st := powerLossAt(t, h, "h1", "b")
	if st.Facts["bump"] != "1000" {
		t.Errorf("durable checkpoint at b's command lacks the fact it recorded: %v", st.Facts)
	}
}
