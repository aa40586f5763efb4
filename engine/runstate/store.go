package runstate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Store is a state directory: a lock and one directory per run. With
// Shared set, the runs and the lock are in a team's shared store
// (sharedstore.go) and Dir is their working directory on this machine.
type Store struct {
	Dir string
	// Shared is the team's state store; SharedURL how to reach it again
	// (recorded in the run index, never with a password).
	Shared    Shared
	SharedURL string

	held     SharedLock // the lock LockFor took in Shared
	newFiles *RunFiles  // for Create
	smu      sync.Mutex
	revs     map[string]int64 // the shared checkpoint's revision per run
	files    map[string]RunFiles
}

// OpenStore creates the state directory (mode 0700) if needed.
func OpenStore(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(abs, "runs"), 0o700); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	return &Store{Dir: abs}, nil
}

// ExistingStore opens a state directory that must already exist.
func ExistingStore(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(abs, "runs")); err != nil {
		return nil, &NoStateError{Dir: abs, Err: err}
	}
	return &Store{Dir: abs}, nil
}

// NoStateError is a state directory or run that does not exist.
type NoStateError struct {
	Dir string // "" when only the run index was searched
	Run string
	// Indexed: the run index was searched.
	Indexed bool
	Err     error
}

func (e *NoStateError) Error() string {
	if e.Dir == "" && e.Indexed {
		if e.Run == "" {
			return "no runs in the run index " + IndexFile()
		}
		return fmt.Sprintf("no run %s in the run index %s", e.Run, IndexFile())
	}
	also := ""
	if e.Indexed {
		also = " nor in the run index " + IndexFile()
	}
	switch {
	case e.Run != "":
		return fmt.Sprintf("no run %s in state dir %s%s", e.Run, e.Dir, also)
	case e.Indexed:
		return fmt.Sprintf("no runs in state dir %s%s", e.Dir, also)
	}
	return fmt.Sprintf("no state dir at %s", e.Dir)
}

func (e *NoStateError) Unwrap() error { return e.Err }

func (s *Store) runDir(id string) string { return filepath.Join(s.Dir, "runs", id) }

// Exists reports whether run id's directory exists, with a checkpoint or not.
func (s *Store) Exists(id string) bool {
	_, err := os.Stat(s.runDir(id))
	if !errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if s.Shared != nil {
		ctx, cancel := sharedCtx()
		defer cancel()
		// A store that fails to answer is not taken for a yes (apply would
		// draw ids forever); creating the run will fail on it instead.
		_, err := s.Shared.Load(ctx, id)
		return err == nil
	}
	return false
}

// Runs lists the run ids, oldest first.
func (s *Store) Runs() ([]string, error) {
	if s.Shared != nil {
		return s.sharedRuns()
	}
	ents, err := os.ReadDir(filepath.Join(s.Dir, "runs"))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && validRunID(e.Name()) {
			if hasState(s.runDir(e.Name())) {
				ids = append(ids, e.Name())
			}
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Latest returns the newest run id.
func (s *Store) Latest() (string, error) {
	ids, err := s.Runs()
	if err != nil {
		return "", err
	}
	if len(ids) == 0 {
		return "", &NoStateError{Dir: s.Dir, Run: "(none)"}
	}
	// Ids sort by their start second (the part before "-"); among the
	// runs of the last second, the checkpoint's creation time decides.
	second := func(id string) string { sec, _, _ := strings.Cut(id, "-"); return sec }
	last := second(ids[len(ids)-1])
	latest, at := ids[len(ids)-1], time.Time{}
	for i := len(ids) - 1; i >= 0 && second(ids[i]) == last; i-- {
		if st, err := s.Load(ids[i]); err == nil && st.Created.After(at) {
			latest, at = ids[i], st.Created
		}
	}
	return latest, nil
}

// Load reads a run's checkpoint. When state.json is missing, empty or
// unreadable as a checkpoint (a power loss after a lazy write, see
// Durability) and state.json.durable holds one, it reads that, the last
// durable checkpoint, and says so in State.Recovered.
func (s *Store) Load(id string) (*State, error) {
	if !validRunID(id) {
		return nil, &NoStateError{Dir: s.Where(), Run: id}
	}
	if s.Shared != nil {
		return s.sharedLoad(id)
	}
	path := filepath.Join(s.runDir(id), stateFile)
	st, err := readState(path)
	if err == nil {
		return st, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		err = &NoStateError{Dir: s.Dir, Run: id, Err: err}
	}
	var bad *badStateError
	if !errors.As(err, &bad) && !errors.As(err, new(*NoStateError)) {
		return nil, err
	}
	st, derr := readState(path + durableSuffix)
	if derr != nil {
		return nil, err
	}
	if st.RunID != id {
		return nil, err
	}
	st.Recovered = fmt.Sprintf("%s: %v; read %s%s instead, the last checkpoint written durably (%s): "+
		"any transition recorded after it is lost, as after a kill at that point", stateFile, errors.Unwrap(err), stateFile, durableSuffix, st.Updated.Format(time.RFC3339))
	return st, nil
}

// badStateError is a state.json that is empty or not a checkpoint.
type badStateError struct {
	path string
	err  error
}

func (e *badStateError) Error() string { return fmt.Sprintf("reading %s: %v", e.path, e.err) }
func (e *badStateError) Unwrap() error { return e.err }

// readState reads one checkpoint file.
func readState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, &badStateError{path, errors.New("the file is empty")}
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, &badStateError{path, err}
	}
	if st.Format != StateFormat {
		return nil, fmt.Errorf("%s has format %d; this etcd-rescue reads format %d", path, st.Format, StateFormat)
	}
	if st.Facts == nil {
		st.Facts = map[string]string{}
	}
	if st.Approvals == nil {
		st.Approvals = map[string]*Approval{}
	}
	return &st, nil
}

// hasState reports whether run dir holds a checkpoint, state.json or the
// durable one Load falls back on.
func hasState(dir string) bool {
	for _, name := range []string{stateFile, stateFile + durableSuffix} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// EventsPath is the run's journal.
func (s *Store) EventsPath(id string) string { return filepath.Join(s.runDir(id), "events.jsonl") }
