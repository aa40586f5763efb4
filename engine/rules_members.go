package engine

import (
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// Rules on membership changes: members added, removed, promoted, and the
// members that must start after a step.

// ruleMustStart: a member that a step adds or restores is started by a
// later step on its host.
func (c *Compiled) ruleMustStart() plans.Findings {
	var fs plans.Findings
	for _, n := range c.Nodes {
		var members, hosts []string
		why := ""
		for _, t := range n.Targets {
			ms, ok := t.Params.(steps.MustStart)
			if !ok || t.Host == nil || t.Member == nil {
				continue
			}
			if len(c.startsAfter(n, t.Host.Name)) == 0 {
				members = append(members, t.Member.Name)
				hosts = append(hosts, t.Host.Name)
				why = ms.MustStartAfter()
			}
		}
		if len(hosts) > 0 {
			fs.Add(n.Step.At("on"), "%s of %s: no later step starts etcd on %s", n.Step.Type, strings.Join(members, ", "), quoted(hosts)).ForStep(n.ID()).
				WithHint("%s: add start-service on %s with needs: [%s]", why, strings.Join(hosts, ", "), n.ID())
		}
	}
	return fs
}

func (c *Compiled) ruleMemberAdd() plans.Findings {
	var fs plans.Findings
	for _, n := range c.Nodes {
		for _, t := range n.Targets {
			if !addsMember(t) || t.Host == nil || t.Member == nil {
				continue
			}
			h := t.Host.Name
			starts := c.startsAfter(n, h)
			if len(starts) == 0 {
				continue // ruleMustStart
			}
			start := starts[0]
			if !c.anyBefore(start, func(a *Node) bool { return c.wipesDataDirOn(a, h) }) {
				fs.Add(start.Step.At("on"), "member %s joins with whatever is in %s on %q: no wipe-dir there before the start", t.Member.Name, c.Plan.Cluster.Layout.DataDir, h).ForStep(start.ID()).
					WithHint("a re-added member must start empty (\"member already bootstrapped\", etcd #2780); add wipe-dir to needs:")
			}
			existing := false
			for _, a := range c.Nodes {
				at := targetOn(a, h)
				if at == nil || !c.before(a, start) {
					continue
				}
				b, ok := at.Params.(steps.BootstrapsMember)
				if !ok {
					continue
				}
				if state, _ := b.Bootstrap(); state == "existing" {
					existing = true
				} else {
					fs.Add(a.Step.At("with"), "set-config on %q says clusterState: new, but %s joins a running cluster", h, t.Member.Name).ForStep(a.ID()).
						WithHint("use clusterState: existing for a member added with member-add")
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

// readded reports whether a step after n adds member m again.
func (c *Compiled) readded(n *Node, m *plans.Member) bool {
	for _, a := range c.Nodes {
		for _, t := range a.Targets {
			if addsMember(t) && t.Member != nil && t.Member.Name == m.Name && c.before(n, a) {
				return true
			}
		}
	}
	return false
}

// ruleMemberRemove: cluster.members is the cluster after recovery, so a
// member-remove that names one of its members, by name or by peer URL,
// removes a member the plan means to keep (a typo, or a healthy member),
// unless a later member-add adds that member again (a replaced host).
func (c *Compiled) ruleMemberRemove() plans.Findings {
	var fs plans.Findings
	for _, n := range c.Nodes {
		for _, t := range n.Targets {
			rm, ok := t.Params.(steps.RemovesMember)
			if !ok {
				continue
			}
			name, peerURL, _ := rm.RemovedMember()
			at := withAt(c.Plan.File, n.Step)
			hint := "cluster.members is the cluster after recovery: remove only a member that is gone (etcdctl member list shows its name, peer URL and id); " +
				"to replace %s, re-add it with a member-add that needs %s"
			var kept *plans.Member
			if m := memberNamed(c.Plan.Cluster, name); m != nil && !c.readded(n, m) {
				kept = m
				fs.Add(at("name"), "member-remove name %s: cluster.members keeps %s after recovery, and no later member-add re-adds it", name, m.Name).ForStep(n.ID()).
					WithHint(hint, m.Name, n.ID())
			}
			for _, m := range c.Plan.Cluster.Members {
				if m != nil && peerURL != "" && m.PeerURL == peerURL && m != kept && !c.readded(n, m) {
					fs.Add(at("peerURL"), "member-remove peerURL %s is %s's peer URL: cluster.members keeps %s after recovery, and no later member-add re-adds it", peerURL, m.Name, m.Name).ForStep(n.ID()).
						WithHint(hint, m.Name, n.ID())
				}
			}
		}
	}
	return fs
}

// rulePromote: a learner is promoted only once it runs. A promote not
// ordered after the start-service of that learner (the one after its
// member-add, when the plan adds it) can only fail after within:.
func (c *Compiled) rulePromote() plans.Findings {
	var fs plans.Findings
	for _, n := range c.Nodes {
		for _, t := range n.Targets {
			p, ok := t.Params.(steps.PromotesLearner)
			if !ok || !p.PromotesLearner() || t.Host == nil || t.Member == nil {
				continue
			}
			h, m := t.Host.Name, t.Member.Name
			var adds []*Node
			for _, a := range c.Nodes {
				if a != n && addsMember(targetOn(a, h)) {
					adds = append(adds, a)
				}
			}
			var starts []*Node
			for _, s := range c.Nodes {
				if ok, _ := c.startsEtcdOn(s, h); !ok {
					continue
				}
				after := len(adds) == 0
				for _, a := range adds {
					after = after || c.before(a, s)
				}
				if after {
					starts = append(starts, s)
				}
			}
			if len(adds) == 0 && len(starts) == 0 {
				continue // a learner added and started outside the plan
			}
			ordered := false
			var ids []string
			for _, s := range starts {
				ordered = ordered || c.before(s, n)
				ids = append(ids, s.ID())
			}
			if ordered {
				continue
			}
			if len(ids) == 0 {
				fs.Add(n.Step.At("needs"), "member-promote of %s on %q: no step starts that learner before it, so the promote can only fail after within:", m, h).ForStep(n.ID()).
					WithHint("start %s on %s with start-service after its member-add and list that step in needs:", c.Plan.Cluster.Layout.Unit, h)
				continue
			}
			fs.Add(n.Step.At("needs"), "member-promote of %s on %q is not ordered after %s, which starts that learner: the promote can only fail after within:", m, h, quoted(ids)).ForStep(n.ID()).
				WithHint("add %s to needs:", ids[0])
		}
	}
	return fs
}

// addsMember reports whether t (possibly nil) adds its host's member.
func addsMember(t *Target) bool {
	if t == nil {
		return false
	}
	ad, ok := t.Params.(steps.AddsMember)
	return ok && ad.AddsMember()
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
	promotes := map[string][]*Node{} // member -> the steps that promote it
	for _, n := range c.Nodes {
		for _, t := range n.Targets {
			if p, ok := t.Params.(steps.PromotesLearner); ok && p.PromotesLearner() && t.Member != nil {
				promotes[t.Member.Name] = append(promotes[t.Member.Name], n)
			}
		}
	}
	promoted := func(member string, before *Node) bool {
		for _, a := range promotes[member] {
			if c.before(a, before) {
				return true
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

// ruleCerts: certsChecked is a leftover (apply checks the certificates
// itself); cert-issue needs https URLs, and the member must not start
// before its new certificate is in place.
func (c *Compiled) ruleCerts() plans.Findings {
	var fs plans.Findings
	for _, n := range c.byType("member-update") {
		if p, ok := withKeyPos(c.Plan.File, n.Step, "certsChecked"); ok {
			fs.Warn(p, "certsChecked is no longer needed: apply checks the member's certificates on its host before the first change").ForStep(n.ID()).
				WithHint("remove certsChecked; when a certificate lacks the new address, add a cert-issue step (docs/plan-format.md, Certificates)")
		}
	}
	x := c.ix()
	for _, n := range c.byType("cert-issue") {
		for _, t := range n.Targets {
			if t.Member == nil || t.Host == nil {
				continue
			}
			m := t.Member
			if !strings.HasPrefix(m.PeerURL, "https://") && !strings.HasPrefix(m.ClientURL, "https://") {
				fs.Add(n.Step.At("on"), "cert-issue on member %s: its URLs %s and %s are http, so etcd uses no certificate there: nothing to issue", m.Name, m.ClientURL, m.PeerURL).ForStep(n.ID()).
					WithHint("remove the step, or give the member https URLs in cluster.members")
			}
			for _, st := range x.starts[t.Host.Name] {
				if !c.before(n, st) {
					fs.Warn(st.Step.Pos, "the member starts before its new certificate is in place: step %q starts %s without needing cert-issue step %q", st.ID(), m.Name, n.ID()).ForStep(st.ID()).
						WithHint("make %s need %s (needs: [%s]), so etcd starts with the new certificate", st.ID(), n.ID(), n.ID())
				}
			}
		}
	}
	return fs
}

// withKeyPos is the position of key's value under a step's with:, if the
// step sets it.
func withKeyPos(file string, s *plans.Step, key string) (plans.Pos, bool) {
	w := &s.With
	if w.Kind != yaml.MappingNode {
		return plans.Pos{}, false
	}
	for i := 0; i+1 < len(w.Content); i += 2 {
		if w.Content[i].Value == key {
			v := w.Content[i+1]
			return plans.Pos{File: file, Line: v.Line, Col: v.Column}, true
		}
	}
	return plans.Pos{}, false
}

// memberNamed is the member of cluster.members named name, or nil.
func memberNamed(cl *plans.Cluster, name string) *plans.Member {
	for _, m := range cl.Members {
		if m != nil && name != "" && m.Name == name {
			return m
		}
	}
	return nil
}
