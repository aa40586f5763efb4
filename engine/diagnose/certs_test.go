package diagnose

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/internal/pki"
)

func testCA(t *testing.T) *pki.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test etcd CA"},
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: c, Key: key}
}

// issued is the facts of a certificate issued now for ips (plus the
// loopback names), read as the collection reads it.
func issued(t *testing.T, ca *pki.CA, setting string, now time.Time, valid time.Duration, ips ...string) facts.Certificate {
	t.Helper()
	var urls []string
	for _, ip := range ips {
		urls = append(urls, "https://"+ip+":2380")
	}
	ipList, dns := pki.NamesFor(urls, nil)
	certPEM, _, err := pki.Issue(ca, pki.Request{CommonName: "etcd3", IPs: ipList, DNSNames: dns, KeyType: pki.ECDSAP256,
		Valid: valid, Now: now, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	return facts.CertificateFromPEM(setting, "/etc/etcd/pki/server.crt", certPEM)
}

const both = "ETCD_CERT_FILE, ETCD_PEER_CERT_FILE"

// withCerts is the ip-change fixture with h3's certificates replaced.
func withCerts(t *testing.T, certs ...facts.Certificate) (*facts.Facts, *facts.Host) {
	f := load(t, "ip-change-etcd3")
	h3 := f.HostByName("h3")
	h3.Certificates = certs
	return f, h3
}

func certFindings(d *Diagnosis) []Finding {
	var out []Finding
	for _, f := range d.Findings {
		if strings.HasPrefix(f.Code, "cert-") {
			out = append(out, f)
		}
	}
	return out
}

// TestCertificates: each certificate fact of the moved member and the
// finding it gives, with its exact summary; the situation and the
// recommendation's choices stay what they are without certificates.
func TestCertificates(t *testing.T) {
	ca := testCA(t)
	base, _ := withCerts(t)
	now := base.CollectedAt
	plain := Diagnose(base, inv)
	if len(certFindings(plain)) != 0 {
		t.Fatalf("no certificates, yet %v", codes(plain))
	}
	day := 24 * time.Hour
	cases := []struct {
		name     string
		certs    []facts.Certificate
		codes    []string
		sev      []Severity
		summary  []string // exact, in order; "" to skip
		hintHas  string
		noteHas  string
		evidence string // a line that must be in the first finding's evidence
	}{
		{name: "new address", certs: []facts.Certificate{issued(t, ca, both, now, 365*day, "10.77.0.23")}},
		{name: "old address", certs: []facts.Certificate{issued(t, ca, both, now, 365*day, "10.77.0.13")},
			codes: []string{"cert-missing-san"}, sev: []Severity{Error},
			summary: []string{"etcd3's certificate /etc/etcd/pki/server.crt (ETCD_CERT_FILE, ETCD_PEER_CERT_FILE) lists IP:10.77.0.13, IP:127.0.0.1, IP:::1, DNS:localhost " +
				"but not 10.77.0.23, its inventory address: peers and clients will refuse it"},
			hintHas:  "reissue it for 10.77.0.23: the plan needs a cert-issue step (etcd-rescue new ip-change ... --ca-cert PATH --ca-key PATH, ",
			noteHas:  "; the plan needs a cert-issue step (new --ca-cert PATH --ca-key PATH)",
			evidence: "etcd3 (h3): /etc/etcd/pki/server.crt is not valid for 10.77.0.23 (the URL https://10.77.0.23:2380, https://10.77.0.23:2379), which needs an IP SAN; valid for IP:10.77.0.13, IP:127.0.0.1, IP:::1, DNS:localhost (certificate)"},
		{name: "peer certificate only for the old address", certs: []facts.Certificate{
			issued(t, ca, "ETCD_CERT_FILE", now, 365*day, "10.77.0.23"),
			func() facts.Certificate {
				c := issued(t, ca, "ETCD_PEER_CERT_FILE", now, 365*day, "10.77.0.13")
				c.Path = "/etc/etcd/pki/peer.crt"
				return c
			}()},
			codes: []string{"cert-missing-san"}, sev: []Severity{Error},
			summary: []string{"etcd3's certificate /etc/etcd/pki/peer.crt (ETCD_PEER_CERT_FILE) lists IP:10.77.0.13, IP:127.0.0.1, IP:::1, DNS:localhost " +
				"but not 10.77.0.23, its inventory address: peers will refuse it"}},
		{name: "expires in 3 days", certs: []facts.Certificate{issued(t, ca, both, now, 3*day, "10.77.0.23")},
			codes: []string{"cert-expiring"}, sev: []Severity{Warning},
			summary: []string{"etcd3's certificate /etc/etcd/pki/server.crt (ETCD_CERT_FILE, ETCD_PEER_CERT_FILE) on h3 expires on " +
				now.Add(3*day).UTC().Format(time.RFC3339) + ", in 3 days, less than the 7 days required"},
			noteHas: "certificate: etcd3's certificate /etc/etcd/pki/server.crt"},
		{name: "expired, old address", certs: []facts.Certificate{issued(t, ca, both, now.Add(-30*day), 10*day, "10.77.0.13")},
			codes: []string{"cert-missing-san", "cert-expired"}, sev: []Severity{Error, Error},
			summary: []string{"", "etcd3's certificate /etc/etcd/pki/server.crt (ETCD_CERT_FILE, ETCD_PEER_CERT_FILE) on h3 expired on " +
				now.Add(-20*day).UTC().Format(time.RFC3339) + ": peers and clients refuse it"}},
		{name: "absent", certs: []facts.Certificate{{Setting: both, Path: "/etc/etcd/pki/server.crt"}},
			codes: []string{"cert-absent"}, sev: []Severity{Error},
			summary: []string{"no certificate at /etc/etcd/pki/server.crt on h3: etcd3's ETCD_CERT_FILE, ETCD_PEER_CERT_FILE name it; etcd does not start without it"},
			hintHas: "make one for 10.77.0.23: the plan needs a cert-issue step"},
		{name: "garbage", certs: []facts.Certificate{facts.CertificateFromPEM("ETCD_PEER_CERT_FILE", "/etc/etcd/pki/peer.crt", []byte("garbage"))},
			codes: []string{"cert-unreadable"}, sev: []Severity{Error},
			summary: []string{"etcd3's certificate /etc/etcd/pki/peer.crt (ETCD_PEER_CERT_FILE) on h3 could not be read: not PEM: no -----BEGIN line"},
			hintHas: "openssl x509 -noout -text -in /etc/etcd/pki/peer.crt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := withCerts(t, tc.certs...)
			d := Diagnose(f, inv)
			// certificates never change the situation nor the choices
			if d.Situation != plain.Situation || d.Summary != plain.Summary || d.Next != plain.Next ||
				!reflect.DeepEqual(d.Recommend.Members, plain.Recommend.Members) {
				t.Errorf("situation %s %q next %q, without certificates %s %q %q", d.Situation, d.Summary, d.Next, plain.Situation, plain.Summary, plain.Next)
			}
			got := certFindings(d)
			var gotCodes []string
			for _, g := range got {
				gotCodes = append(gotCodes, g.Code)
			}
			if !reflect.DeepEqual(gotCodes, tc.codes) {
				t.Fatalf("findings %v, want %v (all: %v)", gotCodes, tc.codes, codes(d))
			}
			for i, g := range got {
				if g.Severity != tc.sev[i] {
					t.Errorf("%s: severity %s, want %s", g.Code, g.Severity, tc.sev[i])
				}
				if tc.summary[i] != "" && g.Summary != tc.summary[i] {
					t.Errorf("%s summary:\n got %s\nwant %s", g.Code, g.Summary, tc.summary[i])
				}
				if !reflect.DeepEqual(g.Members, []string{"etcd3"}) || !reflect.DeepEqual(g.Hosts, []string{"h3"}) || g.Hint == "" || len(g.Evidence) < 2 {
					t.Errorf("%s: %+v", g.Code, g)
				}
			}
			if tc.hintHas != "" && !strings.Contains(got[0].Hint, tc.hintHas) {
				t.Errorf("hint %q, want it to contain %q", got[0].Hint, tc.hintHas)
			}
			if tc.evidence != "" && !contains(got[0].Evidence, tc.evidence) {
				t.Errorf("evidence %q\nwant the line %q", got[0].Evidence, tc.evidence)
			}
			// each finding is a note of the recommendation (the plan's header)
			var notes []string
			for _, n := range d.Recommend.Notes {
				if strings.HasPrefix(n, "certificate: ") {
					notes = append(notes, n)
				}
			}
			if len(notes) != len(got) {
				t.Errorf("certificate notes %q, want one per finding", notes)
			}
			if tc.noteHas != "" && (len(notes) == 0 || !strings.Contains(notes[0], tc.noteHas)) {
				t.Errorf("notes %q, want %q", notes, tc.noteHas)
			}
		})
	}
}

// TestCertificatesNotChecked: http URLs need no certificate; a host that
// could not be asked says nothing about its files; a healthy cluster stays
// healthy with an expiring certificate (a warning beside it).
func TestCertificatesNotChecked(t *testing.T) {
	ca := testCA(t)
	f := load(t, "lost-host-blank-h4") // http
	now := f.CollectedAt
	f.HostByName("h4").Certificates = []facts.Certificate{{Setting: both, Path: "/etc/etcd/pki/server.crt"}}
	if got := certFindings(Diagnose(f, inv)); len(got) != 0 {
		t.Errorf("http member: %+v", got)
	}

	f, h3 := withCerts(t, facts.Certificate{Setting: both, Path: "/etc/etcd/pki/server.crt"})
	h3.Reach = facts.ReachTimeout
	if got := certFindings(Diagnose(f, inv)); len(got) != 0 {
		t.Errorf("host not asked: %+v", got)
	}

	f = load(t, "lost-host-tls-h4")
	h4 := f.HostByName("h4")
	h4.Certificates = []facts.Certificate{issued(t, ca, both, now, 365*24*time.Hour, "10.77.0.14")}
	d := Diagnose(f, inv)
	if got := certFindings(d); len(got) != 0 || d.Situation != LostHost {
		t.Errorf("replacement with its certificate: %s %+v", d.Situation, got)
	}
	// the healthy members' certificates expire soon: a warning, still lost-host
	for _, h := range []string{"h1", "h3"} {
		hh := f.HostByName(h)
		hh.Certificates = []facts.Certificate{issued(t, ca, both, now, 2*24*time.Hour, hh.Address)}
	}
	d = Diagnose(f, inv)
	got := certFindings(d)
	if len(got) != 2 || got[0].Code != "cert-expiring" || got[0].Severity != Warning || d.Situation != LostHost {
		t.Errorf("expiring elsewhere: %s %+v", d.Situation, got)
	}
	if len(got) > 0 && strings.Contains(got[0].Hint, "etcd-rescue new") {
		t.Errorf("a member the plan does not touch gets no new-plan hint: %s", got[0].Hint)
	}
}
