package runstate

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A reader never sees a partial state file, whatever moment it reads at.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	versions := [][]byte{bytes.Repeat([]byte("A"), 1<<20), bytes.Repeat([]byte("B"), 3<<19)}
	if err := WriteFileAtomic(path, versions[0], 0o600); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := WriteFileAtomic(path, versions[i%2], 0o600); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < 300; i++ {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, versions[0]) && !bytes.Equal(b, versions[1]) {
			t.Fatalf("read %d bytes that are neither version", len(b))
		}
	}
	close(stop)
	wg.Wait()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
}

func TestRunIDsSortByTime(t *testing.T) {
	a := NewRunID(time.Date(2026, 11, 22, 3, 15, 0, 0, time.UTC))
	b := NewRunID(time.Date(2026, 11, 22, 3, 15, 1, 0, time.UTC))
	if !strings.HasPrefix(a, "20261122T031500Z-") || len(a) != len("20261122T031500Z-3f2a") || a >= b {
		t.Errorf("run ids %s, %s", a, b)
	}
	for _, bad := range []string{"", "..", "a/b", "../x"} {
		if validRunID(bad) {
			t.Errorf("%q accepted as a run id", bad)
		}
	}
}

// Concurrent updates share checkpoint writes, yet each returns only once
// a checkpoint on disk holds its own change.
func TestConcurrentUpdatesAreDurableOnReturn(t *testing.T) {
	store, run := openTestRun(t, "r1")
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("k%d", i)
			if err := run.Update(func(s *State) { s.Facts[key] = "v" }); err != nil {
				errs <- err
				return
			}
			onDisk, err := store.Load("r1")
			if err != nil {
				errs <- err
				return
			}
			if onDisk.Facts[key] != "v" {
				errs <- fmt.Errorf("Update of %s returned before a checkpoint held it", key)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// openTestRun creates run id of a one-step, one-host run in a fresh state dir.
func openTestRun(tb testing.TB, id string) (*Store, *Run) {
	tb.Helper()
	dir := tb.TempDir()
	store, err := OpenStore(filepath.Join(dir, "state"))
	if err != nil {
		tb.Fatal(err)
	}
	st := &State{Format: StateFormat, RunID: id, PlanName: "p", Outcome: OutcomeRunning}
	st.Steps = []*StepState{{ID: "a", Type: "run", Hosts: []*HostState{{Host: "h1", Status: StatusPending}}}}
	run, err := store.Create(st, nil, time.Now)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { run.Close() })
	return store, run
}

// BenchmarkCheckpoint is one step-host transition written to disk: the
// state file replaced atomically (temp, fsync, rename, fsync dir).
func BenchmarkCheckpoint(b *testing.B) {
	_, run := openTestRun(b, "bench")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := run.Update(func(s *State) { s.Steps[0].Hosts[0].Attempts = i }); err != nil {
			b.Fatal(err)
		}
	}
}
