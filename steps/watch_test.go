package steps

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

const showCrashLoop = `LoadState=loaded
ActiveState=activating
SubState=auto-restart
Result=exit-code
ExecMainStatus=203
ExecMainCode=1
NRestarts=4
`

func TestParseUnitState(t *testing.T) {
	u := ParseUnitState(showCrashLoop + "garbage line\nNRestarts=x=y\n")
	if u.ActiveState != "activating" || u.SubState != "auto-restart" || u.Result != "exit-code" || u.ExecMainCode != 1 || u.ExecMainStatus != 203 {
		t.Errorf("parsed %+v", u)
	}
	if got := u.Status(); got != "exit status 203 (status=203/EXEC)" {
		t.Errorf("status %q", got)
	}
	k := ParseUnitState("ExecMainCode=2\nExecMainStatus=9\n")
	if got := k.Status(); got != "killed by signal 9 (status=9/KILL)" {
		t.Errorf("signal status %q", got)
	}
	if got := ParseUnitState("ExecMainCode=0\n").Status(); got != "" {
		t.Errorf("never ran: %q", got)
	}
	if got := ParseUnitState("ExecMainCode=1\nExecMainStatus=77\n").Status(); got != "exit status 77 (status=77)" {
		t.Errorf("unnamed status %q", got)
	}
}

