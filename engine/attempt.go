package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

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
	sctx := w.c.Ctx(n, w.runID, w.run.Facts())
	done, why, err := ck.Check(cctx, sctx, env, t.Target)
	err = steps.FindCause(ctx, sctx, env, err)
	elapsed := w.opts.now().Sub(start)
	// The probe is part of the step's cost: its time counts with the
	// attempts' in the per-step figures.
	_, _ = w.run.UpdateHost(n.ID(), t.Name(), func(h *runstate.HostState) { env.addTo(h, elapsed) })
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
	// A deadline or "unavailable" says nothing of why: ask the members and
	// their hosts now, and name the cause (quorum lost, a host unreachable,
	// a host key refused).
	err = steps.FindCause(ctx, sctx, env, err)
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
