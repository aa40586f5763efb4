package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
)

// TestDialHostThroughSSH: with clientAccess: ssh-tunnel (the default) an
// API server is reached through the host's SSH connection, so when sshd is
// gone the dial fails as a hop error although the server still listens;
// with clientAccess: direct it is dialled directly.
func TestDialHostThroughSSH(t *testing.T) {
	srv := sshxtest.Start(t)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer api.Close()
	dir := t.TempDir()
	plan := sshPlan(t, srv, dir, "  - {id: noop, type: check-quorum}\n")
	get := func(b *SSHBackend) (string, error) {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return b.DialHost(ctx, "local", addr)
		}}
		resp, err := (&http.Client{Transport: tr}).Get(api.URL + "/readyz")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body), nil
	}
	c := loadReal(t, plan)
	b, err := NewSSHBackend(c.Plan)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if body, err := get(b); err != nil || body != "ok" {
		t.Fatalf("through the tunnel: %q %v", body, err)
	}
	srv.Stop()
	b2, err := NewSSHBackend(c.Plan)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	_, err = get(b2)
	var hop *hopError
	if !errors.As(err, &hop) {
		t.Fatalf("sshd is gone, yet the dial did not fail at the SSH hop: %v", err)
	}
	c.Plan.Cluster.ClientAccess = "direct"
	b3, err := NewSSHBackend(c.Plan)
	if err != nil {
		t.Fatal(err)
	}
	defer b3.Close()
	if body, err := get(b3); err != nil || body != "ok" {
		t.Fatalf("direct: %q %v", body, err)
	}
}

// TestPreflightAPIServerFiles: the API server's CA and client certificate
// are read before the first change, not when the relist proof runs at the
// end of a recovery.
func TestPreflightAPIServerFiles(t *testing.T) {
	c, fs := Load("../examples/static-pod-restore.yaml", "")
	if c == nil {
		t.Fatal(fs)
	}
	err := Preflight(c.Plan)
	if err == nil || !strings.Contains(err.Error(), "kubernetes.apiServer.ca: open "+filepath.Join("..", "examples", "pki", "ca.crt")) {
		t.Fatalf("preflight: %v", err)
	}
}
