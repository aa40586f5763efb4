package main

// The live progress view of apply and resume. On a terminal the engine's
// transition lines scroll by above a step × host table that is redrawn in
// place; anywhere else (a pipe, a CI log, TERM=dumb) the lines are printed
// as they are, which is what scripts and the e2e tests read.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mattn/go-runewidth"
	"golang.org/x/term"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// Values of --progress.
const (
	progressAuto  = "auto"
	progressPlain = "plain"
	progressLive  = "live"
)

// tickEvery is how often the live table is redrawn without a transition
// (the elapsed time of running steps ticks).
const tickEvery = 500 * time.Millisecond

// isTerminal reports whether w is a terminal (stdout when it is one).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// termSize is the size of the terminal w in cells; 80×24 when unknown.
func termSize(w io.Writer) (width, height int) {
	width, height = 80, 24
	if f, ok := w.(*os.File); ok {
		if c, r, err := term.GetSize(int(f.Fd())); err == nil {
			if c > 0 {
				width = c
			}
			if r > 0 {
				height = r
			}
		}
	}
	return width, height
}

// liveProgress decides, once per command, whether stdout gets the live
// view: --progress live or auto on a terminal whose TERM is not dumb.
func liveProgress(mode string, stdout io.Writer) (bool, error) {
	switch mode {
	case progressPlain:
		return false, nil
	case progressAuto, progressLive:
	default:
		return false, usageError{fmt.Sprintf("unknown --progress %q (auto, plain or live)", mode)}
	}
	tty := terminal.stdoutTTY(stdout) && os.Getenv("TERM") != "dumb"
	if mode == progressLive && !tty {
		return false, usageError{"--progress live needs stdout to be a terminal (and TERM other than dumb); --progress plain prints timestamped lines"}
	}
	return tty, nil
}

// liveView is the io.Writer the engine's progress lines go to in live
// mode. Complete lines are printed above the table, which is then redrawn:
// cursor up over the previous table, clear to the end of the screen, the
// new log lines, the new table. The engine writes from many goroutines;
// one mutex orders everything that reaches the terminal.
type liveView struct {
	out   io.Writer
	color bool
	now   func() time.Time
	size  func() (width, height int)

	mu      sync.Mutex
	snap    func() *runstate.State // nil until the run starts: nothing to draw
	red     *engine.Redactor       // nil: the notes (error, why) are not shown
	started time.Time
	wall    time.Duration // > 0 once the run is over: the header's elapsed
	frame   int           // lines of the table on screen, just above the cursor
	partial []byte        // an incomplete log line
	held    [][]byte      // log lines that came while a question was asked
	paused  int
	closed  bool

	stop     chan struct{} // closed by Close: the ticker goroutine ends
	done     chan struct{} // closed by the ticker goroutine when it ends
	stopOnce sync.Once
}

// newLiveView returns the view on the terminal out, redrawing every
// tickEvery until Close. red redacts the notes; nil: found from the plan
// once the run starts.
func newLiveView(out io.Writer, red *engine.Redactor) *liveView {
	v := newView(out, red)
	v.startTicker(tickEvery)
	return v
}

func newView(out io.Writer, red *engine.Redactor) *liveView {
	return &liveView{
		out:   out,
		color: os.Getenv("NO_COLOR") == "",
		now:   time.Now,
		size:  func() (int, int) { return terminal.size(out) },
		red:   red,
	}
}

func (v *liveView) startTicker(every time.Duration) {
	v.stop, v.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(v.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-v.stop:
				return
			case <-t.C:
				v.tick()
			}
		}
	}()
}

// tick redraws the table (the elapsed times move), unless a question is
// being asked or there is no table yet or any more.
func (v *liveView) tick() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.paused == 0 && !v.closed && v.snap != nil {
		v.redrawLocked(nil)
	}
}

// attachRun starts drawing the table of r. The state in memory is not
// redacted (the engine redacts what it writes), so the notes go through
// the plan's redactor: the one given to newLiveView, else the plan the run
// records is read again (resume); if it cannot be, notes are left out.
func (v *liveView) attachRun(r *runstate.Run) {
	v.mu.Lock()
	red := v.red
	v.mu.Unlock()
	if red == nil {
		if st := r.Snapshot(); st != nil {
			if p, _ := plans.Load(st.Plan, st.Inventory); p != nil {
				red = engine.NewRedactor(p)
			}
		}
	}
	v.attach(r.Snapshot, red)
}

