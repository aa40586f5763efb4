package etcdstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// lock is a held run lock: a concurrency.Mutex on the scope's prefix, kept
// alive by its session's lease.
type lock struct {
	s     *Store
	scope string
	sess  *concurrency.Session
	mu    *concurrency.Mutex
	rev   int64 // the create revision of the mutex key (what IsOwner compares)

	lost     chan struct{} // closed when the lock is known lost
	released chan struct{} // closed by Release, before the session ends
	stop     context.CancelFunc
	once     sync.Once
	err      error
}

var _ runstate.SharedLock = (*lock)(nil)

// Lost is closed when the lease expired or could not be kept alive for its
// TTL, or when the lock's key was deleted (Break). Release does not close
// it: a lock given up is not a lock lost.
func (l *lock) Lost() <-chan struct{} { return l.lost }

// isLost reports whether Lost is closed.
func (l *lock) isLost() bool {
	select {
	case <-l.lost:
		return true
	default:
		return false
	}
}

// Release deletes the lock's key and revokes its lease. Safe to call more
// than once; a store that does not answer lets the lease lapse after its
// TTL.
func (l *lock) Release() error {
	l.once.Do(func() {
		close(l.released)
		l.stop()
		// Past the TTL the lease has lapsed anyway.
		ctx, cancel := context.WithTimeout(context.Background(), min(l.s.ttl, runstate.SharedTimeout))
		defer cancel()
		err := l.mu.Unlock(ctx)
		if errors.Is(err, concurrency.ErrLockReleased) {
			err = nil
		}
		l.sess.Orphan()
		if _, rerr := l.s.cli.Revoke(ctx, l.sess.Lease()); rerr != nil && !errors.Is(rerr, rpctypes.ErrLeaseNotFound) && err == nil {
			err = rerr
		}
		if err != nil {
			l.err = l.s.wrap(fmt.Sprintf("releasing the lock of cluster %s", l.scope), err)
		}
	})
	return l.err
}

// ttlSeconds is the lease TTL: whole seconds, at least 1.
func (s *Store) ttlSeconds() int64 {
	return max(1, int64(math.Ceil(s.ttl.Seconds())))
}

// Lock takes scope's run lock for info.RunID: a lease of the store's TTL,
// kept alive until Release, and a mutex key under P/locks/<scope>/ holding
// info. A lock held by another session is a *runstate.LockedError naming
// its holder.
func (s *Store) Lock(ctx context.Context, scope string, info runstate.LockInfo) (runstate.SharedLock, error) {
	if !validName(scope) {
		return nil, fmt.Errorf("state store %s: cluster name %q cannot name a lock (empty, or holds a \"/\" or a control character)", s.where, scope)
	}
	info.Scope = scope
	val, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("taking the lock of cluster %s", scope)
	// A lock just released between our try and the read of its holder is
	// tried again, a few times.
	for attempt := 0; ; attempt++ {
		l, holder, err := s.tryLock(ctx, scope, val)
		if err != nil {
			return nil, s.wrap(what, err)
		}
		if l != nil {
			return l, nil
		}
		if holder != nil || attempt == 2 {
			return nil, &runstate.LockedError{Dir: s.where, Shared: true, Scope: scope, Owner: holder}
		}
	}
}

