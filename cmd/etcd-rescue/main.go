// Command etcd-rescue turns etcd disaster-recovery runbooks into plans that
// are validated, reviewed as a dry-run, and run over SSH with checkpoints.
//
// Exit codes (one place: exitCode below):
//
//	0  success
//	1  the run, a check or a lab operation failed
//	2  invalid input: usage error or plan findings
//	3  the state is locked by another run, or stale (plan changed since the run began)
//	4  a prerequisite is missing (root, a tool, a binary; an SSH identity,
//	   known_hosts or etcd TLS file apply/resume need), found before anything ran
//	5  stopped, waiting for an operator (approval, or a step that resume will not repeat blindly)
//	130 interrupted
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// usageError is bad command-line usage (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// codedError carries an exit code and optional hints to main.
type codedError struct {
	code  int
	err   error
	hints []string
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func withCode(code int, err error, hints ...string) error {
	return &codedError{code: code, err: err, hints: hints}
}

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"validate", "check plan files; every finding with file:line:col", cmdValidate},
		{"plan", "dry-run: the exact commands per host, in order; nothing is run", cmdPlan},
		{"graph", "print the step DAG as dot or mermaid", cmdGraph},
		{"steps", "list step types, or document one: steps TYPE", cmdSteps},
		{"schema", "print the JSON Schema of plan files", cmdSchema},
		{"apply", "run a plan over SSH, checkpointing every step", cmdApply},
		{"resume", "continue an interrupted run", cmdResume},
		{"status", "show the steps of a run", cmdStatus},
		{"runs", "list the runs in a state dir", cmdRuns},
		{"unlock", "remove a stale run lock (--force)", cmdUnlock},
		{"lab", "local rehearsal cluster: up, break, status, verify, down (root, Linux)", cmdLab},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: etcd-rescue COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun etcd-rescue COMMAND -h for the flags of a command.")
	fmt.Fprintln(w, "Exit codes: 0 ok, 1 failed, 2 invalid input, 3 locked or stale, 4 missing prerequisite, 5 waiting for an operator, 130 interrupted.")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "etcd-rescue: error: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

// exitCode reports err on stderr as "etcd-rescue: error: ..." with hint lines
// and maps it to the documented exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	code := 1
	var hints []string
	var ce *codedError
	var ue usageError
	switch {
	case errors.As(err, &ce):
		code, hints = ce.code, ce.hints
	case errors.As(err, &ue):
		code = 2
	}
	msg := err.Error()
	fmt.Fprintf(stderr, "etcd-rescue: error: %s\n", strings.TrimSpace(msg))
	for _, h := range hints {
		fmt.Fprintf(stderr, "hint: %s\n", h)
	}
	return code
}
