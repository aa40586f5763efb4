package etcdstate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// testCA is a CA that signs certificates into PEM files of a dir.
type testCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate's PEM file
}

func newCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{dir: dir, cert: cert, key: key, file: filepath.Join(dir, name+".crt")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes NAME.crt and NAME.key, a certificate for 127.0.0.1 usable
// by a server and a client.
func (ca *testCA) issue(t *testing.T, name string, serial int64) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kb)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// lockCreateSave takes the lock of cluster prod and writes run r and a
// checkpoint of it: the store works.
func lockCreateSave(t *testing.T, s *Store) {
	t.Helper()
	l := mustLock(t, s, "prod", "r")
	rev, err := s.Create(bg, l, "r", []byte("{}"), runstate.RunFiles{Plan: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(bg, l, "r", rev, []byte(`{"n":1}`), []byte("x\n")); err != nil {
		t.Fatal(err)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	srvCert, srvKey := ca.issue(t, "server", 2)
	cliCert, cliKey := ca.issue(t, "client", 3)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	pair, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	p := startEtcd(t, etcdOpts{cert: srvCert, key: srvKey, clientCA: ca.file,
		probeTLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}})

	s := open(t, p, Config{CACert: ca.file, Cert: cliCert, Key: cliKey})
	lockCreateSave(t, s)

	// A CA that did not sign the server's certificate.
	other := newCA(t, t.TempDir(), "other")
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	_, err = Open(ctx, Config{Endpoints: []string{p.Endpoint()}, CACert: other.file, Cert: cliCert, Key: cliKey, DialTimeout: time.Second})
	contains(t, err, "state store etcd://"+p.Endpoint(), "no answer from "+p.Endpoint(), "certificate signed by unknown authority", "TLS files")
	t.Logf("untrusted CA: %v", err)

	// No client certificate: the server refuses the handshake.
	_, err = Open(ctx, Config{Endpoints: []string{p.Endpoint()}, CACert: ca.file, DialTimeout: time.Second})
	contains(t, err, "no answer from "+p.Endpoint(), "TLS")
	t.Logf("no client certificate: %v", err)

	// Unreadable files are named.
	_, err = Open(ctx, Config{Endpoints: []string{p.Endpoint()}, CACert: filepath.Join(dir, "missing.crt")})
	contains(t, err, "etcd tls ca", "missing.crt")
	_, err = Open(ctx, Config{Endpoints: []string{p.Endpoint()}, CACert: ca.file, Cert: cliCert})
	contains(t, err, "must be given together")
}

func TestAuth(t *testing.T) {
	const password = "s3cret-Passw0rd"
	p := startEtcd(t, etcdOpts{})
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + p.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if _, err := root.UserAdd(ctx, "root", password); err != nil {
		t.Fatal(err)
	}
	if _, err := root.RoleAdd(ctx, "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	_ = root.Close()

	s := open(t, p, Config{User: "root", Password: password, Prefix: "ops"})
	if strings.Contains(s.Where(), "root") || strings.Contains(s.Where(), password) {
		t.Fatalf("Where %q names the credentials", s.Where())
	}
	lockCreateSave(t, s)
	if o, err := s.Break(bg, "prod"); err != nil || o == nil {
		t.Fatalf("Break under auth: %+v, %v", o, err)
	}

	wrong := "Wr0ng-" + password
	_, err = Open(ctx, Config{Endpoints: []string{p.Endpoint()}, User: "root", Password: wrong, DialTimeout: time.Second})
	contains(t, err, "state store etcd://"+p.Endpoint()+"/etcd-rescue: refused by "+p.Endpoint(), "authentication failed", "check the store's user and password")
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), password) {
		t.Fatalf("the error shows the password: %v", err)
	}
	t.Logf("wrong password: %v", err)

	_, err = Open(ctx, Config{Endpoints: []string{p.Endpoint()}, DialTimeout: time.Second})
	contains(t, err, "refused by "+p.Endpoint(), "give its user and password")
	t.Logf("no credentials: %v", err)
	_, err = Open(ctx, Config{Endpoints: []string{p.Endpoint()}, User: "root"})
	contains(t, err, "user and a password must be given together")
}
