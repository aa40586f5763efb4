package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/hostlock"
	"github.com/etcd-rescue/etcd-rescue/lab"
)

// Every error a command can return maps to a code of the table, through
// report only; every code of the table but 0 is reached by some error.
func TestReportMapsEveryError(t *testing.T) {
	cases := map[string]struct {
		err   error
		code  int
		lines []string // in stderr, in order
	}{
		"plain":        {errors.New("boom"), exitFailed, []string{"etcd-rescue: error: boom"}},
		"usage":        {usageError{"bad usage"}, exitUsage, []string{"etcd-rescue: error: bad usage"}},
		"coded":        {withCode(exitLocked, errors.New("held"), "wait"), exitLocked, []string{"etcd-rescue: error: held", "hint: wait"}},
		"engine usage": {fmt.Errorf("resume: %w", &engine.UsageError{Msg: "--rerun x: no step"}), exitUsage, []string{"etcd-rescue: error: resume: --rerun x: no step"}},
		"locked":       {&runstate.LockedError{Dir: "/s", Owner: &runstate.LockInfo{PID: 7}}, exitLocked, []string{"hint: wait for it to finish; if that process is gone for good: etcd-rescue unlock --force --state-dir /s"}},
		"stale":        {&engine.StaleError{RunID: "r1", Plan: "p.yaml", Reason: "changed"}, exitLocked, []string{"hint: etcd-rescue status r1 shows what the run did so far"}},
		"invalid plan": {&engine.InvalidPlanError{File: "p.yaml"}, exitUsage, []string{"hint: etcd-rescue validate p.yaml"}},
		"no state":     {&runstate.NoStateError{Dir: "/s"}, exitUsage, []string{"hint: etcd-rescue runs lists the runs"}},
		"prereq":       {&engine.PrereqError{Problems: []string{"no identity"}}, exitPrereq, []string{"etcd-rescue: error: missing prerequisite: no identity", "hint: nothing was run"}},
		"host gate":    {&engine.HostGateError{Command: "resume", RunID: "r1", Hosts: []engine.GateHost{{Host: "h1", Address: "10.0.0.1:22", Reach: "host-key-unknown", Cause: "host key verification failed for 10.0.0.1", Uses: "step fence", Hints: []string{"ssh-keyscan"}}}}, exitPrereq, []string{"etcd-rescue: error: resume stopped before the first change: 1 host(s) not proven reachable and trusted; nothing was changed on any host", "  - h1 (10.0.0.1:22): host key unknown: host key verification failed for 10.0.0.1; needed by step fence", "hint: ssh-keyscan", "hint: nothing was changed on any host and run r1 is as it was"}},
		"cert gate": {&engine.CertGateError{Command: "apply", Problems: []engine.CertProblem{{Member: "etcd3", Host: "node3", File: "/etc/etcd/pki/server.crt", Origin: "ETCD_PEER_CERT_FILE in /etc/etcd/etcd.env", Kind: "missing-san",
			Text: "not valid for 10.0.0.13 (the peer URL https://10.0.0.13:2380); it lists IP:10.0.0.3, IP:127.0.0.1, DNS:localhost, DNS:node3", Hint: "add a cert-issue step on etcd3 before it starts (docs/plan-format.md#certificates), or install a certificate that lists 10.0.0.13, and run again"}}}, exitFailed,
			[]string{"etcd-rescue: error: apply stopped before the first change: the certificates of 1 member are not valid for the addresses the plan starts it on; nothing was changed on any host",
				"  - etcd3 on node3: /etc/etcd/pki/server.crt (ETCD_PEER_CERT_FILE in /etc/etcd/etcd.env): not valid for 10.0.0.13 (the peer URL https://10.0.0.13:2380); it lists IP:10.0.0.3, IP:127.0.0.1, DNS:localhost, DNS:node3",
				"      hint: add a cert-issue step on etcd3 before it starts (docs/plan-format.md#certificates), or install a certificate that lists 10.0.0.13, and run again",
				"hint: nothing was changed on any host and no run was created"}},
		"host locked":    {&engine.HostLockedError{Host: "h1", Owner: hostlock.Owner{RunID: "R0", Operator: "ann@lap", PID: 9, StateDir: "/s0", HolderPID: 77}}, exitLocked, []string{"etcd-rescue: error: h1 is locked by run R0 of ann@lap (pid 9, state dir /s0): another recovery", "hint: nothing was changed", "hint: if that run is gone, the lock frees itself within 30 s; to stop a live holder: etcd-rescue unlock --help (on h1: kill 77)"}},
		"host no flock":  {&engine.HostLockMissingError{Host: "h1", What: "flock (util-linux) is not installed"}, exitPrereq, []string{"etcd-rescue: error: host h1 cannot hold the run lock: flock (util-linux) is not installed", "hint: nothing was changed on any host"}},
		"not confirmed":  {engine.ErrNotConfirmed, exitFailed, nil},
		"run failed":     {&engine.RunError{RunID: "r1", StateDir: "/s", Failed: []*engine.StepError{{Step: "a", Err: errors.New("x")}}}, exitFailed, []string{"hint: fix the cause, then continue: etcd-rescue resume r1 --state-dir /s"}},
		"run waiting":    {&engine.RunError{RunID: "r1", Waiting: []*engine.OperatorError{{Step: "ok", Hints: []string{"--approve ok"}}}}, exitWaiting, []string{"hint: --approve ok"}},
		"run interrupt":  {&engine.RunError{RunID: "r1", Interrupted: true}, exitInterrupted, []string{"hint: fix the cause, then continue: etcd-rescue resume r1"}},
		"lab prereq":     {labError{&lab.PrereqError{Missing: []lab.Missing{{What: "debootstrap", Install: "apt-get install -y debootstrap", Apt: "debootstrap"}}}}, exitPrereq, []string{"etcd-rescue: error: missing prerequisite: debootstrap", "  - debootstrap", "hint: "}},
		"lab verify":     {labError{&lab.VerifyError{Problems: []string{"h2 down"}}}, exitFailed, []string{"etcd-rescue: error: lab verify: the lab's cluster is not healthy:", "  - h2 down", "hint: `etcd-rescue lab status` shows every host and member"}},
		"lab not up":     {labError{fmt.Errorf("open: %w", lab.ErrNotUp)}, exitFailed, []string{"hint: start one with `etcd-rescue lab up`"}},
		"lab busy":       {labError{lab.ErrBusy}, exitFailed, []string{"hint: one lab at a time per machine"}},
		"lab interrupt":  {labError{fmt.Errorf("up: starting h2:\nwaiting: %w", context.Canceled)}, exitInterrupted, []string{"etcd-rescue: error: up: starting h2:", "  waiting: context canceled", "hint: interrupted; `etcd-rescue lab down` removes whatever is left"}},
		"quiet findings": {reported(exitUsage, "findings"), exitUsage, nil},
		"fleet partial": {fleetOutcome(make(chan struct{}), []*fleetCluster{{name: "a", result: fleetDone}, {name: "b", result: fleetFailed, runID: "r2", stateDir: "/s/b"}}), exitFleetPartial,
			[]string{"etcd-rescue: error: fleet run: 1 of 2 clusters did not succeed (b failed); the others ran to their end", "hint: continue a run that stopped: etcd-rescue resume r2 --state-dir /s/b"}},
	}
	reached := map[int]bool{}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := report(tc.err, &stderr)
			reached[code] = true
			if code != tc.code {
				t.Errorf("code %d, want %d", code, tc.code)
			}
			rest := stderr.String()
			for _, l := range tc.lines {
				i := strings.Index(rest, l)
				if i < 0 {
					t.Errorf("stderr lacks %q (in order):\n%s", l, stderr.String())
					break
				}
				rest = rest[i+len(l):]
			}
			if name == "quiet findings" && stderr.Len() > 0 {
				t.Errorf("a reported error printed again: %q", stderr.String())
			}
		})
	}
	for _, e := range exitCodes {
		// exit 70 comes from a recovered panic, not an error: TestPanicIsInternalError
		if e.Code != exitOK && e.Code != exitInternal && !reached[e.Code] {
			t.Errorf("no error maps to exit code %d (%s)", e.Code, e.Name)
		}
	}
	if report(nil, &bytes.Buffer{}) != exitOK {
		t.Error("nil error: not exit 0")
	}
}

// A panic is reported as a bug with exit 70, never as exit 2 (findings).
func TestPanicIsInternalError(t *testing.T) {
	var stderr strings.Builder
	code := func() (code int) {
		defer reportBug(&stderr, &code)
		panic("boom: a bug")
	}()
	if code != exitInternal || code == exitUsage {
		t.Errorf("exit %d, want %d", code, exitInternal)
	}
	if !strings.Contains(stderr.String(), "internal error") || !strings.Contains(stderr.String(), "boom: a bug") ||
		!strings.Contains(stderr.String(), "goroutine") {
		t.Errorf("stderr %q: want the message and the stack", stderr.String())
	}
}
