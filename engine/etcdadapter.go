package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/internal/access"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// etcdAdapter adapts etcdapi to steps.Etcd.
type etcdAdapter struct {
	c    *etcdapi.Client
	seed sync.Once
}

// seedLearners tells the client, once, which members answered as learners
// when the session started, so that even its first cluster call goes to a
// voter (a resume killed during member-promote finds the learner there).
// Later member lists and statuses keep it current.
func (a *etcdAdapter) seedLearners(l *steps.Live) {
	a.seed.Do(func() {
		if l == nil {
			return
		}
		for _, m := range l.Members {
			if m.API == steps.LiveAnswered && m.Learner {
				a.c.NoteLearner(m.ClientURL, true)
			}
		}
	})
}

func newEtcdAdapter(p *plans.Plan, pool *sshx.Pool) (*etcdAdapter, error) {
	c := p.Cluster
	cfg := etcdapi.Config{}
	// A member's client URL is dialled through the SSH connection of the
	// host that runs it: the operator needs no route to port 2379.
	route := map[string]string{} // "host:port" of a client URL -> plan host
	for _, m := range c.Members {
		cfg.Endpoints = append(cfg.Endpoints, m.ClientURL)
		if u, err := url.Parse(m.ClientURL); err == nil {
			route[u.Host] = m.Host
			if u.Port() == "" {
				route[net.JoinHostPort(u.Hostname(), defaultPort(u.Scheme))] = m.Host
			}
		}
	}
	if c.TLS != nil {
		cfg.TLS = access.TLSFiles(p)
	}
	if c.ClientAccess != "direct" {
		var relays []string // member hosts, in plan order
		for _, m := range c.Members {
			if !containsString(relays, m.Host) {
				relays = append(relays, m.Host)
			}
		}
		cfg.Dialer = func(ctx context.Context, addr string) (net.Conn, error) {
			host, ok := route[addr]
			if !ok {
				// Not a client URL of cluster.members: a member the plan
				// removes, on a host that is gone. Ask from a host that
				// is up, so that "nothing listens" can be told from
				// "could not ask".
				return relayDial(ctx, pool, relays, addr)
			}
			return dialThrough(ctx, pool, host, addr)
		}
	}
	api, err := etcdapi.New(cfg)
	if err != nil {
		return nil, err
	}
	return &etcdAdapter{c: api}, nil
}

// dialThrough dials addr through the SSH connection of host (the
// ssh-tunnel of cluster.clientAccess): the operator needs no route to the
// port. A failure of the SSH connection itself is a *hopError (the
// question never reached the service); a refusal from host's side is the
// service's answer.
func dialThrough(ctx context.Context, pool *sshx.Pool, host, addr string) (net.Conn, error) {
	sc, err := pool.Get(host)
	if err != nil {
		return nil, &hopError{host: host, err: err}
	}
	conn, err := sc.DialContext(ctx, "tcp", addr)
	var oce *ssh.OpenChannelError
	if err != nil && !errors.As(err, &oce) && ctx.Err() == nil {
		return nil, &hopError{host: host, err: err}
	}
	return conn, err
}

// relayDial dials addr through the first of relays whose SSH connection
// works; the answer of a relay that was reached (connected, refused, no
// route from there) is final.
func relayDial(ctx context.Context, pool *sshx.Pool, relays []string, addr string) (net.Conn, error) {
	var last error
	for _, h := range relays {
		sc, err := pool.Get(h)
		if err != nil {
			last = err
			continue
		}
		conn, err := sc.DialContext(ctx, "tcp", addr)
		var oce *ssh.OpenChannelError
		switch {
		case err == nil:
			return conn, nil
		case errors.As(err, &oce):
			return nil, fmt.Errorf("asked from %s: %w", h, err)
		case ctx.Err() != nil:
			return nil, err
		}
		last = err
	}
	return nil, fmt.Errorf("ssh-tunnel: %s is no member's client URL, and no host could relay the question: %w", addr, last)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// liveErr marks an error of Health or Status as steps.ErrNotListening
// (asked: nothing accepts connections) or steps.ErrCouldNotAsk, keeping
// its text and chain.
type liveErr struct {
	err  error
	kind error
}

func (e *liveErr) Error() string   { return e.err.Error() }
func (e *liveErr) Unwrap() []error { return []error{e.err, e.kind} }

// The SSH hop of the tunnel comes first: its port refused is no answer of
// etcd, and a host key, login or sudo failure there is "could not ask",
// never "down". A host unreachable over the network also matches
// steps.ErrHostUnreachable.
func classifyLive(err error) error {
	var hop *hopError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &hop):
		switch r := facts.ReachOf(hop.err); {
		case r.Network():
			return &liveErr{err, errors.Join(steps.ErrHostUnreachable, steps.ErrCouldNotAsk)}
		case r.Trust():
			return &liveErr{err, errors.Join(steps.ErrNotTrusted, steps.ErrCouldNotAsk)}
		}
		return &liveErr{err, steps.ErrCouldNotAsk}
	case isRefused(err):
		return &liveErr{err, steps.ErrNotListening}
	case farSideUnreachable(err):
		return &liveErr{err, errors.Join(steps.ErrHostUnreachable, steps.ErrCouldNotAsk)}
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return &liveErr{err, errors.Join(steps.ErrHostUnreachable, steps.ErrCouldNotAsk)}
	case etcdapi.IsUnreachable(err), errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrUnreachable):
		return &liveErr{err, steps.ErrCouldNotAsk}
	}
	return err // an answer (unhealthy, a refusal): steps.ProbeClass says could not ask
}

