package engine

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/access"
	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// The certificate gate runs at the start of every apply and resume
// session, right after the host gate and before anything is changed: a
// member the plan starts on the URLs of cluster.members (a remaining
// step-host whose type implements steps.StartsOnPlanURLs) must hold
// certificates valid for those URLs when they are https, or the member
// restarts and its peers refuse it ("x509: certificate is valid for
// 10.0.0.3, not 10.0.0.13") after the cluster was already changed.
//
// For each such member the gate reads, on its host, the files etcd's
// service will use (steps.ServiceTLS: the env file or manifest, else
// cluster.layout.pki), public certificates and CA bundles only, never a
// key; on every other member's host that answered at session start it
// reads the peer trusted CA bundle (what that member accepts) and the peer
// certificate (what it presents). A member with a remaining cert-issue
// step gets a new certificate valid for the plan's URLs by construction:
// the gate checks the CA it is issued from instead.
//
// The decision (decideCerts) is pure: what was read in, problems out.

// CertGateError is a session stopped before its first change because the
// certificates of some member the plan starts are not valid for the
// addresses it starts it on (or cannot be found or trusted). Nothing was
// changed on any host; apply created no run, resume left the run as it was.
type CertGateError struct {
	Command  string // apply | resume
	RunID    string // the run resumed; "" for apply
	Problems []CertProblem
}

// CertProblem is one reason a member's certificates cannot serve where the
// plan starts it.
type CertProblem struct {
	Member string
	Host   string
	// File is the path on Host the problem is about ("" when none is
	// known), Origin what named it ("ETCD_PEER_CERT_FILE in
	// /etc/etcd/etcd.env").
	File   string
	Origin string
	// Kind is a pki.Problem kind or one of CertAbsent, CertUnknownPaths,
	// CertUnreadable.
	Kind string
	Text string
	// Cert describes the certificate at fault (pki.Describe), for the
	// journal; "" when none was read.
	Cert string
	Hint string
}

// Problem kinds of the certificate gate beyond those of package pki.
const (
	CertAbsent       = "absent"        // no file at the path the service names
	CertUnknownPaths = "unknown-paths" // the service's certificate paths are unknown
	CertUnreadable   = "unreadable"    // the host or file could not be read
)

func (e *CertGateError) members() int {
	seen := map[string]bool{}
	for _, p := range e.Problems {
		seen[p.Member] = true
	}
	return len(seen)
}

func (e *CertGateError) Error() string {
	var b strings.Builder
	n := e.members()
	who, it := "1 member", "it"
	if n != 1 {
		who, it = fmt.Sprintf("%d members", n), "them"
	}
	fmt.Fprintf(&b, "%s stopped before the first change: the certificates of %s are not valid for the addresses the plan starts %s on; nothing was changed on any host", e.Command, who, it)
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  - %s on %s: %s", p.Member, p.Host, p.line())
		if p.Hint != "" {
			fmt.Fprintf(&b, "\n      hint: %s", p.Hint)
		}
	}
	return b.String()
}

// line is the problem after "MEMBER on HOST: ".
func (p CertProblem) line() string {
	switch {
	case p.Kind == CertAbsent && p.Origin != "":
		return p.Text + " (named by " + p.Origin + ")"
	case p.Kind == CertAbsent || p.Kind == CertUnknownPaths || p.File == "":
		return p.Text
	case p.Origin != "":
		return fmt.Sprintf("%s (%s): %s", p.File, p.Origin, p.Text)
	}
	return p.File + ": " + p.Text
}

// Journal is the refusal in one line for the journal: member, file, the
// certificate's description and the problem kinds; no hint, no PEM.
func (e *CertGateError) Journal() string {
	type key struct{ member, host, file, cert string }
	var order []key
	kinds := map[key][]string{}
	for _, p := range e.Problems {
		k := key{p.Member, p.Host, p.File, p.Cert}
		if _, ok := kinds[k]; !ok {
			order = append(order, k)
		}
		kinds[k] = append(kinds[k], p.Kind)
	}
	parts := make([]string, 0, len(order))
	for _, k := range order {
		s := k.member + " on " + k.host + ": "
		if k.file != "" {
			s += k.file + " "
		}
		if k.cert != "" {
			s += "(" + k.cert + ") "
		}
		parts = append(parts, s+strings.Join(sortedSet(kinds[k]), ", "))
	}
	return "certificate check refused: " + strings.Join(parts, "; ")
}

