package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	_, _ = w.run.UpdateHost(n.ID(), t.Name(), runstate.Lazy, func(h *runstate.HostState) { env.addTo(h, elapsed) })
	w.run.Event(runstate.Event{Type: "check", Step: n.ID(), Host: t.Name(), Msg: fmt.Sprintf("done=%v %s", done, why), Error: errString(err)})
	return done, why, err
}

// deadline is the time limit of one attempt of a step-host and where it
// comes from.
type deadline struct {
	d time.Duration
	// basis is how a type's default is made ("within: 5m + 1m"); empty
	// for the step's timeout:.
	basis   string
	setting bool // the step's timeout:
}

// deadlineOf is the step's timeout:, or else its type's default deadline
// (steps.Deadline): no step-host runs without a limit.
func deadlineOf(n *Node, t *Target) deadline {
	if n.Step.Timeout > 0 {
		return deadline{d: n.Step.Timeout.D(), setting: true}
	}
	var params steps.Step
	if t != nil {
		params = t.Params
	} else if len(n.Targets) > 0 {
		params = n.Targets[0].Params
	}
	d, basis := steps.Deadline(params)
	return deadline{d: d, basis: basis}
}

// why says which limit was hit and how to change it, for the timeout error.
func (l deadline) why(n *Node) string {
	if l.setting {
		return "the step's timeout:; raise it in the plan to allow more"
	}
	basis := ""
	if l.basis != "" {
		basis = ", " + l.basis
	}
	return fmt.Sprintf("the default deadline of %s %s step%s; set timeout: on the step to change it", article(n.Type.Name), n.Type.Name, basis)
}

func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// runningDurability says whether the "running" of step-host t must survive
// a power loss. Lost, the record goes back to pending (or to the failed of
// an earlier attempt, which a resume probes like running). A pending
// step-host is applied without its Check unless it is check-first, so the
// "running" of a destructive one is durable unless its Check is consulted
// first and it is safe to repeat: then pending and running lead to the
// same Check and the same decision (decideResume). Any other step-host is
// applied again either way.
func runningDurability(t *Target) runstate.Durability {
	if destructive(t) && !(checkFirst(t) && isRepeatSafe(t)) {
		return runstate.Durable
	}
	return runstate.Lazy
}

// attempt runs the step-host's actions once, checkpointing running before
// (durably where runningDurability says) and done or failed after (lazily:
// lost, they leave it running, which a resume probes).
func (w *walker) attempt(ctx context.Context, n *Node, t *Target) (*stepEnv, error) {
	host := t.Name()
	key := runstate.Key(n.ID(), host)
	start := w.opts.now()
	if err := w.transition(n, host, runningDurability(t), func(h *runstate.HostState) {
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
	prep := w.opts.now()
	limit := deadlineOf(n, t)
	actx, cancel := context.WithTimeout(ctx, limit.d)
	defer cancel()
	env := w.newEnv(n, t)
	sctx := w.c.Ctx(n, w.runID, w.run.Facts())
	var err error
	var failed *steps.Action
	acts := t.Params.Describe(sctx, t.Target)
	// Preparing the first action and settling after the last are the
	// engine's own time.
	w.addEngine(w.opts.now().Sub(prep))
	for _, a := range acts {
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
	settle := w.opts.now()
	if err != nil && actx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("timed out after %s (%s): %w", steps.FormatDuration(limit.d), limit.why(n), err)
	}
	// The command that failed, before the cause is looked for: its probes
	// run commands of their own.
	cmd := env.failedCmd()
	// A deadline or "unavailable" says nothing of why: ask the members and
	// their hosts now, and name the cause (quorum lost, a host unreachable,
	// a host key refused).
	err = steps.FindCause(ctx, sctx, env, err)
	elapsed := w.opts.now().Sub(start)
	if err == nil {
		w.addEngine(w.opts.now().Sub(settle))
		if ferr := w.finish(n, host, runstate.StatusDone, "", env, elapsed); ferr != nil {
			return env, ferr
		}
		w.out.line(key, "done "+fmtDur(elapsed))
		return env, nil
	}
	var ane *ApprovalNeededError
	if errors.As(err, &ane) {
		// Not a failure: the step waits for the operator, as if never run.
		if ferr := w.transition(n, host, runstate.Lazy, func(h *runstate.HostState) {
			h.Status, h.Why, h.Error, h.Cmd, h.Finished = runstate.StatusPending, "waiting for approval", "", "", nil
			env.addTo(h, elapsed)
		}); ferr != nil {
			return env, ferr
		}
		return env, err
	}
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
	return w.transition(n, host, runstate.Lazy, func(h *runstate.HostState) {
		h.Status, h.Why, h.Error, h.Cmd = status, why, "", ""
		h.Finished = &now
		env.addTo(h, elapsed)
	})
}

func (w *walker) finishFailed(n *Node, host string, err error, cmd string, env *stepEnv, elapsed time.Duration) error {
	now := w.opts.now().UTC()
	return w.transition(n, host, runstate.Lazy, func(h *runstate.HostState) {
		h.Status, h.Error, h.Cmd = runstate.StatusFailed, err.Error(), cmd
		h.Finished = &now
		env.addTo(h, elapsed)
	})
}
