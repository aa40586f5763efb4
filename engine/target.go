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
	t0 := w.opts.now()
	hs := w.hostState(n, t.Name())
	if o, settled := w.settledEarlier(n, t, hs); settled {
		return o
	}
	if w.haltedByFailure(n, t) {
		return outFailed
	}
	w.addEngine(w.opts.now().Sub(t0))
	// The semaphore is taken only here, around execution: a node waiting
	// for its needs holds nothing.
	if !w.acquire(ctx, n, t) {
		return w.notStarted(runstate.Key(n.ID(), t.Name()))
	}
	defer w.release()
	// A failure may have come while this one waited for a slot.
	if w.haltedByFailure(n, t) {
		return outFailed
	}
	if o, settled := w.beforeFirstAttempt(ctx, n, t, hs); settled {
		return o
	}
	return w.attempts(ctx, n, t)
}

// settledEarlier settles a step-host that needs nothing run: done in an
// earlier session, or marked done by the operator.
func (w *walker) settledEarlier(n *Node, t *Target, hs *runstate.HostState) (outcome, bool) {
	if hs.Status == runstate.StatusDone {
		w.out.line(runstate.Key(n.ID(), t.Name()), "done earlier")
		return outOK, true
	}
	for _, sel := range w.opts.MarkDone {
		if sel.matches(n.ID(), t.Name()) {
			return w.settleDone(n, t, "marked done by the operator (--mark-done "+sel.String()+")"), true
		}
	}
	return outOK, false
}

// acquire takes a parallelism slot; false when the run is stopping.
func (w *walker) acquire(ctx context.Context, n *Node, t *Target) bool {
	if w.stopRequested() {
		return false
	}
	r := w.ranks[n]
	r.host = t.Name()
	if !w.sem.acquire(ctx, w.opts.Stop, r) {
		return false
	}
	if w.stopRequested() {
		w.release()
		return false
	}
	return true
}

func (w *walker) release() { w.sem.release() }

// beforeFirstAttempt decides what a step-host's record calls for before
// it is applied: the operator's --rerun, the resume table for one that
// began in an earlier session, or a check-first Check.
func (w *walker) beforeFirstAttempt(ctx context.Context, n *Node, t *Target, hs *runstate.HostState) (outcome, bool) {
	host := t.Name()
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
			return w.fail(n, t, err, nil), true
		case act == actDone:
			return w.settleDone(n, t, "found "+hs.Status+"; check: "+why), true
		case act == actStop:
			return w.operatorDecides(n, t, hs.Status, why), true
		}
		w.out.line(runstate.Key(n.ID(), host), "found "+hs.Status+": "+why)
	case checkFirst(t):
		done, why, err := w.check(ctx, n, t)
		if err != nil {
			return w.fail(n, t, fmt.Errorf("checking whether it is already done: %w", err), nil), true
		}
		if done {
			return w.settleDone(n, t, "already done: "+why), true
		}
	}
	return outOK, false
}

// attempts applies the step-host until it succeeds or a failure is final.
// A failure is tried again up to the step's retries:, a dropped connection
// (outcome unknown) up to three times; each time the resume table decides
// first.
func (w *walker) attempts(ctx context.Context, n *Node, t *Target) outcome {
	recoveries := 0
	for attempt := 1; ; attempt++ {
		env, err := w.attempt(ctx, n, t)
		if err == nil {
			return outOK
		}
		if o, settled := w.settleFailure(n, t, err, env); settled {
			return o
		}
		unknown := errors.Is(err, ErrOutcomeUnknown)
		again := (unknown && recoveries < 3) || (!unknown && attempt <= n.Step.Retries)
		if !again || ctx.Err() != nil || w.stopRequested() {
			return w.fail(n, t, err, env)
		}
		if unknown {
			recoveries++
		}
		if o, settled := w.beforeRetry(ctx, n, t, err, env, unknown); settled {
			return o
		}
		w.out.line(runstate.Key(n.ID(), t.Name()), fmt.Sprintf("retrying (attempt %d): %s", attempt+1, oneLine(err.Error())))
		if !w.pause(ctx, attempt) {
			return w.fail(n, t, err, env)
		}
	}
}

