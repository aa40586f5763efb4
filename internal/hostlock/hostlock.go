// Package hostlock is the per-host run lock: one recovery of a cluster at a
// time. A run holds, on every host it changes, an flock on /run/etcd-rescue.lock
// (tmpfs: gone at reboot) through one SSH session of its own, running a small
// bash script that takes `flock -n`, writes who holds it to
// /run/etcd-rescue.lock.owner, prints a ready line, then waits on its standard
// input. The lock frees itself when that session ends:
//
//   - at once when the holder's connection closes (the run ends, or etcd-rescue
//     is killed: its TCP connection closes and the script reads EOF);
//   - within Silence (30 s) when the connection is half-open (the operator's
//     machine lost power): the holder writes a heartbeat line every Heartbeat
//     (2 s), and the script exits when it hears nothing for Silence (bash
//     `read -t`).
//
// A second run finds the lock held and is refused with the owner's record
// (*HeldError). The same run (a resume right after a kill -9 of that run, while
// its old connection is still closing) waits up to SameRunWait for the release.
package hostlock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
)

// Path is the lock file on every host; OwnerPath records the holder.
const (
	Path      = "/run/etcd-rescue.lock"
	OwnerPath = Path + ".owner"
)

// Defaults of Options.
const (
	DefaultSilence     = 30 * time.Second
	DefaultHeartbeat   = 2 * time.Second
	DefaultSameRunWait = 10 * time.Second
	// readyTimeout bounds the wait for the script's first line.
	readyTimeout = 30 * time.Second
)

// Owner is who holds a host lock.
type Owner struct {
	RunID    string
	Operator string // user@machine
	PID      int
	StateDir string
	Started  time.Time
	// HolderPID is the pid of the lock script on the host (kill it there to
	// break the lock); filled in by the script.
	HolderPID int
}

func (o Owner) encode() string {
	return "run=" + o.RunID + "\noperator=" + o.Operator + "\npid=" + strconv.Itoa(o.PID) +
		"\nstateDir=" + o.StateDir + "\nstarted=" + o.Started.UTC().Format(time.RFC3339)
}

// ParseOwner reads an owner file; unknown lines are ignored.
func ParseOwner(s string) Owner {
	var o Owner
	for _, l := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok {
			continue
		}
		switch k {
		case "run":
			o.RunID = v
		case "operator":
			o.Operator = v
		case "pid":
			o.PID, _ = strconv.Atoi(v)
		case "stateDir":
			o.StateDir = v
		case "started":
			o.Started, _ = time.Parse(time.RFC3339, v)
		case "holderPid":
			o.HolderPID, _ = strconv.Atoi(v)
		}
	}
	return o
}

func (o Owner) String() string {
	if o.RunID == "" {
		return "an unknown run (its owner record is missing)"
	}
	s := fmt.Sprintf("run %s of %s (pid %d, state dir %s)", o.RunID, o.Operator, o.PID, o.StateDir)
	if !o.Started.IsZero() {
		s += " since " + o.Started.UTC().Format(time.RFC3339)
	}
	return s
}

// Options tune Acquire; zero values take the defaults.
type Options struct {
	Path        string
	Silence     time.Duration
	Heartbeat   time.Duration
	SameRunWait time.Duration
}

