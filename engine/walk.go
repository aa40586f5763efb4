package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// ErrOutcomeUnknown matches errors of a command whose outcome is unknown:
// the connection dropped while it ran. The step-host is probed with its
// Check before anything is repeated.
var ErrOutcomeUnknown = errors.New("outcome unknown")

// ErrUnreachable matches errors of a host that could not be reached at all
// (nothing ran there). A stop-service with unreachable: skip goes on.
var ErrUnreachable = errors.New("host unreachable")

// Backend is what a run needs from the world: a runner per host and the
// etcd API. NewSSHBackend is the real one; tests pass fakes.
type Backend interface {
	Shell(host string) (steps.Runner, error)
	Etcd(ctx context.Context) (steps.Etcd, error)
	Close() error
}

// StepError is a step-host that failed: a root cause of a failed run.
type StepError struct {
	Step string
	Host string // "" for a step that runs once
	Pos  plans.Pos
	// Cmd is the command (or action) that failed, redacted.
	Cmd string
	// ExitCode is the remote exit status, -1 when the failure was not one.
	ExitCode int
	// Stderr is the tail of the failing command's standard error.
	Stderr string
	Err    error
}

func (e *StepError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: step %q", e.Pos, e.Step)
	if e.Host != "" {
		fmt.Fprintf(&b, " on %s", e.Host)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if e.Cmd != "" {
		fmt.Fprintf(&b, "\n  command: %s", e.Cmd)
	}
	return b.String()
}

func (e *StepError) Unwrap() error { return e.Err }

// OperatorError is a step-host the engine will not decide alone: an
// approval, or a destructive step whose outcome it cannot establish.
type OperatorError struct {
	Step   string
	Host   string
	Pos    plans.Pos
	Reason string
	Hints  []string
}

func (e *OperatorError) Error() string {
	where := fmt.Sprintf("step %q", e.Step)
	if e.Host != "" {
		where += " on " + e.Host
	}
	return fmt.Sprintf("%s: %s: %s", e.Pos, where, e.Reason)
}

// RunError is how a run ended when it did not complete: the root causes
// (dependents of a failure are skipped and not reported), the step-hosts
// waiting for an operator, and whether it was interrupted.
type RunError struct {
	RunID       string
	StateDir    string
	Failed      []*StepError
	Waiting     []*OperatorError
	Interrupted bool
	Skipped     int
}

func (e *RunError) errs() *multierror.Error {
	var m *multierror.Error
	for _, f := range e.Failed {
		m = multierror.Append(m, f)
	}
	for _, w := range e.Waiting {
		m = multierror.Append(m, w)
	}
	if m != nil {
		m.ErrorFormat = func(es []error) string {
			lines := make([]string, len(es))
			for i, x := range es {
				lines[i] = "  * " + strings.ReplaceAll(x.Error(), "\n", "\n    ")
			}
			return strings.Join(lines, "\n")
		}
	}
	return m
}

func (e *RunError) Error() string {
	var head []string
	if e.Interrupted {
		head = append(head, "interrupted")
	}
	if n := len(e.Failed); n > 0 {
		head = append(head, fmt.Sprintf("%d step-host(s) failed", n))
	}
	if e.Skipped > 0 {
		head = append(head, fmt.Sprintf("%d skipped after a failure", e.Skipped))
	}
	if n := len(e.Waiting); n > 0 {
		head = append(head, fmt.Sprintf("%d waiting for an operator", n))
	}
	run := "run " + e.RunID
	if e.RunID == "" {
		run = "before the run started"
	}
	msg := fmt.Sprintf("%s: %s", run, strings.Join(head, ", "))
	if m := e.errs(); m != nil {
		msg += "\n" + m.Error()
	}
	return msg
}

// Unwrap gives errors.Is/As every root cause.
func (e *RunError) Unwrap() []error {
	m := e.errs()
	if m == nil {
		return nil
	}
	return m.WrappedErrors()
}

// Code is the process exit code the run maps to: 130 interrupted, 1 a step
// failed, 5 waiting for an operator.
func (e *RunError) Code() int {
	switch {
	case e.Interrupted:
		return 130
	case len(e.Failed) > 0:
		return 1
	case len(e.Waiting) > 0:
		return 5
	}
	return 1
}

// ApprovalNeededError is returned by Approve when nobody can answer.
type ApprovalNeededError struct {
	Step    string
	Message string
}

func (e *ApprovalNeededError) Error() string {
	return fmt.Sprintf("approval needed: %s", e.Message)
}

// destructive reports whether repeating the step-host blindly could lose data.
func destructive(n *Node, t *Target) bool {
	if e, ok := t.Params.(*steps.Exec); ok {
		return e.Destructive
	}
	return n.Type.Destructive
}

// checker returns the step-host's Check, if it has a meaningful one.
func checker(t *Target) steps.Checker {
	if e, ok := t.Params.(*steps.Exec); ok && e.Creates == "" && e.Unless == "" {
		return nil // its Check always says "not done"
	}
	ck, _ := t.Params.(steps.Checker)
	return ck
}

func isRepeatSafe(n *Node, t *Target) bool {
	if _, ok := t.Params.(*steps.Exec); ok {
		return checker(t) != nil // creates/unless are its idempotency
	}
	return n.Type.RepeatSafe
}

// skipsUnreachable reports whether the step-host may be skipped when its
// host cannot be reached (stop-service unreachable: skip: a dead host
// cannot run the service).
func skipsUnreachable(t *Target) bool {
	s, ok := t.Params.(*steps.StopService)
	return ok && s.Unreachable == "skip"
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

// Selector is STEP or STEP@HOST from --rerun / --mark-done.
type Selector struct{ Step, Host string }

// ParseSelector reads STEP or STEP@HOST.
func ParseSelector(s string) Selector {
	step, host, _ := strings.Cut(s, "@")
	return Selector{Step: step, Host: host}
}

func (s Selector) String() string { return Key(s.Step, s.Host) }

func (s Selector) matches(step, host string) bool {
	return s.Step == step && (s.Host == "" || s.Host == host)
}

// walker runs one session (apply or resume) of a run over the DAG.
type walker struct {
	c        *Compiled
	runID    string
	run      *Run
	backend  Backend
	red      *Redactor
	opts     *Options
	out      *progress
	sem      chan struct{}
	stopOnce sync.Once
	askMu    sync.Mutex

	mu          sync.Mutex
	failed      []*StepError
	waiting     []*OperatorError
	skipped     int
	interrupted bool
}

// node outcomes, as seen by dependents.
type nodeResult int

const (
	nodeOK      nodeResult = iota
	nodeFailed             // a target failed, or a need failed: dependents are skipped
	nodeBlocked            // not run yet (operator, interrupt): dependents wait for a resume
)

// walk runs every node once its needs are done, Terraform-style: one
// goroutine per node waits for its needs (holding nothing), then fans out
// over its targets, each taking the parallelism semaphore only while it
// executes.
func (w *walker) walk(ctx context.Context) {
	done := make(map[*Node]chan struct{}, len(w.c.Nodes))
	res := make(map[*Node]nodeResult, len(w.c.Nodes))
	var rmu sync.Mutex
	for _, n := range w.c.Nodes {
		done[n] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for _, n := range w.c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[n])
			var failedNeed, blockedNeed *Node
			for _, d := range n.Needs {
				<-done[d]
				rmu.Lock()
				r := res[d]
				rmu.Unlock()
				switch {
				case r == nodeFailed && failedNeed == nil:
					failedNeed = d
				case r == nodeBlocked && blockedNeed == nil:
					blockedNeed = d
				}
			}
			var r nodeResult
			switch {
			case failedNeed != nil:
				r = w.skipNode(n, failedNeed)
			case blockedNeed != nil:
				r = nodeBlocked
			default:
				r = w.runNode(ctx, n)
			}
			rmu.Lock()
			res[n] = r
			rmu.Unlock()
		}()
	}
	wg.Wait()
}

