package engine

import (
	"context"
	"testing"
	"time"
)

// Waiters get a freed slot best rank first, whatever order they came in;
// one that gives up leaves the queue.
func TestSlotsGrantByRank(t *testing.T) {
	s := newSlots(1)
	ctx := testCtx(t)
	if !s.acquire(ctx, nil, slotRank{}) {
		t.Fatal("first acquire")
	}
	ranks := []slotRank{{behind: time.Minute, ord: 5}, {behind: time.Hour, ord: 9}, {behind: time.Minute, ord: 2}, {behind: time.Minute, ord: 2, host: "a"}}
	got := make(chan int, len(ranks))
	for i, r := range ranks {
		go func() {
			if s.acquire(ctx, nil, r) {
				got <- i
				s.release()
			}
		}()
	}
	gaveUp, cancel := context.WithCancel(ctx)
	quit := make(chan bool)
	go func() { quit <- s.acquire(gaveUp, nil, slotRank{behind: 2 * time.Hour}) }()
	for {
		s.mu.Lock()
		n := len(s.waiting)
		s.mu.Unlock()
		if n == len(ranks)+1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if <-quit {
		t.Fatal("a cancelled acquire got a slot")
	}
	s.release()
	want := []int{1, 2, 3, 0} // an hour behind; then plan order, then host
	for _, w := range want {
		if g := <-got; g != w {
			t.Fatalf("granted %d, want %d (order %v)", g, w, want)
		}
	}
}

// The transfer chain of the total-loss example ranks above the stops, so
// the ships start first when slots are short.
func TestRanksOfRestoreExample(t *testing.T) {
	c, fs := Load("../examples/restore-all-from-snapshot.yaml", "")
	if c == nil {
		t.Fatal(fs)
	}
	r := ranks(c)
	ship, stop, record := r[c.ByID["ship"]], r[c.ByID["stop-apiserver"]], r[c.ByID["record"]]
	if !ship.before(stop) || !ship.before(record) {
		t.Errorf("ship %+v should go before stop-apiserver %+v and record %+v", ship, stop, record)
	}
}
