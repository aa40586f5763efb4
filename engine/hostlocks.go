package engine

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"sort"
	"sync"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/access"
	"github.com/etcd-rescue/etcd-rescue/internal/hostlock"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// One recovery of a cluster at a time: after the host gate and before the
// first change, a session takes the run lock (internal/hostlock) on every
// host it changes (the hosts of its remaining step-hosts that answered at
// session start), through an SSH session of its own on the session's one
// connection to the host, and holds it until the session ends. A lock held by another run refuses the session
// with a *hostlock.HeldError (exit 3) before anything ran.
//
// If a lock's session dies mid-run (its connection dropped, or someone
// killed the script on the host), the next command on that host takes it
// again first (the same run id waits for the old one to go); if that fails,
// the command fails and nothing more is changed on that host.

// HostLockFileEnv, when set, replaces the lock file /run/etcd-rescue.lock
// on every host (tests whose hosts are all this machine use a file of
// their own).
const HostLockFileEnv = "ETCD_RESCUE_HOST_LOCK_FILE"

// HostLockedError is the refusal of a session whose host lock is held by
// another run.
type HostLockedError = hostlock.HeldError

// HostLockMissingError is a host that cannot hold the run lock (no flock,
// no bash, /run not writable): a prerequisite (exit 4).
type HostLockMissingError = hostlock.MissingError

// hostLocks are the run locks a session holds.
type hostLocks struct {
	owner hostlock.Owner
	o     hostlock.Options
	event func(host, msg string)

	mu   sync.Mutex
	held map[string]*heldLock
}

type heldLock struct {
	client *sshx.Client
	own    bool // the client is the lock's own, closed on release
	lock   *hostlock.Lock
}

// operatorName is user@machine of this process.
func operatorName() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

// lockHosts are the hosts a session changes that answered at session
// start, sorted.
func lockHosts(c *Compiled, st *runstate.State, opts *Options, sf *sessionFacts) []string {
	uses, _ := gateHosts(c, st, opts.MarkDone)
	var out []string
	for h := range uses {
		fh := sf.f.HostByName(h)
		if fh != nil && (fh.Reach == facts.ReachOK || sf.answeredLater[h]) && c.Plan.Hosts[h] != nil {
			out = append(out, h)
		}
	}
	sort.Strings(out)
	return out
}

// takeHostLocks takes the run lock on the hosts the session changes; none
// with a backend other than SSH or without facts. On an error, the locks
// taken are released.
func takeHostLocks(ctx context.Context, c *Compiled, st *runstate.State, opts *Options, before *sessionFacts, runID, stateDir string) (*hostLocks, error) {
	if opts.Backend != nil || before == nil || before.f == nil {
		return nil, nil
	}
	hl := &hostLocks{
		owner: hostlock.Owner{RunID: runID, Operator: operatorName(), PID: os.Getpid(), StateDir: stateDir, Started: opts.now().UTC()},
		held:  map[string]*heldLock{},
	}
	if opts.HostLock != nil {
		hl.o = *opts.HostLock
	}
	if hl.o.Path == "" {
		hl.o.Path = os.Getenv(HostLockFileEnv)
	}
	hosts := lockHosts(c, st, opts, before)
	type result struct {
		host string
		h    *heldLock
		err  error
	}
	results := make(chan result, len(hosts))
	for _, name := range hosts {
		go func() {
			h, err := hl.take(ctx, c, opts.conns, name)
			results <- result{name, h, err}
		}()
	}
	var errs []error
	for range hosts {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		hl.held[r.host] = r.h
	}
	if len(errs) > 0 {
		hl.release()
		// The most telling first: held by another run, then a missing
		// prerequisite, then anything else.
		sort.SliceStable(errs, func(i, j int) bool { return lockErrRank(errs[i]) < lockErrRank(errs[j]) })
		return nil, errs[0]
	}
	return hl, nil
}

func lockErrRank(err error) int {
	switch err.(type) {
	case *hostlock.HeldError:
		return 0
	case *hostlock.MissingError:
		return 1
	}
	return 2
}

