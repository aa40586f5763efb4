package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// ErrNoVoter matches the error of a cluster RPC that has no endpoint left to
// go to: every endpoint of the client is a known learner.
var ErrNoVoter = errors.New("no voting member among the endpoints")

// learnerDesc is the refusal a learner gives to every RPC but Status,
// serializable Range and Snapshot (etcd 3.5: code Unavailable; 3.6 and
// later: FailedPrecondition).
var learnerDesc = rpctypes.ErrorDesc(rpctypes.ErrGRPCNotSupportedForLearner)

// IsLearnerRefusal reports whether err is a learner's "rpc not supported for
// learner".
func IsLearnerRefusal(err error) bool { return err != nil && etcdDesc(err) == learnerDesc }

// learnerSet is the endpoints known to be learners, by "host:port".
type learnerSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (l *learnerSet) set(addr string, learner bool) {
	if addr == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if learner {
		l.m[addr] = true
	} else {
		delete(l.m, addr)
	}
}

func (l *learnerSet) has(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[addr]
}

// noteMembers records the learners of a member list: a learner's client
// URLs are learners, a voter's are not (any more).
func (c *Client) noteMembers(list []Member) {
	for _, m := range list {
		for _, u := range m.ClientURLs {
			c.learners.set(hostPort(u), m.IsLearner)
		}
	}
}

// NoteLearner records what another source (a status read elsewhere, the
// facts of a session's start) knows of the member at endpoint: a learner is
// not sent cluster calls until a member list or its Status says it is a
// voter.
func (c *Client) NoteLearner(endpoint string, learner bool) {
	c.learners.set(hostPort(endpoint), learner)
}

// KnownLearners returns the configured endpoints known to be learners.
func (c *Client) KnownLearners() []string {
	var out []string
	for _, ep := range c.cfg.Endpoints {
		if c.learners.has(hostPort(ep)) {
			out = append(out, ep)
		}
	}
	return out
}

// hostPort is the "host:port" of a client URL (the default port of its
// scheme when it names none); a string that is no URL is returned as is.
func hostPort(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return endpoint
	}
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// dialedAddr is the address a connection was dialled at.
type dialedAddr string

func (a dialedAddr) Network() string { return "tcp" }
func (a dialedAddr) String() string  { return string(a) }

// rememberingConn reports the address it was dialled at as its remote
// address (an SSH channel has no meaningful one).
type rememberingConn struct {
	net.Conn
	addr dialedAddr
}

func (c rememberingConn) RemoteAddr() net.Addr { return c.addr }

func dialRemembering(d func(ctx context.Context, addr string) (net.Conn, error)) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := d(ctx, addr)
		if err != nil {
			return nil, err
		}
		return rememberingConn{conn, dialedAddr(addr)}, nil
	}
}

// votersClient returns a clientv3 client for the configured endpoints that
// are no known learner, and those endpoints.
func (c *Client) votersClient() (*clientv3.Client, []string, error) {
	var eps []string
	for _, ep := range c.cfg.Endpoints {
		if !c.learners.has(hostPort(ep)) {
			eps = append(eps, ep)
		}
	}
	switch {
	case len(eps) == 0:
		return nil, nil, fmt.Errorf("%w: %s known to be a learner, and a learner refuses cluster calls; ask a voting member", ErrNoVoter, c.endpointsText())
	case len(eps) == len(c.cfg.Endpoints):
		return c.cli, eps, nil
	}
	key := strings.Join(eps, ",")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, errors.New("etcd client closed")
	}
	if v, ok := c.voters[key]; ok {
		return v, eps, nil
	}
	v, err := newRaw(c.cfg, eps, c.tls)
	if err != nil {
		return nil, nil, err
	}
	c.voters[key] = v
	return v, eps, nil
}

// clusterCall sends a cluster RPC (membership, linearizable read) to the
// endpoints that are no known learner, each send bounded by the request
// timeout. A learner's refusal marks the endpoint that gave it, and the same
// call goes once more to the remaining endpoints: routing, not a retry,
// since a learner refuses before acting on the call.
func (c *Client) clusterCall(ctx context.Context, call func(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) error) error {
	for sent := 0; ; sent++ {
		cli, eps, err := c.votersClient()
		if errors.Is(err, ErrNoVoter) {
			// Every endpoint was a learner when last heard of: ask their
			// Status (learners answer it), which sees a promotion made
			// through another client.
			for _, ep := range c.cfg.Endpoints {
				_, _ = c.Status(ctx, ep)
			}
			cli, eps, err = c.votersClient()
		}
		if err != nil {
			return err
		}
		var p peer.Peer
		rctx, cancel := c.request(ctx)
		err = toErr(rctx, call(rctx, cli.ActiveConnection(), grpc.Peer(&p)))
		cancel()
		if !IsLearnerRefusal(err) || sent > 0 {
			return err
		}
		c.refusals.Add(1)
		if !c.learnRefusal(ctx, p.Addr, eps) {
			return err
		}
	}
}

// learnRefusal records the learner that refused a call, from the address
// the call went to or, when that names no endpoint (a direct connection to
// an endpoint given by host name reports an IP), by asking each endpoint's
// Status (which learners answer); it reports whether a learner was learned.
func (c *Client) learnRefusal(ctx context.Context, from net.Addr, eps []string) bool {
	if from != nil {
		addr := from.String()
		for _, ep := range eps {
			if hostPort(ep) == addr {
				c.learners.set(addr, true)
				return true
			}
		}
	}
	learned := false
	for _, ep := range eps {
		if st, err := c.Status(ctx, ep); err == nil && st.IsLearner {
			learned = true
		}
	}
	return learned
}

// toErr gives a gRPC error of a raw call the form clientv3 gives it: etcd's
// typed error, or the context's error when the context ended.
func toErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if code := status.Code(err); (code == codes.DeadlineExceeded || code == codes.Canceled) && ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return rpctypes.Error(err)
}
