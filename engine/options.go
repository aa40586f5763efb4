package engine

import (
	"context"
	"io"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/hostlock"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// Options tune Apply and Resume.
type Options struct {
	// StateDir holds the runs. Default: Apply uses .etcd-rescue beside the
	// plan file (runstate.StateDirFor); Resume finds the run in the run
	// index, which records where Apply put it.
	StateDir string
	// State is the URL of a shared state store (--state
	// etcd://HOST:PORT/PREFIX, sharedstate.go); "" uses the plan's or
	// inventory's state: section, if any. With one, StateDir is only the
	// runs' working directory on this machine.
	State string
	// Inventory is the --inventory file, recorded so Resume loads the same.
	Inventory string
	// PlanFile is the file Apply records as the run's plan, the one Resume
	// loads again: default the plan's own file; a reviewed plan
	// (FILE.plan, engine/reviewed) records itself, so resume reads the
	// bytes that were reviewed, not whatever the YAML file holds now. The
	// default state dir is beside it.
	PlanFile string
	// Parallelism bounds the step-hosts executing at once (default 10).
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
	Confirm func(ctx context.Context, st *runstate.State) (bool, error)
	// OnStart is called once the run is created or reopened, before any
	// step runs (to print the run id and where its state is).
	OnStart func(*runstate.Run)
	// Before, if set, are the facts of the live cluster collected just
	// before this session (apply of a reviewed plan collects them for its
	// drift check); nil: the session collects them itself.
	Before *facts.Facts
	// CollectFacts, if set, collects the facts of the live cluster at the
	// start (unless Before is set) and at the end of a session; nil: with
	// the SSH backend, facts.Collect over the plan; with another Backend,
	// none are collected (recorded as "facts not collected").
	CollectFacts func(ctx context.Context) (*facts.Facts, error)
	// FactsTimeout bounds each host of a facts collection (default
	// facts.DefaultTimeout).
	FactsTimeout time.Duration
	// HostLock tunes the run lock taken on every host the session changes
	// (SSH backend only); nil: the defaults of internal/hostlock (lock file
	// /run/etcd-rescue.lock, freed 30 s after the holder falls silent).
	HostLock *hostlock.Options

	locks *hostLocks // held by this session (set by Apply and Resume)
	// began is when Apply or Resume was called, and setup the engine's
	// own time from then to the session (preflight; resume's load).
	began time.Time
	setup time.Duration
	// conns are the session's SSH connections, one per host (set by Apply
	// and Resume for the SSH backend): the facts at its start, its host
	// locks, its steps and the facts at its end all use them, so each host
	// is connected to once per session.
	conns *sshx.Pool

	now func() time.Time
}

func (o *Options) defaults() {
	if o.Parallelism <= 0 {
		o.Parallelism = 10
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
	if o.FactsTimeout <= 0 {
		o.FactsTimeout = facts.DefaultTimeout
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
	State    *runstate.State // the final checkpoint
	Wall     time.Duration
	// Engine is the engine's own time in this session (EngineTime), and
	// EngineWall the wall time it is a part of: from loading the plan to
	// the end of the session.
	Engine     time.Duration
	EngineWall time.Duration
}
