package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/engine/diagnose"
	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/engine/scaffold"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// newFlags are the flags of new.
type newFlags struct {
	inventory  string
	fromFacts  bool
	factsFile  string
	timeout    time.Duration
	out        string
	force      bool
	route      string
	member     string
	oldPeerURL string
	survivor   string
	snapshot   string
	to         string
	caCert     string
	caKey      string
	caHost     string
}

func newNewCmd() *cobra.Command {
	var f newFlags
	c := &cobra.Command{
		Use:   "new SCENARIO --inventory INV [--from-facts | --facts FILE] [-o FILE]",
		Short: "scaffold a plan for a scenario from an inventory (and the live cluster)",
		Long: `Write a recovery plan for SCENARIO over the inventory's cluster, filled with
the choices it needs: from the live cluster with --from-facts (or a saved
"etcd-rescue facts -o json" file with --facts), or from the flags below.
Every choice is a comment in the plan; the plan passes validate. The plan
names its inventory (inventory:), so plan and apply need no --inventory.

Scenarios and their choices:
  ip-change                  --member NAME (the member whose host moved)
  lost-host                  --member NAME (the lost member), --old-peer-url URL
                             (or the inventory's vars.lostPeerURL)
  ip-change, lost-host       on TLS, new certificates for the member (cert-issue):
                             --ca-cert FILE --ca-key FILE [--ca-host HOST]
  quorum-loss                --survivor NAME; --route force-new-cluster (default)
                             or snapshot (save from the survivor, restore all)
  restore-all-from-snapshot  --snapshot FILE (or the inventory's vars.snapshot)
  single-node-restore        --snapshot FILE (or the inventory's vars.snapshot)
  backup                     --member NAME (default: the first member), --to FILE

With cluster.kubernetes in the inventory, restores and quorum-loss stop the
control plane first (kube-stop-control-plane) and start it after the data is
verified, then wait for /readyz and prove the relist where the inventory has
the API server's CA and a client certificate; ip-change and lost-host leave it
running (docs/cli.md, new).

With -o FILE the plan is written there (never over an existing file
without --force); without it, to stdout.`,
		Args:              exactArgs(1, "new needs one scenario: "+strings.Join(scaffold.Scenarios, ", ")),
		ValidArgsFunction: cobra.FixedCompletions(scaffold.Scenarios, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return cmdNew(ctx, args[0], f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.inventory, "inventory", "", "inventory `FILE` with cluster:, hosts:, ssh: (required)")
	_ = c.RegisterFlagCompletionFunc("inventory", completeYAMLFiles)
	fl.BoolVar(&f.fromFacts, "from-facts", false, "collect facts from the live cluster and take the choices from their diagnosis")
	fl.StringVar(&f.factsFile, "facts", "", "take the choices from a saved `FILE` of etcd-rescue facts -o json")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Second, "with --from-facts: per-host `TIMEOUT`")
	fl.StringVarP(&f.out, "output", "o", "", "write the plan to `FILE` (default: stdout)")
	_ = c.RegisterFlagCompletionFunc("output", completeYAMLFiles)
	fl.BoolVar(&f.force, "force", false, "overwrite the -o file if it exists")
	fl.StringVar(&f.route, "route", "", "quorum-loss: `ROUTE` force-new-cluster (default) or snapshot")
	completeValues(c, "route", scaffold.Routes...)
	fl.StringVar(&f.member, "member", "", "ip-change, lost-host: the member `NAME` that moved or was lost; backup: the member to save from")
	fl.StringVar(&f.oldPeerURL, "old-peer-url", "", "lost-host: the lost member's peer `URL` in the cluster's member list now")
	fl.StringVar(&f.survivor, "survivor", "", "quorum-loss: the member `NAME` whose data becomes the cluster")
	fl.StringVar(&f.snapshot, "snapshot", "", "restores: snapshot `FILE` on this machine (relative to the plan)")
	fl.StringVar(&f.to, "to", "", "backup, quorum-loss --route snapshot: snapshot-save target `FILE` (relative to the plan)")
	fl.StringVar(&f.caCert, "ca-cert", "", "ip-change, lost-host on TLS: certificate `FILE` of the CA that issues the member's new certificates (relative to the plan, or on --ca-host; with --ca-key)")
	fl.StringVar(&f.caKey, "ca-key", "", "ip-change, lost-host on TLS: the CA's private key `FILE` (relative to the plan, or on --ca-host; with --ca-cert)")
	fl.StringVar(&f.caHost, "ca-host", "", "ip-change, lost-host: the inventory `HOST` that holds the CA files and signs there (default: this machine)")
	return c
}

func cmdNew(ctx context.Context, scenario string, f newFlags, stdout, stderr io.Writer) error {
	if !slices.Contains(scaffold.Scenarios, scenario) {
		return withCode(exitUsage, fmt.Errorf("unknown scenario %q%s", scenario, plans.Suggest(scenario, scaffold.Scenarios)),
			"scenarios: "+strings.Join(scaffold.Scenarios, ", "))
	}
	if f.inventory == "" {
		return withCode(exitUsage, errors.New("new needs --inventory FILE"), "the inventory describes the cluster (cluster:, hosts:, ssh:); see docs/plan-format.md")
	}
	if f.fromFacts && f.factsFile != "" {
		return usageError{"--from-facts and --facts FILE exclude each other"}
	}
	inv, fs := plans.LoadInventory(f.inventory)
	if inv == nil || fs.Errors() > 0 {
		printFindings(stderr, fs)
		return withCode(exitUsage, fmt.Errorf("inventory %s is not valid (%d error(s))", f.inventory, fs.Errors()),
			"fix the findings above; docs/plan-format.md describes cluster:, hosts: and ssh:")
	}
	printFindings(stderr, fs) // warnings
	if f.out != "" && !f.force {
		if _, err := os.Stat(f.out); err == nil {
			return withCode(exitUsage, fmt.Errorf("%s exists; not overwritten", f.out), "choose another -o FILE, or add --force to replace it")
		}
	}

	o := scaffold.Options{
		Scenario: scenario, Route: f.route, Output: f.out,
		Inventory: scaffold.RelInventory(f.inventory, f.out),
		Member:    f.member, OldPeerURL: f.oldPeerURL, Survivor: f.survivor, Snapshot: f.snapshot, To: f.to,
		CACert: f.caCert, CAKey: f.caKey, CAHost: f.caHost,
		Command: newCommandLine(scenario, f),
	}
	if (f.fromFacts || f.factsFile != "") && scenario == "backup" {
		fmt.Fprintln(stderr, "note: backup needs no facts; --from-facts/--facts ignored")
	} else if f.fromFacts || f.factsFile != "" {
		var fa *facts.Facts
		var err error
		if f.factsFile != "" {
			fa, err = readFacts(f.factsFile)
			o.FactsFile = f.factsFile
		} else {
			fa, err = facts.Collect(ctx, inv, facts.Options{Timeout: f.timeout, Inventory: f.inventory})
			if err != nil {
				err = withCode(exitFailed, fmt.Errorf("collecting facts: %w", err),
					"etcd-rescue facts --inventory "+f.inventory+" shows what can be asked; or give the choices as flags (etcd-rescue new --help)")
			}
		}
		if err != nil {
			return err
		}
		o.FactsAt = fa.CollectedAt
		d := diagnose.Diagnose(fa, f.inventory)
		if d == nil || d.Recommend == nil || d.Recommend.Scenario != scenario {
			return diagnosisMismatch(scenario, d)
		}
		o.Recommend = d.Recommend
	}

	out, err := scaffold.Generate(inv, o)
	var ce *scaffold.ChoiceError
	var be *scaffold.BugError
	switch {
	case errors.As(err, &ce):
		hints := make([]string, len(ce.Hints))
		for i, h := range ce.Hints {
			hints[i] = strings.ReplaceAll(h, "--inventory INV", "--inventory "+f.inventory)
		}
		return withCode(exitUsage, err, hints...)
	case errors.As(err, &be):
		return withCode(exitFailed, err, "please report this with the inventory and the command line; the plan above the findings was not written")
	case err != nil:
		return err
	}
	if f.out == "" {
		if _, err := stdout.Write(out); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "next: save the plan beside the inventory (or use -o FILE), then review it with etcd-rescue plan FILE and run it with etcd-rescue apply FILE\n")
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(f.out), 0o755); err != nil {
		return withCode(exitFailed, fmt.Errorf("writing %s: %w", f.out, err))
	}
	if err := runstate.WriteFileAtomic(f.out, out, 0o644); err != nil {
		return withCode(exitFailed, fmt.Errorf("writing %s: %w", f.out, err))
	}
	fmt.Fprintf(stderr, "wrote %s (%s for %s)\nnext: etcd-rescue plan %s    (review: the exact commands per host)\n      etcd-rescue apply %s\n",
		f.out, scenario, inv.Cluster.Name, f.out, f.out)
	return nil
}

