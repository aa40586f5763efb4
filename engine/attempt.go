package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

type outcome int

const (
	outOK outcome = iota
	outFailed
	outBlocked
)

// runTarget takes one step-host from whatever its record says to done,
// failed or blocked.
func (w *walker) runTarget(ctx context.Context, n *Node, t *Target) outcome {
	host := t.Name()
	key := runstate.Key(n.ID(), host)
	hs := w.hostState(n, host)
	if hs.Status == runstate.StatusDone {
		w.out.line(key, "done earlier")
		return outOK
	}
	for _, sel := range w.opts.MarkDone {
		if sel.matches(n.ID(), host) {
			return w.settleDone(n, t, "marked done by the operator (--mark-done "+sel.String()+")")
		}
	}
	if w.stopRequested() {
		return w.notStarted(key)
	}
	// The semaphore is taken only here, around execution: a node waiting
	// for its needs holds nothing.
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return w.notStarted(key)
	case <-w.opts.Stop:
		return w.notStarted(key)
	}
	defer func() { <-w.sem }()
	if w.stopRequested() {
		return w.notStarted(key)
	}

	rerun := false
	for _, sel := range w.opts.Rerun {
		rerun = rerun || sel.matches(n.ID(), host)
	}
	switch {
	case rerun:
		w.run.Event(runstate.Event{Type: "step", Step: n.ID(), Host: host, Status: hs.Status, Msg: "applied again on the operator's request (--rerun)"})
	case hs.Status == runstate.StatusRunning || hs.Status == runstate.StatusFailed:
		// Began in an earlier session (the engine died mid-step, or it
		// failed): probe before anything is repeated.
		act, why, err := w.probe(ctx, n, t, hs.Status)
		switch {
		case err != nil:
			return w.fail(n, t, err, nil)
		case act == actDone:
			return w.settleDone(n, t, "found "+hs.Status+"; check: "+why)
		case act == actStop:
			return w.operatorDecides(n, t, hs.Status, why)
		}
		w.out.line(key, "found "+hs.Status+": "+why)
	case n.Type.CheckFirst && checker(t) != nil:
		done, why, err := w.check(ctx, n, t)
		if err != nil {
			return w.fail(n, t, fmt.Errorf("checking whether it is already done: %w", err), nil)
		}
		if done {
			return w.settleDone(n, t, "already done: "+why)
		}
	}

	recoveries := 0
	for attempt := 1; ; attempt++ {
		env, err := w.attempt(ctx, n, t)
		if err == nil {
			return outOK
		}
		var cpe *checkpointError
		if errors.As(err, &cpe) {
			return w.fail(n, t, err, env)
		}
		if skipsUnreachable(t) && errors.Is(err, ErrUnreachable) {
			why := fmt.Sprintf("host unreachable, skipped (unreachable: skip): %v", err)
			if cerr := w.finish(n, host, runstate.StatusSkipped, why, nil, 0); cerr != nil {
				return w.fail(n, t, cerr, nil)
			}
			w.out.line(key, "skipped: "+oneLine(why))
			return outOK
		}
		var ane *ApprovalNeededError
		if errors.As(err, &ane) {
			return w.wait(n, t, "waiting for approval: "+ane.Message,
				fmt.Sprintf("approve it: etcd-rescue resume %s --approve %s%s", w.runID, n.ID(), w.stateDirFlag()))
		}
		unknown := errors.Is(err, ErrOutcomeUnknown)
		again := (unknown && recoveries < 3) || (!unknown && attempt <= n.Step.Retries)
		if !again || ctx.Err() != nil || w.stopRequested() {
			return w.fail(n, t, err, env)
		}
		if unknown {
			recoveries++
		}
		// Before another attempt, the same table as resume: a destructive
		// step is never repeated without a Check saying it is not done.
		act, why, perr := w.probe(ctx, n, t, runstate.StatusFailed)
		switch {
		case perr != nil:
			return w.fail(n, t, errors.Join(err, perr), env)
		case act == actDone:
			return w.settleDone(n, t, "check after the failure: "+why)
		case act == actStop && unknown:
			// The connection dropped mid-command: nobody knows whether it
			// ran, so the operator decides.
			return w.operatorDecides(n, t, runstate.StatusFailed, why)
		case act == actStop:
			w.out.line(key, "not retried: "+why)
			return w.fail(n, t, err, env)
		}
		w.out.line(key, fmt.Sprintf("retrying (attempt %d): %s", attempt+1, oneLine(err.Error())))
		if d := w.opts.RetryDelay; d > 0 {
			select {
			case <-time.After(d * time.Duration(attempt)):
			case <-ctx.Done():
				return w.fail(n, t, err, env)
			}
		}
	}
}

