package engine

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-multierror"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// ErrOutcomeUnknown matches errors of a command whose outcome is unknown:
// the connection dropped while it ran. The step-host is probed with its
// Check before anything is repeated.
var ErrOutcomeUnknown = errors.New("outcome unknown")

// ErrUnreachable matches errors of a host that could not be reached at all
// (nothing ran there). A stop-service with unreachable: skip goes on.
var ErrUnreachable = errors.New("host unreachable")

// StepError is a step-host that failed: a root cause of a failed run.
type StepError struct {
	Step string
	Host string // "" for a step that runs once
	Pos  plans.Pos
	// Cmd is the command (or action) that failed, redacted.
	Cmd string
	// ExitCode is the remote exit status, -1 when the failure was not one.
	ExitCode int
	// Stderr is the tail of the failing command's standard error.
	Stderr string
	Err    error
}

func (e *StepError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: step %q", e.Pos, e.Step)
	if e.Host != "" {
		fmt.Fprintf(&b, " on %s", e.Host)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if e.Cmd != "" {
		fmt.Fprintf(&b, "\n  command: %s", e.Cmd)
	}
	return b.String()
}

func (e *StepError) Unwrap() error { return e.Err }

// OperatorError is a step-host the engine will not decide alone: an
// approval, or a destructive step whose outcome it cannot establish.
type OperatorError struct {
	Step   string
	Host   string
	Pos    plans.Pos
	Reason string
	Hints  []string
}

func (e *OperatorError) Error() string {
	where := fmt.Sprintf("step %q", e.Step)
	if e.Host != "" {
		where += " on " + e.Host
	}
	return fmt.Sprintf("%s: %s: %s", e.Pos, where, e.Reason)
}

// RunError is how a run ended when it did not complete: the root causes
// (dependents of a failure are skipped and not reported), the step-hosts
// waiting for an operator, and whether it was interrupted.
type RunError struct {
	RunID    string
	StateDir string
	// State is the shared state store's URL when the run is in one.
	State       string
	Failed      []*StepError
	Waiting     []*OperatorError
	Interrupted bool
	Skipped     int
}

func (e *RunError) errs() *multierror.Error {
	var m *multierror.Error
	for _, f := range e.Failed {
		m = multierror.Append(m, f)
	}
	for _, w := range e.Waiting {
		m = multierror.Append(m, w)
	}
	if m != nil {
		m.ErrorFormat = func(es []error) string {
			lines := make([]string, len(es))
			for i, x := range es {
				lines[i] = "  * " + strings.ReplaceAll(x.Error(), "\n", "\n    ")
			}
			return strings.Join(lines, "\n")
		}
	}
	return m
}

func (e *RunError) Error() string {
	var head []string
	if e.Interrupted {
		head = append(head, "interrupted")
	}
	if n := len(e.Failed); n > 0 {
		head = append(head, fmt.Sprintf("%d step-host(s) failed", n))
	}
	if e.Skipped > 0 {
		head = append(head, fmt.Sprintf("%d skipped after a failure", e.Skipped))
	}
	if n := len(e.Waiting); n > 0 {
		head = append(head, fmt.Sprintf("%d waiting for an operator", n))
	}
	run := "run " + e.RunID
	if e.RunID == "" {
		run = "before the run started"
	}
	msg := fmt.Sprintf("%s: %s", run, strings.Join(head, ", "))
	if m := e.errs(); m != nil {
		msg += "\n" + m.Error()
	}
	return msg
}

// Unwrap gives errors.Is/As every root cause.
func (e *RunError) Unwrap() []error {
	m := e.errs()
	if m == nil {
		return nil
	}
	return m.WrappedErrors()
}

// ApprovalNeededError is returned by Approve when nobody can answer.
type ApprovalNeededError struct {
	Step    string
	Message string
}

func (e *ApprovalNeededError) Error() string {
	return fmt.Sprintf("approval needed: %s", e.Message)
}

// checkpointError is a state write that failed: the run stops, because
// going on without a durable record is how destructive steps get repeated.
type checkpointError struct{ err error }

func (e *checkpointError) Error() string { return e.err.Error() }

func (e *checkpointError) Unwrap() error { return e.err }

// redactedError keeps the chain of err (for errors.Is/As) while its text
// has secrets removed.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Unwrap() error { return e.err }

func redactErr(r *Redactor, err error) error {
	if r.Empty() {
		return err
	}
	return &redactedError{msg: r.String(err.Error()), err: err}
}

// ErrNotConfirmed is returned when Options.Confirm said no.
var ErrNotConfirmed = errors.New("not confirmed: nothing was run")

// StaleError is a resume refused because the plan or inventory changed (or
// disappeared) since the run began.
type StaleError struct {
	RunID  string
	Plan   string
	Reason string
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("run %s cannot be resumed: %s", e.RunID, e.Reason)
}

// InvalidPlanError is a plan with error findings.
type InvalidPlanError struct {
	File     string
	Findings plans.Findings
}

func (e *InvalidPlanError) Error() string {
	return fmt.Sprintf("%s is not valid (%d error(s))", e.File, e.Findings.Errors())
}

// UsageError is a bad option (an unknown step in --rerun, ...).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }
