package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/engine/reviewed"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// Resume continues run runID: it refuses when the plan file or inventory
// changed, skips what is done, probes what was left running or failed, and
// walks the rest. Errors are as for Apply, plus *StaleError,
// *InvalidPlanError and *runstate.NoStateError.
func Resume(ctx context.Context, runID string, opts Options) (*Result, error) {
	opts.defaults()
	opts.began = opts.now()
	store, id, closeShared, err := LocateRun(ctx, opts.State, opts.StateDir, runID)
	if err != nil {
		return nil, err
	}
	defer closeShared()
	opts.StateDir = store.Dir
	scope := ""
	if store.Shared != nil {
		// The lock is the cluster's: read which before taking it.
		st, err := store.Load(id)
		if err != nil {
			return nil, err
		}
		scope = st.Cluster
	}
	lock, err := store.LockFor(id, "resume", scope)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	st, err := store.Load(id)
	if err != nil {
		return nil, err
	}
	var note string
	if store.Shared != nil {
		if note, err = materialize(store, st); err != nil {
			return nil, fmt.Errorf("writing the plan files of run %s from the state store: %w", id, err)
		}
		st.ResumedBy = runstate.Who()
		if _, _, err := runstate.LocateRun("", id); err != nil {
			// Taken over from another machine: found here from now on.
			_ = runstate.RecordSharedRun(id, store.Dir, st.Plan, store.SharedURL)
		}
	}
	if st.Outcome == runstate.OutcomeDone {
		// Nothing to do, but say so rather than fail: resume is idempotent.
		return &Result{RunID: id, StateDir: store.Dir, State: st}, nil
	}
	t0 := opts.now()
	c, err := loadForResume(st, opts.Registry)
	if err != nil {
		return nil, err
	}
	c.LoadTime = opts.now().Sub(t0)
	if store.SharedURL != "" {
		if u, err := plans.ParseStateURL(store.SharedURL); err == nil {
			if err := checkOverlap(u, c.Plan); err != nil {
				return nil, err
			}
		}
	}
	if err := checkSelectors(c, opts.Rerun, "--rerun"); err != nil {
		return nil, err
	}
	if err := checkSelectors(c, opts.MarkDone, "--mark-done"); err != nil {
		return nil, err
	}
	if err := checkApprovals(c, opts.Approve); err != nil {
		return nil, err
	}
	t0 = opts.now()
	if err := preflight(c, &opts); err != nil {
		return nil, err
	}
	opts.setup += opts.now().Sub(t0)
	// One connection per host for the whole session, closed last (after
	// the host locks are released).
	if opts.Backend == nil {
		if opts.conns, err = hostPool(c.Plan); err != nil {
			return nil, err
		}
		defer opts.conns.Close()
	}
	if err := c.Bind(id); err != nil {
		return nil, err
	}
	before, err := startFacts(ctx, c, &opts)
	if err != nil {
		return nil, err
	}
	reconcile(st, c)
	if before.gate, err = gate(ctx, c, st, &opts, before, "resume", id); err != nil {
		// The run stays as it was; the journal says why this session
		// did not start.
		store.AppendEvent(id, NewRedactor(c.Plan), opts.now, runstate.Event{Type: "run", Status: "refused", Error: err.Error()})
		return nil, err
	}
	if before.certGate, err = certGate(ctx, c, st, &opts, before, "resume", id); err != nil {
		ev := runstate.Event{Type: "run", Status: "refused", Error: err.Error()}
		var cge *CertGateError
		if errors.As(err, &cge) {
			// One line: member, file, certificate, problem kinds.
			ev.Error = cge.Journal()
		}
		store.AppendEvent(id, NewRedactor(c.Plan), opts.now, ev)
		return nil, err
	}
	if opts.locks, err = takeHostLocks(ctx, c, st, &opts, before, id, store.Dir); err != nil {
		store.AppendEvent(id, NewRedactor(c.Plan), opts.now, runstate.Event{Type: "run", Status: "refused", Error: err.Error()})
		return nil, err
	}
	defer opts.locks.release()
	if err := confirm(ctx, &opts, st); err != nil {
		return nil, err
	}
	st.Sessions++
	st.Outcome = runstate.OutcomeRunning
	run, err := store.Open(st, NewRedactor(c.Plan), opts.now)
	if err != nil {
		return nil, err
	}
	defer run.Close()
	if note != "" {
		run.Event(runstate.Event{Type: "run", Msg: note})
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "note: %s\n", note)
		}
	}
	if st.Recovered != "" {
		// A power loss took state.json: the operator should know which
		// checkpoint this session goes on from.
		run.Event(runstate.Event{Type: "run", Status: "recovered", Msg: st.Recovered})
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "note: %s\n", NewRedactor(c.Plan).String(st.Recovered))
		}
	}
	return session(ctx, c, run, &opts, "resume", before)
}