// settleFailure settles the failures that are never retried: a checkpoint
// that cannot be written, an unreachable host the step may skip, and an
// approval nobody can give now.
func (w *walker) settleFailure(n *Node, t *Target, err error, env *stepEnv) (outcome, bool) {
	host := t.Name()
	var cpe *checkpointError
	if errors.As(err, &cpe) {
		return w.fail(n, t, err, env), true
	}
	if skipsUnreachable(t) && errors.Is(err, ErrUnreachable) {
		why := fmt.Sprintf("host unreachable, skipped (unreachable: skip): %v", err)
		if cerr := w.finish(n, host, runstate.StatusSkipped, why, nil, 0); cerr != nil {
			return w.fail(n, t, cerr, nil), true
		}
		w.out.line(runstate.Key(n.ID(), host), "skipped: "+oneLine(why))
		return outOK, true
	}
	var ref *steps.Refusal
	if errors.As(err, &ref) {
		// A live precondition does not hold: repeating changes nothing
		// until the world or the plan does.
		w.run.Event(runstate.Event{Type: "refusal", Step: n.ID(), Host: host, Msg: err.Error()})
		return w.fail(n, t, err, env), true
	}
	var ane *ApprovalNeededError
	if errors.As(err, &ane) {
		return w.wait(n, t, "waiting for approval: "+ane.Message,
			fmt.Sprintf("approve it: etcd-rescue resume %s --approve %s%s", w.runID, n.ID(), w.stateDirFlag())), true
	}
	return outOK, false
}

// beforeRetry applies the same table as resume before another attempt: a
// destructive step is never repeated without a Check saying it is not
// done.
func (w *walker) beforeRetry(ctx context.Context, n *Node, t *Target, err error, env *stepEnv, unknown bool) (outcome, bool) {
	act, why, perr := w.probe(ctx, n, t, runstate.StatusFailed)
	switch {
	case perr != nil:
		return w.fail(n, t, errors.Join(err, perr), env), true
	case act == actDone:
		return w.settleDone(n, t, "check after the failure: "+why), true
	case act == actStop && unknown:
		// The connection dropped mid-command: nobody knows whether it
		// ran, so the operator decides.
		return w.operatorDecides(n, t, runstate.StatusFailed, why), true
	case act == actStop:
		w.out.line(runstate.Key(n.ID(), t.Name()), "not retried: "+why)
		return w.fail(n, t, err, env), true
	}
	return outOK, false
}

// pause waits attempt×RetryDelay before the next attempt; false when ctx
// ends first.
func (w *walker) pause(ctx context.Context, attempt int) bool {
	d := w.opts.RetryDelay
	if d <= 0 {
		return true
	}
	select {
	case <-time.After(d * time.Duration(attempt)):
		return true
	case <-ctx.Done():
		return false
	}
}

func (w *walker) settleDone(n *Node, t *Target, why string) outcome {
	if err := w.finish(n, t.Name(), runstate.StatusDone, why, nil, 0); err != nil {
		return w.fail(n, t, err, nil)
	}
	w.out.line(runstate.Key(n.ID(), t.Name()), "done ("+why+")")
	return outOK
}

// rootCauseRecorded, when set (by tests), is called once fail has recorded
// a root cause, which stops new destructive step-hosts.
var rootCauseRecorded func()

// fail records a root cause. err may already be checkpointed by attempt.
func (w *walker) fail(n *Node, t *Target, err error, env *stepEnv) outcome {
	host := ""
	if t != nil {
		host = t.Name()
	}
	hs := w.hostState(n, host)
	if hs.Status != runstate.StatusFailed {
		_ = w.transition(n, host, runstate.Lazy, func(h *runstate.HostState) { h.Status, h.Error = runstate.StatusFailed, err.Error() })
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
	if rootCauseRecorded != nil {
		rootCauseRecorded()
	}
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