// skipNode marks the targets of a node whose need failed as skipped.
func (w *walker) skipNode(n *Node, cause *Node) nodeResult {
	for _, t := range n.Targets {
		host := t.Name()
		hs := w.hostState(n, host)
		if hs.Status == StatusDone || hs.Status == StatusRunning || hs.Status == StatusFailed {
			// running/failed are kept: they record that the step began,
			// and a later resume must probe it rather than start afresh.
			continue
		}
		why := "not run: step " + cause.ID() + " did not complete"
		_ = w.transition(n, host, func(h *HostState) { h.Status, h.Why = StatusSkipped, why })
		w.mu.Lock()
		w.skipped++
		w.mu.Unlock()
		w.out.line(Key(n.ID(), host), "skipped ("+why+")")
	}
	for _, t := range n.Targets {
		if hs := w.hostState(n, t.Name()); hs.Status != StatusDone {
			return nodeFailed
		}
	}
	// Every target was done in an earlier session: dependents may go on.
	return nodeOK
}

func (w *walker) runNode(ctx context.Context, n *Node) nodeResult {
	results := make([]outcome, len(n.Targets))
	var wg sync.WaitGroup
	for i, t := range n.Targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = w.runTarget(ctx, n, t)
		}()
	}
	wg.Wait()
	r := nodeOK
	for _, o := range results {
		switch o {
		case outFailed:
			return nodeFailed
		case outBlocked:
			r = nodeBlocked
		}
	}
	return r
}

