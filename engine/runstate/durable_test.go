package runstate

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// A lazy write keeps the last durable checkpoint reachable as
// state.json.durable; a durable one makes state.json the durable copy
// again and drops the other.
func TestLazyWritesKeepTheDurableCheckpoint(t *testing.T) {
	store, run := openTestRun(t, "r1")
	state := filepath.Join(run.Dir(), stateFile)
	durable := state + durableSuffix
	if _, err := os.Stat(durable); !os.IsNotExist(err) {
		t.Fatalf("after the first (durable) checkpoint, %s exists: %v", durable, err)
	}
	for _, k := range []string{"lazy1", "lazy2"} {
		if err := run.UpdateAs(Lazy, func(s *State) { s.Facts[k] = "v" }); err != nil {
			t.Fatal(err)
		}
	}
	onDisk := loadFile(t, state)
	if onDisk.Facts["lazy1"] != "v" || onDisk.Facts["lazy2"] != "v" {
		t.Errorf("state.json lacks the lazy changes: %v", onDisk.Facts)
	}
	kept := loadFile(t, durable)
	if len(kept.Facts) != 0 {
		t.Errorf("state.json.durable holds lazy changes %v; want the first checkpoint's none", kept.Facts)
	}
	if st := run.IOStats(); st.Durables != 1 || st.Lazies != 2 {
		t.Errorf("IOStats %+v: want 1 durable and 2 lazy writes", st)
	}

	if err := run.UpdateAs(Durable, func(s *State) { s.Facts["durable"] = "v" }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(durable); !os.IsNotExist(err) {
		t.Errorf("after a durable checkpoint, %s still exists: %v", durable, err)
	}
	if err := run.UpdateAs(Lazy, func(s *State) { s.Facts["lazy3"] = "v" }); err != nil {
		t.Fatal(err)
	}
	kept = loadFile(t, durable)
	if kept.Facts["durable"] != "v" || kept.Facts["lazy3"] != "" {
		t.Errorf("state.json.durable facts %v: want those of the durable write, without lazy3", kept.Facts)
	}
	st, err := store.Load("r1")
	if err != nil || st.Recovered != "" || st.Facts["lazy3"] != "v" {
		t.Errorf("Load with a good state.json: %v, recovered %q, facts %v", err, st.Recovered, st.Facts)
	}
}

// After a power loss, state.json may be empty, torn or (not with our
// writes, but by hand) gone: Load falls back to the last durable
// checkpoint and says so.
func TestLoadFallsBackToTheDurableCheckpoint(t *testing.T) {
	cases := map[string]func(path string) error{
		"empty":   func(p string) error { return os.WriteFile(p, nil, 0o600) },
		"zeroes":  func(p string) error { return os.WriteFile(p, make([]byte, 300), 0o600) },
		"torn":    func(p string) error { b, _ := os.ReadFile(p); return os.WriteFile(p, b[:len(b)/2], 0o600) },
		"missing": os.Remove,
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			store, run := openTestRun(t, "r1")
			if err := run.UpdateAs(Durable, func(s *State) { s.Facts["kept"] = "v" }); err != nil {
				t.Fatal(err)
			}
			if err := run.UpdateAs(Lazy, func(s *State) { s.Facts["lost"] = "v" }); err != nil {
				t.Fatal(err)
			}
			if err := damage(filepath.Join(run.Dir(), stateFile)); err != nil {
				t.Fatal(err)
			}
			st, err := store.Load("r1")
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if st.Facts["kept"] != "v" || st.Facts["lost"] != "" {
				t.Errorf("facts %v: want the durable checkpoint's", st.Facts)
			}
			if !strings.Contains(st.Recovered, "state.json.durable") {
				t.Errorf("Recovered %q does not name the file read", st.Recovered)
			}
			if ids, err := store.Runs(); err != nil || len(ids) != 1 {
				t.Errorf("Runs: %v %v", ids, err)
			}
			if _, id, err := LocateRun("", run.Dir()); err != nil || id != "r1" {
				t.Errorf("LocateRun of the run dir: %q %v", id, err)
			}
		})
	}
}

