package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

var certNow = time.Date(2026, 3, 14, 3, 0, 0, 0, time.UTC)

// testCA is a CA made in the test, able to sign member certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial int64

func nextSerial() *big.Int { serial++; return big.NewInt(serial) }

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn}, NotBefore: certNow.Add(-time.Hour), NotAfter: certNow.AddDate(5, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: c, key: key}
}

// leaf signs a member certificate for names (IPs or DNS names) valid for
// the given time from certNow, with server and client usage.
func (ca *testCA) leaf(t *testing.T, cn string, valid time.Duration, names ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn}, NotBefore: certNow.Add(-time.Hour), NotAfter: certNow.Add(valid),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tpl.IPAddresses = append(tpl.IPAddresses, ip)
		} else {
			tpl.DNSNames = append(tpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const year = 365 * 24 * time.Hour

// tlsMembers are etcd1..3 on node1..3 at https://10.0.0.N, etcd3 moved to
// 10.0.0.13.
func tlsMembers() []*plans.Member {
	return []*plans.Member{
		{Name: "etcd1", Host: "node1", PeerURL: "https://10.0.0.1:2380", ClientURL: "https://10.0.0.1:2379"},
		{Name: "etcd2", Host: "node2", PeerURL: "https://10.0.0.2:2380", ClientURL: "https://10.0.0.2:2379"},
		{Name: "etcd3", Host: "node3", PeerURL: "https://10.0.0.13:2380", ClientURL: "https://10.0.0.13:2379"},
	}
}

// envFiles are the kubespray-like paths of a member's service.
func envFiles(host string) steps.TLSFiles {
	return steps.TLSFiles{Source: "/etc/etcd/etcd.env on " + host,
		ServerCert: "/etc/etcd/pki/server.crt", ServerKey: "/etc/etcd/pki/server.key", TrustedCA: "/etc/etcd/pki/ca.crt",
		PeerCert: "/etc/etcd/pki/server.crt", PeerKey: "/etc/etcd/pki/server.key", PeerTrustedCA: "/etc/etcd/pki/ca.crt"}
}

func present(certs ...*x509.Certificate) certFile {
	return certFile{Present: true, Certs: certs}
}

// readOf is what the gate reads on a host whose service uses cert, signed
// by a CA it trusts along with trusted.
func readOf(host string, cert *x509.Certificate, trusted ...*x509.Certificate) *certRead {
	return &certRead{Files: envFiles(host), Server: present(cert), Peer: present(cert), TrustedCA: present(trusted...), PeerTrustedCA: present(trusted...)}
}

func baseInput(ms []*plans.Member, targets ...string) certInput {
	in := certInput{Members: ms, Layout: "systemd", Reads: map[string]*certRead{}, Skipped: map[string]string{}, Now: certNow, MinValid: 7 * 24 * time.Hour}
	for _, name := range targets {
		for _, m := range ms {
			if m.Name == name {
				in.Targets = append(in.Targets, &certTarget{Member: m, Starts: []string{"update"}})
			}
		}
	}
	return in
}

func kinds(ps []CertProblem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Member+":"+p.Kind)
	}
	return out
}

// issueNode is a remaining cert-issue step for a target.
func issueNode(id string) *Node { return &Node{Step: &plans.Step{ID: id}} }

