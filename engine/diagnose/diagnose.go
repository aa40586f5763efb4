package diagnose

import (
	"fmt"
	"sort"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
)

// Routes of the quorum-loss scenario.
const (
	RouteForceNewCluster = "force-new-cluster"
	RouteSnapshot        = "snapshot"
)

// Diagnose reads f and says what is wrong. inventory is the inventory path
// as the user gave it, used in Next.
//
// The inventory (f.Cluster) is the cluster as it must be after recovery;
// the member lists of the members that answer are the cluster as it is.
// A scenario is recommended only on what was asked: a host that could not
// be asked may be alive, so no quorum verdict and no force-new-cluster rest
// on it.
func Diagnose(f *facts.Facts, inventory string) *Diagnosis {
	d := &Diagnosis{Kind: Kind, Version: Version, Findings: []Finding{}}
	if f == nil || len(f.Cluster.Members) == 0 {
		d.Situation = Unknown
		d.Summary = "nothing to diagnose: the facts name no member"
		d.Findings = append(d.Findings, Finding{
			Code: "no-members", Severity: Error, Summary: d.Summary,
			Evidence: []string{"the facts' cluster.members is empty"},
			Hint:     "collect facts with an inventory whose cluster.members lists every member",
		})
		return d
	}
	b := &builder{f: f, d: d, moved: map[string]bool{}}
	b.views()
	b.decide()
	b.common()
	b.finish(inventory)
	return d
}

// NextCommand is the `etcd-rescue new` command line for r: with
// --from-facts, or --facts FILE when factsFile is given. "" when r is nil.
func NextCommand(r *Recommendation, inventory, factsFile string) string {
	if r == nil {
		return ""
	}
	args := []string{"etcd-rescue", "new", r.Scenario, "--inventory", inventory}
	if factsFile != "" {
		args = append(args, "--facts", factsFile)
	} else {
		args = append(args, "--from-facts")
	}
	if r.Scenario == string(QuorumLoss) && r.Route != "" && r.Route != RouteForceNewCluster {
		args = append(args, "--route", r.Route)
	}
	args = append(args, "-o", r.Scenario+".yaml")
	return shellquote.Join(args...)
}

// builder holds what Diagnose works out along the way.
type builder struct {
	f      *facts.Facts
	d      *Diagnosis
	vs     []*view
	list   []*listEntry // the cluster's member list, merged
	extras []*listEntry // listed, not in the inventory
	// main: the findings of the situation; other: findings of any situation
	main, other []Finding
	// broken: something makes the cluster not healthy
	broken bool
	// unknown: something that matters could not be asked
	unknown bool
	moved   map[string]bool // members recommended for ip-change
	split   bool
}

// problem adds a finding that makes the cluster not healthy.
func (b *builder) problem(f Finding) {
	b.broken = true
	b.other = append(b.other, f)
}

// note adds a finding that does not change the situation by itself.
func (b *builder) note(f Finding) { b.other = append(b.other, f) }

func (b *builder) views() {
	for _, im := range b.f.Cluster.Members {
		v := &view{inv: im}
		for _, h := range b.f.Hosts {
			if h != nil && h.Name == im.Host {
				v.host = h
			}
		}
		for _, m := range b.f.Members {
			if m != nil && m.Name == im.Name {
				v.mem = m
			}
		}
		b.vs = append(b.vs, v)
	}
	b.list = clusterList(b.vs)
	b.extras = match(b.vs, b.list)
}

func (b *builder) listKnown() bool { return len(b.list) > 0 }

// quorum is the count over the voting members.
type quorum struct {
	n, need      int
	voters       []*view
	answered     []*view
	withData     []*view
	couldNotAsk  []*view      // voters whose data is unknown
	down         []*view      // voters asked whose client API is down: not in any quorum
	zombieVoters []*listEntry // voters not in the inventory: never asked
	leaders      map[string]bool
}

func (b *builder) quorum() quorum {
	q := quorum{leaders: map[string]bool{}}
	for _, v := range b.vs {
		if !v.voter(b.listKnown()) {
			continue
		}
		q.voters = append(q.voters, v)
		if v.answered() {
			q.answered = append(q.answered, v)
			if v.mem.Status.HasLeader() {
				q.leaders[v.mem.Status.Leader] = true
			}
		}
		if v.mem != nil && v.mem.API == facts.APIDown {
			q.down = append(q.down, v)
		}
		switch v.data() {
		case dataYes:
			q.withData = append(q.withData, v)
		case dataUnknown:
			q.couldNotAsk = append(q.couldNotAsk, v)
		}
	}
	for _, e := range b.extras {
		if !e.m.IsLearner {
			q.zombieVoters = append(q.zombieVoters, e)
		}
	}
	q.n = len(q.voters) + len(q.zombieVoters)
	q.need = q.n/2 + 1
	return q
}

