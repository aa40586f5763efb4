package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// stepEnv is the steps.Env of one step-host attempt (or Check). It journals
// every remote command and API call under the step-host, adds up the time
// spent in them, and records facts and approvals in the checkpoint.
type stepEnv struct {
	w    *walker
	n    *Node
	host string

	mu      sync.Mutex
	remote  time.Duration
	api     time.Duration
	cmds    int
	lastBad string // last command that failed
}

var _ steps.Env = (*stepEnv)(nil)
var _ steps.Approver = (*stepEnv)(nil)

func (w *walker) newEnv(n *Node, t *Target) *stepEnv {
	return &stepEnv{w: w, n: n, host: t.Name()}
}

func (e *stepEnv) Shell(host string) (steps.Runner, error) {
	r, err := e.w.backend.Shell(host)
	if err != nil {
		return nil, err
	}
	return &journalRunner{env: e, host: host, r: r}, nil
}

func (e *stepEnv) Etcd(ctx context.Context) (steps.Etcd, error) {
	api, err := e.w.backend.Etcd(ctx)
	if err != nil {
		return nil, err
	}
	return &journalEtcd{env: e, api: api}, nil
}

func (e *stepEnv) Fact(key string) (string, bool) { return e.w.run.Fact(key) }

// SetFact returns only once the fact is in the checkpoint on disk: a
// resumed run must see the same bump revision, the same member id.
func (e *stepEnv) SetFact(key, value string) error {
	if err := e.w.run.SetFact(key, value); err != nil {
		return &checkpointError{err}
	}
	return nil
}

func (e *stepEnv) Logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.w.run.Event(Event{Type: "log", Step: e.n.ID(), Host: e.host, Msg: msg})
	e.w.out.line(Key(e.n.ID(), e.host), msg)
}

// Approve says yes when the approval is recorded already or was given with
// --approve, asks on a terminal, and otherwise stops the step for the
// operator.
func (e *stepEnv) Approve(ctx context.Context, message string) error {
	return e.w.approve(ctx, e.n, message)
}

func (e *stepEnv) addRemote(d time.Duration, api bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if api {
		e.api += d
	} else {
		e.remote += d
		e.cmds++
	}
}

func (e *stepEnv) noteFailed(cmd string) {
	e.mu.Lock()
	e.lastBad = cmd
	e.mu.Unlock()
}