// attach starts drawing the table of the states snap returns.
func (v *liveView) attach(snap func() *runstate.State, red *engine.Redactor) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	v.snap, v.red, v.started = snap, red, v.now()
	if v.paused == 0 {
		v.redrawLocked(nil)
	}
}

// Write takes the engine's transition lines (and the run's first line).
func (v *liveView) Write(p []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return v.out.Write(p)
	}
	v.partial = append(v.partial, p...)
	var lines [][]byte
	for {
		i := bytes.IndexByte(v.partial, '\n')
		if i < 0 {
			break
		}
		lines = append(lines, sanitizeLine(v.partial[:i]))
		v.partial = v.partial[i+1:]
	}
	if len(v.partial) == 0 {
		v.partial = nil
	}
	if len(lines) == 0 {
		return len(p), nil
	}
	if v.paused > 0 {
		v.held = append(v.held, lines...)
		return len(p), nil
	}
	v.redrawLocked(lines)
	return len(p), nil
}

// Pause erases the table and holds log lines and redraws back until
// Resume: a question is being asked below the log.
func (v *liveView) Pause() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.paused++
	if v.paused == 1 && v.frame > 0 && !v.closed {
		fmt.Fprintf(v.out, "\x1b[%dA\r\x1b[J", v.frame)
		v.frame = 0
	}
}

// Resume prints the lines held back and draws the table again, below
// the question and its answer.
func (v *liveView) Resume() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.paused == 0 {
		return
	}
	v.paused--
	if v.paused == 0 && !v.closed {
		held := v.held
		v.held = nil
		v.redrawLocked(held)
	}
}

// wrapAsk pauses the view while ask puts its question on the terminal.
func (v *liveView) wrapAsk(ask func(context.Context, string) (bool, error)) func(context.Context, string) (bool, error) {
	return func(ctx context.Context, q string) (bool, error) {
		v.Pause()
		defer v.Resume()
		return ask(ctx, q)
	}
}

// Notice prints msg on w (stderr) where the table was, and redraws the
// table below it, so the table does not overdraw it.
func (v *liveView) Notice(w io.Writer, msg string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.paused > 0 || v.closed || v.frame == 0 {
		fmt.Fprint(w, msg)
		return
	}
	// The erase also takes the ^C the terminal echoed below the table:
	// the blank line that msg starts with for it is not needed.
	fmt.Fprintf(v.out, "\x1b[%dA\r\x1b[J", v.frame)
	v.frame = 0
	fmt.Fprint(w, strings.TrimPrefix(msg, "\n"))
	v.redrawLocked(nil)
}

// Close stops the ticker and draws the table one last time, from the
// result's state when there is one, and leaves it on the screen; what is
// written afterwards goes straight to the terminal.
func (v *liveView) Close(res *engine.Result) {
	v.stopOnce.Do(func() {
		if v.stop != nil {
			close(v.stop)
			<-v.done
		}
	})
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	logs := v.held
	if len(v.partial) > 0 {
		logs = append(logs, sanitizeLine(v.partial))
	}
	v.held, v.partial, v.paused = nil, nil, 0
	if v.snap != nil && res != nil {
		if st := res.State; st != nil {
			v.snap = func() *runstate.State { return st }
		}
		v.wall = res.Wall
	}
	v.redrawLocked(logs)
	v.frame = 0
	v.closed = true
}

// redrawLocked replaces the table on screen by the log lines and a fresh
// table, in one write.
func (v *liveView) redrawLocked(logs [][]byte) {
	var b bytes.Buffer
	if v.frame > 0 {
		// \x1b[0A would move one line up: only with a table on screen.
		fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", v.frame)
	}
	for _, l := range logs {
		b.Write(l)
		b.WriteByte('\n')
	}
	v.frame = 0
	if v.snap != nil {
		if st := v.snap(); st != nil {
			lines := v.render(st)
			for _, l := range lines {
				b.WriteString(l)
				b.WriteByte('\n')
			}
			v.frame = len(lines)
		}
	}
	if b.Len() > 0 {
		v.out.Write(b.Bytes())
	}
}

// A row of the table: one step on one host.
type viewRow struct {
	idx                         int // plan order
	step, host, status, elapsed string
	note                        string
	finished                    time.Time
}

// Table column labels for the engine's statuses.
func statusLabel(s string) string {
	if s == runstate.StatusPending {
		return "waiting"
	}
	return s
}

