package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

func newFlags(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: etcd-rescue %s [flags] %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags anywhere among the arguments (flag stops at the first
// non-flag; SREs type `validate plan.yaml --inventory lab.yaml`).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return rest, nil
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// printFindings writes findings sorted, errors and warnings, and a summary.
func printFindings(w io.Writer, fs plans.Findings) {
	for _, f := range fs.Sort() {
		fmt.Fprintln(w, f.Error())
	}
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fl := newFlags("validate", "FILE...", stderr)
	inv := fl.String("inventory", "", "inventory file with cluster:, hosts:, ssh: (replaces the plan's own)")
	out := fl.String("o", "text", "output: text or json")
	files, err := parse(fl, args)
	if err != nil {
		return 2
	}
	if len(files) == 0 {
		return exitCode(usageError{"validate needs at least one plan file"}, stderr)
	}
	var all plans.Findings
	for _, f := range files {
		_, fs := engine.Load(f, *inv)
		all = append(all, fs...)
	}
	all = all.Sort()
	if *out == "json" {
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
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(list)
	} else {
		printFindings(stderr, all)
	}
	nerr, nwarn := all.Errors(), len(all)-all.Errors()
	if nerr > 0 {
		fmt.Fprintf(stderr, "%d error(s), %d warning(s) in %d file(s)\n", nerr, nwarn, len(files))
		return 2
	}
	if *out != "json" {
		fmt.Fprintf(stdout, "%d file(s) valid", len(files))
		if nwarn > 0 {
			fmt.Fprintf(stdout, ", %d warning(s)", nwarn)
		}
		fmt.Fprintln(stdout)
	}
	return 0
}

// loadValid loads one plan and prints findings; nil means exit 2.
func loadValid(file, inv string, stderr io.Writer) *engine.Compiled {
	c, fs := engine.Load(file, inv)
	if fs.Errors() > 0 || c == nil {
		printFindings(stderr, fs)
		fmt.Fprintf(stderr, "etcd-rescue: error: %s is not valid (%d error(s))\nhint: etcd-rescue validate %s\n", file, fs.Errors(), file)
		return nil
	}
	printFindings(stderr, fs) // warnings
	return c
}

func cmdPlan(args []string, stdout, stderr io.Writer) int {
	fl := newFlags("plan", "FILE", stderr)
	inv := fl.String("inventory", "", "inventory file with cluster:, hosts:, ssh: (replaces the plan's own)")
	out := fl.String("o", "text", "output: text or json")
	files, err := parse(fl, args)
	if err != nil {
		return 2
	}
	if len(files) != 1 {
		return exitCode(usageError{"plan needs exactly one plan file"}, stderr)
	}
	c := loadValid(files[0], *inv, stderr)
	if c == nil {
		return 2
	}
	d := engine.BuildDryRun(c)
	switch *out {
	case "json":
		err = d.WriteJSON(stdout)
	case "text", "table":
		err = d.WriteText(stdout)
	default:
		return exitCode(usageError{fmt.Sprintf("unknown output %q (text or json)", *out)}, stderr)
	}
	return exitCode(err, stderr)
}

func cmdGraph(args []string, stdout, stderr io.Writer) int {
	fl := newFlags("graph", "FILE", stderr)
	inv := fl.String("inventory", "", "inventory file")
	out := fl.String("o", "dot", "format: dot or mermaid")
	files, err := parse(fl, args)
	if err != nil {
		return 2
	}
	if len(files) != 1 {
		return exitCode(usageError{"graph needs exactly one plan file"}, stderr)
	}
	if *out != "dot" && *out != "mermaid" {
		return exitCode(usageError{fmt.Sprintf("unknown graph format %q (dot or mermaid)", *out)}, stderr)
	}
	c := loadValid(files[0], *inv, stderr)
	if c == nil {
		return 2
	}
	return exitCode(engine.WriteGraph(c, stdout, *out), stderr)
}

func cmdSteps(args []string, stdout, stderr io.Writer) int {
	fl := newFlags("steps", "[TYPE]", stderr)
	names, err := parse(fl, args)
	if err != nil {
		return 2
	}
	reg := steps.Registry()
	if len(names) == 0 {
		for _, n := range steps.Names(reg) {
			t := reg[n]
			scope := "per host (on: required)"
			if t.Scope == steps.Once {
				scope = "once"
			}
			fmt.Fprintf(stdout, "%-18s %s [%s]\n", n, t.Summary, scope)
		}
		return 0
	}
	for _, n := range names {
		t, ok := reg[n]
		if !ok {
			return exitCode(usageError{fmt.Sprintf("unknown step type %q%s", n, plans.Suggest(n, steps.Names(reg)))}, stderr)
		}
		fmt.Fprintf(stdout, "%s: %s\n", t.Name, t.Summary)
		switch {
		case t.Scope == steps.Once && t.On != "":
			fmt.Fprintln(stdout, "runs once; "+t.On)
		case t.Scope == steps.Once:
			fmt.Fprintln(stdout, "runs once; on: optionally selects the members it looks at")
		default:
			fmt.Fprintln(stdout, "runs on each host selected by on:")
		}
		if t.Destructive() {
			fmt.Fprintln(stdout, "destructive: resume never repeats it without a check that it is not done")
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
	return 0
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
	}
	return t.Kind().String()
}

func cmdSchema(args []string, stdout, stderr io.Writer) int {
	fl := newFlags("schema", "", stderr)
	if _, err := parse(fl, args); err != nil {
		return 2
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return exitCode(enc.Encode(engine.Schema(steps.Registry())), stderr)
}
