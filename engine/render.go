package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/steps"
)

// DryRun is the reviewable form of a compiled plan. Building it never opens
// a connection or runs anything: Describe only renders text.
type DryRun struct {
	Plan        string   `json:"plan"`
	File        string   `json:"file"`
	Cluster     string   `json:"cluster"`
	EtcdVersion string   `json:"etcdVersion"`
	Token       string   `json:"token,omitempty"`
	Members     []string `json:"members"`
	// CertChecks say, one per member, which certificates apply checks
	// before the first change, and against what (certgate.go).
	CertChecks []string `json:"certChecks,omitempty"`
	// ObjectStore says which object store the steps that use one reach,
	// and with which credentials (never their values).
	ObjectStore string       `json:"objectStore,omitempty"`
	Waves       []DryRunWave `json:"waves"`
}

// DryRunWave is a set of steps that may run in parallel.
type DryRunWave struct {
	Wave  int          `json:"wave"`
	Steps []DryRunStep `json:"steps"`
}

// DryRunStep is one step with its actions per host.
type DryRunStep struct {
	ID          string   `json:"id"`
	Type        string   `json:"type"`
	Needs       []string `json:"needs,omitempty"`
	Hosts       []string `json:"hosts,omitempty"`
	Destructive bool     `json:"destructive,omitempty"`
	// Timeout is the time limit of each step-host, and TimeoutFrom where
	// it comes from: the step's timeout:, or its type's default.
	Timeout     string `json:"timeout"`
	TimeoutFrom string `json:"timeoutFrom"`
	Retries     int    `json:"retries,omitempty"`
	// Edges say, per need, how the step's hosts wait for it (lanes.go).
	Edges   []DryRunEdge   `json:"edges,omitempty"`
	Actions []steps.Action `json:"actions"`
}

// DryRunEdge is one need of a step: lane (each host waits for the need on
// the same host) or barrier (every host of the need first), and why.
type DryRunEdge struct {
	Need string   `json:"need"`
	Kind EdgeKind `json:"kind"`
	Why  string   `json:"why,omitempty"`
	// Whole lists this step's hosts where the need has no instance: they
	// wait for every host of the need (lane edges only).
	Whole []string `json:"whole,omitempty"`
}

// BuildDryRun renders every step's actions with the dry-run placeholders.
func BuildDryRun(c *Compiled) *DryRun {
	p := c.Plan
	d := &DryRun{Plan: p.Name, File: p.File, Cluster: p.Cluster.Name, EtcdVersion: c.Version.String(), Token: p.Cluster.Token}
	for _, m := range p.Cluster.Members {
		d.Members = append(d.Members, fmt.Sprintf("%s on %s (%s)", m.Name, m.Host, m.PeerURL))
	}
	d.CertChecks = certPlanLines(c)
	if usesStore(c) && p.S3 != nil {
		d.ObjectStore = storeLine(p)
	}
	for i, wave := range c.Waves {
		w := DryRunWave{Wave: i + 1}
		for _, n := range wave {
			w.Steps = append(w.Steps, c.describe(n, DryRunID, nil))
		}
		d.Waves = append(d.Waves, w)
	}
	return d
}

func (c *Compiled) describe(n *Node, runID string, facts map[string]string) DryRunStep {
	s := DryRunStep{ID: n.ID(), Type: n.Type.Name, Needs: n.Step.Needs, Hosts: n.Hosts(), Retries: n.Step.Retries}
	limit := deadlineOf(n, nil)
	s.Timeout = steps.FormatDuration(limit.d)
	s.TimeoutFrom = "timeout:"
	if !limit.setting {
		s.TimeoutFrom = strings.TrimSuffix("default: "+limit.basis, ": ")
	}
	for _, e := range n.Edges {
		de := DryRunEdge{Need: e.Need.ID(), Kind: e.Kind, Why: e.Why}
		if e.Kind == EdgeLane {
			for _, h := range n.Hosts() {
				if laneOf(e.Need, h) == nil {
					de.Whole = append(de.Whole, h)
				}
			}
		}
		s.Edges = append(s.Edges, de)
	}
	ctx := c.Ctx(n, runID, facts)
	red := NewRedactor(c.Plan)
	for _, t := range n.Targets {
		for _, a := range t.Params.Describe(ctx, t.Target) {
			a.Cmd = red.String(a.Cmd)
			s.Destructive = s.Destructive || a.Destructive
			s.Actions = append(s.Actions, a)
		}
	}
	return s
}

