package runstate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// memShared is a Shared in memory, for the logic of Store and Run around
// it (the real store, on a real etcd, is tested in etcdstate).
type memShared struct {
	mu       sync.Mutex
	states   map[string][]byte
	revs     map[string]int64
	files    map[string]RunFiles
	journal  map[string][]byte
	rev      int64
	saves    int
	holder   map[string]*memLock
	failing  error // every Save fails with it
	evidence map[string]map[string][]byte
}

type memLock struct {
	lost chan struct{}
	once sync.Once
}

func (l *memLock) Lost() <-chan struct{} { return l.lost }
func (l *memLock) Release() error        { l.once.Do(func() { close(l.lost) }); return nil }

func newMemShared() *memShared {
	return &memShared{states: map[string][]byte{}, revs: map[string]int64{}, files: map[string]RunFiles{},
		journal: map[string][]byte{}, holder: map[string]*memLock{}}
}

func (m *memShared) Where() string { return "etcd://mem:1/test" }

func (m *memShared) Lock(_ context.Context, scope string, info LockInfo) (SharedLock, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.holder[scope]; l != nil {
		select {
		case <-l.lost:
		default:
			return nil, &LockedError{Dir: m.Where(), Shared: true, Scope: scope, Owner: &LockInfo{RunID: "other"}}
		}
	}
	l := &memLock{lost: make(chan struct{})}
	m.holder[scope] = l
	return l, nil
}

func (m *memShared) Owner(context.Context, string) (*LockInfo, error) { return nil, nil }
func (m *memShared) Break(_ context.Context, scope string) (*LockInfo, error) {
	m.mu.Lock()
	l := m.holder[scope]
	m.mu.Unlock()
	if l != nil {
		_ = l.Release()
	}
	return nil, nil
}

func (m *memShared) Create(_ context.Context, _ SharedLock, id string, state []byte, files RunFiles) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.states[id]; ok {
		return 0, errors.New("exists")
	}
	m.rev++
	m.states[id], m.revs[id], m.files[id] = state, m.rev, files
	return m.rev, nil
}

func (m *memShared) Save(_ context.Context, l SharedLock, id string, rev int64, state, journal []byte) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saves++
	if m.failing != nil {
		return 0, m.failing
	}
	select {
	case <-l.Lost():
		return 0, &FencedError{Where: m.Where(), RunID: id, Reason: "lock lost"}
	default:
	}
	if m.revs[id] != rev {
		return 0, &FencedError{Where: m.Where(), RunID: id, Reason: "stale"}
	}
	m.rev++
	m.states[id], m.revs[id] = state, m.rev
	m.journal[id] = append(m.journal[id], journal...)
	return m.rev, nil
}

func (m *memShared) Append(_ context.Context, _ SharedLock, id string, journal []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.journal[id] = append(m.journal[id], journal...)
	return nil
}

func (m *memShared) Load(_ context.Context, id string) (*SharedRun, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.states[id]
	if !ok {
		return nil, &NoStateError{Dir: m.Where(), Run: id}
	}
	return &SharedRun{State: b, Rev: m.revs[id], Files: m.files[id]}, nil
}

func (m *memShared) Runs(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id := range m.states {
		ids = append(ids, id)
	}
	return ids, nil
}

func (m *memShared) Journal(_ context.Context, id string) ([]byte, error) { return m.journal[id], nil }

func (m *memShared) PutEvidence(_ context.Context, _ SharedLock, id, name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.evidence == nil {
		m.evidence = map[string]map[string][]byte{}
	}
	if m.evidence[id] == nil {
		m.evidence[id] = map[string][]byte{}
	}
	m.evidence[id][name] = append([]byte(nil), data...)
	return nil
}

func (m *memShared) Evidence(_ context.Context, id string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range m.evidence[id] {
		out[k] = v
	}
	return out, nil
}
func (m *memShared) Close() error { return nil }

