// Package etcdapi owns the project's access to etcd through its client API
// (go.etcd.io/etcd/client/v3): membership changes, per-member status, health,
// snapshots and hashes, with TLS from the plan and, for clientAccess: ssh-tunnel,
// a dialer that reaches members' client URLs through their host's SSH connection.
//
// Member IDs are uint64 everywhere (printed in hex, as etcdctl does). Calls that
// ask a question of one member ([Client.Status], [Client.Health],
// [Client.SnapshotSave], [Client.HashKV], and anything on [Client.At]) use a client
// pinned to that single endpoint, so the answer is that member's.
//
// Every call is one attempt, bounded by the request (or probe) timeout; the
// package retries nothing, and clientv3's own retry interceptor is turned
// off (MaxUnaryRetries 1), so a refused call is sent once. The one exception
// is routing, not retrying: cluster RPCs (membership, linearizable reads)
// never go to a member known to be a learner, which refuses them ("rpc not
// supported for learner" on 3.5, 3.6 and 3.7: a learner answers only Status,
// serializable Range and the Snapshot stream). The client learns learners
// from every member list and Status answer and from every learner refusal;
// a refusal from an endpoint not yet known as a learner sends the same call
// once more, to the remaining endpoints. Its errors are sorted by [Classify]: a transient
// refusal such as the "unhealthy cluster" answer given for about five seconds
// after any member restarts ([Retryable]), a member that could not be asked
// ([Unreachable]), or a final answer ([Permanent]). Polling belongs to the
// caller, which can journal each attempt and knows its deadline.
package etcdapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
)

// Defaults applied by [New].
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 15 * time.Second
	DefaultProbeTimeout   = 3 * time.Second
)

// TLSFiles are the PEM files for https client URLs.
type TLSFiles struct {
	// CA verifies the members' server certificates; empty means the system pool.
	CA string
	// Cert and Key are the client certificate, when the members require one.
	Cert, Key string
	// ServerName overrides the name checked in the servers' certificates (by
	// default the endpoint's host).
	ServerName string
}

// Config says how to reach the cluster.
type Config struct {
	// Endpoints are client URLs (http://host:2379, https://...).
	Endpoints []string
	// TLS is used for https endpoints.
	TLS *TLSFiles
	// Username and Password authenticate when etcd auth is on. The password never
	// appears in errors.
	Username, Password string
	// Dialer, when set, opens every connection (e.g. through an SSH tunnel:
	// sshx.Client.DialContext with network "tcp"). addr is "host:port".
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	// DialTimeout bounds establishing a connection; defaults to 5 s.
	DialTimeout time.Duration
	// RequestTimeout bounds each request; defaults to 15 s.
	RequestTimeout time.Duration
	// ProbeTimeout bounds Status and Health, which should answer quickly or be
	// counted as down (a request to a dead member waits for its whole timeout);
	// defaults to 3 s.
	ProbeTimeout time.Duration
}

// Client talks to one etcd cluster. It is safe for concurrent use.
type Client struct {
	cfg Config
	tls *tls.Config
	cli *clientv3.Client

	// learners is shared by a client and its pinned clients.
	learners *learnerSet
	// refusals counts the learner refusals routed around (for tests).
	refusals atomic.Int64

	mu     sync.Mutex
	pinned map[string]*Client
	// voters holds clients for the endpoints that are no known learner,
	// keyed by the endpoints joined with ",".
	voters map[string]*clientv3.Client
	closed bool
}

// New builds a client. It does not wait for a connection: the first request does.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd client: no endpoints")
	}
	cfg = withDefaults(cfg)
	var tlsCfg *tls.Config
	if cfg.TLS != nil {
		var err error
		if tlsCfg, err = ClientTLS(*cfg.TLS); err != nil {
			return nil, err
		}
	}
	return newClient(cfg, tlsCfg, &learnerSet{m: map[string]bool{}})
}

// withDefaults fills the timeouts cfg leaves at zero.
func withDefaults(cfg Config) Config {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	return cfg
}

func newClient(cfg Config, tlsCfg *tls.Config, learners *learnerSet) (*Client, error) {
	cli, err := newRaw(cfg, cfg.Endpoints, tlsCfg)
	if err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, tls: tlsCfg, cli: cli, learners: learners, pinned: map[string]*Client{}, voters: map[string]*clientv3.Client{}}, nil
}

// newRaw builds the clientv3 client of endpoints.
func newRaw(cfg Config, endpoints []string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	ccfg := clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		TLS:                  tlsCfg,
		Username:             cfg.Username,
		Password:             cfg.Password,
		// The engine reports errors itself; the client's own warnings would only
		// clutter the operator's terminal.
		Logger: zap.NewNop(),
		// One attempt per call: the caller owns retries (see the package
		// doc). clientv3 retries read-only calls answered Unavailable up to
		// 100 times, and on 3.6+ any call a learner refused, inside the
		// caller's deadline and out of its journal.
		MaxUnaryRetries: 1,
	}
	// A recovery talks to members that are down and then come back: gRPC's
	// default reconnect backoff grows to 120 s, so a member that was dead
	// during check-quorum would look dead for minutes after it restarted.
	// A recovery's waits notice a member within 100 ms of it serving, so
	// its connection is tried again every 100 ms (about 10 TCP dials a
	// second per connection to a member that is down, each refused at
	// once); a probe that finds the member listening also cuts the backoff
	// short (see refused).
	ccfg.DialOptions = append(ccfg.DialOptions, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 100 * time.Millisecond},
		MinConnectTimeout: 2 * time.Second,
	}))
	// The endpoint that answered a call (grpc.Peer) names the learner
	// that refused it. Through a dialer (an SSH tunnel) every connection
	// remembers the address it was dialled at; a direct connection keeps
	// gRPC's own dialer (and its TCP settings) and reports its peer's IP.
	if cfg.Dialer != nil {
		ccfg.DialOptions = append(ccfg.DialOptions, grpc.WithContextDialer(dialRemembering(cfg.Dialer)))
	}
	cli, err := clientv3.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", strings.Join(endpoints, ","), err)
	}
	return cli, nil
}

