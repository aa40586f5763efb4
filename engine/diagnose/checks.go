package diagnose

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
)

// common adds the findings of any situation: members listed but not in the
// inventory and the reverse, learners, alarms, versions, settings, failed
// services, leaders that disagree, certificates.
func (b *builder) common() {
	if !b.split {
		b.extraMembers()
		b.notListed()
		b.listsDiffer()
		b.leaders()
	}
	b.learners()
	b.alarms()
	b.hashes()
	b.runningVersions()
	b.binaryVersions()
	b.dataVersions()
	b.settings()
	b.services()
	b.otherHosts()
	b.certificates()
}

func (b *builder) extraMembers() {
	for _, e := range b.extras {
		name := e.m.Name
		if name == "" {
			name = "an unstarted member"
		}
		sev, what := Error, "a voting member"
		if e.m.IsLearner {
			sev, what = Warning, "a learner"
		}
		summary := fmt.Sprintf("%s (id %s) at %s is in the cluster's member list, %s, but not in the inventory", name, e.m.ID, strings.Join(e.m.PeerURLs, ","), what)
		for _, v := range b.vs {
			if v.inv.Name == e.m.Name && v.listed != nil {
				summary = fmt.Sprintf("a second %s (id %s) is listed at %s; the inventory's %s is %s at %s", name, e.m.ID, strings.Join(e.m.PeerURLs, ","), v.inv.Name, v.listed.ID, strings.Join(v.listed.PeerURLs, ","))
			}
		}
		ev := []string{listedLine(e)}
		if !e.m.IsLearner {
			ev = append(ev, "a voting member counts for quorum: if it is gone, the cluster tolerates one failure less")
		}
		b.problem(Finding{
			Code: "member-not-in-inventory", Severity: sev, Summary: summary, Evidence: ev, Members: []string{name},
			Hint: fmt.Sprintf("a leftover (a member replaced or added by hand)? remove it through a member with quorum: etcdctl member remove %s; if it belongs to the cluster, add it to the inventory", e.m.ID),
		})
	}
}

func (b *builder) notListed() {
	if !b.listKnown() {
		return
	}
	var from []string
	for _, v := range b.vs {
		if v.answered() {
			from = append(from, v.inv.Name)
		}
	}
	for _, v := range b.vs {
		if v.listed != nil {
			continue
		}
		ev := []string{fmt.Sprintf("%s's member list has no member named %s nor at %s (member list)", and(from), v.inv.Name, v.inv.PeerURL)}
		if v.asked() {
			ev = append(ev, dataLine(v))
		} else {
			ev = append(ev, reachLine(v))
		}
		b.problem(Finding{
			Code: "member-not-listed", Severity: Error,
			Summary:  fmt.Sprintf("%s is in the inventory but not in the cluster's member list", v.label()),
			Evidence: ev, Members: []string{v.inv.Name}, Hosts: []string{v.inv.Host},
			Hint: fmt.Sprintf("if %s was removed, add it back (etcdctl member add %s --peer-urls=%s, then start it with an empty data dir and initial-cluster-state existing); if it is not meant to exist, take it out of the inventory",
				v.inv.Name, v.inv.Name, v.inv.PeerURL),
		})
	}
}

func (b *builder) listsDiffer() {
	var first *view
	var firstIDs string
	var ev []string
	differ := false
	for _, v := range b.vs {
		if !v.answered() {
			continue
		}
		var ids []string
		for _, m := range v.mem.MemberList {
			ids = append(ids, m.Name+" "+m.ID)
		}
		sort.Strings(ids)
		s := strings.Join(ids, ", ")
		ev = append(ev, fmt.Sprintf("%s: %s (member list)", v.label(), s))
		if first == nil {
			first, firstIDs = v, s
		} else if s != firstIDs {
			differ = true
		}
	}
	if differ {
		b.problem(Finding{
			Code: "member-lists-differ", Severity: Warning,
			Summary:  "the members that answer do not see the same member list",
			Evidence: ev,
			Hint:     "a member that missed a membership change (partitioned, or restored from an old snapshot); run diagnose again in a minute, then check that member's log",
		})
	}
}

