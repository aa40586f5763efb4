package etcdapi

import (
	"context"
	"errors"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

type memberpb = pb.Member

// MemberList returns the members, sorted by name. serializable lets the member
// answer from its own state without a quorum: the way to read the membership of a
// cluster that has lost quorum (ask the survivor through [Client.At]). Like
// every cluster call it goes to voting members only (see the package doc).
func (c *Client) MemberList(ctx context.Context, serializable bool) ([]Member, error) {
	var resp *pb.MemberListResponse
	err := c.clusterCall(ctx, func(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) (err error) {
		resp, err = pb.NewClusterClient(conn).MemberList(ctx, &pb.MemberListRequest{Linearizable: !serializable}, opts...)
		return err
	})
	if err != nil {
		return nil, wrap(err, "etcd member list via %s", c.endpointsText())
	}
	return c.listed(resp.Members), nil
}

// listed converts a membership answer and learns its learners.
func (c *Client) listed(in []*memberpb) []Member {
	l := members(in)
	c.noteMembers(l)
	return l
}

// MemberAdd adds a member (as a learner when learner is true) and returns it with
// the full membership after the change (from which ETCD_INITIAL_CLUSTER is built).
// One attempt: a transient refusal ([IsRetryable]) is returned for the caller
// to poll. An error matching [ErrMemberExists] means a member with those peer
// URLs exists already.
func (c *Client) MemberAdd(ctx context.Context, peerURLs []string, learner bool) (Member, []Member, error) {
	var resp *pb.MemberAddResponse
	err := c.clusterCall(ctx, func(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) (err error) {
		resp, err = pb.NewClusterClient(conn).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: peerURLs, IsLearner: learner}, opts...)
		return err
	})
	kind := "member"
	if learner {
		kind = "learner"
	}
	if err != nil {
		return Member{}, nil, wrap(err, "etcd member add (%s, peer URLs %s)", kind, strings.Join(peerURLs, ","))
	}
	return member(resp.Member), c.listed(resp.Members), nil
}

// MemberRemove removes member id and returns the membership after the change
// (one attempt, like every call of this package).
func (c *Client) MemberRemove(ctx context.Context, id uint64) ([]Member, error) {
	var resp *pb.MemberRemoveResponse
	err := c.clusterCall(ctx, func(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) (err error) {
		resp, err = pb.NewClusterClient(conn).MemberRemove(ctx, &pb.MemberRemoveRequest{ID: id}, opts...)
		return err
	})
	if err != nil {
		return nil, wrap(err, "etcd member remove %s", FormatID(id))
	}
	return c.listed(resp.Members), nil
}

// MemberUpdate sets the peer URLs of member id and returns the membership after
// the change.
func (c *Client) MemberUpdate(ctx context.Context, id uint64, peerURLs []string) ([]Member, error) {
	var resp *pb.MemberUpdateResponse
	err := c.clusterCall(ctx, func(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) (err error) {
		resp, err = pb.NewClusterClient(conn).MemberUpdate(ctx, &pb.MemberUpdateRequest{ID: id, PeerURLs: peerURLs}, opts...)
		return err
	})
	if err != nil {
		return nil, wrap(err, "etcd member update %s (peer URLs %s)", FormatID(id), strings.Join(peerURLs, ","))
	}
	return c.listed(resp.Members), nil
}

// MemberPromote makes learner id a voting member and returns the membership after
// the change. While the learner has not caught up it fails at once with an error
// matching [ErrLearnerNotReady]: callers poll within their deadline
// ([IsLearnerNotReady]).
func (c *Client) MemberPromote(ctx context.Context, id uint64) ([]Member, error) {
	var resp *pb.MemberPromoteResponse
	err := c.clusterCall(ctx, func(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) (err error) {
		resp, err = pb.NewClusterClient(conn).MemberPromote(ctx, &pb.MemberPromoteRequest{ID: id}, opts...)
		return err
	})
	if err != nil {
		return nil, wrap(err, "etcd member promote %s", FormatID(id))
	}
	return c.listed(resp.Members), nil
}

// IsLearnerNotReady reports whether err says the learner is not in sync yet
// (FailedPrecondition), or is a transient refusal or an unreachable member:
// the predicate for polling MemberPromote.
func IsLearnerNotReady(err error) bool {
	return errors.Is(err, ErrLearnerNotReady) || Classify(err) != Permanent
}

func (c *Client) endpointsText() string { return strings.Join(c.cfg.Endpoints, ",") }