func TestUnitFailing(t *testing.T) {
	running := ParseUnitState("LoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nNRestarts=2\n")
	for name, tc := range map[string]struct {
		now, base string
		want      string
	}{
		"running":              {"LoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nNRestarts=2", "", ""},
		"activating (notify)":  {"LoadState=loaded\nActiveState=activating\nSubState=start\nResult=success\nNRestarts=2", "", ""},
		"crash loop":           {showCrashLoop, "", "auto-restart"},
		"failed":               {"ActiveState=failed\nSubState=failed\nResult=exit-code", "", "result exit-code"},
		"restarted since":      {"ActiveState=activating\nSubState=start\nResult=success\nNRestarts=5", "NRestarts=2", "restarted 3 time(s)"},
		"not installed":        {"LoadState=not-found\nActiveState=inactive", "", "not installed"},
		"stopped with failure": {"ActiveState=inactive\nSubState=dead\nResult=signal", "", "result signal"},
		"stopped cleanly":      {"ActiveState=inactive\nSubState=dead\nResult=success", "", ""},
	} {
		base := running
		if tc.base != "" {
			base = ParseUnitState(tc.base)
		}
		got := ParseUnitState(tc.now).failing(base)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}

func TestParseContainer(t *testing.T) {
	k, err := ParseContainer([]byte(`{"status":{"id":"abc","metadata":{"attempt":3,"name":"etcd"},"state":"CONTAINER_EXITED","exitCode":1,"reason":"Error"}}`))
	if err != nil || k.ID != "abc" || k.State != "CONTAINER_EXITED" || k.ExitCode != 1 || k.Attempt != 3 || k.Reason != "Error" {
		t.Fatalf("%+v %v", k, err)
	}
	if why := k.failing(Container{Attempt: 3}); !strings.Contains(why, "exited") {
		t.Errorf("exited: %q", why)
	}
	if why := (Container{ID: "b", State: "CONTAINER_RUNNING", Attempt: 5}).failing(Container{ID: "a", Attempt: 3}); !strings.Contains(why, "restarted 2") {
		t.Errorf("restarted: %q", why)
	}
	// The container the kubelet stopped before, still the newest: not a
	// failure; the new pod's first container: not one either.
	if why := (Container{ID: "a", State: "CONTAINER_EXITED", Attempt: 3}).failing(Container{ID: "a", State: "CONTAINER_EXITED", Attempt: 3}); why != "" {
		t.Errorf("old container: %q", why)
	}
	if why := (Container{ID: "b", State: "CONTAINER_RUNNING"}).failing(Container{ID: "a", State: "CONTAINER_EXITED", Attempt: 3}); why != "" {
		t.Errorf("new pod: %q", why)
	}
	if _, err := ParseContainer([]byte("not json")); err == nil {
		t.Error("no error on garbage")
	}
}

func TestSplitLogLines(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 20; i++ {
		b.WriteString("line " + string(rune('a'+i)) + "  \n\n")
	}
	got := SplitLogLines(b.String(), 15)
	if len(got) != 15 || got[0] != "line f" || got[14] != "line t" {
		t.Errorf("%q", got)
	}
}

// TestPickLogLines: etcd given an unknown flag prints the error, then its
// whole usage: the error line is kept ahead of the tail.
func TestPickLogLines(t *testing.T) {
	var b strings.Builder
	b.WriteString("old start line\nError: unknown flag: --bogus\n")
	for i := 0; i < 40; i++ {
		b.WriteString("  usage line\n")
	}
	b.WriteString("etcd.service: Main process exited, code=exited, status=2/INVALIDARGUMENT\n")
	got := PickLogLines(b.String(), 15)
	if len(got) != 15 || got[0] != "Error: unknown flag: --bogus" || got[1] != "..." || got[14] != "etcd.service: Main process exited, code=exited, status=2/INVALIDARGUMENT" {
		t.Errorf("%q", got)
	}
	// etcd's own words for an unknown flag (3.5-3.7)
	out, _ := os.ReadFile("testdata/etcd-unknown-flag.log")
	if got := PickLogLines(string(out), 15); got[0] != "flag provided but not defined: -e2e-no-such-flag" {
		t.Errorf("the flag error is not kept: %q", got)
	}
	// no error line further up: just the last n
	if got := PickLogLines(strings.Repeat("x\n", 30), 15); len(got) != 15 || got[0] != "x" {
		t.Errorf("%q", got)
	}
	// a short log is kept whole
	if got := PickLogLines("a\nb\n", 15); len(got) != 2 {
		t.Errorf("%q", got)
	}
}

// unitHost answers the watch's commands like a host whose etcd unit
// cannot start.
type unitHost struct {
	mu    sync.Mutex
	show  []string // successive systemctl show outputs (the last repeats)
	looks int
	cmds  []string
	facts map[string]string
	logs  []string
	down  bool
}

func (h *unitHost) Shell(string) (Runner, error) {
	if h.down {
		return nil, errors.New("dial tcp 10.9.0.1:22: connect: no route to host")
	}
	return h, nil
}
func (h *unitHost) Etcd(context.Context) (Etcd, error) { return nil, errors.New("no etcd") }
func (h *unitHost) Fact(k string) (string, bool)       { v, ok := h.facts[k]; return v, ok }
func (h *unitHost) SetFact(k, v string) error          { return nil }
func (h *unitHost) Logf(format string, args ...any)    { h.logs = append(h.logs, format) }
func (h *unitHost) Upload(context.Context, string, string, os.FileMode) (string, error) {
	return "", nil
}
func (h *unitHost) Run(ctx context.Context, cmd string, _ io.Reader) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cmds = append(h.cmds, cmd)
	switch {
	case strings.HasPrefix(cmd, "systemctl show"):
		out := h.show[min(h.looks, len(h.show)-1)]
		h.looks++
		return []byte(out), nil
	case strings.HasPrefix(cmd, "journalctl"):
		return []byte("{\"level\":\"info\",\"msg\":\"starting\"}\n/usr/local/bin/etcd: No such file or directory\n"), nil
	}
	return nil, nil
}