func (q quorum) unknownNames() []string {
	out := names(q.couldNotAsk)
	for _, e := range q.zombieVoters {
		out = append(out, e.m.Name+" (not in the inventory)")
	}
	return out
}

// decide finds the situation and its main findings.
func (b *builder) decide() {
	if b.splitBrain() {
		b.split = true
		b.d.Situation = Degraded
		return
	}
	q := b.quorum()
	switch {
	// a leader claim counts only while a majority may be up: a leader
	// whose followers just went down still names itself for an election
	// timeout (etcd's check-quorum), and a follower its old leader
	case len(q.leaders) > 0 && q.n-len(q.down) >= q.need:
		b.quorumHeld(q)
	case len(q.withData) >= q.need:
		b.noLeader(q)
	case len(q.withData)+len(q.couldNotAsk)+len(q.zombieVoters) >= q.need:
		b.quorumUnknown(q)
	case len(q.withData) == 0 && len(q.couldNotAsk) == 0:
		b.totalLoss(q)
	case len(q.withData) == 0:
		b.quorumUnknown(q)
	default:
		b.quorumLoss(q)
	}
}

// memberEvidence is one line per voter: its status, or what is known.
func (b *builder) memberEvidence(vs []*view) []string {
	var ev []string
	for _, v := range vs {
		if v.answered() {
			ev = append(ev, statusLine(v, b.list))
			continue
		}
		ev = append(ev, stateLines(v)...)
	}
	return ev
}

func (b *builder) splitBrain() bool {
	ids := map[string][]*view{}
	var order []string
	for _, v := range b.vs {
		if !v.answered() || v.mem.Status.ClusterID == "" {
			continue
		}
		id := v.mem.Status.ClusterID
		if ids[id] == nil {
			order = append(order, id)
		}
		ids[id] = append(ids[id], v)
	}
	if len(order) < 2 {
		return false
	}
	var ev, parts []string
	var all []*view
	for _, id := range order {
		parts = append(parts, fmt.Sprintf("%s in cluster %s", and(names(ids[id])), id))
		for _, v := range ids[id] {
			all = append(all, v)
			ev = append(ev, fmt.Sprintf("%s: cluster id %s, member id %s, leader %s (status)", v.label(), id, v.mem.Status.MemberID, leaderName(v.mem.Status.Leader, b.list)))
		}
	}
	for _, e := range b.list {
		ev = append(ev, listedLine(e))
	}
	b.main = append(b.main, Finding{
		Code: "split-brain", Severity: Error,
		Summary:  fmt.Sprintf("split brain: the members answer for %d different clusters: %s", len(order), strings.Join(parts, "; ")),
		Evidence: ev, Members: names(all), Hosts: hostsOf(all),
		Hint: "no plan is recommended: decide which cluster holds the data to keep (compare revisions and keys), " +
			"stop and fence the other members, then run diagnose again; " +
			"a member started with --force-new-cluster or an old data dir beside a forced cluster causes this",
	})
	b.broken = true
	b.d.Summary = "split brain: members answer for different cluster ids; no plan is recommended"
	return true
}

// quorumHeld: a leader is known. Look at each member for a scenario.
func (b *builder) quorumHeld(q quorum) {
	var lost, moves, blind []*view
	for _, v := range b.vs {
		if v.answered() {
			if v.peerMoved() {
				moves = append(moves, v)
			}
			continue
		}
		if v.listed == nil {
			// not in the cluster's list: a common finding says so
			if !v.asked() {
				blind = append(blind, v)
			}
			continue
		}
		switch {
		case !v.asked():
			if sshDenied(v.host) {
				blind = append(blind, v)
			} else {
				lost = append(lost, v)
			}
		case v.data() == dataNo:
			lost = append(lost, v)
		case v.data() == dataUnknown:
			blind = append(blind, v)
		case v.peerMoved():
			moves = append(moves, v)
		default:
			b.notRunning(v)
		}
	}
	b.main = append(b.main, Finding{
		Code: "quorum-held", Severity: Info,
		Summary: fmt.Sprintf("quorum held: %d of %d voting members answer (%d needed), leader %s",
			len(q.answered), q.n, q.need, b.leaderNames(q)),
		Evidence: b.memberEvidence(q.answered), Members: names(q.answered), Hosts: hostsOf(q.answered),
	})
	for _, v := range blind {
		b.couldNotAsk(v)
	}
	switch {
	case len(lost) > 0:
		b.lostHost(q, lost, moves)
	case len(moves) > 0:
		b.ipChange(q, moves)
	}
}

