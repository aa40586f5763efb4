package sshx

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// RunOpts tunes one [Client.Run].
type RunOpts struct {
	// Stdin, when set, is streamed to the command's standard input.
	Stdin io.Reader
	// Stdout, when set, receives the standard output as it arrives instead of
	// Result.Stdout.
	Stdout io.Writer
	// Timeout bounds the command; when it expires (or ctx is cancelled) the remote
	// process group is killed and the error matches [ErrTimeout] (or ctx.Err()).
	Timeout time.Duration
	// Display is the form of the command shown in events (for a redacted command);
	// defaults to the command itself.
	Display string
}

// Result is what a command produced. A non-zero ExitCode is not a Go error.
type Result struct {
	// ExitCode is the remote exit status; -1 when none arrived. A command killed by
	// a signal reports 128 + the signal number.
	ExitCode int
	Stdout   []byte
	Stderr   []byte
	Duration time.Duration
}

// killGrace bounds the wait for a killed command's channel to close.
const killGrace = 10 * time.Second

// Run runs cmd, a shell command line, on the host through `sh -c` (wrapped as
// `sudo -n ...` when the Config says Sudo). Values inside cmd must have been quoted
// with [Quote]/[Join]. It returns a Go error only for transport failures, timeouts
// and cancellation; those may come with the partial Result gathered so far. An error
// matching [ErrConnectionLost] means the command may have run: probe, don't repeat.
func (c *Client) Run(ctx context.Context, cmd string, opts RunOpts) (Result, error) {
	start := time.Now()
	res, err := c.run(ctx, cmd, opts)
	res.Duration = time.Since(start)
	if c.hook != nil {
		shown := opts.Display
		if shown == "" {
			shown = cmd
		}
		c.hook(Event{Host: c.name, Cmd: shown, Start: start, Duration: res.Duration, ExitCode: res.ExitCode, Err: err})
	}
	return res, err
}

func (c *Client) run(ctx context.Context, cmd string, opts RunOpts) (Result, error) {
	res := Result{ExitCode: -1}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	select {
	case c.sessions <- struct{}{}:
	case <-ctx.Done():
		return res, c.ctxErr(ctx, opts, "waiting for a free ssh session")
	}
	defer func() { <-c.sessions }()

	cn, sess, err := c.newSession(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return res, c.ctxErr(ctx, opts, "waiting for an ssh session")
		}
		return res, err
	}
	defer sess.Close()

	token := randomToken()
	var stdout io.Writer
	outBuf := &lockedBuffer{}
	var userOut *stickyWriter
	if opts.Stdout != nil {
		userOut = &stickyWriter{w: opts.Stdout}
		stdout = userOut
	} else {
		stdout = outBuf
	}
	errBuf := &lockedBuffer{}
	sniff := newPGIDSniffer(token, errBuf)
	sess.Stdout = stdout
	sess.Stderr = sniff

	var stdin io.WriteCloser
	if opts.Stdin != nil {
		if stdin, err = sess.StdinPipe(); err != nil {
			return res, fmt.Errorf("host %s: stdin pipe: %w", c.name, err)
		}
	}

	if err := sess.Start(c.wrap(cmd, token)); err != nil {
		if !c.checkAlive(cn) {
			return res, &ConnLostError{Host: c.name, Err: err}
		}
		return res, fmt.Errorf("host %s: starting command: %w", c.name, err)
	}
	// Input is streamed only once the command exists to read it.
	var stdinDone chan struct{}
	var stdinSrc *readErrRecorder
	if stdin != nil {
		stdinDone = make(chan struct{})
		stdinSrc = &readErrRecorder{r: opts.Stdin}
		go func() {
			defer close(stdinDone)
			_, _ = io.Copy(stdin, stdinSrc)
			_ = stdin.Close()
		}()
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- sess.Wait() }()

	collect := func() Result {
		sniff.flush()
		res.Stdout = outBuf.Bytes()
		res.Stderr = errBuf.Bytes()
		return res
	}

	var werr error
	finished := false
	select {
	case werr = <-waitErr:
		finished = true
	case <-ctx.Done():
		// The command may have finished just as the deadline fired.
		select {
		case werr = <-waitErr:
			finished = true
		default:
		}
	}
	if finished {
		err := werr
		res = collect()
		var ee *ssh.ExitError
		switch {
		case err == nil:
			res.ExitCode = 0
		case errors.As(err, &ee):
			res.ExitCode = ee.ExitStatus()
		default:
			// No exit status: the connection or the channel went away under us.
			if !c.checkAlive(cn) {
				return res, &ConnLostError{Host: c.name, Err: cn.reason}
			}
			var em *ssh.ExitMissingError
			if errors.As(err, &em) {
				return res, &ConnLostError{Host: c.name, Err: err}
			}
			return res, fmt.Errorf("host %s: reading command output: %w", c.name, err)
		}
		if userOut != nil {
			if err := userOut.Err(); err != nil {
				return res, fmt.Errorf("host %s: writing command output: %w", c.name, err)
			}
		}
		if stdinDone != nil {
			// A local read error means the command saw truncated input: report it.
			// Write errors only mean the command stopped reading, its own business.
			t := time.NewTimer(killGrace)
			select {
			case <-stdinDone:
				if err := stdinSrc.Err(); err != nil {
					t.Stop()
					return res, fmt.Errorf("host %s: reading the command's stdin: %w", c.name, err)
				}
			case <-t.C:
			}
			t.Stop()
		}
		return res, nil
	}

	killErr := c.killRemote(cn, sess, sniff)
	_ = sess.Close()
	t := time.NewTimer(killGrace)
	select {
	case <-waitErr:
	case <-t.C:
	}
	t.Stop()
	res = collect()
	err = c.ctxErr(ctx, opts, "running command")
	if killErr != nil {
		err = fmt.Errorf("%w (and the remote process could not be killed: %v)", err, killErr)
	}
	return res, err
}

