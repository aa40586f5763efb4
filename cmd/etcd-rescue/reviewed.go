package main

// Reviewed plans: `plan FILE --out FILE.plan` writes one (engine/reviewed),
// `apply FILE.plan` refuses it when etcd-rescue renders it differently or
// the cluster drifted since review (engine/facts: Compare), and resume of
// such a run reloads it from the document (engine/resume.go).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/engine/reviewed"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/access"
	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
)

// collectFacts collects the facts a reviewed plan depends on; tests
// replace it (a fixed world, a drifted one).
var collectFacts = func(ctx context.Context, c *engine.Compiled, o facts.Options) (*facts.Facts, error) {
	return facts.Collect(ctx, c.Plan, o)
}

// toolVersion is the version of this etcd-rescue: the module version and,
// when built from a checkout, the commit.
func toolVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v += " (modified)"
			}
		}
	}
	return v
}

// dryRunText is the dry-run as the reviewer reads it: rendered, and
// redacted like everything this tool prints.
func dryRunText(c *engine.Compiled) (string, error) {
	var b bytes.Buffer
	if err := engine.BuildDryRun(c).WriteText(&b); err != nil {
		return "", err
	}
	return string(engine.NewRedactor(c.Plan).Bytes(b.Bytes())), nil
}

// compileReviewed rebuilds and compiles the plan a document holds. The
// plan validated when it was reviewed; findings now mean this
// etcd-rescue judges it differently (exit 3, like a different dry-run).
// Warnings are printed only with warn (plan --out printed them already).
func compileReviewed(d *reviewed.Document, path string, warn bool, stderr io.Writer) (*engine.Compiled, error) {
	c, fs := engine.LoadReviewed(d)
	if warn || fs.Errors() > 0 {
		printFindings(stderr, fs)
	}
	if fs.Errors() > 0 || c == nil {
		return nil, withCode(exitLocked, fmt.Errorf("the plan held in %s does not validate with this etcd-rescue (%d error(s)); it did when it was reviewed", path, fs.Errors()),
			"review it again: etcd-rescue plan "+shellquote.Quote(d.Plan.Given)+" --out "+shellquote.Quote(path))
	}
	return c, nil
}

// cmdPlanOut is plan FILE --out OUT: the dry-run on stdout, built from the
// bytes the document will hold exactly as apply rebuilds it, then the
// facts of the live cluster (read-only), then the document.
func cmdPlanOut(c0 *engine.Compiled, file, inv, out string, timeout time.Duration, stdout, stderr io.Writer) error {
	d, err := reviewed.New(c0.Plan, file, inv, inv != "", "", nil, timeout, toolVersion(), time.Now())
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("cannot write a reviewed plan: %w", err))
	}
	c, err := compileReviewed(d, out, false, stderr)
	if err != nil {
		return err
	}
	text, err := dryRunText(c)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(stdout, text); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stderr, "collecting the facts the plan depends on (read-only, %s per host)...\n", timeout)
	f, err := collectFacts(ctx, c, facts.Options{Timeout: timeout, Inventory: orPlan(inv, file)})
	if err != nil {
		return factsError(err, "nothing was written")
	}
	d.DryRun, d.Facts = text, facts.SubsetOf(f)
	if err := d.Write(out); err != nil {
		return fmt.Errorf("writing the reviewed plan: %w", err)
	}
	fmt.Fprintf(stderr, "reviewed plan written to %s (plan sha256 %.12s)\n", out, d.PlanSHA256)
	d.Facts.WriteSummary(stderr)
	fmt.Fprintf(stderr, "apply it with: etcd-rescue apply %s (it refuses if the cluster changed since)\n", shellquote.Quote(out))
	return nil
}

func orPlan(inv, file string) string {
	if inv != "" {
		return inv
	}
	return file
}

// factsError maps an error of a facts collection to its exit code.
func factsError(err error, nothing string) error {
	var pe *access.PrereqError
	switch {
	case errors.As(err, &pe):
		return withCode(exitPrereq, err, nothing+"; fix the above (the plan's ssh: and cluster.tls: sections name the files), then run the same command again")
	case errors.Is(err, context.Canceled):
		return withCode(exitInterrupted, err)
	}
	return fmt.Errorf("collecting facts: %w", err)
}

// readReviewed reads a reviewed plan, mapping its errors to exit codes.
func readReviewed(path string) (*reviewed.Document, error) {
	d, err := reviewed.Read(path)
	var fe *reviewed.FormatError
	var ie *reviewed.IntegrityError
	switch {
	case errors.As(err, &fe):
		return nil, withCode(exitUsage, err, "a reviewed plan is written by: etcd-rescue plan PLAN.yaml --out FILE.plan")
	case errors.As(err, &ie):
		return nil, withCode(exitLocked, err, "nothing was changed; review the plan again: etcd-rescue plan PLAN.yaml --out "+shellquote.Quote(path))
	case err != nil:
		return nil, withCode(exitUsage, fmt.Errorf("cannot read reviewed plan: %w", err))
	}
	return d, nil
}

