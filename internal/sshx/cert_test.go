package sshx_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
)

// A host whose key is certified by an SSH CA is accepted through a
// @cert-authority line (the client must ask for a certificate algorithm to
// be shown the certificate), and refused when the CA or the host key is
// @revoked, when the CA is another one, or when no CA line matches.
func TestHostCertificate(t *testing.T) {
	caKey := filepath.Join(t.TempDir(), "host_ca")
	ca := sshxtest.WriteKey(t, caKey)
	srv := sshxtest.Start(t, sshxtest.Options{HostCA: caKey})
	otherCA := sshxtest.WriteKey(t, filepath.Join(t.TempDir(), "other_ca"))
	caLine := func(pattern string, k ssh.PublicKey) string {
		return "@cert-authority " + pattern + " " + string(ssh.MarshalAuthorizedKey(k))
	}
	revoked := func(k ssh.PublicKey) string { return "@revoked * " + string(ssh.MarshalAuthorizedKey(k)) }
	hostPattern := "[127.0.0.1]:" + strings.TrimPrefix(srv.Addr(), "127.0.0.1:")

	for name, known := range map[string]string{
		"wildcard":      caLine("*", ca),
		"host and port": caLine(hostPattern, ca),
		"among others":  caLine("*.example.com", otherCA) + caLine("*", ca),
	} {
		t.Run("accepted/"+name, func(t *testing.T) {
			cfg := config(srv)
			cfg.KnownHosts = writeFile(t, known)
			if res := run(t, newClient(t, cfg), "echo ok"); string(res.Stdout) != "ok\n" {
				t.Fatalf("%+v", res)
			}
		})
	}

	marker := filepath.Join(srv.Dir, "must-not-exist")
	refused := func(t *testing.T, known string) error {
		t.Helper()
		cfg := config(srv)
		cfg.KnownHosts = writeFile(t, known)
		_, err := newClient(t, cfg).Run(context.Background(), "touch "+sshx.Quote(marker), sshx.RunOpts{})
		if err == nil {
			t.Fatal("connected")
		}
		if _, serr := os.Stat(marker); serr == nil {
			t.Fatal("the command ran on a host whose key was refused")
		}
		t.Log(err)
		return err
	}
	t.Run("refused/CA revoked", func(t *testing.T) {
		err := refused(t, caLine("*", ca)+revoked(ca))
		for _, want := range []string{"revoked", ssh.FingerprintSHA256(ca), ssh.FingerprintSHA256(srv.HostKey), "hint:"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
	})
	t.Run("refused/host key revoked", func(t *testing.T) {
		err := refused(t, caLine("*", ca)+revoked(srv.HostKey))
		if !strings.Contains(err.Error(), "revoked") {
			t.Errorf("error does not say revoked:\n%v", err)
		}
	})
	t.Run("refused/other CA", func(t *testing.T) {
		err := refused(t, caLine("*", otherCA))
		if !strings.Contains(err.Error(), ssh.FingerprintSHA256(ca)) || !strings.Contains(err.Error(), "@cert-authority") {
			t.Errorf("error lacks the signing CA or the hint:\n%v", err)
		}
	})
	t.Run("refused/no CA line", func(t *testing.T) {
		// No line matches: the host is unknown, and the error gives the
		// fingerprint of its plain key to check out of band.
		err := refused(t, caLine("*.example.com", ca))
		var he *sshx.HostKeyError
		if !errors.As(err, &he) || he.Changed {
			t.Fatalf("want an unknown-host HostKeyError, got %v", err)
		}
		for _, want := range []string{ssh.FingerprintSHA256(srv.HostKey), "ssh-keyscan", "@cert-authority"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
	})
}

// known_hosts decides the host key algorithm: a server with an ed25519 and
// an ECDSA key, recorded only by its ECDSA key, is asked for that one.
func TestHostKeyAlgorithmFromKnownHosts(t *testing.T) {
	dir := t.TempDir()
	ecdsaKey := filepath.Join(dir, "ssh_host_ecdsa_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", ecdsaKey).CombinedOutput(); err != nil {
		sshxtest.Require(t, "ssh-keygen", string(out))
	}
	srv := sshxtest.Start(t, sshxtest.Options{ExtraConfig: "HostKey " + ecdsaKey})
	raw, err := os.ReadFile(ecdsaKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]ssh.PublicKey{"ecdsa only": pub, "ed25519 only": srv.HostKey} {
		t.Run(name, func(t *testing.T) {
			cfg := config(srv)
			cfg.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
			sshxtest.WriteKnownHosts(t, cfg.KnownHosts, srv.Addr(), key)
			if res := run(t, newClient(t, cfg), "echo ok"); string(res.Stdout) != "ok\n" {
				t.Fatalf("%+v", res)
			}
		})
	}
}