func TestDecideCerts(t *testing.T) {
	caA := newTestCA(t, "etcd-ca")
	caB := newTestCA(t, "other-ca")
	old3 := caA.leaf(t, "etcd3", year, "10.0.0.3", "127.0.0.1", "localhost", "node3")
	new3 := caA.leaf(t, "etcd3", year, "10.0.0.13", "127.0.0.1", "localhost", "node3")
	m1 := caA.leaf(t, "etcd1", year, "10.0.0.1")
	m2 := caA.leaf(t, "etcd2", year, "10.0.0.2")
	m1B := caB.leaf(t, "etcd1", year, "10.0.0.1")
	ms := tlsMembers()

	for name, tc := range map[string]struct {
		in        func() certInput
		want      []string // member:kind, in order
		wantText  []string // in the error (or, when none, the passed line)
		wantNotIn []string
	}{
		"certificate for the old address: refused, SAN named": {
			in: func() certInput {
				in := baseInput(ms, "etcd3")
				in.Reads["etcd1"] = readOf("node1", m1, caA.cert)
				in.Reads["etcd2"] = readOf("node2", m2, caA.cert)
				in.Reads["etcd3"] = readOf("node3", old3, caA.cert)
				return in
			},
			want: []string{"etcd3:missing-san", "etcd3:missing-san"},
			wantText: []string{
				"  - etcd3 on node3: /etc/etcd/pki/server.crt (ETCD_CERT_FILE in /etc/etcd/etcd.env): not valid for 10.0.0.13",
				"  - etcd3 on node3: /etc/etcd/pki/server.crt (ETCD_PEER_CERT_FILE in /etc/etcd/etcd.env): not valid for 10.0.0.13",
				"the peer URL https://10.0.0.13:2380",
				"IP:10.0.0.3, IP:127.0.0.1, DNS:localhost, DNS:node3",
				"      hint: add a cert-issue step on etcd3 before it starts (docs/plan-format.md#certificates), or install a certificate that lists 10.0.0.13, and run again",
			},
		},
		"certificate for the new address, same CA: passes": {
			in: func() certInput {
				in := baseInput(ms, "etcd3")
				in.Reads["etcd1"] = readOf("node1", m1, caA.cert)
				in.Reads["etcd2"] = readOf("node2", m2, caA.cert)
				in.Reads["etcd3"] = readOf("node3", new3, caA.cert)
				return in
			},
			wantText: []string{"etcd3 on node3: server certificate /etc/etcd/pki/server.crt (CN=etcd3, SANs IP:10.0.0.13", "valid for 10.0.0.13, signed by a CA in the trusted CA bundle /etc/etcd/pki/ca.crt on node3",
				"peer certificate /etc/etcd/pki/server.crt", "accepted by etcd1, etcd2"},
		},
		"a peer does not trust its CA: refused, naming that peer's bundle": {
			in: func() certInput {
				in := baseInput(ms, "etcd3")
				in.Reads["etcd1"] = readOf("node1", m1B, caB.cert)
				in.Reads["etcd2"] = readOf("node2", m2, caA.cert)
				in.Reads["etcd3"] = readOf("node3", new3, caA.cert)
				return in
			},
			want:     []string{"etcd3:untrusted"},
			wantText: []string{"the peer trusted CA bundle /etc/etcd/pki/ca.crt on node1", "add the CA that signed /etc/etcd/pki/server.crt (issuer etcd-ca)"},
		},
		"the operator's CA is the server certificate's anchor": {
			in: func() certInput {
				in := baseInput(ms, "etcd3")
				in.OperatorCA, in.OperatorCAFrom = []*x509.Certificate{caB.cert}, "cluster.tls.ca (/ops/ca.crt)"
				in.Reads["etcd1"] = readOf("node1", m1, caA.cert)
				in.Reads["etcd2"] = readOf("node2", m2, caA.cert)
				in.Reads["etcd3"] = readOf("node3", new3, caA.cert)
				return in
			},
			want:     []string{"etcd3:untrusted"},
			wantText: []string{"ETCD_CERT_FILE in /etc/etcd/etcd.env", "cluster.tls.ca (/ops/ca.crt)"},
		},
		"total loss: no other member read, its own bundle decides": {
			in: func() certInput {
				in := baseInput(ms, "etcd3")
				in.Skipped["etcd1"] = "node1 did not answer at session start (timeout)"
				in.Reads["etcd3"] = readOf("node3", new3, caB.cert)
				return in
			},
			want:     []string{"etcd3:untrusted", "etcd3:untrusted"},
			wantText: []string{"the peer trusted CA bundle /etc/etcd/pki/ca.crt on node3"},
		},
		"total loss, its own bundle trusts it: passes, skipped hosts said": {
			in: func() certInput {
				in := baseInput(ms, "etcd3")
				in.Skipped["etcd1"] = "node1 did not answer at session start (timeout)"
				in.Reads["etcd3"] = readOf("node3", new3, caA.cert)
				return in
			},
			wantText: []string{"accepted by etcd3", "etcd1 on node1 skipped: node1 did not answer at session start (timeout)", "etcd2 on node2 skipped"},
		},
		"absent file": {
			in: func() certInput {
				in := baseInput(ms, "etcd3")
				in.Reads["etcd1"] = readOf("node1", m1, caA.cert)
				r := readOf("node3", new3, caA.cert)
				r.Server = certFile{}
				in.Reads["etcd3"] = r
				return in
			},
			want:     []string{"etcd3:absent"},
			wantText: []string{"  - etcd3 on node3: no certificate at /etc/etcd/pki/server.crt on node3 (named by ETCD_CERT_FILE in /etc/etcd/etcd.env)\n      hint: add a cert-issue step on etcd3"},
		},
		"unknown paths": {
			in: func() certInput {
				in := baseInput(ms, "etcd3")
				in.Reads["etcd3"] = &certRead{}
				return in
			},
			want:     []string{"etcd3:unknown-paths"},
			wantText: []string{"  - etcd3 on node3: cannot tell which certificates etcd will use on node3", "hint: set cluster.layout.pki"},
		},
		"expiring within the margin": {
			in: func() certInput {
				in := baseInput(ms, "etcd3")
				soon := caA.leaf(t, "etcd3", 3*24*time.Hour+time.Hour, "10.0.0.13")
				in.Reads["etcd1"] = readOf("node1", m1, caA.cert)
				in.Reads["etcd3"] = readOf("node3", soon, caA.cert)
				return in
			},
			want:     []string{"etcd3:expiring"},
			wantText: []string{"/etc/etcd/pki/server.crt (ETCD_CERT_FILE and ETCD_PEER_CERT_FILE in /etc/etcd/etcd.env)", "it expires in 3 day(s), within the margin of 7 (cluster.layout.pki.minValidDays)", "layout.pki.minValidDays"},
		},
		"pending cert-issue: the CA is checked, not the old certificate": {
			in: func() certInput {
				in := baseInput(ms, "etcd3")
				in.Targets[0].Issue = issueNode("reissue")
				in.Reads["etcd1"] = readOf("node1", m1, caA.cert)
				in.Reads["etcd2"] = readOf("node2", m2, caA.cert)
				r := readOf("node3", old3, caA.cert)
				r.Issuer = caA.cert
				in.Reads["etcd3"] = r
				return in
			},
			wantText:  []string{"etcd3 on node3: step reissue issues its certificates from the CA CN=etcd-ca", "trusted by etcd1, etcd2; its peer CA bundle then accepts etcd1, etcd2"},
			wantNotIn: []string{"10.0.0.3"},
		},
		"pending cert-issue from a CA a peer does not trust": {
			in: func() certInput {
				in := baseInput(ms, "etcd3")
				in.Targets[0].Issue = issueNode("reissue")
				in.Reads["etcd1"] = readOf("node1", m1, caA.cert)
				in.Reads["etcd2"] = readOf("node2", m2, caA.cert)
				r := readOf("node3", old3, caA.cert)
				r.Issuer = caB.cert
				in.Reads["etcd3"] = r
				return in
			},
			want: []string{"etcd3:untrusted", "etcd3:untrusted"},
			wantText: []string{"  - etcd3 on node3: the CA that step reissue signs with (CN=other-ca",
				"is not in the peer trusted CA bundle /etc/etcd/pki/ca.crt on node1 (ETCD_PEER_TRUSTED_CA_FILE in /etc/etcd/etcd.env): etcd1 would refuse etcd3's new certificate", "hint: add a cert-issue step from the same CA on etcd1 too (it ships the CA), or add that CA to /etc/etcd/pki/ca.crt on node1"},
		},
		"pending cert-issue whose bundle would not verify a peer": {
			in: func() certInput {
				in := baseInput(ms, "etcd3")
				in.Targets[0].Issue = issueNode("reissue")
				in.Reads["etcd1"] = readOf("node1", m1B, caA.cert, caB.cert) // trusts both, presents B
				in.Reads["etcd2"] = readOf("node2", m2, caA.cert)
				r := readOf("node3", old3, caA.cert)
				r.Issuer = caA.cert
				in.Reads["etcd3"] = r
				return in
			},
			want:     []string{"etcd3:untrusted"},
			wantText: []string{"after step reissue, it would not verify etcd1's peer certificate /etc/etcd/pki/server.crt on node1 (CN=etcd1"},
		},
		"cert-issue on both sides from a new CA: trusted through what they ship": {
			in: func() certInput {
				in := baseInput(ms, "etcd1", "etcd3")
				in.Targets[0].Issue, in.Targets[1].Issue = issueNode("reissue"), issueNode("reissue")
				r1 := readOf("node1", m1, caA.cert)
				r1.Issuer = caB.cert
				in.Reads["etcd1"] = r1
				r3 := readOf("node3", old3, caA.cert)
				r3.Issuer = caB.cert
				in.Reads["etcd3"] = r3
				return in
			},
			wantText: []string{"etcd1 on node1: step reissue issues", "etcd3 on node3: step reissue issues its certificates from the CA CN=other-ca", "trusted by etcd1"},
		},
		"issuer unreadable": {
			in: func() certInput {
				in := baseInput(ms, "etcd3")
				in.Targets[0].Issue = issueNode("reissue")
				r := readOf("node3", old3, caA.cert)
				r.IssuerErr = errors.New("open /ops/ca.crt: no such file or directory")
				in.Reads["etcd3"] = r
				return in
			},
			want:     []string{"etcd3:unreadable"},
			wantText: []string{"cannot load the CA that step reissue signs with: open /ops/ca.crt: no such file or directory"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			v := decideCerts(tc.in())
			if got := kinds(v.Problems); strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("problems %v, want %v\n%+v", got, tc.want, v.Problems)
			}
			text := strings.Join(append(v.Passed, v.Notes...), "\n")
			if len(v.Problems) > 0 {
				if len(v.Passed) > 0 {
					t.Errorf("a member with problems passed: %v", v.Passed)
				}
				text = (&CertGateError{Command: "apply", Problems: v.Problems}).Error()
			}
			for _, w := range tc.wantText {
				if !strings.Contains(text, w) {
					t.Errorf("lacks %q:\n%s", w, text)
				}
			}
			for _, w := range tc.wantNotIn {
				if strings.Contains(text, w) {
					t.Errorf("has %q:\n%s", w, text)
				}
			}
			if strings.Contains(text, "BEGIN") {
				t.Errorf("PEM in the text:\n%s", text)
			}
		})
	}
}