// certIssuer is a step that issues a new certificate for the member of its
// host (cert-issue): it says which CA it signs with.
type certIssuer interface {
	Issuer(ctx context.Context, c *steps.Ctx, env steps.Env) (*x509.Certificate, error)
}

var _ certIssuer = (*steps.CertIssue)(nil)

// certTarget is a member the gate checks.
type certTarget struct {
	Member *plans.Member
	Starts []string // remaining steps that start it on the plan's URLs
	Issue  *Node    // a remaining cert-issue step on its host, or nil
	Target *Target  // that step's target on the host
}

func isHTTPS(u string) bool { return strings.HasPrefix(strings.ToLower(u), "https://") }

// certTargets lists the members of cluster.members, in their order, that a
// remaining step-host (not done or skipped in st, nil: all; not marked done)
// starts on the plan's URLs, when their peer or client URL is https.
func certTargets(c *Compiled, st *runstate.State, markDone []Selector) []*certTarget {
	cl := c.Plan.Cluster
	if cl == nil {
		return nil
	}
	by := map[string]*certTarget{}
	eachRemaining(c, st, markDone, func(n *Node, t *Target) {
		s, ok := t.Params.(steps.StartsOnPlanURLs)
		if !ok || !s.StartsOnPlanURLs() {
			return
		}
		m := t.Member
		if m == nil {
			m = cl.MemberOnHost(t.Name())
		}
		if m == nil || !(isHTTPS(m.PeerURL) || isHTTPS(m.ClientURL)) {
			return
		}
		ct := by[m.Name]
		if ct == nil {
			ct = &certTarget{Member: m}
			by[m.Name] = ct
		}
		ct.Starts = append(ct.Starts, n.ID())
		if _, ok := t.Params.(certIssuer); ok && ct.Issue == nil {
			ct.Issue, ct.Target = n, t
		}
	})
	var out []*certTarget
	for _, m := range cl.Members {
		if ct := by[m.Name]; ct != nil {
			out = append(out, ct)
		}
	}
	return out
}

// certFile is one file read on a host.
type certFile struct {
	Path    string
	Present bool
	Certs   []*x509.Certificate
	Err     error
}

func (f certFile) leaf() *x509.Certificate {
	if len(f.Certs) == 0 {
		return nil
	}
	return f.Certs[0]
}

// certRead is what the gate read on one member's host.
type certRead struct {
	Err   error // reading which files the service uses failed
	Files steps.TLSFiles
	// Server and TrustedCA are read for checked members only.
	Server, Peer, TrustedCA, PeerTrustedCA certFile
	// Issuer is the CA of the member's remaining cert-issue step.
	Issuer    *x509.Certificate
	IssuerErr error
}

// certInput is everything the decision needs.
type certInput struct {
	Members []*plans.Member
	Layout  string // layout.service: systemd | static-pod
	Targets []*certTarget
	// Reads by member name; absent: its host did not answer at session
	// start (or runs no member of the plan's hosts).
	Reads          map[string]*certRead
	Skipped        map[string]string // member → why nothing was read there
	OperatorCA     []*x509.Certificate
	OperatorCAFrom string
	Logs           []string // what steps said while the gate asked them (the issuer's CA)
	Now            time.Time
	MinValid       time.Duration
}

// certVerdict is the decision.
type certVerdict struct {
	Problems []CertProblem
	Passed   []string // one line per checked member without a problem
	Notes    []string
}

// trustSet is T(m): what member m accepts as a peer, and where that comes
// from.
type trustSet struct {
	member *plans.Member
	certs  []*x509.Certificate
	from   string
}

// fileField names a TLSFiles path for messages.
type fileField int

const (
	fServerCert fileField = iota
	fTrustedCA
	fPeerCert
	fPeerTrustedCA
)

var (
	envVarOf   = map[fileField]string{fServerCert: "ETCD_CERT_FILE", fTrustedCA: "ETCD_TRUSTED_CA_FILE", fPeerCert: "ETCD_PEER_CERT_FILE", fPeerTrustedCA: "ETCD_PEER_TRUSTED_CA_FILE"}
	flagOf     = map[fileField]string{fServerCert: "--cert-file", fTrustedCA: "--trusted-ca-file", fPeerCert: "--peer-cert-file", fPeerTrustedCA: "--peer-trusted-ca-file"}
	pkiKeyOf   = map[fileField]string{fServerCert: "serverCert", fTrustedCA: "trustedCA", fPeerCert: "peerCert", fPeerTrustedCA: "peerTrustedCA"}
	fieldWords = map[fileField]string{fServerCert: "server certificate", fTrustedCA: "trusted CA bundle", fPeerCert: "peer certificate", fPeerTrustedCA: "peer trusted CA bundle"}
)

