package sshx

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip("no home directory")
	}
	c, err := Config{Address: "10.0.0.1", User: "ops", IdentityFiles: []string{"~/.ssh/id", "/abs/key"},
		Jump: &Config{Address: "bastion"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 22 || c.KnownHosts != filepath.Join(home, ".ssh/known_hosts") || c.IdentityFiles[0] != filepath.Join(home, ".ssh/id") ||
		c.IdentityFiles[1] != "/abs/key" || c.KeepAlive != DefaultKeepAlive || c.KeepAliveTimeout != 30*time.Second ||
		c.MaxSessions != DefaultMaxSessions || c.HostPort() != "10.0.0.1:22" {
		t.Fatalf("defaults: %+v", c)
	}
	if j := c.Jump; j.User != "ops" || j.IdentityFiles[0] != c.IdentityFiles[0] || j.Port != 22 || j.Sudo {
		t.Fatalf("jump inherits: %+v", j)
	}
	if (Config{Address: "::1", Port: 2222}).HostPort() != "[::1]:2222" {
		t.Fatal("IPv6 host:port")
	}
	for _, bad := range []Config{{}, {Address: "h", Port: 70000}} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
