package runstate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Redactor removes secret values from what a run writes (engine.Redactor).
type Redactor interface {
	String(s string) string
	Bytes(b []byte) []byte
}

type noRedaction struct{}

func (noRedaction) String(s string) string { return s }
func (noRedaction) Bytes(b []byte) []byte  { return b }

// Run is an open run: its state in memory, written through to disk at every
// change, and its events journal. Safe for concurrent use.
type Run struct {
	store *Store
	red   Redactor

	mu     sync.Mutex
	st     *State
	gen    uint64 // bumped by every change of st
	events *os.File
	now    func() time.Time

	// wmu makes checkpoint writes one at a time. Guarded by wmu: saved is
	// the last gen written (in the page cache at least), synced the last
	// gen made durable, and stateSynced says state.json is a durable write
	// (the one a lazy write must keep reachable as state.json.durable).
	wmu         sync.Mutex
	saved       uint64
	synced      uint64
	stateSynced bool

	// The engine's own time in writing the run's files (IOStats): durable
	// and lazy checkpoints and journal lines, and how many of each.
	durableNs, lazyNs, journalNs atomic.Int64
	durables, lazies, lines      atomic.Int64
	// unsynced: journal lines were written since the journal's last sync.
	unsynced atomic.Bool

	// pending are the journal lines (JSON) written since the last
	// checkpoint that reached the shared store (guarded by mu).
	pending []byte
	// sharedErr is the first failed write to the shared store (guarded
	// by wmu): every later checkpoint fails at once with it, so that the
	// run stops instead of waiting out a timeout per step-host.
	sharedErr error

	// evUnsynced are the evidence files written since SyncEvidence.
	evMu       sync.Mutex
	evUnsynced []string
}

// IOStats is what writing a run's files has cost so far.
type IOStats struct {
	// Durable checkpoints: sync of the journal's new lines, marshal, write,
	// fsync, rename, fsync of the dir.
	Durable  time.Duration
	Durables int64
	// Lazy checkpoints: marshal, write, rename (and keeping the last
	// durable one reachable), no fsync.
	Lazy    time.Duration
	Lazies  int64
	Journal time.Duration // marshal and write of journal lines (synced with the durable checkpoints)
	Lines   int64
}

// Checkpoint is the time spent in checkpoints of both kinds.
func (s IOStats) Checkpoint() time.Duration { return s.Durable + s.Lazy }

// IOStats returns the time spent so far writing checkpoints and journal
// lines. Writes of each are one at a time, so neither exceeds the wall time.
func (r *Run) IOStats() IOStats {
	return IOStats{Durable: time.Duration(r.durableNs.Load()), Durables: r.durables.Load(),
		Lazy: time.Duration(r.lazyNs.Load()), Lazies: r.lazies.Load(),
		Journal: time.Duration(r.journalNs.Load()), Lines: r.lines.Load()}
}

// ID is the run id.
func (r *Run) ID() string { return r.st.RunID }

// Dir is the run's directory.
func (r *Run) Dir() string { return r.store.runDir(r.st.RunID) }

// StateDir is the state dir that holds the run.
func (r *Run) StateDir() string { return r.store.Dir }

// HostState returns a copy of the record of step on host.
func (r *Run) HostState(step, host string) HostState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return *r.st.Find(step, host)
}

// Approved reports whether approve step id has an approval recorded.
func (r *Run) Approved(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.st.Approvals[id]
	return ok
}

// Snapshot returns a deep copy of the state.
func (r *Run) Snapshot() *State {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, _ := json.Marshal(r.st)
	var st State
	_ = json.Unmarshal(b, &st)
	return &st
}

