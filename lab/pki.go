package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Where the TLS files of a TLS lab (Options.TLS) are on the hosts.  One
// member certificate serves both the client and the peer port of a member
// (it also authenticates the member to its peers: ClientAuth usage).
const (
	HostPKIDir     = "/etc/etcd/pki"
	HostCACert     = HostPKIDir + "/ca.crt"
	HostServerCert = HostPKIDir + "/server.crt"
	HostServerKey  = HostPKIDir + "/server.key"
)

// maxHostNames is how many host names (h1..hN) the shared member
// certificate (Options.TLSSharedCert) lists as DNS names.
const maxHostNames = 30

// certValidity is how long the lab's certificates are valid.
const certValidity = 10 * 365 * 24 * time.Hour

// TLS reports whether the lab's etcd uses TLS (https client and peer URLs,
// client certificates required on both).
func (l *Lab) TLS() bool { return l.st.TLS }

// TLSSharedCert reports whether a TLS lab gives every host the same member
// certificate, valid for every address a lab host can have
// (Options.TLSSharedCert), instead of one per host valid for its own
// address only.
func (l *Lab) TLSSharedCert() bool { return l.st.TLS && l.st.TLSSharedCert }

// PKIDir is where a TLS lab keeps its CA, member and client certificates
// on the operator side.
func (l *Lab) PKIDir() string { return filepath.Join(l.dir, "pki") }

// CACertPath and CAKeyPath are the CA of a TLS lab (it signed every
// certificate; the key is 0600).  The inventory has them as vars.caCert
// and vars.caKey, for a plan that issues member certificates.
func (l *Lab) CACertPath() string { return filepath.Join(l.PKIDir(), "ca.crt") }
func (l *Lab) CAKeyPath() string  { return filepath.Join(l.PKIDir(), "ca.key") }

// ClientCertPath and ClientCertKeyPath are the operator's client
// certificate and key for the etcd API of a TLS lab (the inventory's
// cluster.tls.cert and cluster.tls.key).
func (l *Lab) ClientCertPath() string    { return filepath.Join(l.PKIDir(), "client.crt") }
func (l *Lab) ClientCertKeyPath() string { return filepath.Join(l.PKIDir(), "client.key") }

// ServerCertPath and ServerKeyPath are the shared member certificate and
// key of a lab with Options.TLSSharedCert (copied to every host as
// HostServerCert, HostServerKey); a lab with a certificate per host has
// none (see MemberCertPath).
func (l *Lab) ServerCertPath() string { return filepath.Join(l.PKIDir(), "server.crt") }
func (l *Lab) ServerKeyPath() string  { return filepath.Join(l.PKIDir(), "server.key") }

// MemberCertPath and MemberKeyPath are the operator-side copies of the
// member certificate and key the lab installed on host as HostServerCert
// and HostServerKey: <state>/pki/<host>.crt and .key (the key 0600), or
// the shared pair (ServerCertPath) with Options.TLSSharedCert.  A plan
// that issues a new certificate on the host does not update them.
func (l *Lab) MemberCertPath(host string) string {
	if l.TLSSharedCert() {
		return l.ServerCertPath()
	}
	return filepath.Join(l.PKIDir(), host+".crt")
}

func (l *Lab) MemberKeyPath(host string) string {
	if l.TLSSharedCert() {
		return l.ServerKeyPath()
	}
	return filepath.Join(l.PKIDir(), host+".key")
}

