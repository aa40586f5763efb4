package sshx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Event describes one finished remote command, for the engine's journal.
type Event struct {
	Host string
	// Cmd is RunOpts.Display when given (the caller's redacted form), else the
	// command as passed to Run.
	Cmd      string
	Start    time.Time
	Duration time.Duration
	// ExitCode is the remote exit status, -1 when none arrived.
	ExitCode int
	Err      error
}

// Option tunes a [Client] or every client of a [Pool].
type Option func(*Client)

// WithEventHook installs fn to be called after every command (also those run by
// Upload and Download). fn must be safe for concurrent use and should be quick.
func WithEventHook(fn func(Event)) Option {
	return func(c *Client) { c.hook = fn }
}

// Client is one host's SSH connection, shared by every command, transfer and tunnel
// to that host. It is safe for concurrent use. The connection is opened on first
// use and re-opened on the first call after it dropped.
type Client struct {
	name string
	cfg  Config
	hook func(Event)

	dialSem  chan struct{} // one connection attempt at a time
	sessions chan struct{} // bounds concurrent commands (MaxSessions-1)

	mu     sync.Mutex
	cur    *conn
	closed bool

	dials atomic.Int64
}

// conn is one established SSH connection.
type conn struct {
	client *ssh.Client
	jump   *conn
	done   chan struct{}
	once   sync.Once
	reason error
}

func (cn *conn) alive() bool {
	select {
	case <-cn.done:
		return false
	default:
		return true
	}
}

// kill marks the connection dead and closes it (and its jump connection).
func (cn *conn) kill(reason error) {
	cn.once.Do(func() {
		cn.reason = reason
		close(cn.done)
		_ = cn.client.Close()
		if cn.jump != nil {
			cn.jump.kill(reason)
		}
	})
}

// ping sends one keepalive@openssh.com request and waits up to timeout for the reply
// (OpenSSH answers with a failure, which is fine: any answer proves the connection).
func (cn *conn) ping(timeout time.Duration) error {
	res := make(chan error, 1)
	go func() {
		_, _, err := cn.client.SendRequest("keepalive@openssh.com", true, nil)
		res <- err
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-res:
		return err
	case <-t.C:
		return fmt.Errorf("no answer to keepalive within %s", timeout)
	case <-cn.done:
		return errors.New("connection closed")
	}
}

// New returns a client for the host called name (used in errors and events). It
// does not connect: see [Client.Connect].
func New(name string, cfg Config, opts ...Option) (*Client, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = c.Address
	}
	cl := &Client{
		name:     name,
		cfg:      c,
		dialSem:  make(chan struct{}, 1),
		sessions: make(chan struct{}, max(1, c.MaxSessions-1)),
	}
	for _, o := range opts {
		o(cl)
	}
	return cl, nil
}

// Name returns the host name given to [New].
func (c *Client) Name() string { return c.name }

// Config returns the effective configuration (defaults applied).
func (c *Client) Config() Config { return c.cfg }

// HostKeyCheckDisabled reports whether host keys are not verified for this host or
// its jump host; the caller must warn loudly when it is true.
func (c *Client) HostKeyCheckDisabled() bool {
	return c.cfg.InsecureIgnoreHostKey || (c.cfg.Jump != nil && c.cfg.Jump.InsecureIgnoreHostKey)
}

// Dials returns how many SSH connections this client has opened so far (1 plus the
// number of reconnects).
func (c *Client) Dials() int64 { return c.dials.Load() }

// Connect opens the connection now (verifying the host key and authenticating)
// unless one is already up.
func (c *Client) Connect(ctx context.Context) error {
	_, err := c.getConn(ctx)
	return err
}

// Close closes the connection; later calls fail with [ErrClosed].
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.cur != nil {
		c.cur.kill(ErrClosed)
		c.cur = nil
	}
	return nil
}

// DialContext opens a TCP connection from the remote host to addr (direct-tcpip),
// over the host's SSH connection: the way to reach etcd client URLs that only the
// host can reach. network must be tcp, tcp4 or tcp6. The returned conn does not
// support deadlines.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	for attempt := 0; ; attempt++ {
		cn, err := c.getConn(ctx)
		if err != nil {
			return nil, err
		}
		nc, err := cn.client.DialContext(ctx, network, addr)
		if err == nil {
			return nc, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("host %s: tunnel to %s: %w", c.name, addr, ctx.Err())
		}
		// The host refused the channel (nothing listens at addr, no route from
		// there): its answer, over a connection that works; no ping needed.
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) {
			return nil, fmt.Errorf("host %s: tunnel to %s: %w", c.name, addr, err)
		}
		// Opening a channel never starts anything remote, so a dead connection is
		// simply replaced once.
		if attempt == 0 && !c.checkAlive(cn) {
			continue
		}
		return nil, fmt.Errorf("host %s: tunnel to %s: %w", c.name, addr, err)
	}
}