// cmdApplyReviewed is apply FILE.plan.
func cmdApplyReviewed(path, inv string, allowDrift bool, rf *runFlags, stdout, stderr io.Writer) error {
	if inv != "" {
		return withCode(exitUsage, fmt.Errorf("%s is a reviewed plan: it holds its inventory; --inventory cannot replace it", path),
			"apply it without --inventory, or review the plan with that inventory: etcd-rescue plan PLAN.yaml --inventory "+shellquote.Quote(inv)+" --out FILE.plan")
	}
	live, tty, err := rf.check(stdout, "apply", "review the dry-run it holds, then run apply "+path+" --yes")
	if err != nil {
		return err
	}
	d, err := readReviewed(path)
	if err != nil {
		return err
	}
	reReview := "review it again: etcd-rescue plan " + shellquote.Quote(d.Plan.Given)
	if d.Inventory != nil && d.Inventory.FromFlag {
		reReview += " --inventory " + shellquote.Quote(d.Inventory.Given)
	}
	reReview += " --out " + shellquote.Quote(path)
	c, err := compileReviewed(d, path, true, stderr)
	if err != nil {
		return err
	}
	text, err := dryRunText(c)
	if err != nil {
		return err
	}
	if line, was, now := reviewed.FirstDifference(d.DryRun, text); line > 0 {
		return withCode(exitLocked, fmt.Errorf("this etcd-rescue (%s) renders the reviewed plan differently from the one that wrote it (%s): nothing was changed; first difference at line %d of the dry-run:\n  reviewed: %s\n  now:      %s",
			toolVersion(), d.EtcdRescue, line, was, now), reReview)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	f, err := collectFacts(ctx, c, facts.Options{Timeout: time.Duration(d.FactsTimeout), Inventory: path})
	stop()
	if err != nil {
		return factsError(err, "nothing was changed")
	}
	drifts := facts.Compare(d.Facts, facts.SubsetOf(f))
	hard := facts.HardDrifts(drifts)
	reviewedAt := d.Facts.CollectedAt.UTC().Format(time.RFC3339)
	if hard > 0 && !allowDrift {
		var b strings.Builder
		fmt.Fprintf(&b, "the cluster changed since the plan was reviewed (facts at %s): %d drift(s); nothing was changed", reviewedAt, hard)
		for _, dr := range drifts {
			if dr.Hard {
				fmt.Fprintf(&b, "\n  - %s", dr.Msg)
			} else {
				fmt.Fprintf(&b, "\n  (not drift) %s", dr.Msg)
			}
		}
		return withCode(exitLocked, errors.New(b.String()),
			"look at the cluster (etcd-rescue diagnose --inventory INV); if the plan is still right, "+reReview,
			"or apply it as reviewed anyway, accepting the drift: etcd-rescue apply "+shellquote.Quote(path)+" --allow-drift")
	}

	// The confirm shows the dry-run that was reviewed, byte for byte.
	if _, err := io.WriteString(stdout, d.DryRun); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "reviewed plan %s: reviewed at %s (etcd-rescue %s), plan sha256 %.12s\n", path, reviewedAt, d.EtcdRescue, d.PlanSHA256)
	if len(drifts) == 0 {
		fmt.Fprintf(stdout, "the cluster is as it was at review (facts at %s)\n", f.CollectedAt.UTC().Format(time.RFC3339))
	}
	for _, dr := range drifts {
		switch {
		case dr.Hard:
			fmt.Fprintf(stdout, "DRIFT ACCEPTED (--allow-drift): %s\n", dr.Msg)
		default:
			fmt.Fprintf(stdout, "changed since review, not drift: %s\n", dr.Msg)
		}
	}
	fmt.Fprintln(stdout)

	p := newPrompter(stderr)
	opts := engine.Options{StateDir: *rf.stateDir, PlanFile: path, Parallelism: *rf.parallelism, Approve: rf.approve, Progress: stdout, Before: f}
	if tty {
		opts.Ask = p.ask
	}
	if !*rf.yes {
		opts.Confirm = func(ctx context.Context, _ *runstate.State) (bool, error) {
			return p.ask(ctx, fmt.Sprintf("apply reviewed plan %s to cluster %s? only \"yes\" proceeds: ", c.Plan.Name, c.Plan.Cluster.Name))
		}
	}
	abs, _ := filepath.Abs(path)
	opts.OnStart = func(r *runstate.Run) {
		r.Event(runstate.Event{Type: "review", Msg: fmt.Sprintf("applying reviewed plan %s: reviewed at %s by etcd-rescue %s, plan sha256 %s; facts compared at %s: %d drift(s), %d shown",
			abs, reviewedAt, d.EtcdRescue, d.PlanSHA256, f.CollectedAt.UTC().Format(time.RFC3339), hard, len(drifts)-hard)})
		for _, dr := range drifts {
			status := "shown"
			if dr.Hard {
				status = "accepted"
			}
			r.Event(runstate.Event{Type: "drift", Status: status, Msg: dr.What + ": " + dr.Msg})
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
