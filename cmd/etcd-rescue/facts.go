package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/internal/access"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

func newFactsCmd() *cobra.Command {
	var inv, out string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "facts --inventory FILE",
		Short: "read-only picture of the live cluster: every host over SSH, every member over the API",
		Long: `Ask every host of the inventory over SSH (reachability and host key, addresses,
etcd service, data dir, installed etcd version, the settings etcd will start
with, listening ports) and every member through its client API (status,
member list, HashKV), in parallel, each host bounded by --timeout. Nothing is
written anywhere. An unreachable host is a fact, reported with its reason, not
an error: the exit code is 0 unless the inventory is invalid (2) or a local
prerequisite such as the SSH identity file is missing (4).
-o json prints the facts document (kind etcd-rescue/facts, docs/cli.md).`,
		Args:              exactArgs(0, "facts takes no arguments: etcd-rescue facts --inventory FILE"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out, "table", "json"); err != nil {
				return err
			}
			if inv == "" {
				return withCode(exitUsage, errors.New("facts needs --inventory FILE"), "the inventory holds cluster:, hosts: and ssh:, as for validate --inventory")
			}
			if timeout <= 0 {
				return usageError{fmt.Sprintf("--timeout must be positive, not %s", timeout)}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return cmdFacts(ctx, inv, out, timeout, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	addInventoryFlag(c, &inv)
	c.Flags().Lookup("inventory").Usage = "inventory `FILE` with cluster:, hosts:, ssh:"
	addOutputFlag(c, &out, "table", "table", "json")
	c.Flags().DurationVar(&timeout, "timeout", facts.DefaultTimeout, "bound for each host (SSH, its commands and its member's API calls); hosts are asked in parallel")
	return c
}

// loadInventory loads an inventory alone; findings are printed as validate
// prints them, and errors among them are exit 2.
func loadInventory(path string, stderr io.Writer) (*plans.Plan, error) {
	p, fs := plans.LoadInventory(path)
	printFindings(stderr, fs)
	if fs.Errors() > 0 || p == nil {
		return nil, withCode(exitUsage, fmt.Errorf("%s is not a valid inventory (%d error(s))", path, fs.Errors()), "fix the findings above (each at file:line:col), then run the same command again")
	}
	return p, nil
}

func cmdFacts(ctx context.Context, inv, out string, timeout time.Duration, stdout, stderr io.Writer) error {
	p, err := loadInventory(inv, stderr)
	if err != nil {
		return err
	}
	f, err := facts.Collect(ctx, p, facts.Options{Timeout: timeout, Inventory: inv})
	var pe *access.PrereqError
	switch {
	case errors.As(err, &pe):
		return withCode(exitPrereq, err, "nothing was asked; fix the above (the inventory's ssh: and cluster.tls: sections name the files), then run the same command again")
	case errors.Is(err, context.Canceled):
		return withCode(exitInterrupted, err)
	case err != nil:
		return err
	}
	if out == "json" {
		return writeJSON(stdout, f)
	}
	return f.WriteTable(stdout)
}