// SGR colour of a status: running yellow, done green, failed red,
// waiting and skipped dim.
func statusColor(s string) string {
	switch s {
	case runstate.StatusRunning:
		return "33"
	case runstate.StatusDone:
		return "32"
	case runstate.StatusFailed:
		return "31"
	}
	return "2"
}

// render is the table for st: a header line, the column names, the rows,
// every line cut to the terminal's width so that each takes exactly one
// line, and no more lines than fit in the terminal's height less 4.
func (v *liveView) render(st *runstate.State) []string {
	width, height := v.size()
	// One cell short of the width: a line that fills the last column puts
	// some terminals in their pending-wrap state, others wrap at once.
	maxW := width - 1
	if maxW < 1 {
		maxW = 1
	}
	now := v.now()
	var rows []viewRow
	n := map[string]int{}
	for _, s := range st.Steps {
		for _, h := range s.Hosts {
			n[h.Status]++
			r := viewRow{idx: len(rows), step: cellText(s.ID), host: cellText(h.Host), status: h.Status, elapsed: "-"}
			if r.host == "" {
				r.host = "-"
			}
			switch {
			case h.Status == runstate.StatusRunning && h.Started != nil:
				r.elapsed = fmtElapsed(now.Sub(*h.Started))
			case h.Attempts > 0 || h.Elapsed > 0:
				r.elapsed = fmtElapsed(h.Elapsed.D())
			}
			if h.Finished != nil {
				r.finished = *h.Finished
			}
			r.note = v.note(h)
			rows = append(rows, r)
		}
	}
	elapsed := now.Sub(v.started)
	if v.wall > 0 {
		elapsed = v.wall
	}
	head := fmt.Sprintf("run %s: %d/%d done, %d failed, %d running", cellText(st.RunID), n[runstate.StatusDone], len(rows), n[runstate.StatusFailed], n[runstate.StatusRunning])
	if n[runstate.StatusSkipped] > 0 {
		head += fmt.Sprintf(", %d skipped", n[runstate.StatusSkipped])
	}
	head += "; elapsed " + fmtElapsed(elapsed)

	// Column widths over every row, so that they do not move when the
	// rows shown change; a long step id or host name is cut to leave room
	// for the rest.
	stepCap, hostCap := min(max(12, maxW*3/10), 32), min(max(8, maxW/5), 24)
	stepW, hostW, elW := len("STEP"), len("HOST"), len("ELAPSED")
	for _, r := range rows {
		stepW = max(stepW, min(textWidth(r.step), stepCap))
		hostW = max(hostW, min(textWidth(r.host), hostCap))
		elW = max(elW, textWidth(r.elapsed))
	}
	const statusW = len("running")

	shown, more := v.pick(rows, height)
	lines := []string{v.fit([]seg{{head, "1"}}, maxW)}
	lines = append(lines, v.fit([]seg{{pad("STEP", stepW) + "  " + pad("HOST", hostW) + "  " + pad("STATUS", statusW) + "  " + padLeft("ELAPSED", elW) + "  NOTE", ""}}, maxW))
	for _, r := range shown {
		label := statusLabel(r.status)
		rowColor, stColor := "", statusColor(r.status)
		if stColor == "2" {
			rowColor = "2" // waiting and skipped rows are dim as a whole
		}
		segs := []seg{
			{pad(cut(r.step, stepW), stepW) + "  " + pad(cut(r.host, hostW), hostW) + "  ", rowColor},
			{pad(label, statusW), stColor},
			{"  " + padLeft(r.elapsed, elW) + "  " + r.note, rowColor},
		}
		lines = append(lines, v.fit(segs, maxW))
	}
	if more != "" {
		lines = append(lines, v.fit([]seg{{more, "2"}}, maxW))
	}
	return lines
}

// note is the row's last word: the error of a failed step-host, else why
// it is skipped or waiting or was found done, redacted, on one line.
func (v *liveView) note(h *runstate.HostState) string {
	if h.Status == runstate.StatusRunning && h.Attempts > 1 {
		return fmt.Sprintf("attempt %d", h.Attempts)
	}
	if v.red == nil {
		return ""
	}
	s := h.Why
	if h.Error != "" {
		s = h.Error
	}
	return cellText(v.red.String(noteLine(s)))
}