// origin says what named a file of the service on host.
func origin(in *certInput, files steps.TLSFiles, f fileField, host string) string {
	src := strings.TrimSuffix(files.Source, " on "+host)
	switch {
	case src == "":
		return ""
	case strings.Contains(src, ",") || strings.Contains(src, " and "):
		return "from " + files.Source
	case strings.HasPrefix(src, "layout.pki") || strings.HasPrefix(src, "cluster.layout.pki"):
		return "cluster.layout.pki." + pkiKeyOf[f]
	case strings.Contains(src, "kubeadm"):
		return "kubeadm's default"
	case in.Layout == "static-pod":
		return flagOf[f] + " in " + src
	}
	return envVarOf[f] + " in " + src
}

func pathOf(files steps.TLSFiles, f fileField) string {
	switch f {
	case fServerCert:
		return files.ServerCert
	case fTrustedCA:
		return files.TrustedCA
	case fPeerCert:
		return files.PeerCert
	}
	return files.PeerTrustedCA
}

func fileOf(r *certRead, f fileField) certFile {
	switch f {
	case fServerCert:
		return r.Server
	case fTrustedCA:
		return r.TrustedCA
	case fPeerCert:
		return r.Peer
	}
	return r.PeerTrustedCA
}

// decideCerts checks every target against what was read. It does no I/O.
func decideCerts(in certInput) certVerdict {
	var v certVerdict
	byName := map[string]*plans.Member{}
	for _, m := range in.Members {
		byName[m.Name] = m
	}
	targetOf := map[string]*certTarget{}
	for _, t := range in.Targets {
		targetOf[t.Member.Name] = t
	}
	// T(m) for every member read, and its current (or future) peer
	// certificate issuer.
	trust := map[string]*trustSet{}
	var noTrust []string
	for _, m := range in.Members {
		r := in.Reads[m.Name]
		if r == nil || r.Err != nil {
			continue
		}
		ts := &trustSet{member: m}
		var from []string
		if p := r.Files.PeerTrustedCA; p != "" && r.PeerTrustedCA.Err == nil && len(r.PeerTrustedCA.Certs) > 0 {
			ts.certs = append(ts.certs, r.PeerTrustedCA.Certs...)
			from = append(from, fmt.Sprintf("the peer trusted CA bundle %s on %s", p, m.Host))
		}
		if t := targetOf[m.Name]; t != nil && t.Issue != nil && r.Issuer != nil {
			ts.certs = append(ts.certs, r.Issuer)
			from = append(from, fmt.Sprintf("the CA step %s ships to %s", t.Issue.ID(), m.Host))
		}
		if len(ts.certs) == 0 {
			noTrust = append(noTrust, m.Name)
			continue
		}
		ts.from = strings.Join(from, " plus ")
		trust[m.Name] = ts
	}
	for _, name := range noTrust {
		v.Notes = append(v.Notes, name+": no peer trusted CA bundle read (not checked against it)")
	}
	for _, m := range in.Members {
		if in.Reads[m.Name] == nil {
			why := in.Skipped[m.Name]
			if why == "" {
				why = "its host did not answer at session start"
			}
			v.Notes = append(v.Notes, m.Name+" on "+m.Host+" skipped: "+why)
		} else if r := in.Reads[m.Name]; r.Err != nil && targetOf[m.Name] == nil {
			v.Notes = append(v.Notes, m.Name+" on "+m.Host+" skipped: "+errLine(r.Err))
		}
	}

	for _, t := range in.Targets {
		c := t.Member
		r := in.Reads[c.Name]
		add := func(p CertProblem) {
			p.Member, p.Host = c.Name, c.Host
			for i, q := range v.Problems {
				// One file serving as both server and peer certificate
				// has one expiry: say it once, with both settings.
				if q.Member == p.Member && q.File == p.File && q.Kind == p.Kind && q.Text == p.Text {
					v.Problems[i].Origin = mergeOrigins(q.Origin, p.Origin)
					return
				}
			}
			v.Problems = append(v.Problems, p)
		}
		before := len(v.Problems)
		if r == nil {
			why := in.Skipped[c.Name]
			if why == "" {
				why = c.Host + " did not answer at session start"
			}
			add(CertProblem{Kind: CertUnreadable, Text: "could not read its certificates: " + why,
				Hint: "bring " + c.Host + " back (it runs a step that starts " + c.Name + "), and run again"})
			continue
		}
		if r.Err != nil {
			add(CertProblem{Kind: CertUnreadable, Text: "could not read which certificates etcd will use on " + c.Host + ": " + errLine(r.Err),
				Hint: "check that the login user can read etcd's env file or manifest on " + c.Host + " (the plan's sudo), and run again"})
			continue
		}
		// Which files the service must have.
		var need []fileField
		if isHTTPS(c.ClientURL) {
			need = append(need, fServerCert)
		}
		if isHTTPS(c.PeerURL) {
			need = append(need, fPeerCert)
		}
		var unknown []string
		for _, f := range need {
			if pathOf(r.Files, f) == "" {
				unknown = append(unknown, fieldWords[f])
			}
		}
		if len(unknown) > 0 {
			add(CertProblem{Kind: CertUnknownPaths,
				Text: fmt.Sprintf("cannot tell which certificates etcd will use on %s (no %s named by the env file or manifest)", c.Host, strings.Join(unknown, " or ")),
				Hint: "set cluster.layout.pki (serverCert, peerCert, trustedCA, peerTrustedCA: the paths on the hosts; docs/plan-format.md#certificates), and run again"})
			continue
		}
		others := func() []*trustSet {
			var out []*trustSet
			for _, m := range in.Members {
				if m.Name != c.Name && trust[m.Name] != nil {
					out = append(out, trust[m.Name])
				}
			}
			return out
		}()
		var what []string
		if t.Issue != nil {
			what = checkIssuer(&in, t, r, others, in.Reads, targetOf, trust[c.Name], add)
		} else {
			for _, f := range need {
				what = append(what, checkCurrent(&in, t, r, f, others, trust[c.Name], add)...)
			}
		}
		if len(v.Problems) == before {
			v.Passed = append(v.Passed, c.Name+" on "+c.Host+": "+strings.Join(what, "; "))
		}
	}
	return v
}

