package main

// apply, resume, status, runs, unlock: thin wrappers around engine.Apply
// and engine.Resume. Their errors become exit codes in report (exitcodes.go).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/reviewed"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
)

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
	return term.IsTerminal(int(os.Stdin.Fd()))
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
	approve     []string
	state       *string
}

func addRunFlags(fl *pflag.FlagSet) *runFlags {
	rf := &runFlags{
		stateDir:    fl.String("state-dir", "", "state `DIR` (default: .etcd-rescue beside the plan; resume finds the run through the run index); with --state, the runs' working directory on this machine"),
		state:       fl.String("state", "", "shared state store `URL` etcd://HOST:PORT[,HOST:PORT]/PREFIX[?cacert=F&cert=F&key=F&user=U&lockTTL=D] (a management etcd, never the cluster being repaired; password in "+engine.StatePasswordEnv+"): the lock, checkpoints, journal and plan files of the run live there, so another machine can resume it (apply: default the inventory's state: section, if any; resume: default the store the run index recorded for RUN)"),
		parallelism: fl.Int("parallelism", 10, "step-hosts executing at once"),
		yes:         fl.Bool("yes", false, "do not ask for confirmation (required without a terminal)"),
		progress: fl.String("progress", progressAuto, "progress output `MODE`: auto (a live step × host table if stdout is a terminal "+
			"and TERM is not dumb, else timestamped lines), plain (the lines), live (the table; exit 2 without a terminal); NO_COLOR turns colours off"),
	}
	fl.StringArrayVar(&rf.approve, "approve", nil, "answer yes to approve step `STEP` (repeatable)")
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
	slog.Debug("terminal", "stdinTTY", tty, "liveProgress", live)
	if !*rf.yes && !tty {
		return false, false, withCode(exitUsage, fmt.Errorf("%s changes the cluster and no terminal is attached to confirm it", cmd), hint)
	}
	return live, tty, nil
}

