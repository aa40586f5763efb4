// Package runstate owns what a run leaves on disk: the checkpoint model
// (State), the state dir (Store) with its runs and lock, atomic writes, the
// group-committed checkpoint of an open Run, its events journal, and the
// run index that finds a run from any directory. It knows nothing of plans
// or steps: the engine decides, runstate records.
package runstate

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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

// State is one run's checkpoint (runs/<id>/state.json). It is rewritten
// atomically at every transition, so after a crash of the process it holds
// the last transition that happened; after a power loss, a transition at
// least as late as the last durable one (Durability).
type State struct {
	Format     int    `json:"format"`
	RunID      string `json:"runId"`
	Plan       string `json:"plan"`                // absolute path of the plan file
	Inventory  string `json:"inventory,omitempty"` // absolute path given with --inventory
	PlanSHA256 string `json:"planSha256"`          // of the plan bytes and the inventory bytes
	PlanName   string `json:"planName"`
	// Cluster is the plan's cluster name: the scope of the run lock in a
	// shared state store.
	Cluster string `json:"cluster,omitempty"`
	// StartedBy is who started the run and from which machine
	// ("user@machine"); ResumedBy who began its latest session, when
	// that was a resume.
	StartedBy string    `json:"startedBy,omitempty"`
	ResumedBy string    `json:"resumedBy,omitempty"`
	Outcome   string    `json:"outcome"`
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
	// Sessions counts apply + resumes of this run.
	Sessions int `json:"sessions"`
	// EngineSeconds is the engine's own time over all sessions: checkpoint
	// and journal writes, scheduling, compile and preflight; not the time
	// spent waiting for hosts, etcd or the operator.
	EngineSeconds float64              `json:"engineSeconds,omitempty"`
	Steps         []*StepState         `json:"steps"`
	Facts         map[string]string    `json:"facts"`
	Approvals     map[string]*Approval `json:"approvals,omitempty"`

	// Recovered, set by Load only, says that state.json could not be read
	// and the last durable checkpoint was read instead (a power loss).
	Recovered string `json:"-"`
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

// AddTime adds an attempt's (or a Check's) figures to the record: its wall
// time, the parts of it spent in remote commands and in etcd API calls, and
// how many commands it ran.
func (h *HostState) AddTime(elapsed, remote, api time.Duration, cmds int) {
	h.Elapsed += toMillis(elapsed)
	h.Remote += toMillis(remote)
	h.API += toMillis(api)
	h.Cmds += cmds
}

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
