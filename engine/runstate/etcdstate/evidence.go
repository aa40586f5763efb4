package etcdstate

import (
	"context"
	"fmt"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// PutEvidence stores evidence file name of run id at P/runs/<id>/evidence/<name>,
// in a transaction that succeeds only while l is held and the run exists.
func (s *Store) PutEvidence(ctx context.Context, l runstate.SharedLock, id, name string, data []byte) error {
	lk, err := s.held(l)
	if err != nil {
		return err
	}
	if !validName(name) {
		return fmt.Errorf("state store %s: evidence file name %q (empty, or holds a \"/\" or a control character)", s.where, name)
	}
	if err := s.checkWrite(id, map[string][]byte{"evidence file " + name: data}); err != nil {
		return err
	}
	if lk.isLost() {
		return s.lockLost(id, lk)
	}
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	stateKey := s.runKey(id, "state")
	resp, err := s.cli.Txn(rctx).
		If(lk.mu.IsOwner(), clientv3.Compare(clientv3.CreateRevision(stateKey), ">", 0)).
		Then(clientv3.OpPut(s.runKey(id, "evidence/"+name), string(data))).
		Commit()
	if err != nil {
		return s.wrap(fmt.Sprintf("storing evidence %s of run %s", name, id), err)
	}
	if !resp.Succeeded {
		if lk.isLost() {
			return s.lockLost(id, lk)
		}
		return &runstate.FencedError{Where: s.where, RunID: id, Reason: "this session no longer holds the lock of cluster " + lk.scope + ", or the run is not in the store"}
	}
	return nil
}

// Evidence returns the evidence files of run id by name (none: an empty map).
func (s *Store) Evidence(ctx context.Context, id string) (map[string][]byte, error) {
	if !validName(id) {
		return nil, &runstate.NoStateError{Dir: s.where, Run: id}
	}
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	prefix := s.runKey(id, "evidence/")
	resp, err := s.cli.Get(rctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, s.wrap(fmt.Sprintf("reading the evidence of run %s", id), err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), prefix)] = kv.Value
	}
	return out, nil
}
