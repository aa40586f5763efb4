package facts

import (
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints the facts for a person: one line per host, one per
// member, then a line for everything that looks odd.
func (f *Facts) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "HOST\tREACH\tADDRESSES\tSERVICE\tDATA DIR\tETCD\tPEER PORT\tCLIENT PORT\n")
	for _, h := range f.Hosts {
		if !h.Reach.Asked() {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\n", h.Name, h.Reach)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.Reach, orDash(strings.Join(h.Addresses, ",")),
			serviceText(h.Service), dataDirText(h.DataDir), orDash(h.EtcdVersion), portText(h.PeerPort), portText(h.ClientPort))
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "MEMBER\tHOST\tAPI\tLEADER\tRAFT TERM/INDEX\tREVISION\tDB SIZE\tLEARNER\tALARMS\tCLUSTER ID\n")
	for _, m := range f.Members {
		s := m.Status
		if s == nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\n", m.Name, m.Host, m.API)
			continue
		}
		leader := s.Leader
		switch {
		case !s.HasLeader():
			leader = "NONE"
		case s.Leader == s.MemberID:
			leader = "self"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d\t%s\t%s\t%s\t%s\n", m.Name, m.Host, m.API, leader, s.RaftTerm, s.RaftIndex,
			s.Revision, bytesText(s.DBSize), yesNo(s.IsLearner), orDash(strings.Join(s.Alarms, ",")), s.ClusterID)
	}
	var certs [][2]string
	for _, h := range f.Hosts {
		for _, c := range h.Certificates {
			certs = append(certs, [2]string{h.Name, certText(c)})
		}
	}
	if len(certs) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "HOST\tCERTIFICATE\n")
		for _, c := range certs {
			fmt.Fprintf(tw, "%s\t%s\n", c[0], c[1])
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if odd := f.Odd(); len(odd) > 0 {
		fmt.Fprintln(w)
		for _, o := range odd {
			fmt.Fprintf(w, "! %s\n", o)
		}
	}
	_, err := fmt.Fprintf(w, "\ncollected %s in %s (timeout %s per host)\n", f.CollectedAt.Format("2006-01-02 15:04:05Z07:00"),
		time.Duration(f.Elapsed), time.Duration(f.Timeout))
	return err
}

// Odd lists what deserves a look, one line each: not answered, not
// matching the inventory, alarms, probes that failed. It states facts;
// diagnose draws the conclusions.
func (f *Facts) Odd() []string {
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	for _, h := range f.Hosts {
		if !h.Reach.Asked() {
			add("host %s (%s): could not ask over ssh: %s: %s", h.Name, h.Address, h.Reach, h.Error)
			continue
		}
		if ip := net.ParseIP(h.Address); ip != nil && len(h.Addresses) > 0 && !containsIP(h.Addresses, ip) {
			add("host %s: inventory address %s is not on the host now (it has %s)", h.Name, h.Address, strings.Join(h.Addresses, ", "))
		}
		if h.DataDir != nil {
			switch {
			case !h.DataDir.Present:
				add("host %s: data dir %s is absent", h.Name, h.DataDir.Path)
			case !h.DataDir.HasMember:
				add("host %s: data dir %s has no member/ (no etcd data)", h.Name, h.DataDir.Path)
			}
		}
		if h.Service != nil && !h.Service.Running {
			add("host %s: no etcd process runs", h.Name)
		}
		if h.Settings != nil && h.Member != "" && h.Settings.Name != "" && h.Settings.Name != h.Member {
			add("host %s: %s starts etcd as %q, the inventory says %q", h.Name, h.Settings.Source, h.Settings.Name, h.Member)
		}
		if h.Settings != nil && h.Settings.ForceNewCluster {
			add("host %s: %s still sets force-new-cluster", h.Name, h.Settings.Source)
		}
		for _, c := range h.Certificates {
			switch {
			case !c.Present:
				add("host %s: no certificate at %s (%s)", h.Name, c.Path, c.Setting)
			case c.Error != "":
				add("host %s: certificate %s (%s): %s", h.Name, c.Path, c.Setting, c.Error)
			case !c.NotAfter.IsZero() && c.NotAfter.Before(f.CollectedAt):
				add("host %s: certificate %s (%s) expired on %s", h.Name, c.Path, c.Setting, c.NotAfter.Format(time.RFC3339))
			}
		}
		for _, n := range h.Notes {
			add("host %s: %s", h.Name, n)
		}
	}
	clusters := map[string][]string{}
	for _, m := range f.Members {
		if m.API != APIAnswered {
			add("member %s: %s: %s", m.Name, m.API, m.Error)
			continue
		}
		if m.Error != "" {
			add("member %s: %s", m.Name, m.Error)
		}
		if s := m.Status; s != nil {
			clusters[s.ClusterID] = append(clusters[s.ClusterID], m.Name)
			if !s.HasLeader() {
				add("member %s: knows no leader", m.Name)
			}
			if len(s.Alarms) > 0 {
				add("member %s: alarm %s", m.Name, strings.Join(s.Alarms, ", "))
			}
			if s.IsLearner {
				add("member %s: is a learner", m.Name)
			}
		}
	}
	if len(clusters) > 1 {
		ids := make([]string, 0, len(clusters))
		for id := range clusters {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		var parts []string
		for _, id := range ids {
			parts = append(parts, id+" ("+strings.Join(clusters[id], ", ")+")")
		}
		add("members answer with different cluster ids: %s", strings.Join(parts, ", "))
	}
	return out
}

func containsIP(addrs []string, ip net.IP) bool {
	for _, a := range addrs {
		if x := net.ParseIP(a); x != nil && x.Equal(ip) {
			return true
		}
	}
	return false
}

// certText is one certificate for people: path, settings, then what it
// says, or why it says nothing.
func certText(c Certificate) string {
	s := c.Path + " (" + c.Setting + "): "
	switch {
	case !c.Present:
		return s + "ABSENT"
	case c.Error != "":
		return s + c.Error
	}
	sans := "no SANs"
	if len(c.SANs) > 0 {
		sans = "SANs " + strings.Join(c.SANs, ", ")
	}
	return s + fmt.Sprintf("%s, %s, valid until %s, %s, issuer %s", c.Subject, sans, c.NotAfter.Format("2006-01-02"), orDash(c.KeyType), c.Issuer)
}

func serviceText(s *Service) string {
	if s == nil {
		return "-"
	}
	var parts []string
	if s.Kind == "static-pod" {
		if s.ManifestPresent {
			parts = append(parts, "manifest")
		} else {
			parts = append(parts, "NO manifest")
		}
	} else {
		parts = append(parts, orDash(s.Active), orDash(s.Enabled))
	}
	if s.Running {
		parts = append(parts, "running")
	} else {
		parts = append(parts, "not running")
	}
	return strings.Join(parts, ",")
}

func dataDirText(d *DataDir) string {
	switch {
	case d == nil:
		return "-"
	case !d.Present:
		return "ABSENT"
	case !d.HasMember:
		return "empty (no member/), " + bytesText(d.SizeBytes)
	}
	s := "member/, " + bytesText(d.SizeBytes)
	if d.OfflineRevision > 0 {
		s += ", rev " + strconv.FormatInt(d.OfflineRevision, 10)
	}
	return s
}

func portText(p *bool) string {
	switch {
	case p == nil:
		return "?"
	case *p:
		return "listening"
	}
	return "closed"
}

func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
