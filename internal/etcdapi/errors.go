package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors that callers branch on. The errors returned wrap both these and etcd's
// own, so errors.Is works with either.
var (
	// ErrLearnerNotReady: the learner has not caught up with the leader yet; poll
	// MemberPromote until it succeeds.
	ErrLearnerNotReady = errors.New("learner not yet in sync with the leader")
	// ErrMemberNotFound: no member has that ID.
	ErrMemberNotFound = errors.New("member not found")
	// ErrMemberExists: a member with those peer URLs exists already (an earlier
	// add succeeded: look the member up by peer URL instead of adding it again).
	ErrMemberExists = errors.New("a member with these peer URLs exists already")
	// ErrMemberNotLearner: promote of a member that is already a voter.
	ErrMemberNotLearner = errors.New("member is not a learner")
	// ErrSnapshotCorrupt: a snapshot's sha256 trailer does not match its content.
	ErrSnapshotCorrupt = errors.New("snapshot integrity check failed")
)

var sentinels = []struct {
	etcd error
	ours error
}{
	{rpctypes.ErrMemberLearnerNotReady, ErrLearnerNotReady},
	{rpctypes.ErrMemberNotFound, ErrMemberNotFound},
	{rpctypes.ErrPeerURLExist, ErrMemberExists},
	// Same peer URLs added again within the same second give the same member ID.
	{rpctypes.ErrMemberExist, ErrMemberExists},
	{rpctypes.ErrMemberNotLearner, ErrMemberNotLearner},
}

// etcdDesc returns the server's error description ("etcdserver: ...") or "".
func etcdDesc(err error) string {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Error()
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Message()
	}
	return ""
}

func grpcCode(err error) codes.Code {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code()
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Code()
	}
	return codes.Unknown
}

// wrap gives err the context what, and our sentinel when etcd's error has one.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	desc := etcdDesc(err)
	for _, s := range sentinels {
		if desc != "" && desc == s.etcd.Error() {
			return fmt.Errorf("%s: %w: %w", what, s.ours, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// retryable are etcd's refusals given before a request is acted on.
var retryable = map[string]bool{
	rpctypes.ErrUnhealthy.Error():       true, // strict reconfig check after a member restart
	rpctypes.ErrNoLeader.Error():        true,
	rpctypes.ErrNotLeader.Error():       true,
	rpctypes.ErrLeaderChanged.Error():   true,
	rpctypes.ErrTooManyRequests.Error(): true,
	rpctypes.ErrStopped.Error():         true,
	rpctypes.ErrNotCapable.Error():      true,
	// A learner refuses what only voters serve, before acting on it; the
	// round-robin balancer sends the retry to another member. (A 3.5
	// server sends it as Unavailable, which the 3.6 client does not
	// recognise as the learner refusal it retries itself.)
	rpctypes.ErrorDesc(rpctypes.ErrGRPCNotSupportedForLearner): true,
}

// IsRetryable reports whether err is a transient refusal after which the same
// request may simply be sent again: "unhealthy cluster" (for ~5 s after a member
// restart), no leader / not leader / leader changed, too many requests, a
// stopping server, or a member that cannot be reached at all (gRPC Unavailable).
// Timeouts are not included: the request may have been applied.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if retryable[etcdDesc(err)] {
		return true
	}
	return grpcCode(err) == codes.Unavailable
}

// Backoff is an exponential backoff with jitter.
type Backoff struct {
	// Initial is the first wait (default 250 ms), doubled up to Max (default 2 s).
	Initial, Max time.Duration
	// Total bounds the time spent retrying (default 60 s); the context may end
	// it sooner.
	Total time.Duration
	// Notify, when set, is told of each failed attempt before the wait, so that
	// slow recoveries show progress.
	Notify func(attempt int, err error, wait time.Duration)
}

// DefaultBackoff is used for zero fields.
var DefaultBackoff = Backoff{Initial: 250 * time.Millisecond, Max: 2 * time.Second, Total: 60 * time.Second}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoff.Max
	}
	if b.Total <= 0 {
		b.Total = DefaultBackoff.Total
	}
	return b
}

// Retry calls fn until it succeeds, returns an error for which retry is false, or
// the backoff's total time or ctx runs out; it returns fn's last error (with the
// number of attempts when there were several). retry nil means [IsRetryable].
func Retry(ctx context.Context, b Backoff, retry func(error) bool, fn func(context.Context) error) error {
	b = b.withDefaults()
	if retry == nil {
		retry = IsRetryable
	}
	deadline := time.Now().Add(b.Total)
	wait := b.Initial
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || !retry(err) {
			return err
		}
		// Full jitter in [wait/2, wait].
		d := wait/2 + rand.N(wait/2+1)
		if time.Now().Add(d).After(deadline) {
			return fmt.Errorf("gave up after %d attempts in %s: %w", attempt, b.Total, err)
		}
		if b.Notify != nil {
			b.Notify(attempt, err, d)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("gave up after %d attempts (%w): %w", attempt, ctx.Err(), err)
		case <-t.C:
		}
		if wait *= 2; wait > b.Max {
			wait = b.Max
		}
	}
}
