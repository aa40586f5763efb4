package main

// apply PLAN --inventory A --inventory B ...: a fleet run. The plan runs
// once per inventory (cluster), each run an engine.Apply of its own with
// its own state dir and lock, at most --parallel at once. Only plans whose
// every step changes nothing on the hosts or the cluster (steps.Type
// ReadOnly: backups, checks, waits) may run on a fleet: a fleet of
// restores is refused, not run.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// The results of a cluster in a fleet run, in the summary table.
const (
	fleetDone        = "done"
	fleetFailed      = "failed"
	fleetRefused     = "refused"
	fleetUnreachable = "unreachable"
	fleetWaiting     = "waiting"
	fleetInterrupted = "interrupted"
	fleetNotStarted  = "not started"
)

// fleetCluster is one cluster of a fleet run: its inventory, its compiled
// plan and, once it ran, its outcome.
type fleetCluster struct {
	inv  string
	name string
	c    *engine.Compiled

	runID    string
	stateDir string
	result   string
	wall     time.Duration
	err      error
}

func cmdFleet(file string, invs []string, parallel int, rf *runFlags, stdout, stderr io.Writer) error {
	if parallel < 1 {
		return usageError{fmt.Sprintf("--parallel must be at least 1, not %d", parallel)}
	}
	if *rf.progress == progressLive {
		return usageError{"--progress live shows one run; a fleet run prints plain progress lines prefixed [CLUSTER] (--progress plain)"}
	}
	// The live view is one run's: a fleet prints plain lines whatever
	// stdout is (check still rejects an unknown --progress).
	_, tty, err := rf.check(stdout, "apply", "review the dry-run (etcd-rescue plan "+file+" --inventory INV, for each inventory), then run apply with --yes")
	if err != nil {
		return err
	}
	fleet, err := loadFleet(file, invs, stderr)
	if err != nil {
		return err
	}
	if err := fleetReadOnly(file, fleet[0].c); err != nil {
		return err
	}
	for _, fc := range fleet {
		if err := checkApproveSteps(fc.c, rf.approve); err != nil {
			return err
		}
	}

	// Each cluster's dry-run, as the operator approves it (redacted).
	for _, fc := range fleet {
		var dry bytes.Buffer
		if err := engine.BuildDryRun(fc.c).WriteText(&dry); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "== cluster %s (inventory %s)\n", fc.name, fc.inv)
		stdout.Write(engine.NewRedactor(fc.c.Plan).Bytes(dry.Bytes()))
		fmt.Fprintln(stdout)
	}

	p := newPrompter(stderr)
	ctx, stop, release := interrupts(context.Background(), func(phase int) {
		if phase == 1 {
			fmt.Fprint(stderr, "\netcd-rescue: interrupt: no new cluster and no new step starts; running ones finish and are checkpointed. Interrupt again to cancel them.\n")
		} else {
			fmt.Fprint(stderr, "\netcd-rescue: second interrupt: cancelling running steps on every cluster.\n")
		}
	})
	defer release()
	if !*rf.yes {
		fmt.Fprintf(stdout, "fleet run of plan %s on %d clusters, at most %d at once:\n", fleet[0].c.Plan.Name, len(fleet), parallel)
		for _, fc := range fleet {
			fmt.Fprintf(stdout, "  %s (inventory %s)\n", fc.name, fc.inv)
		}
		// The question ends at the first interrupt: nothing has started.
		askCtx, cancelAsk := context.WithCancel(ctx)
		go func() {
			defer cancelAsk()
			select {
			case <-stop:
			case <-askCtx.Done():
			}
		}()
		ok, err := p.ask(askCtx, fmt.Sprintf("apply plan %s to these %d clusters? only \"yes\" proceeds: ", fleet[0].c.Plan.Name, len(fleet)))
		cancelAsk()
		select {
		case <-stop:
			return withCode(exitInterrupted, errors.New("fleet run interrupted at its confirmation; nothing was run"))
		default:
		}
		if err != nil {
			return err
		}
		if !ok {
			return engine.ErrNotConfirmed
		}
	}

	runFleet(ctx, stop, fleet, parallel, rf, tty, p, stdout, stderr)

	fmt.Fprintln(stdout)
	writeFleetTable(stdout, fleet)
	return fleetOutcome(stop, fleet)
}

