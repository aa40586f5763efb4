package engine

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
)

func TestMain(m *testing.M) {
	// Runs applied by tests go into a throwaway run index, not the user's.
	dir, err := os.MkdirTemp("", "etcd-rescue-index-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_STATE_HOME", dir)
	// The hosts of these tests are this machine: their run lock is a
	// file of this test binary, not /run/etcd-rescue.lock.
	os.Setenv(HostLockFileEnv, filepath.Join(dir, "host.lock"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// chdir changes the working directory for the rest of the test.
func chdir(t *testing.T, dir string) {
	t.Helper()
	old, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chdir(old) })
}

// resume, status and runs find a run apply put beside its plan from any
// working directory, through the run index.
func TestRunIndexFindsRunsFromAnyDirectory(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	h := newHarness(t, "", `
  - {id: a, type: run, on: h1, with: {cmd: a}}
`)
	h.w.handler = func(string, string) (string, int, error) { return "", 1, nil }
	o := h.opts()
	o.StateDir = "" // the default: .etcd-rescue beside the plan
	first, err := h.apply(o)
	runErrOf(t, err)
	second, err := h.apply(o)
	runErrOf(t, err)
	wantDir := filepath.Join(filepath.Dir(h.plan), runstate.DefaultStateDir)

	chdir(t, t.TempDir()) // no ./.etcd-rescue here
	for _, c := range []struct{ arg, want string }{{first.RunID, first.RunID}, {"", second.RunID}} {
		store, id, err := runstate.LocateRun("", c.arg)
		if err != nil {
			t.Fatalf("LocateRun(%q): %v", c.arg, err)
		}
		if store.Dir != wantDir || id != c.want {
			t.Errorf("LocateRun(%q) = %s %s, want %s %s", c.arg, store.Dir, id, wantDir, c.want)
		}
	}
	runs, err := runstate.IndexedRuns()
	if err != nil || len(runs) != 2 || runs[0].RunID != first.RunID || runs[1].Plan != h.plan {
		t.Errorf("IndexedRuns = %+v, %v", runs, err)
	}

	// resume by id from here completes the run.
	h.w.handler = nil
	o.StateDir = ""
	if _, err := h.resume(first.RunID, o); err != nil {
		t.Fatalf("resume from another directory: %v", err)
	}

	// The working directory plays no part: a ./.etcd-rescue, even one
	// holding a newer run, does not hide the index.
	local, err := runstate.OpenStore(runstate.DefaultStateDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(local.Dir, "runs", "29991231T000000Z-ffff"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(local.Dir, "runs", "29991231T000000Z-ffff", "state.json"), []byte(`{"format":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{second.RunID, ""} {
		if store, id, err := runstate.LocateRun("", arg); err != nil || id != second.RunID || store.Dir != wantDir {
			t.Errorf("LocateRun(%q) with a ./.etcd-rescue: %s %v", arg, id, err)
		}
	}

	// Entries whose state dir is gone are pruned; an unknown run says
	// where it looked.
	if err := os.RemoveAll(wantDir); err != nil {
		t.Fatal(err)
	}
	runs, err = runstate.IndexedRuns()
	if err != nil || len(runs) != 0 {
		t.Errorf("after removing the state dir: %+v %v", runs, err)
	}
	_, _, err = runstate.LocateRun("", first.RunID)
	var ns *runstate.NoStateError
	if !errors.As(err, &ns) || err.Error() != "no run "+first.RunID+" in the run index "+runstate.IndexFile() {
		t.Errorf("want a NoStateError naming the index, got %v", err)
	}
}