// tryLock makes one attempt: the held lock, or the holder of the lock
// (nil when it was released meanwhile).
func (s *Store) tryLock(ctx context.Context, scope string, val []byte) (*lock, *runstate.LockInfo, error) {
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	// The lease is granted here, bounded by the request's deadline;
	// NewSession would wait for it without one.
	lease, err := s.cli.Grant(rctx, s.ttlSeconds())
	if err != nil {
		return nil, nil, err
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(int(s.ttlSeconds())))
	if err != nil {
		_, _ = s.cli.Revoke(rctx, lease.ID)
		return nil, nil, err
	}
	abandon := func() {
		sess.Orphan()
		_, _ = s.cli.Revoke(rctx, lease.ID)
	}
	mu := concurrency.NewMutex(sess, s.lockPrefix(scope))
	if err := mu.TryLock(rctx); err != nil {
		abandon()
		if errors.Is(err, concurrency.ErrLocked) {
			holder, herr := s.owner(rctx, scope)
			if herr != nil {
				return nil, nil, herr
			}
			return nil, holder, nil
		}
		return nil, nil, err
	}
	// The holder's details, on the mutex key (same lease), while it is
	// still ours.
	resp, err := s.cli.Txn(rctx).If(mu.IsOwner()).
		Then(clientv3.OpPut(mu.Key(), string(val), clientv3.WithLease(lease.ID)), clientv3.OpGet(mu.Key(), clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		abandon()
		return nil, nil, err
	}
	if !resp.Succeeded {
		abandon()
		return nil, nil, errors.New("the lock was lost at once (lease expired or broken)")
	}
	wctx, stop := context.WithCancel(context.Background())
	l := &lock{s: s, scope: scope, sess: sess, mu: mu, rev: resp.Responses[1].GetResponseRange().Kvs[0].CreateRevision, lost: make(chan struct{}), released: make(chan struct{}), stop: stop}
	deleted := make(chan struct{})
	go s.watchDelete(wctx, mu.Key(), resp.Header.Revision+1, deleted)
	go func() {
		select {
		case <-sess.Done():
		case <-deleted:
		case <-l.released:
			return
		}
		select {
		case <-l.released:
			// Release ended the session: not a loss.
		default:
			close(l.lost)
		}
		stop()
	}()
	return l, nil, nil
}

// watchDelete closes deleted when key is deleted at or after revision rev,
// until ctx ends.
func (s *Store) watchDelete(ctx context.Context, key string, rev int64, deleted chan<- struct{}) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		wch := s.cli.Watch(clientv3.WithRequireLeader(wctx), key, clientv3.WithRev(rev), clientv3.WithFilterPut())
		gone := false
		for resp := range wch {
			for _, ev := range resp.Events {
				gone = gone || ev.Type == clientv3.EventTypeDelete
			}
			if gone || resp.Err() != nil {
				break
			}
		}
		cancel()
		if gone {
			close(deleted)
			return
		}
		if ctx.Err() != nil {
			return
		}
		// The watch ended (compaction, no leader): look at the key
		// itself, then watch again from there.
		gctx, cancel := context.WithTimeout(ctx, s.dial)
		g, err := s.cli.Get(gctx, key)
		cancel()
		switch {
		case err == nil && len(g.Kvs) == 0:
			close(deleted)
			return
		case err == nil:
			rev = g.Header.Revision + 1
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Owner returns the holder of scope's lock, nil when it is free.
func (s *Store) Owner(ctx context.Context, scope string) (*runstate.LockInfo, error) {
	if !validName(scope) {
		return nil, fmt.Errorf("state store %s: cluster name %q cannot name a lock", s.where, scope)
	}
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	info, err := s.owner(rctx, scope)
	if err != nil {
		return nil, s.wrap(fmt.Sprintf("reading the lock of cluster %s", scope), err)
	}
	return info, nil
}

func (s *Store) owner(ctx context.Context, scope string) (*runstate.LockInfo, error) {
	resp, err := s.cli.Get(ctx, s.lockPrefix(scope)+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return lockInfo(scope, resp.Kvs[0].Value), nil
}

// lockInfo reads a holder's details; a key without them (a holder between
// taking the mutex and writing them) is a holder of unknown details.
func lockInfo(scope string, v []byte) *runstate.LockInfo {
	var info runstate.LockInfo
	if len(v) == 0 || json.Unmarshal(v, &info) != nil {
		return &runstate.LockInfo{Scope: scope}
	}
	info.Scope = scope
	return &info
}

// Break removes scope's lock whoever holds it: it revokes the leases of
// every key under the lock (which deletes them) and deletes those left
// without a lease.
// It returns the holder it removed, nil when the lock was free. The
// holder's Lost closes at once (it watches its key) and its next write is
// refused.
func (s *Store) Break(ctx context.Context, scope string) (*runstate.LockInfo, error) {
	if !validName(scope) {
		return nil, fmt.Errorf("state store %s: cluster name %q cannot name a lock", s.where, scope)
	}
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	what := fmt.Sprintf("breaking the lock of cluster %s", scope)
	pfx := s.lockPrefix(scope) + "/"
	resp, err := s.cli.Get(rctx, pfx, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, s.wrap(what, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	holder := lockInfo(scope, resp.Kvs[0].Value)
	for _, kv := range resp.Kvs {
		if kv.Lease == 0 {
			continue
		}
		if _, err := s.cli.Revoke(rctx, clientv3.LeaseID(kv.Lease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return holder, s.wrap(what, err)
		}
	}
	for _, kv := range resp.Kvs {
		// Only the key seen: a lock taken meanwhile is not touched.
		k := string(kv.Key)
		if _, err := s.cli.Txn(rctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", kv.CreateRevision)).Then(clientv3.OpDelete(k)).Commit(); err != nil {
			return holder, s.wrap(what, err)
		}
	}
	return holder, nil
}