func TestWaitWatchingEndsOnACrashLoop(t *testing.T) {
	defer func(d time.Duration) { watchEvery = d }(watchEvery)
	watchEvery = 20 * time.Millisecond
	c, _ := testCtx(t, t.TempDir(), "systemd")
	h := &unitHost{show: []string{"ActiveState=activating\nSubState=start\nNRestarts=0", showCrashLoop}}
	start := time.Now()
	err := WaitWatching(context.Background(), h, c, []string{"h4"}, func(ctx context.Context) error {
		<-ctx.Done() // a poll that would wait for its deadline
		return ctx.Err()
	})
	var se *ServiceError
	if !errors.As(err, &se) {
		t.Fatalf("want a ServiceError, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"etcd on h4 cannot run", "auto-restart", "exit status 203 (status=203/EXEC)", "log: /usr/local/bin/etcd: No such file or directory"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("took %s", time.Since(start))
	}
}

func TestWaitWatchingHappyPathCostsNothing(t *testing.T) {
	c, _ := testCtx(t, t.TempDir(), "systemd")
	h := &unitHost{show: []string{showCrashLoop}}
	err := WaitWatching(context.Background(), h, c, []string{"h1", "h2"}, func(ctx context.Context) error { return nil })
	if err != nil || len(h.cmds) != 0 {
		t.Errorf("err %v, ran %v", err, h.cmds)
	}
	// The wait's own error is kept when the service looks fine, and a
	// host that cannot be looked at is left to the wait.
	defer func(d time.Duration) { watchEvery = d }(watchEvery)
	watchEvery = 10 * time.Millisecond
	h = &unitHost{down: true}
	want := errors.New("promote e1: gave up")
	err = WaitWatching(context.Background(), h, c, []string{"h1"}, func(ctx context.Context) error {
		time.Sleep(50 * time.Millisecond)
		return want
	})
	if err != want {
		t.Errorf("got %v, want the wait's error", err)
	}
}

func TestWaitWatchingStaticPodWithoutCrictl(t *testing.T) {
	defer func(d time.Duration) { watchEvery = d }(watchEvery)
	watchEvery = 10 * time.Millisecond
	c, _ := testCtx(t, t.TempDir(), "static-pod")
	h := &podHost{out: "absent\n"}
	_ = WaitWatching(context.Background(), h, c, []string{"h1"}, func(ctx context.Context) error {
		time.Sleep(60 * time.Millisecond)
		return nil
	})
	if h.n != 1 || len(h.logs) != 1 || !strings.Contains(h.logs[0], "not available") {
		t.Errorf("looked %d times, logs %q", h.n, h.logs)
	}
	h = &podHost{out: "abc123\n" + `{"status":{"metadata":{"attempt":2},"state":"CONTAINER_EXITED","exitCode":1}}`}
	err := WaitWatching(context.Background(), h, c, []string{"h1"}, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if err == nil || !strings.Contains(err.Error(), "exit status 1 (status=1)") || !strings.Contains(err.Error(), "log: panic: bad flag") {
		t.Errorf("got %v", err)
	}
}

type podHost struct {
	unitHost
	out string
	n   int
}

func (h *podHost) Shell(string) (Runner, error) { return h, nil }
func (h *podHost) Logf(format string, args ...any) {
	h.mu.Lock()
	h.logs = append(h.logs, format)
	h.mu.Unlock()
}
func (h *podHost) Run(ctx context.Context, cmd string, _ io.Reader) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if strings.HasPrefix(cmd, "crictl logs") {
		return []byte("panic: bad flag\n"), nil
	}
	h.n++
	return []byte(h.out), nil
}

// failingStart fails systemctl start like a unit whose binary is missing.
type failingStart struct{ unitHost }

func (h *failingStart) Shell(string) (Runner, error) { return h, nil }
func (h *failingStart) Run(ctx context.Context, cmd string, r io.Reader) ([]byte, error) {
	if strings.HasPrefix(cmd, "systemctl start") {
		return nil, &ExitError{Host: "h1", Cmd: cmd, Code: 1, Stderr: "Job for etcd.service failed because the control process exited with error code."}
	}
	return h.unitHost.Run(ctx, cmd, r)
}

func TestBlockingStartNamesTheUnitFailure(t *testing.T) {
	c, ts := testCtx(t, t.TempDir(), "systemd")
	block := true
	h := &failingStart{unitHost{show: []string{"ActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainCode=1\nExecMainStatus=203\nNRestarts=0"}}}
	acts := (&StartService{Block: &block}).Describe(c, ts[0])
	err := acts[len(acts)-1].Run(context.Background(), h)
	var se *ServiceError
	var ee *ExitError
	if !errors.As(err, &se) || !errors.As(err, &ee) {
		t.Fatalf("want a ServiceError and the ExitError: %v", err)
	}
	for _, want := range []string{"etcd on h1 cannot run: the unit failed (result exit-code), last exit status 203 (status=203/EXEC)", "log: /usr/local/bin/etcd: No such file or directory", "Job for etcd.service failed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}
