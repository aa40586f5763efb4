package steps

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// localEnv runs every host's commands with sh on this machine, records
// them with their stdin, and collects Logf lines.
type localEnv struct {
	cmds  []string
	stdin [][]byte
	logs  []string
}

func (e *localEnv) Shell(string) (Runner, error) { return e, nil }
func (e *localEnv) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	e.cmds = append(e.cmds, cmd)
	var in []byte
	if stdin != nil {
		in, _ = io.ReadAll(stdin)
	}
	e.stdin = append(e.stdin, in)
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		return out, &ExitError{Host: "local", Cmd: cmd, Code: xe.ExitCode(), Stderr: stderr.String()}
	}
	return out, err
}
func (e *localEnv) Upload(context.Context, string, string, os.FileMode) (string, error) {
	return "", errors.New("no upload")
}
func (e *localEnv) Etcd(context.Context) (Etcd, error) { return nil, errors.New("no etcd") }
func (e *localEnv) Fact(string) (string, bool)         { return "", false }
func (e *localEnv) SetFact(string, string) error       { return nil }
func (e *localEnv) Logf(f string, a ...any)            { e.logs = append(e.logs, fmt.Sprintf(f, a...)) }

type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func makeCA(t *testing.T, cn string) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{c, key}
}

func (ca testCA) write(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	k, _ := x509.MarshalPKCS8PrivateKey(ca.key)
	certPath, keyPath = filepath.Join(dir, ca.cert.Subject.CommonName+".crt"), filepath.Join(dir, ca.cert.Subject.CommonName+".key")
	must(t, os.WriteFile(certPath, pemOf(ca.cert), 0o644))
	must(t, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}), 0o600))
	return certPath, keyPath
}

