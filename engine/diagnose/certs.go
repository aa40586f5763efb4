package diagnose

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
)

// CertMinValid is how long a member certificate must still be valid at the
// facts' collection: less is a cert-expiring warning.
const CertMinValid = 7 * 24 * time.Hour

// certificates: the certificate files each member's host says etcd serves
// with, against the member's inventory URLs (the addresses it must have
// after recovery) and the collection time. Only what the facts hold is
// checked: names and dates (pki.Check, without roots: the chain is the
// certificate gate's at apply time). These findings never change the
// situation; when a recommendation is made they are also its notes (the
// header of the plan `new` writes).
func (b *builder) certificates() {
	now := b.f.CollectedAt
	if now.IsZero() {
		now = time.Now()
	}
	for _, v := range b.vs {
		if !v.asked() {
			continue
		}
		for _, c := range v.host.Certificates {
			for _, f := range b.certFindings(v, c, now) {
				b.note(f)
				if r := b.d.Recommend; r != nil {
					n := "certificate: " + f.Summary
					if f.Severity == Error && b.recommended(v) {
						n += "; the plan needs a cert-issue step (new --ca-cert PATH --ca-key PATH)"
					}
					r.Notes = append(r.Notes, n)
				}
			}
		}
	}
}

// certURLs are the inventory URLs c must serve for v: the peer URL for a
// peer certificate, the client URL for a server certificate, https only.
func certURLs(v *view, c facts.Certificate) (peer, client string) {
	if c.Serves(facts.SettingPeerCertFile) && strings.HasPrefix(v.inv.PeerURL, "https://") {
		peer = v.inv.PeerURL
	}
	if c.Serves(facts.SettingCertFile) && strings.HasPrefix(v.inv.ClientURL, "https://") {
		client = v.inv.ClientURL
	}
	return peer, client
}

// certOf rebuilds what pki.Check looks at (names and dates) from the facts,
// which hold no PEM.
func certOf(c facts.Certificate) *x509.Certificate {
	x := &x509.Certificate{NotBefore: c.NotBefore, NotAfter: c.NotAfter}
	for _, s := range c.SANs {
		kind, val, _ := strings.Cut(s, ":")
		switch kind {
		case "IP":
			if ip := net.ParseIP(val); ip != nil {
				x.IPAddresses = append(x.IPAddresses, ip)
			}
		case "DNS":
			x.DNSNames = append(x.DNSNames, val)
		case "URI":
			if u, err := url.Parse(val); err == nil {
				x.URIs = append(x.URIs, u)
			}
		}
	}
	return x
}

