package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/engine/reviewed"
	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// printFindings writes findings sorted, errors and warnings, and a summary.
func printFindings(w io.Writer, fs plans.Findings) {
	for _, f := range fs.Sort() {
		fmt.Fprintln(w, f.Error())
	}
}

func newValidateCmd() *cobra.Command {
	var inv, out string
	c := &cobra.Command{
		Use:   "validate FILE...",
		Short: "check plan files; every finding with file:line:col",
		Long: `Check plan files without connecting anywhere. Every finding is printed at
file:line:col with a hint, errors and warnings, sorted; exit 2 if any is an
error. -o json prints the findings as a JSON list on stdout (docs/cli.md).`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{"validate needs at least one plan file"}
			}
			return nil
		},
		ValidArgsFunction: completePlanFiles,
		RunE: func(cmd *cobra.Command, files []string) error {
			if out == "table" {
				out = "text"
			}
			if err := checkOutput(out, "text", "json"); err != nil {
				return err
			}
			return cmdValidate(files, inv, out, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	addInventoryFlag(c, &inv)
	addOutputFlag(c, &out, "text", "text", "json")
	return c
}

func cmdValidate(files []string, inv, out string, stdout, stderr io.Writer) error {
	var all plans.Findings
	for _, f := range files {
		if err := notReviewed(f); err != nil {
			return err
		}
		_, fs := engine.Load(f, inv)
		all = append(all, fs...)
	}
	all = all.Sort()
	if out == "json" {
		type jf struct {
			File     string `json:"file"`
			Line     int    `json:"line"`
			Col      int    `json:"col"`
			Severity string `json:"severity"`
			Step     string `json:"step,omitempty"`
			Message  string `json:"message"`
			Hint     string `json:"hint,omitempty"`
		}
		list := []jf{}
		for _, f := range all {
			sev := "error"
			if f.Severity == plans.Warning {
				sev = "warning"
			}
			list = append(list, jf{f.Pos.File, f.Pos.Line, f.Pos.Col, sev, f.Step, f.Msg, f.Hint})
		}
		if err := writeJSON(stdout, list); err != nil {
			return err
		}
	} else {
		printFindings(stderr, all)
	}
	nerr, nwarn := all.Errors(), len(all)-all.Errors()
	if nerr > 0 {
		fmt.Fprintf(stderr, "%d error(s), %d warning(s) in %d file(s)\n", nerr, nwarn, len(files))
		return reported(exitUsage, "findings")
	}
	if out != "json" {
		fmt.Fprintf(stdout, "%d file(s) valid", len(files))
		if nwarn > 0 {
			fmt.Fprintf(stdout, ", %d warning(s)", nwarn)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// notReviewed refuses a reviewed plan (FILE.plan) where a YAML plan is
// expected: validate, plan and graph read the plan file itself.
func notReviewed(file string) error {
	if !reviewed.IsFile(file) {
		return nil
	}
	hint := "validate, plan and graph read the YAML plan; apply runs a reviewed plan: etcd-rescue apply " + shellquote.Quote(file)
	if d, err := reviewed.Read(file); err == nil {
		hint = "it was reviewed from " + d.Plan.Path + "; " + hint
	}
	return withCode(exitUsage, fmt.Errorf("%s is a reviewed plan (etcd-rescue plan --out), not a plan file", file), hint)
}

// loadValid loads one plan and prints its findings; an invalid plan is a
// usage error (exit 2).
func loadValid(file, inv string, stderr io.Writer) (*engine.Compiled, error) {
	if err := notReviewed(file); err != nil {
		return nil, err
	}
	c, fs := engine.Load(file, inv)
	printFindings(stderr, fs) // errors, or warnings only
	if fs.Errors() > 0 || c == nil {
		return nil, withCode(exitUsage, fmt.Errorf("%s is not valid (%d error(s))", file, fs.Errors()), "etcd-rescue validate "+file)
	}
	slog.Debug("plan loaded", "file", file, "inventory", inv, "steps", len(c.Nodes))
	return c, nil
}

func newPlanCmd() *cobra.Command {
	var inv, out, save string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "plan FILE [--out FILE.plan]",
		Short: "dry-run: the exact commands per host, in order; nothing is run",
		Long: `Print the dry-run of a plan: the exact command each host will run, in order,
grouped in waves that may run in parallel. Without --out it opens no connection.
-o json prints the same for tools (docs/cli.md).

With --out FILE.plan it also writes the reviewed plan: the plan and inventory
bytes, their hash, the dry-run exactly as printed, and the facts of the live
cluster the plan depends on (cluster ids, member list, which members answer,
data dirs, leader, revisions, alarms, hosts that could not be asked). To get
those facts it connects, read-only, to every host over SSH and every member
through its API (as etcd-rescue facts does), each bounded by --timeout;
an unreachable host is recorded as such. Local paths in the plan are shown
absolute, as apply will use them. "etcd-rescue apply FILE.plan" runs exactly
that plan and refuses (exit 3) if the cluster changed since (docs/cli.md).`,
		Args:              exactArgs(1, "plan needs exactly one plan file"),
		ValidArgsFunction: completePlanFile,
		RunE: func(cmd *cobra.Command, files []string) error {
			if save != "" {
				if out != "text" && out != "table" {
					return usageError{"--out saves the text dry-run the reviewer reads: leave out -o " + out}
				}
				if timeout <= 0 {
					return usageError{fmt.Sprintf("--timeout must be positive, not %s", timeout)}
				}
			}
			return cmdPlan(files[0], inv, out, save, timeout, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	addInventoryFlag(c, &inv)
	addOutputFlag(c, &out, "text", "text", "json")
	c.Flags().StringVar(&save, "out", "", "also write the reviewed plan to `FILE` (FILE.plan): plan, inventory, dry-run and the live facts it depends on (connects read-only)")
	c.Flags().DurationVar(&timeout, "timeout", facts.DefaultTimeout, "with --out: bound per host for collecting the facts; apply collects with the same")
	return c
}

func cmdPlan(file, inv, out, save string, timeout time.Duration, stdout, stderr io.Writer) error {
	c, err := loadValid(file, inv, stderr)
	if err != nil {
		return err
	}
	if save != "" {
		return cmdPlanOut(c, file, inv, save, timeout, stdout, stderr)
	}
	d := engine.BuildDryRun(c)
	switch out {
	case "json":
		return d.WriteJSON(stdout)
	case "text", "table":
		return d.WriteText(stdout)
	}
	return usageError{fmt.Sprintf("unknown output %q (text or json)", out)}
}

func newGraphCmd() *cobra.Command {
	var inv, out string
	c := &cobra.Command{
		Use:               "graph FILE",
		Short:             "print the step DAG as dot or mermaid",
		Args:              exactArgs(1, "graph needs exactly one plan file"),
		ValidArgsFunction: completePlanFile,
		RunE: func(cmd *cobra.Command, files []string) error {
			if out != "dot" && out != "mermaid" {
				return usageError{fmt.Sprintf("unknown graph format %q (dot or mermaid)", out)}
			}
			c, err := loadValid(files[0], inv, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return engine.WriteGraph(c, cmd.OutOrStdout(), out)
		},
	}
	addInventoryFlag(c, &inv)
	addOutputFlag(c, &out, "dot", "dot", "mermaid")
	return c
}

func newStepsCmd() *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "steps [TYPE...]",
		Short: "list step types, or document one: steps TYPE",
		Long: `List the step types a plan can use, or document the given ones: scope,
whether resume treats them as destructive, and their parameters (with:).
-o json prints the types with their parameters (docs/cli.md).`,
		ValidArgsFunction: completeStepTypes,
		RunE: func(cmd *cobra.Command, names []string) error {
			if err := checkOutput(out, "table", "json"); err != nil {
				return err
			}
			return cmdSteps(names, out, cmd.OutOrStdout())
		},
	}
	addOutputFlag(c, &out, "table", "table", "json")
	return c
}

// stepTypeJSON is a step type in steps -o json.
type stepTypeJSON struct {
	Name        string      `json:"name"`
	Summary     string      `json:"summary"`
	Scope       string      `json:"scope"` // "once" or "per-host"
	On          string      `json:"on,omitempty"`
	Destructive bool        `json:"destructive"`
	ReadOnly    bool        `json:"readOnly"` // changes nothing on the hosts or the cluster: may run on a fleet
	Params      []paramJSON `json:"params"`
}

type paramJSON struct {
	Key      string   `json:"key"`
	Doc      string   `json:"doc"`
	Type     string   `json:"type"`
	Required bool     `json:"required"`
	Default  string   `json:"default,omitempty"`
	Enum     []string `json:"enum,omitempty"`
}

func cmdSteps(names []string, out string, stdout io.Writer) error {
	reg := steps.Registry()
	for _, n := range names {
		if _, ok := reg[n]; !ok {
			return usageError{fmt.Sprintf("unknown step type %q%s", n, plans.Suggest(n, steps.Names(reg)))}
		}
	}
	if out == "json" {
		if len(names) == 0 {
			names = steps.Names(reg)
		}
		list := []stepTypeJSON{}
		for _, n := range names {
			t := reg[n]
			j := stepTypeJSON{Name: t.Name, Summary: t.Summary, Scope: "per-host", On: t.On, Destructive: t.Destructive(), ReadOnly: t.ReadOnly, Params: []paramJSON{}}
			if t.Scope == steps.Once {
				j.Scope = "once"
			}
			for _, f := range plans.FieldsOf(reflect.TypeOf(t.New())) {
				j.Params = append(j.Params, paramJSON{f.Key, f.Doc, typeName(f.Type), f.Required, f.Default, f.Enum})
			}
			list = append(list, j)
		}
		return writeJSON(stdout, list)
	}
	if len(names) == 0 {
		for _, n := range steps.Names(reg) {
			t := reg[n]
			scope := "per host (on: required)"
			if t.Scope == steps.Once {
				scope = "once"
			} else if t.On != "" {
				scope = "per host (on: optional)"
			}
			fmt.Fprintf(stdout, "%-18s %s [%s]\n", n, t.Summary, scope)
		}
		return nil
	}
	for _, n := range names {
		t := reg[n]
		fmt.Fprintf(stdout, "%s: %s\n", t.Name, t.Summary)
		switch {
		case t.Scope == steps.Once && t.On != "":
			fmt.Fprintln(stdout, "runs once; "+t.On)
		case t.Scope == steps.Once:
			fmt.Fprintln(stdout, "runs once; on: optionally selects the members it looks at")
		case t.On != "":
			fmt.Fprintln(stdout, "runs on each host selected by on:; "+t.On)
		default:
			fmt.Fprintln(stdout, "runs on each host selected by on:")
		}
		if t.Destructive() {
			fmt.Fprintln(stdout, "destructive: resume never repeats it without a check that it is not done")
		}
		if t.ReadOnly {
			fmt.Fprintln(stdout, "read-only: changes nothing on the hosts or the cluster; may run on a fleet (apply with several --inventory)")
		}
		fields := plans.FieldsOf(reflect.TypeOf(t.New()))
		if len(fields) == 0 {
			fmt.Fprintln(stdout, "parameters (with:): none")
		} else {
			fmt.Fprintln(stdout, "parameters (with:):")
		}
		sort.SliceStable(fields, func(i, j int) bool { return fields[i].Required && !fields[j].Required })
		for _, f := range fields {
			var extra []string
			if f.Required {
				extra = append(extra, "required")
			}
			extra = append(extra, typeName(f.Type))
			if f.Default != "" {
				extra = append(extra, "default "+f.Default)
			}
			if len(f.Enum) > 0 {
				extra = append(extra, "one of "+strings.Join(f.Enum, "|"))
			}
			fmt.Fprintf(stdout, "  %-18s %s (%s)\n", f.Key, f.Doc, strings.Join(extra, ", "))
		}
	}
	return nil
}

func typeName(t reflect.Type) string {
	switch t {
	case reflect.TypeOf(plans.Duration(0)):
		return "duration"
	case reflect.TypeOf(plans.Strings(nil)):
		return "name or list"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	case reflect.Map:
		return "map of " + typeName(t.Elem())
	case reflect.Int, reflect.Int64:
		return "number"
	case reflect.Struct:
		return "mapping"
	}
	return t.Kind().String()
}

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "schema",
		Short:             "print the JSON Schema of plan files",
		Args:              maxArgs(0, "schema takes no arguments"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return writeJSON(cmd.OutOrStdout(), engine.Schema(steps.Registry()))
		},
	}
}

// writeJSON writes v as indented JSON, the shape of every -o json.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// addInventoryFlag adds --inventory, completed with YAML files.
func addInventoryFlag(c *cobra.Command, inv *string) {
	c.Flags().StringVar(inv, "inventory", "", "inventory `FILE` with cluster:, hosts:, ssh: (replaces the plan's own)")
	_ = c.RegisterFlagCompletionFunc("inventory", completeYAMLFiles)
}

// addOutputFlag adds -o/--output with its default and completed formats.
func addOutputFlag(c *cobra.Command, out *string, def string, formats ...string) {
	c.Flags().StringVarP(out, "output", "o", def, "output `FORMAT`: "+strings.Join(formats, " or "))
	completeValues(c, "output", formats...)
}