// take takes the lock of host name through the session's connection to
// it (a session of its own on that connection), or a connection of its
// own without conns.
func (hl *hostLocks) take(ctx context.Context, c *Compiled, conns *sshx.Pool, name string) (*heldLock, error) {
	if conns != nil {
		client, err := conns.Get(name)
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
		l, err := hostlock.Acquire(ctx, name, client, hl.owner, hl.o)
		if err != nil {
			return nil, err
		}
		return &heldLock{client: client, lock: l}, nil
	}
	cfg, err := access.SSHConfig(c.Plan, c.Plan.Hosts[name])
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", name, err)
	}
	client, err := sshx.New(name, cfg)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", name, err)
	}
	l, err := hostlock.Acquire(ctx, name, client, hl.owner, hl.o)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return &heldLock{client: client, own: true, lock: l}, nil
}

// hosts lists the hosts locked.
func (hl *hostLocks) hosts() []string {
	if hl == nil {
		return nil
	}
	hl.mu.Lock()
	defer hl.mu.Unlock()
	var out []string
	for h := range hl.held {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// ensure is called before every command on host: a lock whose session died
// is taken again first; if it cannot be, nothing more runs there.
func (hl *hostLocks) ensure(ctx context.Context, host string) error {
	if hl == nil {
		return nil
	}
	hl.mu.Lock()
	defer hl.mu.Unlock()
	h := hl.held[host]
	if h == nil {
		return nil
	}
	lost, why := h.lock.Lost()
	if !lost {
		return nil
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	l, err := hostlock.Acquire(tctx, host, h.client, hl.owner, hl.o)
	if err != nil {
		return fmt.Errorf("the run lock on %s was lost (%v) and could not be taken again: %w; nothing more is changed on %s by this session", host, why, err, host)
	}
	h.lock = l
	if hl.event != nil {
		hl.event(host, fmt.Sprintf("run lock taken again (it was lost: %v)", why))
	}
	return nil
}

// release frees every lock.
func (hl *hostLocks) release() {
	if hl == nil {
		return
	}
	hl.mu.Lock()
	defer hl.mu.Unlock()
	var wg sync.WaitGroup
	for _, h := range hl.held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.lock.Release()
			if h.own {
				_ = h.client.Close()
			}
		}()
	}
	wg.Wait()
	hl.held = map[string]*heldLock{}
}

// setEvent sets where re-takes are journalled.
func (hl *hostLocks) setEvent(fn func(host, msg string)) {
	if hl == nil {
		return
	}
	hl.mu.Lock()
	hl.event = fn
	hl.mu.Unlock()
}

func hostlockPath(opts *Options) string {
	switch {
	case opts.HostLock != nil && opts.HostLock.Path != "":
		return opts.HostLock.Path
	case os.Getenv(HostLockFileEnv) != "":
		return os.Getenv(HostLockFileEnv)
	}
	return hostlock.Path
}

// HostLockBreak is what BreakHostLocks did on one host.
type HostLockBreak struct {
	Host   string
	Broken hostlock.Broken
	Err    error
}

// BreakHostLocks frees the run locks of live holders on every host of inv
// (unlock --force --inventory): on each host whose lock is held it kills
// the holder's lock script. The holder's run stops before its next change
// on that host.
func BreakHostLocks(ctx context.Context, inv *plans.Plan) []HostLockBreak {
	var names []string
	for n := range inv.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]HostLockBreak, len(names))
	o := hostlock.Options{Path: os.Getenv(HostLockFileEnv)}
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].Host = name
			cfg, err := access.SSHConfig(inv, inv.Hosts[name])
			if err != nil {
				out[i].Err = err
				return
			}
			c, err := sshx.New(name, cfg)
			if err != nil {
				out[i].Err = err
				return
			}
			defer c.Close()
			out[i].Broken, out[i].Err = hostlock.Break(ctx, c, o)
		}()
	}
	wg.Wait()
	return out
}
