package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
)

// hostFacts are facts whose hosts h1..h3 have the given reach (default ok).
func hostFacts(reach map[string]facts.Reach) *facts.Facts {
	f := &facts.Facts{Kind: facts.Kind, Version: facts.Version}
	for _, n := range []string{"h1", "h2", "h3"} {
		h := &facts.Host{Name: n, Address: "10.0.0." + n[1:], Reach: facts.ReachOK}
		if r, ok := reach[n]; ok {
			h.Reach = r
			switch r {
			case facts.ReachHostKeyUnknown:
				h.Error = "host " + n + ": host key verification failed for " + h.Address + ": unknown host, not in /k/known_hosts"
			case facts.ReachHostKeyChanged:
				h.Error = "host " + n + ": host key verification failed for " + h.Address + ": HOST KEY CHANGED: ... records ssh-ed25519 SHA256:old (/k/known_hosts:3)"
			default:
				h.Error = string(r) + " on " + n
			}
		}
		f.Hosts = append(f.Hosts, h)
	}
	return f
}

func gateHarness(t *testing.T, stepsYAML string, f *facts.Facts) (*harness, Options) {
	h := newHarness(t, "", stepsYAML)
	o := h.opts()
	o.CollectFacts = func(context.Context) (*facts.Facts, error) { return f, nil }
	return h, o
}

func gateErrOf(t *testing.T, err error) *HostGateError {
	t.Helper()
	var ge *HostGateError
	if !errors.As(err, &ge) {
		t.Fatalf("want a *HostGateError, got %v", err)
	}
	return ge
}

const gatePlan = `
  - {id: fence, type: stop-service, on: h3, with: {unreachable: skip}}
  - {id: work, type: run, on: h1, needs: [fence], with: {cmd: work}}
`

// A trust failure on any host the session touches stops apply before
// anything runs, with no run created, whatever the steps on that host say
// about unreachable hosts.
func TestGateTrustFailureStopsApply(t *testing.T) {
	for _, r := range []facts.Reach{facts.ReachHostKeyUnknown, facts.ReachHostKeyChanged, facts.ReachAuthFailed, facts.ReachSudoFailed} {
		t.Run(string(r), func(t *testing.T) {
			h, o := gateHarness(t, gatePlan, hostFacts(map[string]facts.Reach{"h3": r}))
			_, err := h.apply(o)
			ge := gateErrOf(t, err)
			if len(ge.Hosts) != 1 || ge.Hosts[0].Host != "h3" || ge.Hosts[0].Reach != r {
				t.Fatalf("hosts: %+v", ge.Hosts)
			}
			msg := err.Error()
			for _, want := range []string{"nothing was changed on any host", "h3 (10.0.0.3:22): " + reachWords(r), "needed by step fence", "hint: "} {
				if !strings.Contains(msg, want) {
					t.Errorf("error lacks %q:\n%s", want, msg)
				}
			}
			if r == facts.ReachHostKeyChanged && !strings.Contains(msg, "ssh-keygen -R 10.0.0.3 -f /nonexistent") {
				t.Errorf("no ssh-keygen -R hint:\n%s", msg)
			}
			if r == facts.ReachHostKeyUnknown && !strings.Contains(msg, "ssh-keyscan -p 22 10.0.0.3 >> /nonexistent") {
				t.Errorf("no ssh-keyscan hint:\n%s", msg)
			}
			if cmds := h.w.commands(); len(cmds) != 0 {
				t.Errorf("commands ran: %v", cmds)
			}
			if runs, _ := os.ReadDir(filepath.Join(h.stateDir, "runs")); len(runs) != 0 {
				t.Errorf("a run was created: %v", runs)
			}
		})
	}
}

// Network unreachability stops the session only on a host whose remaining
// steps do not all skip an unreachable host; a host used only to tunnel
// etcd may be unreachable, but not untrusted.
func TestGateUnreachable(t *testing.T) {
	for name, tc := range map[string]struct {
		plan     string
		reach    map[string]facts.Reach
		wantStop string // "" = the run goes on
		wantNote string
	}{
		"fenced host unreachable: goes on": {plan: gatePlan, reach: map[string]facts.Reach{"h3": facts.ReachTimeout},
			wantNote: "h3 timeout (its remaining steps fence skip an unreachable host)"},
		"worked-on host unreachable: stops": {plan: gatePlan, reach: map[string]facts.Reach{"h1": facts.ReachNoRoute}, wantStop: "h1 (10.0.0.1:22): unreachable (no route)"},
		"skip and non-skip step on one host: stops": {plan: gatePlan + "  - {id: more, type: run, on: h3, with: {cmd: more}}\n",
			reach: map[string]facts.Reach{"h3": facts.ReachRefused}, wantStop: "needed by step fence, more"},
		"tunnel-only host unreachable: goes on": {plan: "  - {id: work, type: run, on: h1, with: {cmd: work}}\n",
			reach: map[string]facts.Reach{"h2": facts.ReachTimeout}, wantNote: "h2 timeout (only an etcd tunnel"},
		"tunnel-only host untrusted: stops": {plan: "  - {id: work, type: run, on: h1, with: {cmd: work}}\n",
			reach: map[string]facts.Reach{"h2": facts.ReachHostKeyUnknown}, wantStop: "needed by the etcd tunnel"},
		"step host with another error: stops": {plan: gatePlan, reach: map[string]facts.Reach{"h1": facts.ReachError}, wantStop: "could not be checked"},
	} {
		t.Run(name, func(t *testing.T) {
			h, o := gateHarness(t, tc.plan, hostFacts(tc.reach))
			res, err := h.apply(o)
			if tc.wantStop != "" {
				ge := gateErrOf(t, err)
				if !strings.Contains(ge.Error(), tc.wantStop) {
					t.Errorf("error lacks %q:\n%v", tc.wantStop, ge)
				}
				if cmds := h.w.commands(); len(cmds) != 0 {
					t.Errorf("commands ran: %v", cmds)
				}
				return
			}
			if err != nil {
				t.Fatalf("apply: %v", err)
			}
			ev := readFile(t, filepath.Join(res.StateDir, "runs", res.RunID, "events.jsonl"))
			if !strings.Contains(ev, tc.wantNote) {
				t.Errorf("journal lacks %q:\n%s", tc.wantNote, ev)
			}
		})
	}
}