// pick chooses the rows that fit in height: all of them if they can;
// otherwise every running and failed row first, then the most recently
// done ones, then the next ones waiting, and a line that counts the rest.
func (v *liveView) pick(rows []viewRow, height int) (shown []viewRow, more string) {
	budget := max(height-4, 4) // lines for the whole table
	if 2+len(rows) <= budget {
		return rows, ""
	}
	slots := budget - 3 // header, column names, the "more" line
	take := make([]bool, len(rows))
	left := slots
	add := func(i int) {
		if left > 0 && !take[i] {
			take[i] = true
			left--
		}
	}
	for i, r := range rows {
		if r.status == runstate.StatusRunning || r.status == runstate.StatusFailed {
			add(i)
		}
	}
	var done []int
	for i, r := range rows {
		if r.status == runstate.StatusDone {
			done = append(done, i)
		}
	}
	sort.SliceStable(done, func(a, b int) bool { return rows[done[a]].finished.After(rows[done[b]].finished) })
	recent := (left + 1) / 2
	for _, i := range done {
		if recent == 0 {
			break
		}
		if left > 0 {
			add(i)
			recent--
		}
	}
	for i, r := range rows {
		if r.status == runstate.StatusPending {
			add(i)
		}
	}
	for _, i := range done {
		add(i)
	}
	for i := range rows {
		add(i)
	}
	hidden := map[string]int{}
	total := 0
	for i, r := range rows {
		if take[i] {
			shown = append(shown, r)
		} else {
			hidden[statusLabel(r.status)]++
			total++
		}
	}
	var parts []string
	for _, s := range []string{"done", "waiting", "skipped", "running", "failed"} {
		if hidden[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", hidden[s], s))
		}
	}
	return shown, fmt.Sprintf("… %d more (%s)", total, strings.Join(parts, ", "))
}

// seg is a piece of a line and its SGR colour ("" none).
type seg struct{ text, sgr string }

// fit joins segs, cut to maxW cells (the last one an ellipsis when cut),
// with colour codes around coloured pieces unless NO_COLOR; the codes take
// no cell.
func (v *liveView) fit(segs []seg, maxW int) string {
	total := 0
	for _, s := range segs {
		total += textWidth(s.text)
	}
	limit := maxW
	cutting := total > maxW
	if cutting {
		limit = maxW - 1 // room for the ellipsis
	}
	var b strings.Builder
	used := 0
	for _, s := range segs {
		if used >= limit && cutting {
			break
		}
		t := cells.Truncate(s.text, limit-used, "")
		if t == "" {
			continue
		}
		used += textWidth(t)
		if v.color && s.sgr != "" {
			b.WriteString("\x1b[" + s.sgr + "m" + t + "\x1b[0m")
		} else {
			b.WriteString(t)
		}
		if used >= limit && cutting {
			break
		}
	}
	if cutting && maxW >= 1 {
		b.WriteString("…")
	}
	return b.String()
}

// fmtElapsed: 0.4s, 3.2s, 42s, 3m07s, 1h05m.
func fmtElapsed(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Truncate(100*time.Millisecond).Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

func noteLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i]) + " ..."
	}
	return s
}

// cellText makes s safe for one table cell: no control characters (a
// remote command's stderr may hold escape sequences), tabs as spaces.
func cellText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case unicode.IsControl(r):
			return '?'
		}
		return r
	}, s)
}

// sanitizeLine makes a log line safe to print above the table: an escape
// sequence in it could move the cursor and break the redraw.
func sanitizeLine(b []byte) []byte {
	if !utf8.Valid(b) || bytes.ContainsFunc(b, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) {
		return []byte(strings.Map(func(r rune) rune {
			if r != '\t' && unicode.IsControl(r) {
				return '?'
			}
			return r
		}, strings.ToValidUTF8(string(b), "?")))
	}
	return append([]byte(nil), b...)
}

// cells measures text as a terminal does: 0 for combining marks and
// format characters, 2 for East Asian wide characters and emoji (a whole
// grapheme cluster counted once), else 1. East Asian ambiguous characters
// count 1 whatever the locale says, so the table is the same everywhere.
var cells = &runewidth.Condition{EastAsianWidth: false, StrictEmojiNeutral: true}

func textWidth(s string) int { return cells.StringWidth(s) }

func pad(s string, w int) string { return cells.FillRight(s, w) }

func padLeft(s string, w int) string { return cells.FillLeft(s, w) }

// cut shortens s to w cells, the last one an ellipsis.
func cut(s string, w int) string { return cells.Truncate(s, w, "…") }