// mergeOrigins says two settings naming one file: "ETCD_CERT_FILE and
// ETCD_PEER_CERT_FILE in /etc/etcd/etcd.env".
func mergeOrigins(a, b string) string {
	if a == b || b == "" {
		return a
	}
	ka, wa, oka := strings.Cut(a, " in ")
	kb, wb, okb := strings.Cut(b, " in ")
	if oka && okb && wa == wb {
		return ka + " and " + kb + " in " + wa
	}
	return a + "; " + b
}

// timeProblems are the expiry problems of c against the margin.
func timeProblems(in *certInput, c *x509.Certificate) []pki.Problem {
	var out []pki.Problem
	for _, p := range pki.Check(c, pki.Want{Now: in.Now, MinValid: in.MinValid}) {
		switch p.Kind {
		case pki.ProblemExpired, pki.ProblemExpiring, pki.ProblemNotYetValid:
			out = append(out, p)
		}
	}
	return out
}

// untrusted is the chain problem of c against a trust set, or nil.
func untrusted(in *certInput, c *x509.Certificate, inter []*x509.Certificate, roots []*x509.Certificate, from string) *pki.Problem {
	if pki.Contains(roots, c) {
		return nil
	}
	for _, p := range pki.Check(c, pki.Want{Roots: pki.Pool(roots), RootsFrom: from, Intermediates: inter, Now: in.Now}) {
		if p.Kind == pki.ProblemUntrusted {
			return &p
		}
	}
	return nil
}

func daysLeft(in *certInput, c *x509.Certificate) int {
	return int(math.Floor(c.NotAfter.Sub(in.Now).Hours() / 24))
}

// timeHint is the fix of an expiry problem.
func timeHint(in *certInput, kind string, c *x509.Certificate, fix string) string {
	days := int(in.MinValid.Hours() / 24)
	switch kind {
	case pki.ProblemExpiring:
		return fmt.Sprintf("it expires in %d day(s), within the margin of %d (cluster.layout.pki.minValidDays): %s; or, if that is known and accepted, lower layout.pki.minValidDays, and run again", daysLeft(in, c), days, fix)
	case pki.ProblemExpired:
		return fix + ", and run again (an expired certificate is always refused)"
	}
	return "check the clocks of the operator machine and of the hosts; " + fix + ", and run again"
}