// oldPair writes a certificate for ip signed by ca, and its key.
func (ca testCA) oldPair(t *testing.T, certPath, keyPath string, kt pki.KeyType, names ...string) {
	t.Helper()
	ips, dns := pki.NamesFor(names, nil)
	cp, kp, err := pki.Issue(&pki.CA{Cert: ca.cert, Key: ca.key}, pki.Request{CommonName: "old", IPs: ips, DNSNames: dns, KeyType: kt, Valid: 24 * time.Hour})
	must(t, err)
	must(t, os.MkdirAll(filepath.Dir(certPath), 0o755))
	must(t, os.WriteFile(certPath, cp, 0o640))
	must(t, os.WriteFile(keyPath, kp, 0o640))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readCert(t *testing.T, p string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	cs, err := pki.ParseCerts(b)
	must(t, err)
	return cs[0]
}

// certWorld is a member e2 moved to 10.9.0.12 with TLS files in dir.
func certWorld(t *testing.T, service string) (*Ctx, Target, string) {
	dir := t.TempDir()
	c, ts := testCtx(t, dir, service)
	c.Cluster.Layout.Owner = "root:root"
	m := c.Cluster.Members[1]
	m.PeerURL, m.ClientURL = "https://10.9.0.12:2380", "https://10.9.0.12:2379"
	c.Plan.Hosts = map[string]*plans.Host{"h1": ts[0].Host, "h2": ts[1].Host, "h3": ts[2].Host}
	return c, ts[1], dir
}

func runAll(t *testing.T, c *Ctx, s Step, tg Target, env Env) error {
	t.Helper()
	for _, a := range s.Describe(c, tg) {
		if a.Run != nil {
			if err := a.Run(context.Background(), env); err != nil {
				return err
			}
		}
	}
	return nil
}

// The kubespray and lab layout: one certificate for server and peer, named
// in the env file, reissued by a CA on the operator machine; repeated
// after a cut, and checked.
func TestCertIssueSystemdOneFile(t *testing.T) {
	c, tg, dir := certWorld(t, "systemd")
	oldCA, newCA := makeCA(t, "old-ca"), makeCA(t, "new-ca")
	caCert, caKey := newCA.write(t, t.TempDir())
	pkiDir := filepath.Join(dir, "pki")
	crt, key, bundle := filepath.Join(pkiDir, "member.crt"), filepath.Join(pkiDir, "member.key"), filepath.Join(pkiDir, "ca.crt")
	oldCA.oldPair(t, crt, key, pki.RSA2048, "https://10.9.0.2:2380")
	must(t, os.WriteFile(bundle, bytes.TrimRight(pemOf(oldCA.cert), "\n"), 0o644)) // no final newline
	must(t, os.WriteFile(c.Cluster.Layout.EnvFile, []byte(fmt.Sprintf("ETCD_NAME=e2\nETCD_CERT_FILE=%s\nETCD_KEY_FILE=%s\nETCD_TRUSTED_CA_FILE=%s\nETCD_PEER_CERT_FILE=%s\nETCD_PEER_KEY_FILE=%s\nETCD_PEER_TRUSTED_CA_FILE=%s\n", crt, key, bundle, crt, key, bundle)), 0o644))
	oldCert, _ := os.ReadFile(crt)
	oldKey, _ := os.ReadFile(key)

	s := &CertIssue{CA: CAFiles{Cert: caCert, Key: caKey}}
	plans.SetDefaults(s)
	env := &localEnv{}
	if done, _, err := s.Check(context.Background(), c, env, tg); err != nil || done {
		t.Fatalf("check before: %v %v", done, err)
	}
	must(t, runAll(t, c, s, tg, env))
	done, why, err := s.Check(context.Background(), c, env, tg)
	if err != nil || !done {
		t.Fatalf("check after: %v %v", done, err)
	}
	if !strings.Contains(why, "signed by CN=new-ca") {
		t.Errorf("why %q", why)
	}
	got := readCert(t, crt)
	if kt, _ := pki.KeyTypeOf(got); kt != pki.RSA2048 || got.Subject.CommonName != "e2" {
		t.Errorf("new certificate: %s", pki.Describe(got))
	}
	if ps := pki.Check(got, pki.Want{Names: []string{"https://10.9.0.12:2380", "https://127.0.0.1:2379", "localhost"}, Usages: serverClient, Roots: pki.Pool([]*x509.Certificate{newCA.cert})}); ps != nil {
		t.Errorf("new certificate: %v", ps)
	}
	for _, p := range []string{crt, key} {
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, want the old 0640", p, st.Mode().Perm())
		}
	}
	if b, _ := os.ReadFile(crt + ".rescue-R1"); !bytes.Equal(b, oldCert) {
		t.Error("old certificate not kept aside")
	}
	if b, _ := os.ReadFile(key + ".rescue-R1"); !bytes.Equal(b, oldKey) {
		t.Error("old key not kept aside")
	}
	b, _ := os.ReadFile(bundle)
	certs, err := pki.ParseCerts(b)
	if err != nil || len(certs) != 2 || !pki.Contains(certs, oldCA.cert) || !pki.Contains(certs, newCA.cert) {
		t.Errorf("bundle: %d certs, %v", len(certs), err)
	}
	entries, _ := os.ReadDir(pkiDir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "tmp") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
	joined := strings.Join(env.logs, "\n")
	for _, w := range []string{"new server and peer certificate " + crt + ": CN=e2, SANs IP:10.9.0.12, IP:127.0.0.1, IP:::1, DNS:localhost", "rsa-2048",
		"the old one kept as " + crt + ".rescue-R1", "CA bundle " + bundle + " (appended; the old one kept as " + bundle + ".rescue-R1)"} {
		if !strings.Contains(joined, w) {
			t.Errorf("logs lack %q:\n%s", w, joined)
		}
	}
	// Key material only on stdin, never in a command or a log line.
	newKey, _ := os.ReadFile(key)
	for _, text := range append(append([]string{}, env.cmds...), env.logs...) {
		if strings.Contains(text, "PRIVATE KEY") || strings.Contains(text, string(newKey[40:80])) {
			t.Errorf("key material in %q", text)
		}
	}
	if !bytes.Contains(bytes.Join(env.stdin, nil), newKey) {
		t.Error("the new key did not travel on stdin")
	}

	// A repeat (resume after a cut) issues a fresh pair and never
	// overwrites the first aside copies.
	must(t, runAll(t, c, s, tg, &localEnv{}))
	if b, _ := os.ReadFile(crt + ".rescue-R1"); !bytes.Equal(b, oldCert) {
		t.Error("a repeat overwrote the aside copy")
	}
	b, _ = os.ReadFile(bundle)
	if certs, _ := pki.ParseCerts(b); len(certs) != 2 {
		t.Errorf("a repeat appended the CA again: %d certs", len(certs))
	}
	// Killed between the key and the certificate: the certificate's temp
	// file is still there, so Check says not done.
	must(t, os.WriteFile(tmpOf(crt, "R1"), []byte("partial"), 0o600))
	if done, _, err := s.Check(context.Background(), c, &localEnv{}, tg); err != nil || done {
		t.Errorf("check with a temp file left: %v %v", done, err)
	}
}

