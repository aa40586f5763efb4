package runstate

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The run index lets resume, status and runs find a run from any working
// directory: apply puts a run's state beside its plan, and at 3 a.m. the
// operator is rarely in that directory. Every run apply starts is recorded
// as one line "RUN<TAB>STATE DIR<TAB>PLAN" in IndexFile(). The index only
// points at state dirs; the checkpoint stays the truth, and an entry whose
// run is gone is ignored.

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
}

// RecordRun appends a run to the index. Failing to is not fatal to the
// run (the state dir is printed, and --state-dir finds it), so the caller
// only journals the error.
func RecordRun(runID, stateDir, plan string) error {
	path := IndexFile()
	if path == "" {
		return fmt.Errorf("no home directory for the run index")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	// One short write with O_APPEND: concurrent applies do not interleave.
	_, werr := fmt.Fprintf(f, "%s\t%s\t%s\n", runID, stateDir, plan)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

// IndexedRuns lists the indexed runs whose checkpoint still exists, in the
// order apply started them (run ids of the same second do not sort so).
func IndexedRuns() ([]IndexEntry, error) {
	path := IndexFile()
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seen := map[IndexEntry]bool{}
	var out []IndexEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), "\t")
		if len(parts) != 3 || !validRunID(parts[0]) || !filepath.IsAbs(parts[1]) {
			continue
		}
		e := IndexEntry{RunID: parts[0], StateDir: parts[1], Plan: parts[2]}
		if seen[e] {
			continue
		}
		if _, err := os.Stat(filepath.Join(e.StateDir, "runs", e.RunID, "state.json")); err != nil {
			continue
		}
		seen[e] = true
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the run index %s: %w", path, err)
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