// stickyWriter stops writing at the first error, remembers it and swallows the rest
// of the stream, so the remote command is never blocked by a failed local writer.
type stickyWriter struct {
	w   io.Writer
	mu  sync.Mutex
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		_, s.err = s.w.Write(p)
	}
	return len(p), nil
}

// Err returns the first write error.
func (s *stickyWriter) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// readErrRecorder remembers the first read error other than io.EOF.
type readErrRecorder struct {
	r   io.Reader
	mu  sync.Mutex
	err error
}

func (r *readErrRecorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		r.mu.Lock()
		if r.err == nil {
			r.err = err
		}
		r.mu.Unlock()
	}
	return n, err
}

// Err returns the recorded read error.
func (r *readErrRecorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (c *Client) ctxErr(ctx context.Context, opts RunOpts, what string) error {
	if opts.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("host %s: %s: %w after %s", c.name, what, ErrTimeout, opts.Timeout)
	}
	return fmt.Errorf("host %s: %s: %w", c.name, what, ctx.Err())
}

// newSession opens a session, replacing a dead connection once: opening a session
// runs nothing remotely, so that retry is always safe.
func (c *Client) newSession(ctx context.Context) (*conn, *ssh.Session, error) {
	redialed := false
	for refused := 0; ; {
		cn, err := c.getConn(ctx)
		if err != nil {
			return nil, nil, err
		}
		sess, err := openSession(ctx, cn, &refused)
		if err == nil {
			return cn, sess, nil
		}
		if !redialed && !c.checkAlive(cn) {
			redialed = true
			continue
		}
		return nil, nil, fmt.Errorf("host %s: opening ssh session: %w", c.name, err)
	}
}

// sessionRefusals bounds how often a refused session (the server's MaxSessions is
// reached, e.g. by sessions still finishing a kill) is asked again, 250 ms apart.
const sessionRefusals = 40

