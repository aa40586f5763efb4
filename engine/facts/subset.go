package facts

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Subset is the part of the facts a reviewed plan depends on (etcd-rescue
// plan --out records it; apply compares it with the facts of the moment):
// which hosts could be asked, their data dirs, which members answer with
// which ids, cluster ids, revisions and alarms, the member list and the
// leader. What changes on its own in a healthy cluster (raft terms and
// indexes, db sizes, HashKV, addresses) is left out.
type Subset struct {
	CollectedAt time.Time      `json:"collectedAt"`
	Hosts       []SubsetHost   `json:"hosts"`   // inventory hosts, sorted by name
	Members     []SubsetMember `json:"members"` // inventory members, in inventory order
	// MemberList is the cluster's member list: the union, by id, of the
	// lists the answering members returned; nil when no member answered.
	MemberList []SubsetListed `json:"memberList"`
}

// SubsetHost is one host: whether it could be asked, and its data dir.
type SubsetHost struct {
	Name  string `json:"name"`
	Reach Reach  `json:"reach"`
	Error string `json:"error,omitempty"`
	// DataDir is nil when the host could not be asked.
	DataDir *SubsetDataDir `json:"dataDir,omitempty"`
}

// SubsetDataDir is the presence of a data dir, of member/ inside it, and
// the revision read offline when etcd was not running (0: unknown).
type SubsetDataDir struct {
	Path            string `json:"path"`
	Present         bool   `json:"present"`
	HasMember       bool   `json:"hasMember"`
	OfflineRevision int64  `json:"offlineRevision,omitempty"`
}

// SubsetMember is one inventory member: whether its API answered, and what
// it said.
type SubsetMember struct {
	Name  string   `json:"name"`
	Host  string   `json:"host"`
	API   APIState `json:"api"`
	Error string   `json:"error,omitempty"`
	// Below: only when API is answered.
	ID        string   `json:"id,omitempty"`
	ClusterID string   `json:"clusterID,omitempty"`
	Leader    string   `json:"leader,omitempty"` // "0" or "": no leader known
	IsLearner bool     `json:"isLearner,omitempty"`
	Revision  int64    `json:"revision,omitempty"`
	Alarms    []string `json:"alarms,omitempty"`
}

// SubsetListed is one entry of the member list.
type SubsetListed struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"` // "" for a member added but never started
	PeerURLs  []string `json:"peerURLs"`
	IsLearner bool     `json:"isLearner,omitempty"`
}

