package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// Options tune Apply and Resume.
type Options struct {
	// StateDir holds the runs; default: .etcd-rescue beside the plan file
	// (Apply) and ./.etcd-rescue (Resume).
	StateDir string
	// Inventory is the --inventory file, recorded so Resume loads the same.
	Inventory string
	// Parallelism bounds the step-hosts executing at once (default 4).
	Parallelism int
	// Approve lists approve steps answered yes in advance (--approve).
	Approve []string
	// Rerun and MarkDone (Resume only) are the operator's decisions for
	// step-hosts the engine will not decide alone.
	Rerun    []Selector
	MarkDone []Selector
	// Ask puts a yes/no question to the operator; nil when nobody is at a
	// terminal (an approve step then stops the run with exit 5).
	Ask func(ctx context.Context, question string) (bool, error)
	// Progress receives one timestamped line per transition; nil: none.
	Progress io.Writer
	// Stop, once closed, stops scheduling: step-hosts already running finish
	// and are checkpointed, nothing new starts (the first Ctrl-C). Cancelling
	// the context passed to Apply is the second one.
	Stop <-chan struct{}
	// Backend replaces the SSH backend (tests, or another transport).
	Backend func(c *Compiled) (Backend, error)
	// Registry compiles the plan on Resume; default steps.Registry().
	Registry map[string]*steps.Type
	// RetryDelay is the pause before attempt n+1 is n×RetryDelay
	// (default 2s; negative: none).
	RetryDelay time.Duration
	// CheckTimeout bounds each Check (default 1m).
	CheckTimeout time.Duration
	// Confirm, if set, is asked once the lock is held and the run can
	// start (for Resume: with the checkpoint as it stands); false stops with
	// ErrNotConfirmed before anything is created or run.
	// ctx ends at the first interrupt: nothing has started yet.
	Confirm func(ctx context.Context, st *State) (bool, error)
	// OnStart is called once the run is created or reopened, before any
	// step runs (to print the run id and where its state is).
	OnStart func(*Run)

	now func() time.Time
}

func (o *Options) defaults() {
	if o.Parallelism <= 0 {
		o.Parallelism = 4
	}
	switch {
	case o.RetryDelay == 0:
		o.RetryDelay = 2 * time.Second
	case o.RetryDelay < 0:
		o.RetryDelay = 0
	}
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = time.Minute
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.Registry == nil {
		o.Registry = steps.Registry()
	}
}

// Result describes a finished session of a run.
type Result struct {
	RunID    string
	StateDir string
	State    *State // the final checkpoint
	Wall     time.Duration
}

// ErrNotConfirmed is returned when Options.Confirm said no.
var ErrNotConfirmed = errors.New("not confirmed: nothing was run")

func confirm(ctx context.Context, opts *Options, st *State) error {
	if opts.Confirm == nil {
		return nil
	}
	ctx, cancel := untilStop(ctx, opts.Stop)
	defer cancel()
	ok, err := opts.Confirm(ctx, st)
	if err != nil && ctx.Err() != nil {
		return &RunError{Interrupted: true}
	}
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotConfirmed
	}
	return nil
}

// preflight checks the local prerequisites of the SSH backend (none for a
// backend given in Options).
func preflight(c *Compiled, opts *Options) error {
	if opts.Backend != nil {
		return nil
	}
	return Preflight(c.Plan)
}

// StaleError is a resume refused because the plan or inventory changed (or
// disappeared) since the run began.
type StaleError struct {
	RunID  string
	Plan   string
	Reason string
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("run %s cannot be resumed: %s", e.RunID, e.Reason)
}

// InvalidPlanError is a plan with error findings.
type InvalidPlanError struct {
	File     string
	Findings plans.Findings
}

func (e *InvalidPlanError) Error() string {
	return fmt.Sprintf("%s is not valid (%d error(s))", e.File, e.Findings.Errors())
}

// UsageError is a bad option (an unknown step in --rerun, ...).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// DefaultStateDirFor is the state dir used for a plan file.
func DefaultStateDirFor(planFile string) string {
	return filepath.Join(filepath.Dir(planFile), DefaultStateDir)
}