// loadFleet loads the plan with each inventory. Every inventory is
// checked before anything runs: one invalid inventory, or two naming the
// same cluster, and nothing runs at all.
func loadFleet(file string, invs []string, stderr io.Writer) ([]*fleetCluster, error) {
	if err := notReviewed(file); err != nil {
		return nil, err
	}
	var fleet []*fleetCluster
	var bad []string
	errs := 0
	for _, inv := range invs {
		c, fs := engine.Load(file, inv)
		printFindings(stderr, fs)
		if fs.Errors() > 0 || c == nil {
			bad = append(bad, inv)
			errs += fs.Errors()
			continue
		}
		fleet = append(fleet, &fleetCluster{inv: inv, name: c.Plan.Cluster.Name, c: c})
	}
	if len(bad) > 0 {
		return nil, withCode(exitUsage, fmt.Errorf("fleet run: %s is not valid with %d of its %d inventories (%d error(s)); nothing was run", file, len(bad), len(invs), errs),
			"fix the findings above (each at file:line:col), then run the same command again; etcd-rescue validate "+file+" --inventory "+bad[0]+" checks one")
	}
	seen := map[string]string{}
	for _, fc := range fleet {
		if prev, ok := seen[fc.name]; ok {
			return nil, withCode(exitUsage, fmt.Errorf("fleet run: inventories %s and %s both name cluster %q; nothing was run", prev, fc.inv, fc.name),
				"each cluster once per fleet run: give each inventory's cluster: its own name: (it names the cluster's state dir and its row in the summary)")
		}
		seen[fc.name] = fc.inv
		if fc.name == "" || fc.name == "." || fc.name == ".." || strings.ContainsAny(fc.name, `/\`) {
			return nil, withCode(exitUsage, fmt.Errorf("fleet run: cluster name %q of inventory %s cannot name a state dir; nothing was run", fc.name, fc.inv),
				"a fleet run keeps each cluster's runs in a state dir named after it: give cluster: a name: without / or \\")
		}
	}
	return fleet, nil
}

// fleetReadOnly refuses a plan with any step whose type may change the
// hosts or the cluster: such a plan runs on one cluster at a time, with
// its own dry-run and confirmation.
func fleetReadOnly(file string, c *engine.Compiled) error {
	var changing []string
	for _, n := range c.Nodes {
		if !n.Type.ReadOnly {
			changing = append(changing, fmt.Sprintf("step %q (%s)", n.ID(), n.Type.Name))
		}
	}
	if len(changing) == 0 {
		return nil
	}
	var readOnly []string
	reg := steps.Registry()
	for _, name := range steps.Names(reg) {
		if reg[name].ReadOnly {
			readOnly = append(readOnly, name)
		}
	}
	return withCode(exitUsage, fmt.Errorf("fleet run refused: %s of %s: %s; nothing was run", plural(len(changing), "a step changes", "steps change")+" the hosts or the cluster", file, strings.Join(changing, ", ")),
		"a fleet run (several --inventory) only runs plans whose every step changes nothing on the hosts or the cluster: "+strings.Join(readOnly, ", "),
		"run this plan on one cluster at a time, each with its own dry-run and confirmation: etcd-rescue apply "+file+" --inventory INV")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// checkApproveSteps refuses an --approve naming no approve step of the
// plan before any cluster starts (engine.Apply would refuse it for each).
func checkApproveSteps(c *engine.Compiled, approve []string) error {
	for _, id := range approve {
		n := c.ByID[id]
		if n == nil {
			return usageError{fmt.Sprintf("--approve %s: no step %q in plan %s", id, id, c.Plan.Name)}
		}
		if a, ok := n.Type.New().(steps.AsksApproval); !ok || !a.AsksApproval() {
			return usageError{fmt.Sprintf("--approve %s: step %s is a %s step, not an approve step", id, id, n.Type.Name)}
		}
	}
	return nil
}

// fleetOptions is the engine options of one cluster's run in a fleet run:
// the one place they are made. Each cluster has its own state dir, so its
// own lock: DIR/CLUSTER with --state-dir DIR, else fleet/CLUSTER in the
// plan's default state dir.
func fleetOptions(rf *runFlags, fc *fleetCluster) engine.Options {
	dir := *rf.stateDir
	if dir == "" {
		dir = filepath.Join(runstate.StateDirFor(fc.c.Plan.File), "fleet")
	}
	// With a shared state store (--state, or each inventory's state:),
	// each cluster's run takes that cluster's lock there; the dir is its
	// working directory on this machine.
	return engine.Options{StateDir: filepath.Join(dir, fc.name), State: *rf.state, Inventory: fc.inv, Parallelism: *rf.parallelism, Approve: rf.approve}
}

// runFleet runs the clusters, in inventory order, at most parallel at
// once. The first interrupt (stop) starts no further cluster and lets the
// running ones stop as a single run would; the second cancels ctx.
func runFleet(ctx context.Context, stop <-chan struct{}, fleet []*fleetCluster, parallel int, rf *runFlags, tty bool, p *prompter, stdout, stderr io.Writer) {
	out := &lockedWriter{w: stdout}
	errOut := &lockedWriter{w: stderr}
	slots := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, fc := range fleet {
		select {
		case slots <- struct{}{}:
		case <-stop:
		}
		select {
		case <-stop:
			for _, rest := range fleet[i:] {
				rest.result = fleetNotStarted
			}
			wg.Wait()
			return
		default:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			runFleetCluster(ctx, stop, fc, rf, tty, p, out, errOut)
		}()
	}
	wg.Wait()
}

// runFleetCluster is one cluster's engine.Apply, its lines prefixed with
// [CLUSTER] and redacted with its plan's secrets.
func runFleetCluster(ctx context.Context, stop <-chan struct{}, fc *fleetCluster, rf *runFlags, tty bool, p *prompter, stdout, stderr io.Writer) {
	red := engine.NewRedactor(fc.c.Plan)
	prefix := "[" + fc.name + "] "
	pw := &prefixWriter{w: stdout, prefix: prefix, red: red}
	ew := &prefixWriter{w: stderr, prefix: prefix, red: red}
	defer pw.Flush()
	defer ew.Flush()

	opts := fleetOptions(rf, fc)
	opts.Progress = pw
	opts.Stop = stop
	if tty {
		opts.Ask = func(ctx context.Context, q string) (bool, error) { return p.ask(ctx, prefix+q) }
	}
	opts.OnStart = func(r *runstate.Run) {
		fc.runID = r.ID()
		fmt.Fprintln(pw, runStartLine(r))
	}
	if testOptions != nil {
		testOptions(&opts)
	}
	fc.stateDir = opts.StateDir
	t0 := time.Now()
	res, err := engine.Apply(ctx, fc.c, opts)
	fc.wall = time.Since(t0)
	if res != nil {
		if res.RunID != "" {
			fc.runID = res.RunID
		}
		if res.StateDir != "" {
			fc.stateDir = res.StateDir
		}
		if res.State != nil {
			var sum bytes.Buffer
			writeSummary(&sum, res)
			line, _, _ := strings.Cut(sum.String(), "\n")
			fmt.Fprintln(pw, line)
		}
	}
	fc.err = err
	fc.result = fleetResult(err)
	if err != nil {
		report(err, ew)
	}
}

// fleetResult names the outcome of a cluster's run for the summary table.
func fleetResult(err error) string {
	if err == nil {
		return fleetDone
	}
	var ge *engine.HostGateError
	if errors.As(err, &ge) {
		return fleetUnreachable
	}
	switch code, _, _, _ := classify(err, io.Discard); code {
	case exitWaiting:
		return fleetWaiting
	case exitInterrupted:
		return fleetInterrupted
	case exitUsage, exitLocked, exitPrereq:
		return fleetRefused
	}
	return fleetFailed
}

// writeFleetTable is the summary of a fleet run, one row per cluster in
// inventory order.
func writeFleetTable(w io.Writer, fleet []*fleetCluster) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tINVENTORY\tRUN\tRESULT\tTIME\tDETAIL")
	for _, fc := range fleet {
		run, t, detail := "-", "-", ""
		if fc.runID != "" {
			run = fc.runID
		}
		if fc.result != fleetNotStarted {
			t = dur(runstate.Millis(fc.wall.Milliseconds()))
		}
		if fc.err != nil {
			detail = oneLineText(engine.NewRedactor(fc.c.Plan).String(fleetDetail(fc.err)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", fc.name, fc.inv, run, fc.result, t, detail)
	}
	tw.Flush()
}

// fleetDetail is the first line of a cluster's error; for a run whose
// steps failed or wait, that of the first such step ("run ...: 1
// step-host(s) failed" says nothing the RESULT column does not).
func fleetDetail(err error) string {
	var re *engine.RunError
	if errors.As(err, &re) {
		switch {
		case len(re.Failed) > 0:
			// Without the plan position: the same for every cluster.
			f := re.Failed[0]
			on := ""
			if f.Host != "" {
				on = " on " + f.Host
			}
			return fmt.Sprintf("step %q%s: %s", f.Step, on, firstLine(f.Err))
		case len(re.Waiting) > 0:
			err = re.Waiting[0]
		}
	}
	return firstLine(err)
}

// fleetOutcome is the error of a fleet run: nil when every cluster's run
// is done.
func fleetOutcome(stop <-chan struct{}, fleet []*fleetCluster) error {
	var notOK []string
	var hint string
	for _, fc := range fleet {
		if fc.result == fleetDone {
			continue
		}
		notOK = append(notOK, fc.name+" "+fc.result)
		if hint == "" && fc.runID != "" && (fc.result == fleetFailed || fc.result == fleetWaiting || fc.result == fleetInterrupted) {
			hint = fmt.Sprintf("continue a run that stopped: etcd-rescue resume %s --state-dir %s", fc.runID, fc.stateDir)
		}
	}
	if len(notOK) == 0 {
		return nil
	}
	select {
	case <-stop:
		return withCode(exitInterrupted, fmt.Errorf("fleet run interrupted: %d of %d clusters not done (%s)", len(notOK), len(fleet), strings.Join(notOK, ", ")),
			"the table above has each cluster's run; etcd-rescue status RUN --state-dir DIR shows one")
	default:
	}
	hints := []string{"the table above says which and why; the lines prefixed [CLUSTER] on stderr hold each error with its hints"}
	if hint != "" {
		hints = append(hints, hint)
	}
	hints = append(hints, "or run the plan again on one cluster: etcd-rescue apply PLAN --inventory INV")
	return withCode(exitFleetPartial, fmt.Errorf("fleet run: %d of %d clusters did not succeed (%s); the others ran to their end", len(notOK), len(fleet), strings.Join(notOK, ", ")), hints...)
}

// lockedWriter serialises the writes of the clusters running at once.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// prefixWriter writes each complete line to w as prefix+line, redacted;
// Flush writes a last partial line.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	red    *engine.Redactor
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	var out []byte
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		out = append(out, p.prefix...)
		out = append(out, p.red.Bytes(p.buf[:i+1])...)
		p.buf = p.buf[i+1:]
	}
	if len(out) > 0 {
		if _, err := p.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// Flush writes what is left of an unfinished line.
func (p *prefixWriter) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.red.Bytes(p.buf))
		p.buf = nil
	}
}
