package engine

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Step × host statuses in the checkpoint.
const (
	StatusPending = "pending"
	StatusRunning = "running"
	StatusDone    = "done"
	StatusFailed  = "failed"
	StatusSkipped = "skipped"
)

// Run outcomes recorded in State.Outcome.
const (
	OutcomeRunning     = "running"
	OutcomeDone        = "done"
	OutcomeFailed      = "failed"
	OutcomeWaiting     = "waiting"     // stopped for an operator (exit 5)
	OutcomeInterrupted = "interrupted" // Ctrl-C or SIGTERM
)

// StateFormat is the version of state.json.
const StateFormat = 1

// DefaultStateDir is the state directory name beside the plan file.
const DefaultStateDir = ".etcd-rescue"

// State is one run's checkpoint (runs/<id>/state.json). It is rewritten
// atomically at every transition, so after a crash it holds the last
// transition that happened.
type State struct {
	Format     int       `json:"format"`
	RunID      string    `json:"runId"`
	Plan       string    `json:"plan"`                // absolute path of the plan file
	Inventory  string    `json:"inventory,omitempty"` // absolute path given with --inventory
	PlanSHA256 string    `json:"planSha256"`          // of the plan bytes and the inventory bytes
	PlanName   string    `json:"planName"`
	Outcome    string    `json:"outcome"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	// Sessions counts apply + resumes of this run.
	Sessions  int                  `json:"sessions"`
	Steps     []*StepState         `json:"steps"`
	Facts     map[string]string    `json:"facts"`
	Approvals map[string]*Approval `json:"approvals,omitempty"`
}

// StepState is one step of the plan in the checkpoint.
type StepState struct {
	ID    string       `json:"id"`
	Type  string       `json:"type"`
	Hosts []*HostState `json:"hosts"`
}

// HostState is one step on one host (Host is "" for a step that runs once).
type HostState struct {
	Host     string     `json:"host,omitempty"`
	Status   string     `json:"status"`
	Attempts int        `json:"attempts"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	// Elapsed is the engine's wall time in this step-host over all attempts;
	// Remote the part spent in remote commands (SSH) and API the part spent
	// in etcd client calls. Elapsed minus both is the engine's own time
	// (including polling waits).
	Elapsed Millis `json:"elapsedMs"`
	Remote  Millis `json:"remoteMs"`
	API     Millis `json:"apiMs"`
	Cmds    int    `json:"commands"`
	Error   string `json:"error,omitempty"`
	// Cmd is the command that failed, if any.
	Cmd string `json:"cmd,omitempty"`
	// Why records what a Check found, or why the step-host was skipped or
	// marked done.
	Why string `json:"why,omitempty"`
}

// Approval records an operator's yes for an approve step.
type Approval struct {
	At  time.Time `json:"at"`
	By  string    `json:"by"`  // local user
	How string    `json:"how"` // "flag" (--approve) or "prompt"
}

// Millis is a duration stored as whole milliseconds.
type Millis int64

// D converts to a time.Duration.
func (m Millis) D() time.Duration { return time.Duration(m) * time.Millisecond }

func toMillis(d time.Duration) Millis { return Millis(d / time.Millisecond) }

// Key is "step@host" or "step" for a step that runs once.
func Key(step, host string) string {
	if host == "" {
		return step
	}
	return step + "@" + host
}

// Find returns the record of step on host.
func (s *State) Find(step, host string) *HostState {
	for _, st := range s.Steps {
		if st.ID != step {
			continue
		}
		for _, h := range st.Hosts {
			if h.Host == host {
				return h
			}
		}
	}
	return nil
}

// Counts tallies the step-hosts per status.
func (s *State) Counts() map[string]int {
	n := map[string]int{}
	for _, st := range s.Steps {
		for _, h := range st.Hosts {
			n[h.Status]++
		}
	}
	return n
}

// PlanHash is the sha256 that identifies a plan for resume: the plan bytes
// and the inventory bytes, each length-prefixed so that moving text from
// one file to the other changes the hash.
func PlanHash(plan, inventory []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "plan %d\n", len(plan))
	h.Write(plan)
	fmt.Fprintf(h, "\ninventory %d\n", len(inventory))
	h.Write(inventory)
	return hex.EncodeToString(h.Sum(nil))
}