// Without a durable copy to fall back on, a damaged state.json is still
// an error, not an empty run.
func TestLoadWithoutDurableCopyFails(t *testing.T) {
	store, run := openTestRun(t, "r1")
	if err := os.WriteFile(filepath.Join(run.Dir(), stateFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := store.Load("r1"); err == nil {
		t.Errorf("Load of an empty state.json gave %+v", st)
	}
}

// Sync makes the lazy changes durable, once.
func TestSyncMakesLazyChangesDurable(t *testing.T) {
	_, run := openTestRun(t, "r1")
	if err := run.UpdateAs(Lazy, func(s *State) { s.Facts["k"] = "v" }); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := run.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if st := run.IOStats(); st.Durables != 2 || st.Lazies != 1 {
		t.Errorf("IOStats %+v: want 2 durable writes (the first, the sync) and 1 lazy", st)
	}
	if _, err := os.Stat(filepath.Join(run.Dir(), stateFile+durableSuffix)); !os.IsNotExist(err) {
		t.Errorf("after Sync state.json.durable exists: %v", err)
	}
	if got := loadFile(t, filepath.Join(run.Dir(), stateFile)); got.Facts["k"] != "v" {
		t.Errorf("state.json facts %v", got.Facts)
	}
}

// A lazy update, too, returns only once state.json holds it: a killed
// process loses nothing (the kernel has the file), with updaters racing.
func TestConcurrentLazyUpdatesAreWrittenOnReturn(t *testing.T) {
	store, run := openTestRun(t, "r1")
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("k%d", i)
			d := Lazy
			if i%5 == 0 {
				d = Durable
			}
			if err := run.UpdateAs(d, func(s *State) { s.Facts[key] = "v" }); err != nil {
				errs <- err
				return
			}
			onDisk, err := store.Load("r1")
			if err != nil {
				errs <- err
				return
			}
			if onDisk.Recovered != "" || onDisk.Facts[key] != "v" {
				errs <- fmt.Errorf("update of %s returned before state.json held it (recovered %q)", key, onDisk.Recovered)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func loadFile(t *testing.T, path string) *State {
	t.Helper()
	st, err := readState(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return st
}

// BenchmarkLazyCheckpoint is BenchmarkCheckpoint without the fsyncs; its
// ratio to that one is what a lazy transition saves.
func BenchmarkLazyCheckpoint(b *testing.B) {
	_, run := openTestRun(b, "bench")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := run.UpdateAs(Lazy, func(s *State) { s.Steps[0].Hosts[0].Attempts = i }); err != nil {
			b.Fatal(err)
		}
	}
}

// Evidence files are written at once and synced together: each is in
// place on return, and SyncEvidence takes every one written since the last
// call.
func TestEvidenceWrittenThenSyncedTogether(t *testing.T) {
	store, run := openTestRun(t, "r1")
	for _, name := range []string{"a.json", "b.md"} {
		if err := run.WriteEvidence(name, []byte(name)); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(store.EvidenceDir("r1"), name)); err != nil || string(b) != name {
			t.Errorf("%s after WriteEvidence: %q %v", name, b, err)
		}
	}
	if len(run.evUnsynced) != 2 {
		t.Fatalf("unsynced evidence %v, want the 2 files", run.evUnsynced)
	}
	if err := run.SyncEvidence(); err != nil {
		t.Fatal(err)
	}
	if len(run.evUnsynced) != 0 {
		t.Errorf("after SyncEvidence, still unsynced: %v", run.evUnsynced)
	}
	if err := run.WriteEvidence("../x", nil); err == nil {
		t.Error("an evidence name with a path was accepted")
	}
}

// evidenceSizes are the sizes of a total-loss session's evidence files
// (facts before and after, evidence.json, summary.md, the journal copy).
var evidenceSizes = []int{5760, 9170, 14227, 3620, 37862}

// BenchmarkEvidenceOneByOne is the session's evidence written the way it
// was before SyncEvidence: each file fsync'd (with its dir) in turn.
func BenchmarkEvidenceOneByOne(b *testing.B) {
	store, run := openTestRun(b, "bench")
	dir := store.EvidenceDir(run.ID())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, n := range evidenceSizes {
			if err := WriteFileAtomic(filepath.Join(dir, fmt.Sprintf("f%d", j)), make([]byte, n), 0o600); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkEvidenceTogether is the same files written, then synced
// together (writeEvidence now).
func BenchmarkEvidenceTogether(b *testing.B) {
	_, run := openTestRun(b, "bench")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, n := range evidenceSizes {
			if err := run.WriteEvidence(fmt.Sprintf("f%d", j), make([]byte, n)); err != nil {
				b.Fatal(err)
			}
		}
		if err := run.SyncEvidence(); err != nil {
			b.Fatal(err)
		}
	}
}