// loadForResume reads the plan the run began with, and refuses if it
// changed: the checkpoint describes that plan's steps and run-id paths.
func loadForResume(st *runstate.State, reg map[string]*steps.Type) (*Compiled, error) {
	hint := "start a new run with etcd-rescue apply, or put back the plan the run began with"
	p, fs, doc := loadPlanFile(st.Plan, st.Inventory)
	fs = NewRedactor(p).Findings(fs)
	if p == nil {
		return nil, &StaleError{RunID: st.RunID, Plan: st.Plan, Reason: fmt.Sprintf("its plan %s cannot be read: %v; %s", st.Plan, fs.Err(), hint)}
	}
	if got := runstate.PlanHash(p.Raw, p.InvRaw); got != st.PlanSHA256 {
		what := "plan file " + st.Plan
		if st.Inventory != "" || len(p.InvRaw) > 0 {
			what += " or its inventory"
		}
		return nil, &StaleError{RunID: st.RunID, Plan: st.Plan, Reason: fmt.Sprintf("the %s changed since the run began (sha256 %.12s, now %.12s); %s", what, st.PlanSHA256, got, hint)}
	}
	if fs.Errors() > 0 {
		return nil, &InvalidPlanError{File: st.Plan, Findings: fs}
	}
	c, cfs := Compile(p, reg)
	if c == nil || cfs.Errors() > 0 {
		return nil, &InvalidPlanError{File: st.Plan, Findings: append(fs, NewRedactor(p).Findings(cfs)...)}
	}
	if doc != nil {
		// The paths a reviewed plan records are not in its hash: they
		// show in the dry-run, which must still be the reviewed one.
		var b strings.Builder
		if err := BuildDryRun(c).WriteText(&b); err != nil {
			return nil, err
		}
		if line, was, now := reviewed.FirstDifference(doc.DryRun, NewRedactor(p).String(b.String())); line > 0 {
			return nil, &StaleError{RunID: st.RunID, Plan: st.Plan, Reason: fmt.Sprintf("reviewed plan %s renders differently from the dry-run it holds, at line %d: reviewed %q, now %q; %s",
				st.Plan, line, was, now, hint)}
		}
	}
	return c, nil
}

// loadPlanFile loads the plan a run records: a YAML plan with its
// inventory, or a reviewed plan (apply FILE.plan), rebuilt from the bytes
// it holds. A reviewed plan that cannot be read, or whose bytes do not
// match its own hash, is a finding at the file.
func loadPlanFile(path, inventory string) (*plans.Plan, plans.Findings, *reviewed.Document) {
	if !reviewed.IsFile(path) {
		p, fs := plans.Load(path, inventory)
		return p, fs, nil
	}
	d, err := reviewed.Read(path)
	if err != nil {
		var fs plans.Findings
		fs.Add(plans.Pos{File: path}, "%s", strings.TrimPrefix(err.Error(), path+": "))
		return nil, fs, nil
	}
	p, fs := d.LoadPlan()
	return p, fs, d
}

func checkSelectors(c *Compiled, sels []Selector, flag string) error {
	for _, s := range sels {
		n, ok := c.ByID[s.Step]
		if !ok {
			return &UsageError{fmt.Sprintf("%s %s: no step %q in the plan%s", flag, s, s.Step, plans.Suggest(s.Step, ids(c)))}
		}
		if s.Host != "" && targetOf(n, s.Host) == nil {
			return &UsageError{fmt.Sprintf("%s %s: step %s does not run on host %q (it runs on %s)", flag, s, s.Step, s.Host, strings.Join(n.Hosts(), ", "))}
		}
	}
	return nil
}

// Selector is STEP or STEP@HOST from --rerun / --mark-done.
type Selector struct{ Step, Host string }

// ParseSelector reads STEP or STEP@HOST.
func ParseSelector(s string) Selector {
	step, host, _ := strings.Cut(s, "@")
	return Selector{Step: step, Host: host}
}

func (s Selector) String() string { return runstate.Key(s.Step, s.Host) }

