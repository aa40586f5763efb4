package engine

import (
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// Walker lanes: per-host pipelining is decided here, at compile time, one
// edge at a time, and shown in the dry-run; the walker only follows the
// edges (walk.go).
//
// A lane edge lets the step on host h go on once its need is done on h
// (or, where the need has no instance on h, on all its hosts). A barrier
// edge waits for the need on every host: what every edge did before lanes.
// A total-loss restore (ship, check, restore, set-config per host) then
// takes max(ship+check+restore+...) rather than max(ship)+max(check)+...

// EdgeKind says how a step waits for one of its needs.
type EdgeKind string

const (
	// EdgeLane: the step on host h waits for the need on h only.
	EdgeLane EdgeKind = "lane"
	// EdgeBarrier: the step waits for the need on every host.
	EdgeBarrier EdgeKind = "barrier"
)

// Edge is one need of a node, as the walker follows it.
type Edge struct {
	Need *Node
	Kind EdgeKind
	// Why says why a need is a barrier (empty for a lane).
	Why string
}

// edges decides the kind of every need of every node.
func (c *Compiled) edges() {
	for _, n := range c.Nodes {
		n.Edges = n.Edges[:0]
		for _, d := range n.Needs {
			kind, why := c.edgeKind(n, d)
			n.Edges = append(n.Edges, Edge{Need: d, Kind: kind, Why: why})
		}
	}
}

// edgeKind is a lane only when both steps are per host and nothing in the
// plan or the runbooks' order asks that every host of the need be done
// first. When in doubt: a barrier.
func (c *Compiled) edgeKind(n, d *Node) (EdgeKind, string) {
	switch {
	case n.Step.Barrier:
		return EdgeBarrier, "barrier: true in the plan"
	case d.Type.Scope == steps.Once:
		return EdgeBarrier, d.Type.Name + " runs once for the cluster"
	case n.Type.Scope == steps.Once:
		return EdgeBarrier, n.Type.Name + " runs once for the cluster"
	case !perHost(d):
		return EdgeBarrier, d.Type.Name + " is not a per-host step" + notPerHostWhy(d)
	case !perHost(n):
		return EdgeBarrier, n.Type.Name + " is not a per-host step" + notPerHostWhy(n)
	}
	ctx := c.Ctx(d, DryRunID, nil)
	etcdUnit := c.Plan.Cluster.Layout.Unit
	for _, t := range d.Targets {
		for _, u := range steps.UnitsStopped(t.Params, ctx) {
			if u != etcdUnit {
				return EdgeBarrier, u + " stops on every host before anything after it"
			}
		}
	}
	nctx := c.Ctx(n, DryRunID, nil)
	for _, t := range n.Targets {
		if s, ok := t.Params.(steps.NeedsStoppedFirst); ok && len(s.NeedsStoppedFirst(nctx)) > 0 {
			return EdgeBarrier, n.Type.Name + " needs services stopped on other hosts first"
		}
	}
	return EdgeLane, ""
}

// perHost asks every host's parameters of a node (LaneSafe may one day
// depend on them).
func perHost(n *Node) bool {
	if len(n.Targets) == 0 {
		return false
	}
	for _, t := range n.Targets {
		p, ok := t.Params.(steps.LaneSafe)
		if !ok || !p.LaneSafe() {
			return false
		}
	}
	return true
}

// notPerHostWhy says, for the dry-run, why a type is left out of lanes.
func notPerHostWhy(n *Node) string {
	if len(n.Targets) > 0 {
		if p, ok := n.Targets[0].Params.(steps.NoLane); ok {
			return ": " + p.NoLane()
		}
	}
	return ""
}

// laneOf returns the instance of d on host, or nil when d has none there
// (then the step waits for every host of d).
func laneOf(d *Node, host string) *Target {
	if host == "" {
		return nil
	}
	for _, t := range d.Targets {
		if t.Host != nil && t.Host.Name == host {
			return t
		}
	}
	return nil
}