// Apply starts a new run of c: it takes the state dir's lock, binds the
// run id, records the first checkpoint and walks the plan. The returned
// error is a *LockedError, a *RunError (failed, waiting for an operator, or
// interrupted), or another error that kept the run from starting.
func Apply(ctx context.Context, c *Compiled, opts Options) (*Result, error) {
	opts.defaults()
	if len(opts.Rerun) > 0 || len(opts.MarkDone) > 0 {
		return nil, &UsageError{"--rerun and --mark-done are for resume"}
	}
	if err := checkApprovals(c, opts.Approve); err != nil {
		return nil, err
	}
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDirFor(c.Plan.File)
	}
	store, err := OpenStore(opts.StateDir)
	if err != nil {
		return nil, err
	}
	opts.StateDir = store.Dir
	var runID string
	for {
		runID = NewRunID(opts.now())
		if _, err := os.Stat(store.runDir(runID)); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	lock, err := store.Lock(runID, "apply")
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	if err := preflight(c, &opts); err != nil {
		return nil, err
	}
	if err := confirm(ctx, &opts, nil); err != nil {
		return nil, err
	}
	if err := c.Bind(runID); err != nil {
		return nil, err
	}
	planPath, _ := filepath.Abs(c.Plan.File)
	inv := ""
	if opts.Inventory != "" {
		inv, _ = filepath.Abs(opts.Inventory)
	}
	now := opts.now().UTC()
	st := &State{Format: StateFormat, RunID: runID, Plan: planPath, Inventory: inv, PlanName: c.Plan.Name,
		PlanSHA256: PlanHash(c.Plan.Raw, c.Plan.InvRaw), Outcome: OutcomeRunning, Created: now, Sessions: 1}
	reconcile(st, c)
	red := NewRedactor(c.Plan)
	run, err := store.create(st, red, opts.now)
	if err != nil {
		return nil, err
	}
	if err := recordRun(runID, store.Dir, planPath); err != nil {
		run.Event(Event{Type: "run", Msg: "not recorded in the run index (resume needs --state-dir " + store.Dir + "): " + err.Error()})
	}
	defer run.Close()
	return session(ctx, c, run, &opts)
}

// ApplyFile loads, checks and applies a plan file: the library form of
// `etcd-rescue apply FILE --inventory INV --yes`. A plan with error
// findings returns *InvalidPlanError; warnings do not stop it.
func ApplyFile(ctx context.Context, path, inventory string, opts Options) (*Result, error) {
	reg := opts.Registry
	if reg == nil {
		reg = steps.Registry()
	}
	p, fs := plans.Load(path, inventory)
	if p == nil || fs.Errors() > 0 {
		return nil, &InvalidPlanError{File: path, Findings: fs}
	}
	c, cfs := Compile(p, reg)
	if c == nil || cfs.Errors() > 0 {
		return nil, &InvalidPlanError{File: path, Findings: append(fs, cfs...)}
	}
	if opts.Inventory == "" {
		opts.Inventory = inventory
	}
	return Apply(ctx, c, opts)
}

// LocateRun resolves the RUN argument of resume and status: a run id in
// stateDir ("" run means the latest), or the path of a run directory,
// whose state dir is then implied. Without stateDir: ./.etcd-rescue if it
// holds the run, else the run index (IndexFile), which records where every
// apply put its state.
func LocateRun(stateDir, run string) (*Store, string, error) {
	if run != "" && strings.ContainsRune(run, os.PathSeparator) {
		dir := filepath.Clean(run)
		if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
			return nil, "", &NoStateError{Dir: filepath.Dir(dir), Run: filepath.Base(dir), Err: err}
		}
		s, err := ExistingStore(filepath.Dir(filepath.Dir(dir)))
		return s, filepath.Base(dir), err
	}
	if stateDir == "" {
		// ./.etcd-rescue when it has the run; otherwise the run index,
		// which knows where apply put it.
		if s, err := ExistingStore(DefaultStateDir); err == nil {
			if run == "" {
				if id, err := s.Latest(); err == nil {
					return s, id, nil
				}
			} else if s.has(run) {
				return s, run, nil
			}
		}
		e, err := lookupIndexed(run)
		if err != nil {
			return nil, "", err
		}
		if e == nil {
			dir, _ := filepath.Abs(DefaultStateDir)
			return nil, "", &NoStateError{Dir: dir, Run: run, Indexed: true}
		}
		s, err := ExistingStore(e.StateDir)
		return s, e.RunID, err
	}
	s, err := ExistingStore(stateDir)
	if err != nil {
		return nil, "", err
	}
	if run == "" {
		run, err = s.Latest()
		if err != nil {
			return nil, "", err
		}
	}
	return s, run, nil
}

