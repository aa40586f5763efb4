package steps

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// goneEtcd answers Health and Status after the given delays with the given
// errors (a delay of -1: the call hangs until its context ends).
type goneEtcd struct {
	Etcd
	hDelay, sDelay time.Duration
	herr, serr     error

	mu                      sync.Mutex
	healthEnded             bool
	statusBeforeHealthEnded bool
}

func wait(ctx context.Context, d time.Duration) error {
	if d < 0 {
		<-ctx.Done()
		return fmt.Errorf("%w: %w", ErrCouldNotAsk, ctx.Err())
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrCouldNotAsk, ctx.Err())
	}
}

func (g *goneEtcd) Health(ctx context.Context, url string) error {
	defer func() { g.mu.Lock(); g.healthEnded = true; g.mu.Unlock() }()
	if err := wait(ctx, g.hDelay); err != nil {
		return err
	}
	return g.herr
}

func (g *goneEtcd) Status(ctx context.Context, url string) (EndpointStatus, error) {
	g.mu.Lock()
	g.statusBeforeHealthEnded = !g.healthEnded
	g.mu.Unlock()
	if err := wait(ctx, g.sDelay); err != nil {
		return EndpointStatus{}, err
	}
	if g.serr != nil {
		return EndpointStatus{}, g.serr
	}
	return EndpointStatus{MemberID: 7, Revision: 10}, nil
}

var (
	errConnRefused = fmt.Errorf("connect: connection refused: %w", ErrNotListening)
	errNoQuorum    = errors.New("etcdserver: request timed out")
	errUntrusted   = fmt.Errorf("host key mismatch: %w", fmt.Errorf("%w: %w", ErrNotTrusted, ErrCouldNotAsk))
	errNoRoute     = fmt.Errorf("no route to host: %w", fmt.Errorf("%w: %w", ErrHostUnreachable, ErrCouldNotAsk))
)

// TestGoneAnswer: the verdict of member-remove's probe. Alive whenever
// either question answered; down only on "nothing listens"; everything
// else (timeouts, no route, an untrusted hop) is "could not ask", with the
// untrusted error kept so that mustBeGone refuses.
func TestGoneAnswer(t *testing.T) {
	st := &EndpointStatus{MemberID: 1}
	for _, c := range []struct {
		name       string
		herr, serr error
		st         *EndpointStatus
		want       string
		untrusted  bool
	}{
		{"both answer", nil, nil, st, AnswerHealthy, false},
		{"status only (no quorum)", errNoQuorum, nil, st, AnswerRunning, false},
		{"health refused", errConnRefused, nil, nil, LiveDown, false},
		{"status refused, health not awaited", nil, errConnRefused, nil, LiveDown, false},
		{"both time out", errNoQuorum, errNoQuorum, nil, LiveCouldNotAsk, false},
		{"no route is not down", errNoRoute, errNoRoute, nil, LiveCouldNotAsk, false},
		{"untrusted health", errUntrusted, errNoQuorum, nil, LiveCouldNotAsk, true},
		{"untrusted status", errNoQuorum, errUntrusted, nil, LiveCouldNotAsk, true},
	} {
		a := goneAnswer("http://x:2379", c.herr, c.serr, c.st)
		if a.State != c.want {
			t.Errorf("%s: state %s, want %s", c.name, a.State, c.want)
		}
		if got := errors.Is(a.Err, ErrNotTrusted); got != c.untrusted {
			t.Errorf("%s: untrusted %v, want %v (err %v)", c.name, got, c.untrusted, a.Err)
		}
		if a.State == LiveDown && a.Status != nil {
			t.Errorf("%s: a down member carries a status", c.name)
		}
	}
}

// TestAskGoneParallel: the two questions run at once, so a silent host
// costs one timeout, not two; a live member whose health hangs (no quorum)
// is still alive through its status; a refusal ends the probe without
// waiting for the other question.
func TestAskGoneParallel(t *testing.T) {
	// Silent host: both hang until the probe's context ends. Status is
	// asked while health still hangs (AskMember asked it only after).
	g := &goneEtcd{hDelay: -1, sDelay: -1}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	a := askGone(ctx, g, "http://x:2379")
	cancel()
	if a.State != LiveCouldNotAsk || a.Alive() {
		t.Fatalf("silent host: %v", a)
	}
	if !g.statusBeforeHealthEnded {
		t.Error("status was asked only after health ended")
	}
	// Alive without quorum: health hangs, status answers: alive, and
	// never down.
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	a = askGone(ctx, &goneEtcd{hDelay: -1, sDelay: 10 * time.Millisecond}, "http://x:2379")
	cancel()
	if !a.Alive() || a.State != AnswerRunning || a.Status == nil {
		t.Fatalf("alive without quorum: %v", a)
	}
	// Nothing listens (status refused at once, health would hang until
	// its context ends): down, and the probe returns before that context
	// has ended.
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a = askGone(ctx, &goneEtcd{hDelay: -1, serr: errConnRefused}, "http://x:2379")
	if a.State != LiveDown {
		t.Fatalf("refused: %v", a)
	}
	if ctx.Err() != nil {
		t.Error("a refused status did not end the probe before the timeout")
	}
}
