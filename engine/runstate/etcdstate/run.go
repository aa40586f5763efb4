package etcdstate

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// held is l as a lock of this package.
func (s *Store) held(l runstate.SharedLock) (*lock, error) {
	lk, ok := l.(*lock)
	if !ok || lk == nil {
		return nil, fmt.Errorf("state store %s: a write needs a lock taken with Lock of an etcd state store, got %T", s.where, l)
	}
	return lk, nil
}

// checkWrite refuses what cannot be written: a bad run id, a value over
// MaxValue.
func (s *Store) checkWrite(id string, values map[string][]byte) error {
	if !validName(id) {
		return fmt.Errorf("state store %s: run id %q cannot name a run (empty, or holds a \"/\" or a control character)", s.where, id)
	}
	for what, v := range values {
		if len(v) > MaxValue {
			return fmt.Errorf("state store %s: the %s of run %s is %d bytes, more than the %d a value of the store may have (etcd refuses requests over 1.5 MiB by default); hint: this is a bug or an unusual plan: report it with the run's state dir", s.where, what, id, len(v), MaxValue)
		}
	}
	return nil
}

// lockLost is the refusal of a write whose lock is gone.
func (s *Store) lockLost(id string, lk *lock) error {
	return &runstate.FencedError{Where: s.where, RunID: id,
		Reason: fmt.Sprintf("this session no longer holds the lock of cluster %s (lease expired or broken by unlock --force)", lk.scope)}
}

// owns reports whether a range read of the lock's key shows it still held.
func (lk *lock) owns(r *etcdserverpb.ResponseOp) bool {
	rr := r.GetResponseRange()
	return rr != nil && len(rr.Kvs) == 1 && rr.Kvs[0].CreateRevision == lk.rev
}

// Create stores run id's first checkpoint, plan and inventory (skipped when
// nil) in one transaction: the run must not exist and the lock must be
// held. It returns the checkpoint's revision.
func (s *Store) Create(ctx context.Context, l runstate.SharedLock, id string, state []byte, files runstate.RunFiles) (int64, error) {
	lk, err := s.held(l)
	if err != nil {
		return 0, err
	}
	if err := s.checkWrite(id, map[string][]byte{"checkpoint": state, "plan": files.Plan, "inventory": files.Inventory}); err != nil {
		return 0, err
	}
	if lk.isLost() {
		return 0, s.lockLost(id, lk)
	}
	stateKey := s.runKey(id, "state")
	ops := []clientv3.Op{clientv3.OpPut(stateKey, string(state)), clientv3.OpPut(s.runKey(id, "plan"), string(files.Plan))}
	if files.Inventory != nil {
		ops = append(ops, clientv3.OpPut(s.runKey(id, "inventory"), string(files.Inventory)))
	}
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(stateKey), "=", 0), lk.mu.IsOwner()).
		Then(ops...).
		Else(clientv3.OpGet(stateKey, clientv3.WithKeysOnly()), clientv3.OpGet(lk.mu.Key(), clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, s.wrap(fmt.Sprintf("creating run %s", id), err)
	}
	if !resp.Succeeded {
		if !lk.owns(resp.Responses[1]) {
			return 0, s.lockLost(id, lk)
		}
		return 0, fmt.Errorf("state store %s already holds a run %s; hint: a run is created once: resume it", s.where, id)
	}
	return resp.Header.Revision, nil
}

// Save replaces run id's checkpoint, at revision rev, with state and adds
// journal (if any) as the chunk journal/<rev>.s, in one transaction fenced
// by the lock and by rev. It returns the checkpoint's new revision.
func (s *Store) Save(ctx context.Context, l runstate.SharedLock, id string, rev int64, state, journal []byte) (int64, error) {
	lk, err := s.held(l)
	if err != nil {
		return 0, err
	}
	if err := s.checkWrite(id, map[string][]byte{"checkpoint": state, "journal chunk": journal}); err != nil {
		return 0, err
	}
	if lk.isLost() {
		return 0, s.lockLost(id, lk)
	}
	stateKey := s.runKey(id, "state")
	ops := []clientv3.Op{clientv3.OpPut(stateKey, string(state))}
	if len(journal) > 0 {
		ops = append(ops, clientv3.OpPut(s.journalKey(id, rev, ".s"), string(journal)))
	}
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(rctx).
		If(lk.mu.IsOwner(), clientv3.Compare(clientv3.ModRevision(stateKey), "=", rev)).
		Then(ops...).
		Else(clientv3.OpGet(stateKey, clientv3.WithKeysOnly()), clientv3.OpGet(lk.mu.Key(), clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, s.wrap(fmt.Sprintf("saving the checkpoint of run %s", id), err)
	}
	if !resp.Succeeded {
		if !lk.owns(resp.Responses[1]) {
			return 0, s.lockLost(id, lk)
		}
		reason := fmt.Sprintf("the checkpoint is not in the store: it was never created or was deleted (expected revision %d)", rev)
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			reason = fmt.Sprintf("the checkpoint was changed by another writer (revision %d, expected %d)", kvs[0].ModRevision, rev)
		}
		return 0, &runstate.FencedError{Where: s.where, RunID: id, Reason: reason}
	}
	return resp.Header.Revision, nil
}

