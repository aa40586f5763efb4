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
// server certificate serves both the client and the peer port of every
// member (it also authenticates a member to its peers: ClientAuth usage).
const (
	HostPKIDir     = "/etc/etcd/pki"
	HostCACert     = HostPKIDir + "/ca.crt"
	HostServerCert = HostPKIDir + "/server.crt"
	HostServerKey  = HostPKIDir + "/server.key"
)

// maxHostNames is how many host names (h1..hN) the server certificate
// lists as DNS names.  Members are reached by address: the names are a
// convenience (ssh config uses them too).
const maxHostNames = 30

// TLS reports whether the lab's etcd uses TLS (https client and peer URLs,
// client certificates required on both).
func (l *Lab) TLS() bool { return l.st.TLS }

// PKIDir is where a TLS lab keeps its CA, server and client certificates
// on the operator side.
func (l *Lab) PKIDir() string { return filepath.Join(l.dir, "pki") }

// CACertPath is the CA certificate of a TLS lab (it signed every certificate).
func (l *Lab) CACertPath() string { return filepath.Join(l.PKIDir(), "ca.crt") }

// ClientCertPath and ClientCertKeyPath are the operator's client
// certificate and key for the etcd API of a TLS lab (the inventory's
// cluster.tls.cert and cluster.tls.key).
func (l *Lab) ClientCertPath() string    { return filepath.Join(l.PKIDir(), "client.crt") }
func (l *Lab) ClientCertKeyPath() string { return filepath.Join(l.PKIDir(), "client.key") }

// ServerCertPath and ServerKeyPath are the members' certificate and key
// (copied to every host as HostServerCert, HostServerKey).
func (l *Lab) ServerCertPath() string { return filepath.Join(l.PKIDir(), "server.crt") }
func (l *Lab) ServerKeyPath() string  { return filepath.Join(l.PKIDir(), "server.key") }

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

// serverSANs are the names and addresses the one server certificate is
// valid for: every address a lab host can ever have (Up numbers hosts
// 10.77.0.(10+N), lost-host's replacement gets the next N, ip-change moves
// a host to 10.77.0.(20+N), +10 while taken, below .250), loopback, h1..h30
// and localhost.
func serverSANs() ([]net.IP, []string) {
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

// ensurePKI makes the lab's CA, server and client certificates under
// PKIDir (ECDSA P-256; kept if they exist: Up runs it once per lab).
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
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("pki: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	issue := func(cn string, usage []x509.ExtKeyUsage, ips []net.IP, dns []string) ([]byte, []byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: cn, Organization: []string{"etcd-rescue lab"}},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  usage,
			IPAddresses:  ips,
			DNSNames:     dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", kder), nil
	}
	ips, dns := serverSANs()
	srvCrt, srvKey, err := issue("etcd-rescue lab member", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, ips, dns)
	if err != nil {
		return fmt.Errorf("pki: server certificate: %w", err)
	}
	cliCrt, cliKey, err := issue("etcd-rescue operator", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
	if err != nil {
		return fmt.Errorf("pki: client certificate: %w", err)
	}
	caKDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{filepath.Join(dir, "ca.key"), pemBlock("EC PRIVATE KEY", caKDER), 0o600},
		{l.CACertPath(), pemBlock("CERTIFICATE", caDER), 0o644},
		{l.ServerKeyPath(), srvKey, 0o600},
		{l.ServerCertPath(), srvCrt, 0o644},
		{l.ClientCertPath(), cliCrt, 0o644},
		{l.ClientCertKeyPath(), cliKey, 0o600}, // last: its presence means the set is complete
	} {
		if err := writeFileAtomic(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
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

// installPKI copies the CA certificate and the server certificate and key
// to HostPKIDir on host h: the directory 0755, the certificates 0644, the
// key 0600 owned by etcd (user etcd must exist: provision makes it).
func (l *Lab) installPKI(ctx context.Context, h *Host) error {
	var files [3][]byte
	for i, p := range []string{l.CACertPath(), l.ServerCertPath(), l.ServerKeyPath()} {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("install tls files on %s: %w", h.Name, err)
		}
		files[i] = b
	}
	var b strings.Builder
	fmt.Fprintf(&b, "set -e\ninstall -d -o root -g etcd -m 0755 %s\numask 077\n", HostPKIDir)
	for i, f := range []struct {
		path, owner, mode string
	}{
		{HostCACert, "root:root", "0644"},
		{HostServerCert, "root:root", "0644"},
		{HostServerKey, "etcd:etcd", "0600"},
	} {
		fmt.Fprintf(&b, "cat > %s.tmp <<'LABPKI'\n%sLABPKI\nchown %s %s.tmp\nchmod %s %s.tmp\nmv -f %s.tmp %s\n",
			f.path, files[i], f.owner, f.path, f.mode, f.path, f.path, f.path)
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
