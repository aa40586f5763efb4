package runstate

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultStateDir is the name of the state dir beside the plan file. It is
// the one default: apply puts a run's state there (unless --state-dir says
// otherwise), and the commands that take a run find it through the run
// index, from any working directory.
const DefaultStateDir = ".etcd-rescue"

// StateDirFor is the default state dir of a plan file: DefaultStateDir
// beside it.
func StateDirFor(planFile string) string {
	return filepath.Join(filepath.Dir(planFile), DefaultStateDir)
}

// LocateRun resolves the RUN argument of resume, status and unlock: a run
// id ("" means the latest run) or the path of a run directory, whose state
// dir is then implied. With stateDir, the run is looked up there. Without
// it, in the run index (IndexFile), which records where apply put every
// run's state; the working directory plays no part.
func LocateRun(stateDir, run string) (*Store, string, error) {
	if run != "" && strings.ContainsRune(run, os.PathSeparator) {
		dir := filepath.Clean(run)
		if !hasState(dir) {
			return nil, "", &NoStateError{Dir: filepath.Dir(dir), Run: filepath.Base(dir), Err: fs.ErrNotExist}
		}
		s, err := ExistingStore(filepath.Dir(filepath.Dir(dir)))
		return s, filepath.Base(dir), err
	}
	if stateDir == "" {
		e, err := lookupIndexed(run)
		if err != nil {
			return nil, "", err
		}
		if e == nil {
			return nil, "", &NoStateError{Run: run, Indexed: true}
		}
		s, err := ExistingStore(e.StateDir)
		if s != nil {
			// The caller connects to it (engine.LocateRun).
			s.SharedURL = e.Shared
		}
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
