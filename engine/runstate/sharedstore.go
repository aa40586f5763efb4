package runstate

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The parts of Store and Run that reach a Shared state store. A Store with
// Shared set keeps its Dir as the run's working directory on this machine;
// the shared store is the truth for the lock, the checkpoint, the journal
// and the plan files.

// sharedCtx bounds one call to the shared store.
func sharedCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), SharedTimeout)
}

// Who is "user@machine" of this process, for State.StartedBy.
func Who() string {
	host, _ := os.Hostname()
	uname := "?"
	if u, err := user.Current(); err == nil {
		uname = u.Username
	}
	return uname + "@" + host
}

func newLockInfo(runID, command, scope string) LockInfo {
	host, _ := os.Hostname()
	uname := ""
	if u, err := user.Current(); err == nil {
		uname = u.Username
	}
	return LockInfo{PID: os.Getpid(), Host: host, User: uname, Started: time.Now().UTC(), RunID: runID, Command: command, Scope: scope}
}

// LockFor takes the run lock for runID: the state dir's, or with a shared
// store the lock of scope (the cluster's name) there, which the store's
// writes are then fenced by.
func (s *Store) LockFor(runID, command, scope string) (*Lock, error) {
	if s.Shared == nil {
		return s.Lock(runID, command)
	}
	ctx, cancel := sharedCtx()
	defer cancel()
	l, err := s.Shared.Lock(ctx, scope, newLockInfo(runID, command, scope))
	if err != nil {
		return nil, err
	}
	s.held = l
	return &Lock{shared: l}, nil
}

// LockOwnerOf is LockOwner for scope in a shared store (the state dir's
// lock otherwise). With a shared store, held is whether the lock exists:
// its lease is what proves its holder alive.
func (s *Store) LockOwnerOf(scope string) (*LockInfo, bool, error) {
	if s.Shared == nil {
		o, held := s.LockOwner()
		return o, held, nil
	}
	ctx, cancel := sharedCtx()
	defer cancel()
	o, err := s.Shared.Owner(ctx, scope)
	return o, o != nil, err
}

// UnlockScope is Unlock for the lock of scope in a shared store: it breaks
// the lock whoever holds it (its holder's next write is refused).
func (s *Store) UnlockScope(scope string) (*LockInfo, error) {
	if s.Shared == nil {
		return s.Unlock()
	}
	ctx, cancel := sharedCtx()
	defer cancel()
	return s.Shared.Break(ctx, scope)
}

// SetRunFiles gives the plan and inventory bytes a new run began with, for
// Create to store with it in a shared store.
func (s *Store) SetRunFiles(f RunFiles) { s.newFiles = &f }

// RunFilesOf returns the plan and inventory stored with run id by a shared
// store (after Load); false without a shared store.
func (s *Store) RunFilesOf(id string) (RunFiles, bool) {
	s.smu.Lock()
	defer s.smu.Unlock()
	f, ok := s.files[id]
	return f, ok
}

// Where names where the runs are: the state dir, or the shared store.
func (s *Store) Where() string {
	if s.Shared != nil {
		return s.Shared.Where()
	}
	return s.Dir
}

func (s *Store) sharedRuns() ([]string, error) {
	ctx, cancel := sharedCtx()
	defer cancel()
	ids, err := s.Shared.Runs(ctx)
	if err != nil {
		return nil, err
	}
	sort.Strings(ids)
	return ids, nil
}

func (s *Store) sharedLoad(id string) (*State, error) {
	ctx, cancel := sharedCtx()
	defer cancel()
	sr, err := s.Shared.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(sr.State, &st); err != nil {
		return nil, fmt.Errorf("run %s in state store %s: the checkpoint is not readable: %w", id, s.Shared.Where(), err)
	}
	if st.Format != StateFormat {
		return nil, fmt.Errorf("run %s in state store %s has format %d; this etcd-rescue reads format %d", id, s.Shared.Where(), st.Format, StateFormat)
	}
	if st.Facts == nil {
		st.Facts = map[string]string{}
	}
	if st.Approvals == nil {
		st.Approvals = map[string]*Approval{}
	}
	s.smu.Lock()
	if s.revs == nil {
		s.revs, s.files = map[string]int64{}, map[string]RunFiles{}
	}
	s.revs[id], s.files[id] = sr.Rev, sr.Files
	s.smu.Unlock()
	return &st, nil
}

// sharedCreate stores a new run in the shared store, under the lock taken
// by LockFor.
func (s *Store) sharedCreate(st *State, red Redactor) error {
	if s.held == nil {
		return fmt.Errorf("run %s: the lock of the state store %s is not held", st.RunID, s.Shared.Where())
	}
	b, err := marshalJSON(st, "  ")
	if err != nil {
		return err
	}
	var files RunFiles
	if s.newFiles != nil {
		files = *s.newFiles
	}
	ctx, cancel := sharedCtx()
	defer cancel()
	rev, err := s.Shared.Create(ctx, s.held, st.RunID, red.Bytes(b), files)
	if err != nil {
		return err
	}
	s.smu.Lock()
	if s.revs == nil {
		s.revs, s.files = map[string]int64{}, map[string]RunFiles{}
	}
	s.revs[st.RunID], s.files[st.RunID] = rev, files
	s.smu.Unlock()
	return nil
}

