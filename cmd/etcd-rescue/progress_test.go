package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// screen replays out the way a terminal width cells wide shows it: text
// (wrapping at the width), \n, \r, cursor up (ESC[nA), clear to the end of
// the screen (ESC[J); colour codes are dropped. Any other escape fails the
// test. The scrollback is kept: the result is every line, top to bottom.
func screen(t *testing.T, out string, width int) []string {
	t.Helper()
	lines := [][]rune{nil}
	row, col := 0, 0
	rs := []rune(out)
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; r {
		case '\n':
			row, col = row+1, 0
			if row == len(lines) {
				lines = append(lines, nil)
			}
		case '\r':
			col = 0
		case 0x1b:
			j := i + 2
			for j < len(rs) && (rs[j] >= '0' && rs[j] <= '9' || rs[j] == ';') {
				j++
			}
			if i+1 >= len(rs) || rs[i+1] != '[' || j >= len(rs) {
				t.Fatalf("unterminated escape at %d: %q", i, string(rs[i:min(i+10, len(rs))]))
			}
			switch rs[j] {
			case 'A':
				n, _ := strconv.Atoi(string(rs[i+2 : j]))
				if n == 0 {
					n = 1
				}
				if row -= n; row < 0 {
					t.Fatalf("cursor moved above the first line")
				}
			case 'J':
				lines[row] = lines[row][:min(col, len(lines[row]))]
				lines = lines[:row+1]
			case 'm':
			default:
				t.Fatalf("unexpected escape %q", string(rs[i:j+1]))
			}
			i = j
		default:
			if col >= width { // the terminal wraps
				row, col = row+1, 0
				if row == len(lines) {
					lines = append(lines, nil)
				}
			}
			for len(lines[row]) < col {
				lines[row] = append(lines[row], ' ')
			}
			if col < len(lines[row]) {
				lines[row][col] = r
			} else {
				lines[row] = append(lines[row], r)
			}
			col++
		}
	}
	var s []string
	for _, l := range lines {
		s = append(s, strings.TrimRight(string(l), " "))
	}
	if len(s) > 0 && s[len(s)-1] == "" { // the line the cursor waits on
		s = s[:len(s)-1]
	}
	return s
}

var sgr = regexp.MustCompile(`\x1b\[[0-9;]*m`)

var clock = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// testState has a step-host in every status.
func testState() *runstate.State {
	at := func(d time.Duration) *time.Time { t := clock.Add(d); return &t }
	return &runstate.State{RunID: "20261122T100000Z-ab12", Steps: []*runstate.StepState{
		{ID: "record", Type: "check-quorum", Hosts: []*runstate.HostState{
			{Status: runstate.StatusDone, Attempts: 1, Started: at(-20 * time.Second), Finished: at(-18 * time.Second), Elapsed: 1500, Why: "3 members report revision 812"},
		}},
		{ID: "stop-etcd", Type: "stop-service", Hosts: []*runstate.HostState{
			{Host: "node1", Status: runstate.StatusDone, Attempts: 1, Started: at(-10 * time.Second), Finished: at(-8 * time.Second), Elapsed: 2300},
			{Host: "node2", Status: runstate.StatusRunning, Attempts: 1, Started: at(-3 * time.Second)},
			{Host: "node3", Status: runstate.StatusFailed, Attempts: 2, Started: at(-70 * time.Second), Finished: at(-5 * time.Second), Elapsed: 65000,
				Error: "exit 1: systemctl stop etcd: s3cret-pw\x1b[2J denied\nsecond line"},
		}},
		{ID: "restore", Type: "restore", Hosts: []*runstate.HostState{
			{Host: "node1", Status: runstate.StatusPending},
			{Host: "node2", Status: runstate.StatusSkipped, Why: "not run: step stop-etcd did not complete"},
		}},
		{ID: "ok", Type: "approve", Hosts: []*runstate.HostState{
			{Status: runstate.StatusPending, Why: "waiting for approval"},
		}},
	}}
}