func (b *builder) certFindings(v *view, c facts.Certificate, now time.Time) []Finding {
	peer, client := certURLs(v, c)
	if peer == "" && client == "" {
		return nil // not used for the member's https URLs
	}
	urls := nonEmpty(peer, client)
	name, host := v.inv.Name, v.inv.Host
	what := fmt.Sprintf("%s (%s)", c.Path, c.Setting)
	base := Finding{Members: []string{name}, Hosts: []string{host}}
	src := "the settings"
	if v.host.Settings != nil {
		src = v.host.Settings.Source
	}
	needs := fmt.Sprintf("%s: %s names %s for %s (settings)", v.label(), src, c.Path, and(urls))

	if !c.Present {
		f := base
		f.Code, f.Severity = "cert-absent", Error
		verb := "names"
		if len(c.Settings()) > 1 {
			verb = "name"
		}
		f.Summary = fmt.Sprintf("no certificate at %s on %s: %s's %s %s it; etcd does not start without it", c.Path, host, name, c.Setting, verb)
		f.Evidence = []string{needs, fmt.Sprintf("%s: %s does not exist (certificate)", v.label(), c.Path)}
		f.Hint = b.reissueHint(v, "make one for "+and(hostsOfURLs(urls)))
		return []Finding{f}
	}
	if c.Error != "" || c.NotAfter.IsZero() {
		why := c.Error
		if why == "" {
			why = "no validity in the facts"
		}
		f := base
		f.Code, f.Severity = "cert-unreadable", Error
		f.Summary = fmt.Sprintf("%s's certificate %s on %s could not be read: %s", name, what, host, why)
		f.Evidence = []string{needs, fmt.Sprintf("%s: %s: %s (certificate)", v.label(), c.Path, why)}
		f.Hint = fmt.Sprintf("look at it on %s: openssl x509 -noout -text -in %s; if it is damaged, %s", host, shellquote.Quote(c.Path),
			b.reissueHint(v, "make a new one for "+and(hostsOfURLs(urls))))
		return []Finding{f}
	}

	x := certOf(c)
	desc := fmt.Sprintf("%s: %s: %s (certificate)", v.label(), c.Path, certDesc(c))
	var out []Finding
	// names: which side refuses it
	var missing []string
	var refuse []string
	for _, side := range []struct{ url, who string }{{peer, "peers"}, {client, "clients"}} {
		if side.url == "" {
			continue
		}
		for _, p := range pki.Check(x, pki.Want{Names: []string{side.url}, Now: now}) {
			if p.Kind == pki.ProblemMissingSAN {
				h := hostOfURL(side.url)
				if !contains(missing, h) {
					missing = append(missing, h)
				}
				refuse = append(refuse, side.who)
			}
		}
	}
	problems := pki.Check(x, pki.Want{Names: urls, Now: now, MinValid: CertMinValid})
	if len(missing) > 0 {
		ev := []string{needs, desc}
		for _, p := range problems {
			if p.Kind == pki.ProblemMissingSAN {
				ev = append(ev, fmt.Sprintf("%s: %s is %s (certificate)", v.label(), c.Path, p.Text))
			}
		}
		lists := "no SANs"
		if len(c.SANs) > 0 {
			lists = strings.Join(c.SANs, ", ")
		}
		addr := "its inventory address"
		if len(missing) > 1 {
			addr = "its inventory addresses"
		}
		f := base
		f.Code, f.Severity = "cert-missing-san", Error
		f.Summary = fmt.Sprintf("%s's certificate %s lists %s but not %s, %s: %s will refuse it",
			name, what, lists, orList(missing), addr, strings.Join(refuse, " and "))
		f.Evidence = ev
		f.Hint = b.reissueHint(v, "reissue it for "+and(missing))
		out = append(out, f)
	}
	for _, p := range problems {
		f := base
		f.Evidence = []string{needs, desc}
		switch p.Kind {
		case pki.ProblemExpired:
			f.Code, f.Severity = "cert-expired", Error
			f.Summary = fmt.Sprintf("%s's certificate %s on %s %s: peers and clients refuse it", name, what, host, p.Text)
			f.Hint = b.reissueHint(v, "reissue it")
		case pki.ProblemExpiring:
			f.Code, f.Severity = "cert-expiring", Warning
			f.Summary = fmt.Sprintf("%s's certificate %s on %s %s", name, what, host, p.Text)
			f.Hint = "reissue it before then (with the CA that signed it; a plan's cert-issue step does it), or it stops serving on that day"
		case pki.ProblemNotYetValid:
			f.Code, f.Severity = "cert-not-yet-valid", Warning
			f.Summary = fmt.Sprintf("%s's certificate %s on %s is %s", name, what, host, p.Text)
			f.Hint = fmt.Sprintf("compare the clocks of %s and this machine (timedatectl); peers refuse the certificate until then", host)
		default:
			continue
		}
		out = append(out, f)
	}
	return out
}

// reissueHint says how to get a new certificate for v: the recommended
// plan with the CA flags when it acts on v, else a cert-issue step.
func (b *builder) reissueHint(v *view, what string) string {
	if b.recommended(v) {
		return fmt.Sprintf("%s: the plan needs a cert-issue step (etcd-rescue new %s ... --ca-cert PATH --ca-key PATH, with the CA that signed the other members' certificates; --ca-host HOST when its key stays on that host)",
			what, b.d.Recommend.Scenario)
	}
	return fmt.Sprintf("%s with the CA that signed the other members' certificates before etcd restarts on %s: a plan with a cert-issue step for %s does it (docs/plan-format.md, Certificates)",
		what, v.inv.Host, v.inv.Name)
}

// recommended reports whether the recommendation is an ip-change or
// lost-host plan that acts on v: the plans `new` can give a cert-issue step.
func (b *builder) recommended(v *view) bool {
	r := b.d.Recommend
	if r == nil || (r.Scenario != string(IPChange) && r.Scenario != string(LostHost)) {
		return false
	}
	for _, m := range r.Members {
		if m.Name == v.inv.Name {
			return true
		}
	}
	return false
}

// certDesc is one certificate for people, as pki.Describe says it.
func certDesc(c facts.Certificate) string {
	sans := "no SANs"
	if len(c.SANs) > 0 {
		sans = "SANs " + strings.Join(c.SANs, ", ")
	}
	kt := c.KeyType
	if kt == "" {
		kt = "unknown key type"
	}
	return fmt.Sprintf("%s, %s, valid until %s, %s, issued by %s", c.Subject, sans, c.NotAfter.UTC().Format("2006-01-02"), kt, c.Issuer)
}

func hostOfURL(u string) string {
	if p, err := url.Parse(u); err == nil && p.Hostname() != "" {
		return p.Hostname()
	}
	return u
}

func hostsOfURLs(urls []string) []string {
	var out []string
	for _, u := range urls {
		if h := hostOfURL(u); !contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// orList is "a", "a or b", "a, b or c".
func orList(ss []string) string {
	if len(ss) <= 1 {
		return strings.Join(ss, "")
	}
	return strings.Join(ss[:len(ss)-1], ", ") + " or " + ss[len(ss)-1]
}
