package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/internal/hostlock"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
)

// unlock --force --inventory kills the live holder of a host lock; without
// --force it refuses.
func TestUnlockHostLocks(t *testing.T) {
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.yaml")
	body := fmt.Sprintf(`cluster:
  name: c
  etcdVersion: "3.6"
  members:
    - {name: m1, host: local, peerURL: "http://127.0.0.1:2380", clientURL: "http://127.0.0.1:2379"}
hosts:
  local: {address: 127.0.0.1, port: %d}
ssh: {user: %s, identity: %s, knownHosts: %s}
`, srv.Port, srv.User, srv.ClientKey, srv.KnownHosts)
	if err := os.WriteFile(inv, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := sshx.New("local", sshx.Config{Address: srv.Host, Port: srv.Port, User: srv.User, IdentityFiles: []string{srv.ClientKey}, KnownHosts: srv.KnownHosts})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := hostlock.Acquire(ctx, "local", c, hostlock.Owner{RunID: "R-first", Operator: "ann@laptop", PID: 7, StateDir: "/s"},
		hostlock.Options{Path: os.Getenv(engine.HostLockFileEnv)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()

	if code, _, errs := runCLI("unlock", "--inventory", inv); code != 2 || !strings.Contains(errs, "needs --force") {
		t.Errorf("without --force: exit %d %s", code, errs)
	}
	code, out, errs := runCLI("unlock", "--force", "--inventory", inv)
	if code != 0 || !strings.Contains(out, "local: was locked by run R-first of ann@laptop (pid 7, state dir /s): holder killed, lock free") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCLI("unlock", "--force", "--inventory", inv)
	if code != 0 || !strings.Contains(out, "local: not locked") {
		t.Errorf("again: exit %d %s", code, out)
	}
}
