// Package etcdstate is a runstate.Shared store on a management etcd cluster
// (never the cluster being repaired): the checkpoints, journals, plans and
// inventories of a team's runs, and the run lock of each cluster, so that
// another machine can take a recovery over (resume RUN --state etcd://...).
//
// # Key layout
//
// Every key is under the store's prefix P (Config.Prefix, normalised to
// one leading "/" and no trailing one: "team-a" is "/team-a"):
//
//	P/runs/<id>/state          the checkpoint (State JSON), its ModRevision is the
//	                           revision a Save must name
//	P/runs/<id>/plan           the plan file the run began with
//	P/runs/<id>/inventory      the inventory file (absent without --inventory)
//	P/runs/<id>/journal/<k>    journal chunks: the JSON lines of one Save or Append
//	P/locks/<scope>/<lease>    the run lock of cluster <scope> (a clientv3/concurrency
//	                           mutex); the holder's key holds its runstate.LockInfo JSON
//
// Journal chunk keys sort in write order. With R the state key's revision
// when the chunk is written (0 before the run's first checkpoint), a Save
// replacing revision R writes journal/<R>.s (%020d: only one transaction can
// replace R, so the key is unique), and an Append while the checkpoint is at
// R writes journal/<R>.a<H>, H the store's revision read just before
// (%020d both; "a" sorts before "s", as every Append at R happens before
// the Save that replaces R). Reading the journal is reading the prefix in
// key order.
//
// # Fencing
//
// Every write of a run (Create, Save, Append) is one transaction guarded by
// the lock: its mutex key must still exist with the create revision it had
// when this session took it (concurrency.Mutex.IsOwner). A lock whose lease
// expired (the holder paused or lost the network for longer than the TTL),
// or that was broken (unlock --force revokes the lease), fails that guard,
// and the write is a *runstate.FencedError. A Save is further guarded by the
// checkpoint's revision, so two writers can never interleave checkpoints.
//
// Values are limited to 1 MiB (MaxValue): etcd refuses requests over 1.5 MiB
// by default (--max-request-bytes).
package etcdstate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Defaults of Config.
const (
	DefaultLockTTL     = 15 * time.Second
	DefaultDialTimeout = 5 * time.Second
	// DefaultPrefix is the key prefix when Config.Prefix is empty.
	DefaultPrefix = "/etcd-rescue"
	// MaxValue is the largest checkpoint, plan, inventory or journal chunk
	// the store writes: etcd's default request limit is 1.5 MiB.
	MaxValue = 1 << 20
)

// Config says how to reach the management etcd and where under it the
// store lives.
type Config struct {
	Endpoints []string // host:port, at least one
	// Prefix is the key prefix, e.g. "/etcd-rescue" or "team-a"; it is
	// normalised to one leading "/" and no trailing one. Empty is
	// DefaultPrefix.
	Prefix string
	// TLS files: TLS is used when any is set; CACert alone is server-auth
	// TLS, Cert and Key a client certificate (given together). Without
	// CACert the system's roots verify the server.
	CACert, Cert, Key string
	// User and Password authenticate when the store's etcd has auth
	// enabled. The password is never in errors nor in Where.
	User, Password string
	// LockTTL is the lease TTL of the run lock, rounded up to whole
	// seconds: a holder that dies without releasing it loses it after
	// this long. 0 is DefaultLockTTL.
	LockTTL time.Duration
	// DialTimeout bounds connecting and Open's first request; 0 is
	// DefaultDialTimeout.
	DialTimeout time.Duration
}

// Store is a runstate.Shared on etcd. It is safe for concurrent use.
type Store struct {
	endpoints []string
	prefix    string
	where     string
	user      string
	secret    string // the password, only to keep it out of errors
	tls       bool
	ttl       time.Duration
	dial      time.Duration
	cli       *clientv3.Client
}

var _ runstate.Shared = (*Store)(nil)

