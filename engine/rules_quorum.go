package engine

import (
	"fmt"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// Rules on quorum: members stopped at once, and the one survivor of a
// force-new-cluster.

// downSpan is a member stopped by a step until one of the steps after it
// starts etcd again on its host (none: until the end of the plan).
type downSpan struct {
	stop   *Node
	member *plans.Member
	starts []*Node
}

// endsBefore reports whether a's member is started again before b's stop
// can run: one of a's starts is a step b's stop needs.
func (c *Compiled) endsBefore(a, b *downSpan) bool {
	for _, s := range a.starts {
		if c.before(s, b.stop) {
			return true
		}
	}
	return false
}

// rebuilds reports whether the plan is a recovery from a lost quorum: a
// step restores or force-new-clusters, or check-quorum expects it lost.
func (c *Compiled) rebuilds() bool {
	for _, n := range c.Nodes {
		for _, t := range n.Targets {
			if r, ok := t.Params.(steps.RebuildsCluster); ok && r.RebuildsCluster() {
				return true
			}
		}
	}
	return false
}

// ruleQuorumStops: a plan that may have more members stopped at once than
// the cluster can lose is an outage, unless it is a recovery that expects
// quorum lost. Steps not ordered relative to each other may overlap: two
// members' stops overlap unless one's start is needed (transitively) by
// the other's stop. Pairwise overlapping stops can all be down together:
// the steps the stops need can run first, and none of them is a start.
func (c *Compiled) ruleQuorumStops() plans.Findings {
	var fs plans.Findings
	members := c.Plan.Cluster.Members
	n := len(members)
	quorum := n/2 + 1
	// With one or two members every stop loses quorum: a restart there
	// cannot be done one member at a time (the even count is a warning).
	if n < 3 || c.rebuilds() {
		return fs
	}
	var spans []*downSpan
	for _, node := range c.Nodes {
		for _, t := range node.Targets {
			if t.Host == nil || t.Member == nil || !c.stopsEtcdOn(node, t.Host.Name) {
				continue
			}
			spans = append(spans, &downSpan{stop: node, member: t.Member, starts: c.startsAfter(node, t.Host.Name)})
		}
	}
	// The search is bounded: plans have a handful of stops, and a plan
	// built to make it slow gets an answer from the part searched.
	budget := 200000
	overlap := func(a, b *downSpan) bool {
		budget--
		return a.member != b.member && !c.endsBefore(a, b) && !c.endsBefore(b, a)
	}
	// Find a set of n-quorum+1 spans of distinct members that pairwise
	// overlap.
	need := n - quorum + 1
	var best []*downSpan
	var grow func(set []*downSpan, from int) bool
	grow = func(set []*downSpan, from int) bool {
		if len(set) >= need {
			best = append([]*downSpan(nil), set...)
			return true
		}
		for i := from; i < len(spans) && budget > 0; i++ {
			ok := true
			for _, s := range set {
				if !overlap(s, spans[i]) {
					ok = false
					break
				}
			}
			if ok && grow(append(set, spans[i]), i+1) {
				return true
			}
		}
		return false
	}
	if !grow(nil, 0) {
		return fs
	}
	// Name every member that can be down with those, not only the first
	// ones found.
	for _, x := range spans {
		if budget <= 0 {
			break
		}
		ok := true
		for _, s := range best {
			if s == x || !overlap(s, x) {
				ok = false
				break
			}
		}
		if ok {
			best = append(best, x)
		}
	}
	down := map[string]bool{}
	last := best[0].stop
	order := map[*Node]int{}
	for i, x := range c.Nodes {
		order[x] = i
	}
	seen := map[*Node]bool{}
	for _, s := range best {
		down[s.member.Name] = true
		seen[s.stop] = true
		if order[s.stop] > order[last] {
			last = s.stop
		}
	}
	var stopIDs []string
	for _, x := range c.Nodes {
		if seen[x] {
			stopIDs = append(stopIDs, x.ID())
		}
	}
	var names []string
	for _, m := range members {
		if m != nil && down[m.Name] {
			names = append(names, m.Name)
		}
	}
	how := fmt.Sprintf("%s stops them together", last.ID())
	if len(stopIDs) > 1 {
		how = fmt.Sprintf("%s may have their members down at the same time (none of them waits for the start after another)", strings.Join(stopIDs, ", "))
	}
	fs.Add(last.Step.At("on"), "stops %s of %d voting members at once (quorum needs %d): %s, and the cluster loses quorum", strings.Join(names, ", "), n, quorum, how).ForStep(last.ID()).
		WithHint("stop one member at a time: make the next stop-service need the start-service (and a wait-healthy) of the previous member; " +
			"a plan for a cluster that has already lost quorum says so with check-quorum expect: lost")
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
		for _, t := range n.Targets {
			for _, m := range c.Plan.Cluster.Members {
				if m.Host == t.Host.Name {
					continue
				}
				if !c.stoppedBefore(n, m.Host, c.Plan.Cluster.Layout.Unit) {
					fs.Add(n.Step.At("on"), "force-new-cluster on %q: member %s on host %q is not stopped by an earlier step", t.Host.Name, m.Name, m.Host).ForStep(n.ID()).
						WithHint("fence every other member first: stop-service with disable: true (unreachable: skip for dead hosts) in needs:")
				}
			}
		}
	}
	return fs
}