// checkAlive pings cn and, when it does not answer, marks it dead.
func (c *Client) checkAlive(cn *conn) bool {
	if !cn.alive() {
		return false
	}
	if err := cn.ping(c.cfg.KeepAliveTimeout); err != nil {
		cn.kill(err)
		return false
	}
	return true
}

// getConn returns the live connection, dialling a new one when there is none.
func (c *Client) getConn(ctx context.Context) (*conn, error) {
	if cn, err := c.current(); cn != nil || err != nil {
		return cn, err
	}
	select {
	case c.dialSem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("host %s: connecting: %w", c.name, ctx.Err())
	}
	defer func() { <-c.dialSem }()
	if cn, err := c.current(); cn != nil || err != nil {
		return cn, err
	}
	cn, err := dial(ctx, c.cfg)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", c.name, err)
	}
	c.dials.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		cn.kill(ErrClosed)
		return nil, ErrClosed
	}
	c.cur = cn
	return cn, nil
}

func (c *Client) current() (*conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.cur != nil && c.cur.alive() {
		return c.cur, nil
	}
	c.cur = nil
	return nil, nil
}

// dial opens and authenticates a connection following cfg (through its jump host
// when set) and starts its keepalive and watcher goroutines.
func dial(ctx context.Context, cfg Config) (*conn, error) {
	hostport := cfg.HostPort()
	hkcb, algos, err := hostKeyCheck(cfg)
	if err != nil {
		return nil, err
	}
	auth, agentConn, err := authMethods(cfg)
	if err != nil {
		return nil, err
	}
	defer agentConn.Close()

	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()

	var jump *conn
	var nc net.Conn
	if cfg.Jump != nil {
		jump, err = dial(ctx, *cfg.Jump)
		if err != nil {
			return nil, fmt.Errorf("jump host %s: %w", cfg.Jump.HostPort(), err)
		}
		nc, err = jump.client.DialContext(ctx, "tcp", hostport)
		if err != nil {
			jump.kill(err)
			return nil, fmt.Errorf("connecting to %s through jump host %s: %w", hostport, cfg.Jump.HostPort(), err)
		}
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", hostport)
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", hostport, err)
		}
	}

	// The handshake does not take a context: closing the socket ends it.
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(nc, hostport, &ssh.ClientConfig{
		Config:            ssh.Config{Ciphers: preferredCiphers},
		User:              cfg.User,
		Auth:              auth,
		HostKeyCallback:   hkcb,
		HostKeyAlgorithms: algos,
		Timeout:           cfg.ConnectTimeout,
	})
	if !stop() || err != nil {
		_ = nc.Close()
		if jump != nil {
			jump.kill(errors.New("target handshake failed"))
		}
		var he *HostKeyError
		if errors.As(err, &he) {
			return nil, he
		}
		if err == nil || ctx.Err() != nil {
			return nil, fmt.Errorf("ssh handshake with %s: %w", hostport, ctx.Err())
		}
		return nil, fmt.Errorf("ssh handshake with %s as %s: %w", hostport, cfg.User, err)
	}
	cn := &conn{client: ssh.NewClient(sc, chans, reqs), jump: jump, done: make(chan struct{})}
	go func() {
		err := cn.client.Wait()
		if err == nil {
			err = errors.New("connection closed by the server")
		}
		cn.kill(err)
	}()
	if jump != nil {
		go func() {
			<-jump.done
			cn.kill(fmt.Errorf("jump host connection lost: %w", jump.reason))
		}()
	}
	if cfg.KeepAlive > 0 {
		go keepAlive(cn, cfg.KeepAlive, cfg.KeepAliveTimeout)
	}
	return cn, nil
}

// preferredCiphers puts AES-GCM first (the snapshot transfer's cost is the
// cipher: with AES-NI, Go's aes128-gcm moves about twice the bytes per CPU
// second of chacha20-poly1305, the default of OpenSSH's scp), then
// chacha20-poly1305 for hosts without AES-GCM, then the CTR modes. This is
// x/crypto/ssh's own default order today, written here so that it does not
// change under us.
var preferredCiphers = []string{
	ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305,
	ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR,
}

func keepAlive(cn *conn, every, timeout time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-cn.done:
			return
		case <-t.C:
		}
		if err := cn.ping(timeout); err != nil {
			cn.kill(fmt.Errorf("keepalive failed: %w", err))
			return
		}
	}
}
