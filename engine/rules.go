package engine

import (
	"path"
	"sort"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// rules checks what no single step can see: the etcd recovery pitfalls of
// RUNBOOKS.md that span steps. Each rule reports at the step that breaks it.
func (c *Compiled) rules() plans.Findings {
	var fs plans.Findings
	fs = append(fs, c.ruleRestore()...)
	fs = append(fs, c.ruleForceNewCluster()...)
	fs = append(fs, c.ruleMemberAdd()...)
	fs = append(fs, c.ruleLearners()...)
	fs = append(fs, c.ruleCerts()...)
	fs = append(fs, c.ruleWipeStopped()...)
	return fs
}

// ruleWipeStopped: moving a running member's data dir away corrupts it.
func (c *Compiled) ruleWipeStopped() plans.Findings {
	var fs plans.Findings
	for _, n := range c.byType("wipe-dir") {
		anc := n.Ancestors()
		for _, t := range n.Targets {
			h := t.Host.Name
			if c.wipesDataDirOn(n, h) && !anyOf(anc, func(a *Node) bool { return c.stopsEtcdOn(a, h) }) {
				fs.Add(n.Step.At("on"), "wipe-dir on host %q: etcd is not stopped there by an earlier step", h).ForStep(n.ID()).
					WithHint("add stop-service of %s on %s to needs: (directly or through another step)", c.Plan.Cluster.Layout.Unit, h)
			}
		}
	}
	return fs
}

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

// isEtcdStop reports whether a node stops etcd on host.
func (c *Compiled) stopsEtcdOn(n *Node, host string) bool {
	if n.Type.Name != "stop-service" {
		return false
	}
	for _, t := range n.Targets {
		if t.Host != nil && t.Host.Name == host {
			u := t.Params.(*steps.StopService).Unit
			return u == "" || u == c.Plan.Cluster.Layout.Unit
		}
	}
	return false
}

func (c *Compiled) startsEtcdOn(n *Node, host string) (bool, *steps.StartService) {
	if n.Type.Name != "start-service" {
		return false, nil
	}
	for _, t := range n.Targets {
		if t.Host != nil && t.Host.Name == host {
			s := t.Params.(*steps.StartService)
			if s.Unit == "" || s.Unit == c.Plan.Cluster.Layout.Unit {
				return true, s
			}
		}
	}
	return false, nil
}

func (c *Compiled) copiesTo(n *Node, host, path string) bool {
	if n.Type.Name != "snapshot-copy" {
		return false
	}
	for _, t := range n.Targets {
		if t.Host != nil && t.Host.Name == host {
			return t.Params.(*steps.SnapshotCopy).To == path
		}
	}
	return false
}

func (c *Compiled) wipesDataDirOn(n *Node, host string) bool {
	if n.Type.Name != "wipe-dir" {
		return false
	}
	for _, t := range n.Targets {
		if t.Host != nil && t.Host.Name == host {
			p := t.Params.(*steps.WipeDir).Path
			return p == "" || path.Clean(p) == path.Clean(c.Plan.Cluster.Layout.DataDir)
		}
	}
	return false
}

func anyOf(set map[*Node]bool, f func(*Node) bool) bool {
	for n := range set {
		if f(n) {
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

func (c *Compiled) ruleRestore() plans.Findings {
	var fs plans.Findings
	restores := c.byType("restore")
	if len(restores) == 0 {
		return fs
	}
	covered := map[string]bool{}
	snaps := map[string]*Node{}
	for _, n := range restores {
		anc := n.Ancestors()
		for _, t := range n.Targets {
			h := t.Host.Name
			covered[h] = true
			r := t.Params.(*steps.Restore)
			snaps[r.Snapshot] = n
			if !anyOf(anc, func(a *Node) bool { return c.stopsEtcdOn(a, h) }) {
				fs.Add(n.Step.At("on"), "restore on host %q: etcd is not stopped there by an earlier step", h).ForStep(n.ID()).
					WithHint("add a stop-service step for %s on %s and list it (or a step after it) in needs:", c.Plan.Cluster.Layout.Unit, h)
			}
			if !anyOf(anc, func(a *Node) bool { return c.wipesDataDirOn(a, h) }) {
				fs.Add(n.Step.At("on"), "restore on host %q: the data dir %s is not moved aside by an earlier wipe-dir", h, c.Plan.Cluster.Layout.DataDir).ForStep(n.ID()).
					WithHint("a leftover member/ dir blocks the restore or mixes two clusters (cluster ID mismatch); add wipe-dir to needs:")
			}
		}
		if c.Plan.Cluster.Layout.Service == "static-pod" && !anyOf(anc, func(a *Node) bool {
			if a.Type.Name != "stop-service" {
				return false
			}
			for _, t := range a.Targets { // none when its on: did not resolve (reported there)
				if t.Params.(*steps.StopService).Unit == "kube-apiserver" {
					return true
				}
			}
			return false
		}) {
			fs.Warn(n.Step.Pos, "restore runs while kube-apiserver may still be running").ForStep(n.ID()).
				WithHint("stop kube-apiserver on every control-plane host first (stop-service with unit: kube-apiserver)")
		}
	}
	// The snapshot must be put on each host by an earlier snapshot-copy.
	for _, n := range restores {
		anc := n.Ancestors()
		for _, t := range n.Targets {
			snap := t.Params.(*steps.Restore).Snapshot
			if !anyOf(anc, func(a *Node) bool { return c.copiesTo(a, t.Host.Name, snap) }) {
				fs.Warn(n.Step.WithPos(), "restore on host %q reads %s, but no earlier snapshot-copy puts it there", t.Host.Name, snap).ForStep(n.ID()).
					WithHint("add a snapshot-copy step to needs:, or make sure the file is there and verified")
			}
		}
	}
	var missing []string
	for _, h := range c.memberHosts() {
		if !covered[h] {
			missing = append(missing, h)
		}
	}
	if len(missing) > 0 {
		fs.Add(restores[0].Step.At("on"), "restore does not cover every member of the new cluster: no restore on %s", strings.Join(missing, ", ")).ForStep(restores[0].ID()).
			WithHint("restore every member from the same snapshot; to rebuild one member of a healthy cluster, use member-remove, wipe-dir and member-add instead")
	}
	if len(snaps) > 1 {
		var list []string
		for s := range snaps {
			list = append(list, s)
		}
		sort.Strings(list)
		n := restores[len(restores)-1]
		fs.Add(n.Step.WithPos(), "restore steps use different snapshots: %s", strings.Join(list, ", ")).ForStep(n.ID()).
			WithHint("every member must restore the same snapshot, or the members form different clusters")
	}
	// Snapshot copies that feed restores must ship one file.
	froms := map[string]bool{}
	for _, n := range c.byType("snapshot-copy") {
		for _, t := range n.Targets {
			sc := t.Params.(*steps.SnapshotCopy)
			if snaps[sc.To] != nil {
				froms[sc.From] = true
			}
		}
	}
	if len(froms) > 1 {
		var list []string
		for s := range froms {
			list = append(list, s)
		}
		sort.Strings(list)
		n := c.byType("snapshot-copy")[0]
		fs.Add(n.Step.WithPos(), "snapshot-copy ships different snapshots to the restore: %s", strings.Join(list, ", ")).ForStep(n.ID()).
			WithHint("ship one snapshot file to every member")
	}
	// Restored members must start together (Type=notify waits for quorum).
	var startNodes []*Node
	for _, n := range c.byType("start-service") {
		for h := range covered {
			if ok, s := c.startsEtcdOn(n, h); ok {
				startNodes = append(startNodes, n)
				if s.Block != nil && *s.Block && len(covered) > 1 {
					fs.Add(n.Step.At("with"), "start-service with block: true on restored member host %q: systemctl start waits for quorum, which needs the other members", h).ForStep(n.ID()).
						WithHint("drop block: true; a wait-healthy step after the start waits for the cluster")
				}
				break
			}
		}
	}
	for _, a := range startNodes {
		for _, b := range startNodes {
			if a != b && b.Ancestors()[a] {
				fs.Add(b.Step.At("needs"), "restored members are started one after another (%s waits for %s)", b.ID(), a.ID()).ForStep(b.ID()).
					WithHint("start every restored member in one start-service step (or in steps that do not wait for each other)")
			}
		}
	}
	return fs
}

func (c *Compiled) ruleForceNewCluster() plans.Findings {
	var fs plans.Findings
	fnc := c.byType("force-new-cluster")
	var hosts []string
	for _, n := range fnc {
		hosts = append(hosts, n.Hosts()...)
	}
	if len(hosts) > 1 {
		fs.Add(fnc[0].Step.At("on"), "force-new-cluster on %d hosts (%s): only one survivor may start a new cluster", len(hosts), strings.Join(hosts, ", ")).ForStep(fnc[0].ID()).
			WithHint("run force-new-cluster on one member; re-add the others with member-add")
	}
	for _, n := range fnc {
		anc := n.Ancestors()
		for _, t := range n.Targets {
			for _, m := range c.Plan.Cluster.Members {
				if m.Host == t.Host.Name {
					continue
				}
				if !anyOf(anc, func(a *Node) bool { return c.stopsEtcdOn(a, m.Host) }) {
					fs.Add(n.Step.At("on"), "force-new-cluster on %q: member %s on host %q is not stopped by an earlier step", t.Host.Name, m.Name, m.Host).ForStep(n.ID()).
						WithHint("fence every other member first: stop-service with disable: true (unreachable: skip for dead hosts) in needs:")
				}
			}
		}
	}
	return fs
}

func (c *Compiled) ruleMemberAdd() plans.Findings {
	var fs plans.Findings
	for _, n := range c.byType("member-add") {
		for _, t := range n.Targets {
			h := t.Host.Name
			var start *Node
			for _, s := range c.byType("start-service") {
				if ok, _ := c.startsEtcdOn(s, h); ok && s.Ancestors()[n] {
					start = s
					break
				}
			}
			if start == nil {
				fs.Add(n.Step.At("on"), "member-add of %s: no later step starts etcd on %q", t.Member.Name, h).ForStep(n.ID()).
					WithHint("an added member that never starts raises the quorum (etcd #3505): add start-service on %s with needs: [%s]", h, n.ID())
				continue
			}
			anc := start.Ancestors()
			if !anyOf(anc, func(a *Node) bool { return c.wipesDataDirOn(a, h) }) {
				fs.Add(start.Step.At("on"), "member %s joins with whatever is in %s on %q: no wipe-dir there before the start", t.Member.Name, c.Plan.Cluster.Layout.DataDir, h).ForStep(start.ID()).
					WithHint("a re-added member must start empty (\"member already bootstrapped\", etcd #2780); add wipe-dir to needs:")
			}
			existing := false
			for a := range anc {
				if a.Type.Name != "set-config" {
					continue
				}
				for _, at := range a.Targets {
					if at.Host.Name == h {
						if at.Params.(*steps.SetConfig).ClusterState == "existing" {
							existing = true
						} else {
							fs.Add(a.Step.At("with"), "set-config on %q says clusterState: new, but %s joins a running cluster", h, t.Member.Name).ForStep(a.ID()).
								WithHint("use clusterState: existing for a member added with member-add")
						}
					}
				}
			}
			if !existing {
				fs.Add(start.Step.At("on"), "member %s starts without set-config clusterState: existing on %q", t.Member.Name, h).ForStep(start.ID()).
					WithHint("add a set-config step with clusterState: existing (and initialCluster: the members at that point) before the start")
			}
		}
	}
	return fs
}

type learnerAdd struct {
	node   *Node
	member string
}

func (c *Compiled) ruleLearners() plans.Findings {
	var fs plans.Findings
	var adds []learnerAdd
	for _, n := range c.byType("member-add") {
		var ls []string
		for _, t := range n.Targets {
			ma := t.Params.(*steps.MemberAdd)
			if ma.Learner == nil || *ma.Learner {
				ls = append(ls, t.Member.Name)
				adds = append(adds, learnerAdd{n, t.Member.Name})
			}
		}
		if len(ls) > 1 {
			fs.Add(n.Step.At("on"), "member-add adds %d learners at once (%s); etcd allows one learner at a time", len(ls), strings.Join(ls, ", ")).ForStep(n.ID()).
				WithHint("one member-add per member, each after the previous member-promote")
		}
	}
	promoted := func(member string, before *Node) bool {
		for a := range before.Ancestors() {
			if a.Type.Name != "member-promote" {
				continue
			}
			for _, t := range a.Targets {
				if t.Member != nil && t.Member.Name == member {
					return true
				}
			}
		}
		return false
	}
	for i, a := range adds {
		for _, b := range adds[i+1:] {
			if a.node == b.node {
				continue
			}
			if !promoted(a.member, b.node) && !promoted(b.member, a.node) {
				fs.Add(b.node.Step.At("on"), "learner %s is added while learner %s may not be promoted yet", b.member, a.member).ForStep(b.node.ID()).
					WithHint("make the second member-add need the member-promote of %s", a.member)
			}
		}
	}
	return fs
}

func (c *Compiled) ruleCerts() plans.Findings {
	var fs plans.Findings
	for _, n := range c.byType("member-update") {
		for _, t := range n.Targets {
			if strings.HasPrefix(t.Member.PeerURL, "https://") && !t.Params.(*steps.MemberUpdate).CertsChecked {
				fs.Warn(n.Step.Pos, "member %s gets peer URL %s: its peer and server certificates must list the new address", t.Member.Name, t.Member.PeerURL).ForStep(n.ID()).
					WithHint("check with openssl x509 -noout -ext subjectAltName -in <cert>, then set certsChecked: true (else: x509: certificate is valid for X, not Y)")
			}
		}
	}
	return fs
}
