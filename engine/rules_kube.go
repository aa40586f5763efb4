package engine

import (
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// Rules on the Kubernetes control plane (cluster.kubernetes). That the
// API servers are stopped before a restore is ruleStoppedFirst's, asked of
// the restore (steps.NeedsStoppedFirst).

// ruleKubernetes: the kube-* steps need cluster.kubernetes, and the relist
// proof needs a restore with a revision bump before it.
func (c *Compiled) ruleKubernetes() plans.Findings {
	var fs plans.Findings
	for _, n := range c.Nodes {
		if u, ok := n.Type.New().(steps.UsesKubernetes); ok && u.UsesKubernetes() && c.Plan.Cluster.Kubernetes == nil {
			fs.Add(n.Step.At("type"), "%s needs cluster.kubernetes: the control-plane hosts, how their components run and how to reach the API servers", n.Type.Name).ForStep(n.ID()).
				WithHint("add under cluster: kubernetes: {apiServer: {ca: pki/ca.crt}} (controlPlane, manifests, components and hosts have defaults; see docs/plan-format.md)")
			continue
		}
		if len(n.Targets) == 0 && n.Type.Scope == steps.PerHost && c.Plan.Cluster.Kubernetes != nil && len(n.Step.On) == 0 {
			fs.Add(n.Step.Pos, "%s has no host: cluster.kubernetes.hosts names none of hosts:", n.Type.Name).ForStep(n.ID())
		}
		for _, t := range n.Targets {
			nb, ok := t.Params.(steps.NeedsBumpedRestore)
			if !ok {
				continue
			}
			if !c.anyBefore(n, c.restoresWithBump) {
				fs.Add(n.Step.At("type"), "%s: no restore with a revision bump comes before it, so nothing makes a watch from the old revision fail", n.Type.Name).ForStep(n.ID()).
					WithHint("%s", nb.NeedsBumpedRestore())
			}
			break
		}
	}
	return fs
}

// restoresWithBump reports whether n restores with a revision bump on any
// of its hosts.
func (c *Compiled) restoresWithBump(n *Node) bool {
	for _, t := range n.Targets {
		if b, ok := t.Params.(steps.BumpsRevision); ok && b.BumpsRevision() {
			return true
		}
	}
	return false
}
