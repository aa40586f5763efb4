package lab

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/etcd-rescue/etcd-rescue/tests/framework/testutil"
)

// TestLabTLS is a 3-member etcd 3.6 lab with TLS: the certificates (a
// member certificate per host, valid for its own address only), the hosts'
// files, the inventory, client certificates really required on the client
// and the peer port, no plain http anywhere; then every break, each
// repaired over TLS as a plan would, with the lab's own Status and Verify
// (and its total-loss snapshot) working throughout.  ip-change and
// lost-host really need a new member certificate: without one, the peers
// refuse the moved member and the replacement's etcd does not start; with
// IssueMemberCert they rejoin.  The shared certificate
// (Options.TLSSharedCert) is checked without a lab in TestLabPKI.
func TestLabTLS(t *testing.T) {
	l := upLab(t, Options{Members: 3, Version: "3.6", Keys: 200, TLS: true})
	ctx := context.Background()
	mustVerify(t, l)
	if !l.TLS() || l.TLSSharedCert() {
		t.Fatalf("lab up with TLS: TLS() %v, TLSSharedCert() %v", l.TLS(), l.TLSSharedCert())
	}
	// a later `etcd-rescue lab ...` opens the lab from lab.json
	if lo, err := Open(l.StateDir()); err != nil || !lo.TLS() || lo.TLSSharedCert() {
		t.Fatalf("lab.Open: TLS %v, %v", lo != nil && lo.TLS(), err)
	} else if err := lo.Verify(ctx); err != nil {
		t.Fatalf("verify through the reopened lab: %v", err)
	}
	tc, err := l.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, l.CACertPath()))
	// the lab's log, to check what the breaks say
	logs := &syncBuffer{}
	l.SetLog(io.MultiWriter(testutil.Log{T: t}, logs))

	t.Run("pki", func(t *testing.T) {
		modes := map[string]os.FileMode{
			l.CACertPath(): 0o644, l.CAKeyPath(): 0o600, l.ClientCertPath(): 0o644, l.ClientCertKeyPath(): 0o600,
		}
		for _, h := range l.Hosts() {
			modes[l.MemberCertPath(h.Name)], modes[l.MemberKeyPath(h.Name)] = 0o644, 0o600
		}
		for p, mode := range modes {
			fi, err := os.Stat(p)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if fi.Mode().Perm() != mode {
				t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), mode)
			}
		}
		if _, err := os.Stat(l.ServerCertPath()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a lab with a certificate per host has a shared one %s (%v)", l.ServerCertPath(), err)
		}
		// each host's certificate is valid for its own address, not for
		// another host's (nor for the address ip-change moves h3 to)
		hosts := l.Hosts()
		for _, h := range hosts {
			var others []string
			for _, o := range hosts {
				if o.Name != h.Name {
					others = append(others, o.Address, o.Name)
				}
			}
			checkMemberCert(t, readCert(t, l.MemberCertPath(h.Name)), roots, h.Name, h.Address, append(others, "10.77.0.23")...)
		}
		cli := readCert(t, l.ClientCertPath())
		if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("client certificate: %v", err)
		}
	})

	// a variant (rescue, sudo, through h1) has the same cluster section;
	// the breaks below rewrite it
	variant := filepath.Join(t.TempDir(), "inventory-rescue.yaml")
	checkVariant := func(t *testing.T) {
		t.Helper()
		iv := readInventoryFile(t, variant)
		c := iv.Cluster
		if c.TLS == nil || c.TLS.CA != l.CACertPath() || c.TLS.Cert != l.ClientCertPath() || c.TLS.Key != l.ClientCertKeyPath() || len(c.Members) != len(l.Members()) {
			t.Errorf("inventory variant: cluster.tls %+v, members %+v", c.TLS, c.Members)
		}
		if iv.Vars["caCert"] != l.CACertPath() || iv.Vars["caKey"] != l.CAKeyPath() {
			t.Errorf("inventory variant: vars %v, want caCert %s, caKey %s", iv.Vars, l.CACertPath(), l.CAKeyPath())
		}
		for i, m := range l.Members() {
			peer, client, _ := l.MemberURLs(m.Name)
			if c.Members[i].PeerURL != peer || c.Members[i].ClientURL != client || !strings.HasPrefix(peer, "https://") {
				t.Errorf("inventory variant member %d: %+v, want %s %s (https)", i, c.Members[i], peer, client)
			}
		}
	}
	t.Run("inventory", func(t *testing.T) {
		checkInventory(t, l)
		if err := l.WriteInventory(variant, InventoryOptions{User: OperatorUser, Sudo: true, Jump: "h1"}); err != nil {
			t.Fatal(err)
		}
		checkVariant(t)
	})

	t.Run("hosts", func(t *testing.T) {
		for _, h := range l.Hosts() {
			checkHostPKI(t, l, h.Name, true)
			env := sshOut(t, l, h.Name, "cat "+EnvFile) + "\n"
			for _, want := range []string{
				"ETCD_LISTEN_CLIENT_URLS=https://" + h.Address + ":2379,https://127.0.0.1:2379",
				"ETCD_LISTEN_PEER_URLS=https://" + h.Address + ":2380",
				"ETCD_CLIENT_CERT_AUTH=true", "ETCD_PEER_CLIENT_CERT_AUTH=true",
				"ETCD_CERT_FILE=" + HostServerCert, "ETCD_PEER_KEY_FILE=" + HostServerKey, "ETCD_PEER_TRUSTED_CA_FILE=" + HostCACert,
			} {
				if !strings.Contains(env, want+"\n") {
					t.Errorf("%s: %s has no line %s:\n%s", h.Name, EnvFile, want, env)
				}
			}
			if strings.Contains(env, "http://") {
				t.Errorf("%s: %s has a plain http URL:\n%s", h.Name, EnvFile, env)
			}
		}
	})

	h1, _ := l.Host("h1")
	t.Run("client-port", func(t *testing.T) {
		url := "https://" + h1.Address + ":2379/health"
		if code, body, err := httpsGet(url, tc); err != nil || code != 200 || !strings.Contains(body, `"health":"true"`) {
			t.Errorf("GET %s with the CA and the client certificate: %d %q %v", url, code, body, err)
		}
		noCert := &tls.Config{RootCAs: tc.RootCAs}
		if code, body, err := httpsGet(url, noCert); err == nil {
			t.Errorf("GET %s without a client certificate: %d %q; want a TLS error (client-cert-auth)", url, code, body)
		} else {
			t.Logf("without a client certificate, as expected: %v", err)
		}
		if _, _, err := httpsGet(url, &tls.Config{Certificates: tc.Certificates}); err == nil {
			t.Errorf("GET %s trusting only the system CAs: accepted", url)
		}
		plain := "http://" + h1.Address + ":2379/health"
		if code, body, err := httpsGet(plain, nil); err == nil && code == 200 {
			t.Errorf("plain GET %s: %d %q; want a refusal", plain, code, body)
		} else {
			t.Logf("plain http, as expected: %d %q %v", code, strings.TrimSpace(body), err)
		}
		// the gRPC API: without a client certificate, and over plain http
		for what, cfg := range map[string]clientv3.Config{
			"no client certificate": {Endpoints: []string{"https://" + h1.Address + ":2379"}, TLS: noCert},
			"plain http":            {Endpoints: []string{"http://" + h1.Address + ":2379"}},
		} {
			cfg.DialTimeout, cfg.Logger = 2*time.Second, zap.NewNop()
			c, err := clientv3.New(cfg)
			if err == nil {
				gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err = c.Get(gctx, KeyPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
				cancel()
				c.Close()
			}
			if err == nil {
				t.Errorf("etcd client with %s: a read succeeded", what)
			}
		}
	})

	t.Run("peer-port", func(t *testing.T) {
		for _, h := range l.Hosts() {
			addr := net.JoinHostPort(h.Address, "2380")
			// the handshake a peer makes: the lab's CA, a certificate it signed
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, &tls.Config{RootCAs: tc.RootCAs, Certificates: tc.Certificates, MinVersion: tls.VersionTLS12})
			if err != nil {
				t.Errorf("TLS handshake with %s: %v", addr, err)
				continue
			}
			st := c.ConnectionState()
			c.Close()
			if len(st.PeerCertificates) == 0 || !st.PeerCertificates[0].Equal(readCert(t, l.MemberCertPath(h.Name))) {
				t.Errorf("%s presents another certificate than its own %s", addr, l.MemberCertPath(h.Name))
			}
			if code, body, err := httpsGet("https://"+addr+"/version", &tls.Config{RootCAs: tc.RootCAs}); err == nil {
				t.Errorf("peer port %s without a client certificate: %d %q; want a TLS error (peer-client-cert-auth)", addr, code, body)
			}
			if code, body, err := httpsGet("http://"+addr+"/version", nil); err == nil && code == 200 {
				t.Errorf("peer port %s answers plain http: %d %q", addr, code, body)
			}
		}
		cli, err := l.Client()
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ml, err := cli.MemberList(mctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ml.Members {
			for _, u := range append(append([]string(nil), m.PeerURLs...), m.ClientURLs...) {
				if !strings.HasPrefix(u, "https://") {
					t.Errorf("member %s has URL %s, want https", m.Name, u)
				}
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		s := l.Status(ctx)
		if !s.TLS || s.TLSSharedCert || len(s.Members) != 3 || len(s.MemberList) != 3 || s.Keys != 200 || len(s.Problems) != 0 {
			t.Fatalf("status: %+v", s)
		}
		for _, m := range s.Members {
			if m.Err != "" || m.Leader == 0 || !strings.HasPrefix(m.ClientURL, "https://") {
				t.Errorf("status of member %+v", m)
			}
		}
	})

	t.Run("ip-change", func(t *testing.T) {
		logs.Reset()
		if err := l.Break(ctx, "ip-change"); err != nil {
			t.Fatal(err)
		}
		h3, _ := l.Host("h3")
		if h3.Address != "10.77.0.23" {
			t.Fatalf("h3 at %s, want 10.77.0.23", h3.Address)
		}
		if want := "ip-change: h3 keeps its member certificate " + HostServerCert + ", valid for 10.77.0.13, not 10.77.0.23"; !strings.Contains(logs.String(), want) {
			t.Errorf("the ip-change log has no line %q:\n%s", want, logs.String())
		}
		// the host's certificate is still the one for its old address
		if san := hostSAN(t, l, "h3"); !strings.Contains(san, "IP Address:10.77.0.13,") || strings.Contains(san, "10.77.0.23") {
			t.Errorf("h3: after ip-change, openssl x509 -ext subjectAltName says %q; want the old address 10.77.0.13 only", san)
		}
		if inv := checkInventory(t, l); inv.Vars["oldPeerURL"] != "https://10.77.0.13:2380" {
			t.Errorf("vars.oldPeerURL = %q", inv.Vars["oldPeerURL"])
		}
		s := l.Status(ctx)
		if len(s.Members) != 3 || s.Members[2].Err == "" || s.Members[0].Err != "" || s.Members[0].Leader == 0 || s.Keys != 200 {
			t.Errorf("status after ip-change: members %+v, keys %d", s.Members, s.Keys)
		}
		verifyFails(t, l, "etcd3", "https://10.77.0.23:2380")
		checkVariant(t)

		// the repair without a new certificate: etcd3 runs at its new
		// address, but its peers (and clients) refuse its certificate
		cli := client(t, l, "etcd1", "etcd2")
		peer, _, _ := l.MemberURLs("etcd3")
		if _, err := cli.MemberUpdate(ctx, memberID(t, cli, "etcd3"), []string{peer}); err != nil {
			t.Fatal(err)
		}
		writeEnv(t, l, "etcd3", "existing")
		sshOut(t, l, "h3", "systemctl restart --no-block etcd")
		refusedByPeers(t, l, "10.77.0.13", "10.77.0.23")

		if err := l.IssueMemberCert(ctx, "h3"); err != nil {
			t.Fatal(err)
		}
		checkHostPKI(t, l, "h3", true)
		if san := hostSAN(t, l, "h3"); !strings.Contains(san, "IP Address:10.77.0.23,") || strings.Contains(san, "10.77.0.13") {
			t.Errorf("h3: after IssueMemberCert, openssl x509 -ext subjectAltName says %q; want 10.77.0.23 only", san)
		}
		sshOut(t, l, "h3", "systemctl restart etcd")
		mustVerify(t, l)
	})

	t.Run("lost-host", func(t *testing.T) {
		logs.Reset()
		if err := l.Break(ctx, "lost-host"); err != nil {
			t.Fatal(err)
		}
		h4, ok := l.Host("h4")
		if !ok || h4.Address != "10.77.0.14" {
			t.Fatalf("replacement host: %+v %v", h4, ok)
		}
		if want := "lost-host: h4 has no member certificate yet (no " + HostServerCert + ", " + HostServerKey + "): etcd cannot start there until one is issued for 10.77.0.14"; !strings.Contains(logs.String(), want) {
			t.Errorf("the lost-host log has no line %q:\n%s", want, logs.String())
		}
		for _, p := range []string{l.MemberCertPath("h2"), l.MemberKeyPath("h2")} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the lost host's %s is still there (%v)", p, err)
			}
		}
		// the replacement has the CA and an env file with the TLS settings
		// only: no member certificate, nothing of a member yet
		checkHostPKI(t, l, "h4", false)
		if out := sshOut(t, l, "h4", "systemctl is-active etcd || true; systemctl is-enabled etcd || true; grep -v '^#' "+EnvFile+"; ls -A /var/lib/etcd | wc -l"); out != "inactive\ndisabled\n"+strings.TrimSpace(tlsEnv())+"\n0" {
			t.Errorf("replacement host h4:\n%s", out)
		}
		if inv := checkInventory(t, l); inv.Cluster.Members[1].PeerURL != "https://10.77.0.14:2380" || inv.Vars["lostPeerURL"] != "https://10.77.0.12:2380" {
			t.Errorf("inventory after lost-host: etcd2 %+v, vars %v", inv.Cluster.Members[1], inv.Vars)
		}
		verifyFails(t, l, "etcd2")
		checkVariant(t)

		// without a member certificate etcd does not start on h4
		replaceLostMember(t, l, func() {
			out, err := l.Run(ctx, "h4", "systemctl enable --now etcd", nil)
			if err == nil {
				t.Fatalf("etcd started on h4 without a member certificate: %s", out)
			}
			if log := sshOut(t, l, "h4", "journalctl -u etcd -n 20 --no-pager -o cat"); !strings.Contains(log, "server.crt: no such file or directory") {
				t.Errorf("etcd on h4 without a member certificate failed, but its log does not name the missing file:\n%s", log)
			} else {
				t.Logf("without a member certificate, as expected: etcd on h4 does not start: %v", lastLine(log, "server.crt"))
			}
			if err := l.IssueMemberCert(ctx, "h4"); err != nil {
				t.Fatal(err)
			}
			checkHostPKI(t, l, "h4", true)
			sshOut(t, l, "h4", "systemctl reset-failed etcd; systemctl restart etcd")
		})
	})

	t.Run("total-loss", func(t *testing.T) {
		if err := l.Break(ctx, "total-loss"); err != nil { // the snapshot is taken over TLS
			t.Fatal(err)
		}
		snap := readSnapshot(t, l)
		verifyFails(t, l, "does not answer")
		restoreAll(t, l, snap)
		mustVerify(t, l)
	})
}