// sshDenied: the host answered the network but would not let us in, or was
// not trusted: it is there, we are not.
func sshDenied(h *facts.Host) bool {
	if h == nil {
		return false
	}
	switch h.Reach {
	case facts.ReachHostKeyUnknown, facts.ReachHostKeyChanged, facts.ReachAuthFailed, facts.ReachSudoFailed:
		return true
	}
	return false
}

func (b *builder) leaderNames(q quorum) string {
	var ls []string
	for l := range q.leaders {
		ls = append(ls, leaderName(l, b.list))
	}
	sort.Strings(ls)
	return strings.Join(ls, ", ")
}

// couldNotAsk: a member whose state matters could not be asked.
func (b *builder) couldNotAsk(v *view) {
	b.unknown = true
	b.broken = true
	code, hint := "host-unreachable", fmt.Sprintf("fix SSH to %s, then run diagnose again", v.inv.Host)
	switch {
	case sshDenied(v.host):
		code = "ssh-denied"
		hint = sshHint(v.host)
	case v.asked():
		code = "data-dir-unknown"
		hint = fmt.Sprintf("the data dir of %s could not be read: see the host's notes, then run diagnose again", v.inv.Host)
	}
	b.other = append(b.other, Finding{
		Code: code, Severity: Error,
		Summary:  fmt.Sprintf("%s could not be asked: its state is unknown", v.label()),
		Evidence: stateLines(v), Members: []string{v.inv.Name}, Hosts: []string{v.inv.Host},
		Hint: hint,
	})
}

func sshHint(h *facts.Host) string {
	if h == nil {
		return "collect the facts again with this inventory"
	}
	switch h.Reach {
	case facts.ReachHostKeyUnknown:
		return fmt.Sprintf("%s's host key is not in known_hosts: verify it out of band and add it, then run diagnose again", h.Name)
	case facts.ReachHostKeyChanged:
		return fmt.Sprintf("%s's host key changed: a reinstalled or replaced host, or someone in between; verify the new key out of band before trusting it, then run diagnose again", h.Name)
	case facts.ReachAuthFailed:
		return fmt.Sprintf("%s refused our SSH key: check ssh.user and ssh.identity, then run diagnose again", h.Name)
	case facts.ReachSudoFailed:
		return fmt.Sprintf("sudo -n failed on %s: allow passwordless sudo for ssh.user, then run diagnose again", h.Name)
	}
	return fmt.Sprintf("fix SSH to %s, then run diagnose again", h.Name)
}

// notRunning: a member with data whose etcd does not answer.
func (b *builder) notRunning(v *view) {
	if v.mem != nil && v.mem.API == facts.APICouldNotAsk {
		b.unknown = true
		b.problem(Finding{
			Code: "api-could-not-ask", Severity: Error,
			Summary:  fmt.Sprintf("%s has data but its client API could not be asked", v.label()),
			Evidence: stateLines(v), Members: []string{v.inv.Name}, Hosts: []string{v.inv.Host},
			Hint: "check the client URL, TLS files (cluster.tls) and clientAccess in the inventory, then run diagnose again",
		})
		return
	}
	if v.host.Service != nil && v.host.Service.Active == "failed" {
		return // the service-failed finding says it
	}
	b.problem(Finding{
		Code: "etcd-not-running", Severity: Error,
		Summary:  fmt.Sprintf("%s has data but etcd is not running", v.label()),
		Evidence: stateLines(v), Members: []string{v.inv.Name}, Hosts: []string{v.inv.Host},
		Hint: fmt.Sprintf("start it: systemctl start %s on %s (it rejoins with its data); if it fails, journalctl -u %s says why", b.unit(), v.inv.Host, b.unit()),
	})
}

func (b *builder) unit() string {
	if b.f.Cluster.Unit != "" {
		return b.f.Cluster.Unit
	}
	return "etcd"
}