// The error's head counts members, and the journal line has the member,
// file, certificate and kinds, without hints.
func TestCertGateErrorText(t *testing.T) {
	e := &CertGateError{Command: "resume", RunID: "r1", Problems: []CertProblem{
		{Member: "etcd3", Host: "node3", File: "/p/s.crt", Kind: pki.ProblemMissingSAN, Text: "x", Cert: "CN=etcd3, SANs IP:10.0.0.3", Hint: "h"},
		{Member: "etcd3", Host: "node3", File: "/p/s.crt", Kind: pki.ProblemExpiring, Text: "y", Cert: "CN=etcd3, SANs IP:10.0.0.3", Hint: "h"},
		{Member: "etcd2", Host: "node2", Kind: CertUnknownPaths, Text: "cannot tell"},
	}}
	if !strings.HasPrefix(e.Error(), "resume stopped before the first change: the certificates of 2 members are not valid for the addresses the plan starts them on; nothing was changed on any host\n") {
		t.Errorf("head: %s", e.Error())
	}
	want := "certificate check refused: etcd3 on node3: /p/s.crt (CN=etcd3, SANs IP:10.0.0.3) expiring, missing-san; etcd2 on node2: unknown-paths"
	if got := e.Journal(); got != want {
		t.Errorf("journal:\n%s\nwant:\n%s", got, want)
	}
}