func newApplyCmd() *cobra.Command {
	var invs []string
	var allowDrift bool
	var parallel int
	var rf *runFlags
	c := &cobra.Command{
		Use:   "apply FILE|FILE.plan",
		Short: "run a plan over SSH, checkpointing every step",
		Long: `Validate the plan, print its dry-run, ask for "yes" on a terminal (or take
--yes), then run it over SSH, checkpointing every step × host transition in
the state dir. Without a terminal, --yes is required; approve steps need
--approve STEP.

A reviewed plan (written by etcd-rescue plan FILE --out FILE.plan, recognised
by its content) is run from the bytes it holds: apply renders it again and
refuses (exit 3) unless the dry-run is the reviewed one byte for byte, then
collects the facts of the live cluster (read-only) and refuses (exit 3),
listing every drift, if the cluster changed since review, unless
--allow-drift. Nothing is changed before both checks pass; the confirmation
shows the reviewed dry-run (docs/cli.md).

Fleet backups: with two or more --inventory, the plan runs once per
inventory (cluster), at most --parallel at once, each run with its own
state dir (.etcd-rescue/fleet/CLUSTER beside the plan, or DIR/CLUSTER with
--state-dir DIR). Only
a plan whose every step changes nothing on the hosts or the cluster
(snapshot-save, wait-healthy, check-quorum, verify-data, ...) may run on a
fleet; any other is refused (exit 2). Every inventory is validated before
anything runs; a cluster that fails does not stop the others. Progress
lines are prefixed [CLUSTER]; a summary table ends the run; exit 6 unless
every cluster succeeded (docs/cli.md#fleet-backups).`,
		Args:              exactArgs(1, "apply needs exactly one plan file"),
		ValidArgsFunction: completeApplyFile,
		RunE: func(cmd *cobra.Command, files []string) error {
			if len(invs) > 1 {
				if reviewed.IsFile(files[0]) {
					return usageError{"a fleet run (several --inventory) takes a plan file; " + files[0] + " is a reviewed plan of one cluster: apply it with its own inventory"}
				}
				if allowDrift {
					return usageError{"--allow-drift is for a reviewed plan (etcd-rescue plan FILE --out FILE.plan), not for a fleet run"}
				}
				return cmdFleet(files[0], invs, parallel, rf, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			if cmd.Flags().Changed("parallel") {
				return usageError{"--parallel is for a fleet run: give two or more --inventory (--parallelism bounds the step-hosts of one run)"}
			}
			inv := ""
			if len(invs) == 1 {
				inv = invs[0]
			}
			if reviewed.IsFile(files[0]) {
				return cmdApplyReviewed(files[0], inv, allowDrift, rf, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			if allowDrift {
				return usageError{"--allow-drift is for a reviewed plan (etcd-rescue plan FILE --out FILE.plan); " + files[0] + " is a plan file"}
			}
			return cmdApply(files, inv, rf, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	c.Flags().StringArrayVar(&invs, "inventory", nil, "inventory `FILE` with cluster:, hosts:, ssh: (replaces the plan's own); repeat it to back up a fleet: one run per inventory")
	_ = c.RegisterFlagCompletionFunc("inventory", completeYAMLFiles)
	c.Flags().IntVar(&parallel, "parallel", 4, "a fleet run (two or more --inventory) runs at most `N` clusters at once")
	c.Flags().BoolVar(&allowDrift, "allow-drift", false, "apply a reviewed plan even though the cluster changed since review (each drift is printed and journalled as accepted)")
	rf = addRunFlags(c.Flags())
	_ = c.RegisterFlagCompletionFunc("approve", completePlanApprovals)
	_ = c.RegisterFlagCompletionFunc("state-dir", completeDirs)
	completeValues(c, "progress", progressAuto, progressPlain, progressLive)
	return c
}

func cmdApply(files []string, inv string, rf *runFlags, stdout, stderr io.Writer) error {
	live, tty, err := rf.check(stdout, "apply", "review the dry-run (etcd-rescue plan "+files[0]+"), then run apply with --yes")
	if err != nil {
		return err
	}
	c, err := loadValid(files[0], inv, stderr)
	if err != nil {
		return err
	}
	// The dry-run is what the operator approves; it is printed redacted,
	// like everything this command writes.
	var dry bytes.Buffer
	if err := engine.BuildDryRun(c).WriteText(&dry); err != nil {
		return err
	}
	stdout.Write(engine.NewRedactor(c.Plan).Bytes(dry.Bytes()))
	fmt.Fprintln(stdout)

	p := newPrompter(stderr)
	opts := engine.Options{StateDir: *rf.stateDir, State: *rf.state, Inventory: inv, Parallelism: *rf.parallelism, Approve: rf.approve, Progress: stdout}
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

func newResumeCmd() *cobra.Command {
	var rf *runFlags
	var rerun, markDone []string
	c := &cobra.Command{
		Use:   "resume RUN",
		Short: "continue an interrupted run",
		Long: `Continue run RUN (a run id, or the path of a run directory) where it stopped:
what is done is skipped, what was left running or failed is probed with its
read-only check, and a destructive step is never repeated blindly (--rerun
and --mark-done decide for it). A resume against a changed plan or
inventory is refused (exit 3).

With --state URL, RUN is a run in that shared state store, whichever
machine started it: the plan and inventory it began with are read from the
store (written to RUN/plan/ in the working directory when they are not on
this machine as they were), and the cluster's lock there is taken; while
another session holds it, the resume is refused (exit 3) naming it.`,
		Args:              exactArgs(1, "resume needs exactly one run id (etcd-rescue runs lists them)"),
		ValidArgsFunction: completeRunIDs,
		RunE: func(cmd *cobra.Command, runs []string) error {
			return cmdResume(runs, rf, rerun, markDone, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := c.Flags()
	rf = addRunFlags(fl)
	fl.StringArrayVar(&rerun, "rerun", nil, "apply `STEP[@HOST]` again even though the engine would not (repeatable)")
	fl.StringArrayVar(&markDone, "mark-done", nil, "record `STEP[@HOST]` as done without running it (repeatable)")
	_ = c.RegisterFlagCompletionFunc("rerun", completeRunSelectors)
	_ = c.RegisterFlagCompletionFunc("mark-done", completeRunSelectors)
	_ = c.RegisterFlagCompletionFunc("approve", completeRunApprovals)
	_ = c.RegisterFlagCompletionFunc("state-dir", completeDirs)
	completeValues(c, "progress", progressAuto, progressPlain, progressLive)
	return c
}

func cmdResume(runs []string, rf *runFlags, rerun, markDone []string, stdout, stderr io.Writer) error {
	live, tty, err := rf.check(stdout, "resume", "look at etcd-rescue status "+runs[0]+", then run resume with --yes")
	if err != nil {
		return err
	}
	opts := engine.Options{StateDir: *rf.stateDir, State: *rf.state, Parallelism: *rf.parallelism, Approve: rf.approve, Progress: stdout}
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

// runStartLine is the progress line of a run that starts: its id and
// where its state is (with a shared store, the store and the working dir).
func runStartLine(r *runstate.Run) string {
	where := r.Dir()
	if u := r.SharedURL(); u != "" {
		where = u + " (working dir " + r.Dir() + ")"
	}
	return fmt.Sprintf("%s run %s, state in %s", time.Now().UTC().Format(time.RFC3339), r.ID(), where)
}

// runSession runs an apply or resume under the two-phase interrupt and
// prints the summary. With a live view (stdout is a terminal), the
// progress lines, the interrupt notices and the questions go through it,
// and its last table stays on the screen above the summary.
func runSession(stdout, stderr io.Writer, view *liveView, opts *engine.Options, f func(context.Context) (*engine.Result, error)) error {
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
	onStart := opts.OnStart
	opts.OnStart = func(r *runstate.Run) {
		if onStart != nil {
			onStart(r)
		}
		fmt.Fprintln(out, runStartLine(r))
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
	return err
}

// writeSummary prints counts, wall time and, per step, the engine's time
// beside the time spent in remote commands and etcd API calls.
func writeSummary(w io.Writer, res *engine.Result) {
	st := res.State
	n := st.Counts()
	fmt.Fprintf(w, "run %s: %s; step-hosts: %d done, %d failed, %d skipped, %d pending, %d running; wall %s\n",
		st.RunID, st.Outcome, n[runstate.StatusDone], n[runstate.StatusFailed], n[runstate.StatusSkipped], n[runstate.StatusPending], n[runstate.StatusRunning],
		dur(runstate.Millis(res.Wall.Milliseconds())))
	if res.EngineWall > 0 {
		// Parsed by benchmarks: keep the form.
		fmt.Fprintln(w, engine.EngineLine(res.Engine, res.EngineWall))
	}
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

func newStatusCmd() *cobra.Command {
	var stateDir, stateURL, out string
	c := &cobra.Command{
		Use:   "status [RUN]",
		Short: "show the steps of a run",
		Long: `Show run RUN (default: the latest) as a step × host table with its facts and
approvals, and whether a process holds its lock. -o json prints the
checkpoint (state.json) with the lock (docs/cli.md).`,
		Args:              maxArgs(1, "status takes at most one run id"),
		ValidArgsFunction: completeRunIDs,
		RunE: func(cmd *cobra.Command, rest []string) error {
			if err := checkOutput(out, "table", "json"); err != nil {
				return err
			}
			run := ""
			if len(rest) == 1 {
				run = rest[0]
			}
			return cmdStatus(cmd.Context(), stateURL, stateDir, run, out, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&stateDir, "state-dir", "", "state `DIR` (default: that of the run, found through the run index)")
	c.Flags().StringVar(&stateURL, "state", "", "shared state store `URL` (etcd://HOST:PORT/PREFIX...) that holds the run")
	_ = c.RegisterFlagCompletionFunc("state-dir", completeDirs)
	addOutputFlag(c, &out, "table", "table", "json")
	return c
}

func cmdStatus(ctx context.Context, stateURL, stateDir, run, out string, stdout io.Writer) error {
	store, id, closeStore, err := engine.LocateRun(ctx, stateURL, stateDir, run)
	if err != nil {
		return err
	}
	defer closeStore()
	slog.Debug("run located", "stateDir", store.Dir, "run", id)
	st, err := store.Load(id)
	if err != nil {
		return err
	}
	owner, held, err := store.LockOwnerOf(st.Cluster)
	if err != nil {
		return err
	}
	if out == "json" {
		type lockJSON struct {
			Held  bool               `json:"held"`
			Owner *runstate.LockInfo `json:"owner,omitempty"`
		}
		v := struct {
			*runstate.State
			Lock lockJSON `json:"lock"`
			// Recovered: state.json was unreadable, the last durable
			// checkpoint was read (runstate.Store.Load).
			Recovered string `json:"recovered,omitempty"`
		}{st, lockJSON{held, nil}, st.Recovered}
		if held {
			v.Lock.Owner = owner
		}
		return writeJSON(stdout, v)
	}
	var lock *runstate.LockInfo
	if held {
		lock = owner
	}
	writeStatus(stdout, st, lock, held)
	return nil
}

// writeStatus prints a run's step × host table, facts and approvals.
func writeStatus(w io.Writer, st *runstate.State, owner *runstate.LockInfo, held bool) {
	fmt.Fprintf(w, "run %s  plan %s (%s)\n", st.RunID, st.PlanName, st.Plan)
	if st.StartedBy != "" {
		by := "started by " + st.StartedBy
		if st.ResumedBy != "" {
			by += ", last resumed by " + st.ResumedBy
		}
		fmt.Fprintln(w, by)
	}
	if st.Recovered != "" {
		fmt.Fprintf(w, "note: %s\n", st.Recovered)
	}
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

func newRunsCmd() *cobra.Command {
	var stateDir, stateURL, out string
	c := &cobra.Command{
		Use:   "runs",
		Short: "list the runs in a state dir",
		Long: `List the runs apply started as this user on this machine (the run index);
with --state-dir, the runs in that directory; with --state, every run in
that shared state store, whoever started it and from whichever machine.
-o json prints the list (docs/cli.md).`,
		Args:              maxArgs(0, "runs takes no arguments"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out, "table", "json"); err != nil {
				return err
			}
			return cmdRuns(cmd.Context(), stateURL, stateDir, out, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	c.Flags().StringVar(&stateDir, "state-dir", "", "list the runs in state `DIR` (default: every run in the run index)")
	c.Flags().StringVar(&stateURL, "state", "", "list every run in the shared state store `URL` (etcd://HOST:PORT/PREFIX...)")
	_ = c.RegisterFlagCompletionFunc("state-dir", completeDirs)
	addOutputFlag(c, &out, "table", "table", "json")
	return c
}

// runEntry is a run of some state dir.
type runEntry struct {
	store *runstate.Store
	id    string
}

// listRuns is the runs of stateDir, or without one, every run apply
// recorded in the run index, wherever its state is.
func listRuns(ctx context.Context, stateURL, stateDir string) ([]runEntry, func(), error) {
	var list []runEntry
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	if stateURL != "" || stateDir != "" {
		var store *runstate.Store
		var err error
		if stateURL != "" {
			var closeStore func()
			store, closeStore, err = engine.OpenState(ctx, stateURL, stateDir)
			closers = append(closers, closeStore)
		} else {
			store, err = runstate.ExistingStore(stateDir)
		}
		if err != nil {
			return nil, closeAll, err
		}
		ids, err := store.Runs()
		if err != nil {
			return nil, closeAll, err
		}
		for _, id := range ids {
			list = append(list, runEntry{store, id})
		}
		return list, closeAll, nil
	}
	idx, err := runstate.IndexedRuns()
	if err != nil {
		return nil, closeAll, err
	}
	// One store per state dir, and per shared store: a run the index
	// records in a shared store is read from there, as resume would.
	stores := map[string]*runstate.Store{}
	for _, e := range idx {
		key := e.StateDir + "\t" + e.Shared
		st := stores[key]
		if st == nil {
			if e.Shared != "" {
				var closeStore func()
				st, closeStore, err = engine.OpenState(ctx, e.Shared, e.StateDir)
				closers = append(closers, closeStore)
				if err != nil {
					// The store does not answer: this machine's copy.
					slog.Warn("state store not reachable: listing this machine's copy of its runs", "store", e.Shared, "error", err)
					st = nil
				}
			}
			if st == nil {
				if st, err = runstate.ExistingStore(e.StateDir); err != nil {
					continue
				}
			}
			stores[key] = st
		}
		list = append(list, runEntry{st, e.RunID})
	}
	return list, closeAll, nil
}

// runJSON is a run in runs -o json.
type runJSON struct {
	RunID    string `json:"runId"`
	StateDir string `json:"stateDir"`
	// Store is the shared state store that holds the run, if any.
	Store     string    `json:"store,omitempty"`
	Cluster   string    `json:"cluster,omitempty"`
	StartedBy string    `json:"startedBy,omitempty"`
	ResumedBy string    `json:"resumedBy,omitempty"`
	PlanName  string    `json:"planName,omitempty"`
	Plan      string    `json:"plan,omitempty"`
	Outcome   string    `json:"outcome,omitempty"`
	Done      int       `json:"done"`
	Failed    int       `json:"failed"`
	Other     int       `json:"other"`
	Updated   time.Time `json:"updated,omitzero"`
	Error     string    `json:"error,omitempty"`
}

func cmdRuns(ctx context.Context, stateURL, stateDir, out string, stdout, stderr io.Writer) error {
	list, closeStores, err := listRuns(ctx, stateURL, stateDir)
	defer closeStores()
	if err != nil {
		return err
	}
	withDir := stateDir == "" && stateURL == ""
	if out == "json" {
		rows := []runJSON{}
		for _, e := range list {
			r := runJSON{RunID: e.id, StateDir: e.store.Dir}
			if e.store.Shared != nil {
				r.Store = e.store.Shared.Where()
			}
			st, err := e.store.Load(e.id)
			if err != nil {
				r.Error = err.Error()
			} else {
				n := st.Counts()
				r.PlanName, r.Plan, r.Outcome, r.Updated = st.PlanName, st.Plan, st.Outcome, st.Updated
				r.Cluster, r.StartedBy, r.ResumedBy = st.Cluster, st.StartedBy, st.ResumedBy
				r.Done, r.Failed = n[runstate.StatusDone], n[runstate.StatusFailed]
				r.Other = n[runstate.StatusPending] + n[runstate.StatusRunning] + n[runstate.StatusSkipped]
			}
			rows = append(rows, r)
		}
		return writeJSON(stdout, rows)
	}
	if withDir && len(list) == 0 {
		fmt.Fprintf(stderr, "no runs: none in the run index %s\n", runstate.IndexFile())
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	head := "RUN\tPLAN\tOUTCOME\tDONE\tFAILED\tOTHER\tUPDATED\tCLUSTER\tSTARTED BY"
	if withDir {
		head += "\tSTATE DIR"
	}
	fmt.Fprintln(tw, head)
	for _, e := range list {
		dir := ""
		if withDir {
			dir = "\t" + e.store.Where()
		}
		st, err := e.store.Load(e.id)
		if err != nil {
			fmt.Fprintf(tw, "%s\t?\t%v\t\t\t\t\t\t%s\n", e.id, err, dir)
			continue
		}
		n := st.Counts()
		other := n[runstate.StatusPending] + n[runstate.StatusRunning] + n[runstate.StatusSkipped]
		by := st.StartedBy
		if by == "" {
			by = "-"
		}
		if st.ResumedBy != "" && st.ResumedBy != st.StartedBy {
			by += " (resumed by " + st.ResumedBy + ")"
		}
		cluster := st.Cluster
		if cluster == "" {
			cluster = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s%s\n", e.id, st.PlanName, st.Outcome, n[runstate.StatusDone], n[runstate.StatusFailed], other, st.Updated.Format(time.RFC3339), cluster, by, dir)
	}
	tw.Flush()
	return nil
}

func newUnlockCmd() *cobra.Command {
	var stateDir, stateURL, inventory string
	var force bool
	c := &cobra.Command{
		Use:   "unlock [RUN]",
		Short: "remove a stale run lock (--force)",
		Long: `Remove the lock of a state dir whose holder is gone (killed, a crashed
machine). It refuses while a live process holds the lock (exit 3).

It breaks only the state dir's lock (STATE/lock, one apply or resume per
state dir). The run locks on the hosts (/run/etcd-rescue.lock, one recovery
per cluster) are not files it can remove: each is held by an SSH session of
the running etcd-rescue and frees itself when that ends: at once when its
connection closes (the process exits or is killed), within 30 s when the
connection is half-open (the operator's machine lost power or its network).
To stop a holder that is alive but must be stopped, stop its etcd-rescue
(Ctrl-C) where it runs; if that is out of reach, break the host locks:
  etcd-rescue unlock --force --inventory INV
kills the lock holder recorded in /run/etcd-rescue.lock.owner on every host
of the inventory whose lock is held (by hand: sudo cat that file, then
sudo kill its holderPid). The run that held them stops before its next
change on those hosts (it cannot take a lock again once another run holds
it), but a command it is running at that moment runs to its end: break a
live run's locks only when its operator cannot stop it.

With a shared state store (--state URL, or a run the run index records in
one), the lock is the cluster's lock there, an etcd lease: a holder that
died frees it when the lease expires (its TTL, 15 s by default), and
unlock --force RUN breaks it at once, whether its holder lives or not: a
live holder's next checkpoint is then refused (fencing) and it stops.`,
		Args:              maxArgs(1, "unlock takes at most one run id"),
		ValidArgsFunction: completeRunIDs,
		RunE: func(cmd *cobra.Command, rest []string) error {
			if inventory != "" {
				return cmdUnlockHosts(cmd.Context(), inventory, force, rest, stateDir, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			return cmdUnlock(cmd.Context(), stateURL, stateDir, force, rest, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&stateURL, "state", "", "shared state store `URL` (etcd://HOST:PORT/PREFIX...) that holds RUN; breaks the lock of RUN's cluster there")
	c.Flags().StringVar(&inventory, "inventory", "", "break the run locks on the hosts of this inventory `FILE` instead (kills their live holders)")
	c.Flags().StringVar(&stateDir, "state-dir", "", "state `DIR` (default: that of RUN, or of the latest run, found through the run index)")
	c.Flags().BoolVar(&force, "force", false, "remove the lock of a process that is gone")
	_ = c.RegisterFlagCompletionFunc("state-dir", completeDirs)
	return c
}

func cmdUnlock(ctx context.Context, stateURL, stateDir string, force bool, rest []string, stdout io.Writer) error {
	if !force {
		return withCode(exitUsage, errors.New("unlock removes another run's lock; it needs --force"),
			"make sure no apply or resume is running on this state dir, then: etcd-rescue unlock --force")
	}
	run := ""
	if len(rest) == 1 {
		run = rest[0]
	}
	if stateURL != "" || (stateDir == "" && indexedShared(run)) {
		return cmdUnlockShared(ctx, stateURL, stateDir, run, stdout)
	}
	var store *runstate.Store
	var err error
	switch {
	case len(rest) == 1:
		// The lock is the state dir's; the run only says which state dir.
		store, _, err = runstate.LocateRun(stateDir, rest[0])
	case stateDir != "":
		store, err = runstate.ExistingStore(stateDir)
	default:
		store, _, err = runstate.LocateRun("", "")
	}
	if err != nil {
		return err
	}
	owner, err := store.Unlock()
	var le *runstate.LockedError
	if errors.As(err, &le) {
		return withCode(exitLocked, fmt.Errorf("%w: refusing to unlock while that process holds it", err),
			"stop that process first (first Ctrl-C lets running steps finish)")
	}
	if err != nil {
		return err
	}
	if owner != nil {
		fmt.Fprintf(stdout, "removed the lock left by %s\n", owner)
	} else {
		fmt.Fprintln(stdout, "no lock held")
	}
	return nil
}

// indexedShared reports whether the run index records run (the latest
// when "") in a shared state store.
func indexedShared(run string) bool {
	store, _, err := runstate.LocateRun("", run)
	return err == nil && store.SharedURL != ""
}

// cmdUnlockShared breaks the lock of run's cluster in its shared store.
func cmdUnlockShared(ctx context.Context, stateURL, stateDir, run string, stdout io.Writer) error {
	store, id, closeStore, err := engine.LocateRun(ctx, stateURL, stateDir, run)
	if err != nil {
		return err
	}
	defer closeStore()
	st, err := store.Load(id)
	if err != nil {
		return err
	}
	owner, err := store.UnlockScope(st.Cluster)
	if err != nil {
		return err
	}
	if owner != nil {
		fmt.Fprintf(stdout, "broke the lock of cluster %s in %s, held by %s\n", st.Cluster, store.Where(), owner)
	} else {
		fmt.Fprintf(stdout, "no lock held on cluster %s in %s\n", st.Cluster, store.Where())
	}
	return nil
}

// cmdUnlockHosts breaks the run locks on the hosts of an inventory.
func cmdUnlockHosts(ctx context.Context, inventory string, force bool, rest []string, stateDir string, stdout, stderr io.Writer) error {
	if !force {
		return withCode(exitUsage, errors.New("unlock --inventory kills the live holders of the host locks; it needs --force"),
			"make sure the run holding them must be stopped and its operator cannot stop it, then: etcd-rescue unlock --force --inventory "+inventory)
	}
	if len(rest) > 0 || stateDir != "" {
		return usageError{"unlock --inventory breaks host locks; it takes no run id and no --state-dir"}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	inv, err := loadInventory(inventory, stderr)
	if err != nil {
		return err
	}
	failed := 0
	for _, b := range engine.BreakHostLocks(ctx, inv) {
		switch {
		case b.Err != nil:
			failed++
			fmt.Fprintf(stdout, "%s: could not ask: %v\n", b.Host, firstLine(b.Err))
		case b.Broken.Killed:
			fmt.Fprintf(stdout, "%s: was locked by %s: holder killed, lock free\n", b.Host, b.Broken.Owner)
		case b.Broken.Held:
			failed++
			fmt.Fprintf(stdout, "%s: locked by %s, but its holder could not be killed\n", b.Host, b.Broken.Owner)
		default:
			fmt.Fprintf(stdout, "%s: not locked\n", b.Host)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d host(s) not unlocked", failed)
	}
	return nil
}

func firstLine(err error) string {
	l, _, _ := strings.Cut(err.Error(), "\n")
	return l
}