func (b *builder) ipChange(q quorum, moves []*view) {
	r := &Recommendation{Scenario: string(IPChange)}
	for _, v := range moves {
		b.moved[v.inv.Name] = true
		oldURL, newURL := v.oldPeerURL(), v.inv.PeerURL
		newHost := hostOf(newURL)
		ev := []string{memberListLine(v)}
		if v.asked() {
			ev = append(ev, fmt.Sprintf("%s answers over SSH at %s; its addresses now: %s (ssh)", v.inv.Host, v.host.Address, strings.Join(v.host.Addresses, ", ")))
			if len(v.host.Addresses) > 0 && !contains(v.host.Addresses, newHost) {
				ev = append(ev, fmt.Sprintf("%s does not list %s among its addresses: check the inventory's peer URL for %s", v.inv.Host, newHost, v.inv.Name))
			}
		}
		if v.answered() {
			ev = append(ev, statusLine(v, b.list))
		} else {
			ev = append(ev, stateLines(v)...)
		}
		if l := settingsDiff(v, b.f.Cluster); len(l) > 0 {
			ev = append(ev, l...)
		}
		what := "moved"
		if hostOf(oldURL) == newHost {
			what = "a new peer URL (same address)"
		}
		b.main = append(b.main, Finding{
			Code: "member-moved", Severity: Error,
			Summary: fmt.Sprintf("%s's host %s has %s: the cluster lists %s at %s, the inventory says %s; its data is there",
				v.inv.Name, v.inv.Host, what, v.inv.Name, oldURL, newURL),
			Evidence: ev, Members: []string{v.inv.Name}, Hosts: []string{v.inv.Host},
			Hint: fmt.Sprintf("the ip-change plan updates %s's peer URL through the members that hold quorum, rewrites its settings and restarts it with its data", v.inv.Name),
		})
		r.Members = append(r.Members, MemberChoice{
			Name: v.inv.Name, ID: v.id(), Host: v.inv.Host, OldPeerURL: oldURL, NewPeerURL: newURL,
			Reason: fmt.Sprintf("listed at %s, the inventory says %s; %s keeps its data", oldURL, newURL, v.inv.Host),
		})
		r.Notes = append(r.Notes,
			fmt.Sprintf("%s (id %s) moves from %s to %s", v.inv.Name, v.id(), oldURL, newURL),
			fmt.Sprintf("%s's id and old peer URL %s come from %s's member list", v.inv.Name, oldURL, v.listedBy))
		if v.asked() && v.host.DataDir != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("%s keeps its data: %s has member/ in %s (not a lost host)", v.inv.Name, v.inv.Host, v.host.DataDir.Path))
		}
	}
	r.Notes = append(r.Notes, b.heldNote(q))
	b.d.Situation = IPChange
	b.d.Recommend = r
	b.broken = true
	b.d.Summary = fmt.Sprintf("%s moved (listed at %s, inventory %s); quorum held by %s",
		and(names(moves)), moves[0].oldPeerURL(), moves[0].inv.PeerURL, and(names(q.answered)))
	if len(moves) > 1 {
		b.d.Summary = fmt.Sprintf("%s moved to the inventory's addresses; quorum held by %s", and(names(moves)), and(names(q.answered)))
	}
}

func (b *builder) heldNote(q quorum) string {
	return fmt.Sprintf("quorum is held by %s (%d of %d voting members, leader %s): the change goes through them", and(names(q.answered)), len(q.answered), q.n, b.leaderNames(q))
}

