package engine

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/hostlock"
)

// reconcile makes the state hold one record per step-host of c, in plan
// order, keeping existing records.
func reconcile(st *runstate.State, c *Compiled) {
	old := map[string]*runstate.StepState{}
	for _, s := range st.Steps {
		old[s.ID] = s
	}
	var out []*runstate.StepState
	for _, n := range c.Nodes {
		s := old[n.ID()]
		if s == nil {
			s = &runstate.StepState{ID: n.ID(), Type: n.Type.Name}
		}
		have := map[string]*runstate.HostState{}
		for _, h := range s.Hosts {
			have[h.Host] = h
		}
		var hosts []*runstate.HostState
		for _, t := range n.Targets {
			h := have[t.Name()]
			if h == nil {
				h = &runstate.HostState{Host: t.Name(), Status: runstate.StatusPending}
			}
			hosts = append(hosts, h)
		}
		sort.SliceStable(hosts, func(i, j int) bool { return hosts[i].Host < hosts[j].Host })
		s.Hosts = hosts
		out = append(out, s)
	}
	st.Steps = out
	if st.Facts == nil {
		st.Facts = map[string]string{}
	}
	if st.Approvals == nil {
		st.Approvals = map[string]*runstate.Approval{}
	}
}

// session walks the plan once over an open run and records the outcome.
func session(ctx context.Context, c *Compiled, run *runstate.Run, opts *Options, kind string, before *sessionFacts) (res *Result, err error) {
	start := opts.now()
	var after *sessionFacts
	defer func() {
		// Whatever the outcome: the evidence of this session.
		writeEvidence(run, opts, kind, start, before, after)
	}()
	if before != nil {
		run.Event(runstate.Event{Type: "facts", Msg: "at session start: " + factsNote(before)})
		if before.gate != "" {
			run.Event(runstate.Event{Type: "gate", Msg: before.gate})
		}
		if before.certGate != "" {
			run.Event(runstate.Event{Type: "gate", Msg: before.certGate})
		}
	}
	red := NewRedactor(c.Plan)
	out := &progress{w: opts.Progress, red: red, now: opts.now}
	var backend Backend
	if opts.Backend != nil {
		backend, err = opts.Backend(c)
	} else {
		var b *SSHBackend
		if opts.conns != nil {
			b = sshBackendOn(c.Plan, opts.conns)
		} else {
			b, err = NewSSHBackend(c.Plan)
		}
		if err == nil {
			backend = b
			b.locks = opts.locks
			if hs := opts.locks.hosts(); len(hs) > 0 {
				opts.locks.setEvent(func(host, msg string) { run.Event(runstate.Event{Type: "lock", Host: host, Msg: msg}) })
				run.Event(runstate.Event{Type: "lock", Msg: "run lock " + hostlockPath(opts) + " held on " + strings.Join(hs, ", ") + " for this session"})
			}
			for _, r := range b.Routes() {
				run.Event(runstate.Event{Type: "run", Host: r.Host, Msg: r.String()})
			}
			for _, h := range b.InsecureHosts() {
				// Loud on every run, and in the journal: this is for labs.
				out.printf("WARNING: host key of %s is NOT verified (ssh.insecureIgnoreHostKey): anyone on the path can impersonate it", h)
				run.Event(runstate.Event{Type: "run", Host: h, Msg: "WARNING: host key not verified (insecureIgnoreHostKey)"})
			}
		}
	}
	if err != nil {
		_ = run.SetOutcome(runstate.OutcomeFailed)
		return nil, err
	}
	defer backend.Close()
	if crashAfter != "" {
		out.printf("WARNING: %s=%q is set: this process kills itself after the first successful command or etcd call containing it (a crash-test failpoint)", CrashAfterEnv, crashAfter)
		run.Event(runstate.Event{Type: "run", Msg: "WARNING: crash-test failpoint " + CrashAfterEnv + "=" + crashAfter})
	}
	if f := os.Getenv(HostLockFileEnv); f != "" && opts.Backend == nil {
		out.printf("WARNING: %s=%q is set: the run lock on every host is that file, not %s, so a run started without it is not kept out (for tests)", HostLockFileEnv, f, hostlock.Path)
		run.Event(runstate.Event{Type: "run", Msg: "WARNING: host lock file moved by " + HostLockFileEnv + "=" + f})
	}
	if opts.OnStart != nil {
		opts.OnStart(run)
	}
	c.RunDir = run.Dir()
	stop := opts.Stop
	if stop == nil {
		stop = make(chan struct{}) // never closed
	}
	o := *opts
	o.Stop = stop
	w := &walker{c: c, runID: run.ID(), run: run, backend: backend, red: red, opts: &o, out: out,
		sem: newSlots(opts.Parallelism), ranks: ranks(c)}
	if before != nil {
		w.live = liveView(before.f)
	}
	run.Event(runstate.Event{Type: "run", Status: "start", Msg: fmt.Sprintf("session %d, parallelism %d", run.Snapshot().Sessions, opts.Parallelism)})
	w.walk(ctx)

	rerr := &RunError{RunID: run.ID(), StateDir: run.StateDir(), State: run.SharedURL(), Failed: w.failed, Waiting: w.waiting, Skipped: w.skipped,
		Interrupted: w.interrupted || ctx.Err() != nil}
	sortStepErrors(c, rerr)
	outcome := runstate.OutcomeDone
	switch {
	case rerr.Interrupted:
		outcome = runstate.OutcomeInterrupted
	case len(rerr.Failed) > 0:
		outcome = runstate.OutcomeFailed
	case len(rerr.Waiting) > 0:
		outcome = runstate.OutcomeWaiting
	}
	if outcome == runstate.OutcomeDone {
		// Every step-host must be done or skipped-unreachable; anything
		// else is a bug in the walk, never a success.
		for _, s := range run.Snapshot().Steps {
			for _, h := range s.Hosts {
				if h.Status != runstate.StatusDone && h.Status != runstate.StatusSkipped {
					outcome = runstate.OutcomeFailed
					rerr.Failed = append(rerr.Failed, &StepError{Step: s.ID, Host: h.Host, ExitCode: -1,
						Err: fmt.Errorf("left %s at the end of the run", h.Status)})
				}
			}
		}
	}
	engine, parts := w.engineTime()
	uerr := run.EndSession(outcome, engine)
	run.Event(runstate.Event{Type: "run", Status: outcome, Msg: "engine time " + engineLine(engine, c.LoadTime+opts.now().Sub(opts.began)) + ": " + parts})
	after = endFacts(ctx, c, opts, outcome)
	run.Event(runstate.Event{Type: "facts", Msg: "at session end: " + factsNote(after)})
	res = &Result{RunID: run.ID(), StateDir: run.StateDir(), State: run.Snapshot(), Wall: opts.now().Sub(start),
		Engine: engine, EngineWall: c.LoadTime + opts.now().Sub(opts.began)}
	if outcome == runstate.OutcomeDone {
		return res, uerr
	}
	return res, rerr
}

