package main

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func steps(t *testing.T, s string) []Cmd {
	t.Helper()
	cmds, err := ParseSteps(strings.NewReader(strings.ReplaceAll(s, "|", "\t")))
	if err != nil {
		t.Fatal(err)
	}
	return cmds
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// Total loss: each host's chain runs in parallel with the others; the
// health check waits for the slowest start; failed polls do not count.
func TestCriticalPathTotalLoss(t *testing.T) {
	cmds := steps(t, `copy|h1|0|0|0.5|0
copy|h2|0|0|0.9|0
restore|h1|0|0|1.0|0
restore|h2|0|0|0.4|0
start|h1|0|0|0.2|0
start|h2|0|0|0.2|0
health|h1|0|0|0.3|1
health|h1|0|0|0.1|0
`)
	p, err := CriticalPath("total-loss", cmds, 0)
	if err != nil {
		t.Fatal(err)
	}
	// h1: 0.5+1.0+0.2 = 1.7; h2: 0.9+0.4+0.2 = 1.5; health after the later: 1.7+0.1
	if !near(p.Limit, 1.8) {
		t.Errorf("limit %v, want 1.8", p.Limit)
	}
	if want := []string{"copy@h1", "restore@h1", "start@h1", "health@h1"}; !slices.Equal(p.Chain, want) {
		t.Errorf("chain %v, want %v", p.Chain, want)
	}
	if p.Cmds != 7 {
		t.Errorf("cmds %d, want 7 (the failed poll left out)", p.Cmds)
	}
	// without the connection cost: every command 0.1 cheaper, none below 0
	p, _ = CriticalPath("total-loss", cmds, 0.1)
	// h1: 0.4+0.9+0.1 = 1.4; h2: 0.8+0.3+0.1 = 1.2; health 0
	if !near(p.Limit, 1.4) {
		t.Errorf("limit without connections %v, want 1.4", p.Limit)
	}
}

// Quorum loss: the second lost member's add waits for the first one's
// start on another host, its start for its add; the wipes wait for nothing.
func TestCriticalPathQuorumLoss(t *testing.T) {
	cmds := steps(t, `backup|h1|0|0|1|0
restart|h1|0|0|1|0
member-add|h1|0|0|1|1
member-add|h1|0|0|1|0
wipe|h2|0|0|5|0
start|h2|0|0|1|0
member-add|h1|0|0|1|0
wipe|h3|0|0|1|0
start|h3|0|0|1|0
health|h1|0|0|1|0
`)
	p, err := CriticalPath("quorum-loss", cmds, 0)
	if err != nil {
		t.Fatal(err)
	}
	// h1: backup 1, restart 2, add 3; h2: wipe 5, start max(5,3)+1 = 6;
	// add(etcd3) max(3, 6)+1 = 7; h3: wipe 1, start max(1,7)+1 = 8; health 9
	if !near(p.Limit, 9) {
		t.Errorf("limit %v, want 9", p.Limit)
	}
	if want := []string{"wipe@h2", "start@h2", "member-add@h1", "start@h3", "health@h1"}; !slices.Equal(p.Chain, want) {
		t.Errorf("chain %v, want %v", p.Chain, want)
	}
}

func TestCriticalPathUnknownScenario(t *testing.T) {
	if _, err := CriticalPath("ip-change", steps(t, "x|h1|0|0|1|0\n"), 0); err == nil {
		t.Error("no error for a scenario without dependencies")
	}
	if _, err := CriticalPath("lost-host", steps(t, "x|h1|0|0|1|1\n"), 0); err == nil {
		t.Error("no error when no command succeeded")
	}
	if _, err := ParseSteps(strings.NewReader("a\tb\n")); err == nil {
		t.Error("no error for a short line")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := Median(c.in); !near(got, c.want) {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestEngineLine(t *testing.T) {
	out := "…\nengine time: 0.12 s (3.4% of 3.50 s wall)\n"
	e, ok := parseEngineLine(out)
	if !ok || !near(e.Sec, 0.12) || !near(e.Pct, 3.4) || !near(e.Wall, 3.5) {
		t.Errorf("parseEngineLine = %+v, %v", e, ok)
	}
	if _, ok := parseEngineLine("no such line\n"); ok {
		t.Error("found an engine line where there is none")
	}
}