func (b *builder) lostHost(q quorum, lost, moves []*view) {
	r := &Recommendation{Scenario: string(LostHost)}
	for _, v := range lost {
		oldURL := v.oldPeerURL()
		ev := []string{memberListLine(v)}
		ev = append(ev, stateLines(v)...)
		f := Finding{Code: "member-lost", Severity: Error, Evidence: ev, Members: []string{v.inv.Name}, Hosts: []string{v.inv.Host}}
		var reason string
		if !v.asked() {
			f.Summary = fmt.Sprintf("%s's host %s could not be asked (%s): the host may be alive, check it is really gone; the cluster still lists %s at %s",
				v.inv.Name, v.inv.Host, ReachOf(v), v.inv.Name, oldURL)
			f.Hint = fmt.Sprintf("could not ask is not gone: check %s from its console or cloud panel; if it is only unreachable, fix SSH and run diagnose again; "+
				"if it is gone, the lost-host plan removes %s and adds it back on the inventory's host", v.inv.Host, v.inv.Name)
			reason = fmt.Sprintf("%s could not be asked (%s); assumed gone: check it", v.inv.Host, ReachOf(v))
		} else {
			f.Summary = fmt.Sprintf("%s's host %s answers but has no etcd data (a blank or replacement host); the cluster still lists %s at %s",
				v.inv.Name, v.inv.Host, v.inv.Name, oldURL)
			f.Hint = fmt.Sprintf("the lost-host plan removes the old %s through the members that hold quorum and adds it back, empty, on %s", v.inv.Name, v.inv.Host)
			reason = fmt.Sprintf("%s has no member/ in its data dir", v.inv.Host)
		}
		b.main = append(b.main, f)
		r.Members = append(r.Members, MemberChoice{
			Name: v.inv.Name, ID: v.id(), Host: v.inv.Host, OldPeerURL: oldURL, NewPeerURL: v.inv.PeerURL, Reason: reason,
		})
		r.Notes = append(r.Notes,
			fmt.Sprintf("remove %s: id %s, old peer URL %s, both from %s's member list", v.inv.Name, v.id(), oldURL, v.listedBy),
			fmt.Sprintf("add %s back at %s on %s: %s", v.inv.Name, v.inv.PeerURL, v.inv.Host, reason))
	}
	r.Notes = append(r.Notes, b.heldNote(q))
	for _, v := range moves {
		r.Notes = append(r.Notes, fmt.Sprintf("%s moved too (ip-change): recover the lost member first, then run diagnose again", v.inv.Name))
	}
	b.d.Situation = LostHost
	b.d.Recommend = r
	b.broken = true
	var why []string
	for _, v := range lost {
		if v.asked() {
			why = append(why, fmt.Sprintf("%s is blank", v.inv.Host))
		} else {
			why = append(why, fmt.Sprintf("%s could not be asked: %s", v.inv.Host, ReachOf(v)))
		}
	}
	b.d.Summary = fmt.Sprintf("%s lost (%s); quorum held by %s", and(names(lost)), strings.Join(why, "; "), and(names(q.answered)))
}

func ReachOf(v *view) string {
	if v.host == nil {
		return "no facts"
	}
	return string(v.host.Reach)
}

// noLeader: no member knows a leader but a majority still has data.
func (b *builder) noLeader(q quorum) {
	var stopped []*view
	for _, v := range q.withData {
		if !v.answered() {
			stopped = append(stopped, v)
		}
	}
	hint := "the members run and have data but elect no leader: check the peer network between them (peer URLs, port 2380, TLS) and journalctl -u " + b.unit()
	if len(stopped) > 0 {
		hint = fmt.Sprintf("%s have data but etcd does not answer: start etcd there (systemctl start %s); with %d of %d members running, quorum returns without a recovery plan",
			and(names(stopped)), b.unit(), q.need, q.n)
	}
	b.main = append(b.main, Finding{
		Code: "no-leader", Severity: Error,
		Summary: fmt.Sprintf("no member knows a leader, yet %d of %d voting members have data (%d needed): no data is lost",
			len(q.withData), q.n, q.need),
		Evidence: b.memberEvidence(q.voters), Members: names(q.voters), Hosts: hostsOf(q.voters), Hint: hint,
	})
	for _, v := range stopped {
		b.notRunning(v)
	}
	b.broken = true
	b.d.Summary = fmt.Sprintf("no leader, but %d of %d members have data: bring them up, no recovery plan needed", len(q.withData), q.n)
}

// quorumUnknown: the verdict rests on members that could not be asked.
func (b *builder) quorumUnknown(q quorum) {
	unk := q.unknownNames()
	b.main = append(b.main, Finding{
		Code: "quorum-unknown", Severity: Error,
		Summary: fmt.Sprintf("cannot tell whether quorum is lost: %d of %d voting members answer, no leader is known, and %s could not be asked (%d needed)",
			len(q.answered), q.n, and(unk), q.need),
		Evidence: b.memberEvidence(q.voters), Members: unk, Hosts: hostsOf(q.couldNotAsk),
		Hint: "could not ask is not gone: fix SSH to those hosts (see each error) and run diagnose again; " +
			"no force-new-cluster is recommended while they may be alive",
	})
	b.unknown = true
	b.broken = true
	b.d.Summary = fmt.Sprintf("unknown: the quorum verdict rests on %s, which could not be asked", and(unk))
}

