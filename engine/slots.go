package engine

import (
	"context"
	"sort"
	"sync"
	"time"
)

// slots is the parallelism semaphore. When more step-hosts are ready than
// there are slots, the one with the longest chain of work still behind it
// goes first (critical path first), rather than whichever goroutine the Go
// scheduler happened to wake: with lanes, a long transfer that started
// late delays every step after it on its host. Ties go in plan order.
type slots struct {
	mu      sync.Mutex
	free    int
	waiting []*slotWaiter // best first
}

type slotWaiter struct {
	rank  slotRank
	grant chan struct{}
}

// slotRank orders waiters: more work behind first, then plan order, then host.
type slotRank struct {
	behind time.Duration
	ord    int
	host   string
}

func (a slotRank) before(b slotRank) bool {
	if a.behind != b.behind {
		return a.behind > b.behind
	}
	if a.ord != b.ord {
		return a.ord < b.ord
	}
	return a.host < b.host
}

func newSlots(n int) *slots { return &slots{free: n} }

// acquire takes a slot; false when ctx ends or stop closes first.
func (s *slots) acquire(ctx context.Context, stop <-chan struct{}, r slotRank) bool {
	s.mu.Lock()
	if s.free > 0 && len(s.waiting) == 0 {
		s.free--
		s.mu.Unlock()
		return true
	}
	w := &slotWaiter{rank: r, grant: make(chan struct{}, 1)}
	i := sort.Search(len(s.waiting), func(i int) bool { return r.before(s.waiting[i].rank) })
	s.waiting = append(s.waiting, nil)
	copy(s.waiting[i+1:], s.waiting[i:])
	s.waiting[i] = w
	s.mu.Unlock()
	select {
	case <-w.grant:
		return true
	case <-ctx.Done():
	case <-stop:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.waiting {
		if x == w {
			s.waiting = append(s.waiting[:i], s.waiting[i+1:]...)
			return false
		}
	}
	// Granted while giving up: pass the slot on.
	s.releaseLocked()
	return false
}

func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked()
}

func (s *slots) releaseLocked() {
	if len(s.waiting) > 0 {
		w := s.waiting[0]
		s.waiting = s.waiting[1:]
		w.grant <- struct{}{}
		return
	}
	s.free++
}

// ranks gives each node its rank for a slot: the longest chain of work
// from the node to the end of the plan, each step counted at its deadline
// (the only estimate of its length before it runs: a transfer counts more
// than a stop), then its place in the plan.
func ranks(c *Compiled) map[*Node]slotRank {
	dependents := map[*Node][]*Node{}
	for _, n := range c.Nodes {
		for _, d := range n.Needs {
			dependents[d] = append(dependents[d], n)
		}
	}
	memo := map[*Node]time.Duration{}
	var behind func(n *Node) time.Duration
	behind = func(n *Node) time.Duration {
		if v, ok := memo[n]; ok {
			return v
		}
		var most time.Duration
		for _, x := range dependents[n] {
			most = max(most, behind(x))
		}
		memo[n] = deadlineOf(n, nil).d + most
		return memo[n]
	}
	out := make(map[*Node]slotRank, len(c.Nodes))
	for i, n := range c.Nodes {
		out[n] = slotRank{behind: behind(n), ord: i}
	}
	return out
}
