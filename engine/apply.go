package engine

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// Apply starts a new run of c: it takes the state dir's lock, binds the
// run id, records the first checkpoint and walks the plan. The returned
// error is a *runstate.LockedError, a *RunError (failed, waiting for an operator, or
// interrupted), or another error that kept the run from starting.
func Apply(ctx context.Context, c *Compiled, opts Options) (*Result, error) {
	opts.defaults()
	opts.began = opts.now()
	if len(opts.Rerun) > 0 || len(opts.MarkDone) > 0 {
		return nil, &UsageError{"--rerun and --mark-done are for resume"}
	}
	if err := checkApprovals(c, opts.Approve); err != nil {
		return nil, err
	}
	if opts.PlanFile == "" {
		opts.PlanFile = c.Plan.File
	}
	if opts.StateDir == "" {
		opts.StateDir = runstate.StateDirFor(opts.PlanFile)
	}
	store, err := runstate.OpenStore(opts.StateDir)
	if err != nil {
		return nil, err
	}
	opts.StateDir = store.Dir
	closeShared, err := connectShared(ctx, store, c.Plan, opts.State)
	if err != nil {
		return nil, err
	}
	defer closeShared()
	var runID string
	for {
		runID = runstate.NewRunID(opts.now())
		if !store.Exists(runID) {
			break
		}
	}
	lock, err := store.LockFor(runID, "apply", scopeOf(c.Plan))
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	t0 := opts.now()
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
	before, err := startFacts(ctx, c, &opts)
	if err != nil {
		return nil, err
	}
	// No run is created before every host is proven reachable and
	// trusted: a refusal leaves nothing behind.
	if before.gate, err = gate(ctx, c, nil, &opts, before, "apply", ""); err != nil {
		return nil, err
	}
	// Nor before the certificates of every member the plan starts on its
	// URLs are valid for them (certgate.go).
	if before.certGate, err = certGate(ctx, c, nil, &opts, before, "apply", ""); err != nil {
		return nil, err
	}
	// One recovery per cluster: the hosts it changes are locked for the
	// session, before the first change (and before any run is created).
	if opts.locks, err = takeHostLocks(ctx, c, nil, &opts, before, runID, store.Dir); err != nil {
		return nil, err
	}
	defer opts.locks.release()
	if err := confirm(ctx, &opts, nil); err != nil {
		return nil, err
	}
	if err := c.Bind(runID); err != nil {
		return nil, err
	}
	planPath, _ := filepath.Abs(opts.PlanFile)
	inv := ""
	if opts.Inventory != "" {
		inv, _ = filepath.Abs(opts.Inventory)
	}
	if store.Shared != nil {
		files, err := runFiles(planPath, inv)
		if err != nil {
			return nil, fmt.Errorf("reading the plan files to store with the run: %w", err)
		}
		store.SetRunFiles(files)
	}
	now := opts.now().UTC()
	st := &runstate.State{Format: runstate.StateFormat, RunID: runID, Plan: planPath, Inventory: inv, PlanName: c.Plan.Name,
		PlanSHA256: runstate.PlanHash(c.Plan.Raw, c.Plan.InvRaw), Outcome: runstate.OutcomeRunning, Created: now, Sessions: 1,
		Cluster: scopeOf(c.Plan), StartedBy: runstate.Who()}
	reconcile(st, c)
	red := NewRedactor(c.Plan)
	run, err := store.Create(st, red, opts.now)
	if err != nil {
		return nil, err
	}
	if err := runstate.RecordSharedRun(runID, store.Dir, planPath, store.SharedURL); err != nil {
		how := "--state-dir " + store.Dir
		if store.SharedURL != "" {
			how = "--state " + store.SharedURL
		}
		run.Event(runstate.Event{Type: "run", Msg: "not recorded in the run index (resume needs " + how + "): " + err.Error()})
	}
	defer run.Close()
	return session(ctx, c, run, &opts, "apply", before)
}

// startFacts gets the facts a session starts from: Options.Before, or a
// collection now (bounded by FactsTimeout per host; the first interrupt
// stops it, before anything ran).
func startFacts(ctx context.Context, c *Compiled, opts *Options) (*sessionFacts, error) {
	if opts.Before != nil {
		return &sessionFacts{f: opts.Before, note: "collected by the caller"}, nil
	}
	cctx, cancel := untilStop(ctx, opts.Stop)
	defer cancel()
	sf, err := collectFacts(cctx, c, opts, opts.FactsTimeout)
	if err != nil && cctx.Err() != nil {
		return nil, &RunError{Interrupted: true}
	}
	if err != nil {
		return nil, fmt.Errorf("collecting the facts of the live cluster before the run: %w", err)
	}
	return sf, nil
}

// confirm asks Options.Confirm, if set; the first interrupt takes the
// question back.
func confirm(ctx context.Context, opts *Options, st *runstate.State) error {
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
	if err := storePreflight(c); err != nil {
		return err
	}
	if opts.Backend != nil {
		return nil
	}
	return Preflight(c.Plan)
}

func checkApprovals(c *Compiled, approve []string) error {
	for _, a := range approve {
		n, ok := c.ByID[a]
		if !ok {
			return &UsageError{fmt.Sprintf("--approve %s: no step %q in the plan%s", a, a, plans.Suggest(a, ids(c)))}
		}
		if !asksApproval(n.Type) {
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
