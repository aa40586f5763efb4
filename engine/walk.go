package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// walker runs one session (apply or resume) of a run over the DAG.
type walker struct {
	c       *Compiled
	runID   string
	run     *runstate.Run
	backend Backend
	red     *Redactor
	opts    *Options
	out     *progress
	sem     *slots
	// ranks order the step-hosts waiting for a slot (slots.go).
	ranks map[*Node]slotRank
	askMu sync.Mutex
	// live is the session-start view of the cluster given to steps (nil:
	// facts not collected).
	live *steps.Live
	// store is the plan's object store, made on first use (objstore.go).
	store storeOnce

	mu          sync.Mutex
	failed      []*StepError
	waiting     []*OperatorError
	skipped     int
	interrupted bool

	// engineNs is the engine's own time in the walk, summed over
	// step-hosts: from a step-host's needs being done to its first action
	// (less the semaphore and checks), and from its last action to its
	// final checkpoint. Checkpoint and journal writes are runstate's.
	engineNs atomic.Int64
}

// step-host outcomes, as seen by dependents.
type nodeResult int

const (
	nodeOK      nodeResult = iota
	nodeFailed             // it failed, or a need failed: dependents are skipped
	nodeBlocked            // not run yet (operator, interrupt): dependents wait for a resume
)

// unit is one step-host of the walk: a node on one of its targets.
type unit struct {
	n    *Node
	t    *Target
	done chan struct{}
	// res and at (when it was settled) are written before done is
	// closed, and read only after.
	res nodeResult
	at  time.Time
}

// walk runs every step-host once its needs are done, Terraform-style but
// at step-host granularity: one goroutine per step-host waits (holding
// nothing) for what its edges name, a lane edge the need on the same host,
// a barrier edge the need on every host (lanes.go), then runs, taking the
// parallelism semaphore only while it executes.
func (w *walker) walk(ctx context.Context) {
	start := w.opts.now()
	units := make(map[*Node][]*unit, len(w.c.Nodes))
	for _, n := range w.c.Nodes {
		for _, t := range n.Targets {
			units[n] = append(units[n], &unit{n: n, t: t, done: make(chan struct{})})
		}
	}
	// The prepare phase (objstore.go): its step-hosts run first, and every
	// other step-host waits for all of them, as for a barrier need.
	prep := prepareUnits(units, w.c)
	for _, u := range prep {
		w.recheckPrepared(ctx, u)
	}
	var wg sync.WaitGroup
	for _, n := range w.c.Nodes {
		for _, u := range units[n] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(u.done)
				if !prepares(u.n.Type) {
					if res, settled := w.afterPrepare(u, prep); settled {
						u.res = res
						u.at = w.opts.now()
						return
					}
				}
				u.res = w.runUnit(ctx, u, units, start)
				u.at = w.opts.now()
			}()
		}
	}
	wg.Wait()
}

// afterPrepare waits for the prepare phase; a step-host is skipped when a
// step of it failed, and waits for a resume when one is blocked.
func (w *walker) afterPrepare(u *unit, prep []*unit) (nodeResult, bool) {
	for _, v := range prep {
		<-v.done
	}
	for _, v := range prep {
		switch v.res {
		case nodeFailed:
			return w.skipTarget(u.n, u.t, v.n), true
		case nodeBlocked:
			return nodeBlocked, true
		}
	}
	return nodeOK, false
}