// ClientTLS is the client TLS configuration for the etcd API of a TLS lab:
// the lab's CA and the operator's client certificate (nil, nil without TLS).
func (l *Lab) ClientTLS() (*tls.Config, error) {
	if !l.st.TLS {
		return nil, nil
	}
	pool := x509.NewCertPool()
	b, err := os.ReadFile(l.CACertPath())
	if err != nil {
		return nil, fmt.Errorf("lab tls: %w", err)
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("lab tls: no certificate in %s", l.CACertPath())
	}
	pair, err := tls.LoadX509KeyPair(l.ClientCertPath(), l.ClientCertKeyPath())
	if err != nil {
		return nil, fmt.Errorf("lab tls: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// sharedSANs are the names and addresses the shared member certificate
// (Options.TLSSharedCert) is valid for: every address a lab host can ever
// have (Up numbers hosts 10.77.0.(10+N), lost-host's replacement gets the
// next N, ip-change moves a host to 10.77.0.(20+N), +10 while taken, below
// .250), loopback, h1..h30 and localhost.
func sharedSANs() ([]net.IP, []string) {
	ips := []net.IP{net.ParseIP("127.0.0.1").To4()}
	for i := 2; i <= 254; i++ {
		ips = append(ips, net.ParseIP(fmt.Sprintf("%s%d", subnetPrefix, i)).To4())
	}
	dns := []string{"localhost"}
	for i := 1; i <= maxHostNames; i++ {
		dns = append(dns, fmt.Sprintf("h%d", i))
	}
	return ips, dns
}

// memberSANs are the names and addresses the member certificate of host
// name at addr is valid for: that address, loopback, localhost and the
// host's name; not any other address it may get later.
func memberSANs(name, addr string) ([]net.IP, []string) {
	return []net.IP{net.ParseIP(addr), net.ParseIP("127.0.0.1").To4(), net.IPv6loopback}, []string{"localhost", name}
}

// sanList is ips and dns as one comma-separated list, for messages.
func sanList(ips []net.IP, dns []string) string {
	var parts []string
	for _, ip := range ips {
		parts = append(parts, ip.String())
	}
	return strings.Join(append(parts, dns...), ", ")
}

// labCA is the lab's CA with its key (in memory only while it signs).
type labCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// memberUsage: a member certificate serves the client and the peer port
// and authenticates the member to its peers.
var memberUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

// issue signs a new ECDSA P-256 certificate and returns it and its key
// in PEM.
func (ca *labCA) issue(cn string, usage []x509.ExtKeyUsage, ips []net.IP, dns []string) ([]byte, []byte, error) {
	return ca.issueSubject(cn, nil, usage, ips, dns)
}

// issueSubject is issue with the subject's organizations (default
// "etcd-rescue lab"; Kubernetes reads them as the user's groups).
func (ca *labCA) issueSubject(cn string, orgs []string, usage []x509.ExtKeyUsage, ips []net.IP, dns []string) ([]byte, []byte, error) {
	if len(orgs) == 0 {
		orgs = []string{"etcd-rescue lab"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", kder), nil
}

// loadCA reads the lab's CA certificate and key from PKIDir.
func (l *Lab) loadCA() (*labCA, error) {
	read := func(path, typ string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("lab CA: %w", err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != typ {
			return nil, fmt.Errorf("lab CA: %s has no PEM %s", path, typ)
		}
		return blk.Bytes, nil
	}
	cder, err := read(l.CACertPath(), "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	kder, err := read(l.CAKeyPath(), "EC PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(cder)
	if err != nil {
		return nil, fmt.Errorf("lab CA: %s: %w", l.CACertPath(), err)
	}
	key, err := x509.ParseECPrivateKey(kder)
	if err != nil {
		return nil, fmt.Errorf("lab CA: %s: not an EC private key", l.CAKeyPath())
	}
	return &labCA{cert: cert, key: key}, nil
}

// ensurePKI makes the lab's CA and the operator's client certificate
// under PKIDir, and with Options.TLSSharedCert the shared member
// certificate (ECDSA P-256; kept if they exist: Up runs it once per lab).
// Member certificates of their own are made per host (issueMemberFiles).
func (l *Lab) ensurePKI() error {
	dir := l.PKIDir()
	if _, err := os.Stat(l.ClientCertKeyPath()); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki dir: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "etcd-rescue lab CA " + filepath.Base(l.dir), Organization: []string{"etcd-rescue lab"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("pki: CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	ca := &labCA{cert: caCert, key: caKey}
	caKDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	type file struct {
		path string
		data []byte
		mode os.FileMode
	}
	files := []file{
		{l.CAKeyPath(), pemBlock("EC PRIVATE KEY", caKDER), 0o600},
		{l.CACertPath(), pemBlock("CERTIFICATE", caDER), 0o644},
	}
	if l.st.TLSSharedCert {
		ips, dns := sharedSANs()
		srvCrt, srvKey, err := ca.issue("etcd-rescue lab member", memberUsage, ips, dns)
		if err != nil {
			return fmt.Errorf("pki: shared member certificate: %w", err)
		}
		files = append(files, file{l.ServerKeyPath(), srvKey, 0o600}, file{l.ServerCertPath(), srvCrt, 0o644})
	}
	cliCrt, cliKey, err := ca.issue("etcd-rescue operator", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
	if err != nil {
		return fmt.Errorf("pki: client certificate: %w", err)
	}
	files = append(files,
		file{l.ClientCertPath(), cliCrt, 0o644},
		file{l.ClientCertKeyPath(), cliKey, 0o600}, // last: its presence means the set is complete
	)
	for _, f := range files {
		if err := writeFileAtomic(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// issueMemberFiles makes host h's own member certificate, for its current
// address (memberSANs), signed by the lab's CA, at MemberCertPath and
// MemberKeyPath (replacing an older one).  It returns the SANs, for
// messages.
func (l *Lab) issueMemberFiles(h *Host) (string, error) {
	l.mu.Lock()
	name, addr := h.Name, h.Address
	l.mu.Unlock()
	ca, err := l.loadCA()
	if err != nil {
		return "", err
	}
	ips, dns := memberSANs(name, addr)
	crt, key, err := ca.issue(name, memberUsage, ips, dns)
	if err != nil {
		return "", fmt.Errorf("member certificate of %s: %w", name, err)
	}
	if err := writeFileAtomic(l.MemberKeyPath(name), key, 0o600); err != nil {
		return "", err
	}
	if err := writeFileAtomic(l.MemberCertPath(name), crt, 0o644); err != nil {
		return "", err
	}
	return sanList(ips, dns), nil
}

// IssueMemberCert (re)issues host's member certificate for the host's
// current address (and 127.0.0.1, ::1, localhost, its name), signed by the
// lab's CA, and installs it with its key as HostServerCert and
// HostServerKey (and the CA as HostCACert); etcd reads them when it
// (re)starts, which is the caller's business.  This is what an IP change
// or a replacement host needs before its member can (re)join.  With
// Options.TLSSharedCert it installs the shared certificate again (valid
// for every lab address).
func (l *Lab) IssueMemberCert(ctx context.Context, host string) error {
	if !l.st.TLS {
		return fmt.Errorf("issue a member certificate for %s: the lab has no TLS (lab up --tls)", host)
	}
	h, ok := l.hostPtr(host)
	if !ok {
		return fmt.Errorf("issue a member certificate: no lab host %s", host)
	}
	if l.TLSSharedCert() {
		if err := l.installPKI(ctx, h, true); err != nil {
			return err
		}
		crt, _ := l.hostMemberPaths()
		l.logf("tls: %s: the shared member certificate (valid for every lab address) installed again at %s", h.Name, crt)
		return nil
	}
	sans, err := l.issueMemberFiles(h)
	if err != nil {
		return fmt.Errorf("issue a member certificate for %s: %w", host, err)
	}
	if err := l.installPKI(ctx, h, true); err != nil {
		return err
	}
	crt, key := l.hostMemberPaths()
	l.logf("tls: %s: new member certificate for %s installed at %s (key %s; copies in %s)", h.Name, sans, crt, key, l.PKIDir())
	return nil
}

// hostMemberPaths are where a host's member certificate and key are: the
// env file's HostServerCert and HostServerKey, or kubeadm's etcd server
// pair on the static-pod layout (also installed as the peer pair).
func (l *Lab) hostMemberPaths() (string, string) {
	if l.StaticPod() {
		return KubeEtcdPKIDir + "/server.crt", KubeEtcdPKIDir + "/server.key"
	}
	return HostServerCert, HostServerKey
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// installPKI copies the CA certificate, and with member the host's member
// certificate and key (MemberCertPath), to HostPKIDir on host h: the
// directory 0755, the certificates 0644, the key 0600 owned by etcd (user
// etcd must exist: provision makes it).
func (l *Lab) installPKI(ctx context.Context, h *Host, member bool) error {
	if l.StaticPod() {
		return l.installKubePKI(ctx, h, member)
	}
	type file struct {
		src, path, owner, mode string
	}
	files := []file{{l.CACertPath(), HostCACert, "root:root", "0644"}}
	if member {
		files = append(files,
			file{l.MemberCertPath(h.Name), HostServerCert, "root:root", "0644"},
			file{l.MemberKeyPath(h.Name), HostServerKey, "etcd:etcd", "0600"})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "set -e\ninstall -d -o root -g etcd -m 0755 %s\numask 077\n", HostPKIDir)
	for _, f := range files {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return fmt.Errorf("install tls files on %s: %w", h.Name, err)
		}
		fmt.Fprintf(&b, "cat > %s.tmp <<'LABPKI'\n%sLABPKI\nchown %s %s.tmp\nchmod %s %s.tmp\nmv -f %s.tmp %s\n",
			f.path, data, f.owner, f.path, f.mode, f.path, f.path, f.path)
	}
	if out, err := l.Run(ctx, h.Name, b.String(), nil); err != nil {
		return withOutput(fmt.Errorf("install tls files on %s: %w", h.Name, err), out)
	}
	return nil
}

// tlsEnv are the env file lines of a TLS lab's member: client and peer
// TLS with client certificates required on both.
func tlsEnv() string {
	return fmt.Sprintf(`ETCD_CERT_FILE=%[1]s
ETCD_KEY_FILE=%[2]s
ETCD_TRUSTED_CA_FILE=%[3]s
ETCD_CLIENT_CERT_AUTH=true
ETCD_PEER_CERT_FILE=%[1]s
ETCD_PEER_KEY_FILE=%[2]s
ETCD_PEER_TRUSTED_CA_FILE=%[3]s
ETCD_PEER_CLIENT_CERT_AUTH=true
`, HostServerCert, HostServerKey, HostCACert)
}
