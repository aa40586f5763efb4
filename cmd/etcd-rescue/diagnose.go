package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/engine/diagnose"
	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// maxFactsFile caps what --facts reads: a facts file of a large cluster is
// a few hundred KiB.
const maxFactsFile = 64 << 20

func newDiagnoseCmd() *cobra.Command {
	var inv, factsFile, out string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "diagnose --inventory FILE",
		Short: "say what is wrong with the live cluster, with evidence, and which plan to scaffold",
		Long: `Collect the facts of the live cluster (read-only, as etcd-rescue facts does), or
read them from a file saved with "etcd-rescue facts -o json" (--facts), and say
what is wrong: the situation (healthy, ip-change, lost-host, quorum-loss,
total-loss, degraded or unknown), each finding with the facts it rests on, the
recommended scenario with every choice and why, and the command that
scaffolds its plan. The inventory describes the cluster as it must be AFTER
recovery. Exit 0 when healthy, 1 otherwise. -o json prints the diagnosis
(docs/cli.md).`,
		Args:              exactArgs(0, "diagnose takes no arguments: etcd-rescue diagnose --inventory FILE"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out, "table", "json"); err != nil {
				return err
			}
			if inv == "" {
				return withCode(exitUsage, errors.New("diagnose needs --inventory FILE"), "etcd-rescue diagnose --inventory inventory.yaml")
			}
			if timeout <= 0 {
				return usageError{fmt.Sprintf("--timeout %s: want a positive duration such as 5s", timeout)}
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return cmdDiagnose(ctx, inv, factsFile, out, timeout, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	c.Flags().StringVar(&inv, "inventory", "", "inventory `FILE`: cluster:, hosts:, ssh: as the cluster must be after recovery")
	_ = c.RegisterFlagCompletionFunc("inventory", completeYAMLFiles)
	c.Flags().StringVar(&factsFile, "facts", "", "read the facts from `FILE` (etcd-rescue facts -o json) instead of collecting them")
	_ = c.RegisterFlagCompletionFunc("facts", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"json"}, cobra.ShellCompDirectiveFilterFileExt
	})
	c.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "bound per host when collecting (`DURATION`); hosts are asked in parallel")
	addOutputFlag(c, &out, "table", "table", "json")
	return c
}

func cmdDiagnose(ctx context.Context, inv, factsFile, out string, timeout time.Duration, stdout, stderr io.Writer) error {
	p, fs := plans.LoadInventory(inv)
	printFindings(stderr, fs) // errors, or warnings only
	if p == nil || fs.Errors() > 0 {
		return withCode(exitUsage, fmt.Errorf("%s is not a valid inventory (%d error(s))", inv, fs.Errors()),
			"fix the findings above; the inventory is cluster:, hosts:, ssh: (docs/plan-format.md)")
	}
	var f *facts.Facts
	if factsFile != "" {
		var err error
		if f, err = readFactsFile(factsFile); err != nil {
			return withCode(exitUsage, err, "save facts with: etcd-rescue facts --inventory "+shellquote.Quote(inv)+" -o json > FILE")
		}
		if err := sameCluster(f, p, factsFile, inv); err != nil {
			return withCode(exitUsage, err, "the facts must be collected with this inventory: etcd-rescue facts --inventory "+
				shellquote.Quote(inv)+" -o json > "+shellquote.Quote(factsFile)+" (or drop --facts to collect them now)")
		}
	} else {
		var err error
		f, err = facts.Collect(ctx, p, facts.Options{Timeout: timeout, Inventory: inv})
		if err != nil {
			return fmt.Errorf("collect facts: %w", err)
		}
	}
	d := diagnose.Diagnose(f, inv)
	if factsFile != "" {
		d.Next = diagnose.NextCommand(d.Recommend, inv, factsFile)
	}
	if out == "json" {
		if err := writeJSON(stdout, d); err != nil {
			return err
		}
	} else if err := d.WriteText(stdout); err != nil {
		return err
	}
	if d.Healthy {
		return nil
	}
	return &unhealthyError{situation: string(d.Situation), next: d.Next, quiet: out != "json"}
}