// Resume gates the hosts of what is left; a refusal leaves the run as it
// was, with a line in its journal.
func TestGateResume(t *testing.T) {
	h, o := gateHarness(t, gatePlan, hostFacts(nil))
	h.w.handler = func(host, cmd string) (string, int, error) {
		if cmd == "work" {
			return "", 1, nil
		}
		return "", 0, nil
	}
	res, err := h.apply(o)
	runErrOf(t, err)
	h.w.handler = nil
	statePath := filepath.Join(res.StateDir, "runs", res.RunID, "state.json")
	before := readFile(t, statePath)

	// h2 and h3 are done with: their keys no longer matter, h1's does.
	o.CollectFacts = func(context.Context) (*facts.Facts, error) {
		return hostFacts(map[string]facts.Reach{"h1": facts.ReachHostKeyChanged}), nil
	}
	n := len(h.w.commands())
	_, err = h.resume(res.RunID, o)
	ge := gateErrOf(t, err)
	if ge.RunID != res.RunID || len(ge.Hosts) != 1 || ge.Hosts[0].Host != "h1" || !strings.Contains(ge.Error(), "resume stopped before the first change") {
		t.Errorf("gate error: %v", ge)
	}
	if len(h.w.commands()) != n {
		t.Errorf("commands ran: %v", h.w.commands()[n:])
	}
	if after := readFile(t, statePath); after != before {
		t.Errorf("the checkpoint changed:\n%s\n---\n%s", before, after)
	}
	ev := readFile(t, filepath.Join(res.StateDir, "runs", res.RunID, "events.jsonl"))
	if !strings.Contains(ev, `"status":"refused"`) || !strings.Contains(ev, "host key changed") {
		t.Errorf("journal lacks the refusal:\n%s", ev)
	}

	// h3's only step is done: unreachable now, it is only an etcd tunnel.
	o.CollectFacts = func(context.Context) (*facts.Facts, error) {
		return hostFacts(map[string]facts.Reach{"h3": facts.ReachTimeout}), nil
	}
	if _, err := h.resume(res.RunID, o); err != nil {
		t.Fatalf("resume with only a done host unreachable: %v", err)
	}
}

// A backend other than SSH without a facts collector skips the gate and
// says so in the journal.
func TestGateSkippedWithoutFacts(t *testing.T) {
	h := newHarness(t, "", "  - {id: work, type: run, on: h1, with: {cmd: work}}\n")
	res, err := h.apply(h.opts())
	if err != nil {
		t.Fatal(err)
	}
	ev := readFile(t, filepath.Join(res.StateDir, "runs", res.RunID, "events.jsonl"))
	if !strings.Contains(ev, "host gate skipped: a backend other than SSH") {
		t.Errorf("journal lacks the skipped gate:\n%s", ev)
	}
}

// A host the facts found unreachable gets one more try before it stops
// the session: a slow host that answers goes on.
func TestGateRechecksUnreachable(t *testing.T) {
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	plan := sshPlan(t, srv, dir, `
  - {id: touch, type: exec, on: all, with: {command: "touch ${vars.dir}/changed", creates: "${vars.dir}/changed"}}
`)
	f := &facts.Facts{Kind: facts.Kind, Version: facts.Version, Hosts: []*facts.Host{{Name: "local", Address: "127.0.0.1", Reach: facts.ReachTimeout, Error: "no answer within the timeout"}}}
	o := Options{RetryDelay: -1, StateDir: filepath.Join(dir, "state"), CollectFacts: func(context.Context) (*facts.Facts, error) { return f, nil }}
	res, err := Apply(testCtx(t), loadReal(t, plan), o)
	if err != nil {
		t.Fatal(err)
	}
	ev := readFile(t, filepath.Join(res.StateDir, "runs", res.RunID, "events.jsonl"))
	for _, want := range []string{"local answered SSH on a second try (the facts said timeout)", "held on local for this session"} {
		if !strings.Contains(ev, want) {
			t.Errorf("journal lacks %q:\n%s", want, ev)
		}
	}
}