// refusedByPeers checks that etcd on its new address newAddr, still with
// the certificate for oldAddr, is refused: the TLS handshake a peer or a
// client makes with its peer port fails on the certificate, and a peer's
// etcd logs the same x509 error within a short bound.
func refusedByPeers(t *testing.T, l *Lab, oldAddr, newAddr string) {
	t.Helper()
	tc, err := l.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	want := "x509: certificate is valid for " + oldAddr + ", 127.0.0.1, ::1, not " + newAddr
	addr := net.JoinHostPort(newAddr, "2380")
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{RootCAs: tc.RootCAs, Certificates: tc.Certificates, MinVersion: tls.VersionTLS12})
		if err == nil {
			c.Close()
			t.Fatalf("TLS handshake with %s (a certificate for %s): accepted", addr, oldAddr)
		}
		if strings.Contains(err.Error(), want) {
			t.Logf("the peer port at the new address, as expected: %v", err)
			break
		}
		if time.Now().After(deadline) { // etcd not listening: connection refused
			t.Fatalf("TLS handshake with %s: %v; want %q", addr, err, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		log := sshOut(t, l, "h1", "journalctl -u etcd -n 400 --no-pager -o cat")
		if line := lastLine(log, want); line != "" {
			t.Logf("the peer etcd1 refuses it: %s", line)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd1's log does not say %q within 20 s:\n%s", want, log)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// lastLine is the last line of s that contains sub ("" if none), cut to
// 400 characters.
func lastLine(s, sub string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sub) {
			if len(lines[i]) > 400 {
				return lines[i][:400] + "..."
			}
			return lines[i]
		}
	}
	return ""
}

// hostSAN is what openssl on host says of its member certificate's
// subjectAltName (the hosts have openssl).
func hostSAN(t *testing.T, l *Lab, host string) string {
	t.Helper()
	return sshOut(t, l, host, "openssl x509 -noout -ext subjectAltName -in "+HostServerCert)
}

// checkMemberCert: cert is an ECDSA P-256 member certificate signed by the
// CA in roots, for the server and the client side, valid for host's name,
// addr, 127.0.0.1, ::1 and localhost, and not for any of notFor.
func checkMemberCert(t *testing.T, cert *x509.Certificate, roots *x509.CertPool, host, addr string, notFor ...string) {
	t.Helper()
	if cert.PublicKeyAlgorithm != x509.ECDSA || cert.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("member certificate of %s: %s key signed with %s, want ECDSA P-256", host, cert.PublicKeyAlgorithm, cert.SignatureAlgorithm)
	} else if k, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("member certificate of %s: not a P-256 key", host)
	}
	for _, n := range []string{addr, "127.0.0.1", "::1", "localhost", host} {
		for _, u := range memberUsage {
			if _, err := cert.Verify(x509.VerifyOptions{DNSName: n, Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
				t.Errorf("member certificate of %s for %s (usage %v): %v", host, n, u, err)
			}
		}
	}
	for _, n := range notFor {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: n, Roots: roots}); err == nil {
			t.Errorf("the member certificate of %s (%s) is valid for %s too", host, addr, n)
		}
	}
}

