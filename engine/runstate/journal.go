package runstate

import (
	"bytes"
	"encoding/json"
	"os"
	"time"
)

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

// Event appends one line to the journal. The line is synced with the next
// checkpoint (flush syncs the journal before it writes the state) or when
// the run is closed, not on its own: a killed process loses none (the
// kernel has it), and a crash of the machine loses at most the lines after
// the last checkpoint, whose state says what ran (a step-host left running
// is probed on resume). Syncing each line cost about as much as the
// checkpoints themselves, under the lock every step-host takes. The
// journal is a record, not the checkpoint: a failed write is dropped
// rather than failing the step (a full disk fails the next checkpoint
// instead, which does stop the run), so the journal may lack lines the
// state implies.
func (r *Run) Event(ev Event) {
	ev.Cmd = r.red.String(ev.Cmd)
	ev.Error = r.red.String(ev.Error)
	ev.Msg = r.red.String(ev.Msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.events == nil {
		return
	}
	t0 := time.Now()
	defer func() { r.journalNs.Add(int64(time.Since(t0))); r.lines.Add(1) }()
	if ev.Time.IsZero() {
		ev.Time = r.now().UTC() // under the lock: lines are in time order
	}
	b, err := marshalJSON(ev, "")
	if err != nil {
		return
	}
	b = r.red.Bytes(b)
	if _, err := r.events.Write(b); err == nil {
		r.unsynced.Store(true)
	}
	if r.store != nil && r.store.Shared != nil {
		r.pending = append(r.pending, b...)
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

// AppendEvent appends one line to the journal of run id without opening
// the run (its checkpoint is not written): a session that was refused
// before it began says so.
func (s *Store) AppendEvent(id string, red Redactor, now func() time.Time, ev Event) {
	if red == nil {
		red = noRedaction{}
	}
	flag := os.O_WRONLY | os.O_APPEND
	if s.Shared != nil {
		// The run may have no directory on this machine yet.
		if err := os.MkdirAll(s.runDir(id), 0o700); err == nil {
			flag |= os.O_CREATE
		}
	}
	f, err := os.OpenFile(s.EventsPath(id), flag, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	r := &Run{store: s, red: red, events: f, now: now}
	r.Event(ev)
	_ = f.Sync()
	if s.Shared != nil {
		r.st = &State{RunID: id}
		r.sharedAppend()
	}
}
