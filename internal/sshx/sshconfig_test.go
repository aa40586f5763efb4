package sshx_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
)

// An ssh config with a Host alias, HostName, Port, User, IdentityFile,
// UserKnownHostsFile and ProxyJump through a second real sshd.
func TestSSHConfigFileThroughJumpHost(t *testing.T) {
	jump := sshxtest.Start(t)
	target := sshxtest.Start(t)
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	lines := knownhosts.Line([]string{knownhosts.Normalize(jump.Addr())}, jump.HostKey) + "\n" +
		knownhosts.Line([]string{knownhosts.Normalize(target.Addr())}, target.HostKey) + "\n"
	if err := os.WriteFile(kh, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config")
	// StrictHostKeyChecking no is not obeyed: host keys stay verified.
	src := fmt.Sprintf(`Host bastion
    HostName 127.0.0.1
    Port %d
    IdentityFile %s

Host db1 db1.prod
    HostName 127.0.0.1
    Port %d
    ProxyJump bastion
    IdentityFile %s
    UserKnownHostsFile %s/missing_known_hosts %s
    StrictHostKeyChecking no

Host *
    User %s
    UserKnownHostsFile %s
    Port 1
`, jump.Port, jump.ClientKey, target.Port, target.ClientKey, dir, kh, target.User, kh)
	if err := os.WriteFile(cfgFile, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := sshx.Config{Address: "db1"}.WithSSHConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	want := sshx.Config{Address: "127.0.0.1", Port: target.Port, User: target.User, IdentityFiles: []string{target.ClientKey},
		KnownHosts: filepath.Join(dir, "missing_known_hosts"), KnownHostsExtra: []string{kh},
		Jump: &sshx.Config{Address: "127.0.0.1", Port: jump.Port, User: target.User, IdentityFiles: []string{jump.ClientKey}, KnownHosts: kh}}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("resolved\n%+v\njump %+v\nwant\n%+v\njump %+v", cfg, cfg.Jump, want, want.Jump)
	}

	c := newClient(t, cfg)
	if res := run(t, c, "echo through"); string(res.Stdout) != "through\n" {
		t.Fatalf("%+v", res)
	}
	if len(jump.ConnectionPIDs()) != 1 || len(target.ConnectionPIDs()) != 1 {
		t.Fatalf("jump has %d connections, target %d; want 1 and 1", len(jump.ConnectionPIDs()), len(target.ConnectionPIDs()))
	}

	// What the caller sets wins over the file.
	cfg, err = sshx.Config{Address: "db1.prod", Port: 2222, User: "ops", KnownHosts: "/k"}.WithSSHConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "127.0.0.1" || cfg.Port != 2222 || cfg.User != "ops" || cfg.KnownHosts != "/k" || len(cfg.KnownHostsExtra) != 0 {
		t.Fatalf("explicit values lost: %+v", cfg)
	}
	// An address that is no alias keeps its name; Host * still applies.
	cfg, err = sshx.Config{Address: "10.0.0.9"}.WithSSHConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "10.0.0.9" || cfg.Port != 1 || cfg.Jump != nil || cfg.User != target.User {
		t.Fatalf("non-alias: %+v", cfg)
	}
}

// StrictHostKeyChecking no and UserKnownHostsFile /dev/null do not weaken
// host key checking: the host is unknown and refused.
func TestSSHConfigCannotDisableHostKeyChecking(t *testing.T) {
	srv := sshxtest.Start(t)
	cfgFile := writeFile(t, fmt.Sprintf(`Host lax
    HostName 127.0.0.1
    Port %d
    User %s
    IdentityFile %s
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
`, srv.Port, srv.User, srv.ClientKey))
	cfg, err := sshx.Config{Address: "lax"}.WithSSHConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	_, err = newClient(t, cfg).Run(context.Background(), "true", sshx.RunOpts{})
	var he *sshx.HostKeyError
	if !errors.As(err, &he) || he.Changed || he.KnownHostsFile != "/dev/null" {
		t.Fatalf("want an unknown-host HostKeyError, got %v", err)
	}
}

func TestSSHConfigErrorsNameFileAndLine(t *testing.T) {
	for name, tc := range map[string]struct{ src, want string }{
		"bad port":      {"Host a\n  HostName h\n  Port ssh\n", ":3: Port \"ssh\" is not a port number"},
		"proxy command": {"Host a\n  ProxyCommand nc %h %p\n", ":2: ProxyCommand is not supported for a\nhint: use ProxyJump"},
		"parser":        {"Host a\n  User u\nMatch exec \"true\"\n", ":3:7: ssh_config: Match Exec is not supported"},
		"bad jump":      {"Host a\n\n  ProxyJump u@h:99999\n", ":3: ProxyJump \"u@h:99999\": bad port"},
		"jump loop":     {"Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n", "longer than 8 hops"},
		"bad token":     {"Host a\n  IdentityFile ~/.ssh/%C\n", ":2: token %C in \"~/.ssh/%C\" is not supported here"},
	} {
		t.Run(name, func(t *testing.T) {
			f := writeFile(t, tc.src)
			_, err := sshx.Config{Address: "a"}.WithSSHConfig(f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
			if !strings.Contains(err.Error(), f) {
				t.Errorf("error does not name the file %s: %v", f, err)
			}
		})
	}
	if _, err := (sshx.Config{Address: "a"}).WithSSHConfig(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
}
