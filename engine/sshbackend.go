package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/internal/uploadtmp"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// reapCommand kills every process on the host whose environment holds
// MarkEnv=mark, and prints how many.
func reapCommand(mark string) string {
	return `n=0; for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = "$$" ] && continue; ` +
		`if tr '\000' '\n' < "$d/environ" 2>/dev/null | grep -qxF -- ` + shellquote.Quote(MarkEnv+"="+mark) + `; ` +
		`then kill -KILL "$p" 2>/dev/null && n=$((n+1)); fi; done; echo "$n"`
}

// SSHBackend runs a plan over SSH: one pooled connection per host, and the
// etcd API either through those connections (clientAccess: ssh-tunnel) or
// directly.
type SSHBackend struct {
	plan    *plans.Plan
	pool    *sshx.Pool
	ownPool bool // closed by Close; a session's pool is closed by its Apply or Resume

	mu   sync.Mutex
	etcd *etcdAdapter

	locks *hostLocks // the run locks of the session, checked before every command
}

// NewSSHBackend builds the pool for p's hosts. It does not connect: each
// host is dialled on first use, so a dead host fails only the steps that
// need it.
func NewSSHBackend(p *plans.Plan) (*SSHBackend, error) {
	pool, err := hostPool(p)
	if err != nil {
		return nil, err
	}
	return &SSHBackend{plan: p, pool: pool, ownPool: true}, nil
}

// sshBackendOn runs p over the connections of pool, which its owner
// closes after Close.
func sshBackendOn(p *plans.Plan, pool *sshx.Pool) *SSHBackend {
	return &SSHBackend{plan: p, pool: pool}
}