// engineTime is the engine's own time in this session, summed over
// step-hosts (an upper bound where they overlap): loading the plan, the
// preflight, the walk's scheduling and preparing (walk.go, attempt.go), and
// every checkpoint and journal write of the run; and its parts, for the
// journal.
func (w *walker) engineTime() (time.Duration, string) {
	io := w.run.IOStats()
	sched := time.Duration(w.engineNs.Load())
	setup := w.c.LoadTime + w.opts.setup
	parts := fmt.Sprintf("checkpoints %.3f s in %d writes (durable %.3f s in %d, lazy %.3f s in %d), journal %.3f s in %d lines, scheduling %.3f s, load and preflight %.3f s",
		io.Checkpoint().Seconds(), io.Durables+io.Lazies, io.Durable.Seconds(), io.Durables, io.Lazy.Seconds(), io.Lazies,
		io.Journal.Seconds(), io.Lines, sched.Seconds(), setup.Seconds())
	return setup + sched + io.Checkpoint() + io.Journal, parts
}

// EngineLine is the summary line of the engine's own time, in the form
// benchmarks parse: "engine time: 0.123 s (2.1% of 3.456 s wall)".
func EngineLine(engine, wall time.Duration) string {
	return "engine time: " + engineLine(engine, wall)
}

func engineLine(engine, wall time.Duration) string {
	pct := 0.0
	if wall > 0 {
		pct = 100 * engine.Seconds() / wall.Seconds()
	}
	return fmt.Sprintf("%.3f s (%.1f%% of %.3f s wall)", engine.Seconds(), pct, wall.Seconds())
}

// sortStepErrors orders root causes by plan position, then host.
func sortStepErrors(c *Compiled, e *RunError) {
	order := map[string]int{}
	for i, n := range c.Nodes {
		order[n.ID()] = i
	}
	sort.SliceStable(e.Failed, func(i, j int) bool {
		a, b := e.Failed[i], e.Failed[j]
		if order[a.Step] != order[b.Step] {
			return order[a.Step] < order[b.Step]
		}
		return a.Host < b.Host
	})
	sort.SliceStable(e.Waiting, func(i, j int) bool {
		a, b := e.Waiting[i], e.Waiting[j]
		if order[a.Step] != order[b.Step] {
			return order[a.Step] < order[b.Step]
		}
		return a.Host < b.Host
	})
}

// interruptedFactsBound bounds the end-of-session facts after an
// interrupt: the operator asked to stop, and waits for the exit.
const interruptedFactsBound = 2 * time.Second

// endFacts collects the facts at the end of a session: bounded by
// FactsTimeout, by interruptedFactsBound after an interrupt, and skipped
// when the context is cancelled (a second interrupt).
func endFacts(ctx context.Context, c *Compiled, opts *Options, outcome string) *sessionFacts {
	if ctx.Err() != nil {
		return &sessionFacts{note: "skipped: the session was cancelled (second interrupt)"}
	}
	timeout := opts.FactsTimeout
	note := ""
	if outcome == runstate.OutcomeInterrupted && timeout > interruptedFactsBound {
		timeout = interruptedFactsBound
		note = fmt.Sprintf("interrupted: bounded to %s per host so as not to delay the exit", timeout)
	}
	sf, err := collectFacts(ctx, c, opts, timeout)
	if err != nil {
		return &sessionFacts{note: "not collected: " + err.Error()}
	}
	if note != "" {
		sf.note = note
	}
	return sf
}

// factsNote says in one line what a collection gave.
func factsNote(sf *sessionFacts) string {
	if sf == nil {
		return "facts not collected"
	}
	if sf.f == nil {
		return sf.note
	}
	var notAsked []string
	for _, h := range sf.f.Hosts {
		if !h.Reach.Asked() {
			notAsked = append(notAsked, h.Name+" ("+string(h.Reach)+")")
		}
	}
	answered := 0
	for _, m := range sf.f.Members {
		if m.API == facts.APIAnswered {
			answered++
		}
	}
	msg := fmt.Sprintf("facts collected in %s: %d of %d members answered", sf.took.Round(time.Millisecond), answered, len(sf.f.Members))
	if len(notAsked) > 0 {
		msg += "; could not ask host(s) " + strings.Join(notAsked, ", ")
	}
	if sf.note != "" {
		msg += "; " + sf.note
	}
	return msg
}