// testView is a view on buf with a fixed clock and size and no ticker.
func testView(t *testing.T, buf *bytes.Buffer, width, height int, color bool) (*liveView, *time.Time) {
	t.Helper()
	if color {
		t.Setenv("NO_COLOR", "")
	} else {
		t.Setenv("NO_COLOR", "1")
	}
	v := newView(buf, nil)
	now := clock
	v.now = func() time.Time { return now }
	v.size = func() (int, int) { return width, height }
	return v, &now
}

func secretRedactor() *engine.Redactor {
	return engine.NewRedactor(&plans.Plan{Vars: map[string]string{"dbPassword": "s3cret-pw"}})
}

func TestProgressFrame(t *testing.T) {
	var buf bytes.Buffer
	v, now := testView(t, &buf, 100, 40, false)
	st := testState()
	v.attach(func() *runstate.State { return st }, secretRedactor())
	want := []string{
		"run 20261122T100000Z-ab12: 2/7 done, 1 failed, 1 running, 1 skipped; elapsed 0.0s",
		"STEP       HOST   STATUS   ELAPSED  NOTE",
		"record     -      done        1.5s  3 members report revision 812",
		"stop-etcd  node1  done        2.3s",
		"stop-etcd  node2  running     3.0s",
		"stop-etcd  node3  failed     1m05s  exit 1: systemctl stop etcd: <redacted>?[2J denied ...",
		"restore    node1  waiting        -",
		"restore    node2  skipped        -  not run: step stop-etcd did not complete",
		"ok         -      waiting        -  waiting for approval",
	}
	if got := screen(t, buf.String(), 100); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("frame:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(buf.String(), "s3cret-pw") {
		t.Error("the secret is on the screen")
	}

	// 2.5s later the running step and the header tick; the rest stays.
	*now = now.Add(2500 * time.Millisecond)
	buf.Reset()
	v.mu.Lock()
	v.redrawLocked(nil)
	v.mu.Unlock()
	got := screen(t, strings.TrimPrefix(buf.String(), fmt.Sprintf("\x1b[%dA\r\x1b[J", len(want))), 100)
	if !strings.HasSuffix(got[0], "elapsed 2.5s") || got[4] != "stop-etcd  node2  running     5.5s" || got[3] != want[3] {
		t.Errorf("after 2.5s:\n%s", strings.Join(got, "\n"))
	}
	// A retry shows its attempt.
	st.Steps[1].Hosts[1].Attempts = 2
	if lines := v.render(st); !strings.HasSuffix(lines[4], "running     5.5s  attempt 2") {
		t.Errorf("retry row: %q", lines[4])
	}
}

func TestProgressElapsedFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0.0s", 380 * time.Millisecond: "0.3s", 3 * time.Second: "3.0s", 9990 * time.Millisecond: "9.9s",
		42 * time.Second: "42s", 187 * time.Second: "3m07s", 65 * time.Minute: "1h05m", -time.Second: "0.0s",
	} {
		if got := fmtElapsed(d); got != want {
			t.Errorf("fmtElapsed(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestProgressTruncatesToWidth(t *testing.T) {
	for _, color := range []bool{false, true} {
		var buf bytes.Buffer
		v, _ := testView(t, &buf, 40, 40, color)
		st := testState()
		st.Steps[0].ID = "a-step-id-far-longer-than-the-column-can-hold"
		st.Steps[2].Hosts[0].Why = "日本語のメッセージ日本語のメッセージ日本語のメッセージ"
		lines := (func() []string { v.red = secretRedactor(); v.started = clock; return v.render(st) })()
		if len(lines) != 9 {
			t.Fatalf("%d lines, want 9", len(lines))
		}
		for _, l := range lines {
			plain := sgr.ReplaceAllString(l, "")
			if strings.ContainsRune(plain, 0x1b) {
				t.Errorf("an escape besides colours: %q", l)
			}
			if w := textWidth(plain); w > 39 {
				t.Errorf("color=%v: %d cells (width 40): %q", color, w, plain)
			}
		}
		// Cut lines end in an ellipsis; colour codes take no cell.
		if plain := sgr.ReplaceAllString(lines[2], ""); textWidth(plain) != 39 || !strings.HasSuffix(plain, "…") {
			t.Errorf("cut line: %q (%d cells)", plain, textWidth(plain))
		}
		// A long step id is cut to its column (12 cells at this width).
		if plain := sgr.ReplaceAllString(lines[2], ""); !strings.HasPrefix(plain, "a-step-id-f…  -      done ") {
			t.Errorf("step cell: %q", plain)
		}
		// The whole frame replayed at width 40 is exactly 9 lines.
		v.attach(func() *runstate.State { return st }, secretRedactor())
		if got := screen(t, buf.String(), 40); len(got) != 9 || v.frame != 9 {
			t.Errorf("color=%v: %d lines on the screen, frame %d:\n%s", color, len(got), v.frame, strings.Join(got, "\n"))
		}
	}
}

func TestProgressRedrawAndLog(t *testing.T) {
	var buf bytes.Buffer
	v, now := testView(t, &buf, 100, 40, false)
	fmt.Fprintf(v, "2026-11-22T10:00:00Z run 20261122T100000Z-ab12, state in /tmp/x\n")
	if buf.String() != "2026-11-22T10:00:00Z run 20261122T100000Z-ab12, state in /tmp/x\n" {
		t.Fatalf("before the run starts a line goes out as it is: %q", buf.String())
	}
	st := testState()
	v.attach(func() *runstate.State { return st }, engine.NewRedactor(nil))
	first := buf.Len()
	n := strings.Count(buf.String()[len("2026-11-22T10:00:00Z run 20261122T100000Z-ab12, state in /tmp/x\n"):], "\n")
	if n != 9 || v.frame != 9 {
		t.Fatalf("first frame: %d lines (frame %d)", n, v.frame)
	}

	// A transition: cursor up over exactly the previous frame, clear, the
	// log line, the new frame. Written in two pieces, as a line may be.
	*now = now.Add(time.Second)
	st.Steps[2].Hosts[0].Status = runstate.StatusRunning
	st.Steps[2].Hosts[0].Started = now
	io.WriteString(v, "2026-11-22T10:00:01Z restore@node1 run")
	if buf.Len() != first {
		t.Fatalf("half a line was drawn: %q", buf.String()[first:])
	}
	io.WriteString(v, "ning\n")
	second := buf.String()[first:]
	if want := "\x1b[9A\r\x1b[J2026-11-22T10:00:01Z restore@node1 running\n"; !strings.HasPrefix(second, want) {
		t.Fatalf("redraw starts %q, want %q", second[:min(len(second), 60)], want)
	}
	got := screen(t, buf.String(), 100)
	if len(got) != 11 || got[0] != "2026-11-22T10:00:00Z run 20261122T100000Z-ab12, state in /tmp/x" ||
		got[1] != "2026-11-22T10:00:01Z restore@node1 running" || !strings.HasPrefix(got[2], "run 20261122T100000Z-ab12: 2/7 done, 1 failed, 2 running") ||
		got[8] != "restore    node1  running     0.0s" {
		t.Errorf("screen:\n%s", strings.Join(got, "\n"))
	}
	// Escape sequences in a log line cannot move the cursor.
	io.WriteString(v, "x \x1b[5A y\n")
	if got := screen(t, buf.String(), 100); got[2] != "x ?[5A y" || len(got) != 12 {
		t.Errorf("screen:\n%s", strings.Join(got, "\n"))
	}
}

func TestProgressColor(t *testing.T) {
	for _, color := range []bool{false, true} {
		var buf bytes.Buffer
		v, _ := testView(t, &buf, 100, 40, color)
		if v.color != color {
			t.Fatalf("NO_COLOR=%q: color %v", map[bool]string{false: "1", true: ""}[color], v.color)
		}
		v.attach(func() *runstate.State { return testState() }, engine.NewRedactor(nil))
		fmt.Fprintln(v, "2026-11-22T10:00:01Z record done 1.5s")
		out := buf.String()
		if !color {
			// Only the cursor movements are left: no colour, no bold, no dim.
			rest := regexp.MustCompile(`\x1b\[\d+A\r\x1b\[J`).ReplaceAllString(out, "")
			if strings.Contains(rest, "\x1b[3") || sgr.MatchString(rest) || strings.Contains(rest, "\x1b") {
				t.Errorf("escape codes with NO_COLOR set: %q", rest)
			}
			continue
		}
		for name, code := range map[string]string{"running": "\x1b[33mrunning", "done": "\x1b[32mdone", "failed": "\x1b[31mfailed", "waiting": "\x1b[2mrestore"} {
			if !strings.Contains(out, code) {
				t.Errorf("no colour for %s in %q", name, out)
			}
		}
	}
}

func TestProgressHeightCap(t *testing.T) {
	var buf bytes.Buffer
	v, _ := testView(t, &buf, 80, 16, false)
	st := &runstate.State{RunID: "r1"}
	statuses := map[int]string{3: runstate.StatusFailed, 20: runstate.StatusRunning, 21: runstate.StatusRunning}
	for i := 0; i < 36; i++ {
		h := &runstate.HostState{Host: "node1", Status: runstate.StatusPending}
		switch {
		case statuses[i] != "":
			h.Status, h.Attempts, h.Elapsed = statuses[i], 1, 1000
		case i < 20:
			fin := clock.Add(time.Duration(i) * time.Second)
			h.Status, h.Attempts, h.Elapsed, h.Finished = runstate.StatusDone, 1, 1000, &fin
		}
		st.Steps = append(st.Steps, &runstate.StepState{ID: fmt.Sprintf("s%02d", i), Hosts: []*runstate.HostState{h}})
	}
	v.attach(func() *runstate.State { return st }, nil)
	got := screen(t, buf.String(), 80)
	if len(got) != 12 || v.frame != 12 { // height 16 less 4
		t.Fatalf("%d lines (frame %d), want 12:\n%s", len(got), v.frame, strings.Join(got, "\n"))
	}
	shown := map[string]string{}
	for _, l := range got[2:11] {
		f := strings.Fields(l)
		shown[f[0]] = f[2]
	}
	// The running and failed ones, the latest done ones, the next waiting.
	for id, status := range map[string]string{"s03": "failed", "s20": "running", "s21": "running", "s19": "done", "s18": "done", "s22": "waiting"} {
		if shown[id] != status {
			t.Errorf("%s: %q, want %s\n%s", id, shown[id], status, strings.Join(got, "\n"))
		}
	}
	if shown["s00"] != "" {
		t.Errorf("an old done row is shown instead of a recent one:\n%s", strings.Join(got, "\n"))
	}
	t.Logf("capped frame:\n%s", strings.Join(got, "\n"))
	more := regexp.MustCompile(`^… (\d+) more \((\d+) done, (\d+) waiting\)$`).FindStringSubmatch(got[11])
	if more == nil {
		t.Fatalf("last line %q", got[11])
	}
	hidden, _ := strconv.Atoi(more[1])
	if hidden != 36-9 {
		t.Errorf("%d hidden, want %d", hidden, 36-9)
	}
	// Rows stay in plan order.
	var ids []string
	for _, l := range got[2:11] {
		ids = append(ids, strings.Fields(l)[0])
	}
	for i := 1; i < len(ids); i++ {
		if ids[i-1] > ids[i] {
			t.Errorf("rows out of plan order: %v", ids)
		}
	}
}

// While a question is asked, the table is gone and nothing is drawn; the
// lines that came meanwhile follow the answer, then the table.
func TestProgressPausesForQuestions(t *testing.T) {
	var buf bytes.Buffer
	v, _ := testView(t, &buf, 100, 40, false)
	v.attach(func() *runstate.State { return testState() }, nil)
	var term lockedBuffer // stdout and stderr on one terminal
	term.Write(buf.Bytes())
	v.out = &term
	ask := v.wrapAsk(func(ctx context.Context, q string) (bool, error) {
		io.WriteString(&term, q)
		fmt.Fprintln(v, "2026-11-22T10:00:02Z stop-etcd@node2 done 5.0s") // another step, meanwhile
		v.tick()
		if got := screen(t, term.String(), 100); got[len(got)-1] != "approve? [y/N]" {
			t.Errorf("the question was drawn over:\n%s", strings.Join(got, "\n"))
		}
		io.WriteString(&term, "y\n") // the terminal's echo
		return true, nil
	})
	if yes, err := ask(context.Background(), "step ok: go on\napprove? [y/N]"); !yes || err != nil {
		t.Fatal(yes, err)
	}
	got := screen(t, term.String(), 100)
	if len(got) != 12 || got[0] != "step ok: go on" || got[1] != "approve? [y/N]y" || got[2] != "2026-11-22T10:00:02Z stop-etcd@node2 done 5.0s" || !strings.HasPrefix(got[3], "run ") {
		t.Errorf("screen:\n%s", strings.Join(got, "\n"))
	}

	// The interrupt notice takes the table's place, the table follows.
	v.Notice(&term, "\netcd-rescue: interrupt: no new steps start\n")
	got = screen(t, term.String(), 100)
	if len(got) != 13 || got[3] != "etcd-rescue: interrupt: no new steps start" || !strings.HasPrefix(got[4], "run ") || strings.Count(term.String(), "STATUS") != 3 {
		t.Errorf("screen:\n%s", strings.Join(got, "\n"))
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Many goroutines write while the ticker redraws; Close ends the ticker
// and leaves the final table, from the result, under every line.
func TestProgressConcurrentWritesAndClose(t *testing.T) {
	var term lockedBuffer
	t.Setenv("NO_COLOR", "")
	v := newView(&term, nil)
	v.size = func() (int, int) { return 100, 40 }
	v.startTicker(time.Millisecond)
	st := testState()
	v.attach(func() *runstate.State { return testState() }, engine.NewRedactor(nil))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				// One line a write, as the engine does (a half line
				// cannot be told from another goroutine's).
				io.WriteString(v, fmt.Sprintf("line %d-%d end\n", g, i))
				if i%10 == 0 {
					time.Sleep(2 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	for _, s := range st.Steps {
		for _, h := range s.Hosts {
			if h.Status != runstate.StatusFailed {
				h.Status = runstate.StatusDone
			}
		}
	}
	v.Close(&engine.Result{State: st, Wall: 83 * time.Second})
	select {
	case <-v.done:
	default:
		t.Fatal("the ticker goroutine is still running")
	}
	v.Close(nil) // twice is fine
	io.WriteString(v, "after close\n")

	got := screen(t, term.String(), 100)
	if len(got) != 8*40+9+1 {
		t.Fatalf("%d lines on the screen, want %d", len(got), 8*40+10)
	}
	seen := map[string]int{}
	for _, l := range got[:8*40] {
		seen[l]++
	}
	for g := 0; g < 8; g++ {
		for i := 0; i < 40; i++ {
			if l := fmt.Sprintf("line %d-%d end", g, i); seen[l] != 1 {
				t.Errorf("%q appears %d times", l, seen[l])
			}
		}
	}
	final := got[8*40:]
	if final[0] != "run 20261122T100000Z-ab12: 6/7 done, 1 failed, 0 running; elapsed 1m23s" || final[9] != "after close" {
		t.Errorf("final:\n%s", strings.Join(final, "\n"))
	}
}

func TestProgressMode(t *testing.T) {
	old := terminal
	t.Cleanup(func() { terminal = old })
	var buf bytes.Buffer
	for _, tc := range []struct {
		mode, term string
		tty, live  bool
		err        bool
	}{
		{"auto", "xterm", true, true, false},
		{"auto", "", true, true, false},
		{"auto", "dumb", true, false, false},
		{"auto", "xterm", false, false, false},
		{"plain", "xterm", true, false, false},
		{"live", "xterm", true, true, false},
		{"live", "xterm", false, false, true},
		{"live", "dumb", true, false, true},
		{"fancy", "xterm", true, false, true},
	} {
		terminal.stdoutTTY = func(io.Writer) bool { return tc.tty }
		t.Setenv("TERM", tc.term)
		live, err := liveProgress(tc.mode, &buf)
		if live != tc.live || (err != nil) != tc.err {
			t.Errorf("%+v: live %v, err %v", tc, live, err)
		}
	}
	// Without a seam, a buffer is no terminal.
	if old.stdoutTTY(&buf) {
		t.Error("a bytes.Buffer is a terminal?")
	}
}

// withFakeRun makes apply run on failingBackend, without retry pauses.
func withFakeRun(t *testing.T, stdoutTTY bool) {
	t.Helper()
	old, oldOpts := terminal, testOptions
	terminal.isTTY = func() bool { return false }
	terminal.in = strings.NewReader("")
	terminal.stdoutTTY = func(io.Writer) bool { return stdoutTTY }
	terminal.size = func(io.Writer) (int, int) { return 100, 40 }
	testOptions = func(o *engine.Options) {
		o.Backend = func(*engine.Compiled) (engine.Backend, error) { return failingBackend{}, nil }
		o.RetryDelay = -1
	}
	t.Cleanup(func() { terminal, testOptions = old, oldOpts })
}

var transition = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S+ (running|done|failed|skipped|retrying|not retried)\b`)

// Not a terminal: the timestamped lines of old, not one escape.
func TestApplyPlainWithoutTerminal(t *testing.T) {
	for _, tc := range []struct {
		name string
		tty  bool
		term string
		args []string
	}{
		{"pipe", false, "xterm", nil},
		{"dumb terminal", true, "dumb", nil},
		{"--progress plain", true, "xterm", []string{"--progress", "plain"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withFakeRun(t, tc.tty)
			t.Setenv("TERM", tc.term)
			plan := copyExample(t, "restore-all-from-snapshot.yaml")
			args := append([]string{"apply", "--yes", "--state-dir", filepath.Join(t.TempDir(), "state")}, tc.args...)
			code, out, errs := runCLI(append(args, plan)...)
			if code != 1 || !strings.Contains(errs, "step-host(s) failed") {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errs)
			}
			if strings.ContainsRune(out, 0x1b) || strings.ContainsRune(errs, 0x1b) {
				t.Errorf("escape codes in plain output:\n%q", out)
			}
			var n int
			for _, l := range strings.Split(out, "\n") {
				if transition.MatchString(l) {
					n++
				}
			}
			if n < 4 || !strings.Contains(out, " stop-apiserver@node1 running\n") || !regexp.MustCompile(`(?m)^run \S+: failed; step-hosts: 0 done`).MatchString(out) ||
				strings.Contains(out, "STATUS") {
				t.Errorf("%d transition lines:\n%s", n, out)
			}
		})
	}
	t.Run("--progress live", func(t *testing.T) {
		withFakeRun(t, false)
		code, out, errs := runCLI("apply", "--yes", "--progress", "live", "--state-dir", filepath.Join(t.TempDir(), "state"), copyExample(t, "restore-all-from-snapshot.yaml"))
		if code != 2 || !strings.Contains(errs, "--progress live needs stdout to be a terminal") || out != "" {
			t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, out, errs)
		}
	})
}

// On a terminal: the log above, the final table last, then the summary.
func TestApplyLiveOnTerminal(t *testing.T) {
	withFakeRun(t, true)
	t.Setenv("TERM", "xterm")
	plan := copyExample(t, "restore-all-from-snapshot.yaml")
	state := filepath.Join(t.TempDir(), "state")
	code, out, errs := runCLI("apply", "--yes", "--state-dir", state, plan)
	if code != 1 || !strings.Contains(errs, "step-host(s) failed") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if !strings.Contains(out, "\x1b[J") {
		t.Fatalf("no redraw in %q", out)
	}
	got := screen(t, out, 100)
	joined := strings.Join(got, "\n")
	head, cols := -1, -1
	for i, l := range got {
		if strings.HasPrefix(l, "STEP ") && strings.Contains(l, "STATUS") {
			if cols >= 0 {
				t.Fatalf("two tables on the screen:\n%s", joined)
			}
			head, cols = i-1, i
		}
	}
	if cols < 0 {
		t.Fatalf("no table on the screen:\n%s", joined)
	}
	if !regexp.MustCompile(`^run \S+: 0/\d+ done, \d+ failed, 0 running, \d+ skipped; elapsed `).MatchString(got[head]) {
		t.Errorf("header %q", got[head])
	}
	rows := map[string]string{}
	end := cols + 1
	for ; end < len(got) && got[end] != ""; end++ {
		f := strings.Fields(got[end])
		rows[f[0]+"@"+f[1]] = f[2]
	}
	for key, want := range map[string]string{"stop-apiserver@node1": "failed", "record@-": "failed", "restore@node2": "skipped"} {
		if rows[key] != want {
			t.Errorf("%s: %q, want %s\n%s", key, rows[key], want, joined)
		}
	}
	// The transition lines scrolled by above the table, the summary is below.
	if !strings.Contains(strings.Join(got[:head], "\n"), " stop-apiserver@node1 running") ||
		!strings.Contains(strings.Join(got[:head], "\n"), ", state in ") {
		t.Errorf("log above the table:\n%s", joined)
	}
	if !regexp.MustCompile(`(?m)^run \S+: failed; step-hosts: 0 done`).MatchString(strings.Join(got[end:], "\n")) {
		t.Errorf("summary below the table:\n%s", joined)
	}
	t.Logf("final screen:\n%s", strings.Join(got[head:end], "\n"))
}

// Cell widths come from go-runewidth, fixed to the non-East-Asian reading
// of ambiguous characters (the ellipsis is one) whatever the locale.
func TestCellWidths(t *testing.T) {
	t.Setenv("RUNEWIDTH_EASTASIAN", "1")
	t.Setenv("LC_ALL", "ja_JP.UTF-8")
	for s, want := range map[string]int{
		"node1": 5, "…": 1, "α": 1, "日本": 4, "e\u0301": 1, "\u200b": 0, "👩\u200d💻": 2, "ｈ１": 4,
	} {
		if got := textWidth(s); got != want {
			t.Errorf("textWidth(%q) = %d, want %d", s, got, want)
		}
	}
	for _, tc := range []struct {
		s    string
		w    int
		want string
	}{
		{"restore", 7, "restore"},
		{"restore", 5, "rest…"},
		{"日本語ab", 4, "日…"},
		{"日本語ab", 5, "日本…"},
		{"👩\u200d💻x", 2, "…"}, // a cluster is never split
	} {
		if got := cut(tc.s, tc.w); got != tc.want {
			t.Errorf("cut(%q, %d) = %q, want %q", tc.s, tc.w, got, tc.want)
		}
	}
	if got := pad("日本", 6) + "|" + padLeft("é", 3); got != "日本  |  é" {
		t.Errorf("pad: %q", got)
	}
}