func (b *builder) totalLoss(q quorum) {
	var ev []string
	for _, v := range b.vs {
		ev = append(ev, apiLine(v), dataLine(v))
	}
	r := &Recommendation{Scenario: "restore-all-from-snapshot"}
	if len(b.vs) == 1 {
		r.Scenario = "single-node-restore"
	}
	for _, v := range b.vs {
		r.Members = append(r.Members, MemberChoice{Name: v.inv.Name, ID: v.id(), Host: v.inv.Host, NewPeerURL: v.inv.PeerURL, Reason: "no data: restored from the snapshot"})
	}
	r.Notes = append(r.Notes,
		fmt.Sprintf("no member has data: %d of %d data dirs asked, none has member/, and no member answers", len(b.vs), len(b.vs)),
		"the only way back is a snapshot: the plan restores every member from it, as a new cluster (new cluster id) with the inventory's token",
		"use the newest snapshot you trust; keys written after it are lost")
	b.main = append(b.main, Finding{
		Code: "total-loss", Severity: Error,
		Summary:  fmt.Sprintf("no member has data left: every data dir was asked (%d) and none has member/; no member answers", len(b.vs)),
		Evidence: ev, Members: names(b.vs), Hosts: hostsOf(b.vs),
		Hint: "restore from a snapshot: the plan asks for its path; check its integrity (sha256) first",
	})
	b.d.Situation = TotalLoss
	b.d.Recommend = r
	b.broken = true
	b.d.Summary = "total loss: no member has data; restore every member from a snapshot"
}

func (b *builder) quorumLoss(q quorum) {
	ranks := b.rank(q.withData)
	if len(ranks) > 1 {
		var unknown []string
		for _, x := range ranks {
			if x.RaftIndex == 0 && x.Revision == 0 {
				unknown = append(unknown, x.Name)
			}
		}
		if len(unknown) > 0 {
			b.survivorUnknown(q, ranks, unknown)
			return
		}
	}
	surv := ranks[0]
	r := &Recommendation{Scenario: string(QuorumLoss), Route: RouteForceNewCluster, Survivor: surv.Name, Ranking: ranks}
	var survView *view
	for _, v := range b.vs {
		if v.inv.Name == surv.Name {
			survView = v
		}
	}
	r.Notes = append(r.Notes, fmt.Sprintf("survivor %s: the most advanced member with data: %s", surv.Name, rankFacts(surv)))
	for _, x := range ranks[1:] {
		r.Notes = append(r.Notes, fmt.Sprintf("%s is %s: %s", x.Name, behindText(x, surv), rankFacts(x)))
	}
	if surv.RaftIndex == 0 && surv.Revision == 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%s's revision is unknown (etcd not running, the data dir's revision not read): the choice is by inventory order; read it with etcdutl snapshot status before applying", surv.Name))
	}
	for _, v := range b.vs {
		if v != survView {
			r.Fence = append(r.Fence, v.inv.Name)
		}
		switch v.data() {
		case dataNo:
			r.Members = append(r.Members, MemberChoice{Name: v.inv.Name, ID: v.id(), Host: v.inv.Host, OldPeerURL: v.oldPeerURL(), NewPeerURL: v.inv.PeerURL,
				Reason: fmt.Sprintf("no data on %s: re-added empty", v.inv.Host)})
		case dataUnknown:
			r.Members = append(r.Members, MemberChoice{Name: v.inv.Name, ID: v.id(), Host: v.inv.Host, OldPeerURL: v.oldPeerURL(), NewPeerURL: v.inv.PeerURL,
				Reason: fmt.Sprintf("%s could not be asked: fenced if it answers, re-added empty", v.inv.Host)})
		}
	}
	r.Notes = append(r.Notes, fmt.Sprintf("fence %s: every member but %s, the ones still running included: a member left running beside the forced cluster would split it", and(r.Fence), surv.Name))
	if len(ranks) > 1 {
		for _, x := range ranks[1:] {
			r.Notes = append(r.Notes, fmt.Sprintf("%s still has data, %s: fenced, its data dir moved aside, re-added empty", x.Name, behindText(x, surv)))
		}
	}
	for _, v := range q.couldNotAsk {
		r.Notes = append(r.Notes, fmt.Sprintf("%s could not be asked (%s): if its data dir survived it may be more advanced than %s; check it before applying", v.inv.Name, ReachOf(v), surv.Name))
	}
	r.Notes = append(r.Notes,
		fmt.Sprintf("route force-new-cluster: %s restarts alone with --force-new-cluster, keeping its data and cluster id, then the others are re-added one at a time", surv.Name),
		fmt.Sprintf("other route (--route snapshot): save a snapshot from %s and restore every member from it (a new cluster id); choose it when %s's data dir is suspect", surv.Name, surv.Name))

	ev := b.memberEvidence(q.voters)
	for _, e := range q.zombieVoters {
		ev = append(ev, listedLine(e)+": not in the inventory, never asked")
	}
	b.main = append(b.main, Finding{
		Code: "quorum-lost", Severity: Error,
		Summary: fmt.Sprintf("quorum lost: %d of %d voting members have data (%d needed) and no member knows a leader",
			len(q.withData), q.n, q.need),
		Evidence: ev, Members: names(q.voters), Hosts: hostsOf(q.voters),
		Hint: fmt.Sprintf("the quorum-loss plan fences every member but %s, forces a new cluster from it and re-adds the others", surv.Name),
	})
	var rev []string
	for _, x := range ranks {
		rev = append(rev, fmt.Sprintf("%s: %s, %s", x.Name, behindText(x, surv), rankFacts(x)))
	}
	b.main = append(b.main, Finding{
		Code: "survivor", Severity: Info,
		Summary:  fmt.Sprintf("most advanced member with data: %s, %s", surv.Name, rankFacts(surv)),
		Evidence: rev, Members: []string{surv.Name}, Hosts: []string{survView.inv.Host},
	})
	b.d.Situation = QuorumLoss
	b.d.Recommend = r
	b.broken = true
	b.d.Summary = fmt.Sprintf("quorum lost: %d of %d members have data (%d needed); survivor %s", len(q.withData), q.n, q.need, surv.Name)
}

