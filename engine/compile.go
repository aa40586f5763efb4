// Package engine joins plans and steps. The plan side compiles a plan into
// a DAG of typed step instances (compile.go, dag.go), checks the etcd
// recovery rules across steps (rules.go), and renders the dry-run, graphs
// and schema (render.go, schema.go). The run side applies and resumes plans
// (apply.go, resume.go, session.go): the walk over the DAG (walk.go) along
// the lanes and barriers the compile chose (lanes.go), with the parallelism
// slots (slots.go), one step-host from its record to an outcome
// (target.go) and its attempts (attempt.go), with every command journalled
// (stepenv.go, journal.go) over a Backend (sshbackend.go, etcdadapter.go).
// What a run leaves on disk is package runstate's; what the engine needs to
// know of a step type it asks the type (steptype.go).
package engine

import (
	"sort"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/etcd-rescue/etcd-rescue/engine/reviewed"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// DryRunID stands for the run id in a dry-run.
const DryRunID = "<run-id>"

// Node is one step of the compiled plan.
type Node struct {
	Step    *plans.Step
	Type    *steps.Type
	Targets []*Target
	Needs   []*Node // direct dependencies, in needs: order
	// Edges are Needs with how the step waits for each: on the same host
	// only (a lane) or on every host (a barrier); see lanes.go.
	Edges []Edge
	Wave  int // 0-based layer: a node's wave is after all its needs

	ord int // index in Compiled.Nodes, for the rules' index (rules.go)
}

// ID is the step id.
func (n *Node) ID() string { return n.Step.ID }

// Target is one host of a node with the parameters decoded for it (variables
// like ${member.name} differ per host). A Once node has one Target with no
// host.
type Target struct {
	steps.Target
	Params steps.Step
}

// Compiled is a plan ready to render or run.
type Compiled struct {
	Plan    *plans.Plan
	Version plans.Version
	Nodes   []*Node // plan order
	ByID    map[string]*Node
	Waves   [][]*Node
	Reg     map[string]*steps.Type

	// LoadTime is how long reading, checking and compiling the plan took.
	LoadTime time.Duration
	// RunDir is the directory of the run on the operator machine, once a
	// session has opened it ("" in a dry-run).
	RunDir string

	rix *ruleIndex // built by the first rule that asks (rules.go)
}

// Ctx builds the steps' context for one node.
func (c *Compiled) Ctx(n *Node, runID string, facts map[string]string) *steps.Ctx {
	ctx := &steps.Ctx{Plan: c.Plan, Cluster: c.Plan.Cluster, Version: c.Version, RunID: runID,
		DryRun: runID == DryRunID, Facts: facts}
	if !ctx.DryRun {
		ctx.RunDir = c.RunDir
	}
	if n != nil {
		for _, t := range n.Targets {
			ctx.Selected = append(ctx.Selected, t.Target)
		}
		if n.Type.Scope == steps.Once {
			ctx.Selected = nil
			if hosts, err := c.Plan.ResolveOn(n.Step.On); err == nil {
				for _, h := range hosts {
					ctx.Selected = append(ctx.Selected, steps.Target{Host: c.Plan.Hosts[h], Member: c.Plan.Cluster.MemberOnHost(h)})
				}
			}
		}
	}
	return ctx
}

// Load reads, checks and compiles a plan: every finding of every stage.
func Load(path, inventory string) (*Compiled, plans.Findings) {
	t0 := time.Now()
	return timed(t0)(compileLoaded(plans.Load(path, inventory)))
}

// LoadBytes is Load for plan bytes already in memory (see plans.LoadBytes).
func LoadBytes(path string, raw []byte, inventory string) (*Compiled, plans.Findings) {
	t0 := time.Now()
	return timed(t0)(compileLoaded(plans.LoadBytes(path, raw, inventory)))
}

// LoadReviewed is Load for the plan and inventory a reviewed-plan document
// holds (plan --out).
func LoadReviewed(d *reviewed.Document) (*Compiled, plans.Findings) {
	t0 := time.Now()
	return timed(t0)(compileLoaded(d.LoadPlan()))
}

// timed records in the compiled plan how long loading it took since t0
// (the engine's own time, counted in the run's engine time).
func timed(t0 time.Time) func(*Compiled, plans.Findings) (*Compiled, plans.Findings) {
	return func(c *Compiled, fs plans.Findings) (*Compiled, plans.Findings) {
		if c != nil {
			c.LoadTime = time.Since(t0)
		}
		return c, fs
	}
}

func compileLoaded(p *plans.Plan, fs plans.Findings) (*Compiled, plans.Findings) {
	if p == nil {
		return nil, fs
	}
	red := NewRedactor(p)
	if fs.Errors() > 0 && (p.Cluster == nil || len(p.Hosts) == 0) {
		// Without a cluster or hosts, step checks would only add noise.
		return nil, red.Findings(fs).Sort()
	}
	c, cfs := Compile(p, steps.Registry())
	return c, red.Findings(append(fs, cfs...)).Sort()
}

// Compile decodes every step's parameters per host, builds the DAG and runs
// the cross-step rules. It returns a usable Compiled only when there is no
// error-severity finding.
func Compile(p *plans.Plan, reg map[string]*steps.Type) (*Compiled, plans.Findings) {
	var fs plans.Findings
	c := &Compiled{Plan: p, Version: p.EtcdVersion(), ByID: map[string]*Node{}, Reg: reg}
	if p.Cluster == nil {
		return nil, fs
	}
	for _, s := range p.Steps {
		if s == nil || s.ID == "" || s.Type == "" {
			continue
		}
		typ, ok := reg[s.Type]
		if !ok {
			fs.Add(s.At("type"), "unknown step type %q%s", s.Type, plans.Suggest(s.Type, steps.Names(reg))).ForStep(s.ID).
				WithHint("etcd-rescue steps lists the types")
			continue
		}
		if _, dup := c.ByID[s.ID]; dup {
			continue // reported by plans.Check
		}
		n := &Node{Step: s, Type: typ}
		c.Nodes = append(c.Nodes, n)
		c.ByID[s.ID] = n
		fs = append(fs, c.targets(n)...)
	}
	for _, n := range c.Nodes {
		for _, id := range n.Step.Needs {
			if d, ok := c.ByID[id]; ok && d != n {
				n.Needs = append(n.Needs, d)
			}
		}
	}
	if cyc := c.cycles(); len(cyc) > 0 {
		fs = append(fs, cyc...)
		return nil, fs
	}
	c.layer()
	c.edges()
	fs = append(fs, c.rules()...)
	if fs.Errors() > 0 {
		return nil, fs
	}
	return c, fs
}

// targets resolves on: and decodes with: for each host of n.
func (c *Compiled) targets(n *Node) plans.Findings {
	var fs plans.Findings
	p, s := c.Plan, n.Step
	var hosts []string
	if len(s.On) > 0 {
		var err error
		if hosts, err = p.ResolveOn(s.On); err != nil {
			return fs // reported by plans.Check
		}
	}
	if n.Type.Scope == steps.Once {
		fs = append(fs, c.decode(n, nil)...)
		return fs
	}
	if len(s.On) == 0 {
		d, ok := n.Type.New().(steps.DefaultHosts)
		if !ok {
			fs.Add(s.Pos, "step type %s runs on hosts: on: is required", s.Type).ForStep(s.ID).
				WithHint("on: all, on: members, on: <host or member>, or a list")
			return fs
		}
		// Its default hosts (the control-plane hosts); without them the
		// engine's rules say what is missing (cluster.kubernetes).
		for _, h := range d.DefaultOn(p) {
			if p.Hosts[h] != nil {
				hosts = append(hosts, h)
			}
		}
		sort.Strings(hosts)
	}
	for _, h := range hosts {
		host := p.Hosts[h]
		m := p.Cluster.MemberOnHost(h)
		if m == nil && needsMember(n.Type) {
			fs.Add(s.At("on"), "%s on host %q: no member of cluster.members runs there", s.Type, h).ForStep(s.ID).
				WithHint("cluster.members describes the cluster after recovery; add the member there or change on:")
			continue
		}
		fs = append(fs, c.decode(n, &steps.Target{Host: host, Member: m})...)
	}
	return fs
}

func (c *Compiled) decode(n *Node, t *steps.Target) plans.Findings {
	var fs plans.Findings
	s := n.Step
	params := n.Type.New()
	var host *plans.Host
	var m *plans.Member
	if t != nil {
		host, m = t.Host, t.Member
	}
	if s.HasWith() {
		expanded, vfs := plans.ExpandParams(c.Plan.File, &s.With, c.Plan.Scope(host, m, DryRunID), params)
		for i := range vfs {
			vfs[i].Step = s.ID
		}
		fs = append(fs, vfs...)
		d := &plans.Decoder{File: c.Plan.File}
		d.Decode(expanded, params)
		for _, f := range d.Findings {
			f.Step = s.ID
			fs = append(fs, f)
		}
	} else {
		plans.SetDefaults(params)
	}
	tg := &Target{Params: params}
	if t != nil {
		tg.Target = *t
	}
	n.Targets = append(n.Targets, tg)
	if v, ok := params.(steps.Validator); ok && fs.Errors() == 0 {
		var vf plans.Findings
		v.Validate(c.Ctx(n, DryRunID, nil), withAt(c.Plan.File, s), &vf)
		for _, f := range vf {
			f.Step = s.ID
			fs = append(fs, f)
		}
	}
	return fs
}

// withAt returns the position of a key's value under with:.
func withAt(file string, s *plans.Step) steps.At {
	pos := map[string]plans.Pos{}
	w := &s.With
	if w.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(w.Content); i += 2 {
			v := w.Content[i+1]
			pos[w.Content[i].Value] = plans.Pos{File: file, Line: v.Line, Col: v.Column}
		}
	}
	return func(key string) plans.Pos {
		if p, ok := pos[key]; ok {
			return p
		}
		return s.WithPos()
	}
}

// Hosts lists the hosts a node runs on, sorted.
func (n *Node) Hosts() []string {
	var out []string
	for _, t := range n.Targets {
		if t.Host != nil {
			out = append(out, t.Host.Name)
		}
	}
	sort.Strings(out)
	return out
}