// fakeCertIssue stands for cert-issue in the engine's tests: it starts the
// member on the plan's URLs and signs with ca.
type fakeCertIssue struct {
	ca *x509.Certificate
}

func (*fakeCertIssue) Describe(c *steps.Ctx, t steps.Target) []steps.Action {
	return []steps.Action{{Host: t.Name(), Kind: steps.Shell, Cmd: "issue"}}
}
func (*fakeCertIssue) NeedsMember() bool      { return true }
func (*fakeCertIssue) StartsOnPlanURLs() bool { return true }
func (s *fakeCertIssue) Issuer(context.Context, *steps.Ctx, steps.Env) (*x509.Certificate, error) {
	return s.ca, nil
}

const tlsPlanHead = `version: 1
name: tls-plan
cluster:
  name: test
  token: test-token
  etcdVersion: "3.5.17"
  members:
    - {name: m1, host: h1, peerURL: "https://10.0.0.1:2380", clientURL: "https://10.0.0.1:2379"}
    - {name: m2, host: h2, peerURL: "https://10.0.0.2:2380", clientURL: "https://10.0.0.2:2379"}
    - {name: m3, host: h3, peerURL: "http://10.0.0.3:2380", clientURL: "http://10.0.0.3:2379"}
hosts:
  h1: {address: 10.0.0.1}
  h2: {address: 10.0.0.2}
  h3: {address: 10.0.0.3}
ssh: {user: root, knownHosts: /nonexistent}
steps:
  - {id: stop, type: stop-service, on: m1}
  - {id: reissue, type: fake-cert-issue, on: m1, needs: [stop]}
  - {id: update, type: member-update, on: [m1, m2, m3], needs: [reissue], with: {certsChecked: true}}
  - {id: start, type: start-service, on: m1, needs: [update]}
`