// survivorUnknown: quorum is lost but the members with data cannot be
// compared: choosing a survivor blind could lose the newest writes.
func (b *builder) survivorUnknown(q quorum, ranks []Rank, unknown []string) {
	var ev []string
	for _, x := range ranks {
		ev = append(ev, fmt.Sprintf("%s: %s", x.Name, rankFacts(x)))
	}
	b.main = append(b.main, Finding{
		Code: "quorum-lost", Severity: Error,
		Summary: fmt.Sprintf("quorum lost: %d of %d voting members have data (%d needed) and no member knows a leader",
			len(q.withData), q.n, q.need),
		Evidence: b.memberEvidence(q.voters), Members: names(q.voters), Hosts: hostsOf(q.voters),
	}, Finding{
		Code: "survivor-unknown", Severity: Error,
		Summary:  fmt.Sprintf("the survivor cannot be chosen: %s %s data but no raft index or revision could be read", and(unknown), hasHave(len(unknown))),
		Evidence: ev, Members: unknown,
		Hint: "read each data dir's revision (etcd stopped: etcdutl snapshot status DATADIR/member/snap/db; running: etcdctl endpoint status), " +
			"then run diagnose again; the survivor must be the most advanced member",
	})
	b.unknown = true
	b.broken = true
	b.d.Situation = Unknown
	b.d.Summary = fmt.Sprintf("quorum lost, but %s cannot be compared with the other members that have data: no survivor chosen", and(unknown))
}

func hasHave(n int) string {
	if n == 1 {
		return "has"
	}
	return "have"
}

// rank orders the members with data, most advanced first: raft index when
// both are known (status), else revision (offline, read from the data dir),
// then a running member before a stopped one, then inventory order.
func (b *builder) rank(vs []*view) []Rank {
	var rs []Rank
	for _, v := range vs {
		if v.answered() {
			s := v.mem.Status
			rs = append(rs, Rank{Name: v.inv.Name, RaftIndex: s.RaftIndex, Revision: s.Revision, Source: "status"})
			continue
		}
		r := Rank{Name: v.inv.Name, Source: "offline"}
		if v.host != nil && v.host.DataDir != nil {
			r.Revision = v.host.DataDir.OfflineRevision
		}
		rs = append(rs, r)
	}
	sort.SliceStable(rs, func(i, j int) bool { return ahead(rs[i], rs[j]) })
	for i := range rs {
		if i == 0 {
			continue
		}
		rs[i].Behind, rs[i].BehindIn = behind(rs[i], rs[0])
	}
	return rs
}

func ahead(a, b Rank) bool {
	if a.RaftIndex > 0 && b.RaftIndex > 0 && a.RaftIndex != b.RaftIndex {
		return a.RaftIndex > b.RaftIndex
	}
	if a.Revision != b.Revision {
		return a.Revision > b.Revision
	}
	return a.Source == "status" && b.Source != "status"
}

