package steps

import (
	"context"
	"time"
)

// Waits on the critical path of a recovery (a member coming up, a leader,
// a learner in sync, a promote etcd accepts, the end of etcd's "unhealthy
// cluster" window) notice the state within 100 ms of it becoming true:
// they ask every 50 ms for the first two seconds, when most waits end,
// then every 100 ms. No wait pauses longer than 100 ms.
//
// What that costs etcd: an attempt is asked only after the previous one
// answered, so a wait makes at most 20 attempts a second, then 10. One
// attempt is one to three small RPCs per member it asks (wait-healthy:
// Status, then a linearizable Get and a Status; a promote: one
// MemberPromote, which etcd answers from the leader's memory while the
// learner is not in sync; a refused membership change: one refused call).
// A member that is down answers from the client's own TCP dial, which is
// refused at once.
const (
	fastPause = 50 * time.Millisecond
	slowPause = 100 * time.Millisecond
	fastFor   = 2 * time.Second
	// attemptTimeout bounds one attempt of a wait, so that a call that
	// hangs (a member that accepts connections but does not serve yet)
	// costs one second, not the whole per-call timeout of the client.
	attemptTimeout = time.Second
	// retryLogEvery: a wait that sees the same answer again says so at
	// most once a second; a new answer is logged at once.
	retryLogEvery = time.Second
)

// clock is the time source of the waits; tests replace it with one that
// moves only when a pause is taken, to count attempts without timing them.
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

var waitClock clock = realClock{}

// pauseAfter is the pause before the next attempt of a wait that began
// elapsed ago.
func pauseAfter(elapsed time.Duration) time.Duration {
	if elapsed < fastFor {
		return fastPause
	}
	return slowPause
}

// pacer paces the attempts of one wait and decides which retries are worth
// a log line.
type pacer struct {
	start   time.Time
	lastLog time.Time
	lastMsg string
}

func newPacer() *pacer { return &pacer{start: waitClock.Now()} }

func (p *pacer) elapsed() time.Duration { return waitClock.Now().Sub(p.start) }

// pause waits for the next attempt; it returns ctx's error if ctx ends
// first.
func (p *pacer) pause(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-waitClock.After(pauseAfter(p.elapsed())):
		return nil
	}
}

// worthLogging reports whether msg should be logged now: a new message at
// once, the same one again at most every retryLogEvery.
func (p *pacer) worthLogging(msg string) bool {
	now := waitClock.Now()
	if msg != p.lastMsg || now.Sub(p.lastLog) >= retryLogEvery {
		p.lastMsg, p.lastLog = msg, now
		return true
	}
	return false
}
