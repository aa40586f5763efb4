package engine

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"

	"github.com/etcd-rescue/etcd-rescue/internal/access"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// etcdAdapter adapts etcdapi to steps.Etcd.
type etcdAdapter struct {
	c *etcdapi.Client
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
		cfg.Dialer = func(ctx context.Context, addr string) (net.Conn, error) {
			host, ok := route[addr]
			if !ok {
				return nil, fmt.Errorf("ssh-tunnel: %s is no member's client URL", addr)
			}
			sc, err := pool.Get(host)
			if err != nil {
				return nil, err
			}
			return sc.DialContext(ctx, "tcp", addr)
		}
	}
	api, err := etcdapi.New(cfg)
	if err != nil {
		return nil, err
	}
	return &etcdAdapter{c: api}, nil
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
		return steps.EndpointStatus{}, err
	}
	return steps.EndpointStatus{MemberID: s.MemberID, Leader: s.Leader, Revision: s.Revision, RaftIndex: s.RaftIndex, IsLearner: s.IsLearner, Version: s.Version}, nil
}

func (a *etcdAdapter) Health(ctx context.Context, clientURL string) error {
	_, err := a.c.Health(ctx, clientURL)
	return err
}

func (a *etcdAdapter) HashKV(ctx context.Context, clientURL string, rev int64) (uint32, int64, error) {
	r, err := a.c.HashKV(ctx, clientURL, rev)
	return r.Hash, r.CompactRevision, err
}

func (a *etcdAdapter) SnapshotSave(ctx context.Context, clientURL string, w io.Writer) (string, int64, error) {
	i, err := a.c.SnapshotSave(ctx, clientURL, w)
	return i.SHA256, i.Size, err
}

func (a *etcdAdapter) IsRetryable(err error) bool { return etcdapi.IsRetryable(err) }