// ClientTLS is the TLS configuration of a client with the files of f
// (TLS 1.2 or later): the CA pool that verifies the servers (the system's
// roots when f.CA is empty) and the client key pair (Cert and Key given
// together, or neither). Errors name the file, never its contents.
func ClientTLS(f TLSFiles) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("etcd tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd tls ca %s: no PEM certificate found", f.CA)
		}
		c.RootCAs = pool
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("etcd tls: cert and key must be given together")
	}
	if f.Cert != "" {
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("etcd tls client certificate %s / key %s: %w", f.Cert, f.Key, err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// refused is a probe's fast path for a member that is down: unless the
// client's connection is up, it dials the endpoint itself (through the
// SSH tunnel when there is one) and returns that dial's error. A refused
// connection then fails the probe at once instead of after the whole probe
// timeout, during which gRPC keeps retrying; a check of 5 members of which
// 3 are down no longer waits for 3 timeouts. A member that accepts the
// connection is asked as before, and gRPC's reconnect backoff is cut
// short: the member listens now, so the connection is tried at once
// rather than when its pause ends.
func (c *Client) refused(ctx context.Context, endpoint string) error {
	cc := c.cli.ActiveConnection()
	if cc.GetState() == connectivity.Ready {
		return nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil // the request reports a bad endpoint itself
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	var conn net.Conn
	if c.cfg.Dialer != nil {
		conn, err = c.cfg.Dialer(ctx, addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return unreachableError{fmt.Errorf("connecting to %s: %w", addr, err)}
	}
	cc.ResetConnectBackoff()
	return conn.Close()
}

// unreachableError is a member that could not be asked; it matches
// [ErrUnreachable] without changing the message.
type unreachableError struct{ err error }

func (e unreachableError) Error() string        { return e.err.Error() }
func (e unreachableError) Unwrap() error        { return e.err }
func (e unreachableError) Is(target error) bool { return target == ErrUnreachable }

// Endpoints returns the configured endpoints.
func (c *Client) Endpoints() []string { return append([]string(nil), c.cfg.Endpoints...) }

// Raw returns the underlying clientv3 client, for the rare call this package
// does not wrap.
func (c *Client) Raw() *clientv3.Client { return c.cli }

// At returns a client pinned to endpoint alone (created once, closed with c).
func (c *Client) At(endpoint string) (*Client, error) {
	if len(c.cfg.Endpoints) == 1 && c.cfg.Endpoints[0] == endpoint {
		return c, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("etcd client closed")
	}
	if p, ok := c.pinned[endpoint]; ok {
		return p, nil
	}
	cfg := c.cfg
	cfg.Endpoints = []string{endpoint}
	p, err := newClient(cfg, c.tls, c.learners)
	if err != nil {
		return nil, err
	}
	c.pinned[endpoint] = p
	return p, nil
}

// Close closes the client and its pinned clients.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	pinned, voters := c.pinned, c.voters
	c.pinned, c.voters = map[string]*Client{}, map[string]*clientv3.Client{}
	c.mu.Unlock()
	var errs []error
	for _, p := range pinned {
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, v := range voters {
		if err := v.Close(); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	if err := c.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Client) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.RequestTimeout)
}

func (c *Client) probe(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.ProbeTimeout)
}

// Member is one etcd cluster member.
type Member struct {
	ID         uint64   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

// IDHex is the member ID as etcdctl prints it.
func (m Member) IDHex() string { return FormatID(m.ID) }

// FormatID prints a member or cluster ID in hex, as etcdctl does.
func FormatID(id uint64) string { return strconv.FormatUint(id, 16) }

// ParseID reads a member or cluster ID printed in hex by etcdctl (an optional 0x
// prefix is accepted).
func ParseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X"), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("member id %q: not a hex uint64", s)
	}
	return id, nil
}

func members(in []*memberpb) []Member {
	out := make([]Member, 0, len(in))
	for _, m := range in {
		out = append(out, member(m))
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || (out[i].Name == out[j].Name && out[i].ID < out[j].ID)
	})
	return out
}

func member(m *memberpb) Member {
	return Member{
		ID:         m.ID,
		Name:       m.Name,
		PeerURLs:   append([]string(nil), m.PeerURLs...),
		ClientURLs: append([]string(nil), m.ClientURLs...),
		IsLearner:  m.IsLearner,
	}
}

// CheckTLS loads the CA and client key pair of f, as New would, without
// connecting: a missing or unreadable file is found before a run starts.
func CheckTLS(f TLSFiles) error {
	_, err := ClientTLS(f)
	return err
}
