package framework

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Measurement is one apply (or resume) of a plan on the lab, for
// docs/measurements.md.
type Measurement struct {
	Test     string
	Plan     string
	Version  string
	Members  int
	Wall     time.Duration // the etcd-rescue process, start to exit
	Sessions int
	Steps    []StepTimes
	Summary  string // the time table apply printed
}

type StepTimes struct {
	ID                              string
	Hosts                           int
	Elapsed, Remote, API, Cmds, Att int64
}

func TimesOf(st *RunState) []StepTimes {
	var out []StepTimes
	for _, s := range st.Steps {
		x := StepTimes{ID: s.ID, Hosts: len(s.Hosts)}
		for _, h := range s.Hosts {
			x.Elapsed += h.Elapsed
			x.Remote += h.Remote
			x.API += h.API
			x.Cmds += int64(h.Cmds)
			x.Att += int64(h.Attempts)
		}
		out = append(out, x)
	}
	return out
}

// SummaryOf cuts the time summary (from "run ID: outcome" on) out of
// apply's stdout.
func SummaryOf(stdout string) string {
	i := strings.LastIndex(stdout, "\nrun ")
	if i < 0 {
		return ""
	}
	return strings.TrimSpace(stdout[i+1:])
}

var measureMu sync.Mutex // serializes appends to E2E_MEASUREMENTS

// Record logs m and, when E2E_MEASUREMENTS names a file, appends it there
// as one JSON line (the figures of docs/measurements.md come from these).
func Record(t *testing.T, m Measurement) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s on etcd %s, %d member(s): wall %.1fs", m.Test, m.Plan, m.Version, m.Members, m.Wall.Seconds())
	for _, s := range m.Steps {
		fmt.Fprintf(&b, "\n  %-16s engine %6dms  ssh %6dms  api %6dms  other %6dms  (%d cmds, %d attempts on %d host(s))",
			s.ID, s.Elapsed, s.Remote, s.API, max(0, s.Elapsed-s.Remote-s.API), s.Cmds, s.Att, s.Hosts)
	}
	t.Log(b.String())
	if p := os.Getenv("E2E_MEASUREMENTS"); p != "" {
		measureMu.Lock()
		defer measureMu.Unlock()
		f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Errorf("E2E_MEASUREMENTS: %v", err)
			return
		}
		defer f.Close()
		line, _ := json.Marshal(m)
		f.Write(append(line, '\n'))
	}
}