// WriteText prints the dry-run for a reviewer.
func (d *DryRun) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "plan %s (%s)\n", d.Plan, d.File)
	fmt.Fprintf(&b, "cluster %s, etcd %s, token %s\n", d.Cluster, d.EtcdVersion, orNone(d.Token))
	for _, m := range d.Members {
		fmt.Fprintf(&b, "  member %s\n", m)
	}
	if len(d.CertChecks) > 0 {
		b.WriteString("before the first change, apply checks the certificates on the hosts (paths from the env file or manifest, else cluster.layout.pki):\n")
		for _, l := range d.CertChecks {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	if d.ObjectStore != "" {
		fmt.Fprintf(&b, "object store %s\n", d.ObjectStore)
	}
	b.WriteString("nothing below has run; <run-id> is set when the plan is applied\n")
	n := 0
	for _, wv := range d.Waves {
		fmt.Fprintf(&b, "\nwave %d\n", wv.Wave)
		for _, s := range wv.Steps {
			n++
			fmt.Fprintf(&b, "  %d. %s (%s)", n, s.ID, s.Type)
			if len(s.Hosts) > 0 {
				fmt.Fprintf(&b, " on %s", strings.Join(s.Hosts, ", "))
			}
			if len(s.Needs) > 0 {
				fmt.Fprintf(&b, " after %s", strings.Join(s.Needs, ", "))
			}
			if s.Destructive {
				b.WriteString(" [DESTRUCTIVE]")
			}
			fmt.Fprintf(&b, ", deadline %s (%s)\n", s.Timeout, s.TimeoutFrom)
			if l := s.waitsLine(); l != "" {
				fmt.Fprintf(&b, "     runs per host, each waits for: %s\n", l)
			}
			for _, a := range s.Actions {
				mark := " "
				if a.Destructive {
					mark = "!"
				}
				where := a.Host
				if where == "" {
					where = "operator"
				}
				fmt.Fprintf(&b, "     %s %-8s %-5s %s\n", mark, where, a.Kind, a.Cmd)
			}
		}
	}
	fmt.Fprintf(&b, "\n%d steps in %d waves; \"!\" marks actions that change or remove data or membership\n", n, len(d.Waves))
	_, err := io.WriteString(w, b.String())
	return err
}

// waitsLine says how each host of a per-host step waits for its needs:
// "ship on the same host (lane); all of record (barrier: ...)".
// Empty for a step that runs once or needs nothing.
func (s DryRunStep) waitsLine() string {
	if len(s.Hosts) == 0 || len(s.Edges) == 0 {
		return ""
	}
	var parts []string
	for _, e := range s.Edges {
		switch e.Kind {
		case EdgeLane:
			p := e.Need + " on the same host (lane)"
			if len(e.Whole) > 0 {
				p = fmt.Sprintf("%s on the same host (lane; all of it on %s, where it does not run)", e.Need, strings.Join(e.Whole, ", "))
			}
			parts = append(parts, p)
		default:
			parts = append(parts, "all of "+e.Need+" (barrier: "+e.Why+")")
		}
	}
	return strings.Join(parts, "; ")
}

// WriteJSON prints the dry-run as JSON.
func (d *DryRun) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// WriteGraph prints the DAG as Graphviz dot or Mermaid.
func WriteGraph(c *Compiled, w io.Writer, format string) error {
	var b strings.Builder
	label := func(n *Node) string {
		l := n.ID() + "\\n" + n.Type.Name
		if hs := n.Hosts(); len(hs) > 0 {
			l += "\\n" + strings.Join(hs, ",")
		}
		return l
	}
	switch format {
	case "dot":
		fmt.Fprintf(&b, "digraph %q {\n  rankdir=TB;\n  node [shape=box];\n", c.Plan.Name)
		for _, n := range c.Nodes {
			attr := ""
			if n.Type.Destructive() {
				attr = ", color=red"
			}
			fmt.Fprintf(&b, "  %q [label=\"%s\"%s];\n", n.ID(), label(n), attr)
		}
		for _, n := range c.Nodes {
			for _, e := range n.Edges {
				attr := ""
				if e.Kind == EdgeLane {
					attr = " [style=dashed, label=\"per host\"]"
				}
				fmt.Fprintf(&b, "  %q -> %q%s;\n", e.Need.ID(), n.ID(), attr)
			}
		}
		b.WriteString("}\n")
	case "mermaid":
		b.WriteString("flowchart TD\n")
		ids := map[*Node]string{}
		for i, n := range c.Nodes {
			ids[n] = fmt.Sprintf("s%d", i+1)
			fmt.Fprintf(&b, "  %s[\"%s\"]\n", ids[n], strings.ReplaceAll(label(n), "\\n", "<br/>"))
		}
		for _, n := range c.Nodes {
			for _, e := range n.Edges {
				arrow := "-->"
				if e.Kind == EdgeLane {
					arrow = "-.->|per host|"
				}
				fmt.Fprintf(&b, "  %s %s %s\n", ids[e.Need], arrow, ids[n])
			}
		}
	default:
		return fmt.Errorf("unknown graph format %q (dot or mermaid)", format)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