// checkCurrent checks c's current file f (server or peer certificate).
func checkCurrent(in *certInput, t *certTarget, r *certRead, f fileField, others []*trustSet, self *trustSet, add func(CertProblem)) []string {
	c := t.Member
	path := pathOf(r.Files, f)
	org := origin(in, r.Files, f, c.Host)
	file := fileOf(r, f)
	reissue := fmt.Sprintf("add a cert-issue step on %s before it starts (docs/plan-format.md#certificates)", c.Name)
	url, urlWord := c.ClientURL, "client URL"
	usages := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if f == fPeerCert {
		url, urlWord = c.PeerURL, "peer URL"
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	addr := pki.HostOf(url)
	switch {
	case file.Err != nil:
		add(CertProblem{File: path, Origin: org, Kind: CertUnreadable, Text: errLine(file.Err),
			Hint: fmt.Sprintf("put a PEM certificate for %s there, or %s, and run again", addr, reissue)})
		return nil
	case !file.Present || file.leaf() == nil:
		add(CertProblem{File: path, Origin: org, Kind: CertAbsent, Text: fmt.Sprintf("no certificate at %s on %s", path, c.Host),
			Hint: fmt.Sprintf("%s, or install a certificate that lists %s there, and run again", reissue, addr)})
		return nil
	}
	leaf, inter := file.leaf(), file.Certs[1:]
	desc := pki.Describe(leaf)
	problem := func(p pki.Problem, hint string) {
		add(CertProblem{File: path, Origin: org, Kind: p.Kind, Text: p.Text, Cert: desc, Hint: hint})
	}
	for _, p := range pki.Check(leaf, pki.Want{Names: []string{url}, Usages: usages, Now: in.Now, MinValid: in.MinValid}) {
		switch p.Kind {
		case pki.ProblemMissingSAN:
			if !strings.Contains(p.Text, urlWord) {
				p.Text = strings.Replace(p.Text, "(the URL "+url+")", "(the "+urlWord+" "+url+")", 1)
				p.Text = strings.Replace(p.Text, "("+url+")", "(the "+urlWord+" "+url+")", 1)
			}
			problem(p, fmt.Sprintf("%s, or install a certificate that lists %s, and run again", reissue, addr))
		case pki.ProblemUsage:
			want := "serverAuth"
			if f == fPeerCert {
				want = "serverAuth and clientAuth (etcd peers are both)"
			}
			problem(p, fmt.Sprintf("a %s needs the extended key usages %s: %s, and run again", fieldWords[f], want, reissue))
		default:
			problem(p, timeHint(in, p.Kind, leaf, reissue))
		}
	}
	var did string
	if f == fServerCert {
		roots, from := in.OperatorCA, in.OperatorCAFrom
		if len(roots) == 0 && r.TrustedCA.Err == nil && len(r.TrustedCA.Certs) > 0 {
			roots, from = r.TrustedCA.Certs, fmt.Sprintf("the trusted CA bundle %s on %s", r.Files.TrustedCA, c.Host)
		}
		did = fmt.Sprintf("server certificate %s (%s) valid for %s", path, desc, addr)
		if len(roots) == 0 {
			return []string{did + ", chain not checked (no cluster.tls.ca, no trusted CA bundle read)"}
		}
		if p := untrusted(in, leaf, inter, roots, from); p != nil {
			problem(*p, fmt.Sprintf("install a server certificate signed by a CA in %s, or %s from that CA, and run again", from, reissue))
		}
		return []string{did + ", signed by a CA in " + from}
	}
	did = fmt.Sprintf("peer certificate %s (%s) valid for %s", path, desc, addr)
	if len(others) == 0 {
		if self == nil {
			return []string{did + ", chain not checked (no peer trusted CA bundle read)"}
		}
		others = []*trustSet{self}
	}
	var by []string
	for _, o := range others {
		p := untrusted(in, leaf, inter, o.certs, o.from)
		if p == nil {
			by = append(by, o.member.Name)
			continue
		}
		hint := fmt.Sprintf("%s from a CA %s trusts, or add the CA that signed %s (issuer %s) to %s, and run again", reissue, o.member.Name, path, leaf.Issuer.CommonName, o.from)
		if o.member.Name == c.Name {
			hint = fmt.Sprintf("%s, or add the CA that signed it (issuer %s) to %s, and run again", reissue, leaf.Issuer.CommonName, o.from)
		}
		problem(*p, hint)
	}
	return []string{did + ", accepted by " + strings.Join(by, ", ")}
}

// checkIssuer checks the CA a remaining cert-issue on c signs with.
func checkIssuer(in *certInput, t *certTarget, r *certRead, others []*trustSet, reads map[string]*certRead, targetOf map[string]*certTarget, self *trustSet, add func(CertProblem)) []string {
	c := t.Member
	step := t.Issue.ID()
	if r.IssuerErr != nil || r.Issuer == nil {
		why := "no CA certificate"
		if r.IssuerErr != nil {
			why = errLine(r.IssuerErr)
		}
		add(CertProblem{Kind: CertUnreadable, Text: fmt.Sprintf("cannot load the CA that step %s signs with: %s", step, why),
			Hint: fmt.Sprintf("check the CA files named by step %s, and run again", step)})
		return nil
	}
	ca := r.Issuer
	desc := pki.Describe(ca)
	problem := func(file, org string, p pki.Problem, hint string) {
		add(CertProblem{File: file, Origin: org, Kind: p.Kind, Text: p.Text, Cert: desc, Hint: hint})
	}
	for _, p := range timeProblems(in, ca) {
		p.Text = fmt.Sprintf("the CA that step %s signs with (%s): %s", step, desc, p.Text)
		problem("", "", p, timeHint(in, p.Kind, ca, "renew the CA, or issue from another one"))
	}
	var trustedBy []string
	for _, o := range others {
		p := untrusted(in, ca, nil, o.certs, o.from)
		if p == nil {
			trustedBy = append(trustedBy, o.member.Name)
			continue
		}
		or := reads[o.member.Name]
		file, org := or.Files.PeerTrustedCA, origin(in, or.Files, fPeerTrustedCA, o.member.Host)
		if org != "" {
			org = " (" + org + ")"
		}
		// The file is on the other member's host: named in the text.
		p.Text = fmt.Sprintf("the CA that step %s signs with (%s) is not in %s%s: %s would refuse %s's new certificate", step, desc, o.from, org, o.member.Name, c.Name)
		problem("", "", *p,
			fmt.Sprintf("add a cert-issue step from the same CA on %s too (it ships the CA), or add that CA to %s on %s, and run again", o.member.Name, file, o.member.Host))
	}
	// T(c) after the step must accept the others' peer certificates (or
	// the CA their own cert-issue will use).
	var verifies []string
	if self != nil {
		for _, m := range in.Members {
			if m.Name == c.Name {
				continue
			}
			or := reads[m.Name]
			if or == nil || or.Err != nil {
				continue
			}
			if ot := targetOf[m.Name]; ot != nil && ot.Issue != nil {
				if or.Issuer == nil {
					continue
				}
				if p := untrusted(in, or.Issuer, nil, self.certs, self.from); p != nil {
					p.Text = fmt.Sprintf("after step %s, it would not accept %s: its step %s signs with another CA (%s)", step, m.Name, ot.Issue.ID(), pki.Describe(or.Issuer))
					problem(r.Files.PeerTrustedCA, origin(in, r.Files, fPeerTrustedCA, c.Host), *p,
						fmt.Sprintf("issue both from the same CA, or add %s's CA to %s on %s, and run again", m.Name, r.Files.PeerTrustedCA, c.Host))
					continue
				}
				verifies = append(verifies, m.Name)
				continue
			}
			leaf := or.Peer.leaf()
			if leaf == nil {
				continue
			}
			if p := untrusted(in, leaf, or.Peer.Certs[1:], self.certs, self.from); p != nil {
				p.Text = fmt.Sprintf("after step %s, it would not verify %s's peer certificate %s on %s (%s)", step, m.Name, or.Files.PeerCert, m.Host, pki.Describe(leaf))
				problem(r.Files.PeerTrustedCA, origin(in, r.Files, fPeerTrustedCA, c.Host), *p,
					fmt.Sprintf("add a cert-issue step from the same CA on %s too, or add the CA that signed %s's peer certificate (issuer %s) to %s on %s, and run again", m.Name, m.Name, leaf.Issuer.CommonName, r.Files.PeerTrustedCA, c.Host))
				continue
			}
			verifies = append(verifies, m.Name)
		}
	}
	did := fmt.Sprintf("step %s issues its certificates from the CA %s, trusted by %s", step, desc, orNobody(trustedBy))
	if len(verifies) > 0 {
		did += "; its peer CA bundle then accepts " + strings.Join(verifies, ", ")
	}
	return []string{did}
}

func orNobody(s []string) string {
	if len(s) == 0 {
		return "no other member read"
	}
	return strings.Join(s, ", ")
}

func errLine(err error) string {
	l, _, _ := strings.Cut(err.Error(), "\n")
	return l
}

// certReadBound bounds the reads on one host.
const certReadBound = 30 * time.Second

// certGateParallel bounds the hosts read at once.
const certGateParallel = 16

// certGate checks, before the first change, the certificates of every
// member the session starts on the plan's URLs. It returns a line for the
// journal, or a *CertGateError.
func certGate(ctx context.Context, c *Compiled, st *runstate.State, opts *Options, before *sessionFacts, command, runID string) (string, error) {
	if opts.Backend != nil {
		// As the host locks: a backend other than SSH (tests) has no
		// certificate files to read.
		return "certificate check skipped: a backend other than SSH", nil
	}
	if before == nil || before.f == nil {
		return "certificate check skipped: no facts of the hosts were collected", nil
	}
	targets := certTargets(c, st, opts.MarkDone)
	if len(targets) == 0 {
		return "certificate check: no member this session starts has an https URL: nothing to check", nil
	}
	cctx, cancel := untilStop(ctx, opts.Stop)
	defer cancel()
	in, err := readCerts(cctx, c, st, opts, before, targets, runID)
	if err != nil && cctx.Err() != nil {
		return "", &RunError{Interrupted: true}
	}
	if err != nil {
		return "", fmt.Errorf("checking the certificates before the first change: %w", err)
	}
	if cctx.Err() != nil {
		return "", &RunError{Interrupted: true}
	}
	v := decideCerts(*in)
	if len(v.Problems) > 0 {
		return "", &CertGateError{Command: command, RunID: runID, Problems: v.Problems}
	}
	msg := fmt.Sprintf("certificate check: %d member(s) checked: %s", len(v.Passed), strings.Join(v.Passed, "; "))
	if notes := append(v.Notes, in.Logs...); len(notes) > 0 {
		msg += "; " + strings.Join(notes, "; ")
	}
	return msg, nil
}

// answered reports whether host answered at session start (every host,
// without facts).
func answered(before *sessionFacts, host string) (bool, string) {
	if before == nil || before.f == nil {
		return true, ""
	}
	if before.answeredLater[host] {
		return true, ""
	}
	h := before.f.HostByName(host)
	if h == nil {
		return true, ""
	}
	if h.Reach == facts.ReachOK {
		return true, ""
	}
	return false, fmt.Sprintf("%s did not answer at session start (%s)", host, h.Reach)
}

// certGateBackend runs the certificate reads over the session's
// connections, or connections of their own without them.
func certGateBackend(c *Compiled, opts *Options) (*SSHBackend, error) {
	if opts.conns != nil {
		return sshBackendOn(c.Plan, opts.conns), nil
	}
	return NewSSHBackend(c.Plan)
}

// readCerts reads, one host at a time per member and hosts in parallel,
// what decideCerts needs.
func readCerts(ctx context.Context, c *Compiled, st *runstate.State, opts *Options, before *sessionFacts, targets []*certTarget, runID string) (*certInput, error) {
	cl := c.Plan.Cluster
	in := &certInput{Members: cl.Members, Layout: cl.Layout.Service, Targets: targets, Reads: map[string]*certRead{},
		Skipped: map[string]string{}, Now: opts.now(), MinValid: cl.Layout.MinValid()}
	if ca, from, err := operatorCA(c.Plan); err == nil {
		in.OperatorCA, in.OperatorCAFrom = ca, from
	}
	backend, err := certGateBackend(c, opts)
	if err != nil {
		return nil, err
	}
	defer backend.Close()
	var stFacts map[string]string
	if st != nil {
		stFacts = st.Facts
	}
	env := &certGateEnv{b: backend, facts: stFacts}
	targetOf := map[string]*certTarget{}
	for _, t := range targets {
		targetOf[t.Member.Name] = t
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, certGateParallel)
	for _, m := range cl.Members {
		ph := c.Plan.Hosts[m.Host]
		if ph == nil {
			in.Skipped[m.Name] = "its host " + m.Host + " is not in hosts:"
			continue
		}
		if ok, why := answered(before, m.Host); !ok {
			in.Skipped[m.Name] = why
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			hctx, cancel := context.WithTimeout(ctx, certReadBound)
			defer cancel()
			r := readMember(hctx, c, backend, env, steps.Target{Host: ph, Member: m}, targetOf[m.Name], runID)
			mu.Lock()
			in.Reads[m.Name] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	in.Logs = env.logs
	return in, ctx.Err()
}

// readMember reads the files of one member's service: for a checked member
// its server and peer certificates and both CA bundles, for the others what
// they accept and present as peers; never a key.
func readMember(ctx context.Context, c *Compiled, b Backend, env steps.Env, t steps.Target, ct *certTarget, runID string) *certRead {
	r := &certRead{}
	sh, err := b.Shell(t.Name())
	if err != nil {
		r.Err = err
		return r
	}
	sctx := c.Ctx(nil, runID, nil)
	if ct != nil && ct.Issue != nil {
		sctx = c.Ctx(ct.Issue, runID, nil)
	}
	if r.Files, r.Err = steps.ServiceTLS(ctx, sctx, sh, t); r.Err != nil {
		return r
	}
	read := map[string]certFile{}
	get := func(path string) certFile {
		if path == "" {
			return certFile{}
		}
		if f, ok := read[path]; ok {
			return f
		}
		certs, present, err := steps.ReadCerts(ctx, sh, t.Name(), path)
		f := certFile{Path: path, Present: present, Certs: certs, Err: err}
		read[path] = f
		return f
	}
	r.PeerTrustedCA = get(r.Files.PeerTrustedCA)
	r.Peer = get(r.Files.PeerCert)
	if ct != nil {
		r.Server = get(r.Files.ServerCert)
		r.TrustedCA = get(r.Files.TrustedCA)
		if ct.Issue != nil {
			r.Issuer, r.IssuerErr = ct.Target.Params.(certIssuer).Issuer(ctx, sctx, env)
		}
	}
	return r
}

// operatorCA is cluster.tls.ca, read on the operator machine.
func operatorCA(p *plans.Plan) ([]*x509.Certificate, string, error) {
	files := access.TLSFiles(p)
	if files == nil || files.CA == "" {
		return nil, "", errors.New("no cluster.tls.ca")
	}
	f, err := os.Open(files.CA)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, pki.MaxPEM+1))
	if err != nil {
		return nil, "", err
	}
	certs, err := pki.ParseCerts(data)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", files.CA, err)
	}
	return certs, "cluster.tls.ca (" + files.CA + ")", nil
}

