package runstate

import (
	"os"
	"path/filepath"
	"strings"
)

// LocateRun resolves the RUN argument of resume and status: a run id in
// stateDir ("" run means the latest), or the path of a run directory,
// whose state dir is then implied. Without stateDir: ./.etcd-rescue if it
// holds the run, else the run index (IndexFile), which records where every
// apply put its state.
func LocateRun(stateDir, run string) (*Store, string, error) {
	if run != "" && strings.ContainsRune(run, os.PathSeparator) {
		dir := filepath.Clean(run)
		if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
			return nil, "", &NoStateError{Dir: filepath.Dir(dir), Run: filepath.Base(dir), Err: err}
		}
		s, err := ExistingStore(filepath.Dir(filepath.Dir(dir)))
		return s, filepath.Base(dir), err
	}
	if stateDir == "" {
		// ./.etcd-rescue when it has the run; otherwise the run index,
		// which knows where apply put it.
		if s, err := ExistingStore(DefaultStateDir); err == nil {
			if run == "" {
				if id, err := s.Latest(); err == nil {
					return s, id, nil
				}
			} else if s.has(run) {
				return s, run, nil
			}
		}
		e, err := lookupIndexed(run)
		if err != nil {
			return nil, "", err
		}
		if e == nil {
			dir, _ := filepath.Abs(DefaultStateDir)
			return nil, "", &NoStateError{Dir: dir, Run: run, Indexed: true}
		}
		s, err := ExistingStore(e.StateDir)
		return s, e.RunID, err
	}
	s, err := ExistingStore(stateDir)
	if err != nil {
		return nil, "", err
	}
	if run == "" {
		run, err = s.Latest()
		if err != nil {
			return nil, "", err
		}
	}
	return s, run, nil
}
