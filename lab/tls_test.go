package lab

import (
	"context"
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
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestLabTLS is a 3-member etcd 3.6 lab with TLS: the certificates (one
// member certificate for every address a host can have), the hosts' files,
// the inventory, client certificates really required on the client and the
// peer port, no plain http anywhere; then every break, each repaired over
// TLS as a plan would, with the lab's own Status and Verify (and its
// total-loss snapshot) working throughout.
func TestLabTLS(t *testing.T) {
	l := upLab(t, Options{Members: 3, Version: "3.6", Keys: 200, TLS: true})
	ctx := context.Background()
	mustVerify(t, l)
	if !l.TLS() {
		t.Fatal("lab up with TLS: l.TLS() is false")
	}
	// a later `etcd-rescue lab ...` opens the lab from lab.json
	if lo, err := Open(l.StateDir()); err != nil || !lo.TLS() {
		t.Fatalf("lab.Open: TLS %v, %v", lo != nil && lo.TLS(), err)
	} else if err := lo.Verify(ctx); err != nil {
		t.Fatalf("verify through the reopened lab: %v", err)
	}
	tc, err := l.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	srv := readCert(t, l.ServerCertPath())

	t.Run("pki", func(t *testing.T) {
		for p, mode := range map[string]os.FileMode{
			l.CACertPath(): 0o644, l.ClientCertPath(): 0o644, l.ClientCertKeyPath(): 0o600,
			l.ServerCertPath(): 0o644, l.ServerKeyPath(): 0o600,
		} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if fi.Mode().Perm() != mode {
				t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), mode)
			}
		}
		roots := x509.NewCertPool()
		roots.AddCert(readCert(t, l.CACertPath()))
		if srv.PublicKeyAlgorithm != x509.ECDSA || srv.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			t.Errorf("server certificate: %s key signed with %s, want ECDSA P-256", srv.PublicKeyAlgorithm, srv.SignatureAlgorithm)
		}
		// every address a lab host can ever have: Up's 10.77.0.(10+N), a
		// lost-host replacement's next N, ip-change's 10.77.0.(20+N)...
		names := []string{"127.0.0.1", "localhost", "h1", "h30"}
		for i := 2; i <= 254; i++ {
			names = append(names, fmt.Sprintf("10.77.0.%d", i))
		}
		for _, n := range names {
			for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := srv.Verify(x509.VerifyOptions{DNSName: n, Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
					t.Errorf("server certificate for %s (usage %v): %v", n, u, err)
				}
			}
		}
		if _, err := srv.Verify(x509.VerifyOptions{DNSName: "10.78.0.11", Roots: roots}); err == nil {
			t.Error("the server certificate is valid for 10.78.0.11, outside the lab")
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
			checkHostPKI(t, l, h.Name)
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
			// the handshake a peer makes: the lab's CA, the member certificate
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, &tls.Config{RootCAs: tc.RootCAs, Certificates: tc.Certificates, MinVersion: tls.VersionTLS12})
			if err != nil {
				t.Errorf("TLS handshake with %s: %v", addr, err)
				continue
			}
			st := c.ConnectionState()
			c.Close()
			if len(st.PeerCertificates) == 0 || !st.PeerCertificates[0].Equal(srv) {
				t.Errorf("%s presents another certificate than %s", addr, l.ServerCertPath())
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
		if !s.TLS || len(s.Members) != 3 || len(s.MemberList) != 3 || s.Keys != 200 || len(s.Problems) != 0 {
			t.Fatalf("status: %+v", s)
		}
		for _, m := range s.Members {
			if m.Err != "" || m.Leader == 0 || !strings.HasPrefix(m.ClientURL, "https://") {
				t.Errorf("status of member %+v", m)
			}
		}
	})

	t.Run("ip-change", func(t *testing.T) {
		if err := l.Break(ctx, "ip-change"); err != nil {
			t.Fatal(err)
		}
		h3, _ := l.Host("h3")
		if h3.Address != "10.77.0.23" {
			t.Fatalf("h3 at %s, want 10.77.0.23", h3.Address)
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

		cli := client(t, l, "etcd1", "etcd2")
		peer, _, _ := l.MemberURLs("etcd3")
		if _, err := cli.MemberUpdate(ctx, memberID(t, cli, "etcd3"), []string{peer}); err != nil {
			t.Fatal(err)
		}
		writeEnv(t, l, "etcd3", "existing")
		sshOut(t, l, "h3", "systemctl restart etcd")
		mustVerify(t, l) // the member certificate is valid at the new address too
	})

	t.Run("lost-host", func(t *testing.T) {
		if err := l.Break(ctx, "lost-host"); err != nil {
			t.Fatal(err)
		}
		h4, ok := l.Host("h4")
		if !ok || h4.Address != "10.77.0.14" {
			t.Fatalf("replacement host: %+v %v", h4, ok)
		}
		// the replacement has the certificates and an env file with the
		// TLS settings only: nothing of a member yet
		checkHostPKI(t, l, "h4")
		if out := sshOut(t, l, "h4", "systemctl is-active etcd || true; systemctl is-enabled etcd || true; grep -v '^#' "+EnvFile+"; ls -A /var/lib/etcd | wc -l"); out != "inactive\ndisabled\n"+strings.TrimSpace(tlsEnv())+"\n0" {
			t.Errorf("replacement host h4:\n%s", out)
		}
		if inv := checkInventory(t, l); inv.Cluster.Members[1].PeerURL != "https://10.77.0.14:2380" || inv.Vars["lostPeerURL"] != "https://10.77.0.12:2380" {
			t.Errorf("inventory after lost-host: etcd2 %+v, vars %v", inv.Cluster.Members[1], inv.Vars)
		}
		verifyFails(t, l, "etcd2")
		checkVariant(t)

		replaceLostMember(t, l)
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

// checkHostPKI: host has the lab's CA and member certificate in
// HostPKIDir, the key readable by etcd only.
func checkHostPKI(t *testing.T, l *Lab, host string) {
	t.Helper()
	out := sshOut(t, l, host, fmt.Sprintf("stat -c '%%U:%%G:%%a' %s %s %s %s; sha256sum %s %s %s | cut -d' ' -f1; runuser -u etcd -- head -c 10 %s && echo; runuser -u rescue -- cat %s 2>/dev/null || echo refused",
		HostPKIDir, HostCACert, HostServerCert, HostServerKey, HostCACert, HostServerCert, HostServerKey, HostServerKey, HostServerKey))
	var sums []string
	for _, p := range []string{l.CACertPath(), l.ServerCertPath(), l.ServerKeyPath()} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		sums = append(sums, hex.EncodeToString(s[:]))
	}
	want := "root:etcd:755\nroot:root:644\nroot:root:644\netcd:etcd:600\n" + strings.Join(sums, "\n") + "\n-----BEGIN\nrefused"
	if out != want {
		t.Errorf("%s: %s:\n%s\nwant:\n%s", host, HostPKIDir, out, want)
	}
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