// certGateEnv is the steps.Env of the gate: shells of the hosts, the run's
// facts; it changes nothing and asks no etcd.
type certGateEnv struct {
	b     Backend
	facts map[string]string
	mu    sync.Mutex
	logs  []string
}

func (e *certGateEnv) Shell(host string) (steps.Runner, error) { return e.b.Shell(host) }

func (e *certGateEnv) Etcd(context.Context) (steps.Etcd, error) {
	return nil, errors.New("the certificate check does not use the etcd API")
}

func (e *certGateEnv) Fact(key string) (string, bool) {
	v, ok := e.facts[key]
	return v, ok
}

func (e *certGateEnv) SetFact(string, string) error {
	return errors.New("the certificate check records nothing")
}

func (e *certGateEnv) Logf(format string, args ...any) {
	e.mu.Lock()
	e.logs = append(e.logs, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

// certPlanLines say, for the dry-run, what the gate will check of each
// member the plan starts on https URLs.
func certPlanLines(c *Compiled) []string {
	var out []string
	days := 0
	if cl := c.Plan.Cluster; cl != nil {
		days = int(cl.Layout.MinValid().Hours() / 24)
	}
	for _, t := range certTargets(c, nil, nil) {
		m := t.Member
		var others []string
		for _, o := range c.Plan.Cluster.Members {
			if o.Name != m.Name {
				others = append(others, o.Name)
			}
		}
		peers := "the peer trusted CA bundles of " + strings.Join(others, ", ")
		if len(others) == 0 {
			peers = "its own peer trusted CA bundle"
		}
		var parts []string
		if t.Issue != nil {
			parts = append(parts, fmt.Sprintf("the CA step %s issues from: trusted by %s, valid for at least %d more days", t.Issue.ID(), peers, days))
			if len(others) > 0 {
				parts = append(parts, "its peer CA bundle with that CA must accept the peer certificates of "+strings.Join(others, ", "))
			}
		} else {
			if isHTTPS(m.ClientURL) {
				anchor := "its trusted CA bundle"
				if cl := c.Plan.Cluster; cl.TLS != nil && cl.TLS.CA != "" {
					anchor = "cluster.tls.ca"
				}
				parts = append(parts, fmt.Sprintf("server certificate valid for %s, signed by a CA in %s", pki.HostOf(m.ClientURL), anchor))
			}
			if isHTTPS(m.PeerURL) {
				parts = append(parts, fmt.Sprintf("peer certificate valid for %s, accepted by %s", pki.HostOf(m.PeerURL), peers))
			}
			parts = append(parts, fmt.Sprintf("valid for at least %d more days", days))
		}
		out = append(out, fmt.Sprintf("%s on %s (started by %s): %s", m.Name, m.Host, strings.Join(t.Starts, ", "), strings.Join(parts, "; ")))
	}
	return out
}
