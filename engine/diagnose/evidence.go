package diagnose

import (
	"fmt"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
)

// Evidence lines quote the facts, each ending with where it was read:
// (status), (member list), (ssh), (data dir), (service), (settings).

// leaderName names a leader id through the cluster's list.
func leaderName(id string, list []*listEntry) string {
	if id == "" || id == "0" {
		return "none"
	}
	for _, e := range list {
		if e.m.ID == id && e.m.Name != "" {
			return e.m.Name + " " + id
		}
	}
	return id
}

// statusLine: "etcd1 (h1): raft index 10234, revision 5011, leader none (status)".
func statusLine(v *view, list []*listEntry) string {
	s := v.mem.Status
	line := fmt.Sprintf("%s: raft index %d, revision %d, leader %s", v.label(), s.RaftIndex, s.Revision, leaderName(s.Leader, list))
	if s.Version != "" {
		line += ", etcd " + s.Version
	}
	if s.IsLearner {
		line += ", learner"
	}
	if len(s.Errors) > 0 {
		line += ", errors: " + strings.Join(s.Errors, "; ")
	}
	return line + " (status)"
}

// reachLine: "etcd2 (h2): could not ask over SSH: timeout: dial tcp ...".
func reachLine(v *view) string {
	if v.host == nil {
		return fmt.Sprintf("%s: host %s has no facts (not in the facts file)", v.label(), v.inv.Host)
	}
	return hostReachLine(v.host, v.label())
}

func hostReachLine(h *facts.Host, label string) string {
	line := fmt.Sprintf("%s: could not ask over SSH at %s: %s", label, h.Address, h.Reach)
	if h.Error != "" {
		line += ": " + h.Error
	}
	return line + " (ssh)"
}

// apiLine says why a member did not answer its client API.
func apiLine(v *view) string {
	if v.mem == nil {
		return fmt.Sprintf("%s: client API not asked (no facts)", v.label())
	}
	var line string
	switch v.mem.API {
	case facts.APIDown:
		line = fmt.Sprintf("%s: client API down at %s: nothing answers", v.label(), v.mem.ClientURL)
	case facts.APICouldNotAsk:
		line = fmt.Sprintf("%s: client API at %s could not be asked", v.label(), v.mem.ClientURL)
	case facts.APIAnswered:
		line = fmt.Sprintf("%s: client API at %s answered without a status", v.label(), v.mem.ClientURL)
	default:
		line = fmt.Sprintf("%s: client API at %s: %q", v.label(), v.mem.ClientURL, v.mem.API)
	}
	if v.mem.Error != "" {
		line += " (" + v.mem.Error + ")"
	}
	return line
}

// dataLine: "etcd3 (h3): data dir /var/lib/etcd has member/, 12.0 MiB (data dir)".
func dataLine(v *view) string {
	d := v.host.DataDir
	if d == nil {
		return fmt.Sprintf("%s: data dir not read (data dir)", v.label())
	}
	var s string
	switch {
	case !d.Present:
		s = fmt.Sprintf("data dir %s is absent", d.Path)
	case !d.HasMember:
		s = fmt.Sprintf("data dir %s has no member/ (%s)", d.Path, size(d.SizeBytes))
	default:
		s = fmt.Sprintf("data dir %s has member/, %s", d.Path, size(d.SizeBytes))
		if d.OfflineRevision > 0 {
			s += fmt.Sprintf(", revision %d read offline", d.OfflineRevision)
		}
	}
	return fmt.Sprintf("%s: %s (data dir)", v.label(), s)
}

// serviceLine: "etcd3 (h3): systemd unit etcd failed, enabled, no etcd process (service)".
func serviceLine(v *view) string {
	s := v.host.Service
	if s == nil {
		return fmt.Sprintf("%s: service state not read (service)", v.label())
	}
	var parts []string
	if s.Kind == "static-pod" {
		if s.ManifestPresent {
			parts = append(parts, "static pod manifest "+s.Manifest+" present")
		} else {
			parts = append(parts, "no static pod manifest "+s.Manifest)
		}
	} else {
		st := s.Active
		if st == "" {
			st = "in an unknown state"
		}
		parts = append(parts, fmt.Sprintf("systemd unit %s %s", s.Unit, st))
		if s.Enabled != "" {
			parts = append(parts, s.Enabled)
		}
	}
	if s.Running {
		parts = append(parts, "an etcd process runs")
	} else {
		parts = append(parts, "no etcd process")
	}
	return fmt.Sprintf("%s: %s (service)", v.label(), strings.Join(parts, ", "))
}

// listedLine: "etcd1's member list has etcd3 3f2a... at http://10.77.0.13:2380 (member list)".
func listedLine(e *listEntry) string {
	name := e.m.Name
	if name == "" {
		name = "an unstarted member"
	}
	kind := ""
	if e.m.IsLearner {
		kind = " as a learner"
	}
	return fmt.Sprintf("%s %s %s at %s%s (member list)", listsOf(e.from), name, e.m.ID, strings.Join(e.m.PeerURLs, ","), kind)
}

// listsOf is "etcd1's member list has" or "the member lists of etcd1 and etcd2 have".
func listsOf(from []string) string {
	if len(from) == 1 {
		return from[0] + "'s member list has"
	}
	return "the member lists of " + and(from) + " have"
}

// memberListLine is the listed entry of an inventory member.
func memberListLine(v *view) string {
	kind := ""
	if v.listed.IsLearner {
		kind = " as a learner"
	}
	return fmt.Sprintf("%s's member list has %s %s at %s%s (member list)", v.listedBy, v.inv.Name, v.listed.ID, strings.Join(v.listed.PeerURLs, ","), kind)
}

func size(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", b)
}

// stateLines are the lines that say what is known of a member that does
// not answer: SSH, data dir, service.
func stateLines(v *view) []string {
	if !v.asked() {
		return []string{reachLine(v)}
	}
	lines := []string{apiLine(v), dataLine(v)}
	if v.host.Service != nil {
		lines = append(lines, serviceLine(v))
	}
	return lines
}