// hopError is the SSH connection of a tunnel failing before the question
// reached the member (connect, host key, login).
type hopError struct {
	host string
	err  error
}

func (e *hopError) Error() string {
	return fmt.Sprintf("ssh-tunnel through host %s (%s): %v", e.host, facts.ReachOf(e.err), e.err)
}
func (e *hopError) Unwrap() error { return e.err }

// isRefused reports whether nothing accepted the connection to a client
// URL: refused directly, or refused on the far side of the SSH tunnel.
func isRefused(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var oce *ssh.OpenChannelError
	return errors.As(err, &oce) && oce.Reason == ssh.ConnectionFailed && strings.Contains(strings.ToLower(oce.Message), "refused")
}

// farSideUnreachable reports whether the host at the far side of the SSH
// tunnel found no route to the client URL (a relayed question about a
// member whose machine is gone).
func farSideUnreachable(err error) bool {
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) || oce.Reason != ssh.ConnectionFailed {
		return false
	}
	m := strings.ToLower(oce.Message)
	return strings.Contains(m, "no route") || strings.Contains(m, "unreachable") || strings.Contains(m, "timed out")
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

func toStepsMembers(in []etcdapi.Member) []steps.Member {
	out := make([]steps.Member, len(in))
	for i, m := range in {
		out[i] = steps.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner}
	}
	return out
}

func (a *etcdAdapter) MemberList(ctx context.Context, serializable bool) ([]steps.Member, error) {
	l, err := a.c.MemberList(ctx, serializable)
	return toStepsMembers(l), err
}

func (a *etcdAdapter) MemberAdd(ctx context.Context, peerURLs []string, learner bool) (steps.Member, error) {
	m, _, err := a.c.MemberAdd(ctx, peerURLs, learner)
	if err != nil {
		return steps.Member{}, err
	}
	return toStepsMembers([]etcdapi.Member{m})[0], nil
}

func (a *etcdAdapter) MemberRemove(ctx context.Context, id uint64) error {
	_, err := a.c.MemberRemove(ctx, id)
	return err
}

func (a *etcdAdapter) MemberUpdate(ctx context.Context, id uint64, peerURLs []string) error {
	_, err := a.c.MemberUpdate(ctx, id, peerURLs)
	return err
}

func (a *etcdAdapter) MemberPromote(ctx context.Context, id uint64) error {
	_, err := a.c.MemberPromote(ctx, id)
	return err
}

func (a *etcdAdapter) Status(ctx context.Context, clientURL string) (steps.EndpointStatus, error) {
	s, err := a.c.Status(ctx, clientURL)
	if err != nil {
		return steps.EndpointStatus{}, classifyLive(err)
	}
	return steps.EndpointStatus{MemberID: s.MemberID, Leader: s.Leader, Revision: s.Revision, RaftIndex: s.RaftIndex, IsLearner: s.IsLearner, Version: s.Version}, nil
}

func (a *etcdAdapter) Health(ctx context.Context, clientURL string) error {
	_, err := a.c.Health(ctx, clientURL)
	return classifyLive(err)
}

func (a *etcdAdapter) HashKV(ctx context.Context, clientURL string, rev int64) (uint32, int64, error) {
	r, err := a.c.HashKV(ctx, clientURL, rev)
	return r.Hash, r.CompactRevision, err
}

func (a *etcdAdapter) SnapshotSave(ctx context.Context, clientURL string, w io.Writer) (string, int64, error) {
	i, err := a.c.SnapshotSave(ctx, clientURL, w)
	return i.SHA256, i.Size, err
}

// PeerLinks: see [steps.PeerLinkReader]. The error is classified like
// Status's: the same route, so the same "could not ask" and "nothing
// listens".
func (a *etcdAdapter) PeerLinks(ctx context.Context, clientURL string) (steps.PeerLinks, error) {
	pl, err := a.c.PeerLinks(ctx, clientURL)
	if err != nil {
		return steps.PeerLinks{}, classifyLive(err)
	}
	return steps.PeerLinks{Local: pl.Local, Active: pl.Active}, nil
}

func (a *etcdAdapter) IsRetryable(err error) bool { return etcdapi.IsRetryable(err) }

// IsTransientRead: see [steps.TransientReads]. A host that is not trusted
// (host key, login) stays that way: asking again will not help.
func (a *etcdAdapter) IsTransientRead(err error) bool {
	return !errors.Is(err, steps.ErrNotTrusted) && etcdapi.IsTransientRead(err)
}