// hostPool builds one client per host of p; it does not connect.
func hostPool(p *plans.Plan) (*sshx.Pool, error) {
	pool := sshx.NewPool()
	for name, h := range p.Hosts {
		cfg, err := SSHConfig(p, h)
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
		if _, err := pool.Add(name, cfg); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return pool, nil
}

// InsecureHosts lists the hosts whose host key is not verified.
func (b *SSHBackend) InsecureHosts() []string { return b.pool.HostKeyCheckDisabled() }

// Routes describes, per host (sorted), how it is reached: address, user,
// sudo, jump host and host key check; journalled at the start of every
// session so the record says who did what, and how.
func (b *SSHBackend) Routes() []HostRoute {
	var out []HostRoute
	for _, name := range b.pool.Names() {
		c, err := b.pool.Get(name)
		if err != nil {
			continue
		}
		cfg := c.Config()
		r := HostRoute{Host: name, Address: cfg.HostPort(), User: cfg.User, Sudo: cfg.Sudo, HostKeys: "known_hosts " + cfg.KnownHosts}
		if cfg.InsecureIgnoreHostKey {
			r.HostKeys = "NOT verified"
		}
		if j := cfg.Jump; j != nil {
			r.Jump = j.User + "@" + j.HostPort()
		}
		out = append(out, r)
	}
	return out
}

// HostRoute is how one host is reached.
type HostRoute struct {
	Host, Address, User, Jump, HostKeys string
	Sudo                                bool
}

func (r HostRoute) String() string {
	s := fmt.Sprintf("ssh %s@%s", r.User, r.Address)
	if r.Jump != "" {
		s += " via " + r.Jump
	}
	if r.Sudo {
		s += ", commands through sudo -n"
	}
	return s + ", host key " + r.HostKeys
}

// Shell returns the runner of host.
func (b *SSHBackend) Shell(host string) (steps.Runner, error) {
	c, err := b.pool.Get(host)
	if err != nil {
		return nil, err
	}
	return &sshRunner{c: c, locks: b.locks}, nil
}

// Etcd returns the API client, created on first use.
func (b *SSHBackend) Etcd(ctx context.Context) (steps.Etcd, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.etcd != nil {
		return b.etcd, nil
	}
	a, err := newEtcdAdapter(b.plan, b.pool)
	if err != nil {
		return nil, err
	}
	b.etcd = a
	return a, nil
}

// DialHost opens a TCP connection to addr on host's network (an API
// server of the control plane): through host's SSH connection, or directly
// with clientAccess: direct, as the etcd client URLs are reached.
func (b *SSHBackend) DialHost(ctx context.Context, host, addr string) (net.Conn, error) {
	if b.plan.Cluster != nil && b.plan.Cluster.ClientAccess == "direct" {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	return dialThrough(ctx, b.pool, host, addr)
}

// Close closes the etcd client and every SSH connection.
func (b *SSHBackend) Close() error {
	b.mu.Lock()
	var errs []error
	if b.etcd != nil {
		errs = append(errs, b.etcd.c.Close())
		b.etcd = nil
	}
	b.mu.Unlock()
	if b.ownPool {
		errs = append(errs, b.pool.Close())
	}
	return errors.Join(errs...)
}

// sshRunner adapts an sshx client to steps.Runner: a non-zero exit is a
// *steps.ExitError, a dropped connection mid-command matches
// ErrOutcomeUnknown, and a host that cannot be reached at all matches
// ErrUnreachable (a host key mismatch never does: that must stop the run).
type sshRunner struct {
	c     *sshx.Client
	locks *hostLocks
}

func (r *sshRunner) connect(ctx context.Context) error {
	err := r.c.Connect(ctx)
	if err == nil {
		return nil
	}
	var hk *sshx.HostKeyError
	if errors.As(err, &hk) || ctx.Err() != nil || errors.Is(err, sshx.ErrClosed) {
		return err
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &oe) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return err
}

func (r *sshRunner) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	if err := r.connect(ctx); err != nil {
		return nil, err
	}
	if err := r.locks.ensure(ctx, r.c.Name()); err != nil {
		return nil, err
	}
	remote := cmd
	if m, ok := ctx.Value(markKey{}).(string); ok {
		// Tag the command's processes: the shell that runs cmd gets the
		// variable in its own initial environment (so /proc/PID/environ
		// shows it and a reap kills the shell too, not only its current
		// child, which would let "a; b" go on to b), and children inherit it.
		remote = MarkEnv + "=" + shellquote.Quote(m) + " exec sh -c " + shellquote.Quote(cmd)
	}
	res, err := r.c.Run(ctx, remote, sshx.RunOpts{Stdin: stdin, Display: cmd})
	if err != nil {
		if errors.Is(err, sshx.ErrConnectionLost) {
			return res.Stdout, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		return res.Stdout, err
	}
	if res.ExitCode != 0 {
		return res.Stdout, &steps.ExitError{Host: r.c.Name(), Cmd: cmd, Code: res.ExitCode, Stderr: string(res.Stderr)}
	}
	return res.Stdout, nil
}

func (r *sshRunner) Upload(ctx context.Context, local, remote string, mode os.FileMode) (string, error) {
	if err := r.connect(ctx); err != nil {
		return "", err
	}
	if err := r.locks.ensure(ctx, r.c.Name()); err != nil {
		return "", err
	}
	t, err := r.c.UploadFile(ctx, local, remote, mode)
	if err != nil {
		if errors.Is(err, sshx.ErrConnectionLost) {
			return "", fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		return "", err
	}
	return t.SHA256, nil
}

// UploadChecked: see [steps.UploadChecker].
func (r *sshRunner) UploadChecked(ctx context.Context, local, remote string, ck uploadtmp.Checked) (string, error) {
	if err := r.connect(ctx); err != nil {
		return "", err
	}
	if err := r.locks.ensure(ctx, r.c.Name()); err != nil {
		return "", err
	}
	f, err := os.Open(local)
	if err != nil {
		return "", fmt.Errorf("upload to %s:%s: %w", r.c.Name(), remote, err)
	}
	defer f.Close()
	t, err := r.c.UploadChecked(ctx, f, remote, ck)
	if err != nil {
		if errors.Is(err, sshx.ErrConnectionLost) {
			return "", fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		return "", err
	}
	return t.Placed, nil
}

// Reap kills what an earlier attempt of a step-host left running on host.
func (b *SSHBackend) Reap(ctx context.Context, host, mark string) (int, error) {
	c, err := b.pool.Get(host)
	if err != nil {
		return 0, err
	}
	r := &sshRunner{c: c, locks: b.locks}
	out, err := r.Run(ctx, reapCommand(mark), nil)
	if err != nil {
		return 0, err
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n, nil
}
