package etcdapi

import (
	"context"
	"errors"
	"fmt"

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
	// Not the learner refusal ("rpc not supported for learner"): the
	// client routes around it (see the package doc), and sending the same
	// call to the same learner again would be refused again. It is
	// Permanent.
}

// Class is how a failed call may be followed up. The client makes one attempt
// per call; what to do next is the caller's: a step polls a transient refusal
// within its deadline, the engine's retries: repeat a failed step.
type Class int

const (
	// Permanent: etcd answered and refused for good (no such member, already a
	// voter, bad request), or the outcome is unknown (a timeout after the
	// request may have been applied). Repeating the same request will not help.
	Permanent Class = iota
	// Retryable: etcd answered with a transient refusal given before the request
	// was acted on: "unhealthy cluster" (for ~5 s after a member restarts, and
	// for as long as a voting member is down), no leader, leader changed, too
	// many requests, a stopping server. Sending the same request again is safe.
	Retryable
	// Unreachable: the member could not be asked at all (connection refused,
	// no route, TLS handshake failed, gRPC Unavailable): nothing is known of
	// its state. Kept apart from an answer such as "unhealthy", which says the
	// member was asked and is down.
	Unreachable
)

func (c Class) String() string {
	switch c {
	case Retryable:
		return "retryable"
	case Unreachable:
		return "unreachable"
	}
	return "permanent"
}

// ErrUnreachable matches errors of a member that could not be asked at all
// (see [Unreachable]).
var ErrUnreachable = errors.New("etcd member unreachable")

// Classify sorts err into [Permanent], [Retryable] or [Unreachable]. nil is
// Permanent (there is nothing to retry).
func Classify(err error) Class {
	switch {
	case err == nil, IsLearnerRefusal(err):
		// A 3.5 learner sends its refusal as Unavailable: it was asked.
		return Permanent
	case retryable[etcdDesc(err)]:
		return Retryable
	case errors.Is(err, ErrUnreachable), grpcCode(err) == codes.Unavailable:
		return Unreachable
	}
	return Permanent
}

// IsRetryable reports whether err is a transient refusal after which the same
// request may simply be sent again ([Retryable]). Timeouts are not included:
// the request may have been applied.
func IsRetryable(err error) bool { return Classify(err) == Retryable }

// IsUnreachable reports whether the member could not be asked at all
// ([Unreachable]).
func IsUnreachable(err error) bool { return Classify(err) == Unreachable }

// transientRead are etcd's answers to a read that say nothing about the
// data: the request did not complete in time (no quorum to confirm a
// linearizable read while a member is cut off or restarting).
var transientRead = map[string]bool{
	rpctypes.ErrTimeout.Error():                    true,
	rpctypes.ErrTimeoutDueToLeaderFail.Error():     true,
	rpctypes.ErrTimeoutDueToConnectionLost.Error(): true,
}

// IsTransientRead reports whether a failed READ (a member list, a status)
// may simply be asked again: a transient refusal, a member that could not
// be reached, or a request that timed out. A read changes nothing, so what
// [IsRetryable] keeps apart for writes (the outcome of a timed-out write is
// unknown) is safe here. A learner's refusal is not: the client routes it.
func IsTransientRead(err error) bool {
	if err == nil || IsLearnerRefusal(err) {
		return false
	}
	switch Classify(err) {
	case Retryable, Unreachable:
		return true
	}
	return transientRead[etcdDesc(err)] || grpcCode(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded)
}