// kubeadm's layout: separate server and peer files at the default paths
// (overridden here by layout.pki, as the manifest names none), a CA on a
// host signing with openssl.
func TestCertIssueStaticPodTwoFilesCAHost(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is not installed (needed under CI=true)")
		}
		t.Skip("openssl is not installed")
	}
	c, tg, dir := certWorld(t, "static-pod")
	ca := makeCA(t, "etcd-ca")
	caDir := t.TempDir()
	caCert, caKey := ca.write(t, caDir)
	etcdPKI := filepath.Join(dir, "pki", "etcd")
	c.Cluster.Layout.PKI = &plans.PKI{ServerCert: filepath.Join(etcdPKI, "server.crt"), ServerKey: filepath.Join(etcdPKI, "server.key"),
		PeerCert: filepath.Join(etcdPKI, "peer.crt"), PeerKey: filepath.Join(etcdPKI, "peer.key"), TrustedCA: filepath.Join(etcdPKI, "ca.crt"), PeerTrustedCA: filepath.Join(etcdPKI, "ca.crt")}
	must(t, os.MkdirAll(filepath.Dir(c.Cluster.Layout.Manifest), 0o755))
	must(t, os.WriteFile(c.Cluster.Layout.Manifest, []byte("spec:\n  containers:\n  - name: etcd\n    command: [etcd, --name=e2]\n"), 0o600))
	ca.oldPair(t, c.Cluster.Layout.PKI.ServerCert, c.Cluster.Layout.PKI.ServerKey, pki.ECDSAP384, "https://10.9.0.2:2379")
	must(t, os.WriteFile(c.Cluster.Layout.PKI.TrustedCA, pemOf(ca.cert), 0o644))
	// No old peer pair: a new host.

	s := &CertIssue{CA: CAFiles{Cert: caCert, Key: caKey}, CAHost: "h1", ExtraNames: []string{"e2.example"}}
	plans.SetDefaults(s)
	env := &localEnv{}
	files, err := ServiceTLS(context.Background(), c, env, tg)
	if err != nil || files.Source != "layout.pki" || files.PeerKey != c.Cluster.Layout.PKI.PeerKey {
		t.Fatalf("ServiceTLS: %+v %v", files, err)
	}
	must(t, runAll(t, c, s, tg, env))
	if done, _, err := s.Check(context.Background(), c, env, tg); err != nil || !done {
		t.Fatalf("check after: %v %v", done, err)
	}
	server, peer := readCert(t, c.Cluster.Layout.PKI.ServerCert), readCert(t, c.Cluster.Layout.PKI.PeerCert)
	if kt, _ := pki.KeyTypeOf(server); kt != pki.ECDSAP384 {
		t.Errorf("server key type %s, want the old one's", kt)
	}
	if got := strings.Join(pki.SANs(peer), ","); got != "IP:10.9.0.12,IP:127.0.0.1,IP:::1,DNS:e2.example,DNS:localhost" {
		t.Errorf("peer SANs %s", got)
	}
	if st, _ := os.Stat(c.Cluster.Layout.PKI.PeerKey); st.Mode().Perm() != 0o600 {
		t.Errorf("new peer key mode %v", st.Mode().Perm())
	}
	if _, err := os.Stat(c.Cluster.Layout.PKI.PeerCert + ".rescue-R1"); !os.IsNotExist(err) {
		t.Errorf("an aside copy of a file that did not exist: %v", err)
	}
	if _, err := os.Stat(c.Cluster.Layout.PKI.TrustedCA + ".rescue-R1"); !os.IsNotExist(err) {
		t.Errorf("the bundle already held the CA, yet it was rewritten: %v", err)
	}
	for _, cmd := range env.cmds {
		if strings.Contains(cmd, "PRIVATE KEY") {
			t.Errorf("key in a command: %q", cmd)
		}
	}
}

func TestCertIssueMissingFilesAndDescribe(t *testing.T) {
	c, tg, _ := certWorld(t, "systemd")
	must(t, os.WriteFile(c.Cluster.Layout.EnvFile, []byte("ETCD_NAME=e2\nETCD_CERT_FILE=/x.crt\n"), 0o644))
	s := &CertIssue{CA: CAFiles{Cert: "ca.crt", Key: "ca.key"}}
	plans.SetDefaults(s)
	err := runAll(t, c, s, tg, &localEnv{})
	if err == nil || !strings.Contains(err.Error(), "host h2: member e2: the env file "+c.Cluster.Layout.EnvFile+" names no ETCD_KEY_FILE, ETCD_PEER_CERT_FILE, ETCD_PEER_KEY_FILE") ||
		!strings.Contains(err.Error(), "hint: set cluster.layout.pki") {
		t.Errorf("error: %v", err)
	}
	acts := s.Describe(c, tg)
	if len(acts) != 2 || acts[0].Kind != Local || acts[1].Kind != Shell || acts[1].Host != "h2" {
		t.Fatalf("actions %+v", acts)
	}
	for _, w := range []string{"CN=e2", "SANs IP:10.9.0.12, IP:127.0.0.1, IP:::1, DNS:localhost", "server+client auth", "365 days", "its key stays on this machine", "the old certificate's type"} {
		if !strings.Contains(acts[0].Cmd, w) {
			t.Errorf("local action %q lacks %q", acts[0].Cmd, w)
		}
	}
	for _, w := range []string{"ETCD_CERT_FILE/ETCD_KEY_FILE/ETCD_PEER_CERT_FILE/ETCD_PEER_KEY_FILE in " + c.Cluster.Layout.EnvFile, "FILE.rescue-R1", "owner and mode as before"} {
		if !strings.Contains(acts[1].Cmd, w) {
			t.Errorf("shell action %q lacks %q", acts[1].Cmd, w)
		}
	}
}