// openSession opens a session on cn, waiting a little while the server refuses
// channels for lack of session slots.
func openSession(ctx context.Context, cn *conn, refused *int) (*ssh.Session, error) {
	for {
		sess, err := cn.client.NewSession()
		var oce *ssh.OpenChannelError
		if err == nil || !errors.As(err, &oce) || *refused >= sessionRefusals {
			if err != nil && oce != nil {
				err = fmt.Errorf("%w\nhint: the host's sshd MaxSessions is below the client's session limit: raise it in sshd_config or lower the limit", err)
			}
			return sess, err
		}
		*refused++
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// pgidScript is the script that runs as `sh -c SCRIPT sh`, the leader of its
// own process group, so its pid is the group of everything cmd starts: it
// reports that pid on stderr (consumed by pgidSniffer), then runs cmd in the
// same shell. cmd runs exactly as under `sh -c CMD`: $0 is sh, no positional
// parameters; exit, traps, here-documents and syntax errors are its own (a
// syntax error on cmd's first line is found before the marker prints, and
// the command fails at once, as it would alone). One shell, not a shell that
// execs a second one for cmd: a process less per command. "; " joins them,
// not a newline, so that a host's sudo log keeps one line per command.
func pgidScript(token, cmd string) string {
	return `printf 'sshx:%s:%s\n' ` + token + ` "$$" >&2; ` + cmd
}

// wrap builds the command line sent to the server. sshd starts the login shell with
// setsid(), so exec keeps it the process group leader. Under sudo the command is a
// child of sudo, hence setsid; -w keeps setsid waiting (and sudo with it) in case
// setsid has to fork. token is hex (randomToken), safe unquoted.
func (c *Client) wrap(cmd, token string) string {
	prefix := "exec sh -c "
	if c.cfg.Sudo {
		prefix = "exec sudo -n setsid -w sh -c "
	}
	return prefix + Quote(pgidScript(token, cmd)) + " sh"
}

// killRemote ends a timed-out command's remote process group with
// `kill -KILL -- -PGID`, run in a second session. The session's own signal request
// is sent too, but OpenSSH honours it only for non-root logins under privilege
// separation, and only as the login user. When the connection has no free session
// (a host allowing fewer sessions than configured) or is gone, the kill goes
// through a connection of its own.
func (c *Client) killRemote(cn *conn, sess *ssh.Session, sniff *pgidSniffer) error {
	_ = sess.Signal(ssh.SIGKILL)
	pgid, ok := sniff.waitPGID(2 * time.Second)
	if !ok {
		return errors.New("its process group is unknown (the command had not started)")
	}
	sudo := ""
	if c.cfg.Sudo {
		sudo = "sudo -n "
	}
	// Should the group not exist (a server that did not make the shell a group
	// leader), the process itself is killed.
	kill := fmt.Sprintf("%skill -KILL -- -%d 2>/dev/null || %skill -KILL %d", sudo, pgid, sudo, pgid)
	ctx, cancel := context.WithTimeout(context.Background(), killGrace)
	defer cancel()
	var err error
	if cn.alive() {
		refused := sessionRefusals - 4 // ask briefly, then use another connection
		var ks *ssh.Session
		if ks, err = openSession(ctx, cn, &refused); err == nil {
			return runKill(ctx, ks, kill)
		}
	} else {
		err = fmt.Errorf("connection lost: %v", cn.reason)
	}
	fresh, derr := dial(ctx, c.cfg)
	if derr != nil {
		return fmt.Errorf("no session to kill it (%v) nor a new connection: %w", err, derr)
	}
	defer fresh.kill(errors.New("kill connection done"))
	ks, err := fresh.client.NewSession()
	if err != nil {
		return fmt.Errorf("opening a session to kill it: %w", err)
	}
	return runKill(ctx, ks, kill)
}

func runKill(ctx context.Context, ks *ssh.Session, kill string) error {
	defer ks.Close()
	done := make(chan error, 1)
	go func() {
		out, err := ks.CombinedOutput(kill + " 2>&1 || true")
		if err == nil && len(bytes.TrimSpace(out)) > 0 && !bytes.Contains(out, []byte("No such process")) {
			err = fmt.Errorf("kill: %s", bytes.TrimSpace(out))
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return errors.New("kill did not finish")
	}
}

func randomToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// lockedBuffer is a bytes.Buffer safe to read while the session still writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// pgidSniffer passes stderr through to out, except the wrapper's
// "sshx:TOKEN:PGID" line, which it consumes and reports.
type pgidSniffer struct {
	prefix []byte
	out    io.Writer

	mu      sync.Mutex
	line    []byte // partial line while still looking for the marker
	found   bool
	pgid    int
	pgidSet chan struct{}
}

// maxSniff bounds what is searched for the marker; the wrapper prints it first.
const maxSniff = 64 << 10

func newPGIDSniffer(token string, out io.Writer) *pgidSniffer {
	return &pgidSniffer{prefix: []byte("sshx:" + token + ":"), out: out, pgidSet: make(chan struct{})}
}

func (s *pgidSniffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.found {
		return s.passThrough(p, len(p))
	}
	n := len(p)
	s.line = append(s.line, p...)
	for !s.found {
		i := bytes.IndexByte(s.line, '\n')
		if i < 0 {
			if len(s.line) > maxSniff {
				s.found = true // give up looking
				close(s.pgidSet)
				rest := s.line
				s.line = nil
				return s.passThrough(rest, n)
			}
			return n, nil
		}
		l := s.line[:i+1]
		if bytes.HasPrefix(l, s.prefix) {
			if v, err := strconv.Atoi(string(bytes.TrimSpace(l[len(s.prefix):]))); err == nil && v > 1 {
				s.pgid = v
			}
			s.found = true
			close(s.pgidSet)
			rest := s.line[i+1:]
			s.line = nil
			return s.passThrough(rest, n)
		}
		// Something printed before the marker (a login script, sudo): keep it.
		if _, err := s.out.Write(l); err != nil {
			return 0, err
		}
		s.line = s.line[i+1:]
	}
	return n, nil
}

func (s *pgidSniffer) passThrough(p []byte, n int) (int, error) {
	if len(p) > 0 {
		if _, err := s.out.Write(p); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// flush writes out a partial line held back while looking for the marker.
func (s *pgidSniffer) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.line) > 0 {
		_, _ = s.out.Write(s.line)
		s.line = nil
	}
}

func (s *pgidSniffer) waitPGID(d time.Duration) (int, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.pgidSet:
	case <-t.C:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pgid, s.pgid > 0
}