func behind(x, surv Rank) (uint64, string) {
	if x.RaftIndex > 0 && surv.RaftIndex > 0 {
		if surv.RaftIndex > x.RaftIndex {
			return surv.RaftIndex - x.RaftIndex, "raft entries"
		}
		return 0, "raft entries"
	}
	if x.Revision > 0 && surv.Revision > 0 {
		if surv.Revision > x.Revision {
			return uint64(surv.Revision - x.Revision), "revisions"
		}
		return 0, "revisions"
	}
	return 0, ""
}

func rankFacts(r Rank) string {
	if r.Source == "status" {
		return fmt.Sprintf("raft index %d, revision %d (status)", r.RaftIndex, r.Revision)
	}
	if r.Revision > 0 {
		return fmt.Sprintf("revision %d read from its data dir, etcd not running (offline)", r.Revision)
	}
	return "revision unknown, etcd not running (offline)"
}

func behindText(x, surv Rank) string {
	if x.Name == surv.Name {
		return "the survivor"
	}
	switch {
	case x.BehindIn == "":
		return fmt.Sprintf("not comparable with %s", surv.Name)
	case x.Behind == 0:
		return fmt.Sprintf("level with %s", surv.Name)
	}
	return fmt.Sprintf("%d %s behind %s", x.Behind, x.BehindIn, surv.Name)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// finish sets the situation when no scenario did, orders the findings and
// writes Next.
func (b *builder) finish(inventory string) {
	d := b.d
	switch {
	case d.Situation != "":
	case b.unknown:
		d.Situation = Unknown
		d.Summary = b.firstSummary(Error)
	case b.broken:
		d.Situation = Degraded
		d.Summary = b.firstSummary(Error)
	default:
		d.Situation = Healthy
		d.Healthy = true
		d.Summary = fmt.Sprintf("%d of %d members answer, one leader, the member list matches the inventory", len(b.vs), len(b.vs))
		// the quorum-held finding is the evidence of health
		for i := range b.main {
			if b.main[i].Code == "quorum-held" {
				b.main[i].Code = "healthy"
			}
		}
	}
	sort.SliceStable(b.other, func(i, j int) bool { return sevRank(b.other[i].Severity) < sevRank(b.other[j].Severity) })
	d.Findings = append(append(d.Findings, b.main...), b.other...)
	b.kubeNote()
	if d.Recommend != nil {
		d.Next = NextCommand(d.Recommend, inventory, "")
	}
}

func (b *builder) firstSummary(min Severity) string {
	for _, fs := range [][]Finding{b.main, b.other} {
		for _, f := range fs {
			if sevRank(f.Severity) <= sevRank(min) {
				return f.Summary
			}
		}
	}
	for _, f := range b.other {
		if f.Severity == Warning {
			return f.Summary
		}
	}
	return "see the findings"
}

func sevRank(s Severity) int {
	switch s {
	case Error:
		return 0
	case Warning:
		return 1
	}
	return 2
}

// kubeNote says, in the recommendation, what the recovery means for the
// Kubernetes control plane of a cluster with cluster.kubernetes or the
// static-pod layout: a restore or a forced new cluster needs every
// kube-apiserver stopped first and restarted after (runbook pitfall 2);
// ip-change and lost-host do not. Nothing is probed: the kubelet and the
// API servers are not in the facts.
func (b *builder) kubeNote() {
	r, c := b.d.Recommend, b.f.Cluster
	if r == nil || (c.ControlPlane == "" && c.Layout != "static-pod") {
		return
	}
	var n string
	switch {
	case r.Scenario == string(IPChange) || r.Scenario == string(LostHost):
		n = "Kubernetes: the control plane may keep running: no data is replaced and the other members keep quorum; the plan does not stop it"
	case c.ControlPlane != "":
		hosts := strings.Join(c.ControlPlaneHosts, ", ")
		n = fmt.Sprintf("Kubernetes (cluster.kubernetes, %s control plane on %s): kube-apiserver, kube-controller-manager and kube-scheduler must be stopped before etcd is touched and started once the data is verified; the plan does it (kube-stop-control-plane, kube-start-control-plane)", c.ControlPlane, hosts)
	case r.Scenario == string(QuorumLoss) && r.Route == RouteForceNewCluster:
		n = "static-pod layout: kube-apiserver should be stopped before the survivor is forced and restarted after; this plan does not stop it: add cluster.kubernetes to the inventory and scaffold again"
	default:
		n = "static-pod layout: kube-apiserver must be stopped on every control-plane host before the restore and started after; the plan does it with stop-service; add cluster.kubernetes to the inventory to stop the whole control plane, wait for /readyz and prove that clients relist"
	}
	r.Notes = append(r.Notes, n)
}
