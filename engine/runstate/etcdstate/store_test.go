package etcdstate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"

	clientv3 "go.etcd.io/etcd/client/v3"
)

var bg = context.Background()

func info(run string) runstate.LockInfo {
	return runstate.LockInfo{PID: 4242, Host: "ops-laptop", User: "alice", Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), RunID: run, Command: "apply"}
}

func mustLock(t *testing.T, s *Store, scope, run string) runstate.SharedLock {
	t.Helper()
	l, err := s.Lock(bg, scope, info(run))
	if err != nil {
		t.Fatalf("Lock %s: %v", scope, err)
	}
	t.Cleanup(func() { _ = l.Release() })
	return l
}

func wantFenced(t *testing.T, err error, reason string) {
	t.Helper()
	var fe *runstate.FencedError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v (%T), want a *runstate.FencedError", err, err)
	}
	if !strings.Contains(fe.Reason, reason) {
		t.Fatalf("fenced for %q, want %q", fe.Reason, reason)
	}
}

// unaware is l as a holder that has not noticed it lost the lock: its
// writes meet the store's fencing (a copy with a Lost not closed, on s).
func unaware(l runstate.SharedLock, s *Store) *lock {
	lk := l.(*lock)
	return &lock{s: s, scope: lk.scope, sess: lk.sess, mu: lk.mu, rev: lk.rev, lost: make(chan struct{}), released: make(chan struct{})}
}

