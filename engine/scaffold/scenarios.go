package scaffold

import (
	"fmt"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// Each scenario follows its example in examples/ step for step; the
// examples say why each step is there, the comments here say what is
// generalised.

// ipChange follows examples/ip-change.yaml: the moved member is stopped,
// the cluster (the others, which keep quorum) is told its new peer URL,
// and it restarts with its settings derived from the inventory.
func (g *gen) ipChange() error {
	m, why, err := g.pickMember("moved")
	if err != nil {
		return err
	}
	if err := g.needQuorumWithout(m.Name); err != nil {
		return err
	}
	others := g.others(m.Name)
	g.name = "ip-change"
	g.description = fmt.Sprintf("%s's host moved; update its peer URL to %s and restart it.", m.Name, m.PeerURL)
	g.story = []string{
		fmt.Sprintf("ip-change: member %s's host %s now answers at another address; the", m.Name, m.Host),
		fmt.Sprintf("inventory gives its new peer URL %s. etcd ignores --initial-* once", m.PeerURL),
		"its data dir exists (etcd #7570), so the cluster is told the new peer URL",
		"(member update) through the members that still have quorum, then the",
		"member restarts with its settings derived from the inventory.",
	}
	g.choose("%s", why)
	cert, err := g.certStep(m, "stop-"+m.Name)
	if err != nil {
		return err
	}
	g.add(&step{comments: []string{"the members that keep quorum while " + m.Name + " is stopped"},
		id: "quorum", typ: "check-quorum", on: others, with: []kv{{"expect", "present"}}})
	g.add(&step{comments: []string{why}, id: "stop-" + m.Name, typ: "stop-service", on: []string{m.Name}, needs: []string{"quorum"}})
	s := &step{id: "new-peer-url", typ: "member-update", on: []string{m.Name}, needs: []string{"stop-" + m.Name}}
	if cert != nil {
		g.story = append(g.story, "Its new certificates, for the new address, are issued before it starts (cert-issue).")
		g.add(cert)
		s.needs = []string{cert.id}
	} else if g.tls(m) {
		s.comments = []string{
			fmt.Sprintf("%s's peer and server certificates must list its new address (%s):", m.Name, m.PeerURL),
			"apply checks them on the host before the first change; when they do not,",
			"add a cert-issue step before this one (docs/plan-format.md, Certificates),",
			"or scaffold it: etcd-rescue new ip-change ... --ca-cert PATH --ca-key PATH",
		}
	}
	g.add(s)
	g.add(&step{id: "config", typ: "set-config", on: []string{m.Name}, needs: []string{"new-peer-url"}, with: []kv{{"clusterState", "existing"}}})
	g.add(&step{id: "start-" + m.Name, typ: "start-service", on: []string{m.Name}, needs: []string{"config"}})
	g.add(&step{id: "healthy", typ: "wait-healthy", needs: []string{"start-" + m.Name}})
	g.add(&step{id: "same-data", typ: "verify-data", needs: []string{"healthy"}})
	g.kubeKeepsRunning(m.Host, "same-data")
	return nil
}

// lostHost follows examples/lost-host.yaml: the dead member is removed
// (the others keep quorum), its replacement host is wiped, added as a
// learner under the same name, started and promoted.
func (g *gen) lostHost() error {
	m, why, err := g.pickMember("lost")
	if err != nil {
		return err
	}
	if err := g.needQuorumWithout(m.Name); err != nil {
		return err
	}
	rm, rmWhy, err := g.removeParams(m)
	if err != nil {
		return err
	}
	others := g.others(m.Name)
	g.name = "lost-host"
	g.description = fmt.Sprintf("%s's host is gone; %s takes over member %s.", m.Name, m.Host, m.Name)
	g.story = []string{
		fmt.Sprintf("lost-host: member %s's host died for good; host %s (the inventory's host", m.Name, m.Host),
		fmt.Sprintf("for %s) takes it over. %d of %d members keep quorum, so nothing is restored", m.Name, len(others), len(g.names)),
		"from a snapshot (restoring one member of a healthy cluster breaks it, etcd",
		"#7834): the dead member is removed, the new host is wiped and added back as",
		"a learner under the same name, started with clusterState existing, and",
		"promoted once it has caught up (etcd #3505: an added member must start).",
	}
	g.choose("%s", why)
	g.choose("%s", rmWhy)
	cert, err := g.certStep(m, "stop-new")
	if err != nil {
		return err
	}
	g.add(&step{comments: []string{"the members that keep quorum"}, id: "quorum", typ: "check-quorum", on: others, with: []kv{{"expect", "present"}}})
	g.add(&step{comments: []string{rmWhy}, id: "remove-dead", typ: "member-remove", needs: []string{"quorum"}, with: rm})
	g.add(&step{comments: []string{why}, id: "stop-new", typ: "stop-service", on: []string{m.Name}})
	g.add(&step{id: "wipe-new", typ: "wipe-dir", on: []string{m.Name}, needs: []string{"stop-new"}})
	add := &step{id: "add", typ: "member-add", on: []string{m.Name}, needs: []string{"remove-dead", "wipe-new"}, with: []kv{{"learner", flag(true)}}}
	if cert != nil {
		g.story = append(g.story, fmt.Sprintf("Host %s gets its own certificates for member %s before it starts (cert-issue).", m.Host, m.Name))
		g.add(cert)
		add.needs = append(add.needs, cert.id)
	} else if g.tls(m) {
		add.comments = []string{
			fmt.Sprintf("%s's certificates on %s must list its URLs (%s):", m.Name, m.Host, m.PeerURL),
			"apply checks them on the host before the first change; when they do not",
			"(a new host often has none yet), add a cert-issue step before this one",
			"(docs/plan-format.md, Certificates), or scaffold it:",
			"etcd-rescue new lost-host ... --ca-cert PATH --ca-key PATH",
		}
	}
	g.add(add)
	g.add(&step{comments: []string{"written while the dead member is removed: etcd reads it only at the start, which waits for the add"},
		id: "config", typ: "set-config", on: []string{m.Name}, needs: []string{"wipe-new"}, with: []kv{{"clusterState", "existing"}}})
	g.add(&step{id: "start", typ: "start-service", on: []string{m.Name}, needs: []string{"add", "config"}, with: []kv{{"enable", flag(true)}}})
	g.add(&step{id: "promote", typ: "member-promote", on: []string{m.Name}, needs: []string{"start"}})
	g.add(&step{id: "healthy", typ: "wait-healthy", needs: []string{"promote"}})
	g.add(&step{id: "same-data", typ: "verify-data", needs: []string{"healthy"}})
	g.kubeKeepsRunning(m.Host, "same-data")
	return nil
}

// tls says whether etcd uses certificates on the member: its peer or
// client URL is https.
func (g *gen) tls(m *memberRef) bool {
	pm := g.c.MemberByName(m.Name)
	return strings.HasPrefix(pm.PeerURL, "https:") || strings.HasPrefix(pm.ClientURL, "https:")
}

// certStep is the cert-issue step on m after the step that stops it, as
// examples/ip-change-new-certificate.yaml and lost-host-new-certificate.yaml
// place it, when --ca-cert and --ca-key are given (nil without them). The
// CA's paths go into the plan's vars, as given, so that the inventory's
// vars.caCert and vars.caKey override them.
func (g *gen) certStep(m *memberRef, after string) (*step, error) {
	o := g.o
	if o.CACert == "" {
		return nil, nil
	}
	if !g.tls(m) {
		pm := g.c.MemberByName(m.Name)
		return nil, choiceErr([]string{"leave out --ca-cert, --ca-key and --ca-host: they are for a member on https"},
			"cert-issue: nothing to issue on http: member %s's URLs %s and %s use no certificate", m.Name, pm.ClientURL, pm.PeerURL)
	}
	where := "files on this machine (a relative path is relative to this plan)"
	if o.CAHost != "" {
		where = fmt.Sprintf("files on host %s (--ca-host), which signs there: the CA key never leaves it", o.CAHost)
	}
	why := fmt.Sprintf("new certificates for %s by cert-issue from the CA %s, key %s (--ca-cert, --ca-key), %s", m.Name, o.CACert, o.CAKey, where)
	for _, v := range []struct{ name, given string }{{"caCert", o.CACert}, {"caKey", o.CAKey}} {
		if x := g.inv.Vars[v.name]; x != "" && x != v.given {
			why += fmt.Sprintf("; the inventory's vars.%s = %s overrides it", v.name, x)
		}
	}
	g.choose("%s", why)
	g.varsC = []string{"the CA of step new-cert (--ca-cert, --ca-key), " + where + ";",
		"the inventory's vars.caCert and vars.caKey override these"}
	g.vars = append(g.vars, kv{"caCert", str(o.CACert)}, kv{"caKey", str(o.CAKey)})
	with := []kv{{"ca", `{cert: "${vars.caCert}", key: "${vars.caKey}"}`}}
	if o.CAHost != "" {
		with = append(with, kv{"caHost", str(o.CAHost)})
	}
	return &step{comments: []string{why,
		"the old files stay beside the new ones as FILE.rescue-<run-id>; before the first",
		"change, apply checks that the other members trust this CA"},
		id: "new-cert", typ: "cert-issue", on: []string{m.Name}, needs: []string{after}, with: with}, nil
}

// removeParams names the dead member for member-remove: its name, its old
// peer URL (unless the replacement keeps it: member-remove may not name a
// peer URL of the cluster after recovery) and its id when the facts know it.
func (g *gen) removeParams(m *memberRef) ([]kv, string, error) {
	old, src := g.o.OldPeerURL, "--old-peer-url"
	var id string
	if rc := g.recMember(); rc != nil && rc.Name == m.Name {
		id = rc.ID
		if old == "" && rc.OldPeerURL != "" {
			old, src = rc.OldPeerURL, "facts: the cluster's member list"
		}
	}
	if old == "" {
		if v, ok := g.inv.Vars["lostPeerURL"]; ok && v != "" {
			old, src = "${vars.lostPeerURL}", "the inventory's vars.lostPeerURL = "+v
		}
	}
	if old == "" {
		return nil, "", choiceErr([]string{
			fmt.Sprintf("--old-peer-url URL is %s's peer URL in the cluster's member list now (etcdctl member list), or set vars.lostPeerURL in the inventory", m.Name),
			"or collect it: etcd-rescue new lost-host --inventory INV --from-facts",
		}, "lost-host needs the lost member's old peer URL")
	}
	kvs := []kv{{"name", str(m.Name)}}
	why := fmt.Sprintf("remove the dead member named %s", m.Name)
	resolved := old
	if old == "${vars.lostPeerURL}" {
		resolved = g.inv.Vars["lostPeerURL"]
	}
	if resolved == m.PeerURL {
		why += fmt.Sprintf(" (its old peer URL %s is also the new one, so it is matched by name only)", resolved)
	} else {
		kvs = append(kvs, kv{"peerURL", str(old)})
		why += fmt.Sprintf(" with old peer URL %s (from %s)", resolved, src)
	}
	if id != "" {
		kvs = append(kvs, kv{"id", str(id)})
		why += ", member id " + id
	}
	return kvs, why, nil
}

// quorumLoss follows examples/quorum-loss-force-new-cluster.yaml and
// quorum-loss-five-members.yaml (route force-new-cluster), or
// quorum-loss-from-survivor-snapshot.yaml (route snapshot: a snapshot of the
// survivor restores every member, like restore-all-from-snapshot.yaml).
func (g *gen) quorumLoss() error {
	if len(g.names) < 2 {
		return choiceErr([]string{"restore the one member: etcd-rescue new single-node-restore"}, "quorum-loss needs at least 2 members; the inventory has one")
	}
	route := g.o.Route
	routeSrc := "--route"
	if route == "" && g.o.Recommend != nil && g.o.Recommend.Route != "" {
		route, routeSrc = g.o.Recommend.Route, "the facts"
	}
	if route == "" {
		route, routeSrc = Routes[0], "the default"
	}
	if !contains(Routes, route) {
		return choiceErr([]string{"routes: " + strings.Join(Routes, ", ")}, "unknown quorum-loss route %q%s", route, plans.Suggest(route, Routes))
	}
	s, why, err := g.pickSurvivor()
	if err != nil {
		return err
	}
	g.choose("route %s (%s)", route, routeSrc)
	g.choose("%s", why)
	if route == "snapshot" {
		return g.quorumLossSnapshot(s, why)
	}
	others := g.others(s)
	g.name = "quorum-loss-force-new-cluster"
	g.description = fmt.Sprintf("Quorum is lost; %s becomes a one-member cluster and the others are re-added.", s)
	g.story = []string{
		"quorum-loss, route force-new-cluster: fewer than a majority of members answer.",
		fmt.Sprintf("Only ONE survivor may become the new cluster: %s restarts alone with", s),
		"--force-new-cluster (removed again right after, etcd #13848). Every other",
		"member is fenced first (stopped and disabled; a dead host is recorded and",
		"skipped), live ones included: left running beside the forced cluster they",
		"would split it (etcd #14009). They come back one at a time as learners",
		"with empty data dirs, each promoted before the next is added.",
	}
	fence := []string{"every member but the survivor " + s + ", live ones included"}
	if r := g.o.Recommend; r != nil && len(r.Fence) > 0 && r.Survivor == s {
		fence = append(fence, "the facts name to fence: "+strings.Join(r.Fence, ", "))
	}
	g.add(&step{id: "quorum", typ: "check-quorum", with: []kv{{"expect", "lost"}}})
	stop := g.stopControlPlane([]string{"quorum"}, apiServerNever)
	fenceNeeds := []string{"quorum"}
	if stop.id != "" {
		fenceNeeds = []string{stop.id}
	}
	g.add(&step{comments: fence, id: "fence", typ: "stop-service", on: others, needs: fenceNeeds,
		with: []kv{{"disable", flag(true)}, {"unreachable", "skip"}}})
	g.add(&step{comments: []string{why}, id: "survivor", typ: "force-new-cluster", on: []string{s}, needs: []string{"fence"}})
	g.add(&step{id: "wipe-others", typ: "wipe-dir", on: others, needs: []string{"fence"}})
	in := []string{s}
	prev := []string{"survivor", "wipe-others"}
	for i, o := range others {
		in = append(in, o)
		var c []string
		if i == 0 {
			c = []string{"re-added one at a time (etcd allows one learner at a time); initialCluster lists the members already in the cluster plus the one joining",
				"the configs are written right after the wipe, off the path that waits on etcd; each member-add waits only for the promote before it"}
		}
		g.add(&step{gap: true, comments: c, id: "add-" + o, typ: "member-add", on: []string{o}, needs: prev})
		g.add(&step{id: "config-" + o, typ: "set-config", on: []string{o}, needs: []string{"wipe-others"},
			with: []kv{{"clusterState", "existing"}, {"initialCluster", list(g.inOrder(in))}}})
		g.add(&step{id: "start-" + o, typ: "start-service", on: []string{o}, needs: []string{"add-" + o, "config-" + o}, with: []kv{{"enable", flag(true)}}})
		g.add(&step{id: "promote-" + o, typ: "member-promote", on: []string{o}, needs: []string{"start-" + o}})
		prev = []string{"promote-" + o}
	}
	g.add(&step{gap: true, id: "healthy", typ: "wait-healthy", needs: prev})
	g.add(&step{id: "same-data", typ: "verify-data", needs: []string{"healthy"}})
	g.startControlPlane(stop, []string{"same-data"}, noRelistForced)
	return nil
}

// quorumLossSnapshot: the survivor's data is saved through the client API
// (its backend answers without quorum), then every member is restored
// from that one snapshot, as in restore-all-from-snapshot.yaml.
func (g *gen) quorumLossSnapshot(s, why string) error {
	if err := g.needToken(); err != nil {
		return err
	}
	to, toWhy := g.o.To, "--to"
	if to == "" {
		to, toWhy = "backups/${cluster.name}-quorum-loss-${run.id}.db", "the default, relative to this plan"
	}
	g.choose("snapshot saved to %s (%s)", to, toWhy)
	others := g.others(s)
	g.name = "quorum-loss-from-survivor-snapshot"
	g.description = fmt.Sprintf("Quorum is lost; a snapshot of %s is restored on every member into a new cluster.", s)
	g.story = []string{
		"quorum-loss, route snapshot: fewer than a majority of members answer.",
		fmt.Sprintf("The others are fenced, a snapshot is saved from the survivor %s through", s),
		"the client API (with its sha256 trailer), and every member, the survivor",
		"included, is rebuilt from that ONE snapshot with the same token and a",
		"bumped revision, then they start together (restore-all-from-snapshot).",
		"No member-add, so no \"unhealthy cluster\" window: the fastest route. The data",
		"is the survivor's (revision bumped); the cluster ID and member IDs are new",
		"when cluster.token is one the cluster never had (docs/cli.md: which route).",
	}
	saveC := []string{why}
	if r := g.o.Recommend; r != nil {
		for _, k := range r.Ranking {
			if k.Name == s && k.Source == "offline" {
				saveC = append(saveC, fmt.Sprintf("etcd is not running on %s (ranked from its data dir): snapshot-save needs it running;", s),
					"start it first, or use --route force-new-cluster")
			}
		}
	}
	bump, bumpWhy := g.bump()
	g.add(&step{id: "quorum", typ: "check-quorum", desc: "guard on quorum lost; record the last revision any member still reports, for the revision bump",
		with: []kv{{"expect", "lost"}}})
	fenceNeeds := []string{"quorum"}
	var stop apiStop
	if g.c.Kubernetes != nil {
		// before the fence: the control plane stops before etcd is stopped
		stop = g.stopControlPlane([]string{"quorum"}, apiServerAlways)
		fenceNeeds = []string{stop.id}
	}
	g.add(&step{comments: []string{"every member but the survivor " + s + ", live ones included"}, id: "fence", typ: "stop-service", on: others, needs: fenceNeeds,
		with: []kv{{"disable", flag(true)}, {"unreachable", "skip"}}})
	if g.c.Kubernetes == nil {
		stop = g.stopControlPlane([]string{"quorum"}, apiServerAlways)
	}
	saveNeeds := []string{"fence"}
	if !stop.kube {
		saveNeeds = append(saveNeeds, stop.id)
	}
	g.add(&step{comments: saveC, id: "save", typ: "snapshot-save", on: []string{s}, needs: saveNeeds, with: []kv{{"to", str(to)}}})
	g.add(&step{id: "stop-survivor", typ: "stop-service", on: []string{s}, needs: []string{"save"}})
	g.add(&step{id: "set-aside", typ: "wipe-dir", on: []string{"members"}, needs: []string{"fence", "stop-survivor"}})
	g.add(&step{id: "ship", typ: "snapshot-copy", on: []string{"members"}, needs: []string{"save"}, with: []kv{{"from", str(to)}}})
	g.restoreTail(stop, bump, bumpWhy, []string{"set-aside", "check-snapshot"}, true, []string{"set-aside"})
	return nil
}

// restoreAll follows examples/restore-all-from-snapshot.yaml (and
// static-pod-restore.yaml, whose kube-apiserver handling it shares).
func (g *gen) restoreAll() error {
	if err := g.needToken(); err != nil {
		return err
	}
	snap, why, err := g.snapshot()
	if err != nil {
		return err
	}
	g.choose("%s", why)
	g.name = "restore-all-from-snapshot"
	g.description = "Every member is restored from one snapshot into a new cluster."
	g.story = []string{
		"restore-all-from-snapshot: every member is rebuilt from the SAME snapshot with",
		"the SAME --initial-cluster-token (the inventory's cluster.token), the revision",
		"is bumped so watch caches do not go back in time, and the members start",
		"together.",
	}
	if g.c.Kubernetes == nil {
		g.story = append(g.story, "kube-apiserver is stopped first (a host without it is fine) and",
			"starts again only once etcd is healthy and consistent.")
	}
	bump, bumpWhy := g.bump()
	g.add(&step{id: "record", typ: "check-quorum", desc: "record the last revision any member still reports, for the revision bump"})
	var stop apiStop
	etcdNeeds := []string{"record"}
	if g.c.Kubernetes != nil {
		// as examples/static-pod-restore.yaml: record, then the control plane, then etcd
		stop = g.stopControlPlane([]string{"record"}, apiServerAlways)
		etcdNeeds = []string{stop.id}
	} else {
		stop = g.stopControlPlane(nil, apiServerAlways)
		etcdNeeds = append(etcdNeeds, stop.id)
	}
	g.add(&step{id: "stop-etcd", typ: "stop-service", on: []string{"members"}, needs: etcdNeeds})
	g.add(&step{id: "set-aside", typ: "wipe-dir", on: []string{"members"}, needs: []string{"stop-etcd"}})
	g.add(&step{comments: []string{why}, id: "ship", typ: "snapshot-copy", on: []string{"members"}, with: []kv{{"from", str(snap)}}})
	g.restoreTail(stop, bump, bumpWhy, []string{"set-aside", "check-snapshot"}, false, nil)
	return nil
}

// restoreTail is the end every restore-all shares: verify the shipped
// snapshot, restore, derive the settings, start together, check, and
// start kube-apiserver again. With configNeeds the settings are written
// beside the restore (they are read only when etcd starts), once those
// steps are done; without, after the restore.
func (g *gen) restoreTail(stop apiStop, bump, bumpWhy string, restoreNeeds []string, enable bool, configNeeds []string) {
	g.add(&step{id: "check-snapshot", typ: "snapshot-verify", on: []string{"members"}, needs: []string{"ship"}})
	r := &step{id: "restore", typ: "restore", on: []string{"members"}, needs: restoreNeeds,
		with: []kv{{"snapshot", "/var/tmp/etcd-rescue/snapshot.db"}, {"bumpRevision", bump}}}
	if bumpWhy != "" {
		r.comments = []string{bumpWhy}
	}
	g.add(r)
	cfg := &step{id: "config", typ: "set-config", on: []string{"members"}, needs: []string{"restore"}, with: []kv{{"clusterState", "new"}}}
	startNeeds := []string{"config"}
	if configNeeds != nil {
		cfg.needs = configNeeds
		cfg.comments = []string{"written beside the restore: etcd reads its settings only when it starts"}
		startNeeds = []string{"restore", "config"}
	}
	g.add(cfg)
	st := &step{id: "start", typ: "start-service", on: []string{"members"}, needs: startNeeds}
	if enable {
		st.comments = []string{"enable: the fence disabled the unit on the other members"}
		st.with = []kv{{"enable", flag(true)}}
	}
	g.add(st)
	g.add(&step{id: "healthy", typ: "wait-healthy", needs: []string{"start"}, with: []kv{{"within", "2m"}}})
	g.add(&step{id: "same-data", typ: "verify-data", needs: []string{"healthy"}, with: []kv{{"aboveRecorded", flag(true)}}})
	g.startControlPlane(stop, []string{"same-data"}, noRelistBump(bump, bumpWhy))
}

// singleNode follows examples/single-node-restore.yaml; with the
// static-pod layout or cluster.kubernetes, kube-apiserver is stopped first
// and started last (a restore requires it there).
func (g *gen) singleNode() error {
	if n := len(g.names); n != 1 {
		return choiceErr([]string{"restore every member from one snapshot: etcd-rescue new restore-all-from-snapshot"},
			"single-node-restore is for a one-member cluster; the inventory has %d members", n)
	}
	if err := g.needToken(); err != nil {
		return err
	}
	snap, why, err := g.snapshot()
	if err != nil {
		return err
	}
	g.choose("%s", why)
	m := g.names[0]
	g.name = "single-node-restore"
	g.description = fmt.Sprintf("The only member, %s, is restored from a snapshot.", m)
	g.story = []string{
		"single-node-restore: the only member lost its data. It is stopped, its data",
		"dir moved aside (never rm -rf), the snapshot restored with the member's own",
		"name and peer URL, the files given to the etcd user, and it starts again.",
	}
	stop := g.stopControlPlane(nil, apiServerStaticPod)
	var stopNeeds []string
	if stop.id != "" {
		stopNeeds = []string{stop.id}
	}
	g.add(&step{id: "stop", typ: "stop-service", on: []string{"members"}, needs: stopNeeds})
	g.add(&step{id: "set-aside", typ: "wipe-dir", on: []string{"members"}, needs: []string{"stop"}})
	g.add(&step{comments: []string{why}, id: "ship", typ: "snapshot-copy", on: []string{"members"}, with: []kv{{"from", str(snap)}}})
	r := &step{id: "restore", typ: "restore", on: []string{"members"}, needs: []string{"set-aside", "ship"},
		with: []kv{{"snapshot", "/var/tmp/etcd-rescue/snapshot.db"}}}
	bump, bumpWhy := g.bump()
	if bump != "auto" {
		r.comments = []string{bumpWhy}
		r.with = append(r.with, kv{"bumpRevision", bump})
	}
	g.add(r)
	g.add(&step{id: "config", typ: "set-config", on: []string{"members"}, needs: []string{"restore"}, with: []kv{{"clusterState", "new"}}})
	g.add(&step{id: "start", typ: "start-service", on: []string{"members"}, needs: []string{"config"}})
	g.add(&step{id: "healthy", typ: "wait-healthy", needs: []string{"start"}})
	g.startControlPlane(stop, []string{"healthy"}, noRelistBump(bump, bumpWhy))
	return nil
}

// backup follows examples/backup.yaml.
func (g *gen) backup() error {
	name, src := g.o.Member, "--member"
	if name == "" {
		name, src = g.names[0], "the inventory's first member"
	}
	m, err := g.member(name, "--member")
	if err != nil {
		return err
	}
	to, toWhy := g.o.To, "--to"
	if to == "" {
		to, toWhy = "backups/${cluster.name}-${run.id}.db", "the default, relative to this plan"
	}
	g.choose("save from %s (%s)", m.Name, src)
	g.choose("save to %s (%s); snapshots older than 7 days there are removed (keepDays)", to, toWhy)
	g.name = "backup"
	g.description = fmt.Sprintf("Save a snapshot from %s, verify it, keep 7 days.", m.Name)
	g.story = []string{
		"backup: a snapshot streamed through the client API (never a copy of",
		"member/snap/db, which has no hash and may miss WAL data), its sha256",
		"trailer checked, a .sha256 file written beside it, and snapshots older",
		"than keepDays removed from its directory on this machine.",
	}
	g.add(&step{id: "healthy", typ: "wait-healthy", with: []kv{{"within", "30s"}}})
	g.add(&step{comments: []string{fmt.Sprintf("save from %s (%s), to %s (%s)", m.Name, src, to, toWhy)},
		id: "save", typ: "snapshot-save", on: []string{m.Name}, needs: []string{"healthy"}, with: []kv{{"to", str(to)}, {"keepDays", "7"}}})
	return nil
}

// memberRef is an inventory member chosen for the scenario.
type memberRef struct{ Name, Host, PeerURL string }

// pickMember is --member, else the facts' member (what: "moved", "lost").
func (g *gen) pickMember(what string) (*memberRef, string, error) {
	name, src := g.o.Member, "--member"
	rc := g.recMember()
	if name == "" && rc != nil {
		if n := len(g.o.Recommend.Members); n > 1 {
			var list []string
			for _, c := range g.o.Recommend.Members {
				list = append(list, c.Name)
			}
			return nil, "", choiceErr([]string{"one member at a time: add --member NAME to choose which; run new again for the next one after this plan is applied"},
				"the facts name %d %s members (%s)", n, what, strings.Join(list, ", "))
		}
		name, src = rc.Name, "facts: "+rc.Reason
	}
	if name == "" {
		return nil, "", choiceErr([]string{
			fmt.Sprintf("--member NAME names the %s member (one of %s)", what, strings.Join(g.names, ", ")),
			fmt.Sprintf("or let the live cluster say: etcd-rescue new %s --inventory INV --from-facts", g.o.Scenario),
		}, "%s needs the %s member", g.o.Scenario, what)
	}
	m, err := g.member(name, "--member")
	if err != nil {
		return nil, "", err
	}
	why := fmt.Sprintf("%s member %s on host %s, peer URL %s (%s)", what, m.Name, m.Host, m.PeerURL, src)
	if rc != nil && rc.Name == m.Name && rc.OldPeerURL != "" && rc.OldPeerURL != m.PeerURL {
		why += fmt.Sprintf("; the cluster lists it at %s now", rc.OldPeerURL)
	}
	if rc != nil && g.o.Member != "" && rc.Name != g.o.Member {
		why += fmt.Sprintf("; the facts named %s", rc.Name)
	}
	return &memberRef{m.Name, m.Host, m.PeerURL}, why, nil
}

// pickSurvivor is --survivor, else the facts' survivor.
func (g *gen) pickSurvivor() (string, string, error) {
	r := g.o.Recommend
	name, src := g.o.Survivor, "--survivor"
	if name == "" && r != nil && r.Survivor != "" {
		name, src = r.Survivor, "facts: the most advanced member with data"
	}
	if name == "" {
		return "", "", choiceErr([]string{
			"--survivor NAME names the member whose data becomes the cluster: the most advanced one with data (highest raft index; etcdctl endpoint status)",
			"or let the live cluster say: etcd-rescue new quorum-loss --inventory INV --from-facts",
		}, "quorum-loss needs the survivor")
	}
	m, err := g.member(name, "--survivor")
	if err != nil {
		return "", "", err
	}
	why := fmt.Sprintf("survivor %s (%s)", m.Name, src)
	if note := rankNote(r, m.Name); note != "" {
		why = note + " (" + src + ")"
	}
	if r != nil && r.Survivor != "" && g.o.Survivor != "" && r.Survivor != g.o.Survivor {
		why += fmt.Sprintf("; the facts named %s, the most advanced", r.Survivor)
	}
	return m.Name, why, nil
}

// inOrder is names in inventory order.
func (g *gen) inOrder(names []string) []string {
	var out []string
	for _, n := range g.names {
		if contains(names, n) {
			out = append(out, n)
		}
	}
	return out
}
