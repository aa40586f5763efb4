package engine

import (
	"context"
	"sync"

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
	sem     chan struct{}
	askMu   sync.Mutex
	// live is the session-start view of the cluster given to steps (nil:
	// facts not collected).
	live *steps.Live

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
		if hs.Status == runstate.StatusDone || hs.Status == runstate.StatusRunning || hs.Status == runstate.StatusFailed {
			// running/failed are kept: they record that the step began,
			// and a later resume must probe it rather than start afresh.
			continue
		}
		why := "not run: step " + cause.ID() + " did not complete"
		_ = w.transition(n, host, func(h *runstate.HostState) { h.Status, h.Why = runstate.StatusSkipped, why })
		w.mu.Lock()
		w.skipped++
		w.mu.Unlock()
		w.out.line(runstate.Key(n.ID(), host), "skipped ("+why+")")
	}
	for _, t := range n.Targets {
		if hs := w.hostState(n, t.Name()); hs.Status != runstate.StatusDone {
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

// transition changes a step-host record and checkpoints it, and journals
// the new status. A checkpoint that cannot be written stops the run: going
// on without a durable record is how destructive steps get repeated.
func (w *walker) transition(n *Node, host string, f func(*runstate.HostState)) error {
	hs, err := w.run.UpdateHost(n.ID(), host, f)
	w.run.Event(runstate.Event{Type: "step", Step: n.ID(), Host: host, Status: hs.Status, Error: hs.Error, Cmd: hs.Cmd, Msg: hs.Why})
	if err != nil {
		return &checkpointError{err}
	}
	return nil
}