func (w *walker) settleDone(n *Node, t *Target, why string) outcome {
	if err := w.finish(n, t.Name(), runstate.StatusDone, why, nil, 0); err != nil {
		return w.fail(n, t, err, nil)
	}
	w.out.line(runstate.Key(n.ID(), t.Name()), "done ("+why+")")
	return outOK
}

// check runs the step-host's Check with a bounded time: a probe must not
// hang a resume on an unreachable endpoint.
func (w *walker) check(ctx context.Context, n *Node, t *Target) (bool, string, error) {
	ck := checker(t)
	if ck == nil {
		return false, "", nil
	}
	d := w.opts.CheckTimeout
	if n.Step.Timeout > 0 && n.Step.Timeout.D() < d {
		d = n.Step.Timeout.D()
	}
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	env := w.newEnv(n, t)
	start := w.opts.now()
	done, why, err := ck.Check(cctx, w.c.Ctx(n, w.runID, w.run.Facts()), env, t.Target)
	elapsed := w.opts.now().Sub(start)
	// The probe is part of the step's cost: its time counts with the
	// attempts' in the per-step figures.
	_ = w.run.Update(func(s *runstate.State) { env.addTo(s.Find(n.ID(), t.Name()), elapsed) })
	w.run.Event(runstate.Event{Type: "check", Step: n.ID(), Host: t.Name(), Msg: fmt.Sprintf("done=%v %s", done, why), Error: errString(err)})
	return done, why, err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// attempt runs the step-host's actions once, checkpointing running before
// and done or failed after.
func (w *walker) attempt(ctx context.Context, n *Node, t *Target) (*stepEnv, error) {
	host := t.Name()
	key := runstate.Key(n.ID(), host)
	start := w.opts.now()
	if err := w.transition(n, host, func(h *runstate.HostState) {
		h.Status, h.Error, h.Cmd, h.Why = runstate.StatusRunning, "", "", ""
		h.Attempts++
		if h.Started == nil {
			s := start.UTC()
			h.Started = &s
		}
		h.Finished = nil
	}); err != nil {
		return nil, err
	}
	w.out.line(key, "running")
	actx := ctx
	if n.Step.Timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, n.Step.Timeout.D())
		defer cancel()
	}
	env := w.newEnv(n, t)
	sctx := w.c.Ctx(n, w.runID, w.run.Facts())
	var err error
	var failed *steps.Action
	for _, a := range t.Params.Describe(sctx, t.Target) {
		a := a
		env.noteFailed("") // report a command of the failing action only
		switch {
		case a.Run != nil:
			err = a.Run(actx, env)
		case a.Host != "":
			var r steps.Runner
			if r, err = env.Shell(a.Host); err == nil {
				_, err = r.Run(actx, a.Cmd, nil)
			}
		default:
			// No host and no Run: a note for the reviewer of the dry-run
			// (the work is done inside another action's Run).
			continue
		}
		if err != nil {
			failed = &a
			break
		}
	}
	if err != nil && actx.Err() != nil && ctx.Err() == nil && n.Step.Timeout > 0 {
		err = fmt.Errorf("timed out after %s (timeout: of the step): %w", n.Step.Timeout, err)
	}
	elapsed := w.opts.now().Sub(start)
	if err == nil {
		if ferr := w.finish(n, host, runstate.StatusDone, "", env, elapsed); ferr != nil {
			return env, ferr
		}
		w.out.line(key, "done "+fmtDur(elapsed))
		return env, nil
	}
	var ane *ApprovalNeededError
	if errors.As(err, &ane) {
		// Not a failure: the step waits for the operator, as if never run.
		if ferr := w.transition(n, host, func(h *runstate.HostState) {
			h.Status, h.Why, h.Error, h.Cmd, h.Finished = runstate.StatusPending, "waiting for approval", "", "", nil
			env.addTo(h, elapsed)
		}); ferr != nil {
			return env, ferr
		}
		return env, err
	}
	cmd := env.failedCmd()
	if cmd == "" && failed != nil {
		cmd = failed.Cmd
	}
	env.noteFailed(cmd)
	if ferr := w.finishFailed(n, host, err, cmd, env, elapsed); ferr != nil {
		return env, errors.Join(err, ferr)
	}
	w.out.line(key, fmt.Sprintf("failed %s: %s", fmtDur(elapsed), w.red.String(oneLine(err.Error()))))
	return env, err
}

