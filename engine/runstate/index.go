package runstate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// The run index lets resume, status and runs find a run from any working
// directory: apply puts a run's state beside its plan, and at 3 a.m. the
// operator is rarely in that directory. Every run apply starts is recorded
// as one line "RUN<TAB>STATE DIR<TAB>PLAN" in IndexFile(). The index only
// points at state dirs; the checkpoint stays the truth: an entry whose run
// is gone is ignored, and one whose state dir is gone is pruned.

// IndexFile is $XDG_STATE_HOME/etcd-rescue/runs (default
// ~/.local/state/etcd-rescue/runs); "" if neither is known.
func IndexFile() string {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" || !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			return ""
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "etcd-rescue", "runs")
}

// IndexEntry is one run the index knows of.
type IndexEntry struct {
	RunID    string
	StateDir string
	Plan     string
	// Shared is the URL of the shared state store that holds the run
	// (a fourth field), "" for a run in StateDir alone.
	Shared string
}

// RecordRun appends a run to the index. Failing to is not fatal to the
// run (the state dir is printed, and --state-dir finds it), so the caller
// only journals the error.
func RecordRun(runID, stateDir, plan string) error { return RecordSharedRun(runID, stateDir, plan, "") }

// RecordSharedRun is RecordRun for a run held by the shared store at url
// (its working directory on this machine is stateDir).
func RecordSharedRun(runID, stateDir, plan, url string) error {
	path := IndexFile()
	if path == "" {
		return fmt.Errorf("no home directory for the run index")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := openIndex(path, os.O_CREATE)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%s\t%s\t%s", runID, stateDir, plan)
	if url != "" {
		line += "\t" + url
	}
	_, werr := fmt.Fprintln(f, line)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

// openIndex opens the index for appending with an exclusive flock held, so
// that appends and a prune's rewrite do not interleave. A prune replaces
// the file (write a new one, rename it over); whoever waited for the lock
// on the replaced file opens the new one.
func openIndex(path string, flag int) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|flag, 0o600)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, err
		}
		held, err1 := f.Stat()
		now, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			return f, nil
		}
		f.Close()
		if err2 != nil && !errors.Is(err2, fs.ErrNotExist) {
			return nil, err2
		}
	}
}

// IndexedRuns lists the indexed runs whose checkpoint still exists, in the
// order apply started them (run ids of the same second do not sort so). It
// prunes the index of entries whose state dir is gone: those runs can never
// be resumed or shown again.
func IndexedRuns() ([]IndexEntry, error) {
	path := IndexFile()
	if path == "" {
		return nil, nil
	}
	f, err := openIndex(path, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the run index %s: %w", path, err)
	}
	defer f.Close()
	seen := map[IndexEntry]bool{}
	var out []IndexEntry
	var keep bytes.Buffer
	pruned := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		parts := strings.Split(line, "\t")
		if (len(parts) != 3 && len(parts) != 4) || !validRunID(parts[0]) || !filepath.IsAbs(parts[1]) {
			keep.WriteString(line + "\n") // not ours to judge
			continue
		}
		e := IndexEntry{RunID: parts[0], StateDir: parts[1], Plan: parts[2]}
		if len(parts) == 4 {
			e.Shared = parts[3]
		}
		if _, err := os.Stat(e.StateDir); errors.Is(err, fs.ErrNotExist) {
			pruned = true
			continue
		}
		keep.WriteString(line + "\n")
		if seen[e] {
			continue
		}
		if !hasState(filepath.Join(e.StateDir, "runs", e.RunID)) {
			continue
		}
		seen[e] = true
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the run index %s: %w", path, err)
	}
	if pruned {
		// Best effort: an index that cannot be rewritten still lists the
		// right runs, it only stays longer.
		_ = WriteFileAtomic(path, keep.Bytes(), 0o600)
	}
	return out, nil
}

// lookupIndexed finds run (the latest run when "") in the index.
func lookupIndexed(run string) (*IndexEntry, error) {
	all, err := IndexedRuns()
	if err != nil {
		return nil, err
	}
	var found *IndexEntry
	for i := range all {
		if run == "" || all[i].RunID == run {
			found = &all[i] // the last match: the latest
		}
	}
	return found, nil
}