// TestLabPKI checks the certificates a TLS lab makes, without a lab: the
// CA, a member certificate per host for its current address only (again
// for a new address), and the shared certificate for every address
// (Options.TLSSharedCert), and the inventory's vars for the CA.
func TestLabPKI(t *testing.T) {
	t.Run("per-host", func(t *testing.T) {
		l := &Lab{dir: t.TempDir(), log: io.Discard, st: state{TLS: true}}
		if err := l.ensurePKI(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(l.ServerCertPath()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a shared member certificate was made (%v)", err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(readCert(t, l.CACertPath()))
		h := &Host{Name: "h3", Index: 3, Address: "10.77.0.13"}
		sans, err := l.issueMemberFiles(h)
		if err != nil {
			t.Fatal(err)
		}
		if sans != "10.77.0.13, 127.0.0.1, ::1, localhost, h3" {
			t.Errorf("SANs %q", sans)
		}
		checkMemberCert(t, readCert(t, l.MemberCertPath("h3")), roots, "h3", "10.77.0.13", "10.77.0.23", "10.77.0.11", "h1", "10.78.0.13")
		for p, mode := range map[string]os.FileMode{l.CAKeyPath(): 0o600, l.MemberKeyPath("h3"): 0o600, l.MemberCertPath("h3"): 0o644} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != mode {
				t.Errorf("%s: %v %v, want mode %o", p, fi, err, mode)
			}
		}
		// the key on disk is the certificate's
		if _, err := tls.LoadX509KeyPair(l.MemberCertPath("h3"), l.MemberKeyPath("h3")); err != nil {
			t.Errorf("member certificate and key: %v", err)
		}
		h.Address = "10.77.0.23" // an IP change: a new certificate, for the new address only
		if _, err := l.issueMemberFiles(h); err != nil {
			t.Fatal(err)
		}
		checkMemberCert(t, readCert(t, l.MemberCertPath("h3")), roots, "h3", "10.77.0.23", "10.77.0.13")

		inv, err := l.inventory(InventoryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var iv inventory
		if err := yaml.Unmarshal(inv, &iv); err != nil {
			t.Fatalf("inventory: %v\n%s", err, inv)
		}
		if iv.Vars["caCert"] != l.CACertPath() || iv.Vars["caKey"] != l.CAKeyPath() || !filepath.IsAbs(iv.Vars["caKey"]) {
			t.Errorf("inventory vars %v, want caCert %s, caKey %s", iv.Vars, l.CACertPath(), l.CAKeyPath())
		}
	})
	t.Run("shared", func(t *testing.T) {
		l := &Lab{dir: t.TempDir(), log: io.Discard, st: state{TLS: true, TLSSharedCert: true}}
		if err := l.ensurePKI(); err != nil {
			t.Fatal(err)
		}
		if l.MemberCertPath("h3") != l.ServerCertPath() || l.MemberKeyPath("h3") != l.ServerKeyPath() {
			t.Errorf("shared certificate: host h3's files are %s, %s", l.MemberCertPath("h3"), l.MemberKeyPath("h3"))
		}
		if fi, err := os.Stat(l.ServerKeyPath()); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 600", l.ServerKeyPath(), fi, err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(readCert(t, l.CACertPath()))
		srv := readCert(t, l.ServerCertPath())
		// every address a lab host can ever have: Up's 10.77.0.(10+N), a
		// lost-host replacement's next N, ip-change's 10.77.0.(20+N)...
		names := []string{"127.0.0.1", "localhost", "h1", "h30"}
		for i := 2; i <= 254; i++ {
			names = append(names, fmt.Sprintf("10.77.0.%d", i))
		}
		for _, n := range names {
			for _, u := range memberUsage {
				if _, err := srv.Verify(x509.VerifyOptions{DNSName: n, Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
					t.Errorf("shared certificate for %s (usage %v): %v", n, u, err)
				}
			}
		}
		if _, err := srv.Verify(x509.VerifyOptions{DNSName: "10.78.0.11", Roots: roots}); err == nil {
			t.Error("the shared certificate is valid for 10.78.0.11, outside the lab")
		}
	})
	t.Run("no-tls", func(t *testing.T) {
		l := &Lab{dir: t.TempDir(), log: io.Discard}
		if err := l.IssueMemberCert(context.Background(), "h1"); err == nil || !strings.Contains(err.Error(), "no TLS") {
			t.Errorf("IssueMemberCert in a lab without TLS: %v", err)
		}
		if _, err := Up(context.Background(), Options{TLSSharedCert: true, StateDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "needs TLS") {
			t.Errorf("Up with TLSSharedCert but no TLS: %v", err)
		}
	})
}

// syncBuffer is a bytes.Buffer for the lab's log (written from goroutines).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// checkHostPKI: host has the lab's CA in HostPKIDir and, with member, its
// member certificate and key (the same as MemberCertPath's), the key
// readable by etcd only; without member, neither.
func checkHostPKI(t *testing.T, l *Lab, host string, member bool) {
	t.Helper()
	if !member {
		out := sshOut(t, l, host, fmt.Sprintf("stat -c '%%U:%%G:%%a' %s %s; sha256sum %s | cut -d' ' -f1; ls -A %s", HostPKIDir, HostCACert, HostCACert, HostPKIDir))
		want := "root:etcd:755\nroot:root:644\n" + fileSum(t, l.CACertPath()) + "\nca.crt"
		if out != want {
			t.Errorf("%s: %s:\n%s\nwant (the CA only):\n%s", host, HostPKIDir, out, want)
		}
		return
	}
	out := sshOut(t, l, host, fmt.Sprintf("stat -c '%%U:%%G:%%a' %s %s %s %s; sha256sum %s %s %s | cut -d' ' -f1; runuser -u etcd -- head -c 10 %s && echo; runuser -u rescue -- cat %s 2>/dev/null || echo refused",
		HostPKIDir, HostCACert, HostServerCert, HostServerKey, HostCACert, HostServerCert, HostServerKey, HostServerKey, HostServerKey))
	var sums []string
	for _, p := range []string{l.CACertPath(), l.MemberCertPath(host), l.MemberKeyPath(host)} {
		sums = append(sums, fileSum(t, p))
	}
	want := "root:etcd:755\nroot:root:644\nroot:root:644\netcd:etcd:600\n" + strings.Join(sums, "\n") + "\n-----BEGIN\nrefused"
	if out != want {
		t.Errorf("%s: %s:\n%s\nwant:\n%s", host, HostPKIDir, out, want)
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// httpsGet GETs url with TLS configuration tc (nil: plain http or the
// defaults) and returns the status code and the start of the body.
func httpsGet(url string, tc *tls.Config) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer c.CloseIdleConnections()
	r, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err != nil && !errors.Is(err, io.EOF) {
		return r.StatusCode, string(b), err
	}
	return r.StatusCode, string(b), nil
}
