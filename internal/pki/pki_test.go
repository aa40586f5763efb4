package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newCA makes a self-signed CA (or, with parent, an intermediate) valid
// around t0.
func newCA(t *testing.T, cn string, parent *CA, mut func(*x509.Certificate)) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: t0.Add(-24 * time.Hour), NotAfter: t0.Add(5 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	if mut != nil {
		mut(tmpl)
	}
	signer, pc := crypto.Signer(key), tmpl
	if parent != nil {
		signer, pc = parent.Key, parent.Cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pc, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: c, Key: key}
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func issue(t *testing.T, ca *CA, r Request) (*x509.Certificate, []byte) {
	t.Helper()
	if r.Now.IsZero() {
		r.Now = t0
	}
	if r.KeyType == "" {
		r.KeyType = ECDSAP256
	}
	if r.Valid == 0 {
		r.Valid = 365 * 24 * time.Hour
	}
	cp, kp, err := Issue(ca, r)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ParseCerts(cp)
	if err != nil {
		t.Fatal(err)
	}
	return cs[0], kp
}

func TestParseCerts(t *testing.T) {
	ca := newCA(t, "ca", nil, nil)
	other := newCA(t, "other", nil, nil)
	bundle := append(certPEM(ca.Cert), certPEM(other.Cert)...)
	cs, err := ParseCerts(bundle)
	if err != nil || len(cs) != 2 || cs[0].Subject.CommonName != "ca" || cs[1].Subject.CommonName != "other" {
		t.Fatalf("bundle: %v %v", cs, err)
	}
	keyBlock := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("secret-key-bytes")})
	cases := map[string]struct {
		in   []byte
		want string
	}{
		"empty":        {nil, "empty PEM"},
		"blank":        {[]byte(" \n\t"), "empty PEM"},
		"garbage":      {[]byte("hello world"), "not PEM"},
		"only a key":   {keyBlock, "no certificate in PEM"},
		"too large":    {bytes.Repeat([]byte("A"), MaxPEM+1), "larger than"},
		"bad DER":      {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), "certificate 1 of the PEM"},
		"bad second":   {append(certPEM(ca.Cert), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30}})...), "certificate 2 of the PEM"},
		"truncated":    {certPEM(ca.Cert)[:100], "not PEM"},
		"key and cert": {append(append([]byte{}, keyBlock...), certPEM(ca.Cert)...), ""},
	}
	for name, c := range cases {
		_, err := ParseCerts(c.in)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error quotes the input: %v", name, err)
		}
	}
}