func (w *walker) finish(n *Node, host, status, why string, env *stepEnv, elapsed time.Duration) error {
	now := w.opts.now().UTC()
	return w.transition(n, host, func(h *runstate.HostState) {
		h.Status, h.Why, h.Error, h.Cmd = status, why, "", ""
		h.Finished = &now
		env.addTo(h, elapsed)
	})
}

func (w *walker) finishFailed(n *Node, host string, err error, cmd string, env *stepEnv, elapsed time.Duration) error {
	now := w.opts.now().UTC()
	return w.transition(n, host, func(h *runstate.HostState) {
		h.Status, h.Error, h.Cmd = runstate.StatusFailed, err.Error(), cmd
		h.Finished = &now
		env.addTo(h, elapsed)
	})
}

// fail records a root cause. err may already be checkpointed by attempt.
func (w *walker) fail(n *Node, t *Target, err error, env *stepEnv) outcome {
	host := ""
	if t != nil {
		host = t.Name()
	}
	hs := w.hostState(n, host)
	if hs.Status != runstate.StatusFailed {
		_ = w.transition(n, host, func(h *runstate.HostState) { h.Status, h.Error = runstate.StatusFailed, err.Error() })
		w.out.line(runstate.Key(n.ID(), host), "failed: "+w.red.String(oneLine(err.Error())))
	}
	se := &StepError{Step: n.ID(), Host: host, Pos: n.Step.Pos, ExitCode: -1, Err: redactErr(w.red, err)}
	if env != nil {
		se.Cmd = w.red.String(env.failedCmd())
	}
	var ee *steps.ExitError
	if errors.As(err, &ee) {
		se.ExitCode = ee.Code
		se.Stderr = w.red.String(tail(ee.Stderr, 600))
		if se.Cmd == "" {
			se.Cmd = w.red.String(ee.Cmd)
		}
	}
	w.mu.Lock()
	w.failed = append(w.failed, se)
	w.mu.Unlock()
	return outFailed
}

func (w *walker) wait(n *Node, t *Target, reason string, hints ...string) outcome {
	host := t.Name()
	oe := &OperatorError{Step: n.ID(), Host: host, Pos: n.Step.Pos, Reason: w.red.String(reason), Hints: hints}
	w.run.Event(runstate.Event{Type: "step", Step: n.ID(), Host: host, Status: "waiting", Msg: reason})
	w.out.line(runstate.Key(n.ID(), host), "waiting for the operator: "+w.red.String(reason))
	w.mu.Lock()
	w.waiting = append(w.waiting, oe)
	w.mu.Unlock()
	return outBlocked
}