// SubsetOf extracts the subset of f.
func SubsetOf(f *Facts) *Subset {
	s := &Subset{CollectedAt: f.CollectedAt, Hosts: []SubsetHost{}, Members: []SubsetMember{}}
	for _, h := range f.Hosts {
		sh := SubsetHost{Name: h.Name, Reach: h.Reach, Error: h.Error}
		if h.Reach.Asked() && h.DataDir != nil {
			d := h.DataDir
			sh.DataDir = &SubsetDataDir{Path: d.Path, Present: d.Present, HasMember: d.HasMember, OfflineRevision: d.OfflineRevision}
		}
		s.Hosts = append(s.Hosts, sh)
	}
	sort.Slice(s.Hosts, func(i, j int) bool { return s.Hosts[i].Name < s.Hosts[j].Name })
	byID := map[string]*SubsetListed{}
	for _, m := range f.Members {
		sm := SubsetMember{Name: m.Name, Host: m.Host, API: m.API, Error: m.Error}
		if m.API == APIAnswered && m.Status != nil {
			st := m.Status
			sm.ID, sm.ClusterID, sm.Leader, sm.IsLearner, sm.Revision = st.MemberID, st.ClusterID, st.Leader, st.IsLearner, st.Revision
			sm.Alarms = append([]string(nil), st.Alarms...)
			sort.Strings(sm.Alarms)
			for _, l := range m.MemberList {
				if byID[l.ID] == nil {
					byID[l.ID] = &SubsetListed{ID: l.ID, Name: l.Name, PeerURLs: sortedCopy(l.PeerURLs), IsLearner: l.IsLearner}
				}
			}
			if s.MemberList == nil {
				s.MemberList = []SubsetListed{}
			}
		}
		s.Members = append(s.Members, sm)
	}
	for _, l := range byID {
		s.MemberList = append(s.MemberList, *l)
	}
	sort.Slice(s.MemberList, func(i, j int) bool {
		a, b := s.MemberList[i], s.MemberList[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.ID < b.ID
	})
	return s
}

func sortedCopy(l []string) []string {
	out := append([]string{}, l...)
	sort.Strings(out)
	return out
}

// Drift is one difference between the facts at review and now.
type Drift struct {
	// Hard drifts make apply refuse (unless --allow-drift); the others are
	// shown and journalled.
	Hard bool `json:"hard"`
	// What classifies it: reach, data-dir, answers, member-id, cluster-id,
	// revision, alarm, member-list, leader.
	What string `json:"what"`
	Msg  string `json:"msg"`
}

// Compare lists what changed from the facts at review to now, by the rules
// of docs/cli.md ("Drift"): what would make the reviewed plan act on
// another world is hard; what a live cluster does on its own is not drift
// at all (a revision that grew, a raft term) or is shown only (a new
// leader while quorum held, a host that still cannot be asked for another
// reason). The order is fixed: hosts, then members, then the cluster.
func Compare(review, now *Subset) []Drift {
	var out []Drift
	add := func(hard bool, what, format string, args ...any) {
		out = append(out, Drift{Hard: hard, What: what, Msg: fmt.Sprintf(format, args...)})
	}
	at := review.CollectedAt.UTC().Format("15:04:05") + " UTC"

	nowHosts := map[string]SubsetHost{}
	for _, h := range now.Hosts {
		nowHosts[h.Name] = h
	}
	for _, r := range review.Hosts {
		n, ok := nowHosts[r.Name]
		if !ok {
			continue // the inventory is the reviewed one: cannot happen
		}
		switch {
		case r.Reach.Asked() && !n.Reach.Asked():
			add(true, "reach", "%s could be asked over SSH at review (%s), not now: %s", r.Name, at, reachText(n))
		case !r.Reach.Asked() && n.Reach.Asked():
			add(true, "reach", "%s could not be asked over SSH at review (%s): %s; it can be now", r.Name, at, reachText(r))
		case !r.Reach.Asked() && r.Reach != n.Reach:
			add(false, "reach", "%s could not be asked at review (%s) nor now (%s)", r.Name, r.Reach, n.Reach)
		}
		if r.DataDir == nil || n.DataDir == nil {
			continue
		}
		rd, nd := r.DataDir, n.DataDir
		if was, is := dirState(rd, true), dirState(nd, false); dataDirClass(rd) != dataDirClass(nd) {
			add(true, "data-dir", "%s: data dir %s %s at review, now %s", r.Name, rd.Path, was, is)
			continue
		}
		if rd.OfflineRevision > 0 && nd.OfflineRevision > 0 && rd.OfflineRevision != nd.OfflineRevision {
			if nd.OfflineRevision < rd.OfflineRevision {
				add(true, "revision", "%s: the revision in data dir %s went down %d → %d since review (restored from an older copy?)",
					r.Name, rd.Path, rd.OfflineRevision, nd.OfflineRevision)
			} else {
				add(true, "revision", "%s: the revision in data dir %s grew %d → %d while etcd was stopped at both looks: it ran since review",
					r.Name, rd.Path, rd.OfflineRevision, nd.OfflineRevision)
			}
		}
	}

	nowMembers := map[string]SubsetMember{}
	for _, m := range now.Members {
		nowMembers[m.Name] = m
	}
	type change struct{ from, to string }
	clusterChanges := map[change][]string{}
	var clusterOrder []change
	for _, r := range review.Members {
		n, ok := nowMembers[r.Name]
		if !ok {
			continue
		}
		ra, na := r.API == APIAnswered, n.API == APIAnswered
		switch {
		case ra && !na:
			add(true, "answers", "%s answered at review (%s), does not now: %s", r.Name, at, apiText(n))
		case !ra && na:
			add(true, "answers", "%s did not answer at review (%s): %s; it answers now", r.Name, at, apiText(r))
		case !ra && r.API != n.API:
			add(false, "answers", "%s did not answer at review (%s) nor now (%s)", r.Name, r.API, n.API)
		}
		if !ra || !na {
			continue
		}
		if r.ID != n.ID {
			add(true, "member-id", "%s: member id changed %s → %s since review (removed and added again?)", r.Name, r.ID, n.ID)
		}
		if r.ClusterID != n.ClusterID {
			c := change{r.ClusterID, n.ClusterID}
			if clusterChanges[c] == nil {
				clusterOrder = append(clusterOrder, c)
			}
			clusterChanges[c] = append(clusterChanges[c], r.Name)
		} else if n.Revision < r.Revision {
			add(true, "revision", "%s: revision went down %d → %d since review (data rolled back: a restore?)", r.Name, r.Revision, n.Revision)
		}
		for _, a := range minus(n.Alarms, r.Alarms) {
			add(true, "alarm", "%s: alarm %s raised since review", r.Name, a)
		}
		for _, a := range minus(r.Alarms, n.Alarms) {
			add(false, "alarm", "%s: alarm %s cleared since review", r.Name, a)
		}
	}
	for _, c := range clusterOrder {
		add(true, "cluster-id", "cluster id changed %s → %s (%s)", c.from, c.to, strings.Join(clusterChanges[c], ", "))
	}

	if review.MemberList != nil && now.MemberList != nil {
		nowList := map[string]SubsetListed{}
		for _, l := range now.MemberList {
			nowList[l.ID] = l
		}
		seen := map[string]bool{}
		for _, r := range review.MemberList {
			seen[r.ID] = true
			n, ok := nowList[r.ID]
			if !ok {
				add(true, "member-list", "member %s %s is no longer in the member list", listedName(r), r.ID)
				continue
			}
			switch {
			case r.Name == "" && n.Name != "":
				add(true, "member-list", "member %s was unstarted at review, is started now as %s", r.ID, n.Name)
			case r.Name != n.Name:
				add(true, "member-list", "member %s: name %s at review, %s now", r.ID, listedName(r), listedName(n))
			}
			if strings.Join(r.PeerURLs, ",") != strings.Join(n.PeerURLs, ",") {
				add(true, "member-list", "member %s %s: peer URLs changed %s → %s", listedName(n), r.ID, strings.Join(r.PeerURLs, ","), strings.Join(n.PeerURLs, ","))
			}
			if r.IsLearner != n.IsLearner {
				if r.IsLearner {
					add(true, "member-list", "member %s %s was a learner at review, is a voter now", listedName(n), r.ID)
				} else {
					add(true, "member-list", "member %s %s was a voter at review, is a learner now", listedName(n), r.ID)
				}
			}
		}
		for _, n := range now.MemberList {
			if !seen[n.ID] {
				add(true, "member-list", "member %s %s is new in the member list (peer %s)", listedName(n), n.ID, strings.Join(n.PeerURLs, ","))
			}
		}
	}

	rl, nl := review.Leader(), now.Leader()
	anyAnswered := review.MemberList != nil && now.MemberList != nil
	switch {
	case !anyAnswered:
		// Which members answer says it already.
	case rl != "" && nl == "":
		add(true, "leader", "no member knows a leader now; at review %s led (quorum lost since?)", review.leaderName(rl))
	case rl == "" && nl != "":
		add(true, "leader", "%s leads now; at review no member knew a leader (quorum came back?)", now.leaderName(nl))
	case rl != nl:
		add(false, "leader", "leader changed %s → %s (elections happen; not drift)", review.leaderName(rl), now.leaderName(nl))
	}
	return out
}

// HardDrifts counts the drifts that refuse.
func HardDrifts(ds []Drift) int {
	n := 0
	for _, d := range ds {
		if d.Hard {
			n++
		}
	}
	return n
}

// Leader is the id of the leader most answering members report; "" when
// none knows one.
func (s *Subset) Leader() string {
	votes := map[string]int{}
	best := ""
	for _, m := range s.Members {
		if m.API != APIAnswered || m.Leader == "" || m.Leader == "0" {
			continue
		}
		votes[m.Leader]++
		if v := votes[m.Leader]; v > votes[best] || (v == votes[best] && m.Leader < best) {
			best = m.Leader
		}
	}
	return best
}

func (s *Subset) leaderName(id string) string {
	for _, l := range s.MemberList {
		if l.ID == id && l.Name != "" {
			return l.Name + " (" + id + ")"
		}
	}
	return id
}

// WriteSummary prints the subset in a few lines, for the reviewer.
func (s *Subset) WriteSummary(w io.Writer) {
	var answering, silent, clusters []string
	seenCluster := map[string]bool{}
	for _, m := range s.Members {
		if m.API == APIAnswered {
			answering = append(answering, fmt.Sprintf("%s (revision %d)", m.Name, m.Revision))
			if !seenCluster[m.ClusterID] {
				seenCluster[m.ClusterID] = true
				clusters = append(clusters, m.ClusterID)
			}
		} else {
			silent = append(silent, fmt.Sprintf("%s (%s)", m.Name, m.API))
		}
	}
	fmt.Fprintf(w, "facts at %s:\n", s.CollectedAt.UTC().Format(time.RFC3339))
	if len(clusters) > 0 {
		leader := "no leader known"
		if l := s.Leader(); l != "" {
			leader = "leader " + s.leaderName(l)
		}
		fmt.Fprintf(w, "  cluster id %s; %s; %d in the member list\n", strings.Join(clusters, ", "), leader, len(s.MemberList))
	}
	fmt.Fprintf(w, "  answering: %s\n", orNone(answering))
	fmt.Fprintf(w, "  not answering: %s\n", orNone(silent))
	var dirs, unasked []string
	for _, h := range s.Hosts {
		switch {
		case !h.Reach.Asked():
			unasked = append(unasked, fmt.Sprintf("%s (%s)", h.Name, h.Reach))
		case h.DataDir != nil:
			dirs = append(dirs, h.Name+" "+dirState(h.DataDir, false))
		}
	}
	fmt.Fprintf(w, "  data dirs: %s\n", orNone(dirs))
	fmt.Fprintf(w, "  could not ask: %s\n", orNone(unasked))
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func dataDirClass(d *SubsetDataDir) int {
	switch {
	case !d.Present:
		return 0
	case !d.HasMember:
		return 1
	}
	return 2
}

// dirState describes a data dir in the past (at review) or now.
func dirState(d *SubsetDataDir, past bool) string {
	switch dataDirClass(d) {
	case 0:
		if past {
			return "was absent"
		}
		return "absent"
	case 1:
		if past {
			return "was present without member/"
		}
		return "present without member/"
	}
	if past {
		return "had member/"
	}
	return "has member/"
}

func reachText(h SubsetHost) string {
	if h.Error != "" {
		return string(h.Reach) + " (" + h.Error + ")"
	}
	return string(h.Reach)
}

func apiText(m SubsetMember) string {
	if m.Error != "" {
		return string(m.API) + " (" + m.Error + ")"
	}
	return string(m.API)
}

func listedName(l SubsetListed) string {
	if l.Name == "" {
		return "(unstarted)"
	}
	return l.Name
}

// minus is the elements of a not in b.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		found := false
		for _, y := range b {
			if x == y {
				found = true
				break
			}
		}
		if !found {
			out = append(out, x)
		}
	}
	return out
}
