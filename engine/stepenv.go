package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"sync"
	"sync/atomic"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// stepEnv is the steps.Env of one step-host attempt (or Check). It journals
// every remote command and API call under the step-host, adds up the time
// spent in them, and records facts and approvals in the checkpoint.
type stepEnv struct {
	w    *walker
	n    *Node
	host string

	// destructive: the step-host changes data or membership, so a fact it
	// records may decide what it does next (the revision bump of a
	// restore); unsynced: such a fact is not durable yet.
	destructive bool
	unsynced    atomic.Bool

	mu      sync.Mutex
	remote  time.Duration
	api     time.Duration
	cmds    int
	lastBad string // last command that failed
}

var _ steps.Env = (*stepEnv)(nil)

var _ steps.Approver = (*stepEnv)(nil)

var _ steps.LiveEnv = (*stepEnv)(nil)

func (w *walker) newEnv(n *Node, t *Target) *stepEnv {
	return &stepEnv{w: w, n: n, host: t.Name(), destructive: destructive(t)}
}

func (e *stepEnv) Shell(host string) (steps.Runner, error) {
	r, err := e.w.backend.Shell(host)
	if err != nil {
		return nil, err
	}
	j := &journalRunner{env: e, host: host, r: r}
	if _, ok := r.(steps.UploadChecker); ok {
		return &journalCheckedRunner{j}, nil
	}
	return j, nil
}

func (e *stepEnv) Etcd(ctx context.Context) (steps.Etcd, error) {
	api, err := e.w.backend.Etcd(ctx)
	if err != nil {
		return nil, err
	}
	if s, ok := api.(interface{ seedLearners(*steps.Live) }); ok {
		s.seedLearners(e.w.live)
	}
	return &journalEtcd{env: e, api: api}, nil
}

var _ steps.HostDialer = (*stepEnv)(nil)

// DialHost reaches addr on host's network through the backend (the SSH
// connection with clientAccess: ssh-tunnel); a backend that cannot (a
// test's) dials directly. The time spent connecting counts as API time.
func (e *stepEnv) DialHost(ctx context.Context, host, addr string) (net.Conn, error) {
	t0 := time.Now()
	defer func() { e.addRemote(time.Since(t0), true) }()
	if d, ok := e.w.backend.(HostDialer); ok {
		return d.DialHost(ctx, host, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// Live is the session-start view of the live cluster (steps.LiveEnv).
func (e *stepEnv) Live() *steps.Live { return e.w.live }

func (e *stepEnv) Fact(key string) (string, bool) { return e.w.run.Fact(key) }

// SetFact returns only once the fact is in the checkpoint on disk: a
// resumed run must see the same bump revision, the same member id. The
// write is lazy (runstate.Durability); a destructive step-host's fact is
// made durable before the step-host's next command or membership change,
// so that a power loss cannot keep what it did and lose why.
func (e *stepEnv) SetFact(key, value string) error {
	if err := e.w.run.SetFact(key, value, runstate.Lazy); err != nil {
		return &checkpointError{err}
	}
	if e.destructive {
		e.unsynced.Store(true)
	}
	return nil
}

// factsDurable makes the facts the step-host recorded durable, before it
// acts on them.
func (e *stepEnv) factsDurable() error {
	if !e.unsynced.Swap(false) {
		return nil
	}
	if err := e.w.run.Sync(); err != nil {
		return &checkpointError{err}
	}
	return nil
}

func (e *stepEnv) Logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.w.run.Event(runstate.Event{Type: "log", Step: e.n.ID(), Host: e.host, Msg: msg})
	e.w.out.line(runstate.Key(e.n.ID(), e.host), msg)
	// A transfer's progress line is a crash point too: the crash tests kill
	// a run mid-upload this way. Other log lines are not: one that names a
	// call before it is made would pass for the call having succeeded.
	if steps.IsTransferProgress(msg) {
		crashPoint(msg)
	}
}

// Approve says yes when the approval is recorded already or was given with
// --approve, asks on a terminal, and otherwise stops the step for the
// operator.
func (e *stepEnv) Approve(ctx context.Context, message string) error {
	return e.w.approve(ctx, e.n, message)
}

func (e *stepEnv) addRemote(d time.Duration, api bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if api {
		e.api += d
	} else {
		e.remote += d
		e.cmds++
	}
}

func (e *stepEnv) noteFailed(cmd string) {
	e.mu.Lock()
	e.lastBad = cmd
	e.mu.Unlock()
}

func (e *stepEnv) failedCmd() string {
	if e == nil {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastBad
}

// addTo adds this attempt's times to a record (e may be nil).
func (e *stepEnv) addTo(h *runstate.HostState, elapsed time.Duration) {
	if e == nil {
		h.AddTime(elapsed, 0, 0, 0)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	h.AddTime(elapsed, e.remote, e.api, e.cmds)
}

func (w *walker) approve(ctx context.Context, n *Node, message string) error {
	id := n.ID()
	if w.run.Approved(id) {
		return nil
	}
	record := func(how string) error {
		who := os.Getenv("USER")
		if u, err := user.Current(); err == nil {
			who = u.Username
		}
		err := w.run.Approve(id, runstate.Approval{At: w.opts.now().UTC(), By: who, How: how})
		w.run.Event(runstate.Event{Type: "approval", Step: id, Msg: how + ": " + message})
		if err != nil {
			return &checkpointError{err}
		}
		return nil
	}
	for _, a := range w.opts.Approve {
		if a == id {
			return record("flag")
		}
	}
	if w.opts.Ask == nil {
		return &ApprovalNeededError{Step: id, Message: message}
	}
	// One question at a time on the terminal. The first interrupt takes
	// the question back: the step then waits for a resume, as if never
	// asked.
	w.askMu.Lock()
	defer w.askMu.Unlock()
	actx, cancel := untilStop(ctx, w.opts.Stop)
	defer cancel()
	yes, err := w.opts.Ask(actx, fmt.Sprintf("step %s: %s\napprove? [y/N] ", id, message))
	if err != nil {
		if actx.Err() != nil && ctx.Err() == nil {
			w.mu.Lock()
			w.interrupted = true
			w.mu.Unlock()
			return &ApprovalNeededError{Step: id, Message: message}
		}
		return err
	}
	if !yes {
		return fmt.Errorf("not approved by the operator: %s", message)
	}
	return record("prompt")
}