func (b *builder) leaders() {
	ls := map[string][]*view{}
	var none, all []*view
	for _, v := range b.vs {
		if !v.answered() || v.mem.Status.IsLearner {
			continue
		}
		all = append(all, v)
		if v.mem.Status.HasLeader() {
			ls[v.mem.Status.Leader] = append(ls[v.mem.Status.Leader], v)
		} else {
			none = append(none, v)
		}
	}
	if len(ls) == 0 {
		return // no-leader, quorum-lost or quorum-unknown said it
	}
	var ev []string
	for _, v := range all {
		ev = append(ev, statusLine(v, b.list))
	}
	if len(ls) > 1 {
		b.problem(Finding{
			Code: "leaders-differ", Severity: Warning,
			Summary:  fmt.Sprintf("the members name %d different leaders", len(ls)),
			Evidence: ev, Members: names(all),
			Hint: "an election in progress, or a partition; run diagnose again in a few seconds",
		})
	}
	if len(none) > 0 {
		b.problem(Finding{
			Code: "member-no-leader", Severity: Warning,
			Summary:  fmt.Sprintf("%s answer%s but know%s no leader while the others do", and(names(none)), s(len(none)), s(len(none))),
			Evidence: ev, Members: names(none), Hosts: hostsOf(none),
			Hint: "a member cut off from the others: check its peer URL, the peer port (2380) between the hosts and its log",
		})
	}
}

func s(n int) string {
	if n == 1 {
		return "s"
	}
	return ""
}

func (b *builder) learners() {
	var ev, ms []string
	for _, e := range b.list {
		if e.m.IsLearner {
			ev = append(ev, listedLine(e))
			ms = append(ms, e.m.Name)
		}
	}
	for _, v := range b.vs {
		if v.answered() && v.mem.Status.IsLearner && (v.listed == nil || !v.listed.IsLearner) {
			ev = append(ev, statusLine(v, b.list))
			ms = append(ms, v.inv.Name)
		}
	}
	if len(ev) == 0 {
		return
	}
	b.problem(Finding{
		Code: "learner-left", Severity: Warning,
		Summary:  fmt.Sprintf("%s %s a learner: not a voting member (a member-add that was never promoted?)", and(ms), isAre(len(ms))),
		Evidence: ev, Members: ms,
		Hint: "promote it once it has caught up (etcdctl member promote ID); a learner that never starts blocks the next member add, remove it (etcdctl member remove ID)",
	})
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

func (b *builder) alarms() {
	by := map[string][]*view{}
	var order []string
	for _, v := range b.vs {
		if !v.answered() {
			continue
		}
		for _, a := range v.mem.Status.Alarms {
			a = strings.ToUpper(strings.TrimSpace(a))
			if a == "" || a == "NONE" {
				continue
			}
			if by[a] == nil {
				order = append(order, a)
			}
			by[a] = append(by[a], v)
		}
	}
	for _, a := range order {
		vs := by[a]
		var ev []string
		for _, v := range vs {
			s := v.mem.Status
			ev = append(ev, fmt.Sprintf("%s: alarm %s, db size %s (%s in use) (status)", v.label(), a, size(s.DBSize), size(s.DBSizeInUse)))
		}
		f := Finding{Code: "alarm-" + strings.ToLower(a), Severity: Error, Evidence: ev, Members: names(vs), Hosts: hostsOf(vs)}
		switch a {
		case "NOSPACE":
			f.Summary = "NOSPACE alarm: the backend quota is exceeded; the cluster takes no writes, only reads and deletes"
			f.Hint = "compact (etcdctl compact REV), defragment each member (etcdctl defrag --cluster), then etcdctl alarm disarm; raise --quota-backend-bytes if the data needs the room"
		case "CORRUPT":
			f.Summary = "CORRUPT alarm: a member's data differs from the others'; the cluster refuses writes"
			f.Hint = "find the member whose HashKV differs at one revision, remove it and add it back empty (a restart keeps the bad data), then etcdctl alarm disarm"
		default:
			f.Summary = fmt.Sprintf("%s alarm raised", a)
			f.Hint = "etcdctl alarm list shows it; fix its cause, then etcdctl alarm disarm"
		}
		b.problem(f)
	}
}

// hashes compares HashKV answers taken at the same revision.
func (b *builder) hashes() {
	byRev := map[int64][]*view{}
	for _, v := range b.vs {
		if v.mem != nil && v.mem.HashKV != nil && v.mem.HashKV.Revision > 0 {
			byRev[v.mem.HashKV.Revision] = append(byRev[v.mem.HashKV.Revision], v)
		}
	}
	for rev, vs := range byRev {
		differ := false
		var ev []string
		for _, v := range vs {
			ev = append(ev, fmt.Sprintf("%s: hashkv %d at revision %d, compacted at %d (hashkv)", v.label(), v.mem.HashKV.Hash, rev, v.mem.HashKV.CompactRevision))
			if v.mem.HashKV.Hash != vs[0].mem.HashKV.Hash && v.mem.HashKV.CompactRevision == vs[0].mem.HashKV.CompactRevision {
				differ = true
			}
		}
		if differ {
			b.problem(Finding{
				Code: "hashkv-differs", Severity: Error,
				Summary:  fmt.Sprintf("members hold different data at revision %d", rev),
				Evidence: ev, Members: names(vs), Hosts: hostsOf(vs),
				Hint: "a member's data is corrupt: the minority one is the suspect; remove it and add it back empty",
			})
		}
	}
}

// version is major.minor.patch; patch is -1 when not given ("3.5").
type version struct{ major, minor, patch int }

func parseVersion(s string) (version, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return version{}, false
	}
	v := version{patch: -1}
	var err error
	if v.major, err = strconv.Atoi(parts[0]); err != nil {
		return version{}, false
	}
	if v.minor, err = strconv.Atoi(parts[1]); err != nil {
		return version{}, false
	}
	if len(parts) == 3 {
		p, _, _ := strings.Cut(parts[2], "-")
		if v.patch, err = strconv.Atoi(p); err != nil {
			return version{}, false
		}
	}
	return v, true
}