// Resume continues run runID: it refuses when the plan file or inventory
// changed, skips what is done, probes what was left running or failed, and
// walks the rest. Errors are as for Apply, plus *StaleError,
// *InvalidPlanError and *NoStateError.
func Resume(ctx context.Context, runID string, opts Options) (*Result, error) {
	opts.defaults()
	store, id, err := LocateRun(opts.StateDir, runID)
	if err != nil {
		return nil, err
	}
	opts.StateDir = store.Dir
	lock, err := store.Lock(id, "resume")
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	st, err := store.Load(id)
	if err != nil {
		return nil, err
	}
	if st.Outcome == OutcomeDone {
		// Nothing to do, but say so rather than fail: resume is idempotent.
		return &Result{RunID: id, StateDir: store.Dir, State: st}, nil
	}
	c, err := loadForResume(st, opts.Registry)
	if err != nil {
		return nil, err
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
	if err := preflight(c, &opts); err != nil {
		return nil, err
	}
	if err := c.Bind(id); err != nil {
		return nil, err
	}
	reconcile(st, c)
	if err := confirm(ctx, &opts, st); err != nil {
		return nil, err
	}
	st.Sessions++
	st.Outcome = OutcomeRunning
	run, err := store.open(st, NewRedactor(c.Plan), opts.now)
	if err != nil {
		return nil, err
	}
	defer run.Close()
	return session(ctx, c, run, &opts)
}

// loadForResume reads the plan the run began with, and refuses if it
// changed: the checkpoint describes that plan's steps and run-id paths.
func loadForResume(st *State, reg map[string]*steps.Type) (*Compiled, error) {
	hint := "start a new run with etcd-rescue apply, or put back the plan the run began with"
	p, fs := plans.Load(st.Plan, st.Inventory)
	if p == nil {
		return nil, &StaleError{RunID: st.RunID, Plan: st.Plan, Reason: fmt.Sprintf("its plan %s cannot be read: %v; %s", st.Plan, fs.Err(), hint)}
	}
	if got := PlanHash(p.Raw, p.InvRaw); got != st.PlanSHA256 {
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
		return nil, &InvalidPlanError{File: st.Plan, Findings: append(fs, cfs...)}
	}
	return c, nil
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

func checkApprovals(c *Compiled, approve []string) error {
	for _, a := range approve {
		n, ok := c.ByID[a]
		if !ok {
			return &UsageError{fmt.Sprintf("--approve %s: no step %q in the plan%s", a, a, plans.Suggest(a, ids(c)))}
		}
		if n.Type.Name != "approve" {
			return &UsageError{fmt.Sprintf("--approve %s: step %s is a %s step, not an approve step", a, a, n.Type.Name)}
		}
	}
	return nil
}

func ids(c *Compiled) []string {
	out := make([]string, 0, len(c.Nodes))
	for _, n := range c.Nodes {
		out = append(out, n.ID())
	}
	return out
}

func targetOf(n *Node, host string) *Target {
	for _, t := range n.Targets {
		if t.Name() == host {
			return t
		}
	}
	return nil
}

// reconcile makes the state hold one record per step-host of c, in plan
// order, keeping existing records.
func reconcile(st *State, c *Compiled) {
	old := map[string]*StepState{}
	for _, s := range st.Steps {
		old[s.ID] = s
	}
	var out []*StepState
	for _, n := range c.Nodes {
		s := old[n.ID()]
		if s == nil {
			s = &StepState{ID: n.ID(), Type: n.Type.Name}
		}
		have := map[string]*HostState{}
		for _, h := range s.Hosts {
			have[h.Host] = h
		}
		var hosts []*HostState
		for _, t := range n.Targets {
			h := have[t.Name()]
			if h == nil {
				h = &HostState{Host: t.Name(), Status: StatusPending}
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
		st.Approvals = map[string]*Approval{}
	}
}

// session walks the plan once over an open run and records the outcome.
func session(ctx context.Context, c *Compiled, run *Run, opts *Options) (*Result, error) {
	start := opts.now()
	red := run.red
	out := &progress{w: opts.Progress, red: red, now: opts.now}
	var backend Backend
	var err error
	if opts.Backend != nil {
		backend, err = opts.Backend(c)
	} else {
		var b *SSHBackend
		b, err = NewSSHBackend(c.Plan)
		if err == nil {
			backend = b
			for _, r := range b.Routes() {
				run.Event(Event{Type: "run", Host: r.Host, Msg: r.String()})
			}
			for _, h := range b.InsecureHosts() {
				// Loud on every run, and in the journal: this is for labs.
				out.printf("WARNING: host key of %s is NOT verified (ssh.insecureIgnoreHostKey): anyone on the path can impersonate it", h)
				run.Event(Event{Type: "run", Host: h, Msg: "WARNING: host key not verified (insecureIgnoreHostKey)"})
			}
		}
	}
	if err != nil {
		_ = run.Update(func(s *State) { s.Outcome = OutcomeFailed })
		return nil, err
	}
	defer backend.Close()
	if crashAfter != "" {
		out.printf("WARNING: %s=%q is set: this process kills itself after the first successful command or etcd call containing it (a crash-test failpoint)", CrashAfterEnv, crashAfter)
		run.Event(Event{Type: "run", Msg: "WARNING: crash-test failpoint " + CrashAfterEnv + "=" + crashAfter})
	}
	if opts.OnStart != nil {
		opts.OnStart(run)
	}
	stop := opts.Stop
	if stop == nil {
		stop = make(chan struct{}) // never closed
	}
	o := *opts
	o.Stop = stop
	w := &walker{c: c, runID: run.ID(), run: run, backend: backend, red: red, opts: &o, out: out,
		sem: make(chan struct{}, opts.Parallelism)}
	run.Event(Event{Type: "run", Status: "start", Msg: fmt.Sprintf("session %d, parallelism %d", run.Snapshot().Sessions, opts.Parallelism)})
	w.walk(ctx)

	rerr := &RunError{RunID: run.ID(), StateDir: run.store.Dir, Failed: w.failed, Waiting: w.waiting, Skipped: w.skipped,
		Interrupted: w.interrupted || ctx.Err() != nil}
	sortStepErrors(c, rerr)
	outcome := OutcomeDone
	switch {
	case rerr.Interrupted:
		outcome = OutcomeInterrupted
	case len(rerr.Failed) > 0:
		outcome = OutcomeFailed
	case len(rerr.Waiting) > 0:
		outcome = OutcomeWaiting
	}
	if outcome == OutcomeDone {
		// Every step-host must be done or skipped-unreachable; anything
		// else is a bug in the walk, never a success.
		for _, s := range run.Snapshot().Steps {
			for _, h := range s.Hosts {
				if h.Status != StatusDone && h.Status != StatusSkipped {
					outcome = OutcomeFailed
					rerr.Failed = append(rerr.Failed, &StepError{Step: s.ID, Host: h.Host, ExitCode: -1,
						Err: fmt.Errorf("left %s at the end of the run", h.Status)})
				}
			}
		}
	}
	uerr := run.Update(func(s *State) { s.Outcome = outcome })
	run.Event(Event{Type: "run", Status: outcome})
	res := &Result{RunID: run.ID(), StateDir: run.store.Dir, State: run.Snapshot(), Wall: opts.now().Sub(start)}
	if outcome == OutcomeDone {
		return res, uerr
	}
	return res, rerr
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

// untilStop returns a context that also ends when stop is closed.
func untilStop(ctx context.Context, stop <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if stop != nil {
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}

// Interrupts implements the two-phase interrupt for a command line: the
// first SIGINT/SIGTERM closes stop (no new step-hosts; running ones finish
// and are checkpointed), the second cancels the returned context (running
// commands are killed). notify, if set, is told about each phase. Call
// release when the run is over.
func Interrupts(parent context.Context, notify func(phase int)) (ctx context.Context, stop <-chan struct{}, release func()) {
	ctx, cancel := context.WithCancel(parent)
	stopCh := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	var once sync.Once
	go func() {
		phase := 0
		for {
			select {
			case <-sigs:
				phase++
				if notify != nil {
					notify(phase)
				}
				if phase == 1 {
					close(stopCh)
				} else {
					cancel()
					return
				}
			case <-done:
				return
			}
		}
	}()
	return ctx, stopCh, func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
			cancel()
		})
	}
}
