package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
)

func TestLockRefusesSecondRun(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: run, on: h1, with: {cmd: a}}
`)
	store, err := runstate.OpenStore(h.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	held, err := store.Lock("20261122T031500Z-aaaa", "apply")
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.apply(h.opts())
	var le *runstate.LockedError
	if !errors.As(err, &le) || le.Owner == nil || le.Owner.PID != os.Getpid() || le.Owner.RunID != "20261122T031500Z-aaaa" {
		t.Fatalf("want LockedError with owner info, got %v", err)
	}
	if len(h.w.commands()) != 0 {
		t.Error("a locked apply ran commands")
	}
	// unlock --force refuses while the holder lives.
	if _, err := store.Unlock(); !errors.As(err, &le) {
		t.Errorf("unlock of a held lock: %v", err)
	}
	if _, live := store.LockOwner(); !live {
		t.Error("LockOwner: lock not seen as held")
	}
	if err := held.Release(); err != nil {
		t.Fatal(err)
	}
	if _, live := store.LockOwner(); live {
		t.Error("LockOwner: lock still held after release")
	}
	if _, err := store.Unlock(); err != nil {
		t.Errorf("unlock of a free lock: %v", err)
	}
	if _, err := h.apply(h.opts()); err != nil {
		t.Errorf("apply after release: %v", err)
	}
}

func TestResumeRefusesChangedPlan(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: run, on: h1, with: {cmd: a}}
`)
	h.w.handler = func(string, string) (string, int, error) { return "", 1, nil }
	res, err := h.apply(h.opts())
	runErrOf(t, err)

	// Same bytes: resumable. One byte more: stale.
	orig := readFile(t, h.plan)
	if err := os.WriteFile(h.plan, []byte(orig+"# edited\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = h.resume(res.RunID, h.opts())
	var se *StaleError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "changed since the run began") {
		t.Fatalf("want StaleError, got %v", err)
	}
	if err := os.Remove(h.plan); err != nil {
		t.Fatal(err)
	}
	if _, err = h.resume(res.RunID, h.opts()); !errors.As(err, &se) {
		t.Fatalf("missing plan: want StaleError, got %v", err)
	}
	if err := os.WriteFile(h.plan, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	h.w.handler = nil
	if _, err := h.resume(res.RunID, h.opts()); err != nil {
		t.Fatalf("restored plan: %v", err)
	}
	if len(h.w.commands()) != 2 {
		t.Errorf("commands: %v", h.w.commands())
	}
}

func TestResumeRefusesChangedInventory(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.yaml")
	head := strings.SplitN(planHead, "cluster:", 2)
	// The plan's cluster/hosts/ssh move to the inventory.
	if err := os.WriteFile(inv, []byte("cluster:"+head[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	plan := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(plan, []byte(head[0]+"steps:\n  - {id: a, type: run, on: h1, with: {cmd: a}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := &world{handler: func(string, string) (string, int, error) { return "", 1, nil }}
	p, fs := loadPlanWithInventory(t, plan, inv)
	c, cfs := Compile(p, testRegistry())
	if c == nil {
		t.Fatal(fs, cfs)
	}
	o := Options{StateDir: filepath.Join(dir, "state"), Inventory: inv, Backend: w.backend, Registry: testRegistry(), RetryDelay: -1}
	res, err := Apply(testCtx(t), c, o)
	runErrOf(t, err)
	st, _ := (&runstate.Store{Dir: o.StateDir}).Load(res.RunID)
	if st.Inventory != inv {
		t.Errorf("inventory not recorded: %q", st.Inventory)
	}
	b := readFile(t, inv)
	if err := os.WriteFile(inv, []byte(strings.Replace(b, "10.0.0.1}", "10.0.0.9}", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	var se *StaleError
	if _, err := Resume(testCtx(t), res.RunID, o); !errors.As(err, &se) {
		t.Fatalf("want StaleError, got %v", err)
	}
}

func TestResumeSelectorsAreChecked(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: run, on: h1, with: {cmd: a}}
`)
	h.w.handler = func(string, string) (string, int, error) { return "", 1, nil }
	res, err := h.apply(h.opts())
	runErrOf(t, err)
	for _, sel := range []string{"nope", "a@h9"} {
		o := h.opts()
		o.Rerun = []Selector{ParseSelector(sel)}
		var ue *UsageError
		if _, err := h.resume(res.RunID, o); !errors.As(err, &ue) {
			t.Errorf("--rerun %s: %v", sel, err)
		}
	}
	o := h.opts()
	o.Approve = []string{"a"}
	if _, err := h.resume(res.RunID, o); err == nil || err.Error() != "--approve a: step a is a run step, not an approve step" {
		t.Errorf("--approve of a step that asks nothing: %v", err)
	}
	var ns *runstate.NoStateError
	if _, err := h.resume("20000101T000000Z-0000", h.opts()); !errors.As(err, &ns) {
		t.Errorf("unknown run: %v", err)
	}
}

// Two runs started in the same second: the latest is the one created last,
// whatever their random id suffixes say.
func TestLatestWithinOneSecond(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: run, on: h1, with: {cmd: a}}
`)
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	var ids []string
	for i := 0; i < 6; i++ {
		o := h.opts()
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		o.now = func() time.Time { return at }
		res, err := h.apply(o)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.RunID)
	}
	store, id, err := runstate.LocateRun(h.stateDir, "")
	if err != nil {
		t.Fatal(err)
	}
	if id != ids[len(ids)-1] {
		t.Errorf("latest of %v is %s, want the last created, %s", ids, id, ids[len(ids)-1])
	}
	if all, _ := store.Runs(); len(all) != 6 {
		t.Errorf("runs: %v", all)
	}
}