func (v version) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

func (b *builder) runningVersions() {
	seen := map[string]bool{}
	var ev []string
	var vs []*view
	for _, v := range b.vs {
		if v.answered() && v.mem.Status.Version != "" {
			seen[v.mem.Status.Version] = true
			ev = append(ev, fmt.Sprintf("%s: etcd %s (status)", v.label(), v.mem.Status.Version))
			vs = append(vs, v)
		}
	}
	if len(seen) < 2 {
		return
	}
	b.note(Finding{
		Code: "version-skew", Severity: Warning,
		Summary:  fmt.Sprintf("the members run %d different etcd versions", len(seen)),
		Evidence: ev, Members: names(vs), Hosts: hostsOf(vs),
		Hint: "fine during a rolling upgrade, one minor version apart; otherwise finish the upgrade (or the downgrade) before a recovery",
	})
}

func (b *builder) binaryVersions() {
	want, ok := parseVersion(b.f.Cluster.EtcdVersion)
	if !ok {
		return
	}
	var minorEv, patchEv, missingEv []string
	var minorVs, patchVs, missingVs []*view
	for _, v := range b.vs {
		if !v.asked() {
			continue
		}
		if v.host.EtcdVersion == "" {
			missingEv = append(missingEv, fmt.Sprintf("%s: `etcd --version` found no etcd binary (ssh)", v.label()))
			missingVs = append(missingVs, v)
			continue
		}
		got, ok := parseVersion(v.host.EtcdVersion)
		line := fmt.Sprintf("%s: installed etcd %s, the inventory says %s (ssh)", v.label(), v.host.EtcdVersion, b.f.Cluster.EtcdVersion)
		switch {
		case !ok || got.major != want.major || got.minor != want.minor:
			minorEv, minorVs = append(minorEv, line), append(minorVs, v)
		case want.patch >= 0 && got.patch != want.patch:
			patchEv, patchVs = append(patchEv, line), append(patchVs, v)
		}
	}
	if len(minorEv) > 0 {
		b.note(Finding{
			Code: "binary-version-differs", Severity: Warning,
			Summary:  fmt.Sprintf("the etcd installed on %s is another minor version than the inventory's %s", and(hostsOf(minorVs)), b.f.Cluster.EtcdVersion),
			Evidence: minorEv, Members: names(minorVs), Hosts: hostsOf(minorVs),
			Hint: "a plan runs the installed etcd, etcdctl and etcdutl: install the inventory's version, or set cluster.etcdVersion to what is installed",
		})
	}
	if len(patchEv) > 0 {
		b.note(Finding{
			Code: "binary-patch-differs", Severity: Info,
			Summary:  fmt.Sprintf("the etcd installed on %s is another patch release than the inventory's %s", and(hostsOf(patchVs)), b.f.Cluster.EtcdVersion),
			Evidence: patchEv, Members: names(patchVs), Hosts: hostsOf(patchVs),
		})
	}
	if len(missingEv) > 0 {
		b.note(Finding{
			Code: "binary-missing", Severity: Warning,
			Summary:  fmt.Sprintf("no etcd binary found on %s", and(hostsOf(missingVs))),
			Evidence: missingEv, Members: names(missingVs), Hosts: hostsOf(missingVs),
			Hint: fmt.Sprintf("install etcd %s (etcd, etcdctl, etcdutl) there before a plan starts etcd on it (or set cluster.layout.binDir)", b.f.Cluster.EtcdVersion),
		})
	}
}