func TestNormalizePrefixAndWhere(t *testing.T) {
	for in, want := range map[string]string{"": DefaultPrefix, "/": DefaultPrefix, "team-a": "/team-a", "/etcd-rescue/": "/etcd-rescue", "a/b": "/a/b"} {
		if got := NormalizePrefix(in); got != want {
			t.Errorf("NormalizePrefix(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Where([]string{"10.0.0.5:2379", "10.0.0.6:2379"}, "team-a"); got != "etcd://10.0.0.5:2379,10.0.0.6:2379/team-a" {
		t.Errorf("Where = %q", got)
	}
	_, err := Open(bg, Config{Endpoints: []string{"https://10.0.0.5:2379"}})
	contains(t, err, "without a scheme")
	_, err = Open(bg, Config{Endpoints: []string{"10.0.0.5"}})
	contains(t, err, "want HOST:PORT")
	_, err = Open(bg, Config{})
	contains(t, err, "no endpoint")
}

func TestCreateSaveLoad(t *testing.T) {
	p := startEtcd(t, etcdOpts{})
	s := open(t, p, Config{Prefix: "team-a/"})
	if want := "etcd://" + p.Endpoint() + "/team-a"; s.Where() != want {
		t.Fatalf("Where = %q, want %q", s.Where(), want)
	}
	if eps := s.Endpoints(); len(eps) != 1 || eps[0] != p.Endpoint() {
		t.Fatalf("Endpoints = %v", eps)
	}
	l := mustLock(t, s, "prod", "r1")
	files := runstate.RunFiles{Plan: []byte("version: 1\n"), Inventory: []byte("cluster: {}\n")}
	rev, err := s.Create(bg, l, "r1", []byte(`{"runId":"r1","outcome":"running"}`), files)
	if err != nil {
		t.Fatal(err)
	}
	run, err := s.Load(bg, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if run.Rev != rev || string(run.State) != `{"runId":"r1","outcome":"running"}` || string(run.Files.Plan) != "version: 1\n" || string(run.Files.Inventory) != "cluster: {}\n" {
		t.Fatalf("Load = %+v (rev %d), want what Create wrote (rev %d)", run, run.Rev, rev)
	}
	rev2, err := s.Save(bg, l, "r1", rev, []byte(`{"runId":"r1","outcome":"done"}`), []byte(`{"type":"done"}`+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if rev2 <= rev {
		t.Fatalf("Save's revision %d is not after Create's %d", rev2, rev)
	}
	run, err = s.Load(bg, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if run.Rev != rev2 || string(run.State) != `{"runId":"r1","outcome":"done"}` {
		t.Fatalf("Load after Save = %s at %d, want rev %d", run.State, run.Rev, rev2)
	}
	j, err := s.Journal(bg, "r1")
	if err != nil || string(j) != `{"type":"done"}`+"\n" {
		t.Fatalf("Journal = %q, %v", j, err)
	}

	// A run without an inventory has none; a run is created once.
	if _, err := s.Create(bg, l, "r2", []byte(`{}`), runstate.RunFiles{Plan: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	if run, err := s.Load(bg, "r2"); err != nil || run.Files.Inventory != nil {
		t.Fatalf("Load r2 = %+v, %v; want no inventory", run, err)
	}
	_, err = s.Create(bg, l, "r1", []byte(`{}`), files)
	contains(t, err, "already holds a run r1", s.Where())

	// Absent runs.
	var nse *runstate.NoStateError
	if _, err := s.Load(bg, "nope"); !errors.As(err, &nse) || nse.Run != "nope" || nse.Dir != s.Where() {
		t.Fatalf("Load of an absent run: %v, want a NoStateError", err)
	}
	if _, err := s.Journal(bg, "nope"); !errors.As(err, &nse) {
		t.Fatalf("Journal of an absent run: %v, want a NoStateError", err)
	}

	// Values over 1 MiB are refused before they are sent.
	_, err = s.Save(bg, l, "r1", rev2, bytes.Repeat([]byte("x"), MaxValue+1), nil)
	contains(t, err, "checkpoint of run r1 is 1048577 bytes, more than the 1048576")
	_, err = s.Save(bg, l, "r1", rev2, []byte("{}"), bytes.Repeat([]byte("x"), MaxValue+1))
	contains(t, err, "journal chunk of run r1")
	// Values under the limit that together exceed etcd's request limit
	// (1.5 MiB by default) are refused by the store, with a hint.
	_, err = s.Save(bg, l, "r1", rev2, bytes.Repeat([]byte("x"), MaxValue), bytes.Repeat([]byte("y"), 600<<10))
	contains(t, err, "request is too large", "--max-request-bytes")
	if errors.As(err, new(*runstate.FencedError)) {
		t.Fatalf("a request too large is not a fencing: %v", err)
	}
	// A bad run id or scope never becomes a key.
	_, err = s.Create(bg, l, "a/b", []byte("{}"), files)
	contains(t, err, `run id "a/b"`)
	_, err = s.Lock(bg, "a/b", info("r"))
	contains(t, err, `cluster name "a/b"`)

	// A stale revision is refused: another writer changed the checkpoint.
	_, err = s.Save(bg, l, "r1", rev, []byte(`{}`), nil)
	wantFenced(t, err, fmt.Sprintf("changed by another writer (revision %d, expected %d)", rev2, rev))
	if run, _ := s.Load(bg, "r1"); string(run.State) != `{"runId":"r1","outcome":"done"}` {
		t.Fatalf("a refused Save changed the checkpoint: %s", run.State)
	}
	_, err = s.Save(bg, l, "r9", 5, []byte(`{}`), nil)
	wantFenced(t, err, "not in the store")
}

func TestLockConflict(t *testing.T) {
	p := startEtcd(t, etcdOpts{})
	a, b := open(t, p, Config{}), open(t, p, Config{})
	la := mustLock(t, a, "prod", "run-a")

	_, err := b.Lock(bg, "prod", info("run-b"))
	var le *runstate.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("second Lock: %v, want a LockedError", err)
	}
	if !le.Shared || le.Scope != "prod" || le.Dir != b.Where() || le.Owner == nil {
		t.Fatalf("LockedError = %+v", le)
	}
	if o := le.Owner; o.PID != 4242 || o.Host != "ops-laptop" || o.User != "alice" || o.RunID != "run-a" || o.Scope != "prod" {
		t.Fatalf("LockedError names %+v, want the first holder", o)
	}
	contains(t, err, "cluster prod is locked in state store "+b.Where(), "pid 4242 on ops-laptop, user alice, apply of run run-a")

	// Another cluster's lock is another lock.
	mustLock(t, b, "staging", "run-c")
	if o, err := b.Owner(bg, "prod"); err != nil || o == nil || o.RunID != "run-a" {
		t.Fatalf("Owner(prod) = %+v, %v", o, err)
	}
	if o, err := b.Owner(bg, "dev"); err != nil || o != nil {
		t.Fatalf("Owner(dev) = %+v, %v; want free", o, err)
	}

	// Released (twice: no error), the lock is free for the next one, and
	// a lock given up is not a lock lost.
	if err := la.Release(); err != nil {
		t.Fatal(err)
	}
	if err := la.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	select {
	case <-la.Lost():
		t.Fatal("Release closed Lost")
	case <-time.After(100 * time.Millisecond):
	}
	lb := mustLock(t, b, "prod", "run-b")
	if o, _ := a.Owner(bg, "prod"); o == nil || o.RunID != "run-b" {
		t.Fatalf("Owner after the handover = %+v", o)
	}
	// The released lock fences its writes.
	_, err = a.Create(bg, la, "run-a", []byte("{}"), runstate.RunFiles{})
	wantFenced(t, err, "no longer holds the lock of cluster prod")
	if _, err := b.Create(bg, lb, "run-b", []byte("{}"), runstate.RunFiles{}); err != nil {
		t.Fatal(err)
	}
}

// A holder that dies without releasing (its client closed, no revoke)
// keeps the lock until the TTL, then loses it, and its writes are refused.
func TestHolderCrash(t *testing.T) {
	p := startEtcd(t, etcdOpts{})
	a, b := open(t, p, Config{}), open(t, p, Config{})
	la, err := a.Lock(bg, "prod", info("run-a"))
	if err != nil {
		t.Fatal(err)
	}
	rev, err := a.Create(bg, la, "run-a", []byte("{}"), runstate.RunFiles{Plan: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	_ = a.Close()
	t0 := time.Now()
	var le *runstate.LockedError
	if _, err := b.Lock(bg, "prod", info("run-b")); !errors.As(err, &le) {
		t.Fatalf("Lock right after the holder died: %v, want a LockedError (the lease is alive)", err)
	}
	var lb runstate.SharedLock
	for lb == nil {
		if time.Since(t0) > 6*time.Second {
			t.Fatal("the dead holder's lock was not free 6 s after it died (TTL 2 s)")
		}
		time.Sleep(200 * time.Millisecond)
		lb, err = b.Lock(bg, "prod", info("run-b"))
		if err != nil && !errors.As(err, &le) {
			t.Fatal(err)
		}
	}
	defer lb.Release()
	t.Logf("lock free %v after the holder died", time.Since(t0).Round(100*time.Millisecond))
	select {
	case <-la.Lost():
	default:
		t.Fatal("the dead holder's Lost is not closed")
	}
	_, err = a.Save(bg, la, "run-a", rev, []byte(`{"late":true}`), nil)
	wantFenced(t, err, "no longer holds the lock of cluster prod")
	// The store itself refuses a write of the old holder (its lease is
	// gone), whatever the client believes.
	_, err = b.Save(bg, unaware(la, b), "run-a", rev, []byte(`{"late":true}`), nil)
	wantFenced(t, err, "no longer holds the lock of cluster prod")
	if run, _ := b.Load(bg, "run-a"); string(run.State) != "{}" {
		t.Fatalf("a fenced write landed: %s", run.State)
	}
}

func TestBreak(t *testing.T) {
	p := startEtcd(t, etcdOpts{})
	a, b := open(t, p, Config{LockTTL: 10 * time.Second}), open(t, p, Config{})
	la := mustLock(t, a, "prod", "run-a")
	rev, err := a.Create(bg, la, "run-a", []byte("{}"), runstate.RunFiles{Plan: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	stale := unaware(la, a)

	holder, err := b.Break(bg, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if holder == nil || holder.RunID != "run-a" || holder.PID != 4242 {
		t.Fatalf("Break returned %+v, want run-a's holder", holder)
	}
	t0 := time.Now()
	select {
	case <-la.Lost():
		t.Logf("Lost closed %v after Break", time.Since(t0).Round(time.Millisecond))
	case <-time.After(time.Second):
		t.Fatal("the holder's Lost did not close within 1 s of Break")
	}
	_, err = a.Save(bg, la, "run-a", rev, []byte(`{"late":true}`), nil)
	wantFenced(t, err, "lease expired or broken by unlock --force")
	// The transaction's own fencing, for a holder that has not noticed.
	_, err = a.Save(bg, stale, "run-a", rev, []byte(`{"late":true}`), []byte("line\n"))
	wantFenced(t, err, "no longer holds the lock of cluster prod")
	err = a.Append(bg, stale, "run-a", []byte("line\n"))
	wantFenced(t, err, "no longer holds the lock of cluster prod")
	if j, _ := b.Journal(bg, "run-a"); len(j) != 0 {
		t.Fatalf("a fenced journal chunk landed: %q", j)
	}

	if o, err := b.Owner(bg, "prod"); err != nil || o != nil {
		t.Fatalf("Owner after Break = %+v, %v", o, err)
	}
	if o, err := b.Break(bg, "prod"); err != nil || o != nil {
		t.Fatalf("Break of a free lock = %+v, %v", o, err)
	}
	lb := mustLock(t, b, "prod", "run-b")
	if _, err := b.Save(bg, lb, "run-a", rev, []byte(`{"taken":true}`), nil); err != nil {
		t.Fatalf("the new holder's Save: %v", err)
	}
	// The broken holder's Release is harmless to the new holder.
	_ = la.Release()
	if o, _ := b.Owner(bg, "prod"); o == nil || o.RunID != "run-b" {
		t.Fatalf("Owner after the old holder's Release = %+v", o)
	}
}

func TestJournalOrder(t *testing.T) {
	p := startEtcd(t, etcdOpts{})
	s := open(t, p, Config{Prefix: "/j"})
	l := mustLock(t, s, "prod", "r")
	var want bytes.Buffer
	line := func(i int) []byte { return []byte(fmt.Sprintf("{\"n\":%d}\n", i)) }
	// Journal lines of a session refused before the run had a checkpoint.
	for i := 0; i < 2; i++ {
		if err := s.Append(bg, l, "r", line(i)); err != nil {
			t.Fatal(err)
		}
		want.Write(line(i))
	}
	rev, err := s.Create(bg, l, "r", []byte("{}"), runstate.RunFiles{Plan: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 60; i++ {
		switch {
		case i%7 == 0: // a checkpoint without journal lines
			rev, err = s.Save(bg, l, "r", rev, []byte(fmt.Sprintf(`{"i":%d}`, i)), nil)
			if err != nil {
				t.Fatal(err)
			}
			continue
		case i%3 == 0, i%5 == 0: // Appends, sometimes several at one checkpoint
			err = s.Append(bg, l, "r", line(i))
		default:
			rev, err = s.Save(bg, l, "r", rev, []byte(fmt.Sprintf(`{"i":%d}`, i)), line(i))
		}
		if err != nil {
			t.Fatal(err)
		}
		want.Write(line(i))
	}
	got, err := s.Journal(bg, "r")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("journal out of order:\n got %q\nwant %q", got, want.Bytes())
	}
	// Key order is write order: sorting the chunks by key sorts them by
	// the revision that wrote them.
	resp, err := s.cli.Get(bg, s.runKey("r", "journal/"), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != bytes.Count(want.Bytes(), []byte("\n")) {
		t.Fatalf("%d chunks, want one per line", len(resp.Kvs))
	}
	for i := 1; i < len(resp.Kvs); i++ {
		if resp.Kvs[i].CreateRevision <= resp.Kvs[i-1].CreateRevision {
			t.Fatalf("chunk %s sorts after %s but was written before it", resp.Kvs[i].Key, resp.Kvs[i-1].Key)
		}
	}
}

func TestRunsSorted(t *testing.T) {
	p := startEtcd(t, etcdOpts{})
	s := open(t, p, Config{Prefix: "team-a"})
	other := open(t, p, Config{Prefix: "team-ab"})
	l := mustLock(t, s, "prod", "x")
	ids := []string{"20260102T100000Z-beef", "20260101T090000Z-0a0a", "20260103T080000Z-1234", "20260101T090000Z-0001"}
	for _, id := range ids {
		rev, err := s.Create(bg, l, id, []byte("{}"), runstate.RunFiles{Plan: []byte("p")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Save(bg, l, id, rev, []byte("{}"), []byte("line\n")); err != nil {
			t.Fatal(err)
		}
	}
	// Journal lines without a checkpoint are not a run.
	if err := s.Append(bg, l, "20250101T000000Z-dead", []byte("refused\n")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Runs(bg)
	if err != nil {
		t.Fatal(err)
	}
	want := "20260101T090000Z-0001 20260101T090000Z-0a0a 20260102T100000Z-beef 20260103T080000Z-1234"
	if strings.Join(got, " ") != want {
		t.Fatalf("Runs = %v, want %s", got, want)
	}
	if got, err := other.Runs(bg); err != nil || len(got) != 0 {
		t.Fatalf("a store under another prefix lists %v, %v", got, err)
	}
}

// A store killed with SIGKILL fails writes within the caller's deadline;
// restarted on its data dir, it has every checkpoint written before.
func TestStoreKilledAndRestarted(t *testing.T) {
	p := startEtcd(t, etcdOpts{})
	s := open(t, p, Config{LockTTL: 2 * time.Second})
	l := mustLock(t, s, "prod", "r")
	rev, err := s.Create(bg, l, "r", []byte(`{"n":0}`), runstate.RunFiles{Plan: []byte("plan"), Inventory: []byte("inv")})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 20; i++ {
		if rev, err = s.Save(bg, l, "r", rev, []byte(fmt.Sprintf(`{"n":%d}`, i)), []byte(fmt.Sprintf("%d\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	p.Kill()
	ctx, cancel := context.WithTimeout(bg, time.Second)
	t0 := time.Now()
	_, err = s.Save(ctx, l, "r", rev, []byte(`{"n":21}`), nil)
	cancel()
	took := time.Since(t0)
	if err == nil || errors.As(err, new(*runstate.FencedError)) {
		t.Fatalf("Save to a dead store: %v, want a network error", err)
	}
	if took > 3*time.Second {
		t.Fatalf("Save to a dead store took %v with a 1 s deadline", took)
	}
	contains(t, err, s.Where(), "saving the checkpoint of run r", "hint:")
	t.Logf("Save to the dead store failed after %v: %v", took.Round(time.Millisecond), err)
	_, err = Open(bg, Config{Endpoints: []string{p.Endpoint()}, DialTimeout: 500 * time.Millisecond})
	contains(t, err, "state store etcd://"+p.Endpoint()+"/etcd-rescue: no answer from "+p.Endpoint(), "connection refused", "hint: is the store's etcd running")

	// A lease that cannot be kept alive for its TTL is a lock lost.
	select {
	case <-l.Lost():
		t.Logf("Lost closed %v after the store died (TTL 2 s)", time.Since(t0).Round(100*time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("Lost not closed 5 s after the store died (TTL 2 s)")
	}

	p.Restart(t)
	p.WaitHealthy(t)
	s2 := open(t, p, Config{})
	// The store came back; the lock did not.
	_, err = s.Save(bg, l, "r", rev, []byte(`{"n":21}`), nil)
	wantFenced(t, err, "no longer holds the lock of cluster prod")
	run, err := s2.Load(bg, "r")
	if err != nil {
		t.Fatal(err)
	}
	if string(run.State) != `{"n":20}` || run.Rev != rev || string(run.Files.Plan) != "plan" || string(run.Files.Inventory) != "inv" {
		t.Fatalf("after the restart: %s at %d (want {\"n\":20} at %d), files %+v", run.State, run.Rev, rev, run.Files)
	}
	j, err := s2.Journal(bg, "r")
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	if string(j) != want.String() {
		t.Fatalf("journal after the restart = %q", j)
	}
}