func (o Options) withDefaults() Options {
	if o.Path == "" {
		o.Path = Path
	}
	if o.Silence <= 0 {
		o.Silence = DefaultSilence
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Heartbeat >= o.Silence {
		o.Heartbeat = o.Silence / 3
	}
	if o.SameRunWait <= 0 {
		o.SameRunWait = DefaultSameRunWait
	}
	return o
}

const tag = "ETCD_RESCUE_LOCK"

// Script is the remote lock script for owner. It prints one status line:
// "ETCD_RESCUE_LOCK held", "ETCD_RESCUE_LOCK busy" (then the owner record
// and "ETCD_RESCUE_LOCK end"), "ETCD_RESCUE_LOCK missing WHAT" or
// "ETCD_RESCUE_LOCK error WHY".
func Script(owner Owner, o Options) string {
	o = o.withDefaults()
	secs := func(d time.Duration) string { return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second))) }
	return "L=" + shellquote.Quote(o.Path) + "; RUN=" + shellquote.Quote(owner.RunID) +
		"; PID=" + strconv.Itoa(owner.PID) + "; OWNER=" + shellquote.Quote(owner.encode()) + "; SILENCE=" + secs(o.Silence) + "; WAIT=" + secs(o.SameRunWait) + `
command -v flock >/dev/null 2>&1 || { echo "` + tag + ` missing flock (util-linux)"; exit 0; }
exec 9>>"$L" 2>/dev/null || { echo "` + tag + ` error cannot open $L for writing (not root? set ssh.sudo)"; exit 0; }
if ! flock -n 9; then
  got=0
  if [ -r "$L.owner" ] && grep -qxF "run=$RUN" "$L.owner"; then
    if grep -qxF "pid=$PID" "$L.owner"; then
      # This very session holds it already: the same machine under two
      # host names. Share it; the other session frees it.
      echo "` + tag + ` held"
      while IFS= read -r -t "$SILENCE" _; do :; done
      exit 0
    fi
    flock -w "$WAIT" 9 && got=1
  fi
  if [ "$got" = 0 ]; then
    echo "` + tag + ` busy"; cat "$L.owner" 2>/dev/null; echo; echo "` + tag + ` end"; exit 0
  fi
fi
printf '%s\nholderPid=%s\n' "$OWNER" "$$" > "$L.owner.$$" && mv -f "$L.owner.$$" "$L.owner"
echo "` + tag + ` held"
while IFS= read -r -t "$SILENCE" _; do :; done
rm -f "$L.owner"
exit 0
`
}

// Runner runs a command over SSH with streamed input and output
// (*sshx.Client).
type Runner interface {
	Run(ctx context.Context, cmd string, opts sshx.RunOpts) (sshx.Result, error)
}

// HeldError is a host lock held by another run (or by this run's previous
// session, still holding after SameRunWait).
type HeldError struct {
	Host  string
	Owner Owner
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s is locked by %s: another recovery of this cluster is running there", e.Host, e.Owner)
}

// MissingError is a host lacking what the lock needs (flock, bash, a
// writable /run): a prerequisite.
type MissingError struct {
	Host string
	What string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("host %s cannot hold the run lock: %s", e.Host, e.What)
}

// Lock is a held host lock.
type Lock struct {
	host   string
	stdin  *io.PipeWriter
	cancel context.CancelFunc
	done   chan struct{} // closed when the lock session ended
	err    error         // why it ended, once done

	mu       sync.Mutex
	released bool
}

// Acquire takes the lock of host through r. It returns once the script
// said held (a *Lock), busy (*HeldError), or could not run
// (*MissingError, or the SSH error).
func Acquire(ctx context.Context, host string, r Runner, owner Owner, o Options) (*Lock, error) {
	o = o.withDefaults()
	pr, pw := io.Pipe()
	lines := make(chan string, 64)
	lw := &lineWriter{ch: lines}
	lctx, cancel := context.WithCancel(context.Background())
	l := &Lock{host: host, stdin: pw, cancel: cancel, done: make(chan struct{})}
	go func() {
		res, err := r.Run(lctx, "exec bash -c "+shellquote.Quote(Script(owner, o)), sshx.RunOpts{Stdin: pr, Stdout: lw, Display: "etcd-rescue host lock " + o.Path + " (held for the session)"})
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("lock script exited %d: %s", res.ExitCode, strings.TrimSpace(string(res.Stderr)))
			if res.ExitCode == 127 {
				err = &MissingError{Host: host, What: "bash not found: " + strings.TrimSpace(string(res.Stderr))}
			}
		}
		l.err = err
		_ = pr.Close()
		close(l.done)
		lw.close()
	}()

	fail := func(err error) (*Lock, error) {
		l.Release()
		return nil, err
	}
	timer := time.NewTimer(readyTimeout + o.SameRunWait)
	defer timer.Stop()
	var busy []string
	inBusy := false
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				<-l.done
				if l.err != nil {
					return fail(fmt.Errorf("host %s: taking the run lock: %w", host, l.err))
				}
				return fail(fmt.Errorf("host %s: the run lock script ended without saying whether it holds the lock", host))
			}
			switch {
			case inBusy && line == tag+" end":
				return fail(&HeldError{Host: host, Owner: ParseOwner(strings.Join(busy, "\n"))})
			case inBusy:
				busy = append(busy, line)
			case line == tag+" held":
				go l.heartbeat(o.Heartbeat)
				return l, nil
			case line == tag+" busy":
				inBusy = true
			case strings.HasPrefix(line, tag+" missing "):
				return fail(&MissingError{Host: host, What: strings.TrimPrefix(line, tag+" missing ") + " is not installed"})
			case strings.HasPrefix(line, tag+" error "):
				return fail(&MissingError{Host: host, What: strings.TrimPrefix(line, tag+" error ")})
			}
		case <-timer.C:
			return fail(fmt.Errorf("host %s: the run lock script did not answer within %s", host, readyTimeout+o.SameRunWait))
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
}