func certTestRegistry() map[string]*steps.Type {
	reg := testRegistry()
	reg["fake-cert-issue"] = &steps.Type{Name: "fake-cert-issue", New: func() steps.Step { return &fakeCertIssue{} }}
	return reg
}

// Which members the gate checks: https members a remaining step starts on
// the plan's URLs; a cert-issue makes the check the CA's; once it is done,
// the new files are checked.
func TestCertTargets(t *testing.T) {
	p, fs := plans.LoadBytes("plan.yaml", []byte(tlsPlanHead), "")
	if fs.Errors() > 0 {
		t.Fatal(fs.Err())
	}
	c, cfs := Compile(p, certTestRegistry())
	if c == nil {
		t.Fatal(cfs.Err())
	}
	describe := func(ts []*certTarget) string {
		var out []string
		for _, t := range ts {
			s := t.Member.Name + "[" + strings.Join(t.Starts, ",") + "]"
			if t.Issue != nil {
				s += " issue " + t.Issue.ID()
			}
			out = append(out, s)
		}
		return strings.Join(out, "; ")
	}
	// m3 is http: not checked; stop/start do not start on plan URLs.
	if got, want := describe(certTargets(c, nil, nil)), "m1[reissue,update] issue reissue; m2[update]"; got != want {
		t.Errorf("fresh: %s, want %s", got, want)
	}
	st := &runstate.State{}
	reconcile(st, c)
	st.Find("reissue", "h1").Status = runstate.StatusDone
	if got, want := describe(certTargets(c, st, nil)), "m1[update]; m2[update]"; got != want {
		t.Errorf("after the reissue: %s, want %s", got, want)
	}
	st.Find("update", "h2").Status = runstate.StatusDone
	if got, want := describe(certTargets(c, st, []Selector{{Step: "update", Host: "h1"}})), ""; got != want {
		t.Errorf("all done or marked done: %q, want none", got)
	}
	// A plan with only http URLs has nothing to check.
	http, fs := plans.LoadBytes("plan.yaml", []byte(strings.ReplaceAll(tlsPlanHead, "https://", "http://")), "")
	if fs.Errors() > 0 {
		t.Fatal(fs.Err())
	}
	hc, _ := Compile(http, certTestRegistry())
	if got := certTargets(hc, nil, nil); len(got) != 0 {
		t.Errorf("http plan: %s", describe(got))
	}
}

