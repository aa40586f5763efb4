package main

// apply, resume, status, runs, unlock: thin wrappers around engine.Apply
// and engine.Resume. Exit codes are decided in runErr, in one place.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// terminal is how the commands reach an operator: a prompt needs stdin to
// be a terminal; the live progress view needs stdout to be one, and its
// size. Tests replace it.
var terminal = struct {
	isTTY     func() bool
	in        io.Reader
	stdoutTTY func(stdout io.Writer) bool
	size      func(stdout io.Writer) (width, height int)
}{isTTY: stdinIsTTY, in: os.Stdin, stdoutTTY: isTerminal, size: termSize}

// testOptions, if set, adjusts the engine options of apply and resume
// (tests: a fake backend, no retry delay).
var testOptions func(*engine.Options)

func stdinIsTTY() bool {
	_, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS)
	return err == nil
}

// prompter asks yes/no questions on the terminal, one at a time.
type prompter struct {
	mu  sync.Mutex
	in  *bufio.Reader
	out io.Writer
}

func newPrompter(out io.Writer) *prompter {
	return &prompter{in: bufio.NewReader(terminal.in), out: out}
}

// ask returns true only for an explicit y or yes. It gives up when ctx ends
// (a second Ctrl-C), leaving the read to die with the process.
func (p *prompter) ask(ctx context.Context, question string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.out, question)
	type answer struct {
		s   string
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		s, err := p.in.ReadString('\n')
		ch <- answer{s, err}
	}()
	select {
	case a := <-ch:
		if a.err != nil && a.s == "" {
			return false, fmt.Errorf("reading the answer: %w", a.err)
		}
		s := strings.ToLower(strings.TrimSpace(a.s))
		return s == "y" || s == "yes", nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

type runFlags struct {
	stateDir    *string
	parallelism *int
	yes         *bool
	progress    *string
	approve     stringList
}

func addRunFlags(fl *flag.FlagSet) *runFlags {
	rf := &runFlags{
		stateDir:    fl.String("state-dir", "", "state directory (default: .etcd-rescue beside the plan; resume finds the run through the run index)"),
		parallelism: fl.Int("parallelism", 4, "step-hosts executing at once"),
		yes:         fl.Bool("yes", false, "do not ask for confirmation (required without a terminal)"),
		progress: fl.String("progress", progressAuto, "progress output `MODE`: auto (a live step × host table if stdout is a terminal "+
			"and TERM is not dumb, else timestamped lines), plain (the lines), live (the table; exit 2 without a terminal); NO_COLOR turns colours off"),
	}
	fl.Var(&rf.approve, "approve", "answer yes to approve step `STEP` (repeatable)")
	return rf
}

// check validates the flags apply and resume share and decides the
// progress mode; tty is whether an operator can be asked. Without one,
// --yes is required: hint says what to review first.
func (rf *runFlags) check(stdout io.Writer, cmd, hint string) (live, tty bool, err error) {
	if *rf.parallelism < 1 {
		return false, false, usageError{"--parallelism must be at least 1"}
	}
	if live, err = liveProgress(*rf.progress, stdout); err != nil {
		return false, false, err
	}
	tty = terminal.isTTY()
	if !*rf.yes && !tty {
		return false, false, withCode(2, fmt.Errorf("%s changes the cluster and no terminal is attached to confirm it", cmd), hint)
	}
	return live, tty, nil
}

func cmdApply(args []string, stdout, stderr io.Writer) int {
	fl := newFlags("apply", "FILE", stderr)
	inv := fl.String("inventory", "", "inventory file with cluster:, hosts:, ssh: (replaces the plan's own)")
	rf := addRunFlags(fl)
	files, err := parse(fl, args)
	if err != nil {
		return 2
	}
	if len(files) != 1 {
		return exitCode(usageError{"apply needs exactly one plan file"}, stderr)
	}
	live, tty, err := rf.check(stdout, "apply", "review the dry-run (etcd-rescue plan "+files[0]+"), then run apply with --yes")
	if err != nil {
		return exitCode(err, stderr)
	}
	c := loadValid(files[0], *inv, stderr)
	if c == nil {
		return 2
	}
	// The dry-run is what the operator approves; it is printed redacted,
	// like everything this command writes.
	var dry bytes.Buffer
	if err := engine.BuildDryRun(c).WriteText(&dry); err != nil {
		return exitCode(err, stderr)
	}
	stdout.Write(engine.NewRedactor(c.Plan).Bytes(dry.Bytes()))
	fmt.Fprintln(stdout)

	p := newPrompter(stderr)
	opts := engine.Options{StateDir: *rf.stateDir, Inventory: *inv, Parallelism: *rf.parallelism, Approve: rf.approve, Progress: stdout}
	if tty {
		opts.Ask = p.ask
	}
	if !*rf.yes {
		opts.Confirm = func(ctx context.Context, _ *runstate.State) (bool, error) {
			return p.ask(ctx, fmt.Sprintf("apply plan %s to cluster %s? only \"yes\" proceeds: ", c.Plan.Name, c.Plan.Cluster.Name))
		}
	}
	var view *liveView
	if live {
		view = newLiveView(stdout, engine.NewRedactor(c.Plan))
	}
	return runSession(stdout, stderr, view, &opts, func(ctx context.Context) (*engine.Result, error) {
		return engine.Apply(ctx, c, opts)
	})
}

func cmdResume(args []string, stdout, stderr io.Writer) int {
	fl := newFlags("resume", "RUN", stderr)
	rf := addRunFlags(fl)
	var rerun, markDone stringList
	fl.Var(&rerun, "rerun", "apply `STEP[@HOST]` again even though the engine would not (repeatable)")
	fl.Var(&markDone, "mark-done", "record `STEP[@HOST]` as done without running it (repeatable)")
	runs, err := parse(fl, args)
	if err != nil {
		return 2
	}
	if len(runs) != 1 {
		return exitCode(usageError{"resume needs exactly one run id (etcd-rescue runs lists them)"}, stderr)
	}
	live, tty, err := rf.check(stdout, "resume", "look at etcd-rescue status "+runs[0]+", then run resume with --yes")
	if err != nil {
		return exitCode(err, stderr)
	}
	opts := engine.Options{StateDir: *rf.stateDir, Parallelism: *rf.parallelism, Approve: rf.approve, Progress: stdout}
	for _, s := range rerun {
		opts.Rerun = append(opts.Rerun, engine.ParseSelector(s))
	}
	for _, s := range markDone {
		opts.MarkDone = append(opts.MarkDone, engine.ParseSelector(s))
	}
	p := newPrompter(stderr)
	if tty {
		opts.Ask = p.ask
	}
	opts.Confirm = func(ctx context.Context, st *runstate.State) (bool, error) {
		writeStatus(stdout, st, nil, false)
		fmt.Fprintln(stdout)
		if *rf.yes {
			return true, nil
		}
		return p.ask(ctx, fmt.Sprintf("resume run %s? only \"yes\" proceeds: ", st.RunID))
	}
	var view *liveView
	if live {
		// The redactor comes from the plan the run records, once it starts.
		view = newLiveView(stdout, nil)
	}
	return runSession(stdout, stderr, view, &opts, func(ctx context.Context) (*engine.Result, error) {
		return engine.Resume(ctx, runs[0], opts)
	})
}

// runSession runs an apply or resume under the two-phase interrupt and
// prints the summary. With a live view (stdout is a terminal), the
// progress lines, the interrupt notices and the questions go through it,
// and its last table stays on the screen above the summary.
func runSession(stdout, stderr io.Writer, view *liveView, opts *engine.Options, f func(context.Context) (*engine.Result, error)) int {
	notice := func(msg string) { fmt.Fprint(stderr, msg) }
	out := stdout
	if view != nil {
		defer view.Close(nil) // on every path: the ticker goroutine ends
		notice = func(msg string) { view.Notice(stderr, msg) }
		out = view
		opts.Progress = view
		if ask := opts.Ask; ask != nil {
			opts.Ask = view.wrapAsk(ask)
		}
		if confirm := opts.Confirm; confirm != nil {
			opts.Confirm = func(ctx context.Context, st *runstate.State) (bool, error) {
				view.Pause()
				defer view.Resume()
				return confirm(ctx, st)
			}
		}
	}
	if testOptions != nil {
		testOptions(opts)
	}
	ctx, stop, release := interrupts(context.Background(), func(phase int) {
		if phase == 1 {
			notice("\netcd-rescue: interrupt: no new steps start; running ones finish and are checkpointed. Interrupt again to cancel them.\n")
		} else {
			notice("\netcd-rescue: second interrupt: cancelling running steps.\n")
		}
	})
	defer release()
	opts.Stop = stop
	opts.OnStart = func(r *runstate.Run) {
		fmt.Fprintf(out, "%s run %s, state in %s\n", time.Now().UTC().Format(time.RFC3339), r.ID(), r.Dir())
		if view != nil {
			view.attachRun(r)
		}
	}
	res, err := f(ctx)
	if view != nil {
		view.Close(res)
	}
	if res != nil && res.State != nil {
		fmt.Fprintln(stdout)
		writeSummary(stdout, res)
	}
	return runErr(err, res, stderr)
}

// runErr maps the engine's errors to exit codes and hints.
func runErr(err error, res *engine.Result, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var (
		le *runstate.LockedError
		se *engine.StaleError
		ie *engine.InvalidPlanError
		ue *engine.UsageError
		ns *runstate.NoStateError
		pe *engine.PrereqError
		re *engine.RunError
	)
	switch {
	case errors.As(err, &le):
		return exitCode(withCode(3, err,
			"wait for it to finish; if that process is gone for good: etcd-rescue unlock --force --state-dir "+le.Dir), stderr)
	case errors.As(err, &se):
		return exitCode(withCode(3, err, "etcd-rescue status "+se.RunID+" shows what the run did so far"), stderr)
	case errors.As(err, &ie):
		printFindings(stderr, ie.Findings)
		return exitCode(withCode(2, err, "etcd-rescue validate "+ie.File), stderr)
	case errors.As(err, &ue):
		return exitCode(withCode(2, err), stderr)
	case errors.As(err, &pe):
		return exitCode(withCode(4, err, "nothing was run and no checkpoint was written; fix the above (the plan's ssh: and cluster.tls: sections name the files), then run the same command again"), stderr)
	case errors.As(err, &ns):
		return exitCode(withCode(2, err, "etcd-rescue runs lists the runs apply started as this user on this machine; with --state-dir DIR, the runs in DIR"), stderr)
	case errors.Is(err, engine.ErrNotConfirmed):
		return exitCode(withCode(1, err), stderr)
	case errors.As(err, &re):
		var hints []string
		for _, w := range re.Waiting {
			hints = append(hints, w.Hints...)
		}
		sd := ""
		if re.StateDir != "" {
			sd = " --state-dir " + re.StateDir
		}
		if re.Interrupted || len(re.Failed) > 0 {
			hints = append(hints, fmt.Sprintf("fix the cause, then continue: etcd-rescue resume %s%s", re.RunID, sd))
		}
		return exitCode(withCode(re.Code(), err, hints...), stderr)
	}
	return exitCode(err, stderr)
}

// writeSummary prints counts, wall time and, per step, the engine's time
// beside the time spent in remote commands and etcd API calls.
func writeSummary(w io.Writer, res *engine.Result) {
	st := res.State
	n := st.Counts()
	fmt.Fprintf(w, "run %s: %s; step-hosts: %d done, %d failed, %d skipped, %d pending, %d running; wall %s\n",
		st.RunID, st.Outcome, n[runstate.StatusDone], n[runstate.StatusFailed], n[runstate.StatusSkipped], n[runstate.StatusPending], n[runstate.StatusRunning],
		dur(runstate.Millis(res.Wall.Milliseconds())))
	writeTimes(w, st)
}

// writeTimes is the per-step time table. "engine" is the wall time the
// engine spent in the step's hosts (summed over hosts and attempts); "ssh"
// and "etcd api" are the parts spent waiting for remote commands and API
// calls; "other" is the rest: the engine's own work plus polling pauses.
func writeTimes(w io.Writer, st *runstate.State) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tHOSTS\tENGINE\tSSH (CMDS)\tETCD API\tOTHER")
	for _, s := range st.Steps {
		var el, rem, api runstate.Millis
		cmds, ran := 0, 0
		for _, h := range s.Hosts {
			el, rem, api = el+h.Elapsed, rem+h.Remote, api+h.API
			cmds += h.Cmds
			if h.Attempts > 0 {
				ran++
			}
		}
		if ran == 0 {
			continue
		}
		other := el - rem - api
		if other < 0 {
			other = 0
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s (%d)\t%s\t%s\n", s.ID, len(s.Hosts), dur(el), dur(rem), cmds, dur(api), dur(other))
	}
	tw.Flush()
}

func dur(m runstate.Millis) string {
	d := m.D()
	if d < time.Second {
		return d.String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fl := newFlags("status", "[RUN]", stderr)
	stateDir := fl.String("state-dir", "", "state directory (default: that of the run, found through the run index)")
	out := fl.String("o", "table", "output: table or json")
	rest, err := parse(fl, args)
	if err != nil {
		return 2
	}
	if len(rest) > 1 {
		return exitCode(usageError{"status takes at most one run id"}, stderr)
	}
	if *out != "table" && *out != "json" {
		return exitCode(usageError{fmt.Sprintf("unknown output %q (table or json)", *out)}, stderr)
	}
	run := ""
	if len(rest) == 1 {
		run = rest[0]
	}
	store, id, err := runstate.LocateRun(*stateDir, run)
	if err != nil {
		return runErr(err, nil, stderr)
	}
	st, err := store.Load(id)
	if err != nil {
		return runErr(err, nil, stderr)
	}
	owner, held := store.LockOwner()
	if *out == "json" {
		type lockJSON struct {
			Held  bool               `json:"held"`
			Owner *runstate.LockInfo `json:"owner,omitempty"`
		}
		v := struct {
			*runstate.State
			Lock lockJSON `json:"lock"`
		}{st, lockJSON{held, nil}}
		if held {
			v.Lock.Owner = owner
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return exitCode(enc.Encode(v), stderr)
	}
	var lock *runstate.LockInfo
	if held {
		lock = owner
	}
	writeStatus(stdout, st, lock, held)
	return 0
}

// writeStatus prints a run's step × host table, facts and approvals.
func writeStatus(w io.Writer, st *runstate.State, owner *runstate.LockInfo, held bool) {
	fmt.Fprintf(w, "run %s  plan %s (%s)\n", st.RunID, st.PlanName, st.Plan)
	outcome := st.Outcome
	switch {
	case held && owner != nil && owner.RunID == st.RunID:
		outcome += fmt.Sprintf(" (in progress: %s)", owner)
	case outcome == runstate.OutcomeRunning && !held:
		outcome += " (no process holds the lock: the engine stopped mid-run; resume it)"
	}
	fmt.Fprintf(w, "outcome %s; created %s, updated %s, %d session(s)\n", outcome,
		st.Created.Format(time.RFC3339), st.Updated.Format(time.RFC3339), st.Sessions)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tHOST\tSTATUS\tATTEMPTS\tDURATION\tNOTE")
	for _, s := range st.Steps {
		for _, h := range s.Hosts {
			host := h.Host
			if host == "" {
				host = "-"
			}
			d := "-"
			if h.Attempts > 0 || h.Elapsed > 0 {
				d = dur(h.Elapsed)
			}
			note := h.Why
			if h.Error != "" {
				note = oneLineText(h.Error)
				if h.Cmd != "" {
					note += " [" + oneLineText(h.Cmd) + "]"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", s.ID, host, h.Status, h.Attempts, d, note)
		}
	}
	tw.Flush()
	if len(st.Facts) > 0 {
		fmt.Fprintln(w, "facts:")
		keys := make([]string, 0, len(st.Facts))
		for k := range st.Facts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s = %s\n", k, st.Facts[k])
		}
	}
	if len(st.Approvals) > 0 {
		fmt.Fprintln(w, "approvals:")
		keys := make([]string, 0, len(st.Approvals))
		for k := range st.Approvals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			a := st.Approvals[k]
			fmt.Fprintf(w, "  %s by %s (%s) at %s\n", k, a.By, a.How, a.At.Format(time.RFC3339))
		}
	}
}

func oneLineText(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " ..."
	}
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

func cmdRuns(args []string, stdout, stderr io.Writer) int {
	fl := newFlags("runs", "", stderr)
	stateDir := fl.String("state-dir", "", "list the runs in this state directory (default: every run in the run index)")
	rest, err := parse(fl, args)
	if err != nil {
		return 2
	}
	if len(rest) > 0 {
		return exitCode(usageError{"runs takes no arguments"}, stderr)
	}
	type entry struct {
		store *runstate.Store
		id    string
	}
	var list []entry
	withDir := *stateDir == ""
	if *stateDir != "" {
		store, err := runstate.ExistingStore(*stateDir)
		if err != nil {
			return runErr(err, nil, stderr)
		}
		ids, err := store.Runs()
		if err != nil {
			return exitCode(err, stderr)
		}
		for _, id := range ids {
			list = append(list, entry{store, id})
		}
	} else {
		// Every run apply recorded, wherever its state is.
		idx, err := runstate.IndexedRuns()
		if err != nil {
			return exitCode(err, stderr)
		}
		stores := map[string]*runstate.Store{}
		for _, e := range idx {
			st := stores[e.StateDir]
			if st == nil {
				if st, err = runstate.ExistingStore(e.StateDir); err != nil {
					continue
				}
				stores[e.StateDir] = st
			}
			list = append(list, entry{st, e.RunID})
		}
		if len(list) == 0 {
			fmt.Fprintf(stderr, "no runs: none in the run index %s\n", runstate.IndexFile())
			return 0
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	head := "RUN\tPLAN\tOUTCOME\tDONE\tFAILED\tOTHER\tUPDATED"
	if withDir {
		head += "\tSTATE DIR"
	}
	fmt.Fprintln(tw, head)
	for _, e := range list {
		dir := ""
		if withDir {
			dir = "\t" + e.store.Dir
		}
		st, err := e.store.Load(e.id)
		if err != nil {
			fmt.Fprintf(tw, "%s\t?\t%v\t\t\t\t%s\n", e.id, err, dir)
			continue
		}
		n := st.Counts()
		other := n[runstate.StatusPending] + n[runstate.StatusRunning] + n[runstate.StatusSkipped]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s%s\n", e.id, st.PlanName, st.Outcome, n[runstate.StatusDone], n[runstate.StatusFailed], other, st.Updated.Format(time.RFC3339), dir)
	}
	tw.Flush()
	return 0
}

func cmdUnlock(args []string, stdout, stderr io.Writer) int {
	fl := newFlags("unlock", "[RUN]", stderr)
	stateDir := fl.String("state-dir", "", "state directory (default: that of RUN, or of the latest run, found through the run index)")
	force := fl.Bool("force", false, "remove the lock of a process that is gone")
	rest, err := parse(fl, args)
	if err != nil {
		return 2
	}
	if len(rest) > 1 {
		return exitCode(usageError{"unlock takes at most one run id"}, stderr)
	}
	if !*force {
		return exitCode(withCode(2, errors.New("unlock removes another run's lock; it needs --force"),
			"make sure no apply or resume is running on this state dir, then: etcd-rescue unlock --force"), stderr)
	}
	var store *runstate.Store
	switch {
	case len(rest) == 1:
		// The lock is the state dir's; the run only says which state dir.
		store, _, err = runstate.LocateRun(*stateDir, rest[0])
	case *stateDir != "":
		store, err = runstate.ExistingStore(*stateDir)
	default:
		store, _, err = runstate.LocateRun("", "")
	}
	if err != nil {
		return runErr(err, nil, stderr)
	}
	owner, err := store.Unlock()
	var le *runstate.LockedError
	if errors.As(err, &le) {
		return exitCode(withCode(3, fmt.Errorf("%w: refusing to unlock while that process holds it", err),
			"stop that process first (first Ctrl-C lets running steps finish)"), stderr)
	}
	if err != nil {
		return exitCode(err, stderr)
	}
	if owner != nil {
		fmt.Fprintf(stdout, "removed the lock left by %s\n", owner)
	} else {
		fmt.Fprintln(stdout, "no lock held")
	}
	return 0
}