func TestCheck(t *testing.T) {
	root := newCA(t, "root", nil, nil)
	inter := newCA(t, "inter", root, nil)
	stranger := newCA(t, "stranger", nil, nil)
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	ips, dns := NamesFor([]string{"https://10.0.0.3:2380", "https://node3.example:2379"}, []string{"*.etcd.example"})
	good, _ := issue(t, root, Request{CommonName: "etcd3", IPs: ips, DNSNames: dns, Usages: both})
	viaInter, _ := issue(t, inter, Request{CommonName: "etcd3", IPs: ips, DNSNames: dns, Usages: both})
	serverOnly, _ := issue(t, root, Request{CommonName: "s", IPs: ips, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	noEKU, _ := issue(t, root, Request{CommonName: "n", IPs: ips})
	short, _ := issue(t, root, Request{CommonName: "short", IPs: ips, Valid: 3 * 24 * time.Hour})
	v6, _ := issue(t, root, Request{CommonName: "v6", IPs: []net.IP{net.ParseIP("fd00::3")}})
	cases := map[string]struct {
		cert  *x509.Certificate
		want  Want
		kinds []string
		text  string
	}{
		"fine":              {good, Want{Names: []string{"https://10.0.0.3:2380", "10.0.0.3", "node3.example", "localhost", "127.0.0.1", "[::1]"}, Usages: both, Roots: Pool([]*x509.Certificate{root.Cert}), Now: t0, MinValid: 7 * 24 * time.Hour}, nil, ""},
		"wildcard":          {good, Want{Names: []string{"https://a.etcd.example:2379"}, Now: t0}, nil, ""},
		"wildcard one deep": {good, Want{Names: []string{"a.b.etcd.example"}, Now: t0}, []string{ProblemMissingSAN}, "a DNS SAN"},
		"missing IP": {good, Want{Names: []string{"https://10.0.0.13:2380", "https://10.0.0.13:2379"}, Now: t0}, []string{ProblemMissingSAN},
			"not valid for 10.0.0.13 (the URL https://10.0.0.13:2380, https://10.0.0.13:2379), which needs an IP SAN; valid for IP:10.0.0.3, IP:127.0.0.1, IP:::1, DNS:node3.example"},
		"IP only as DNS":   {good, Want{Names: []string{"node4"}, Now: t0}, []string{ProblemMissingSAN}, "node4"},
		"ipv6":             {v6, Want{Names: []string{"https://[fd00::3]:2380"}, Now: t0}, nil, ""},
		"ipv6 missing":     {v6, Want{Names: []string{"https://[fd00::4]:2380"}, Now: t0}, []string{ProblemMissingSAN}, "fd00::4"},
		"intermediate":     {viaInter, Want{Roots: Pool([]*x509.Certificate{root.Cert}), Intermediates: []*x509.Certificate{inter.Cert}, Now: t0}, nil, ""},
		"no intermediate":  {viaInter, Want{Roots: Pool([]*x509.Certificate{root.Cert}), RootsFrom: "the CA bundle /etc/etcd/ca.crt on h1", Now: t0}, []string{ProblemUntrusted}, "not trusted by the CA bundle /etc/etcd/ca.crt on h1"},
		"other CA":         {good, Want{Roots: Pool([]*x509.Certificate{stranger.Cert}), Now: t0}, []string{ProblemUntrusted}, "issued by CN=root"},
		"expired":          {good, Want{Now: t0.Add(400 * 24 * time.Hour), Roots: Pool([]*x509.Certificate{root.Cert})}, []string{ProblemExpired}, "expired on 2027-03-01"},
		"not yet valid":    {good, Want{Now: t0.Add(-time.Hour)}, []string{ProblemNotYetValid}, "not valid before 2026-03-01T11:55:00Z"},
		"expiring":         {short, Want{Now: t0, MinValid: 7 * 24 * time.Hour}, []string{ProblemExpiring}, "in 3 days, less than the 7 days required"},
		"expiring off":     {short, Want{Now: t0}, nil, ""},
		"usage":            {serverOnly, Want{Usages: both, Now: t0}, []string{ProblemUsage}, "not allowed for client authentication (extended key usage: server authentication)"},
		"no EKU means any": {noEKU, Want{Usages: both, Now: t0}, nil, ""},
		"all at once": {serverOnly, Want{Names: []string{"10.9.9.9"}, Usages: both, Roots: Pool([]*x509.Certificate{stranger.Cert}), Now: t0.Add(2 * 365 * 24 * time.Hour)},
			[]string{ProblemMissingSAN, ProblemUsage, ProblemExpired, ProblemUntrusted}, ""},
	}
	for name, c := range cases {
		got := Check(c.cert, c.want)
		var kinds []string
		var texts []string
		for _, p := range got {
			kinds = append(kinds, p.Kind)
			texts = append(texts, p.Text)
		}
		if !reflect.DeepEqual(kinds, c.kinds) {
			t.Errorf("%s: kinds %v, want %v (%q)", name, kinds, c.kinds, texts)
		}
		if c.text != "" && !strings.Contains(strings.Join(texts, "\n"), c.text) {
			t.Errorf("%s: texts %q lack %q", name, texts, c.text)
		}
	}
}

func TestKeyTypesIssuedAndDetected(t *testing.T) {
	ca := newCA(t, "ca", nil, nil)
	for _, kt := range KeyTypes() {
		if testing.Short() && kt == RSA4096 {
			continue // seconds of key generation
		}
		c, kp := issue(t, ca, Request{CommonName: "m", DNSNames: []string{"m"}, KeyType: kt})
		got, err := KeyTypeOf(c)
		if err != nil || got != kt {
			t.Errorf("%s: KeyTypeOf = %s, %v", kt, got, err)
		}
		if p, _ := ParseKeyType(string(kt)); p != kt {
			t.Errorf("ParseKeyType(%s) = %s", kt, p)
		}
		b, _ := pem.Decode(kp)
		if b == nil || b.Type != "PRIVATE KEY" {
			t.Fatalf("%s: key PEM type %v", kt, b)
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !k.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c.PublicKey) {
			t.Errorf("%s: key does not match its certificate", kt)
		}
		if err := c.CheckSignatureFrom(ca.Cert); err != nil {
			t.Errorf("%s: %v", kt, err)
		}
		if d := Describe(c); !strings.HasSuffix(d, ", "+string(kt)) || !strings.HasPrefix(d, "CN=m, SANs DNS:m, valid until 2027-03-01") {
			t.Errorf("Describe = %q", d)
		}
	}
	if _, err := ParseKeyType("rsa-1024"); err == nil || !strings.Contains(err.Error(), "ecdsa-p256") {
		t.Errorf("rsa-1024: %v", err)
	}
}

func TestIssue(t *testing.T) {
	ca := newCA(t, "ca", nil, func(c *x509.Certificate) { c.NotAfter = t0.Add(30 * 24 * time.Hour) })
	ips, dns := NamesFor([]string{"https://10.0.0.3:2380"}, nil)
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	c, _ := issue(t, ca, Request{CommonName: "etcd3", IPs: ips, DNSNames: dns, Usages: both, Valid: 365 * 24 * time.Hour})
	if !c.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("NotAfter %s not capped at the CA's %s", c.NotAfter, ca.Cert.NotAfter)
	}
	if !c.NotBefore.Equal(t0.Add(-backdate)) || c.IsCA || !reflect.DeepEqual(c.ExtKeyUsage, both) || c.Subject.CommonName != "etcd3" {
		t.Errorf("certificate: notBefore %s isCA %v eku %v", c.NotBefore, c.IsCA, c.ExtKeyUsage)
	}
	if p := Check(c, Want{Names: []string{"https://10.0.0.3:2380", "https://127.0.0.1:2379", "localhost"}, Usages: both, Roots: Pool([]*x509.Certificate{ca.Cert}), Now: t0}); p != nil {
		t.Errorf("issued certificate has problems: %v", p)
	}
	for name, r := range map[string]Request{
		"no CN":       {IPs: ips, KeyType: ECDSAP256, Valid: time.Hour, Now: t0},
		"no names":    {CommonName: "x", KeyType: ECDSAP256, Valid: time.Hour, Now: t0},
		"no validity": {CommonName: "x", IPs: ips, KeyType: ECDSAP256, Now: t0},
		"bad type":    {CommonName: "x", IPs: ips, KeyType: "dsa", Valid: time.Hour, Now: t0},
		"CA expired":  {CommonName: "x", IPs: ips, KeyType: ECDSAP256, Valid: time.Hour, Now: t0.Add(31 * 24 * time.Hour)},
	} {
		if _, _, err := Issue(ca, r); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestLoadCA(t *testing.T) {
	ca := newCA(t, "ca", nil, nil)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ca.Key)
	sec1, _ := x509.MarshalECPrivateKey(ca.Key.(*ecdsa.PrivateKey))
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	other := newCA(t, "other", nil, nil)
	otherKey, _ := x509.MarshalPKCS8PrivateKey(other.Key)
	leaf, leafKey := issue(t, ca, Request{CommonName: "leaf", DNSNames: []string{"leaf"}})
	noSign := newCA(t, "nosign", nil, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature })
	noSignKey, _ := x509.MarshalPKCS8PrivateKey(noSign.Key)
	rsaCA := func() *CA {
		k, _ := newKey(RSA2048)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rsa"}, NotBefore: t0, NotAfter: t0.Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
		c, _ := x509.ParseCertificate(der)
		return &CA{Cert: c, Key: k}
	}()
	pkcs1 := x509.MarshalPKCS1PrivateKey(rsaCA.Key.(*rsa.PrivateKey))
	cases := map[string]struct {
		cert, key []byte
		want      string
	}{
		"pkcs8":        {certPEM(ca.Cert), keyPEM, ""},
		"sec1":         {certPEM(ca.Cert), append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8}}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...), ""},
		"pkcs1":        {certPEM(rsaCA.Cert), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: pkcs1}), ""},
		"mismatch":     {certPEM(ca.Cert), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: otherKey}), "does not match the CA certificate CN=ca"},
		"not a CA":     {certPEM(leaf), leafKey, "CN=leaf is not a CA"},
		"no certsign":  {certPEM(noSign.Cert), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: noSignKey}), "lacks keyCertSign"},
		"garbage key":  {certPEM(ca.Cert), []byte("garbage"), "no private key in PEM"},
		"bad key DER":  {certPEM(ca.Cert), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8[:40]}), "does not parse"},
		"encrypted":    {certPEM(ca.Cert), pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: pkcs8}), "encrypted"},
		"huge key":     {certPEM(ca.Cert), append(keyPEM, bytes.Repeat([]byte("\n"), MaxPEM)...), "larger than"},
		"garbage cert": {[]byte("xx"), keyPEM, "CA certificate: not PEM"},
		"huge cert":    {bytes.Repeat([]byte("A"), MaxPEM+1), keyPEM, "CA certificate: PEM larger than"},
	}
	secrets := []string{base64.StdEncoding.EncodeToString(pkcs8)[:24], base64.StdEncoding.EncodeToString(pkcs8[:40])[:24], base64.StdEncoding.EncodeToString(otherKey)[:24]}
	for name, c := range cases {
		got, err := LoadCA(c.cert, c.key)
		switch {
		case c.want == "" && (err != nil || got == nil || got.Key == nil):
			t.Errorf("%s: %v", name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
		if err != nil {
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("%s: error holds key bytes: %v", name, err)
				}
			}
		}
	}
}