// A plan with only http URLs: no SSH round, one journal line.
func TestCertGateHTTPPlanReadsNothing(t *testing.T) {
	h, o := gateHarness(t, "  - {id: update, type: member-update, on: h3, with: {certsChecked: true}}\n", hostFacts(nil))
	c := compileTest(t, h.plan)
	msg, err := certGate(testCtx(t), c, nil, &o, &sessionFacts{f: hostFacts(nil)}, "apply", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(h.w.commands()) != 0 {
		t.Errorf("commands ran: %v", h.w.commands())
	}
	if !strings.Contains(msg, "certificate check") {
		t.Errorf("journal line: %q", msg)
	}
	o.Backend = nil
	msg, err = certGate(testCtx(t), c, nil, &o, &sessionFacts{f: hostFacts(nil)}, "apply", "")
	if err != nil || msg != "certificate check: no member this session starts has an https URL: nothing to check" {
		t.Errorf("ssh backend, http plan: %q %v", msg, err)
	}
}

// writePEM writes certificates as a PEM file.
func writePEM(t *testing.T, path string, certs ...*x509.Certificate) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tlsSSHPlan is a plan whose one member, on the test sshd, is started by
// set-config on https://127.0.0.1 (its "new" address); its env file names
// certificate files in dir.
func tlsSSHPlan(t *testing.T, srv *sshxtest.Server, dir string) string {
	t.Helper()
	env := fmt.Sprintf("ETCD_NAME=m1\nETCD_CERT_FILE=%[1]s/server.crt\nETCD_KEY_FILE=%[1]s/server.key\nETCD_TRUSTED_CA_FILE=%[1]s/ca.crt\n"+
		"ETCD_PEER_CERT_FILE=%[1]s/server.crt\nETCD_PEER_KEY_FILE=%[1]s/server.key\nETCD_PEER_TRUSTED_CA_FILE=%[1]s/ca.crt\n", dir)
	if err := os.WriteFile(filepath.Join(dir, "etcd.env"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	plan := fmt.Sprintf(`version: 1
name: tls-smoke
cluster:
  name: smoke
  token: smoke-1
  etcdVersion: "3.5.17"
  layout: {dataDir: %[1]s/etcd-data, envFile: %[1]s/etcd.env}
  members:
    - {name: m1, host: local, peerURL: "https://127.0.0.1:2380", clientURL: "https://127.0.0.1:2379"}
hosts:
  local: {address: 127.0.0.1, port: %[2]d}
ssh: {user: %[3]s, identity: %[4]s, knownHosts: %[5]s}
steps:
  - {id: config, type: set-config, on: all, with: {clusterState: existing}}
`, dir, srv.Port, srv.User, srv.ClientKey, srv.KnownHosts)
	path := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(path, []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Over real SSH: a certificate for the old address refuses apply before
// the first change (the env file set-config would rewrite is untouched, no
// run is created); once the certificate lists the new address, apply runs
// and the journal says what was checked.
func TestCertGateOverRealSSH(t *testing.T) {
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	ca := newTestCA(t, "smoke-ca")
	old := ca.leaf(t, "m1", 50*year, "10.0.0.9", "node-old") // the old address
	writePEM(t, filepath.Join(dir, "ca.crt"), ca.cert)
	writePEM(t, filepath.Join(dir, "server.crt"), old)
	plan := tlsSSHPlan(t, srv, dir)
	envBefore := readFile(t, filepath.Join(dir, "etcd.env"))
	state := filepath.Join(dir, "state")

	_, err := Apply(testCtx(t), loadReal(t, plan), Options{RetryDelay: -1, StateDir: state})
	var cge *CertGateError
	if !errors.As(err, &cge) {
		t.Fatalf("want a *CertGateError, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"apply stopped before the first change: the certificates of 1 member are not valid for the addresses the plan starts it on; nothing was changed on any host",
		"  - m1 on local: " + dir + "/server.crt (ETCD_CERT_FILE in " + dir + "/etcd.env): not valid for 127.0.0.1",
		"(ETCD_PEER_CERT_FILE in " + dir + "/etcd.env): not valid for 127.0.0.1",
		"hint: add a cert-issue step on m1 before it starts"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if got := readFile(t, filepath.Join(dir, "etcd.env")); got != envBefore {
		t.Errorf("the env file changed:\n%s", got)
	}
	if runs, _ := os.ReadDir(filepath.Join(state, "runs")); len(runs) != 0 {
		t.Errorf("a run was created: %v", runs)
	}

	writePEM(t, filepath.Join(dir, "server.crt"), ca.leaf(t, "m1", 50*year, "127.0.0.1", "localhost"))
	res, err := Apply(testCtx(t), loadReal(t, plan), Options{RetryDelay: -1, StateDir: state})
	if err != nil {
		t.Fatalf("apply with a certificate for the new address: %v", err)
	}
	ev := readFile(t, filepath.Join(res.StateDir, "runs", res.RunID, "events.jsonl"))
	for _, want := range []string{"certificate check: 1 member(s) checked: m1 on local: server certificate " + dir + "/server.crt (CN=m1", "valid for 127.0.0.1"} {
		if !strings.Contains(ev, want) {
			t.Errorf("journal lacks %q:\n%s", want, ev)
		}
	}
	if strings.Contains(ev, "BEGIN CERTIFICATE") {
		t.Error("PEM in the journal")
	}
}