func (e *stepEnv) failedCmd() string {
	if e == nil {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastBad
}

// addTo adds this attempt's times to a record (e may be nil).
func (e *stepEnv) addTo(h *HostState, elapsed time.Duration) {
	h.Elapsed += toMillis(elapsed)
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	h.Remote += toMillis(e.remote)
	h.API += toMillis(e.api)
	h.Cmds += e.cmds
}

func (w *walker) approve(ctx context.Context, n *Node, message string) error {
	id := n.ID()
	w.run.mu.Lock()
	_, ok := w.run.st.Approvals[id]
	w.run.mu.Unlock()
	if ok {
		return nil
	}
	record := func(how string) error {
		who := os.Getenv("USER")
		if u, err := user.Current(); err == nil {
			who = u.Username
		}
		err := w.run.Update(func(s *State) { s.Approvals[id] = &Approval{At: w.run.now().UTC(), By: who, How: how} })
		w.run.Event(Event{Type: "approval", Step: id, Msg: how + ": " + message})
		if err != nil {
			return &checkpointError{err}
		}
		return nil
	}
	for _, a := range w.opts.Approve {
		if a == id {
			return record("flag")
		}
	}
	if w.opts.Ask == nil {
		return &ApprovalNeededError{Step: id, Message: message}
	}
	// One question at a time on the terminal. The first interrupt takes
	// the question back: the step then waits for a resume, as if never
	// asked.
	w.askMu.Lock()
	defer w.askMu.Unlock()
	actx, cancel := untilStop(ctx, w.opts.Stop)
	defer cancel()
	yes, err := w.opts.Ask(actx, fmt.Sprintf("step %s: %s\napprove? [y/N] ", id, message))
	if err != nil {
		if actx.Err() != nil && ctx.Err() == nil {
			w.mu.Lock()
			w.interrupted = true
			w.mu.Unlock()
			return &ApprovalNeededError{Step: id, Message: message}
		}
		return err
	}
	if !yes {
		return fmt.Errorf("not approved by the operator: %s", message)
	}
	return record("prompt")
}

// journalRunner records every command of a step-host in events.jsonl
// (redacted) and adds its duration to the step-host's remote time.
type journalRunner struct {
	env  *stepEnv
	host string
	r    steps.Runner
}

func (j *journalRunner) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	start := time.Now()
	ctx = context.WithValue(ctx, markKey{}, j.env.w.mark(j.env.n, j.env.host))
	out, err := j.r.Run(ctx, cmd, stdin)
	d := time.Since(start)
	j.env.addRemote(d, false)
	ev := Event{Type: "cmd", Step: j.env.n.ID(), Host: j.host, Cmd: cmd, DurationMs: ms(d), Error: errString(err)}
	var ee *steps.ExitError
	switch {
	case err == nil:
		ev.Exit = intp(0)
	case errors.As(err, &ee):
		ev.Exit = intp(ee.Code)
		ev.Error = "stderr: " + tail(ee.Stderr, 600)
	}
	if err != nil {
		j.env.noteFailed(cmd)
	}
	j.env.w.run.Event(ev)
	if err == nil {
		crashPoint(cmd)
	}
	return out, err
}

func (j *journalRunner) Upload(ctx context.Context, local, remote string, mode os.FileMode) (string, error) {
	start := time.Now()
	sum, err := j.r.Upload(ctx, local, remote, mode)
	d := time.Since(start)
	j.env.addRemote(d, false)
	cmd := fmt.Sprintf("upload %s to %s:%s (mode %04o)", local, j.host, remote, mode.Perm())
	j.env.w.run.Event(Event{Type: "upload", Step: j.env.n.ID(), Host: j.host, Cmd: cmd, DurationMs: ms(d), Error: errString(err), Msg: "sha256 " + sum})
	if err != nil {
		j.env.noteFailed(cmd)
	}
	return sum, err
}

func ms(d time.Duration) *int64 { v := d.Milliseconds(); return &v }
func intp(i int) *int           { return &i }

// journalEtcd times and journals etcd API calls of a step-host.
type journalEtcd struct {
	env *stepEnv
	api steps.Etcd
}

func (j *journalEtcd) done(start time.Time, what string, err error) {
	d := time.Since(start)
	j.env.addRemote(d, true)
	j.env.w.run.Event(Event{Type: "etcd", Step: j.env.n.ID(), Host: j.env.host, Cmd: what, DurationMs: ms(d), Error: errString(err)})
	if err == nil {
		crashPoint(what)
	}
}

func (j *journalEtcd) MemberList(ctx context.Context, serializable bool) ([]steps.Member, error) {
	start := time.Now()
	l, err := j.api.MemberList(ctx, serializable)
	j.done(start, fmt.Sprintf("member list (serializable=%v)", serializable), err)
	return l, err
}

func (j *journalEtcd) MemberAdd(ctx context.Context, peerURLs []string, learner bool) (steps.Member, error) {
	start := time.Now()
	m, err := j.api.MemberAdd(ctx, peerURLs, learner)
	j.done(start, fmt.Sprintf("member add %s (learner=%v) -> %x", strings.Join(peerURLs, ","), learner, m.ID), err)
	return m, err
}

func (j *journalEtcd) MemberRemove(ctx context.Context, id uint64) error {
	start := time.Now()
	err := j.api.MemberRemove(ctx, id)
	j.done(start, fmt.Sprintf("member remove %x", id), err)
	return err
}

