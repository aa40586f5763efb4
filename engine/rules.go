package engine

import (
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// rules checks what no single step can see: the etcd recovery pitfalls of
// RUNBOOKS.md that span steps. Each rule reports at the step that breaks it.
// What a step does to the cluster the rules ask its parameters through the
// interfaces of steps/traits.go. The rules live by theme:
// rules_restore.go (restores, snapshots, data dirs), rules_members.go
// (membership changes), rules_quorum.go (stops, force-new-cluster) and
// rules_kube.go (the Kubernetes control plane).
func (c *Compiled) rules() plans.Findings {
	var fs plans.Findings
	fs = append(fs, c.ruleRestore()...)
	fs = append(fs, c.ruleRestoreSnapshot()...)
	fs = append(fs, c.ruleRestoredConfig()...)
	fs = append(fs, c.ruleStoppedFirst()...)
	fs = append(fs, c.ruleForceNewCluster()...)
	fs = append(fs, c.ruleQuorumStops()...)
	fs = append(fs, c.ruleMustStart()...)
	fs = append(fs, c.ruleMemberAdd()...)
	fs = append(fs, c.ruleMemberRemove()...)
	fs = append(fs, c.rulePromote()...)
	fs = append(fs, c.ruleLearners()...)
	fs = append(fs, c.ruleCerts()...)
	fs = append(fs, c.ruleWipeStopped()...)
	fs = append(fs, c.ruleKubernetes()...)
	fs = append(fs, c.rulePrepares()...)
	return fs
}

// ruleIndex answers the rules' questions about order and services in
// constant or linear time, so that a plan of thousands of steps validates
// quickly: reach[i] has bit j set when node j is an ancestor of node i.
type ruleIndex struct {
	ctx    *steps.Ctx
	reach  [][]uint64
	starts map[string][]*Node            // host -> nodes that start etcd there
	stops  map[string]map[string][]*Node // host -> unit -> nodes that stop it there
}

// ix returns the rules' index of c, building it on first use.
func (c *Compiled) ix() *ruleIndex {
	if c.rix != nil {
		return c.rix
	}
	x := &ruleIndex{ctx: c.Ctx(nil, DryRunID, nil), reach: make([][]uint64, len(c.Nodes)),
		starts: map[string][]*Node{}, stops: map[string]map[string][]*Node{}}
	words := (len(c.Nodes) + 63) / 64
	for i, n := range c.Nodes {
		n.ord = i
		x.reach[i] = make([]uint64, words)
	}
	for _, wave := range c.Waves { // every need is in an earlier wave
		for _, n := range wave {
			r := x.reach[n.ord]
			for _, d := range n.Needs {
				j := d.ord
				r[j/64] |= 1 << (j % 64)
				for k, w := range x.reach[j] {
					r[k] |= w
				}
			}
		}
	}
	etcd := c.Plan.Cluster.Layout.Unit
	for _, n := range c.Nodes {
		for _, t := range n.Targets {
			if t.Host == nil {
				continue
			}
			h := t.Host.Name
			if s, ok := t.Params.(steps.StartsService); ok && s.StartsUnit(x.ctx) == etcd {
				x.starts[h] = append(x.starts[h], n)
			}
			for _, u := range steps.UnitsStopped(t.Params, x.ctx) {
				if x.stops[h] == nil {
					x.stops[h] = map[string][]*Node{}
				}
				x.stops[h][u] = append(x.stops[h][u], n)
			}
		}
	}
	c.rix = x
	return x
}

// before reports whether a is an ancestor of b: b needs a, transitively.
func (c *Compiled) before(a, b *Node) bool {
	x := c.ix()
	i, j := a.ord, b.ord
	return x.reach[j][i/64]&(1<<(i%64)) != 0
}

// ruleCtx is the steps' context for asking a step-host what it does.
func (c *Compiled) ruleCtx() *steps.Ctx { return c.ix().ctx }

// byType lists the nodes of a step type in plan order.
func (c *Compiled) byType(typ string) []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Type.Name == typ {
			out = append(out, n)
		}
	}
	return out
}

// targetOn returns n's target on host, or nil.
func targetOn(n *Node, host string) *Target {
	for _, t := range n.Targets {
		if t.Host != nil && t.Host.Name == host {
			return t
		}
	}
	return nil
}

// stopsUnitOn reports whether n stops unit on host.
func (c *Compiled) stopsUnitOn(n *Node, host, unit string) bool {
	if t := targetOn(n, host); t != nil {
		for _, u := range steps.UnitsStopped(t.Params, c.ruleCtx()) {
			if u == unit {
				return true
			}
		}
	}
	return false
}

// stopsEtcdOn reports whether n stops etcd on host.
func (c *Compiled) stopsEtcdOn(n *Node, host string) bool {
	return c.stopsUnitOn(n, host, c.Plan.Cluster.Layout.Unit)
}

// stoppedBefore reports whether a step before n stops unit on host.
func (c *Compiled) stoppedBefore(n *Node, host, unit string) bool {
	for _, s := range c.ix().stops[host][unit] {
		if c.before(s, n) {
			return true
		}
	}
	return false
}

// startsEtcdOn reports whether n starts etcd on host, with n's target there.
func (c *Compiled) startsEtcdOn(n *Node, host string) (bool, *Target) {
	if t := targetOn(n, host); t != nil {
		if s, ok := t.Params.(steps.StartsService); ok && s.StartsUnit(c.ruleCtx()) == c.Plan.Cluster.Layout.Unit {
			return true, t
		}
	}
	return false, nil
}

// startsAfter lists the nodes that start etcd on host after n.
func (c *Compiled) startsAfter(n *Node, host string) []*Node {
	var out []*Node
	for _, s := range c.ix().starts[host] {
		if c.before(n, s) {
			out = append(out, s)
		}
	}
	return out
}

func (c *Compiled) wipesDataDirOn(n *Node, host string) bool {
	if n.Type.Name != "wipe-dir" {
		return false
	}
	if t := targetOn(n, host); t != nil {
		p := t.Params.(*steps.WipeDir).Path
		return p == "" || path.Clean(p) == path.Clean(c.Plan.Cluster.Layout.DataDir)
	}
	return false
}

// anyBefore reports whether f holds for a step before n.
func (c *Compiled) anyBefore(n *Node, f func(*Node) bool) bool {
	for _, a := range c.Nodes {
		if c.before(a, n) && f(a) {
			return true
		}
	}
	return false
}

func (c *Compiled) memberHosts() []string {
	var out []string
	for _, m := range c.Plan.Cluster.Members {
		out = append(out, m.Host)
	}
	sort.Strings(out)
	return out
}

// quoted renders names as "a", "b".
func quoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}
