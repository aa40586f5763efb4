// Package pki owns the certificate logic of etcd-rescue: reading PEM
// bundles, checking a member certificate against the URLs it must serve,
// its chain, expiry and usages, and issuing new member certificates from a
// CA the operator provides (in process, or by openssl on the CA's host).
// It does no I/O besides what its callers pass in, and no error or message
// of it ever contains private key bytes.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
)

// MaxPEM bounds any PEM input (1 MiB): larger input is an error, never read further.
const MaxPEM = 1 << 20

// ParseCerts returns every CERTIFICATE block of a PEM bundle, in order.
// Errors: empty, too large, garbage, no CERTIFICATE block ("no certificate in PEM").
// Other blocks (a private key put in the same file) are skipped, never quoted.
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty PEM")
	}
	if len(data) > MaxPEM {
		return nil, fmt.Errorf("PEM larger than %d bytes", MaxPEM)
	}
	var out []*x509.Certificate
	rest := data
	blocks := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks++
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d of the PEM: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if blocks == 0 {
		return nil, errors.New("not PEM: no -----BEGIN line")
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate in PEM")
	}
	return out, nil
}

// SANs lists a certificate's names for people: "IP:10.0.0.3", "DNS:node3"
// (IPs first, then DNS, then URIs).
func SANs(c *x509.Certificate) []string {
	var out []string
	for _, ip := range c.IPAddresses {
		out = append(out, "IP:"+ip.String())
	}
	for _, d := range c.DNSNames {
		out = append(out, "DNS:"+d)
	}
	for _, u := range c.URIs {
		out = append(out, "URI:"+u.String())
	}
	return out
}

// Describe is one line for people: subject CN, SANs, expiry date, key type, e.g.
// "CN=etcd3, SANs IP:10.0.0.3, IP:127.0.0.1, DNS:localhost, valid until 2027-12-01, ecdsa-p256".
func Describe(c *x509.Certificate) string {
	sans := "no SANs"
	if s := SANs(c); len(s) > 0 {
		sans = "SANs " + strings.Join(s, ", ")
	}
	kt, err := KeyTypeOf(c)
	k := string(kt)
	if err != nil {
		k = "unknown key type"
	}
	return fmt.Sprintf("CN=%s, %s, valid until %s, %s", c.Subject.CommonName, sans, c.NotAfter.UTC().Format("2006-01-02"), k)
}

// Problem is one reason a certificate cannot serve where it is needed.
type Problem struct {
	Kind string // ProblemMissingSAN | ProblemUntrusted | ProblemExpired | ProblemExpiring | ProblemNotYetValid | ProblemUsage
	Text string // what is wrong, e.g. "not valid for 10.0.0.13 (the URL https://10.0.0.13:2380); valid for IP:10.0.0.3, ..."
}

// The kinds of [Problem].
const (
	ProblemMissingSAN  = "missing-san"
	ProblemUntrusted   = "untrusted"
	ProblemExpired     = "expired"
	ProblemExpiring    = "expiring"
	ProblemNotYetValid = "not-yet-valid"
	ProblemUsage       = "usage"
)

// Want is what a certificate must satisfy.
type Want struct {
	// Names are URLs (https://10.0.0.3:2380) or bare hosts (10.0.0.3, node3) the certificate
	// must be valid for; an IP must be an IP SAN, a name a DNS SAN (wildcards as crypto/x509 does).
	Names         []string
	Usages        []x509.ExtKeyUsage  // each must be allowed (no EKU extension = any)
	Roots         *x509.CertPool      // nil: chain not checked
	RootsFrom     string              // where Roots came from, for messages ("the CA bundle /etc/etcd/pki/ca.crt on h1")
	Intermediates []*x509.Certificate // extra certs of the same file after the leaf
	Now           time.Time           // zero: time.Now()
	MinValid      time.Duration       // ProblemExpiring when NotAfter - Now < MinValid
}

// HostOf is the host of a URL (https://10.0.0.3:2380 → 10.0.0.3, IPv6
// without brackets), or name itself, without brackets, when it is no URL.
func HostOf(name string) string {
	if strings.Contains(name, "://") {
		if u, err := url.Parse(name); err == nil {
			return u.Hostname()
		}
	}
	return strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
}

