package framework

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// RunState is the part of `status -o json` (and of state.json) the tests read.
type RunState struct {
	RunID     string            `json:"runId"`
	PlanName  string            `json:"planName"`
	Outcome   string            `json:"outcome"`
	Sessions  int               `json:"sessions"`
	Facts     map[string]string `json:"facts"`
	Steps     []StepState       `json:"steps"`
	Lock      *struct{ Held bool }
	Approvals map[string]any `json:"approvals"`
}

type StepState struct {
	ID    string      `json:"id"`
	Type  string      `json:"type"`
	Hosts []HostState `json:"hosts"`
}

type HostState struct {
	Host     string `json:"host"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	Elapsed  int64  `json:"elapsedMs"`
	Remote   int64  `json:"remoteMs"`
	API      int64  `json:"apiMs"`
	Cmds     int    `json:"commands"`
	Error    string `json:"error"`
	Why      string `json:"why"`
}

func (s *RunState) Find(step, host string) *HostState {
	for i := range s.Steps {
		if s.Steps[i].ID != step {
			continue
		}
		for j := range s.Steps[i].Hosts {
			if s.Steps[i].Hosts[j].Host == host {
				return &s.Steps[i].Hosts[j]
			}
		}
	}
	return nil
}

// notDone lists the step-hosts that are not done, with their status.
func (s *RunState) NotDone() []string {
	var out []string
	for _, st := range s.Steps {
		for _, h := range st.Hosts {
			if h.Status != "done" {
				out = append(out, fmt.Sprintf("%s@%s=%s(%s%s)", st.ID, h.Host, h.Status, h.Error, h.Why))
			}
		}
	}
	return out
}

// statusJSON runs `status RUN -o json` and decodes it.
func (e *E2E) StatusJSON(t *testing.T, stateDir, runID string) *RunState {
	t.Helper()
	r := e.CLI(t, "status", runID, "-o", "json", "--state-dir", stateDir)
	if r.Code != 0 {
		t.Fatalf("status: %s", r)
	}
	var st RunState
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, r.Stdout)
	}
	return &st
}

// ReadState reads runs/<id>/state.json directly (what a crash leaves).
func ReadState(t *testing.T, stateDir, runID string) *RunState {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "runs", runID, "state.json"))
	if err != nil {
		t.Fatalf("read state: %v", err)
	}
	var st RunState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("decode state.json: %v", err)
	}
	return &st
}

// OnlyRun returns the one run id in stateDir (failing if there are more).
func OnlyRun(t *testing.T, stateDir string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(stateDir, "runs"))
	if err != nil {
		t.Fatalf("runs: %v", err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("want exactly one run in %s, have %v", stateDir, names)
	}
	return ents[0].Name()
}

// RunEvent is the part of an events.jsonl line this test reads.
type RunEvent struct {
	Type  string `json:"type"`
	Step  string `json:"step"`
	Host  string `json:"host"`
	Cmd   string `json:"cmd"`
	Exit  *int   `json:"exit"`
	Error string `json:"error"`
	Msg   string `json:"msg"`
}

// ReadEvents reads the events.jsonl journal of a run.
func ReadEvents(t *testing.T, stateDir, runID string) []RunEvent {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "runs", runID, "events.jsonl"))
	if err != nil {
		t.Fatalf("events.jsonl: %v", err)
	}
	var evs []RunEvent
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev RunEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("events.jsonl line %q: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	return evs
}