func (s *Store) rev(id string) int64 {
	s.smu.Lock()
	defer s.smu.Unlock()
	return s.revs[id]
}

// sharedSave writes a durable checkpoint and the journal lines since the
// last one to the shared store, fenced by the held lock.
func (r *Run) sharedSave(state []byte) error {
	s := r.store
	if r.sharedErr != nil {
		return r.sharedErr
	}
	if err := r.fenced(); err != nil {
		return err
	}
	r.mu.Lock()
	journal := r.pending
	r.pending = nil
	r.mu.Unlock()
	ctx, cancel := sharedCtx()
	defer cancel()
	rev, err := s.Shared.Save(ctx, s.held, r.ID(), s.rev(r.ID()), state, journal)
	if err != nil {
		// Kept for the next write, in order.
		r.mu.Lock()
		r.pending = append(journal, r.pending...)
		r.mu.Unlock()
		r.sharedErr = err
		return err
	}
	s.smu.Lock()
	s.revs[r.ID()] = rev
	s.smu.Unlock()
	return nil
}

// fenced fails once the shared lock is known lost: no checkpoint, lazy or
// not, is written by a session that no longer holds it.
func (r *Run) fenced() error {
	if r.store.Shared == nil || r.store.held == nil {
		return nil
	}
	select {
	case <-r.store.held.Lost():
		return &FencedError{Where: r.store.Shared.Where(), RunID: r.ID(), Reason: "this session lost the run lock (its lease expired or it was broken by unlock --force)"}
	default:
		return nil
	}
}

// sharedAppend writes journal lines that no checkpoint follows.
func (r *Run) sharedAppend() {
	r.mu.Lock()
	journal := r.pending
	r.pending = nil
	r.mu.Unlock()
	if len(journal) == 0 || r.store.held == nil || r.sharedErr != nil {
		return
	}
	ctx, cancel := sharedCtx()
	defer cancel()
	_ = r.store.Shared.Append(ctx, r.store.held, r.ID(), journal)
}

// SharedURL is the URL of the shared store that holds the run, "" for a
// run in its state dir alone.
func (r *Run) SharedURL() string { return r.store.SharedURL }

// sharedEvidence stores an evidence file (redacted) in the shared store.
func (r *Run) sharedEvidence(name string, data []byte) error {
	if r.store.Shared == nil || r.store.held == nil {
		return nil
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.sharedErr != nil {
		return fmt.Errorf("written on this machine only: %w", r.sharedErr)
	}
	ctx, cancel := sharedCtx()
	defer cancel()
	if err := r.store.Shared.PutEvidence(ctx, r.store.held, r.ID(), name, data); err != nil {
		return fmt.Errorf("written on this machine only: %w", err)
	}
	return nil
}

// sharedJournal is the run's whole journal in the shared store, with the
// lines of this session not yet written there.
func (r *Run) sharedJournal() ([]byte, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.sharedErr != nil {
		// The store failed this session: this machine's journal, not a
		// wait for the store again.
		return os.ReadFile(r.store.EventsPath(r.ID()))
	}
	r.sharedAppend()
	ctx, cancel := sharedCtx()
	defer cancel()
	b, err := r.store.Shared.Journal(ctx, r.ID())
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	b = append(b, r.pending...) // left by a store that failed
	r.mu.Unlock()
	return b, nil
}

// storeFailed reports whether a write to the shared store failed in this
// session.
func (r *Run) storeFailed() bool {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.sharedErr != nil
}

// sharedEvidenceFile reads one evidence file of run id from the shared
// store (nil when it has none).
func (s *Store) sharedEvidenceFile(id, name string) ([]byte, error) {
	ctx, cancel := sharedCtx()
	defer cancel()
	files, err := s.Shared.Evidence(ctx, id)
	if err != nil {
		return nil, err
	}
	return files[name], nil
}

// PullEvidence writes what the shared store holds of run id into its
// directory on this machine: the checkpoint, the whole journal as the
// evidence copy, and every evidence file, so that report reads and packs
// a run whichever machines its sessions ran on. A no-op without a shared
// store.
func (s *Store) PullEvidence(id string) error {
	if s.Shared == nil {
		return nil
	}
	st, err := s.sharedLoad(id)
	if err != nil {
		return err
	}
	ctx, cancel := sharedCtx()
	defer cancel()
	files, err := s.Shared.Evidence(ctx, id)
	if err != nil {
		return err
	}
	journal, err := s.Shared.Journal(ctx, id)
	if err != nil {
		return err
	}
	dir := s.EvidenceDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := marshalJSON(st, "  ")
	if err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(s.runDir(id), stateFile), b, 0o600); err != nil {
		return err
	}
	files[EvidenceJournal] = journal
	for name, data := range files {
		if name == "" || filepath.Base(name) != name || strings.HasPrefix(name, ".") {
			continue
		}
		if err := WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