type outcome int

const (
	outOK outcome = iota
	outFailed
	outBlocked
)

func (w *walker) stopRequested() bool {
	if w.opts.Stop == nil {
		return false
	}
	select {
	case <-w.opts.Stop:
		return true
	default:
		return false
	}
}

// notStarted records that the interrupt kept a step-host from starting.
func (w *walker) notStarted(key string) outcome {
	w.mu.Lock()
	w.interrupted = true
	w.mu.Unlock()
	w.out.line(key, "not started (interrupted)")
	return outBlocked
}

func (w *walker) hostState(n *Node, host string) *HostState {
	w.run.mu.Lock()
	defer w.run.mu.Unlock()
	hs := w.run.st.Find(n.ID(), host)
	cp := *hs
	return &cp
}

// transition changes a step-host record and checkpoints it, and journals
// the new status. A checkpoint that cannot be written stops the run: going
// on without a durable record is how destructive steps get repeated.
func (w *walker) transition(n *Node, host string, f func(*HostState)) error {
	var ev Event
	err := w.run.Update(func(s *State) {
		hs := s.Find(n.ID(), host)
		f(hs)
		ev = Event{Type: "step", Step: n.ID(), Host: host, Status: hs.Status, Error: hs.Error, Cmd: hs.Cmd, Msg: hs.Why}
	})
	w.run.Event(ev)
	if err != nil {
		return &checkpointError{err}
	}
	return nil
}