// runUnit waits for the step-hosts u's edges name and settles u.
func (w *walker) runUnit(ctx context.Context, u *unit, units map[*Node][]*unit, start time.Time) nodeResult {
	var failedNeed, blockedNeed *Node
	ready := start
	for _, e := range u.n.Edges {
		wait := units[e.Need]
		if e.Kind == EdgeLane {
			if lt := laneOf(e.Need, u.t.Name()); lt != nil {
				for _, v := range wait {
					if v.t == lt {
						wait = []*unit{v}
						break
					}
				}
			}
		}
		for _, v := range wait {
			<-v.done
			if v.at.After(ready) {
				ready = v.at
			}
			switch {
			case v.res == nodeFailed && failedNeed == nil:
				failedNeed = e.Need
			case v.res == nodeBlocked && blockedNeed == nil:
				blockedNeed = e.Need
			}
		}
	}
	// From here to its first action, the step-host waits on the engine
	// only (and on the semaphore, which target.go leaves out).
	w.addEngine(w.opts.now().Sub(ready))
	switch {
	case failedNeed != nil:
		return w.skipTarget(u.n, u.t, failedNeed)
	case blockedNeed != nil:
		return nodeBlocked
	}
	switch w.runTarget(ctx, u.n, u.t) {
	case outFailed:
		return nodeFailed
	case outBlocked:
		return nodeBlocked
	}
	return nodeOK
}

// skipTarget marks a step-host whose need failed as skipped.
func (w *walker) skipTarget(n *Node, t *Target, cause *Node) nodeResult {
	host := t.Name()
	hs := w.hostState(n, host)
	switch hs.Status {
	case runstate.StatusDone:
		// Done in an earlier session: dependents may go on.
		return nodeOK
	case runstate.StatusRunning, runstate.StatusFailed:
		// Kept: they record that the step began, and a later resume must
		// probe it rather than start afresh.
		return nodeFailed
	}
	w.skip(n, host, "not run: step "+cause.ID()+" did not complete")
	return nodeFailed
}

// skip records a step-host as skipped, with why.
func (w *walker) skip(n *Node, host, why string) {
	_ = w.transition(n, host, runstate.Lazy, func(h *runstate.HostState) { h.Status, h.Why = runstate.StatusSkipped, why })
	w.mu.Lock()
	w.skipped++
	w.mu.Unlock()
	w.out.line(runstate.Key(n.ID(), host), "skipped ("+why+")")
}

// haltedByFailure keeps a destructive step-host from starting once any
// step-host of the session has failed: with lanes, another host may be
// further along than the one that failed, and safety comes first. The run
// ends failed; a resume runs what this skipped.
func (w *walker) haltedByFailure(n *Node, t *Target) bool {
	if !destructive(t) {
		return false
	}
	w.mu.Lock()
	var first *StepError
	if len(w.failed) > 0 {
		first = w.failed[0]
	}
	w.mu.Unlock()
	if first == nil {
		return false
	}
	at := first.Step
	if first.Host != "" {
		at += " on " + first.Host
	}
	why := "not run: " + at + " failed, and no destructive step starts after a failure"
	if hs := w.hostState(n, t.Name()); hs.Status == runstate.StatusRunning || hs.Status == runstate.StatusFailed {
		// Began in an earlier session: the record stays for a later
		// resume to probe.
		w.out.line(runstate.Key(n.ID(), t.Name()), "not started ("+why+"; left "+hs.Status+")")
		return true
	}
	w.skip(n, t.Name(), why)
	return true
}

// addEngine adds to the engine's own time of the session.
func (w *walker) addEngine(d time.Duration) {
	if d > 0 {
		w.engineNs.Add(int64(d))
	}
}

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

func (w *walker) hostState(n *Node, host string) *runstate.HostState {
	hs := w.run.HostState(n.ID(), host)
	return &hs
}

// transition changes a step-host record and checkpoints it (durably or
// not, see runningDurability), and journals the new status. A checkpoint
// that cannot be written stops the run: going on without a record is how
// destructive steps get repeated.
func (w *walker) transition(n *Node, host string, d runstate.Durability, f func(*runstate.HostState)) error {
	hs, err := w.run.UpdateHost(n.ID(), host, d, f)
	w.run.Event(runstate.Event{Type: "step", Step: n.ID(), Host: host, Status: hs.Status, Error: hs.Error, Cmd: hs.Cmd, Msg: hs.Why})
	if err != nil {
		return &checkpointError{err}
	}
	return nil
}