func (j *journalEtcd) MemberUpdate(ctx context.Context, id uint64, peerURLs []string) error {
	start := time.Now()
	err := j.api.MemberUpdate(ctx, id, peerURLs)
	j.done(start, fmt.Sprintf("member update %x %s", id, strings.Join(peerURLs, ",")), err)
	return err
}

func (j *journalEtcd) MemberPromote(ctx context.Context, id uint64) error {
	start := time.Now()
	err := j.api.MemberPromote(ctx, id)
	j.done(start, fmt.Sprintf("member promote %x", id), err)
	return err
}

func (j *journalEtcd) Status(ctx context.Context, clientURL string) (steps.EndpointStatus, error) {
	start := time.Now()
	s, err := j.api.Status(ctx, clientURL)
	j.done(start, "status "+clientURL, err)
	return s, err
}

func (j *journalEtcd) Health(ctx context.Context, clientURL string) error {
	start := time.Now()
	err := j.api.Health(ctx, clientURL)
	j.done(start, "health "+clientURL, err)
	return err
}

func (j *journalEtcd) HashKV(ctx context.Context, clientURL string, rev int64) (uint32, int64, error) {
	start := time.Now()
	h, c, err := j.api.HashKV(ctx, clientURL, rev)
	j.done(start, fmt.Sprintf("hashkv %s at %d", clientURL, rev), err)
	return h, c, err
}

func (j *journalEtcd) SnapshotSave(ctx context.Context, clientURL string, w io.Writer) (string, int64, error) {
	start := time.Now()
	sum, n, err := j.api.SnapshotSave(ctx, clientURL, w)
	j.done(start, fmt.Sprintf("snapshot save %s (%d bytes, sha256 %s)", clientURL, n, sum), err)
	return sum, n, err
}

func (j *journalEtcd) IsRetryable(err error) bool { return j.api.IsRetryable(err) }

// markKey carries a step-host's process marker to the runner.
type markKey struct{}

// MarkEnv is the environment variable that tags every remote process a
// step-host starts, so a later session can find leftovers of an attempt
// whose engine died (kill -9 leaves a running etcdutl behind: its SSH
// session is gone but the process is not).
const MarkEnv = "ETCD_RESCUE_MARK"

// mark is the value of MarkEnv for a step-host of this run.
func (w *walker) mark(n *Node, host string) string {
	return w.runID + "/" + Key(n.ID(), host)
}

// Reaper is implemented by backends that can kill what an earlier attempt
// of a step-host left running on a host.
type Reaper interface {
	Reap(ctx context.Context, host, mark string) (killed int, err error)
}

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
	plan *plans.Plan
	pool *sshx.Pool

	mu   sync.Mutex
	etcd *etcdAdapter
}