func TestCertIssueValidate(t *testing.T) {
	c, _, _ := certWorld(t, "systemd")
	cases := map[string]struct {
		s    CertIssue
		want string
	}{
		"fine":       {CertIssue{ValidDays: 365, ExtraNames: []string{"a.example", "*.etcd.example", "10.0.0.1", "fd00::1"}}, ""},
		"caHost":     {CertIssue{ValidDays: 365, CAHost: "h4"}, `caHost "h4" is not in hosts`},
		"days":       {CertIssue{ValidDays: 3651}, "validDays 3651 is not between 1 and 3650"},
		"zero days":  {CertIssue{ValidDays: 0}, "validDays 0"},
		"bad name":   {CertIssue{ValidDays: 1, ExtraNames: []string{"a,DNS:evil"}}, `extraNames: "a,DNS:evil" is neither`},
		"line break": {CertIssue{ValidDays: 1, ExtraNames: []string{"a\nb"}}, "is neither"},
	}
	for name, tc := range cases {
		var fs plans.Findings
		tc.s.Validate(c, func(string) plans.Pos { return plans.Pos{} }, &fs)
		switch {
		case tc.want == "" && len(fs) > 0:
			t.Errorf("%s: %v", name, fs)
		case tc.want != "" && (len(fs) == 0 || !strings.Contains(fs[0].Msg, tc.want)):
			t.Errorf("%s: %v, want %q", name, fs, tc.want)
		}
	}
}

func TestReadCertsBounded(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.pem")
	must(t, os.WriteFile(big, bytes.Repeat([]byte("A"), pki.MaxPEM+100), 0o644))
	keyOnly := filepath.Join(dir, "k.pem")
	must(t, os.WriteFile(keyOnly, []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n"), 0o600))
	env := &localEnv{}
	if _, present, err := ReadCerts(context.Background(), env, "h1", filepath.Join(dir, "none")); present || err != nil {
		t.Errorf("absent: %v %v", present, err)
	}
	if _, _, err := ReadCerts(context.Background(), env, "h1", big); err == nil || !strings.Contains(err.Error(), "host h1: "+big+": PEM larger than") {
		t.Errorf("big: %v", err)
	}
	if _, _, err := ReadCerts(context.Background(), env, "h1", keyOnly); err == nil || strings.Contains(err.Error(), "c2VjcmV0") || !strings.Contains(err.Error(), "no certificate in PEM") {
		t.Errorf("key file: %v", err)
	}
}

// TestCertIssueIssuerNeedsTheWholeCA: what the certificate check asks of a
// pending cert-issue before the first change fails on a CA that could not
// sign: a local key that is missing or belongs to another CA; on caHost a
// key that is not there. Each error names the file, never a key byte.
func TestCertIssueIssuerNeedsTheWholeCA(t *testing.T) {
	c, _, _ := certWorld(t, "systemd")
	ca, other := makeCA(t, "etcd-ca"), makeCA(t, "other-ca")
	dir := t.TempDir()
	caCert, caKey := ca.write(t, dir)
	_, otherKey := other.write(t, dir)
	env := &localEnv{}
	for name, tc := range map[string]struct {
		s    *CertIssue
		want string
	}{
		"local, fine":           {&CertIssue{CA: CAFiles{Cert: caCert, Key: caKey}}, ""},
		"local, key missing":    {&CertIssue{CA: CAFiles{Cert: caCert, Key: filepath.Join(dir, "nope.key")}}, "the CA key"},
		"local, another's key":  {&CertIssue{CA: CAFiles{Cert: caCert, Key: otherKey}}, caCert},
		"caHost, fine":          {&CertIssue{CA: CAFiles{Cert: caCert, Key: caKey}, CAHost: "h1"}, ""},
		"caHost, key not there": {&CertIssue{CA: CAFiles{Cert: caCert, Key: filepath.Join(dir, "nope.key")}, CAHost: "h1"}, "is not readable on host h1"},
	} {
		if _, err := exec.LookPath("openssl"); err != nil && tc.s.CAHost != "" && tc.want == "" {
			continue // signing there needs openssl; the refusal is tested below
		}
		got, err := tc.s.Issuer(context.Background(), c, env)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.want == "" && got.Subject.CommonName != "etcd-ca":
			t.Errorf("%s: issuer %s, want etcd-ca", name, got.Subject.CommonName)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one naming %q", name, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "PRIVATE KEY"):
			t.Errorf("%s: the error quotes a key: %v", name, err)
		}
	}
}
