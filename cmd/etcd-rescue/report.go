package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
)

func newReportCmd() *cobra.Command {
	var stateDir, stateURL, out string
	c := &cobra.Command{
		Use:   "report [RUN]",
		Short: "print a run's evidence summary, or pack its evidence for a postmortem",
		Long: `Print the summary (summary.md) of run RUN (default: the latest), written
at the end of every apply and resume in <state>/runs/RUN/evidence/. With -o
FILE, write a tar.gz of the evidence dir and state.json instead: the facts of
the live cluster before and after each session, the journal, per-step
timings, snapshot checksums and revisions, before/after member lists and
HashKV. Secret values are redacted in all of it (docs/cli.md). For a run in
a shared state store (--state URL, or recorded so in the run index), the
evidence of every session, on whichever machine it ran, is read from the
store.`,
		Args:              maxArgs(1, "report takes at most one run id"),
		ValidArgsFunction: completeRunIDs,
		RunE: func(cmd *cobra.Command, rest []string) error {
			run := ""
			if len(rest) == 1 {
				run = rest[0]
			}
			return cmdReport(cmd.Context(), stateURL, stateDir, run, out, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&stateURL, "state", "", "shared state store `URL` (etcd://HOST:PORT/PREFIX...) that holds the run")
	c.Flags().StringVar(&stateDir, "state-dir", "", "state `DIR` (default: that of the run, found through the run index)")
	_ = c.RegisterFlagCompletionFunc("state-dir", completeDirs)
	c.Flags().StringVarP(&out, "output", "o", "", "write the evidence bundle to `FILE` (tar.gz) instead of printing the summary")
	return c
}

func cmdReport(ctx context.Context, stateURL, stateDir, run, out string, stdout io.Writer) error {
	store, id, closeStore, err := engine.LocateRun(ctx, stateURL, stateDir, run)
	if err != nil {
		return err
	}
	defer closeStore()
	slog.Debug("run located", "stateDir", store.Dir, "run", id)
	if _, err := store.Load(id); err != nil {
		return err
	}
	if err := store.PullEvidence(id); err != nil {
		return err
	}
	if out == "" {
		b, err := os.ReadFile(filepath.Join(store.EvidenceDir(id), runstate.EvidenceSummary))
		if errors.Is(err, fs.ErrNotExist) {
			return withCode(exitFailed, fmt.Errorf("run %s has no evidence summary yet (%s)", id, store.EvidenceDir(id)),
				"the evidence is written at the end of each apply or resume session; a run started by an older etcd-rescue has none")
		}
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := store.Bundle(id, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: the evidence of run %s and its state.json\n", out, id)
	return nil
}