// Create writes a new run's directory and first checkpoint.
// With a shared store, the run is stored there first, with the plan
// files given to SetRunFiles.
func (s *Store) Create(st *State, red Redactor, now func() time.Time) (*Run, error) {
	if err := os.Mkdir(s.runDir(st.RunID), 0o700); err != nil {
		return nil, fmt.Errorf("creating run dir: %w", err)
	}
	if s.Shared != nil {
		if red == nil {
			red = noRedaction{}
		}
		if err := s.sharedCreate(st, red); err != nil {
			return nil, err
		}
	}
	return s.Open(st, red, now)
}

// Open attaches to an existing (or just created) run directory. red may be
// nil: nothing is redacted.
func (s *Store) Open(st *State, red Redactor, now func() time.Time) (*Run, error) {
	if s.Shared != nil {
		// A run taken over from another machine has no directory here yet.
		if err := os.MkdirAll(s.runDir(st.RunID), 0o700); err != nil {
			return nil, fmt.Errorf("creating run dir: %w", err)
		}
	}
	f, err := os.OpenFile(s.EventsPath(st.RunID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	if st.Facts == nil {
		st.Facts = map[string]string{}
	}
	if st.Approvals == nil {
		st.Approvals = map[string]*Approval{}
	}
	if red == nil {
		red = noRedaction{}
	}
	r := &Run{store: s, red: red, st: st, events: f, now: now}
	// The session's first checkpoint is durable: what follows may be
	// lazy, and a lazy write needs a durable one to fall back on.
	if err := r.Update(func(*State) {}); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// Close syncs and closes the journal.
func (r *Run) Close() error {
	r.mu.Lock()
	f := r.events
	r.events = nil
	r.mu.Unlock()
	if f == nil {
		return nil
	}
	// A flush syncing the journal holds wmu: let it finish first.
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.store.Shared != nil {
		r.sharedAppend()
	}
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncJournal makes the journal lines written so far durable, before a
// checkpoint that follows them (called with wmu held).
func (r *Run) syncJournal() {
	if !r.unsynced.Swap(false) {
		return
	}
	r.mu.Lock()
	f := r.events
	r.mu.Unlock()
	if f != nil {
		_ = f.Sync()
	}
}

// Durability says whether a checkpoint must survive a power loss or a
// kernel crash, or only the death of the process.
//
// Every checkpoint is written (temp file, rename) before Update returns, so
// a killed process loses none of them: the page cache has it. Only a
// Durable one is fsync'd, with the dir, and with it every change before it,
// since each write holds the whole state. A Lazy change lost to a power
// loss leaves the run as a kill -9 just before that change would, with one
// difference: what the run did after it on the hosts may have happened.
// That is why the engine writes durably the "running" of every step-host
// that a resume must not start again blindly, and the facts a destructive
// step-host acts on.
type Durability bool

// The two kinds of checkpoint.
const (
	Lazy    Durability = false
	Durable Durability = true
)

// Update applies f to the state and returns once a checkpoint holding the
// change is on disk, durably.
func (r *Run) Update(f func(*State)) error { return r.UpdateAs(Durable, f) }

// UpdateAs applies f to the state and returns once a checkpoint holding the
// change is written: with d Durable, fsync'd.
func (r *Run) UpdateAs(d Durability, f func(*State)) error {
	r.mu.Lock()
	f(r.st)
	r.gen++
	mine := r.gen
	r.mu.Unlock()
	return r.flush(mine, d)
}

// Sync makes every change so far durable (a no-op when it is already).
func (r *Run) Sync() error {
	r.mu.Lock()
	mine := r.gen
	r.mu.Unlock()
	return r.flush(mine, Durable)
}

// flush writes the state unless a checkpoint holding change mine is on
// disk already (durably, for d Durable). Step-hosts finishing together
// share writes (group commit): whoever writes takes every change made so
// far, and those waiting for the write find their change in it.
func (r *Run) flush(mine uint64, d Durability) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.synced >= mine || (d == Lazy && r.saved >= mine) {
		return nil
	}
	if err := r.fenced(); err != nil {
		return err
	}
	t0 := time.Now()
	defer func() {
		if d == Durable {
			r.durableNs.Add(int64(time.Since(t0)))
			r.durables.Add(1)
		} else {
			r.lazyNs.Add(int64(time.Since(t0)))
			r.lazies.Add(1)
		}
	}()
	if d == Durable {
		// The journal is durable whenever a checkpoint is: its lines up
		// to now first.
		r.syncJournal()
	}
	r.mu.Lock()
	r.st.Updated = r.now().UTC()
	b, err := marshalJSON(r.st, "  ")
	gen, id := r.gen, r.st.RunID
	r.mu.Unlock()
	if err != nil {
		return err
	}
	b = r.red.Bytes(b)
	path := filepath.Join(r.Dir(), stateFile)
	if d == Durable {
		err = r.writeDurable(path, b)
	} else {
		err = r.writeLazy(path, b)
	}
	if err == nil && r.store.Shared != nil {
		// Every checkpoint, lazy or not, reaches the shared store before
		// the engine goes on: another machine resumes from there.
		err = r.sharedSave(b)
	}
	if err != nil {
		return fmt.Errorf("checkpoint of run %s: %w", id, err)
	}
	r.saved = gen
	if d == Durable {
		r.synced, r.stateSynced = gen, true
	}
	return nil
}

// writeDurable replaces state.json with data durably. state.json.durable,
// kept while state.json held lazy writes, is then older than state.json and
// goes. Failing to remove it fails nothing: Load reads state.json first,
// and the next lazy write replaces it.
func (r *Run) writeDurable(path string, data []byte) error {
	if err := WriteFileAtomic(path, data, 0o600); err != nil {
		return err
	}
	_ = os.Remove(path + durableSuffix)
	return nil
}

// writeLazy replaces state.json with data without fsync. After a power
// loss the renamed file may be empty or torn (XFS, ext4 mounted
// noauto_da_alloc): the last durable state.json is kept first as
// state.json.durable, by a hard link (metadata only), for Load to fall
// back on. Journaling filesystems commit the link before the later rename.
func (r *Run) writeLazy(path string, data []byte) error {
	if r.stateSynced {
		if err := linkReplace(path, path+durableSuffix); err != nil {
			return err
		}
		r.stateSynced = false
	}
	return WriteFile(path, data, 0o600)
}

// UpdateHost applies f to the record of step on host, like UpdateAs, and
// returns a copy of the record as f left it.
func (r *Run) UpdateHost(step, host string, d Durability, f func(*HostState)) (HostState, error) {
	var out HostState
	err := r.UpdateAs(d, func(s *State) {
		h := s.Find(step, host)
		f(h)
		out = *h
	})
	return out, err
}

// Approve records durably that approve step id was approved.
func (r *Run) Approve(id string, a Approval) error {
	return r.Update(func(s *State) { s.Approvals[id] = &a })
}

// SetOutcome records durably how the run's session ended.
func (r *Run) SetOutcome(outcome string) error {
	return r.Update(func(s *State) { s.Outcome = outcome })
}

// EndSession records durably how the run's session ended and adds the
// session's engine time to the run's, in one checkpoint.
func (r *Run) EndSession(outcome string, engine time.Duration) error {
	return r.Update(func(s *State) {
		s.Outcome = outcome
		s.EngineSeconds = float64((time.Duration(s.EngineSeconds*float64(time.Second)) + engine).Milliseconds()) / 1000
	})
}

// Fact returns a recorded fact.
func (r *Run) Fact(key string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.st.Facts[key]
	return v, ok
}

// Facts returns a copy of the facts.
func (r *Run) Facts() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.st.Facts))
	for k, v := range r.st.Facts {
		out[k] = v
	}
	return out
}

// SetFact records a fact, durably or not.
func (r *Run) SetFact(key, value string, d Durability) error {
	err := r.UpdateAs(d, func(s *State) { s.Facts[key] = value })
	if err == nil {
		r.Event(Event{Type: "fact", Msg: key + "=" + value})
	}
	return err
}
