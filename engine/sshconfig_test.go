package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ssh.config: a value the plan sets wins, the OpenSSH config file fills what
// the plan leaves unset, the plan's defaults come last.
func TestSSHConfigPrecedence(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	dir := t.TempDir()
	sshCfg := `Host node1
    HostName 10.0.0.1
    Port 2201
    User ops
    IdentityFile ~/.ssh/node1_key
    UserKnownHostsFile ~/.ssh/known_hosts_prod
    ProxyJump bastion
Host node2
    HostName 10.0.0.2
    Port 2202
    User ops
Host bastion
    HostName 192.0.2.1
    User jumper
`
	if err := os.WriteFile(filepath.Join(dir, "ssh_config"), []byte(sshCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	plan := `version: 1
name: p
cluster:
  name: c
  etcdVersion: "3.5.17"
  members:
    - {name: etcd1, host: node1, peerURL: "https://10.0.0.1:2380", clientURL: "https://10.0.0.1:2379"}
    - {name: etcd2, host: node2, peerURL: "https://10.0.0.2:2380", clientURL: "https://10.0.0.2:2379"}
    - {name: etcd3, host: node3, peerURL: "https://10.0.0.3:2380", clientURL: "https://10.0.0.3:2379"}
hosts:
  node1: {address: node1}
  node2: {address: node2, port: 22, user: admin}
  node3: {address: 10.0.0.3}
ssh: {config: ssh_config, timeout: 5s}
steps:
  - {id: a, type: approve}
`
	f := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(f, []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}
	c, fs := Load(f, "")
	if c == nil || fs.Errors() > 0 {
		t.Fatal(fs)
	}
	p := c.Plan
	n1, err := SSHConfig(p, p.Hosts["node1"])
	if err != nil {
		t.Fatal(err)
	}
	if n1.Address != "10.0.0.1" || n1.Port != 2201 || n1.User != "ops" || len(n1.IdentityFiles) != 1 ||
		n1.IdentityFiles[0] != filepath.Join(home, ".ssh/node1_key") || n1.KnownHosts != filepath.Join(home, ".ssh/known_hosts_prod") ||
		n1.Jump == nil || n1.Jump.Address != "192.0.2.1" || n1.Jump.User != "jumper" || n1.ConnectTimeout.Seconds() != 5 {
		t.Errorf("node1 (everything from the file): %+v jump %+v", n1, n1.Jump)
	}
	n2, err := SSHConfig(p, p.Hosts["node2"])
	if err != nil {
		t.Fatal(err)
	}
	if n2.Address != "10.0.0.2" || n2.Port != 22 || n2.User != "admin" || n2.Jump != nil {
		t.Errorf("node2 (the plan's port and user win): %+v", n2)
	}
	n3, err := SSHConfig(p, p.Hosts["node3"])
	if err != nil {
		t.Fatal(err)
	}
	if n3.Address != "10.0.0.3" || n3.Port != 22 || n3.User != "root" || n3.KnownHosts != filepath.Join(home, ".ssh/known_hosts") {
		t.Errorf("node3 (not in the file: the plan's defaults): %+v", n3)
	}

	// A broken file stops preflight with file:line.
	if err := os.WriteFile(filepath.Join(dir, "ssh_config"), []byte("Host node1\n  Port x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = Preflight(p)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "ssh_config")+":2: Port") {
		t.Fatalf("preflight: %v", err)
	}
}