// NewRunID returns a sortable run id like 20261122T031500Z-3f2a.
func NewRunID(now time.Time) string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// validRunID guards path joins: a run id names a directory below runs/.
func validRunID(id string) bool {
	if id == "" || id == "." || id == ".." || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// Store is a state directory: a lock and one directory per run.
type Store struct {
	Dir string
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
	Dir string
	Run string
	// Indexed: the run index was searched too.
	Indexed bool
	Err     error
}

func (e *NoStateError) Error() string {
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

// has reports whether the store holds run id.
func (s *Store) has(id string) bool {
	if !validRunID(id) {
		return false
	}
	_, err := os.Stat(filepath.Join(s.runDir(id), "state.json"))
	return err == nil
}

// Runs lists the run ids, oldest first.
func (s *Store) Runs() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.Dir, "runs"))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && validRunID(e.Name()) {
			if _, err := os.Stat(filepath.Join(s.runDir(e.Name()), "state.json")); err == nil {
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

// Load reads a run's checkpoint.
func (s *Store) Load(id string) (*State, error) {
	if !validRunID(id) {
		return nil, &NoStateError{Dir: s.Dir, Run: id}
	}
	b, err := os.ReadFile(filepath.Join(s.runDir(id), "state.json"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &NoStateError{Dir: s.Dir, Run: id, Err: err}
		}
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(s.runDir(id), "state.json"), err)
	}
	if st.Format != StateFormat {
		return nil, fmt.Errorf("state of run %s has format %d; this etcd-rescue reads format %d", id, st.Format, StateFormat)
	}
	if st.Facts == nil {
		st.Facts = map[string]string{}
	}
	if st.Approvals == nil {
		st.Approvals = map[string]*Approval{}
	}
	return &st, nil
}

// EventsPath is the run's journal.
func (s *Store) EventsPath(id string) string { return filepath.Join(s.runDir(id), "events.jsonl") }

// WriteFileAtomic replaces path with data so that a reader (or a crash)
// sees either the old file or the new one, never a mix: temp file in the
// same directory, fsync, rename, fsync the directory.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// Run is an open run: its state in memory, written through to disk at every
// change, and its events journal. Safe for concurrent use.
type Run struct {
	store *Store
	red   *Redactor

	mu     sync.Mutex
	st     *State
	gen    uint64 // bumped by every change of st
	events *os.File
	now    func() time.Time

	// wmu makes checkpoint writes one at a time; saved is the last gen
	// on disk (guarded by wmu).
	wmu   sync.Mutex
	saved uint64
}

// ID is the run id.
func (r *Run) ID() string { return r.st.RunID }

// Dir is the run's directory.
func (r *Run) Dir() string { return r.store.runDir(r.st.RunID) }

// Snapshot returns a deep copy of the state.
func (r *Run) Snapshot() *State {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, _ := json.Marshal(r.st)
	var st State
	_ = json.Unmarshal(b, &st)
	return &st
}

// create writes a new run's directory and first checkpoint.
func (s *Store) create(st *State, red *Redactor, now func() time.Time) (*Run, error) {
	if err := os.Mkdir(s.runDir(st.RunID), 0o700); err != nil {
		return nil, fmt.Errorf("creating run dir: %w", err)
	}
	return s.open(st, red, now)
}

// open attaches to an existing (or just created) run directory.
func (s *Store) open(st *State, red *Redactor, now func() time.Time) (*Run, error) {
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
	r := &Run{store: s, red: red, st: st, events: f, now: now}
	if err := r.Update(func(*State) {}); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// Close closes the journal.
func (r *Run) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.events == nil {
		return nil
	}
	err := r.events.Close()
	r.events = nil
	return err
}

// Update applies f to the state and returns once a checkpoint holding the
// change is on disk.
func (r *Run) Update(f func(*State)) error {
	r.mu.Lock()
	f(r.st)
	r.gen++
	mine := r.gen
	r.mu.Unlock()
	return r.flush(mine)
}

// flush writes the state unless a checkpoint holding change mine is on
// disk already. Step-hosts finishing together share writes (group commit):
// whoever writes takes every change made so far, and those waiting for the
// write find their change in it. Each write is fsync'd, so without this
// parallel step-hosts queued behind one another's fsync.
func (r *Run) flush(mine uint64) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.saved >= mine {
		return nil
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
	if err := WriteFileAtomic(filepath.Join(r.Dir(), "state.json"), b, 0o600); err != nil {
		return fmt.Errorf("checkpoint of run %s: %w", id, err)
	}
	r.saved = gen
	return nil
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

// SetFact records a fact durably.
func (r *Run) SetFact(key, value string) error {
	err := r.Update(func(s *State) { s.Facts[key] = value })
	if err == nil {
		r.Event(Event{Type: "fact", Msg: key + "=" + value})
	}
	return err
}

// Event is one line of events.jsonl.
type Event struct {
	Time time.Time `json:"time"`
	// Type is cmd (a remote command), upload, etcd (an API call), step (a
	// transition), log (a step's message), fact, approval, run.
	Type   string `json:"type"`
	Step   string `json:"step,omitempty"`
	Host   string `json:"host,omitempty"`
	Status string `json:"status,omitempty"`
	Cmd    string `json:"cmd,omitempty"`
	// Exit is the remote exit status; nil when none arrived.
	Exit       *int   `json:"exit,omitempty"`
	DurationMs *int64 `json:"durationMs,omitempty"`
	Error      string `json:"error,omitempty"`
	Msg        string `json:"msg,omitempty"`
}

// Event appends one line to the journal and syncs it. The journal is a
// record, not the checkpoint: a failed write is dropped rather than
// failing the step (a full disk fails the next checkpoint instead, which
// does stop the run), so the journal may lack lines the state implies.
func (r *Run) Event(ev Event) {
	ev.Cmd = r.red.String(ev.Cmd)
	ev.Error = r.red.String(ev.Error)
	ev.Msg = r.red.String(ev.Msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.events == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = r.now().UTC() // under the lock: lines are in time order
	}
	b, err := marshalJSON(ev, "")
	if err != nil {
		return
	}
	b = r.red.Bytes(b)
	if _, err := r.events.Write(b); err == nil {
		_ = r.events.Sync()
	}
}

// marshalJSON encodes v with a trailing newline and without HTML escaping,
// so "<redacted>" and shell text like 2>&1 stay readable in the files.
func marshalJSON(v any, indent string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// LockInfo says who holds a state dir's lock.
type LockInfo struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	User    string    `json:"user"`
	Started time.Time `json:"started"`
	RunID   string    `json:"runId"`
	Command string    `json:"command"`
}

func (i *LockInfo) String() string {
	if i == nil {
		return "unknown holder"
	}
	return fmt.Sprintf("pid %d on %s, user %s, %s of run %s since %s", i.PID, i.Host, i.User, i.Command, i.RunID, i.Started.Format(time.RFC3339))
}

// LockedError is a state dir locked by another apply or resume.
type LockedError struct {
	Dir   string
	Owner *LockInfo
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("state dir %s is locked by another run: %s", e.Dir, e.Owner)
}

// Lock is a held run lock.
type Lock struct {
	f *os.File
}

// LockPath is the lock file of the store.
func (s *Store) LockPath() string { return filepath.Join(s.Dir, "lock") }

// Lock takes the state dir's lock with flock, so it is released by the
// kernel when the holder dies however it dies. The owner's details are
// written into the file for the next one to read.
func (s *Store) Lock(runID, command string) (*Lock, error) {
	f, err := os.OpenFile(s.LockPath(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner := readLockInfo(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &LockedError{Dir: s.Dir, Owner: owner}
		}
		return nil, fmt.Errorf("locking %s: %w", s.LockPath(), err)
	}
	host, _ := os.Hostname()
	uname := ""
	if u, err := user.Current(); err == nil {
		uname = u.Username
	}
	info := LockInfo{PID: os.Getpid(), Host: host, User: uname, Started: time.Now().UTC(), RunID: runID, Command: command}
	b, _ := json.Marshal(info)
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(append(b, '\n'), 0)
		if err == nil {
			_ = f.Sync()
		}
	}
	return &Lock{f: f}, nil
}

func readLockInfo(f *os.File) *LockInfo {
	b := make([]byte, 4096)
	n, _ := f.ReadAt(b, 0)
	var info LockInfo
	if n == 0 || json.Unmarshal([]byte(strings.TrimSpace(string(b[:n]))), &info) != nil {
		return nil
	}
	return &info
}

// Release empties the owner info and drops the lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}

// Unlock removes the lock file of a holder that is gone. It refuses while
// the flock is held by a live process. It returns the previous owner's
// info, if any was left.
func (s *Store) Unlock() (*LockInfo, error) {
	f, err := os.OpenFile(s.LockPath(), os.O_RDWR, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	owner := readLockInfo(f)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return owner, &LockedError{Dir: s.Dir, Owner: owner}
		}
		return owner, err
	}
	if err := os.Remove(s.LockPath()); err != nil {
		return owner, err
	}
	return owner, syncDir(s.Dir)
}

// LockOwner returns the info in the lock file and whether a live process
// holds the lock.
func (s *Store) LockOwner() (*LockInfo, bool) {
	f, err := os.OpenFile(s.LockPath(), os.O_RDWR, 0o600)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	owner := readLockInfo(f)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return owner, true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return owner, false
}