func TestNamesFor(t *testing.T) {
	ips, dns := NamesFor(
		[]string{"https://10.0.0.3:2380", "https://10.0.0.3:2379", "https://Node3.Example:2379", "https://[fd00::3]:2380", "https://127.0.0.1:2379"},
		[]string{"etcd.example", "10.0.0.99", "node3.example", "localhost", "::ffff:10.0.0.3", ""})
	var got []string
	for _, ip := range ips {
		got = append(got, ip.String())
	}
	if want := []string{"10.0.0.3", "fd00::3", "127.0.0.1", "10.0.0.99", "::1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ips %v, want %v", got, want)
	}
	if want := []string{"node3.example", "etcd.example", "localhost"}; !reflect.DeepEqual(dns, want) {
		t.Errorf("dns %v, want %v", dns, want)
	}
	ips2, dns2 := NamesFor(nil, nil)
	if len(ips2) != 2 || !reflect.DeepEqual(dns2, []string{"localhost"}) {
		t.Errorf("loopback only: %v %v", ips2, dns2)
	}
}

func TestContains(t *testing.T) {
	a, b := newCA(t, "a", nil, nil), newCA(t, "b", nil, nil)
	if !Contains([]*x509.Certificate{b.Cert, a.Cert}, a.Cert) || Contains([]*x509.Certificate{b.Cert}, a.Cert) || Contains(nil, a.Cert) {
		t.Error("Contains")
	}
}

