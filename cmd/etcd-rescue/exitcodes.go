package main

// The exit codes of every command, lab included, and the one mapping from
// errors to them. README.md's exit-code table is this table
// (TestReadmeExitCodes keeps them equal).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/lab"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitLocked  = 3
	exitPrereq  = 4
	exitWaiting = 5
	// exitFleetPartial: a fleet run (apply with several --inventory) in
	// which some cluster's run did not succeed.
	exitFleetPartial = 6
	exitInternal     = 70
	exitInterrupted  = 130
)

// exitInfo is one row of the exit-code table.
type exitInfo struct {
	Code    int
	Name    string
	Meaning string
}

// exitCodes is the exit-code table, in the order of the codes.
var exitCodes = []exitInfo{
	{exitOK, "ok", "success"},
	{exitFailed, "failed", "the run, a check or a lab operation failed; for `diagnose`, the cluster is not healthy; for `apply`/`resume`, the certificate check before the first change: a member the plan starts on https URLs has certificates not valid for them, not trusted by the other members, expiring, or not found (nothing was changed on any host); for `apply`/`resume`, a `snapshot-fetch`, which runs before any other step, failed (every other step skipped, nothing changed on any host)"},
	{exitUsage, "invalid-input", "invalid input: usage error or plan findings"},
	{exitLocked, "locked-or-stale", "the state dir is locked by another run, or the cluster is locked in the shared state store (`--state`) by another run, whose holder is named, or this session lost that lock (its next checkpoint was refused and it stopped), or a host the run changes is locked by another run (one recovery per cluster; checked before the first change), or stale: the plan changed since the run began, or, for `apply FILE.plan`, " +
		"the reviewed plan was edited, renders differently, or the cluster changed since review (nothing was changed)"},
	{exitPrereq, "missing-prerequisite", "a prerequisite is missing: for `lab`, root, a tool or a binary; for `apply`/`resume`/`facts`/`diagnose`/`new`, " +
		"an SSH identity, known_hosts, etcd TLS or `s3.ca` file, or the shared state store does not answer (checked before anything runs; no checkpoint is written); for `apply`/`resume`, a host the session touches " +
		"whose host key, login or sudo fails, or that a step needs and cannot be reached, or that cannot hold the run lock (no flock), checked on every host before the first change (nothing was changed on any host)"},
	{exitWaiting, "waiting", "stopped, waiting for an operator (an approval, or a step resume will not repeat blindly)"},
	{exitFleetPartial, "fleet-partial", "for `apply` with two or more `--inventory` (a fleet run): the run of at least one cluster did not succeed (failed, refused, unreachable or waiting); the others ran to their end, and the summary table names each cluster with its result"},
	{exitInternal, "internal-error", "a bug in etcd-rescue (a panic), never a verdict on your input: the message and stack are on stderr; please report them"},
	{exitInterrupted, "interrupted", "interrupted"},
}

// exitCodesHelp is the exit-code table for --help.
func exitCodesHelp() string {
	var b strings.Builder
	b.WriteString("Exit codes:\n")
	for _, e := range exitCodes {
		fmt.Fprintf(&b, "  %-4d %-21s %s\n", e.Code, e.Name, strings.ReplaceAll(e.Meaning, "`", ""))
	}
	return b.String()
}