// diagnosisMismatch is the exit when the facts do not support the scenario.
func diagnosisMismatch(scenario string, d *diagnose.Diagnosis) error {
	if d == nil {
		return withCode(exitUsage, fmt.Errorf("the facts gave no diagnosis for %s", scenario), "give the choices as flags: etcd-rescue new --help")
	}
	msg := fmt.Sprintf("the diagnosis is %s, not %s: %s", d.Situation, scenario, d.Summary)
	var hints []string
	switch {
	case d.Healthy || d.Situation == diagnose.Healthy:
		hints = append(hints, "the cluster is healthy: there is nothing to recover (etcd-rescue new backup takes a snapshot)")
	case d.Next != "":
		hints = append(hints, "the diagnosis recommends: "+d.Next)
	case d.Recommend != nil:
		hints = append(hints, "the diagnosis recommends: etcd-rescue new "+d.Recommend.Scenario+" --inventory INV --from-facts")
	default:
		hints = append(hints, "etcd-rescue diagnose shows the findings and their evidence")
	}
	hints = append(hints, "to scaffold "+scenario+" anyway, give its choices as flags instead of --from-facts (etcd-rescue new --help)")
	return withCode(exitUsage, errors.New(msg), hints...)
}

// readFacts reads a saved facts -o json file; anything else is a usage
// error that says what the file is not.
func readFacts(path string) (*facts.Facts, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, withCode(exitUsage, fmt.Errorf("cannot read facts file: %w", err), "save one with: etcd-rescue facts --inventory INV -o json > facts.json")
	}
	hint := "save one with: etcd-rescue facts --inventory INV -o json > facts.json"
	var head struct {
		Kind    string `json:"kind"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, withCode(exitUsage, fmt.Errorf("%s is not a facts JSON file: %v", path, err), hint)
	}
	if head.Kind != facts.Kind {
		return nil, withCode(exitUsage, fmt.Errorf("%s is not a facts file (kind %q, want %q)", path, head.Kind, facts.Kind), hint)
	}
	if head.Version != facts.Version {
		return nil, withCode(exitUsage, fmt.Errorf("%s has facts version %d; this etcd-rescue reads version %d", path, head.Version, facts.Version), hint)
	}
	var fa facts.Facts
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&fa); err != nil {
		return nil, withCode(exitUsage, fmt.Errorf("%s: %v", path, err), hint)
	}
	return &fa, nil
}

// newCommandLine is the command line of new with its choices, for the
// plan's header: the same flags in a fixed order.
func newCommandLine(scenario string, f newFlags) string {
	parts := []string{"etcd-rescue", "new", scenario, "--inventory", f.inventory}
	add := func(flag, v string) {
		if v != "" {
			parts = append(parts, flag, v)
		}
	}
	add("--route", f.route)
	add("--member", f.member)
	add("--old-peer-url", f.oldPeerURL)
	add("--survivor", f.survivor)
	add("--snapshot", f.snapshot)
	add("--to", f.to)
	add("--ca-cert", f.caCert)
	add("--ca-key", f.caKey)
	add("--ca-host", f.caHost)
	if f.fromFacts && scenario != "backup" {
		parts = append(parts, "--from-facts")
	}
	if scenario != "backup" {
		add("--facts", f.factsFile)
	}
	add("-o", f.out)
	for i, p := range parts {
		if strings.ContainsAny(p, " \t'\"$\\") {
			parts[i] = "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
		}
	}
	return strings.Join(parts, " ")
}