// The openssl script really runs: a CSR from NewKeyAndCSR signed by the
// machine's openssl, checked like any member certificate.
func TestOpenSSLSignScript(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is not installed (needed under CI=true)")
		}
		t.Skip("openssl is not installed")
	}
	ca := newCA(t, "ca", nil, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(10*365*24*time.Hour)
	})
	dir := t.TempDir()
	caKey, _ := x509.MarshalPKCS8PrivateKey(ca.Key)
	caCert, caKeyPath := filepath.Join(dir, "ca dir's.crt"), filepath.Join(dir, "ca.key")
	if err := os.WriteFile(caCert, certPEM(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caKeyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: caKey}), 0o600); err != nil {
		t.Fatal(err)
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for _, kt := range []KeyType{ECDSAP256, RSA2048, Ed25519} {
		ips, dns := NamesFor([]string{"https://10.0.0.13:2380", "https://node3:2379"}, nil)
		r := Request{CommonName: "etcd3", IPs: ips, DNSNames: dns, Usages: both, KeyType: kt, Valid: 30 * 24 * time.Hour}
		keyPEM, csr, err := NewKeyAndCSR(r)
		if err != nil {
			t.Fatal(err)
		}
		script := OpenSSLSignScript(caCert, caKeyPath, r)
		if strings.Contains(script, "PRIVATE") {
			t.Fatal("script holds a key")
		}
		cmd := exec.Command("sh", "-c", script)
		cmd.Stdin = bytes.NewReader(csr)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v: %s", kt, err, stderr.String())
		}
		cs, err := ParseCerts(out)
		if err != nil {
			t.Fatalf("%s: %v: %q", kt, err, out)
		}
		c := cs[0]
		if p := Check(c, Want{Names: []string{"https://10.0.0.13:2380", "https://node3:2379", "https://127.0.0.1:2379", "localhost", "::1"}, Usages: both,
			Roots: Pool([]*x509.Certificate{ca.Cert}), MinValid: 29 * 24 * time.Hour}); p != nil {
			t.Errorf("%s: %v", kt, p)
		}
		if got, _ := KeyTypeOf(c); got != kt || c.Subject.CommonName != "etcd3" || c.IsCA {
			t.Errorf("%s: key type %s CN %q isCA %v", kt, got, c.Subject.CommonName, c.IsCA)
		}
		b, _ := pem.Decode(keyPEM)
		k, _ := x509.ParsePKCS8PrivateKey(b.Bytes)
		if !k.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c.PublicKey) {
			t.Errorf("%s: signed certificate is not for the new key", kt)
		}
	}
	// A CA key that does not fit fails with openssl's words on stderr.
	other := newCA(t, "other", nil, nil)
	otherKey, _ := x509.MarshalPKCS8PrivateKey(other.Key)
	_ = os.WriteFile(caKeyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: otherKey}), 0o600)
	r := Request{CommonName: "x", DNSNames: []string{"x"}, KeyType: ECDSAP256, Valid: time.Hour}
	_, csr, _ := NewKeyAndCSR(r)
	cmd := exec.Command("sh", "-c", OpenSSLSignScript(caCert, caKeyPath, r))
	cmd.Stdin = bytes.NewReader(csr)
	if out, err := cmd.Output(); err == nil {
		t.Errorf("mismatched CA key signed: %s", out)
	}
}

func FuzzParseCerts(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "seed"}, NotBefore: t0, NotAfter: t0.Add(time.Hour),
		DNSNames: []string{"seed"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := ParseCerts(data)
		if err == nil && len(cs) == 0 {
			t.Fatal("no error and no certificate")
		}
		for _, c := range cs {
			_ = Describe(c)
			_ = Check(c, Want{Names: []string{"https://10.0.0.1:2380", "node"}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				Roots: Pool(cs), Intermediates: cs, Now: t0, MinValid: time.Hour})
			_, _ = KeyTypeOf(c)
			_ = Contains(cs, c)
		}
	})
}
