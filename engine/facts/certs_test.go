package facts

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
)

// testCA makes a CA whose key stays in the test.
func testCA(t *testing.T) *pki.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test etcd CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
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

func TestCertFiles(t *testing.T) {
	got := certFiles(&Settings{CertFile: "/p/server.crt", PeerCertFile: "/p/server.crt", KeyFile: "/p/server.key", TrustedCAFile: "/p/ca.crt"})
	want := []Certificate{{Setting: "ETCD_CERT_FILE, ETCD_PEER_CERT_FILE", Path: "/p/server.crt"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("one file for both: %+v, want %+v", got, want)
	}
	if !got[0].Serves(SettingPeerCertFile) || !got[0].Serves(SettingCertFile) {
		t.Errorf("%q serves both", got[0].Setting)
	}
	got = certFiles(&Settings{PeerCertFile: "/p/peer.crt", PeerKeyFile: "/p/peer.key"})
	want = []Certificate{{Setting: "ETCD_PEER_CERT_FILE", Path: "/p/peer.crt"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("peer only: %+v, want %+v", got, want)
	}
	if got[0].Serves(SettingCertFile) {
		t.Error("a peer certificate does not serve ETCD_CERT_FILE")
	}
	if certFiles(&Settings{Name: "etcd1"}) != nil || certFiles(nil) != nil {
		t.Error("no certificate named: nothing to read")
	}
}

// TestCertScript runs the read script with sh on real files: a
// certificate (with its key in the same file), an absent file, garbage,
// a directory, a file over pki.MaxPEM, a path with a quote.
func TestCertScript(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	ca := testCA(t)
	now := time.Now()
	certPEM, keyPEM, err := pki.Issue(ca, pki.Request{CommonName: "etcd3", IPs: []net.IP{net.ParseIP("10.77.0.13").To4()},
		DNSNames: []string{"localhost"}, KeyType: pki.ECDSAP256, Valid: 24 * time.Hour, Now: now,
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("it's server.crt", append(append([]byte{}, keyPEM...), certPEM...))
	garbage := write("garbage.crt", []byte("not a certificate\n"))
	huge := write("huge.crt", bytes.Repeat([]byte("A"), pki.MaxPEM+10))
	locked := write("locked.crt", certPEM)
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "a-dir.crt")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	files := []Certificate{
		{Setting: "ETCD_CERT_FILE, ETCD_PEER_CERT_FILE", Path: good},
		{Setting: "ETCD_CERT_FILE", Path: filepath.Join(dir, "absent.crt")},
		{Setting: "ETCD_CERT_FILE", Path: garbage},
		{Setting: "ETCD_PEER_CERT_FILE", Path: sub},
		{Setting: "ETCD_PEER_CERT_FILE", Path: huge},
		{Setting: "ETCD_CERT_FILE", Path: locked},
	}
	out, err := exec.Command("sh", "-c", certScript("tok", files)).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := readCertSections(files, parseSections(string(out), "tok"))

	c := got[0]
	if !c.Present || c.Error != "" || c.Subject != "CN=etcd3" || c.Issuer != "CN=test etcd CA" || c.KeyType != "ecdsa-p256" {
		t.Errorf("certificate: %+v", c)
	}
	if want := []string{"IP:10.77.0.13", "DNS:localhost"}; !reflect.DeepEqual(c.SANs, want) {
		t.Errorf("sans %v, want %v", c.SANs, want)
	}
	if !c.NotAfter.Equal(now.Add(24*time.Hour).Truncate(time.Second)) || c.NotAfter.Location() != time.UTC || !c.NotBefore.Before(now) {
		t.Errorf("validity %s .. %s", c.NotBefore, c.NotAfter)
	}
	if c := got[1]; c.Present || c.Error != "" || c.Subject != "" {
		t.Errorf("absent: %+v", c)
	}
	if c := got[2]; !c.Present || c.Error != "not PEM: no -----BEGIN line" {
		t.Errorf("garbage: %+v", c)
	}
	if c := got[3]; !c.Present || c.Error != "not a regular file" {
		t.Errorf("directory: %+v", c)
	}
	if c := got[4]; !c.Present || !strings.Contains(c.Error, "larger than") {
		t.Errorf("huge: %+v", c)
	}
	if c := got[5]; os.Geteuid() != 0 && (!c.Present || c.Error != "permission denied (ssh.sudo: true reads it as root)") {
		t.Errorf("mode 0 (not root): %+v", c)
	}

	// nothing of the PEM (the key above all) gets into the facts
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	keyLine := strings.Split(string(keyPEM), "\n")[1]
	certLine := strings.Split(string(certPEM), "\n")[1]
	if bytes.Contains(b, []byte("-----BEGIN CERTIFICATE")) || bytes.Contains(b, []byte("PRIVATE KEY")) ||
		bytes.Contains(b, []byte(keyLine)) || bytes.Contains(b, []byte(certLine)) {
		t.Errorf("PEM in the facts: %s", b)
	}

	// a command stopped early: what it did not print is not read
	part := readCertSections(files[:2], parseSections(string(out[:bytes.Index(out, []byte("cert-1"))]), "tok"))
	if !part[0].Present || part[1].Error == "" {
		t.Errorf("stopped after the first file: %+v", part)
	}
}
