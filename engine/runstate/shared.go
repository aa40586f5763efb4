package runstate

import (
	"context"
	"fmt"
	"time"
)

// Shared is a state store a team shares (package etcdstate: a management
// etcd cluster, never the one being repaired). It holds what another
// machine needs to take a run over: each run's checkpoints, its journal,
// the plan and inventory it began with, and the run lock.
//
// The state dir stays the run's working directory on this machine (staged
// snapshots, evidence, a local copy of the checkpoint). Every durable
// checkpoint (see Durability) is written to the shared store too, in one
// transaction with the journal lines written since the previous one; a
// lazy one stays local, so a machine that dies loses exactly what a power
// loss loses on a local state dir, and the engine already writes durably
// everything a resume must know.
type Shared interface {
	// Where names the store for messages, e.g. "etcd://127.0.0.1:2479/team",
	// never with credentials.
	Where() string
	// Lock takes the run lock of scope (the cluster's name: one run at a
	// time per cluster) for info.RunID, with a lease kept alive until
	// Release. A lock held by another run is a *LockedError naming its
	// holder (LockedError.Where is the store).
	Lock(ctx context.Context, scope string, info LockInfo) (SharedLock, error)
	// Owner returns the holder of scope's lock, nil when it is free.
	Owner(ctx context.Context, scope string) (*LockInfo, error)
	// Break removes scope's lock whoever holds it (unlock --force) and
	// returns the holder it removed, nil when the lock was free. A holder
	// still running finds out at its next write, which the fencing refuses.
	Break(ctx context.Context, scope string) (*LockInfo, error)
	// Create stores a new run id: its first checkpoint and the plan and
	// inventory files it began with. It fails when the run exists, and
	// when l is no longer held. It returns the checkpoint's revision.
	Create(ctx context.Context, l SharedLock, id string, state []byte, files RunFiles) (rev int64, err error)
	// Save replaces run id's checkpoint with state and appends journal
	// (JSON lines, may be empty) to its journal, in one transaction that
	// succeeds only while l is held (its fencing revision) and while the
	// stored checkpoint is still at revision rev, the one this writer
	// wrote or read last; a *FencedError otherwise. It returns the new
	// revision.
	Save(ctx context.Context, l SharedLock, id string, rev int64, state, journal []byte) (int64, error)
	// Append adds journal lines to run id without a checkpoint (a session
	// refused before it began), fenced by l.
	Append(ctx context.Context, l SharedLock, id string, journal []byte) error
	// Load reads run id: a *NoStateError when the store has no such run.
	Load(ctx context.Context, id string) (*SharedRun, error)
	// Runs lists the run ids in the store, oldest first.
	Runs(ctx context.Context) ([]string, error)
	// Journal returns run id's journal lines in order.
	Journal(ctx context.Context, id string) ([]byte, error)
	// PutEvidence stores an evidence file of run id (a plain name, data
	// redacted), fenced by l.
	PutEvidence(ctx context.Context, l SharedLock, id, name string, data []byte) error
	// Evidence returns run id's evidence files by name.
	Evidence(ctx context.Context, id string) (map[string][]byte, error)
	// Close releases the client.
	Close() error
}

// SharedLock is a held run lock of a Shared store.
type SharedLock interface {
	// Lost is closed when the lock is known to be lost: its lease expired
	// or could not be kept alive, or it was broken. Writes fenced by a
	// lost lock fail.
	Lost() <-chan struct{}
	// Release gives the lock up (revokes its lease). It is safe to call
	// more than once.
	Release() error
}

// RunFiles are the plan and inventory a run began with, as read then
// (their bytes hash to State.PlanSHA256).
type RunFiles struct {
	Plan      []byte
	Inventory []byte // nil without --inventory
}

// SharedRun is a run as a Shared store holds it.
type SharedRun struct {
	State []byte // the checkpoint, as State JSON
	Rev   int64  // its revision, for the next Save
	Files RunFiles
}

// FencedError is a write to a Shared store refused because this writer no
// longer holds the run lock, or because the checkpoint was changed by
// another writer since this one wrote it: a paused process that lost its
// lock must not go on.
type FencedError struct {
	Where  string
	RunID  string
	Reason string
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("state store %s refused the checkpoint of run %s: %s; this session stops without changing any host further", e.Where, e.RunID, e.Reason)
}

// SharedTimeout bounds one write to a Shared store: a checkpoint that
// cannot be written in this time fails, and with it the run, which must
// not go on changing hosts without a checkpoint.
const SharedTimeout = 10 * time.Second