// NormalizePrefix returns p with one leading "/" and no trailing one
// (DefaultPrefix when p is empty or "/").
func NormalizePrefix(p string) string {
	p = strings.Trim(p, "/")
	if p == "" {
		return DefaultPrefix
	}
	return "/" + p
}

// Where names a store of these endpoints and prefix as in messages:
// "etcd://h1:p1,h2:p2/prefix".
func Where(endpoints []string, prefix string) string {
	return "etcd://" + strings.Join(endpoints, ",") + NormalizePrefix(prefix)
}

// Open connects to the store's etcd and proves that it answers (a read
// under the prefix, bounded by DialTimeout and ctx).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("state store etcd://: no endpoint; hint: --state etcd://HOST:PORT[,HOST:PORT]/PREFIX")
	}
	s := &Store{prefix: NormalizePrefix(cfg.Prefix), user: cfg.User, secret: cfg.Password, ttl: cfg.LockTTL, dial: cfg.DialTimeout}
	for _, e := range cfg.Endpoints {
		e = strings.TrimSpace(e)
		if strings.Contains(e, "://") {
			return nil, fmt.Errorf("state store endpoint %q: want HOST:PORT without a scheme (TLS is used when TLS files are given)", e)
		}
		if _, port, err := net.SplitHostPort(e); err != nil || port == "" {
			return nil, fmt.Errorf("state store endpoint %q: want HOST:PORT, e.g. 10.0.0.5:2379", e)
		}
		s.endpoints = append(s.endpoints, e)
	}
	s.where = Where(s.endpoints, s.prefix)
	if strings.Contains(s.prefix, "//") {
		return nil, fmt.Errorf("state store %s: the prefix %q has an empty path element", s.where, cfg.Prefix)
	}
	if s.ttl <= 0 {
		s.ttl = DefaultLockTTL
	}
	if s.dial <= 0 {
		s.dial = DefaultDialTimeout
	}
	if (cfg.User == "") != (cfg.Password == "") {
		return nil, fmt.Errorf("state store %s: a user and a password must be given together", s.where)
	}
	var tlsCfg *tls.Config
	if cfg.CACert != "" || cfg.Cert != "" || cfg.Key != "" {
		var err error
		if tlsCfg, err = etcdapi.ClientTLS(etcdapi.TLSFiles{CA: cfg.CACert, Cert: cfg.Cert, Key: cfg.Key}); err != nil {
			return nil, fmt.Errorf("state store %s: %w", s.where, err)
		}
		s.tls = true
	}
	scheme := "http://"
	if s.tls {
		scheme = "https://"
	}
	urls := make([]string, len(s.endpoints))
	for i, e := range s.endpoints {
		urls[i] = scheme + e
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            urls,
		DialTimeout:          s.dial,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		TLS:                  tlsCfg,
		Username:             cfg.User,
		Password:             cfg.Password,
		Logger:               zap.NewNop(),
		// A store that restarts must be found again within a second, not
		// after gRPC's default backoff (up to 120 s).
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		})},
	})
	if err != nil {
		return nil, s.openErr(ctx, err, tlsCfg)
	}
	s.cli = cli
	pctx, cancel := context.WithTimeout(ctx, s.dial)
	defer cancel()
	if _, err := cli.Get(pctx, s.prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		_ = cli.Close()
		return nil, s.openErr(ctx, err, tlsCfg)
	}
	return s, nil
}

// openErr explains a store that did not answer: what each endpoint says to
// a plain connection (and TLS handshake), which the client's own error
// often hides behind a timeout.
func (s *Store) openErr(ctx context.Context, err error, tlsCfg *tls.Config) error {
	var answer rpctypes.EtcdError
	if errors.As(err, &answer) {
		// It answered, and refused (auth, permissions).
		return fmt.Errorf("state store %s: refused by %s: %s; hint: %s", s.where, strings.Join(s.endpoints, ","), s.clean(err), s.hint(err))
	}
	var why []string
	for _, e := range s.endpoints {
		if p := probe(ctx, e, tlsCfg, s.dial); p != nil {
			why = append(why, p.Error())
		}
	}
	msg := fmt.Sprintf("state store %s: no answer from %s: %s", s.where, strings.Join(s.endpoints, ","), s.clean(err))
	if len(why) > 0 {
		msg += " (" + strings.Join(why, "; ") + ")"
	}
	return errors.New(msg + "; hint: " + s.hint(err))
}

