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