// Check returns every problem of c against w (nil: fine).
func Check(c *x509.Certificate, w Want) []Problem {
	var out []Problem
	now := w.Now
	if now.IsZero() {
		now = time.Now()
	}
	// Names: one problem per host, naming every URL that needs it.
	var hosts []string
	urls := map[string][]string{}
	for _, n := range w.Names {
		h := HostOf(n)
		if h == "" {
			continue
		}
		if _, seen := urls[h]; !seen {
			hosts = append(hosts, h)
			urls[h] = nil
		}
		if n != h {
			urls[h] = append(urls[h], n)
		}
	}
	for _, h := range hosts {
		if c.VerifyHostname(h) == nil {
			continue
		}
		what := h
		if len(urls[h]) > 0 {
			what += " (the URL " + strings.Join(urls[h], ", ") + ")"
		}
		valid := "it has no SANs"
		if s := SANs(c); len(s) > 0 {
			valid = "valid for " + strings.Join(s, ", ")
		}
		kind := "an IP SAN"
		if net.ParseIP(h) == nil {
			kind = "a DNS SAN"
		}
		out = append(out, Problem{Kind: ProblemMissingSAN, Text: fmt.Sprintf("not valid for %s, which needs %s; %s", what, kind, valid)})
	}
	for _, u := range w.Usages {
		if !allowsUsage(c, u) {
			out = append(out, Problem{Kind: ProblemUsage, Text: fmt.Sprintf("not allowed for %s (extended key usage: %s)", usageName(u), usageList(c))})
		}
	}
	switch {
	case now.After(c.NotAfter):
		out = append(out, Problem{Kind: ProblemExpired, Text: "expired on " + c.NotAfter.UTC().Format(time.RFC3339)})
	case now.Before(c.NotBefore):
		out = append(out, Problem{Kind: ProblemNotYetValid, Text: "not valid before " + c.NotBefore.UTC().Format(time.RFC3339) + " (is a clock wrong?)"})
	case c.NotAfter.Sub(now) < w.MinValid:
		left := c.NotAfter.Sub(now)
		out = append(out, Problem{Kind: ProblemExpiring, Text: fmt.Sprintf("expires on %s, in %s, less than the %s required",
			c.NotAfter.UTC().Format(time.RFC3339), days(left), days(w.MinValid))})
	}
	if w.Roots != nil {
		// The leaf's own dates are reported above: the chain is verified at
		// a time the leaf is valid, so that an expired CA still shows.
		at := now
		if at.After(c.NotAfter) {
			at = c.NotAfter
		}
		if at.Before(c.NotBefore) {
			at = c.NotBefore
		}
		opts := x509.VerifyOptions{Roots: w.Roots, Intermediates: Pool(w.Intermediates), CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		if _, err := c.Verify(opts); err != nil {
			from := w.RootsFrom
			if from == "" {
				from = "the trusted CAs"
			}
			out = append(out, Problem{Kind: ProblemUntrusted, Text: fmt.Sprintf("issued by %s, not trusted by %s: %v", c.Issuer.String(), from, err)})
		}
	}
	return out
}

func days(d time.Duration) string {
	n := int(d / (24 * time.Hour))
	if d > 0 && d < 24*time.Hour {
		return fmt.Sprintf("%s (less than a day)", d.Round(time.Minute))
	}
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

func allowsUsage(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, e := range c.ExtKeyUsage {
		if e == u || e == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "server authentication"
	case x509.ExtKeyUsageClientAuth:
		return "client authentication"
	case x509.ExtKeyUsageAny:
		return "any"
	}
	return fmt.Sprintf("extended key usage %d", u)
}

func usageList(c *x509.Certificate) string {
	var s []string
	for _, e := range c.ExtKeyUsage {
		s = append(s, usageName(e))
	}
	for _, o := range c.UnknownExtKeyUsage {
		s = append(s, o.String())
	}
	return strings.Join(s, ", ")
}

// KeyType is a key algorithm and size.
type KeyType string

// The key types Issue makes.
const (
	ECDSAP256 KeyType = "ecdsa-p256"
	ECDSAP384 KeyType = "ecdsa-p384"
	ECDSAP521 KeyType = "ecdsa-p521"
	RSA2048   KeyType = "rsa-2048"
	RSA3072   KeyType = "rsa-3072"
	RSA4096   KeyType = "rsa-4096"
	Ed25519   KeyType = "ed25519"
)

// KeyTypes lists the key types, for docs and enums.
func KeyTypes() []KeyType {
	return []KeyType{ECDSAP256, ECDSAP384, ECDSAP521, RSA2048, RSA3072, RSA4096, Ed25519}
}

// KeyTypeOf returns the key type of c's public key.
func KeyTypeOf(c *x509.Certificate) (KeyType, error) {
	return keyTypeOfPublic(c.PublicKey)
}

func keyTypeOfPublic(pub any) (KeyType, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256, nil
		case elliptic.P384():
			return ECDSAP384, nil
		case elliptic.P521():
			return ECDSAP521, nil
		}
		return "", fmt.Errorf("ecdsa key on curve %s is not supported", k.Curve.Params().Name)
	case *rsa.PublicKey:
		kt := KeyType(fmt.Sprintf("rsa-%d", k.N.BitLen()))
		if _, err := ParseKeyType(string(kt)); err != nil {
			return "", fmt.Errorf("an %s key is not supported (one of %s)", kt, keyTypeList())
		}
		return kt, nil
	case ed25519.PublicKey:
		return Ed25519, nil
	}
	return "", fmt.Errorf("key of type %T is not supported", pub)
}

