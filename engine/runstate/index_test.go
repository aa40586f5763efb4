package runstate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newRun creates a run with a checkpoint in the state dir dir.
func newRun(t *testing.T, dir, id string) {
	t.Helper()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Create(&State{Format: StateFormat, RunID: id, Outcome: OutcomeRunning}, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}

func indexLines(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(IndexFile())
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// Reading the index prunes the entries whose state dir is gone, keeps the
// others (also one whose run alone is gone, and lines it cannot read), and
// runs recorded afterwards are appended to the pruned index.
func TestIndexPrunesEntriesWhoseStateDirIsGone(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	base := t.TempDir()
	kept, gone := filepath.Join(base, "kept"), filepath.Join(base, "gone")
	newRun(t, kept, "20261201T000000Z-0001")
	newRun(t, gone, "20261201T000000Z-0002")
	newRun(t, kept, "20261201T000000Z-0003")
	for _, e := range []IndexEntry{
		{"20261201T000000Z-0001", kept, "/p/a.yaml", ""},
		{"20261201T000000Z-0002", gone, "/p/b.yaml", ""},
		{"20261201T000000Z-0003", kept, "/p/a.yaml", ""},
		{"20261201T000000Z-0004", kept, "/p/a.yaml", ""}, // its run dir never existed
	} {
		if err := RecordRun(e.RunID, e.StateDir, e.Plan); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(IndexFile(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("a line of a newer version\twith\tmore\tfields\n")
	f.Close()

	if err := os.RemoveAll(gone); err != nil {
		t.Fatal(err)
	}
	runs, err := IndexedRuns()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.RunID)
	}
	if got := strings.Join(ids, " "); got != "20261201T000000Z-0001 20261201T000000Z-0003" {
		t.Errorf("listed %s", got)
	}
	lines := indexLines(t)
	if len(lines) != 4 || strings.Contains(strings.Join(lines, "\n"), gone) {
		t.Errorf("index after the prune:\n%s", strings.Join(lines, "\n"))
	}
	if fi, err := os.Stat(IndexFile()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("index mode after the prune: %v %v", fi.Mode(), err)
	}

	newRun(t, kept, "20261201T000000Z-0005")
	if err := RecordRun("20261201T000000Z-0005", kept, "/p/a.yaml"); err != nil {
		t.Fatal(err)
	}
	if _, id, err := LocateRun("", ""); err != nil || id != "20261201T000000Z-0005" {
		t.Errorf("latest after the prune: %s %v", id, err)
	}
}

// A run recorded while a prune rewrites the index is not lost: the append
// waits for the prune's lock, then finds the file replaced and appends to
// the new one.
func TestIndexAppendDuringPruneIsKept(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	dir := t.TempDir()
	newRun(t, dir, "20261201T000000Z-0001")
	newRun(t, dir, "20261201T000000Z-0002")
	if err := RecordRun("20261201T000000Z-0001", dir, "/p/a.yaml"); err != nil {
		t.Fatal(err)
	}
	// Hold the lock as a prune does while it reads and rewrites.
	f, err := openIndex(IndexFile(), 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- RecordRun("20261201T000000Z-0002", dir, "/p/a.yaml") }()
	time.Sleep(200 * time.Millisecond) // RecordRun now waits for the lock on the old file
	if err := WriteFileAtomic(IndexFile(), []byte("20261201T000000Z-0001\t"+dir+"\t/p/a.yaml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if lines := indexLines(t); len(lines) != 2 || !strings.HasPrefix(lines[1], "20261201T000000Z-0002\t") {
		t.Errorf("index: %q", lines)
	}
}