// runTarget takes one step-host from whatever its record says to done,
// failed or blocked.
func (w *walker) runTarget(ctx context.Context, n *Node, t *Target) outcome {
	host := t.Name()
	key := Key(n.ID(), host)
	hs := w.hostState(n, host)
	if hs.Status == StatusDone {
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
		w.run.Event(Event{Type: "step", Step: n.ID(), Host: host, Status: hs.Status, Msg: "applied again on the operator's request (--rerun)"})
	case hs.Status == StatusRunning || hs.Status == StatusFailed:
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
			if cerr := w.finish(n, host, StatusSkipped, why, nil, 0); cerr != nil {
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
		act, why, perr := w.probe(ctx, n, t, StatusFailed)
		switch {
		case perr != nil:
			return w.fail(n, t, errors.Join(err, perr), env)
		case act == actDone:
			return w.settleDone(n, t, "check after the failure: "+why)
		case act == actStop && unknown:
			// The connection dropped mid-command: nobody knows whether it
			// ran, so the operator decides.
			return w.operatorDecides(n, t, StatusFailed, why)
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

// checkpointError is a state write that failed: the run stops, because
// going on without a durable record is how destructive steps get repeated.
type checkpointError struct{ err error }

func (e *checkpointError) Error() string { return e.err.Error() }
func (e *checkpointError) Unwrap() error { return e.err }

// probe runs the step-host's Check, if it has one, and applies the resume
// table.
func (w *walker) probe(ctx context.Context, n *Node, t *Target, prior string) (resumeAction, string, error) {
	if err := w.reap(ctx, n, t); err != nil {
		return actStop, "", err
	}
	p := probe{Destructive: destructive(n, t), RepeatSafe: isRepeatSafe(n, t)}
	if checker(t) != nil {
		p.HasCheck = true
		done, why, err := w.check(ctx, n, t)
		if err != nil {
			return actStop, "", fmt.Errorf("found %s; checking whether it is done: %w", prior, err)
		}
		p.CheckDone, p.CheckWhy = done, why
	}
	act, why := decideResume(p)
	w.run.Event(Event{Type: "probe", Step: n.ID(), Host: t.Name(), Status: prior, Msg: why})
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
		w.run.Event(Event{Type: "reap", Step: n.ID(), Host: host, Error: err.Error()})
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking for processes left by the earlier attempt on %s: %w", host, err)
	}
	if killed > 0 {
		msg := fmt.Sprintf("killed %d process(es) left running by the earlier attempt", killed)
		w.run.Event(Event{Type: "reap", Step: n.ID(), Host: host, Msg: msg})
		w.out.line(Key(n.ID(), host), msg)
	}
	return nil
}

// operatorDecides stops a step-host the engine will not repeat blindly.
func (w *walker) operatorDecides(n *Node, t *Target, prior, why string) outcome {
	host := t.Name()
	key := Key(n.ID(), host)
	_ = w.transition(n, host, func(h *HostState) { h.Why = "waiting for the operator: " + why })
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
	if w.opts.StateDir == "" {
		return ""
	}
	return " --state-dir " + shellquote.Quote(w.opts.StateDir)
}

func (w *walker) settleDone(n *Node, t *Target, why string) outcome {
	if err := w.finish(n, t.Name(), StatusDone, why, nil, 0); err != nil {
		return w.fail(n, t, err, nil)
	}
	w.out.line(Key(n.ID(), t.Name()), "done ("+why+")")
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
	start := w.run.now()
	done, why, err := ck.Check(cctx, w.c.Ctx(n, w.runID, w.run.Facts()), env, t.Target)
	elapsed := w.run.now().Sub(start)
	// The probe is part of the step's cost: its time counts with the
	// attempts' in the per-step figures.
	_ = w.run.Update(func(s *State) { env.addTo(s.Find(n.ID(), t.Name()), elapsed) })
	w.run.Event(Event{Type: "check", Step: n.ID(), Host: t.Name(), Msg: fmt.Sprintf("done=%v %s", done, why), Error: errString(err)})
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
	key := Key(n.ID(), host)
	start := w.run.now()
	if err := w.transition(n, host, func(h *HostState) {
		h.Status, h.Error, h.Cmd, h.Why = StatusRunning, "", "", ""
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
	elapsed := w.run.now().Sub(start)
	if err == nil {
		if ferr := w.finish(n, host, StatusDone, "", env, elapsed); ferr != nil {
			return env, ferr
		}
		w.out.line(key, "done "+fmtDur(elapsed))
		return env, nil
	}
	var ane *ApprovalNeededError
	if errors.As(err, &ane) {
		// Not a failure: the step waits for the operator, as if never run.
		if ferr := w.transition(n, host, func(h *HostState) {
			h.Status, h.Why, h.Error, h.Cmd, h.Finished = StatusPending, "waiting for approval", "", "", nil
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
	now := w.run.now().UTC()
	return w.transition(n, host, func(h *HostState) {
		h.Status, h.Why, h.Error, h.Cmd = status, why, "", ""
		h.Finished = &now
		env.addTo(h, elapsed)
	})
}

func (w *walker) finishFailed(n *Node, host string, err error, cmd string, env *stepEnv, elapsed time.Duration) error {
	now := w.run.now().UTC()
	return w.transition(n, host, func(h *HostState) {
		h.Status, h.Error, h.Cmd = StatusFailed, err.Error(), cmd
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
	if hs.Status != StatusFailed {
		_ = w.transition(n, host, func(h *HostState) { h.Status, h.Error = StatusFailed, err.Error() })
		w.out.line(Key(n.ID(), host), "failed: "+w.red.String(oneLine(err.Error())))
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
	w.run.Event(Event{Type: "step", Step: n.ID(), Host: host, Status: "waiting", Msg: reason})
	w.out.line(Key(n.ID(), host), "waiting for the operator: "+w.red.String(reason))
	w.mu.Lock()
	w.waiting = append(w.waiting, oe)
	w.mu.Unlock()
	return outBlocked
}

// redactedError keeps the chain of err (for errors.Is/As) while its text
// has secrets removed.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func redactErr(r *Redactor, err error) error {
	if r.Empty() {
		return err
	}
	return &redactedError{msg: r.String(err.Error()), err: err}
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// progress writes plain timestamped lines, one per transition. They are
// meant for a terminal and for a CI log alike, so no redraw.
type progress struct {
	mu  sync.Mutex
	w   io.Writer
	red *Redactor
	now func() time.Time
}

func (p *progress) line(key, msg string) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s %s %s\n", p.now().UTC().Format(time.RFC3339), key, p.red.String(msg))
}

func (p *progress) printf(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s %s\n", p.now().UTC().Format(time.RFC3339), p.red.String(fmt.Sprintf(format, args...)))
}