// NewSSHBackend builds the pool for p's hosts. It does not connect: each
// host is dialled on first use, so a dead host fails only the steps that
// need it.
func NewSSHBackend(p *plans.Plan) (*SSHBackend, error) {
	pool := sshx.NewPool()
	for name, h := range p.Hosts {
		cfg, err := SSHConfig(p, h)
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
		if _, err := pool.Add(name, cfg); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return &SSHBackend{plan: p, pool: pool}, nil
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

// SSHConfig is the sshx configuration of one host of the plan. A value the
// plan sets wins; with ssh.config, the OpenSSH config file fills what the
// plan leaves unset (hosts.X.address read as a Host alias); the plan's
// defaults come last.
func SSHConfig(p *plans.Plan, h *plans.Host) (sshx.Config, error) {
	s := p.SSH
	if s == nil {
		s = &plans.SSH{}
	}
	cfg := sshx.Config{
		Address:               h.Address,
		UseAgent:              s.Agent,
		InsecureIgnoreHostKey: s.InsecureIgnoreHostKey,
		Sudo:                  s.Sudo,
		ConnectTimeout:        s.Timeout.D(),
	}
	if h.IsSet("port") {
		cfg.Port = h.Port
	}
	if h.IsSet("user") {
		cfg.User = h.User
	} else if s.IsSet("user") {
		cfg.User = s.User
	}
	if s.IsSet("knownHosts") {
		cfg.KnownHosts = plans.LocalFile(p.SSHBase, s.KnownHosts)
	}
	if s.Identity != "" {
		cfg.IdentityFiles = []string{plans.LocalFile(p.SSHBase, s.Identity)}
	}
	if s.Jump != "" {
		j, err := parseJump(s.Jump)
		if err != nil {
			return cfg, err
		}
		cfg.Jump = &j
	}
	if s.Config != "" {
		var err error
		if cfg, err = cfg.WithSSHConfig(plans.LocalFile(p.SSHBase, s.Config)); err != nil {
			return cfg, err
		}
	}
	if cfg.Port == 0 {
		cfg.Port = h.Port
	}
	if cfg.User == "" {
		cfg.User = h.User
	}
	if cfg.KnownHosts == "" {
		cfg.KnownHosts = plans.LocalFile(p.SSHBase, s.KnownHosts)
	}
	return cfg, nil
}

// parseJump reads ssh.jump: [user@]host[:port].
func parseJump(s string) (sshx.Config, error) {
	var c sshx.Config
	rest := s
	if u, h, ok := strings.Cut(s, "@"); ok {
		c.User, rest = u, h
	}
	host, port := rest, ""
	if h, p, err := net.SplitHostPort(rest); err == nil {
		host, port = h, p
	}
	if host == "" {
		return c, fmt.Errorf("ssh.jump %q: no host", s)
	}
	c.Address = host
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil {
			return c, fmt.Errorf("ssh.jump %q: bad port", s)
		}
		c.Port = n
	}
	return c, nil
}

// Shell returns the runner of host.
func (b *SSHBackend) Shell(host string) (steps.Runner, error) {
	c, err := b.pool.Get(host)
	if err != nil {
		return nil, err
	}
	return &sshRunner{c: c}, nil
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

// Close closes the etcd client and every SSH connection.
func (b *SSHBackend) Close() error {
	b.mu.Lock()
	var errs []error
	if b.etcd != nil {
		errs = append(errs, b.etcd.c.Close())
		b.etcd = nil
	}
	b.mu.Unlock()
	errs = append(errs, b.pool.Close())
	return errors.Join(errs...)
}

// sshRunner adapts an sshx client to steps.Runner: a non-zero exit is a
// *steps.ExitError, a dropped connection mid-command matches
// ErrOutcomeUnknown, and a host that cannot be reached at all matches
// ErrUnreachable (a host key mismatch never does: that must stop the run).
type sshRunner struct {
	c *sshx.Client
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
	t, err := r.c.UploadFile(ctx, local, remote, mode)
	if err != nil {
		if errors.Is(err, sshx.ErrConnectionLost) {
			return "", fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		return "", err
	}
	return t.SHA256, nil
}

// Reap kills what an earlier attempt of a step-host left running on host.
func (b *SSHBackend) Reap(ctx context.Context, host, mark string) (int, error) {
	c, err := b.pool.Get(host)
	if err != nil {
		return 0, err
	}
	r := &sshRunner{c: c}
	out, err := r.Run(ctx, reapCommand(mark), nil)
	if err != nil {
		return 0, err
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n, nil
}

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
		cfg.TLS = tlsFiles(p)
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

// tlsFiles is the plan's client TLS for the etcd API, its relative paths
// resolved against the file that defined cluster:.
func tlsFiles(p *plans.Plan) *etcdapi.TLSFiles {
	t := p.Cluster.TLS
	if t == nil {
		return nil
	}
	b := p.ClusterBase
	return &etcdapi.TLSFiles{CA: plans.LocalFile(b, t.CA), Cert: plans.LocalFile(b, t.Cert), Key: plans.LocalFile(b, t.Key), ServerName: t.ServerName}
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
