package etcdapi

import (
	"context"
	"errors"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type memberpb = pb.Member

// MemberList returns the members, sorted by name. serializable lets the member
// answer from its own state without a quorum: the way to read the membership of a
// cluster that has lost quorum (ask the survivor through [Client.At]).
func (c *Client) MemberList(ctx context.Context, serializable bool) ([]Member, error) {
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	ctx, cancel := c.request(ctx)
	defer cancel()
	resp, err := c.cli.MemberList(ctx, opts...)
	if err != nil {
		return nil, wrap(err, "etcd member list via %s", c.endpointsText())
	}
	return members(resp.Members), nil
}

// MemberAdd adds a member (as a learner when learner is true) and returns it with
// the full membership after the change (from which ETCD_INITIAL_CLUSTER is built).
// One attempt: a transient refusal ([IsRetryable]) is returned for the caller
// to poll. An error matching [ErrMemberExists] means a member with those peer
// URLs exists already.
func (c *Client) MemberAdd(ctx context.Context, peerURLs []string, learner bool) (Member, []Member, error) {
	ctx, cancel := c.request(ctx)
	defer cancel()
	var resp *clientv3.MemberAddResponse
	var err error
	if learner {
		resp, err = c.cli.MemberAddAsLearner(ctx, peerURLs)
	} else {
		resp, err = c.cli.MemberAdd(ctx, peerURLs)
	}
	kind := "member"
	if learner {
		kind = "learner"
	}
	if err != nil {
		return Member{}, nil, wrap(err, "etcd member add (%s, peer URLs %s)", kind, strings.Join(peerURLs, ","))
	}
	return member(resp.Member), members(resp.Members), nil
}

// MemberRemove removes member id and returns the membership after the change
// (one attempt, like every call of this package).
func (c *Client) MemberRemove(ctx context.Context, id uint64) ([]Member, error) {
	ctx, cancel := c.request(ctx)
	defer cancel()
	resp, err := c.cli.MemberRemove(ctx, id)
	if err != nil {
		return nil, wrap(err, "etcd member remove %s", FormatID(id))
	}
	return members(resp.Members), nil
}

// MemberUpdate sets the peer URLs of member id and returns the membership after
// the change.
func (c *Client) MemberUpdate(ctx context.Context, id uint64, peerURLs []string) ([]Member, error) {
	ctx, cancel := c.request(ctx)
	defer cancel()
	resp, err := c.cli.MemberUpdate(ctx, id, peerURLs)
	if err != nil {
		return nil, wrap(err, "etcd member update %s (peer URLs %s)", FormatID(id), strings.Join(peerURLs, ","))
	}
	return members(resp.Members), nil
}

// MemberPromote makes learner id a voting member and returns the membership after
// the change. While the learner has not caught up it fails at once with an error
// matching [ErrLearnerNotReady]: callers poll within their deadline
// ([IsLearnerNotReady]).
func (c *Client) MemberPromote(ctx context.Context, id uint64) ([]Member, error) {
	ctx, cancel := c.request(ctx)
	defer cancel()
	resp, err := c.cli.MemberPromote(ctx, id)
	if err != nil {
		return nil, wrap(err, "etcd member promote %s", FormatID(id))
	}
	return members(resp.Members), nil
}

// IsLearnerNotReady reports whether err says the learner is not in sync yet
// (FailedPrecondition), or is a transient refusal or an unreachable member (a
// 3.5 learner asked to promote itself answers Unavailable): the predicate for
// polling MemberPromote.
func IsLearnerNotReady(err error) bool {
	return errors.Is(err, ErrLearnerNotReady) || Classify(err) != Permanent
}

func (c *Client) endpointsText() string { return strings.Join(c.cfg.Endpoints, ",") }
