package sshx_test

import (
	"context"
	"crypto/ed25519"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
)

// TestAgentAuth authenticates with a key held only by an ssh-agent (an in-process
// keyring served on $SSH_AUTH_SOCK).
func TestAgentAuth(t *testing.T) {
	srv := sshxtest.Start(t)
	pemBytes, err := os.ReadFile(srv.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ssh.ParseRawPrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: *raw.(*ed25519.PrivateKey)}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _ = agent.ServeAgent(keyring, c); _ = c.Close() }()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	cfg := config(srv)
	cfg.IdentityFiles = nil
	cfg.UseAgent = true
	c := newClient(t, cfg)
	if res := run(t, c, "echo agent"); string(res.Stdout) != "agent\n" {
		t.Fatalf("%+v", res)
	}

	// No agent socket: a clear error with a hint.
	t.Setenv("SSH_AUTH_SOCK", "")
	_, err = newClient(t, cfg).Run(context.Background(), "true", sshx.RunOpts{})
	if err == nil || !strings.Contains(err.Error(), "SSH_AUTH_SOCK") || !strings.Contains(err.Error(), "hint:") {
		t.Fatalf("without an agent: %v", err)
	}
}
