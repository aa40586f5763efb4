// Command etcd-rescue turns etcd disaster-recovery runbooks into plans that
// are validated, reviewed as a dry-run, and run over SSH with checkpoints.
//
// The commands are cobra commands (main.go, plancmds.go, run.go, lab.go);
// their errors become exit codes in one place, report in exitcodes.go,
// whose table README.md reproduces.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit code. A panic
// is a bug, never a verdict on the input: it exits 70, not 2 as Go's
// runtime would, which is the code of plan findings.
func run(args []string, stdout, stderr io.Writer) (code int) {
	defer reportBug(stderr, &code)
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	_, err := root.ExecuteC()
	return report(err, stderr)
}

// reportBug, deferred, turns a panic into exit 70 with its stack.
func reportBug(stderr io.Writer, code *int) {
	if r := recover(); r != nil {
		fmt.Fprintf(stderr, "etcd-rescue: internal error (a bug, not a finding about your input): %v\n%s", r, debug.Stack())
		fmt.Fprintln(stderr, "hint: please report this message and the command line; nothing after the panic ran")
		*code = exitInternal
	}
}

// globalFlags are the flags of every command.
type globalFlags struct {
	logFormat string
	logLevel  string
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	// Commands are listed in the order of the work: plan, then run.
	cobra.EnableCommandSorting = false
	var g globalFlags
	root := &cobra.Command{
		Use:   "etcd-rescue",
		Short: "etcd disaster recovery as plans you can check, review and run",
		Long: `etcd-rescue turns etcd disaster-recovery runbooks into YAML plans that are
validated, reviewed as a dry-run, and run over SSH with checkpoints.

Errors go to stderr as "etcd-rescue: error: ..." followed by "hint:" lines.
Output formats (-o json) are documented in docs/cli.md.

` + exitCodesHelp(),
		Args: cobra.ArbitraryArgs,
		// Errors are reported by run, once, with their exit code.
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := setupLogging(g, stderr); err != nil {
				return err
			}
			slog.Debug("command", "path", cmd.CommandPath(), "args", args)
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				fmt.Fprint(stderr, cmd.UsageString())
				return reported(exitUsage, "no command")
			}
			return unknownCommand(cmd, args[0])
		},
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	// A command with subcommands (etcd-rescue, lab, completion) does
	// nothing alone: its usage shows only "CMD [command]".
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "Usage:{{if .Runnable}}", "Usage:{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))
	root.SetFlagErrorFunc(flagError)
	pf := root.PersistentFlags()
	pf.StringVar(&g.logFormat, "log-format", "text", "`FORMAT` of diagnostic messages on stderr: text or json")
	pf.StringVar(&g.logLevel, "log-level", "warn", "least `LEVEL` of diagnostic messages: debug, info, warn or error")
	completeValues(root, "log-format", "text", "json")
	completeValues(root, "log-level", "debug", "info", "warn", "error")

	root.AddGroup(&cobra.Group{ID: "live", Title: "The live cluster (read-only; start here at 3 a.m.):"},
		&cobra.Group{ID: "plan", Title: "Plans (nothing is run):"},
		&cobra.Group{ID: "run", Title: "Runs:"},
		&cobra.Group{ID: "lab", Title: "Rehearsal:"})
	for _, c := range []*cobra.Command{newDiagnoseCmd(), newFactsCmd(), newNewCmd()} {
		c.GroupID = "live"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{newValidateCmd(), newPlanCmd(), newGraphCmd(), newStepsCmd(), newSchemaCmd()} {
		c.GroupID = "plan"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{newApplyCmd(), newResumeCmd(), newStatusCmd(), newReportCmd(), newRunsCmd(), newUnlockCmd()} {
		c.GroupID = "run"
		root.AddCommand(c)
	}
	lab := newLabCmd()
	lab.GroupID = "lab"
	root.AddCommand(lab)

	// completion bash|zsh|fish|powershell is cobra's; an unknown shell is
	// a usage error like any unknown command.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.SuggestionsMinimumDistance = 1
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					return withCode(exitUsage, errors.New("completion needs a shell: bash, zsh, fish or powershell"), "etcd-rescue completion --help")
				}
				return unknownCommand(cmd, args[0])
			}
		}
	}
	return root
}

// unknownCommand is the usage error for an unknown subcommand of cmd.
func unknownCommand(cmd *cobra.Command, name string) error {
	hints := []string{cmd.CommandPath() + " --help lists the commands"}
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		hints = append([]string{fmt.Sprintf("did you mean %s?", strings.Join(s, " or "))}, hints...)
	}
	what := "command"
	if cmd.HasParent() {
		what = cmd.Name() + " command"
	}
	return withCode(exitUsage, fmt.Errorf("unknown %s %q", what, name), hints...)
}

// flagError makes a flag parsing error a usage error with a hint.
func flagError(cmd *cobra.Command, err error) error {
	return withCode(exitUsage, err, cmd.CommandPath()+" --help lists its flags")
}

// setupLogging sends diagnostics (log/slog) to stderr in the chosen format.
// They are for whoever debugs etcd-rescue itself; the audit record of a
// run is its events.jsonl, and progress lines go to stdout as before.
func setupLogging(g globalFlags, stderr io.Writer) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return usageError{fmt.Sprintf("unknown --log-level %q (debug, info, warn or error)", g.logLevel)}
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch g.logFormat {
	case "text":
		h = slog.NewTextHandler(stderr, opts)
	case "json":
		h = slog.NewJSONHandler(stderr, opts)
	default:
		return usageError{fmt.Sprintf("unknown --log-format %q (text or json)", g.logFormat)}
	}
	slog.SetDefault(slog.New(h))
	return nil
}

// checkOutput checks the value of -o against the formats a command has.
func checkOutput(o string, formats ...string) error {
	for _, f := range formats {
		if o == f {
			return nil
		}
	}
	return usageError{fmt.Sprintf("unknown output %q (%s)", o, strings.Join(formats, " or "))}
}

// exactArgs, maxArgs: positional argument checks with the commands' own
// messages (usage errors, exit 2).
func exactArgs(n int, msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{msg}
		}
		return nil
	}
}

func maxArgs(n int, msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > n {
			return usageError{msg}
		}
		return nil
	}
}
