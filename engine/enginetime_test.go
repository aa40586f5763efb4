package engine

import (
	"strings"
	"testing"
)

// The engine's own time is recorded in the state and sums its parts.
func TestEngineTimeRecorded(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: lane, on: all, with: {cmd: a}}
  - {id: b, type: lane, on: all, needs: [a], with: {cmd: b}}
`)
	res, err := h.apply(h.opts())
	if err != nil {
		t.Fatal(err)
	}
	if res.Engine <= 0 || res.EngineWall < res.Engine/10 || res.State.EngineSeconds <= 0 {
		t.Errorf("engine %v of wall %v, state %v", res.Engine, res.EngineWall, res.State.EngineSeconds)
	}
	line := EngineLine(res.Engine, res.EngineWall)
	if !strings.HasPrefix(line, "engine time: ") || !strings.Contains(line, "% of ") || !strings.HasSuffix(line, " s wall)") {
		t.Errorf("line %q", line)
	}
}