// dataVersions: the version that wrote each data dir against the version
// the recovery runs (the inventory's). etcd 3.6 records a storage version
// in the data; an older minor cannot run on it until `etcdutl migrate`
// (3.6's) takes it back. Upgrades go one minor at a time.
func (b *builder) dataVersions() {
	want, ok := parseVersion(b.f.Cluster.EtcdVersion)
	if !ok {
		return
	}
	for _, v := range b.vs {
		if v.data() != dataYes {
			continue
		}
		var wrote, src string
		if v.answered() && v.mem.Status.Version != "" {
			wrote, src = v.mem.Status.Version, "the running etcd (status)"
		} else if v.asked() && v.host.EtcdVersion != "" {
			wrote, src = v.host.EtcdVersion, "the installed etcd, which most likely wrote it (ssh)"
		} else {
			continue
		}
		got, ok := parseVersion(wrote)
		if !ok || got.major != want.major {
			continue
		}
		dir := b.f.Cluster.DataDir
		if v.asked() && v.host.DataDir != nil {
			dir = v.host.DataDir.Path
		}
		ev := []string{fmt.Sprintf("%s: data in %s written by etcd %s: %s", v.label(), dir, wrote, src),
			fmt.Sprintf("the inventory's etcdVersion is %s", b.f.Cluster.EtcdVersion)}
		switch {
		case got.minor > want.minor:
			b.note(Finding{
				Code: "data-needs-migrate", Severity: Warning,
				Summary: fmt.Sprintf("%s's data was written by etcd %s, newer than the inventory's %s: etcd %s does not run on it as it is",
					v.inv.Name, got, b.f.Cluster.EtcdVersion, want),
				Evidence: ev, Members: []string{v.inv.Name}, Hosts: []string{v.inv.Host},
				Hint: fmt.Sprintf("before etcd %s starts on this data, or on a snapshot of it, take its storage version back with etcd %s's etcdutl, etcd stopped: etcdutl migrate --data-dir %s --target-version %s; "+
					"or recover with etcd %s (set cluster.etcdVersion)", want, got, dir, want, got),
			})
		case got.minor < want.minor-1:
			b.note(Finding{
				Code: "data-too-old", Severity: Warning,
				Summary: fmt.Sprintf("%s's data was written by etcd %s; etcd %s upgrades only from %d.%d",
					v.inv.Name, got, want, want.major, want.minor-1),
				Evidence: ev, Members: []string{v.inv.Name}, Hosts: []string{v.inv.Host},
				Hint: fmt.Sprintf("recover with etcd %s first (set cluster.etcdVersion), then upgrade one minor version at a time", got),
			})
		}
	}
}