// journalKey is a journal chunk's key: the checkpoint's revision when it
// is written, then what orders chunks at that revision (see the package
// doc).
func (s *Store) journalKey(id string, rev int64, suffix string) string {
	return s.runKey(id, fmt.Sprintf("journal/%020d%s", rev, suffix))
}

// appendAttempts bounds Append's retries while the checkpoint moves under
// it (a Save of the same holder running meanwhile).
const appendAttempts = 5

// Append adds journal to run id without a checkpoint, as the chunk
// journal/<R>.a<H>: R the checkpoint's revision (0 before the first), H
// the store's revision just read. The transaction is fenced by the lock
// and by R, so the chunk sorts after every chunk written before it.
func (s *Store) Append(ctx context.Context, l runstate.SharedLock, id string, journal []byte) error {
	lk, err := s.held(l)
	if err != nil {
		return err
	}
	if err := s.checkWrite(id, map[string][]byte{"journal chunk": journal}); err != nil {
		return err
	}
	if len(journal) == 0 {
		return nil
	}
	if lk.isLost() {
		return s.lockLost(id, lk)
	}
	what := fmt.Sprintf("appending to the journal of run %s", id)
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	stateKey := s.runKey(id, "state")
	for attempt := 0; attempt < appendAttempts; attempt++ {
		g, err := s.cli.Get(rctx, stateKey, clientv3.WithKeysOnly())
		if err != nil {
			return s.wrap(what, err)
		}
		var rev int64
		if len(g.Kvs) > 0 {
			rev = g.Kvs[0].ModRevision
		}
		key := s.journalKey(id, rev, fmt.Sprintf(".a%020d", g.Header.Revision))
		resp, err := s.cli.Txn(rctx).
			If(lk.mu.IsOwner(), clientv3.Compare(clientv3.ModRevision(stateKey), "=", rev), clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(journal))).
			Else(clientv3.OpGet(lk.mu.Key(), clientv3.WithKeysOnly())).
			Commit()
		if err != nil {
			return s.wrap(what, err)
		}
		if resp.Succeeded {
			return nil
		}
		if !lk.owns(resp.Responses[0]) {
			return s.lockLost(id, lk)
		}
	}
	return fmt.Errorf("state store %s: %s: the checkpoint changed under each of %d attempts; hint: another write of this run is running at the same time", s.where, what, appendAttempts)
}

// Load reads run id's checkpoint with its revision, plan and inventory, in
// one read.
func (s *Store) Load(ctx context.Context, id string) (*runstate.SharedRun, error) {
	if !validName(id) {
		return nil, &runstate.NoStateError{Dir: s.where, Run: id}
	}
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(rctx).Then(
		clientv3.OpGet(s.runKey(id, "state")),
		clientv3.OpGet(s.runKey(id, "plan")),
		clientv3.OpGet(s.runKey(id, "inventory")),
	).Commit()
	if err != nil {
		return nil, s.wrap(fmt.Sprintf("reading run %s", id), err)
	}
	st := resp.Responses[0].GetResponseRange().Kvs
	if len(st) == 0 {
		return nil, &runstate.NoStateError{Dir: s.where, Run: id}
	}
	run := &runstate.SharedRun{State: st[0].Value, Rev: st[0].ModRevision}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		run.Files.Plan = nonNil(kvs[0].Value)
	}
	if kvs := resp.Responses[2].GetResponseRange().Kvs; len(kvs) > 0 {
		run.Files.Inventory = nonNil(kvs[0].Value)
	}
	return run, nil
}

// nonNil keeps a stored empty value apart from an absent one.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Runs lists the ids of the runs with a checkpoint, sorted (run ids begin
// with their creation time: oldest first).
func (s *Store) Runs(ctx context.Context) ([]string, error) {
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	pfx := s.prefix + "/runs/"
	resp, err := s.cli.Get(rctx, pfx, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, s.wrap("listing runs", err)
	}
	var ids []string
	for _, kv := range resp.Kvs {
		id, ok := strings.CutSuffix(strings.TrimPrefix(string(kv.Key), pfx), "/state")
		if ok && validName(id) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Journal returns run id's journal: its chunks in key (write) order.
func (s *Store) Journal(ctx context.Context, id string) ([]byte, error) {
	if !validName(id) {
		return nil, &runstate.NoStateError{Dir: s.where, Run: id}
	}
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(rctx).Then(
		clientv3.OpGet(s.runKey(id, "journal/"), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)),
		clientv3.OpGet(s.runKey(id, "state"), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return nil, s.wrap(fmt.Sprintf("reading the journal of run %s", id), err)
	}
	chunks := resp.Responses[0].GetResponseRange().Kvs
	if len(chunks) == 0 && len(resp.Responses[1].GetResponseRange().Kvs) == 0 {
		return nil, &runstate.NoStateError{Dir: s.where, Run: id}
	}
	var buf bytes.Buffer
	for _, kv := range chunks {
		buf.Write(kv.Value)
	}
	return buf.Bytes(), nil
}