func sharedStore(t *testing.T, m *memShared) *Store {
	t.Helper()
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.Shared = m
	return s
}

const sharedRunID = "20261203T050000Z-cafe"

func newSharedRun(t *testing.T, s *Store) *Run {
	t.Helper()
	if _, err := s.LockFor(sharedRunID, "apply", "prod"); err != nil {
		t.Fatal(err)
	}
	s.SetRunFiles(RunFiles{Plan: []byte("plan: 1\n"), Inventory: []byte("inv: 1\n")})
	st := &State{Format: StateFormat, RunID: sharedRunID, Cluster: "prod", Outcome: OutcomeRunning,
		Steps: []*StepState{{ID: "a", Hosts: []*HostState{{Host: "h1", Status: StatusPending}}}}}
	r, err := s.Create(st, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Every checkpoint, lazy or durable, reaches the store with the journal
// lines written before it; the plan files are stored with the run.
func TestSharedEveryCheckpointWithItsJournal(t *testing.T) {
	m := newMemShared()
	s := sharedStore(t, m)
	r := newSharedRun(t, s)
	r.Event(Event{Type: "step", Step: "a", Host: "h1", Status: StatusRunning})
	if _, err := r.UpdateHost("a", "h1", Lazy, func(h *HostState) { h.Status = StatusRunning }); err != nil {
		t.Fatal(err)
	}
	if got := string(m.journal[sharedRunID]); !strings.Contains(got, `"status":"running"`) {
		t.Errorf("the journal line written before a lazy checkpoint is not in the store with it: %q", got)
	}
	if _, err := r.UpdateHost("a", "h1", Durable, func(h *HostState) { h.Status = StatusDone }); err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(m.states[sharedRunID], &st); err != nil {
		t.Fatal(err)
	}
	if st.Steps[0].Hosts[0].Status != StatusDone {
		t.Errorf("the store holds status %q, want done", st.Steps[0].Hosts[0].Status)
	}
	if f := m.files[sharedRunID]; string(f.Plan) != "plan: 1\n" || string(f.Inventory) != "inv: 1\n" {
		t.Errorf("plan files stored with the run: %+v", f)
	}
	// A second Store (another machine) loads the run and writes on from
	// the stored revision.
	s2 := sharedStore(t, m)
	s.held.Release()
	if _, err := s2.LockFor(sharedRunID, "resume", "prod"); err != nil {
		t.Fatal(err)
	}
	st2, err := s2.Load(sharedRunID)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := s2.RunFilesOf(sharedRunID); !ok || string(f.Plan) != "plan: 1\n" {
		t.Errorf("RunFilesOf after Load: %+v %v", f, ok)
	}
	r2, err := s2.Open(st2, nil, time.Now)
	if err != nil {
		t.Fatalf("a second machine reopening the run: %v", err)
	}
	defer r2.Close()
	if err := r2.SetOutcome(OutcomeDone); err != nil {
		t.Fatalf("checkpoint from the second machine: %v", err)
	}
}

// A session that lost its lock writes no checkpoint, lazy or durable.
func TestSharedFencedAfterLockLost(t *testing.T) {
	m := newMemShared()
	s := sharedStore(t, m)
	r := newSharedRun(t, s)
	if _, err := m.Break(context.Background(), "prod"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []Durability{Lazy, Durable} {
		_, err := r.UpdateHost("a", "h1", d, func(h *HostState) { h.Status = StatusRunning })
		var fe *FencedError
		if !errors.As(err, &fe) {
			t.Errorf("durable=%v checkpoint after the lock was broken: %v, want a FencedError", d, err)
		}
	}
}

// A store that fails once fails every later checkpoint at once, without
// waiting for it again.
func TestSharedFailureSticks(t *testing.T) {
	m := newMemShared()
	s := sharedStore(t, m)
	r := newSharedRun(t, s)
	m.failing = errors.New("context deadline exceeded")
	if err := r.UpdateAs(Lazy, func(*State) {}); err == nil {
		t.Fatal("a checkpoint the store refused succeeded")
	}
	n := m.saves
	for i := 0; i < 3; i++ {
		if err := r.UpdateAs(Lazy, func(*State) {}); err == nil || !strings.Contains(err.Error(), "deadline") {
			t.Errorf("checkpoint after the store failed: %v", err)
		}
	}
	if m.saves != n {
		t.Errorf("the store was asked %d more times after it failed", m.saves-n)
	}
}

// A second holder of the cluster's lock is refused with the holder named.
func TestSharedLockedPassesThrough(t *testing.T) {
	m := newMemShared()
	s := sharedStore(t, m)
	newSharedRun(t, s)
	s2 := sharedStore(t, m)
	_, err := s2.LockFor("20261203T050001Z-beef", "apply", "prod")
	var le *LockedError
	if !errors.As(err, &le) || !le.Shared || le.Scope != "prod" {
		t.Fatalf("second lock of the cluster: %v", err)
	}
	if _, err := s2.LockFor("20261203T050001Z-beef", "apply", "staging"); err != nil {
		t.Errorf("another cluster's lock: %v", err)
	}
}

// Evidence written on one machine is read, added to and packed on
// another; the journal copy is the store's, every session's.
func TestSharedEvidenceFollowsTheRun(t *testing.T) {
	m := newMemShared()
	s := sharedStore(t, m)
	r := newSharedRun(t, s)
	r.Event(Event{Type: "run", Msg: "first session"})
	if err := r.WriteEvidence(EvidenceDoc, []byte(`{"sessions": 1}`)); err != nil {
		t.Fatal(err)
	}
	if err := r.CopyJournal(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	s.held.Release()

	s2 := sharedStore(t, m)
	if _, err := s2.LockFor(sharedRunID, "resume", "prod"); err != nil {
		t.Fatal(err)
	}
	st, err := s2.Load(sharedRunID)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s2.Open(st, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	b, err := r2.ReadEvidence(EvidenceDoc)
	if err != nil || string(b) != `{"sessions": 1}` {
		t.Errorf("the evidence of the first machine's session, read on the second: %q %v", b, err)
	}
	r2.Event(Event{Type: "run", Msg: "second session"})
	if err := r2.CopyJournal(); err != nil {
		t.Fatal(err)
	}
	j, _ := os.ReadFile(filepath.Join(s2.EvidenceDir(sharedRunID), EvidenceJournal))
	if !strings.Contains(string(j), "first session") || !strings.Contains(string(j), "second session") {
		t.Errorf("the journal copy on the second machine lacks a session:\n%s", j)
	}

	// A third machine that never ran the run packs it all.
	s3 := sharedStore(t, m)
	if err := s3.PullEvidence(sharedRunID); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{EvidenceDoc, EvidenceJournal} {
		if _, err := os.Stat(filepath.Join(s3.EvidenceDir(sharedRunID), name)); err != nil {
			t.Errorf("pulled evidence: %v", err)
		}
	}
	var buf bytes.Buffer
	if err := s3.Bundle(sharedRunID, &buf); err != nil {
		t.Errorf("bundle of a pulled run: %v", err)
	}
}

// downShared is a store that no longer answers reads.
type downShared struct{ *memShared }

func (downShared) Load(context.Context, string) (*SharedRun, error) {
	return nil, errors.New("context deadline exceeded")
}

// A store that does not answer is no proof that a run id is taken: apply
// would draw new ids for ever.
func TestSharedExistsWhenTheStoreIsDown(t *testing.T) {
	m := newMemShared()
	s := sharedStore(t, m)
	newSharedRun(t, s)
	if !s.Exists(sharedRunID) {
		t.Error("a run in the store is not found")
	}
	down := sharedStore(t, m)
	down.Shared = downShared{m}
	if down.Exists("20261203T050002Z-0000") {
		t.Error("a store that does not answer says a run id exists")
	}
}