// settingsDiff lists the settings of v's host that disagree with the
// inventory.
func settingsDiff(v *view, c facts.Cluster) []string {
	if !v.asked() || v.host.Settings == nil {
		return nil
	}
	st := v.host.Settings
	var out []string
	diff := func(key, got, want string) {
		if got != "" && want != "" && !sameURL(got, want) {
			out = append(out, fmt.Sprintf("%s: %s says %s %s, the inventory %s (settings)", v.label(), st.Source, key, got, want))
		}
	}
	diff("name", st.Name, v.inv.Name)
	diff("initial-advertise-peer-urls", strings.Join(st.InitialAdvertisePeerURLs, ","), v.inv.PeerURL)
	diff("advertise-client-urls", strings.Join(st.AdvertiseClientURLs, ","), v.inv.ClientURL)
	diff("data-dir", st.DataDir, c.DataDir)
	return out
}

func (b *builder) settings() {
	for _, v := range b.vs {
		if !v.asked() || v.host.Settings == nil {
			continue
		}
		if v.host.Settings.ForceNewCluster {
			b.problem(Finding{
				Code: "force-new-cluster-set", Severity: Warning,
				Summary:  fmt.Sprintf("%s's settings still say force-new-cluster", v.label()),
				Evidence: []string{fmt.Sprintf("%s: %s sets force-new-cluster (settings)", v.label(), v.host.Settings.Source)},
				Members:  []string{v.inv.Name}, Hosts: []string{v.inv.Host},
				Hint: "take it out: each restart with it resets the membership to this member alone (etcd #13848)",
			})
		}
		if b.moved[v.inv.Name] {
			continue // evidence of the member-moved finding
		}
		lines := settingsDiff(v, b.f.Cluster)
		if len(lines) == 0 {
			continue
		}
		b.note(Finding{
			Code: "settings-differ", Severity: Warning,
			Summary:  fmt.Sprintf("%s's etcd settings disagree with the inventory", v.label()),
			Evidence: lines, Members: []string{v.inv.Name}, Hosts: []string{v.inv.Host},
			Hint: "etcd starts with these settings: a plan's set-config step rewrites them; if the inventory is wrong, fix it",
		})
	}
}

func (b *builder) services() {
	for _, v := range b.vs {
		if !v.asked() || v.host.Service == nil || v.host.Service.Active != "failed" {
			continue
		}
		hint := fmt.Sprintf("journalctl -u %s on %s says why", b.unit(), v.inv.Host)
		if b.moved[v.inv.Name] {
			hint = "expected after an address change: etcd starts with its old settings and cannot bind the old address; the ip-change plan rewrites them"
		} else if v.data() == dataNo {
			hint = "expected without data: the recovery plan rewrites the settings and starts it"
		}
		b.problem(Finding{
			Code: "service-failed", Severity: Warning,
			Summary:  fmt.Sprintf("%s: the host answers but the etcd service failed", v.label()),
			Evidence: []string{serviceLine(v), apiLine(v)}, Members: []string{v.inv.Name}, Hosts: []string{v.inv.Host},
			Hint: hint,
		})
	}
}

// otherHosts: inventory hosts without a member (a jump host, a spare) that
// could not be asked, and probes that failed on a host.
func (b *builder) otherHosts() {
	members := map[string]bool{}
	for _, v := range b.vs {
		members[v.inv.Host] = true
	}
	for _, h := range b.f.Hosts {
		if h == nil {
			continue
		}
		if !members[h.Name] && !h.Reach.Asked() {
			b.note(Finding{
				Code: "host-unreachable", Severity: Info,
				Summary:  fmt.Sprintf("host %s (no member) could not be asked", h.Name),
				Evidence: []string{hostReachLine(h, h.Name)}, Hosts: []string{h.Name},
			})
		}
		if len(h.Notes) > 0 {
			var ev []string
			for _, n := range h.Notes {
				ev = append(ev, h.Name+": "+n+" (ssh)")
			}
			b.note(Finding{
				Code: "probe-failed", Severity: Info,
				Summary:  fmt.Sprintf("some facts of %s could not be read", h.Name),
				Evidence: ev, Hosts: []string{h.Name},
			})
		}
	}
}