func keyTypeList() string {
	var s []string
	for _, k := range KeyTypes() {
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}

// ParseKeyType reads a key type name.
func ParseKeyType(s string) (KeyType, error) {
	for _, k := range KeyTypes() {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown key type %q (one of %s)", s, keyTypeList())
}

func newKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case ECDSAP521:
		return ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	_, err := ParseKeyType(string(kt))
	return nil, err
}

// CA is an issuing CA loaded on the operator machine.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// LoadCA parses a CA certificate and its private key (PEM: PKCS#1, PKCS#8, SEC1 EC); refuses a key that
// does not match the certificate, a certificate that is not a CA (IsCA, KeyUsageCertSign when KeyUsage set).
// Errors never contain key bytes.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := ParseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	c := certs[0]
	if err := IsCA(c); err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(c.PublicKey) {
		return nil, fmt.Errorf("CA key does not match the CA certificate CN=%s (it is the key of another certificate)", c.Subject.CommonName)
	}
	return &CA{Cert: c, Key: key}, nil
}

// IsCA says why c cannot sign certificates (nil: it can).
func IsCA(c *x509.Certificate) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return fmt.Errorf("certificate CN=%s is not a CA (no basicConstraints CA:TRUE)", c.Subject.CommonName)
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("certificate CN=%s may not sign certificates (its keyUsage lacks keyCertSign)", c.Subject.CommonName)
	}
	return nil
}

// parseKey reads the first private key of a PEM file. Its errors are its
// own words: those of crypto/x509 and encoding/asn1 could quote bytes.
func parseKey(data []byte) (crypto.Signer, error) {
	if len(data) > MaxPEM {
		return nil, fmt.Errorf("PEM larger than %d bytes", MaxPEM)
	}
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no private key in PEM (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")
		}
		if b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] != "" {
			return nil, errors.New("the key is encrypted; write a decrypted copy (openssl pkey -in KEY -out PLAIN) on a protected disk and point ca.key at it")
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("the %s block does not parse", b.Type)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, errors.New("unsupported private key type")
		}
		return s, nil
	}
}

// Request is a member certificate to issue.
type Request struct {
	CommonName string
	IPs        []net.IP
	DNSNames   []string
	Usages     []x509.ExtKeyUsage // e.g. ServerAuth+ClientAuth
	KeyType    KeyType
	Valid      time.Duration // from Now; capped at the CA's NotAfter
	Now        time.Time
}

// backdate is how far before Now a certificate's NotBefore lies: a host
// whose clock is a little behind the operator's must not see it "not yet
// valid".
const backdate = 5 * time.Minute

// NamesFor returns the SANs of a member certificate: the hosts of urls (IPs as IP SANs, names as DNS
// SANs), plus 127.0.0.1, ::1 and localhost (as kubeadm and kubespray do), plus extra (IP or DNS each),
// without duplicates, in a stable order: the URLs' hosts, then extra, then the loopback names.
func NamesFor(urls []string, extra []string) (ips []net.IP, dns []string) {
	seenIP := map[string]bool{}
	seenDNS := map[string]bool{}
	add := func(h string) {
		h = HostOf(strings.TrimSpace(h))
		if h == "" {
			return
		}
		if ip := net.ParseIP(h); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if !seenIP[ip.String()] {
				seenIP[ip.String()] = true
				ips = append(ips, ip)
			}
			return
		}
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if !seenDNS[h] {
			seenDNS[h] = true
			dns = append(dns, h)
		}
	}
	for _, u := range urls {
		add(u)
	}
	for _, e := range extra {
		add(e)
	}
	for _, l := range []string{"127.0.0.1", "::1", "localhost"} {
		add(l)
	}
	return ips, dns
}