// usageError is bad command-line usage (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// codedError carries an exit code and hints; quiet: the command printed
// everything already (validate's findings and summary).
type codedError struct {
	code  int
	err   error
	hints []string
	quiet bool
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func withCode(code int, err error, hints ...string) error {
	return &codedError{code: code, err: err, hints: hints}
}

// reported is an exit with code whose message is already on stderr.
func reported(code int, what string) error {
	return &codedError{code: code, err: errors.New(what), quiet: true}
}

// unhealthyError is diagnose's verdict on a cluster that is not healthy
// (exit 1). quiet: the table output said it already.
type unhealthyError struct {
	situation string
	next      string
	quiet     bool
}

func (e *unhealthyError) Error() string { return "the cluster is not healthy: " + e.situation }

// labError marks an error of a lab command: the lab's errors print their
// details on indented lines.
type labError struct{ err error }

func (e labError) Error() string { return e.err.Error() }
func (e labError) Unwrap() error { return e.err }

// report writes err on stderr as "etcd-rescue: error: ..." with detail
// and hint lines and returns its exit code. It is the only place where an
// error becomes an exit code.
func report(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	code, detail, hints, quiet := classify(err, stderr)
	slog.Debug("exit", "code", code, "error", err.Error())
	if quiet {
		return code
	}
	msg := strings.TrimSpace(err.Error())
	var le labError
	var lve *lab.VerifyError
	if errors.As(err, &lve) {
		msg = "lab verify: the lab's cluster is not healthy:"
	} else if errors.As(err, &le) && detail == nil {
		// A lab error's further lines are indented under the first.
		first, more, _ := strings.Cut(msg, "\n")
		msg = first
		if more != "" {
			for _, line := range strings.Split(more, "\n") {
				detail = append(detail, "  "+line)
			}
		}
	}
	fmt.Fprintf(stderr, "etcd-rescue: error: %s\n", msg)
	for _, d := range detail {
		fmt.Fprintln(stderr, d)
	}
	for _, h := range hints {
		fmt.Fprintf(stderr, "hint: %s\n", h)
	}
	for _, l := range lastLines(err) {
		fmt.Fprintln(stderr, l)
	}
	return code
}

// classify maps err to its exit code, lines to print below the message,
// and hints. It prints a plan's findings first when err carries them.
func classify(err error, stderr io.Writer) (code int, detail, hints []string, quiet bool) {
	var (
		ce  *codedError
		ue  usageError
		le  *runstate.LockedError
		fe  *runstate.FencedError
		ste *engine.StateError
		se  *engine.StaleError
		ie  *engine.InvalidPlanError
		eue *engine.UsageError
		ns  *runstate.NoStateError
		pe  *engine.PrereqError
		ge  *engine.HostGateError
		cge *engine.CertGateError
		hle *engine.HostLockedError
		hme *engine.HostLockMissingError
		re  *engine.RunError
		lpe *lab.PrereqError
		lve *lab.VerifyError
		uh  *unhealthyError
	)
	switch {
	case errors.As(err, &ce):
		return ce.code, nil, ce.hints, ce.quiet
	case errors.As(err, &uh):
		if uh.next != "" {
			hints = []string{"scaffold the recovery plan: " + uh.next}
		}
		return exitFailed, nil, hints, uh.quiet
	case errors.As(err, &ue):
		return exitUsage, nil, nil, false
	case errors.As(err, &le) && le.Shared:
		who, run := "its operator", "RUN"
		if le.Owner != nil {
			who, run = le.Owner.User+" on "+le.Owner.Host, le.Owner.RunID
		}
		return exitLocked, nil, []string{"nothing was changed; wait for that run to finish, or ask " + who,
			"if that process is gone, the lock frees itself when its lease expires; at once: etcd-rescue unlock --force " + run + " --state " + le.Dir}, false
	case errors.As(err, &fe):
		return exitLocked, nil, []string{"another session holds the run now, or the lock was broken: etcd-rescue status " + fe.RunID + " --state URL shows who"}, false
	case errors.As(err, &ste):
		if ste.Usage {
			return exitUsage, nil, nonEmpty(ste.Hint), false
		}
		return exitPrereq, nil, append(nonEmpty(ste.Hint), "nothing was run and no checkpoint was written"), false
	case errors.As(err, &le):
		return exitLocked, nil, []string{"wait for it to finish; if that process is gone for good: etcd-rescue unlock --force --state-dir " + le.Dir}, false
	case errors.As(err, &se):
		return exitLocked, nil, []string{"etcd-rescue status " + se.RunID + " shows what the run did so far"}, false
	case errors.As(err, &ie):
		printFindings(stderr, ie.Findings)
		return exitUsage, nil, []string{"etcd-rescue validate " + ie.File}, false
	case errors.As(err, &eue):
		return exitUsage, nil, nil, false
	case errors.As(err, &pe):
		return exitPrereq, nil, []string{"nothing was run and no checkpoint was written; fix the above (the plan's ssh: and cluster.tls: sections name the files), then run the same command again"}, false
	case errors.As(err, &ge):
		after := "no run was created"
		if ge.RunID != "" {
			after = "run " + ge.RunID + " is as it was"
		}
		return exitPrereq, nil, []string{"nothing was changed on any host and " + after + "; fix each host above, then run the same command again"}, false
	case errors.As(err, &cge):
		after := "no run was created"
		if cge.RunID != "" {
			after = "run " + cge.RunID + " is as it was"
		}
		return exitFailed, nil, []string{"nothing was changed on any host and " + after + "; fix each certificate above, then run the same command again"}, false
	case errors.As(err, &hle):
		hints = []string{"nothing was changed; wait for that run to finish, or ask its operator"}
		if hle.Owner.HolderPID > 0 {
			hints = append(hints, fmt.Sprintf("if that run is gone, the lock frees itself within 30 s; to stop a live holder: etcd-rescue unlock --help (on %s: kill %d)", hle.Host, hle.Owner.HolderPID))
		}
		return exitLocked, nil, hints, false
	case errors.As(err, &hme):
		return exitPrereq, nil, []string{"nothing was changed on any host; install util-linux (flock) and bash on " + hme.Host + ", or let the plan log in as root or with ssh.sudo"}, false
	case errors.As(err, &ns):
		return exitUsage, nil, []string{"etcd-rescue runs lists the runs apply started as this user on this machine; with --state-dir DIR, the runs in DIR"}, false
	case errors.Is(err, engine.ErrNotConfirmed):
		return exitFailed, nil, nil, false
	case errors.As(err, &re):
		for _, w := range re.Waiting {
			hints = append(hints, w.Hints...)
		}
		sd := ""
		if re.State != "" {
			sd = " --state '" + re.State + "'"
		} else if re.StateDir != "" {
			sd = " --state-dir " + re.StateDir
		}
		if re.Interrupted || len(re.Failed) > 0 {
			hints = append(hints, fmt.Sprintf("fix the cause, then continue: etcd-rescue resume %s%s", re.RunID, sd))
		}
		switch {
		case re.Interrupted:
			return exitInterrupted, nil, hints, false
		case len(re.Failed) > 0:
			return exitFailed, nil, hints, false
		case len(re.Waiting) > 0:
			return exitWaiting, nil, hints, false
		}
		return exitFailed, nil, hints, false
	case errors.As(err, &lpe):
		detail = []string{}
		for _, m := range lpe.Missing {
			detail = append(detail, "  - "+m.What)
		}
		return exitPrereq, detail, lpe.Hints(), false
	case errors.As(err, &lve):
		detail = []string{}
		for _, p := range lve.Problems {
			detail = append(detail, "  - "+p)
		}
		return exitFailed, detail, []string{"`etcd-rescue lab status` shows every host and member"}, false
	case errors.Is(err, lab.ErrNotUp):
		return exitFailed, nil, []string{"start one with `etcd-rescue lab up` (or pass the --state-dir it was started with)"}, false
	case errors.Is(err, lab.ErrBusy):
		return exitFailed, nil, []string{"one lab at a time per machine: `etcd-rescue lab down` the other one first"}, false
	}
	var lerr labError
	if errors.As(err, &lerr) && errors.Is(err, context.Canceled) {
		return exitInterrupted, nil, []string{"interrupted; `etcd-rescue lab down` removes whatever is left"}, false
	}
	return exitFailed, nil, nil, false
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
