package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// fakeClock moves only when a wait pauses: the attempts of a wait are
// counted and their times known without a real timer.
type fakeClock struct {
	now    time.Time
	pauses []time.Duration
}

func (f *fakeClock) Now() time.Time { return f.now }
func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.pauses = append(f.pauses, d)
	f.now = f.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- f.now
	return ch
}

func useFakeClock(t *testing.T) *fakeClock {
	t.Helper()
	f := &fakeClock{now: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	old := waitClock
	waitClock = f
	t.Cleanup(func() { waitClock = old })
	return f
}

// TestPollNoticesWithin100ms: whenever the state becomes true, the poll
// sees it at the next attempt, at most 100 ms later; no pause is longer
// than 100 ms, and the wait asks at most 20 times a second.
func TestPollNoticesWithin100ms(t *testing.T) {
	for _, trueAfter := range []time.Duration{0, 30 * time.Millisecond, 1999 * time.Millisecond, 2437 * time.Millisecond, 47 * time.Second} {
		f := useFakeClock(t)
		start := f.now
		var attempts []time.Duration
		err := poll(context.Background(), &quorumEnv{}, "test", func(ctx context.Context) (bool, error) {
			if _, ok := ctx.Deadline(); !ok {
				t.Fatal("an attempt has no deadline of its own")
			}
			at := f.now.Sub(start)
			attempts = append(attempts, at)
			return at >= trueAfter, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		seen := attempts[len(attempts)-1]
		if late := seen - trueAfter; late < 0 || late > 100*time.Millisecond {
			t.Errorf("true after %s, seen at %s: %s late", trueAfter, seen, late)
		}
		for _, p := range f.pauses {
			if p > 100*time.Millisecond {
				t.Errorf("true after %s: a pause of %s", trueAfter, p)
			}
		}
		// At most 20 attempts in any second, and at least 10 (no pause
		// above 100 ms).
		for i := range attempts {
			n := 0
			for j := i; j < len(attempts) && attempts[j]-attempts[i] < time.Second; j++ {
				n++
			}
			if n > 20 || (attempts[len(attempts)-1]-attempts[i] >= time.Second && n < 10) {
				t.Fatalf("true after %s: %d attempts in the second from %s", trueAfter, n, attempts[i])
			}
		}
	}
}

// TestPollStopsWithContext: a wait whose context ends gives up with its
// name and the context's error, after no further attempt.
func TestPollStopsWithContext(t *testing.T) {
	useFakeClock(t)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := poll(ctx, &quorumEnv{}, "wait for e1", func(context.Context) (bool, error) {
		n++
		if n == 3 {
			cancel()
		}
		return false, nil
	})
	if !errors.Is(err, context.Canceled) || n != 3 {
		t.Fatalf("err %v after %d attempts; want canceled after 3", err, n)
	}
}

// windowEtcd refuses member adds as etcd does for five seconds after a
// member connected ("unhealthy cluster"), on the fake clock.
type windowEtcd struct {
	refusingEtcd
	clock *fakeClock
	until time.Time
	addAt time.Time
}

func (w *windowEtcd) MemberAdd(context.Context, []string, bool) (Member, error) {
	w.adds++
	if w.clock.now.Before(w.until) {
		return Member{}, errRefused
	}
	w.addAt = w.clock.now
	return Member{ID: 9}, nil
}

// TestMemberAddRightAfterTheWindow: a member add refused while etcd's
// "unhealthy cluster" window lasts goes through within 100 ms of its end,
// and the refusals are logged about once a second, not once per attempt.
func TestMemberAddRightAfterTheWindow(t *testing.T) {
	f := useFakeClock(t)
	c, ts := testCtx(t, t.TempDir(), "systemd")
	api := &windowEtcd{clock: f, until: f.now.Add(4937 * time.Millisecond)}
	env := &quorumEnv{api: api, facts: map[string]string{}}
	if err := (&MemberAdd{}).Describe(c, ts[1])[0].Run(context.Background(), env); err != nil {
		t.Fatalf("member add: %v\nlogs %v", err, env.logs)
	}
	if late := api.addAt.Sub(api.until); late < 0 || late > 100*time.Millisecond {
		t.Errorf("added %s after the window ended", late)
	}
	if api.lists != 1 || api.adds < 40 || len(env.logs) > 6 || len(env.logs) == 0 {
		t.Errorf("%d lists, %d adds, %d log lines: want 1 list, the add asked every 50-100 ms, a line a second\n%v", api.lists, api.adds, len(env.logs), env.logs)
	}
}

// TestPromoteRightWhenInSync: a learner that is in sync after 3.3 s (as
// the leader sees it) is promoted within 100 ms of it.
func TestPromoteRightWhenInSync(t *testing.T) {
	f := useFakeClock(t)
	c, ts := testCtx(t, t.TempDir(), "systemd")
	inSync := f.now.Add(3300 * time.Millisecond)
	api := &clockedPromote{votersEtcd: votersEtcd{member: true}, clock: f, inSync: inSync}
	env := &quorumEnv{api: api, facts: map[string]string{}}
	acts := (&MemberPromote{Within: plans.Duration(time.Minute)}).Describe(c, ts[1])
	if err := acts[0].Run(context.Background(), env); err != nil {
		t.Fatalf("promote: %v", err)
	}
	if late := api.at.Sub(inSync); late < 0 || late > 100*time.Millisecond {
		t.Errorf("promoted %s after the learner was in sync", late)
	}
	// One list and one promote per attempt: about 20 attempts a second
	// for 2 s, then 10.
	if n := count(api.calls, "promote"); n < 40 || n > 1+40+14 {
		t.Errorf("%d promotes in 3.3 s", n)
	}
}

type clockedPromote struct {
	votersEtcd
	clock  *fakeClock
	inSync time.Time
	at     time.Time
}

func (c *clockedPromote) MemberPromote(ctx context.Context, id uint64) error {
	c.notReady = 0
	if c.clock.now.Before(c.inSync) {
		c.notReady = 1
	}
	err := c.votersEtcd.MemberPromote(ctx, id)
	if err == nil {
		c.at = c.clock.now
	}
	return err
}

func count(xs []string, x string) int {
	n := 0
	for _, s := range xs {
		if s == x {
			n++
		}
	}
	return n
}

// cmdShell records the commands it is given and answers them from a
// function.
type cmdShell struct {
	ran    []string
	answer func(cmd string) error
}

func (s *cmdShell) Run(_ context.Context, cmd string, _ io.Reader) ([]byte, error) {
	s.ran = append(s.ran, cmd)
	if s.answer != nil {
		return nil, s.answer(cmd)
	}
	return nil, nil
}
func (s *cmdShell) Upload(context.Context, string, string, os.FileMode) (string, error) {
	return "", errors.New("no upload")
}

type shellEnv struct {
	quorumEnv
	sh *cmdShell
}

func (e *shellEnv) Shell(string) (Runner, error) { return e.sh, nil }

// TestStartServiceEnablesAfterStart: with enable, etcd is started first
// and enabled after, in one remote command and without systemd's
// daemon-reload, and the Check is done only when the unit is active AND
// enabled, so a run killed between the two enables it on resume.
func TestStartServiceEnablesAfterStart(t *testing.T) {
	c, ts := testCtx(t, t.TempDir(), "systemd")
	s := &StartService{Enable: true}
	var cmds []string
	for _, a := range s.Describe(c, ts[1]) {
		cmds = append(cmds, a.Cmd)
	}
	if want := []string{"systemctl start --no-block etcd && systemctl enable --no-reload --quiet etcd"}; strings.Join(cmds, "|") != strings.Join(want, "|") {
		t.Fatalf("actions %q, want %q", cmds, want)
	}
	for name, tc := range map[string]struct {
		active, enabled, done bool
	}{
		"active, not enabled (killed between)": {true, false, false},
		"active and enabled":                   {true, true, true},
		"enabled, not active":                  {false, true, false},
	} {
		sh := &cmdShell{answer: func(cmd string) error {
			// The check run by sh, with systemctl a shell function
			// that answers for this case.
			fake := fmt.Sprintf(`systemctl() { case "$1" in is-active) [ %v = true ];; is-enabled) [ %v = true ];; show) echo inactive;; esac; }; `, tc.active, tc.enabled)
			if out, err := exec.Command("sh", "-c", fake+cmd).CombinedOutput(); err != nil {
				return &ExitError{Host: "h2", Cmd: cmd, Code: 1, Stderr: string(out)}
			}
			return nil
		}}
		done, _, err := s.Check(context.Background(), c, &shellEnv{sh: sh}, ts[1])
		if err != nil || done != tc.done {
			t.Errorf("%s: done %v, %v; want %v (check %q)", name, done, err, tc.done, sh.ran)
		}
		if !strings.Contains(sh.ran[0], "systemctl is-enabled --quiet etcd") {
			t.Errorf("%s: the check does not ask whether etcd is enabled: %q", name, sh.ran[0])
		}
	}
}

// TestStopServiceDisablesInOneCommand: with disable, the stop and the
// disable are one remote command without systemd's daemon-reload, a unit
// that is not installed counts as stopped and disabled, and the Check is
// done only when the unit is inactive AND not enabled, so a run killed
// between the two disables it on resume (the fence holds at reboot).
func TestStopServiceDisablesInOneCommand(t *testing.T) {
	c, ts := testCtx(t, t.TempDir(), "systemd")
	s := &StopService{Disable: true}
	var cmds []string
	for _, a := range s.Describe(c, ts[1]) {
		cmds = append(cmds, a.Cmd)
	}
	want := []string{"systemctl stop etcd && systemctl disable --no-reload --quiet etcd || { [ $? = 5 ] && echo 'etcd is not installed here: nothing to stop or disable'; }"}
	if strings.Join(cmds, "|") != strings.Join(want, "|") {
		t.Fatalf("actions %q, want %q", cmds, want)
	}
	// The command itself, run by sh with systemctl a shell function.
	for name, tc := range map[string]struct {
		stopRC, disableRC int
		ok                bool
		disabled          bool
	}{
		"stopped and disabled":          {0, 0, true, true},
		"not installed (exit 5)":        {5, 0, true, false},
		"stop failed":                   {1, 0, false, false},
		"disable failed after the stop": {0, 1, false, true},
	} {
		fake := fmt.Sprintf(`systemctl() { case "$1" in stop) return %d;; disable) echo disable-ran; return %d;; esac; }; `, tc.stopRC, tc.disableRC)
		out, err := exec.Command("sh", "-c", fake+cmds[0]).CombinedOutput()
		if (err == nil) != tc.ok || strings.Contains(string(out), "disable-ran") != tc.disabled {
			t.Errorf("%s: exit %v, output %q; want ok %v, disable run %v", name, err, out, tc.ok, tc.disabled)
		}
	}
	for name, tc := range map[string]struct {
		active, enabled, done bool
	}{
		"stopped, still enabled (killed between)": {false, true, false},
		"stopped and disabled":                    {false, false, true},
		"disabled, still active":                  {true, false, false},
	} {
		sh := &cmdShell{answer: func(cmd string) error {
			fake := fmt.Sprintf(`systemctl() { case "$1" in is-active) [ %v = true ];; is-enabled) [ %v = true ];; esac; }; `, tc.active, tc.enabled)
			if out, err := exec.Command("sh", "-c", fake+cmd).CombinedOutput(); err != nil {
				return &ExitError{Host: "h2", Cmd: cmd, Code: 1, Stderr: string(out)}
			}
			return nil
		}}
		done, _, err := s.Check(context.Background(), c, &shellEnv{sh: sh}, ts[1])
		if err != nil || done != tc.done {
			t.Errorf("%s: done %v, %v; want %v (check %q)", name, done, err, tc.done, sh.ran)
		}
	}
}