// ValidDNSName reports whether s may be a DNS SAN: letters, digits,
// hyphens and dots, optionally one leading "*." label (a wildcard). Nothing
// else passes, so a name can never carry syntax into openssl's
// configuration (commas, newlines).
func ValidDNSName(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func (r Request) check() error {
	if r.CommonName == "" {
		return errors.New("certificate request without a common name")
	}
	if len(r.IPs)+len(r.DNSNames) == 0 {
		return errors.New("certificate request without a name (no IP or DNS SAN)")
	}
	for _, d := range r.DNSNames {
		if !ValidDNSName(d) {
			return fmt.Errorf("%q is not a DNS name", d)
		}
	}
	if strings.ContainsAny(r.CommonName, "\n\r/") {
		return fmt.Errorf("common name %q has a line break or a slash", r.CommonName)
	}
	if r.Valid <= 0 {
		return errors.New("certificate request with no validity")
	}
	_, err := ParseKeyType(string(r.KeyType))
	return err
}

func (r Request) now() time.Time {
	if r.Now.IsZero() {
		return time.Now()
	}
	return r.Now
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// Issue makes a new private key of r.KeyType and a certificate for it signed by ca.
// Returns PEM; keyPEM is PKCS#8 ("PRIVATE KEY") — never log it.
func Issue(ca *CA, r Request) (certPEM, keyPEM []byte, err error) {
	if err := r.check(); err != nil {
		return nil, nil, err
	}
	now := r.now()
	if !now.Before(ca.Cert.NotAfter) {
		return nil, nil, fmt.Errorf("the CA certificate CN=%s expired on %s", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := newKey(r.KeyType)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(r.Valid)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	ku := x509.KeyUsageDigitalSignature
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: r.CommonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              ku,
		ExtKeyUsage:           r.Usages,
		BasicConstraintsValid: true,
		IPAddresses:           r.IPs,
		DNSNames:              r.DNSNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the certificate for %s: %w", r.CommonName, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, errors.New("encoding the new private key failed")
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// NewKeyAndCSR makes a new key and a CSR for it, for a CA whose key stays
// on a host (caHost): the CSR is signed there by openssl
// ([OpenSSLSignScript]). keyPEM is PKCS#8 — never log it.
func NewKeyAndCSR(r Request) (keyPEM, csrPEM []byte, err error) {
	if err := r.check(); err != nil {
		return nil, nil, err
	}
	key, err := newKey(r.KeyType)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: r.CommonName}, IPAddresses: r.IPs, DNSNames: r.DNSNames}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("making the certificate request for %s: %w", r.CommonName, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, errors.New("encoding the new private key failed")
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// OpenSSLSignScript is the POSIX sh script that, run on the CA host, reads the CSR on stdin and prints the
// signed certificate (PEM) on stdout, with r's SANs, usages and validity, a random serial, signed with
// the CA cert and key at caCert, caKey on that host (the key never leaves it). Needs openssl >= 1.1.1.
// The SANs and usages come from r, not from the CSR.
func OpenSSLSignScript(caCertPath, caKeyPath string, r Request) string {
	var san []string
	for _, ip := range r.IPs {
		san = append(san, "IP:"+ip.String())
	}
	for _, d := range r.DNSNames {
		san = append(san, "DNS:"+d)
	}
	ku := "critical,digitalSignature"
	if strings.HasPrefix(string(r.KeyType), "rsa-") {
		ku += ",keyEncipherment"
	}
	var eku []string
	for _, u := range r.Usages {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			eku = append(eku, "serverAuth")
		case x509.ExtKeyUsageClientAuth:
			eku = append(eku, "clientAuth")
		}
	}
	ext := "basicConstraints=critical,CA:FALSE\nkeyUsage=" + ku + "\n"
	if len(eku) > 0 {
		ext += "extendedKeyUsage=" + strings.Join(eku, ",") + "\n"
	}
	if len(san) > 0 {
		ext += "subjectAltName=" + strings.Join(san, ",") + "\n"
	}
	ext += "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
	d := int((r.Valid + 24*time.Hour - 1) / (24 * time.Hour))
	if d < 1 {
		d = 1
	}
	return strings.Join([]string{
		"set -eu",
		"umask 077",
		`d=$(mktemp -d)`,
		`trap 'rm -rf "$d"' EXIT`,
		`head -c ` + fmt.Sprint(MaxPEM) + ` > "$d/req.csr"`,
		`printf '%s' ` + shellquote.Quote(ext) + ` > "$d/ext.cnf"`,
		`openssl x509 -req -in "$d/req.csr" -CA ` + shellquote.Quote(caCertPath) + ` -CAkey ` + shellquote.Quote(caKeyPath) +
			` -set_serial "0x$(openssl rand -hex 16)" -days ` + fmt.Sprint(d) + ` -sha256 -extfile "$d/ext.cnf" -out "$d/cert.pem" 2>"$d/err" || { cat "$d/err" >&2; exit 1; }`,
		`cat "$d/cert.pem"`,
	}, "\n") + "\n"
}

// Contains reports whether bundle holds c (same raw DER).
func Contains(bundle []*x509.Certificate, c *x509.Certificate) bool {
	for _, b := range bundle {
		if bytes.Equal(b.Raw, c.Raw) {
			return true
		}
	}
	return false
}

// Pool makes a CertPool of certs.
func Pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