// probe connects to endpoint (and shakes hands with TLS): nil when that
// works.
func probe(ctx context.Context, endpoint string, tlsCfg *tls.Config, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, min(timeout, 3*time.Second))
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return fmt.Errorf("%s: %v", endpoint, err)
	}
	defer c.Close()
	if tlsCfg == nil {
		return nil
	}
	tc := tlsCfg.Clone()
	if tc.ServerName == "" {
		host, _, _ := net.SplitHostPort(endpoint)
		tc.ServerName = host
	}
	t := tls.Client(c, tc)
	if err := t.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("%s: TLS: %v", endpoint, err)
	}
	// A client certificate the server refuses shows in the first read.
	_ = t.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := t.Read(make([]byte, 1)); err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return fmt.Errorf("%s: TLS: %v", endpoint, err)
		}
	}
	return nil
}

// hint says what to check for an error of the store.
func (s *Store) hint(err error) string {
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return "check the store's user and password"
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return fmt.Sprintf("the user %s needs read and write permission on the prefix %s/ of the store's etcd", s.user, s.prefix)
	case errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrInvalidAuthToken), errors.Is(err, rpctypes.ErrInvalidAuthMgmt):
		return "the store's etcd has auth enabled: give its user and password"
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		return fmt.Sprintf("the store's etcd refuses requests this large: raise its --max-request-bytes (values here are up to %d bytes)", MaxValue)
	}
	h := "is the store's etcd running and reachable from this machine? check the endpoints"
	if s.tls {
		h += ", the TLS files (the store's CA, and a client certificate it trusts)"
	}
	return h + " and the prefix of --state"
}

// clean is err's text without the password: the client never puts it in
// an error, and this makes sure of it (for passwords long enough not to
// hide ordinary words).
func (s *Store) clean(err error) string {
	msg := err.Error()
	if len(s.secret) >= 4 {
		msg = strings.ReplaceAll(msg, s.secret, "[password]")
	}
	return msg
}

// Where names the store, e.g. "etcd://10.0.0.5:2379/etcd-rescue": never
// with the user or password.
func (s *Store) Where() string { return s.where }

// Endpoints are the store's endpoints (host:port).
func (s *Store) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// Prefix is the store's normalised key prefix.
func (s *Store) Prefix() string { return s.prefix }

// Close releases the client. Locks not released lapse after their TTL.
func (s *Store) Close() error {
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// wrap is a failed request: what, where, and a hint.
func (s *Store) wrap(what string, err error) error {
	return &storeError{msg: fmt.Sprintf("state store %s: %s: %s; hint: %s", s.where, what, s.clean(err), s.hint(err)), err: err}
}

// storeError keeps the client's error for errors.Is (context.DeadlineExceeded).
type storeError struct {
	msg string
	err error
}

func (e *storeError) Error() string { return e.msg }
func (e *storeError) Unwrap() error { return e.err }

// validName guards key joins: a run id or a scope is one path element.
func validName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 253 {
		return false
	}
	for _, r := range s {
		if r == '/' || r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func (s *Store) runKey(id, name string) string  { return s.prefix + "/runs/" + id + "/" + name }
func (s *Store) lockPrefix(scope string) string { return s.prefix + "/locks/" + scope }

// requestCtx bounds one request by runstate.SharedTimeout, or the
// caller's deadline when it is sooner.
func requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, runstate.SharedTimeout)
}