// heartbeat tells the script the holder is alive.
func (l *Lock) heartbeat(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if _, err := l.stdin.Write([]byte("\n")); err != nil {
				return
			}
		case <-l.done:
			return
		}
	}
}

// Host is the host locked.
func (l *Lock) Host() string { return l.host }

// Lost reports whether the lock session ended without Release (its
// connection dropped, or someone killed the script on the host), and why.
func (l *Lock) Lost() (bool, error) {
	l.mu.Lock()
	released := l.released
	l.mu.Unlock()
	if released {
		return false, nil
	}
	select {
	case <-l.done:
		err := l.err
		if err == nil {
			err = errors.New("the lock script ended")
		}
		return true, err
	default:
		return false, nil
	}
}

// Release frees the lock: the script reads EOF, removes the owner record
// and exits. It waits a little for that, then drops the session.
func (l *Lock) Release() {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return
	}
	l.released = true
	l.mu.Unlock()
	_ = l.stdin.Close()
	select {
	case <-l.done:
	case <-time.After(3 * time.Second):
	}
	l.cancel()
}

// lineWriter splits the script's output into lines.
type lineWriter struct {
	mu     sync.Mutex
	buf    []byte
	ch     chan string
	closed bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	sc := bufio.NewScanner(strings.NewReader(string(w.buf)))
	consumed := 0
	for sc.Scan() {
		line := sc.Text()
		if consumed+len(line) >= len(w.buf) || w.buf[consumed+len(line)] != '\n' {
			break // a partial last line
		}
		consumed += len(line) + 1
		select {
		case w.ch <- line:
		default: // nobody reads any more
		}
	}
	w.buf = w.buf[consumed:]
	return len(p), nil
}

func (w *lineWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
}

// Broken is what Break found on a host.
type Broken struct {
	Held   bool  // the lock was held
	Owner  Owner // its record (zero when none)
	Killed bool  // the holder's script was killed
}

// Break frees the lock of a live holder on the host behind r: it kills the
// holder's script (HolderPID of the owner record) when the lock is held,
// and removes the record. The holder's etcd-rescue then stops before its
// next change on that host (it cannot take the lock again while another
// run holds it).
func Break(ctx context.Context, r Runner, o Options) (Broken, error) {
	o = o.withDefaults()
	script := "L=" + shellquote.Quote(o.Path) + `
cat "$L.owner" 2>/dev/null; echo
if [ ! -e "$L" ] || flock -n "$L" true 2>/dev/null; then echo "` + tag + ` free"; exit 0; fi
echo "` + tag + ` held"
p=$(sed -n 's/^holderPid=//p' "$L.owner" 2>/dev/null)
if [ -n "$p" ] && kill -9 "$p" 2>/dev/null; then rm -f "$L.owner"; echo "` + tag + ` killed"; fi
exit 0
`
	res, err := r.Run(ctx, "exec bash -c "+shellquote.Quote(script), sshx.RunOpts{Display: "etcd-rescue: break the host lock " + o.Path})
	if err != nil {
		return Broken{}, err
	}
	if res.ExitCode != 0 {
		return Broken{}, fmt.Errorf("breaking the lock: exit %d: %s", res.ExitCode, strings.TrimSpace(string(res.Stderr)))
	}
	out := string(res.Stdout)
	var b Broken
	rec, _, _ := strings.Cut(out, tag+" ")
	b.Owner = ParseOwner(rec)
	b.Held = strings.Contains(out, tag+" held")
	b.Killed = strings.Contains(out, tag+" killed")
	return b, nil
}
