package diagnose

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
)

// view is one inventory member with everything the facts say about it.
type view struct {
	inv  facts.InventoryMember
	host *facts.Host   // nil when the facts have no such host
	mem  *facts.Member // nil when the facts have no such member
	// listed is this member's entry in the cluster's member list (nil when
	// it is not listed or no member answered); listedBy is the member whose
	// list it was read from.
	listed   *facts.ListedMember
	listedBy string
}

// dataState is what is known about a member's data dir.
type dataState int

const (
	dataUnknown dataState = iota // could not ask
	dataNo                       // asked: no member/ in the data dir
	dataYes                      // etcd answers, or member/ is in the data dir
)

// asked reports whether the member's host answered over SSH.
func (v *view) asked() bool { return v.host != nil && v.host.Reach.Asked() }

// answered reports whether the member answered its client API.
func (v *view) answered() bool {
	return v.mem != nil && v.mem.API == facts.APIAnswered && v.mem.Status != nil
}

func (v *view) data() dataState {
	switch {
	case v.answered():
		return dataYes
	case v.asked() && v.host.DataDir != nil:
		if v.host.DataDir.HasMember {
			return dataYes
		}
		return dataNo
	}
	return dataUnknown
}

// voter reports whether the member counts for quorum: listed as a voting
// member, or (no member list known) in the inventory.
func (v *view) voter(listKnown bool) bool {
	if !listKnown {
		return true
	}
	return v.listed != nil && !v.listed.IsLearner
}

// label is "etcd1 (h1)".
func (v *view) label() string { return fmt.Sprintf("%s (%s)", v.inv.Name, v.inv.Host) }

// id is the member's hex id: from the cluster's list, else its own status.
func (v *view) id() string {
	if v.listed != nil && v.listed.ID != "" {
		return v.listed.ID
	}
	if v.answered() {
		return v.mem.Status.MemberID
	}
	return ""
}

// oldPeerURL is the member's peer URL in the cluster's list ("" if not
// listed): the first one that is not the inventory's, else the first.
func (v *view) oldPeerURL() string {
	if v.listed == nil || len(v.listed.PeerURLs) == 0 {
		return ""
	}
	for _, u := range v.listed.PeerURLs {
		if !sameURL(u, v.inv.PeerURL) {
			return u
		}
	}
	return v.listed.PeerURLs[0]
}

// peerMoved reports whether the cluster lists the member at other peer
// URLs than the inventory's.
func (v *view) peerMoved() bool {
	if v.listed == nil || len(v.listed.PeerURLs) == 0 {
		return false
	}
	for _, u := range v.listed.PeerURLs {
		if sameURL(u, v.inv.PeerURL) {
			return false
		}
	}
	return true
}

// listEntry is one member of the cluster's list, merged over the lists of
// the members that answered.
type listEntry struct {
	m    facts.ListedMember
	from []string // members whose list has it
	inv  *view    // inventory member it was matched to
}

// clusterList merges the member lists of the answering members, keyed by
// member id, in the order first seen.
func clusterList(views []*view) []*listEntry {
	var out []*listEntry
	byKey := map[string]*listEntry{}
	for _, v := range views {
		if !v.answered() {
			continue
		}
		for _, lm := range v.mem.MemberList {
			key := lm.ID
			if key == "" {
				key = lm.Name + " " + strings.Join(lm.PeerURLs, ",")
			}
			e := byKey[key]
			if e == nil {
				e = &listEntry{m: lm}
				byKey[key] = e
				out = append(out, e)
			}
			e.from = append(e.from, v.inv.Name)
		}
	}
	return out
}

// match links list entries to inventory members: by peer URL first (the
// strongest evidence), then by name. Entries left over are extras.
func match(views []*view, list []*listEntry) (extras []*listEntry) {
	for _, e := range list {
		for _, v := range views {
			if v.listed != nil {
				continue
			}
			for _, u := range e.m.PeerURLs {
				if sameURL(u, v.inv.PeerURL) {
					e.inv = v
				}
			}
			if e.inv != nil {
				v.listed, v.listedBy = &e.m, e.from[0]
				break
			}
		}
	}
	for _, e := range list {
		if e.inv != nil {
			continue
		}
		for _, v := range views {
			if v.listed == nil && e.m.Name != "" && e.m.Name == v.inv.Name {
				e.inv = v
				v.listed, v.listedBy = &e.m, e.from[0]
				break
			}
		}
		if e.inv == nil {
			extras = append(extras, e)
		}
	}
	return extras
}

func sameURL(a, b string) bool {
	return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}

// hostOf is the host part of a URL ("10.77.0.13"), or "" if none.
func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Hostname()
}

// names joins member names.
func names(vs []*view) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, v.inv.Name)
	}
	return out
}

func hostsOf(vs []*view) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range vs {
		if !seen[v.inv.Host] {
			seen[v.inv.Host] = true
			out = append(out, v.inv.Host)
		}
	}
	sort.Strings(out)
	return out
}

// and joins words as "a, b and c".
func and(words []string) string {
	switch len(words) {
	case 0:
		return "none"
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}
