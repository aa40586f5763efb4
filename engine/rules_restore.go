package engine

import (
	"path"
	"sort"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// Rules on restores, the snapshots they read and the data dirs they
// replace.

// restores lists the nodes that restore members from a snapshot.
func (c *Compiled) restores() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		for _, t := range n.Targets {
			if _, ok := t.Params.(steps.RestoresFromSnapshot); ok {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

func (c *Compiled) ruleRestore() plans.Findings {
	var fs plans.Findings
	restores := c.restores()
	if len(restores) == 0 {
		return fs
	}
	covered := map[string]bool{}
	snaps := map[string]*Node{}
	for _, n := range restores {
		for _, t := range n.Targets {
			if t.Host == nil {
				continue
			}
			h := t.Host.Name
			covered[h] = true
			snaps[t.Params.(steps.RestoresFromSnapshot).RestoredFrom()] = n
			if !c.stoppedBefore(n, h, c.Plan.Cluster.Layout.Unit) {
				fs.Add(n.Step.At("on"), "restore on host %q: etcd is not stopped there by an earlier step", h).ForStep(n.ID()).
					WithHint("add a stop-service step for %s on %s and list it (or a step after it) in needs:", c.Plan.Cluster.Layout.Unit, h)
			}
			if !c.anyBefore(n, func(a *Node) bool { return c.wipesDataDirOn(a, h) }) {
				fs.Add(n.Step.At("on"), "restore on host %q: the data dir %s is not moved aside by an earlier wipe-dir", h, c.Plan.Cluster.Layout.DataDir).ForStep(n.ID()).
					WithHint("a leftover member/ dir blocks the restore or mixes two clusters (cluster ID mismatch); add wipe-dir to needs:")
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
	for _, n := range c.Nodes {
		for h := range covered {
			if ok, t := c.startsEtcdOn(n, h); ok {
				startNodes = append(startNodes, n)
				if s, ok := t.Params.(*steps.StartService); ok && s.Block != nil && *s.Block && len(covered) > 1 {
					fs.Add(n.Step.At("with"), "start-service with block: true on restored member host %q: systemctl start waits for quorum, which needs the other members", h).ForStep(n.ID()).
						WithHint("drop block: true; a wait-healthy step after the start waits for the cluster")
				}
				break
			}
		}
	}
	for _, a := range startNodes {
		for _, b := range startNodes {
			if a != b && c.before(a, b) {
				fs.Add(b.Step.At("needs"), "restored members are started one after another (%s waits for %s)", b.ID(), a.ID()).ForStep(b.ID()).
					WithHint("start every restored member in one start-service step (or in steps that do not wait for each other)")
			}
		}
	}
	return fs
}

// ruleRestoreSnapshot: a restore reads the snapshot where an earlier step
// put it on that host (snapshot-copy), or where an earlier step checked it
// is (snapshot-verify of a file already there). A copy to another path, a
// copy not ordered before the restore, or no step at all is an error: the
// restore would read a stale file or none.
func (c *Compiled) ruleRestoreSnapshot() plans.Findings {
	var fs plans.Findings
	for _, n := range c.restores() {
		for _, t := range n.Targets {
			r, ok := t.Params.(steps.RestoresFromSnapshot)
			if !ok || t.Host == nil || !path.IsAbs(r.RestoredFrom()) {
				continue // a relative path is reported by the step
			}
			h, snap := t.Host.Name, r.RestoredFrom()
			var sameLater, elsewhere *Node
			var elsewherePath string
			found := false
			for _, a := range c.Nodes {
				at := targetOn(a, h)
				if at == nil || a == n {
					continue
				}
				if p, ok := at.Params.(steps.PlacesSnapshot); ok {
					switch {
					case path.Clean(p.PlacedSnapshot()) == path.Clean(snap) && c.before(a, n):
						found = true
					case path.Clean(p.PlacedSnapshot()) == path.Clean(snap):
						sameLater = a
					case elsewhere == nil:
						elsewhere, elsewherePath = a, p.PlacedSnapshot()
					}
				}
				if v, ok := at.Params.(steps.ChecksSnapshot); ok && c.before(a, n) && path.Clean(v.CheckedSnapshot()) == path.Clean(snap) {
					found = true
				}
			}
			switch {
			case found:
			case sameLater != nil:
				fs.Add(n.Step.At("needs"), "restore on host %q reads %s, but step %q, which puts it there, is not ordered before the restore", h, snap, sameLater.ID()).ForStep(n.ID()).
					WithHint("list %s (or a step after it) in the restore's needs:", sameLater.ID())
			case elsewhere != nil:
				fs.Add(withAt(c.Plan.File, n.Step)("snapshot"), "restore on host %q reads %s, but step %q copies the snapshot to %s there", h, snap, elsewhere.ID(), elsewherePath).ForStep(n.ID()).
					WithHint("restore the copied file (snapshot: %s), or copy it to %s (to: %s)", elsewherePath, snap, snap)
			default:
				fs.Add(withAt(c.Plan.File, n.Step)("snapshot"), "restore on host %q reads %s, but no earlier step puts it there or checks that it is there", h, snap).ForStep(n.ID()).
					WithHint("add a snapshot-copy with to: %s to needs:; if the file is already on the host, add a snapshot-verify of it (file: %s) to needs:", snap, snap)
			}
		}
	}
	return fs
}

// ruleRestoredConfig: a restored member starts a new cluster, so the
// set-config before its start says clusterState: new (etcd ignores the
// setting after a restore today, which hides the mistake until the next
// bootstrap of that member).
func (c *Compiled) ruleRestoredConfig() plans.Findings {
	var fs plans.Findings
	restored := map[string][]*Node{} // host -> the restores there
	for _, r := range c.restores() {
		for _, t := range r.Targets {
			if t.Host != nil {
				restored[t.Host.Name] = append(restored[t.Host.Name], r)
			}
		}
	}
	if len(restored) == 0 {
		return fs
	}
	for _, n := range c.Nodes {
		for _, t := range n.Targets {
			b, ok := t.Params.(steps.BootstrapsMember)
			if !ok || t.Host == nil {
				continue
			}
			if state, _ := b.Bootstrap(); state != "existing" {
				continue
			}
			h := t.Host.Name
			for _, r := range restored[h] {
				later := false // a later change, once the restored member runs
				for _, s := range c.startsAfter(r, h) {
					later = later || c.before(s, n)
				}
				if !later {
					fs.Add(withAt(c.Plan.File, n.Step)("clusterState"), "set-config on %q says clusterState: existing, but step %q restores that member from a snapshot: it starts a new cluster", h, r.ID()).ForStep(n.ID()).
						WithHint("use clusterState: new for restored members (and leave initialCluster: out: every member)")
					break
				}
			}
		}
	}
	return fs
}

// ruleStoppedFirst: services a step needs stopped, on its host or others,
// are stopped by earlier steps (a static-pod restore: kube-apiserver on
// every control-plane host).
func (c *Compiled) ruleStoppedFirst() plans.Findings {
	var fs plans.Findings
	ctx := c.ruleCtx()
	for _, n := range c.Nodes {
		reported := map[string]bool{}
		for _, t := range n.Targets {
			ns, ok := t.Params.(steps.NeedsStoppedFirst)
			if !ok {
				continue
			}
			for _, req := range ns.NeedsStoppedFirst(ctx) {
				if reported[req.Unit] {
					continue
				}
				var missing []string
				for _, h := range req.Hosts {
					if !c.stoppedBefore(n, h, req.Unit) {
						missing = append(missing, h)
					}
				}
				if len(missing) > 0 {
					reported[req.Unit] = true
					fs.Add(n.Step.At("on"), "%s: %s is not stopped on %s by an earlier step", req.What, req.Unit, strings.Join(missing, ", ")).ForStep(n.ID()).
						WithHint("%s", req.Hint)
				}
			}
		}
	}
	return fs
}

// ruleWipeStopped: moving a running member's data dir away corrupts it.
func (c *Compiled) ruleWipeStopped() plans.Findings {
	var fs plans.Findings
	for _, n := range c.byType("wipe-dir") {
		for _, t := range n.Targets {
			h := t.Host.Name
			if c.wipesDataDirOn(n, h) && !c.stoppedBefore(n, h, c.Plan.Cluster.Layout.Unit) {
				fs.Add(n.Step.At("on"), "wipe-dir on host %q: etcd is not stopped there by an earlier step", h).ForStep(n.ID()).
					WithHint("add stop-service of %s on %s to needs: (directly or through another step)", c.Plan.Cluster.Layout.Unit, h)
			}
		}
	}
	return fs
}