func (s Selector) matches(step, host string) bool {
	return s.Step == step && (s.Host == "" || s.Host == host)
}

// Resume decisions.
type resumeAction int

const (
	actRun  resumeAction = iota // apply (again)
	actDone                     // the Check says it is done
	actStop                     // leave it to the operator
)

// probe is what is known about a step-host that began before.
type probe struct {
	Destructive bool
	RepeatSafe  bool
	HasCheck    bool
	CheckDone   bool
	CheckWhy    string
}

// decideResume is the resume table for a step-host found running (the
// engine died mid-step) or failed: a done Check wins; a non-destructive
// step runs again; a destructive one only when a Check says not done and
// its actions are safe to repeat; everything else waits for the operator.
func decideResume(p probe) (resumeAction, string) {
	switch {
	case p.HasCheck && p.CheckDone:
		return actDone, p.CheckWhy
	case !p.Destructive:
		return actRun, "not destructive: applied again"
	case p.HasCheck && p.RepeatSafe:
		return actRun, "its check says not done and its actions are safe to repeat"
	case p.HasCheck:
		return actStop, "its check says not done, but its first actions may already have run and repeating them is not safe"
	}
	return actStop, "it is destructive and has no check that can tell whether it already ran"
}

// probe runs the step-host's Check, if it has one, and applies the resume
// table.
func (w *walker) probe(ctx context.Context, n *Node, t *Target, prior string) (resumeAction, string, error) {
	if err := w.reap(ctx, n, t); err != nil {
		return actStop, "", err
	}
	p := probe{Destructive: destructive(t), RepeatSafe: isRepeatSafe(t)}
	if checker(t) != nil {
		p.HasCheck = true
		done, why, err := w.check(ctx, n, t)
		if err != nil {
			return actStop, "", fmt.Errorf("found %s; checking whether it is done: %w", prior, err)
		}
		p.CheckDone, p.CheckWhy = done, why
	}
	act, why := decideResume(p)
	w.run.Event(runstate.Event{Type: "probe", Step: n.ID(), Host: t.Name(), Status: prior, Msg: why})
	return act, why, nil
}

// reap kills what an earlier attempt of the step-host may have left
// running on its host before anything is probed or repeated: a Check must
// not look at a half-written dir that a live process is still writing, and
// a repeated restore must not race the first one.
func (w *walker) reap(ctx context.Context, n *Node, t *Target) error {
	r, ok := w.backend.(Reaper)
	host := t.Name()
	if !ok || host == "" {
		return nil
	}
	killed, err := r.Reap(ctx, host, w.mark(n, host))
	if errors.Is(err, ErrUnreachable) {
		// Nothing can be done there now; the Check decides (an API check
		// may still answer).
		w.run.Event(runstate.Event{Type: "reap", Step: n.ID(), Host: host, Error: err.Error()})
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking for processes left by the earlier attempt on %s: %w", host, err)
	}
	if killed > 0 {
		msg := fmt.Sprintf("killed %d process(es) left running by the earlier attempt", killed)
		w.run.Event(runstate.Event{Type: "reap", Step: n.ID(), Host: host, Msg: msg})
		w.out.line(runstate.Key(n.ID(), host), msg)
	}
	return nil
}

// operatorDecides stops a step-host the engine will not repeat blindly.
func (w *walker) operatorDecides(n *Node, t *Target, prior, why string) outcome {
	host := t.Name()
	key := runstate.Key(n.ID(), host)
	_ = w.transition(n, host, runstate.Lazy, func(h *runstate.HostState) { h.Why = "waiting for the operator: " + why })
	sd := w.stateDirFlag()
	return w.wait(n, t, fmt.Sprintf("found %s; %s", prior, why),
		fmt.Sprintf("look at %s, then run it again: etcd-rescue resume %s --rerun %s%s", hostOrCluster(host), w.runID, key, sd),
		fmt.Sprintf("or, if it is complete: etcd-rescue resume %s --mark-done %s%s", w.runID, key, sd))
}

func hostOrCluster(host string) string {
	if host == "" {
		return "the cluster"
	}
	return host
}

func (w *walker) stateDirFlag() string {
	if u := w.run.SharedURL(); u != "" {
		return " --state " + shellquote.Quote(u)
	}
	if w.opts.StateDir == "" {
		return ""
	}
	return " --state-dir " + shellquote.Quote(w.opts.StateDir)
}