// readFactsFile reads a facts JSON document (etcd-rescue facts -o json):
// at most maxFactsFile bytes, of the right kind and version.
func readFactsFile(path string) (*facts.Facts, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read facts: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxFactsFile+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read facts %s: %w", path, err)
	}
	if len(b) > maxFactsFile {
		return nil, fmt.Errorf("%s: larger than %d MiB: not a facts file", path, maxFactsFile>>20)
	}
	var head struct {
		Kind    string `json:"kind"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("%s: not a facts file: %s", jsonPos(path, b, err), jsonMsg(err))
	}
	if head.Kind != facts.Kind {
		return nil, fmt.Errorf("%s: not a facts file: kind %q, want %q", path, head.Kind, facts.Kind)
	}
	if head.Version != facts.Version {
		return nil, fmt.Errorf("%s: facts version %d; this etcd-rescue reads version %d", path, head.Version, facts.Version)
	}
	var f facts.Facts
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: bad facts: %s", jsonPos(path, b, err), jsonMsg(err))
	}
	if len(f.Cluster.Members) == 0 {
		return nil, fmt.Errorf("%s: the facts name no member (cluster.members is empty)", path)
	}
	return &f, nil
}

// jsonPos is path:line:col of a JSON decoding error, or path.
func jsonPos(path string, b []byte, err error) string {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset - 1 // the offending byte was the last one read
		if off < 0 {
			off = 0
		}
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(b)) {
		return path
	}
	line := 1 + bytes.Count(b[:off], []byte("\n"))
	col := int(off) - bytes.LastIndexByte(b[:off], '\n')
	return fmt.Sprintf("%s:%d:%d", path, line, col)
}

func jsonMsg(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := "another type"
		if te.Type != nil {
			switch te.Type.Kind() {
			case reflect.Slice, reflect.Array:
				want = "a list"
			case reflect.Struct, reflect.Pointer, reflect.Map:
				want = "an object"
			case reflect.String:
				want = "a string"
			case reflect.Bool:
				want = "true or false"
			default:
				want = "a number"
			}
		}
		if te.Field != "" {
			return fmt.Sprintf("%s is a JSON %s, want %s", te.Field, te.Value, want)
		}
		return fmt.Sprintf("a JSON %s, want %s", te.Value, want)
	}
	return err.Error()
}

// sameCluster checks that the facts were collected for the inventory's
// members: facts of another cluster, or of the inventory before a break
// rewrote it, would give a wrong diagnosis.
func sameCluster(f *facts.Facts, p *plans.Plan, factsFile, inv string) error {
	if p.Cluster == nil {
		return nil
	}
	type m struct{ host, peer, client string }
	got := map[string]m{}
	for _, x := range f.Cluster.Members {
		got[x.Name] = m{x.Host, x.PeerURL, x.ClientURL}
	}
	var diffs []string
	seen := map[string]bool{}
	for _, x := range p.Cluster.Members {
		if x == nil {
			continue
		}
		seen[x.Name] = true
		g, ok := got[x.Name]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s is not in the facts", x.Name))
		case g != m{x.Host, x.PeerURL, x.ClientURL}:
			diffs = append(diffs, fmt.Sprintf("%s: the facts say %s %s, the inventory %s %s", x.Name, g.host, g.peer, x.Host, x.PeerURL))
		}
	}
	for _, x := range f.Cluster.Members {
		if !seen[x.Name] {
			diffs = append(diffs, fmt.Sprintf("%s is in the facts, not in the inventory", x.Name))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	if len(diffs) > 3 {
		diffs = append(diffs[:3], fmt.Sprintf("and %d more", len(diffs)-3))
	}
	msg := fmt.Sprintf("%s were collected for other members than %s has:", factsFile, inv)
	for _, d := range diffs {
		msg += "\n  " + d
	}
	return errors.New(msg)
}
