package plans

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDecoderAppliesDefaultTags(t *testing.T) {
	src := `version: 1
name: d
cluster:
  name: c
  etcdVersion: "3.5"
  layout: {dataDir: /data/etcd, owner: ""}
  members:
    - {name: e1, host: h1, peerURL: "https://10.0.0.1:2380", clientURL: "https://10.0.0.1:2379"}
hosts:
  h1: {address: 10.0.0.1}
  h2: {address: 10.0.0.2, port: 2222, user: ops}
  h3:
ssh: {identity: k}
steps:
  - {id: a, type: approve}
`
	p, fs := Parse("plan.yaml", []byte(src))
	if fs.Errors() > 0 {
		t.Fatal(fs)
	}
	p.ApplyDefaults()
	l := p.Cluster.Layout
	// Given keys win; a given "" (no chown) is kept; the rest are the tags.
	if l.DataDir != "/data/etcd" || l.Owner != "" || l.Service != "systemd" || l.Unit != "etcd" ||
		l.EnvFile != "/etc/etcd/etcd.env" || l.Manifest != "/etc/kubernetes/manifests/etcd.yaml" {
		t.Errorf("layout %+v", l)
	}
	if p.Cluster.ClientAccess != "ssh-tunnel" {
		t.Errorf("clientAccess %q", p.Cluster.ClientAccess)
	}
	if s := p.SSH; s.User != "root" || s.KnownHosts != "~/.ssh/known_hosts" || s.Timeout.D() != 10*time.Second || s.Identity != "k" {
		t.Errorf("ssh %+v", s)
	}
	for name, want := range map[string]struct {
		port int
		user string
	}{"h1": {22, "root"}, "h2": {2222, "ops"}, "h3": {22, "root"}} {
		if h := p.Hosts[name]; h.Port != want.port || h.User != want.user || h.Name != name {
			t.Errorf("host %s: %+v", name, h)
		}
	}
	// An explicit value stays distinguishable from a default (the ssh config
	// file fills only what the plan leaves unset).
	if p.Hosts["h1"].IsSet("port") || !p.Hosts["h2"].IsSet("port") || p.SSH.IsSet("user") || !p.SSH.IsSet("identity") {
		t.Error("IsSet does not tell given keys from defaults")
	}

	// A plan without layout: and ssh: gets every default too.
	noLayout := `version: 1
name: d
cluster: {name: c, etcdVersion: "3.5", members: []}
hosts: {h1: {address: 10.0.0.1}}
steps: []
`
	p, fs = Parse("plan.yaml", []byte(noLayout))
	if fs.Errors() > 0 {
		t.Fatal(fs)
	}
	p.ApplyDefaults()
	if l := p.Cluster.Layout; l.DataDir != "/var/lib/etcd" || l.Owner != "etcd:etcd" || p.SSH.User != "root" || p.SSH.Timeout.D() != 10*time.Second {
		t.Errorf("absent sections: layout %+v ssh %+v", l, p.SSH)
	}
}

func TestSetDefaultsEveryPlanType(t *testing.T) {
	// A bad tag panics; decode every struct type that has tags.
	for _, v := range []any{&Plan{}, &Cluster{}, &Layout{}, &TLS{}, &Member{}, &Host{}, &SSH{}, &Step{}, &Inventory{}} {
		SetDefaults(v)
	}
	if DefaultOf(SSH{}, "knownHosts") != "~/.ssh/known_hosts" || DefaultOf(&Host{}, "port") != "22" || DefaultOf(SSH{}, "identity") != "" {
		t.Error("DefaultOf does not read the tags")
	}
}

func TestLocalFile(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	for in, want := range map[string]string{
		"":                  "",
		"~":                 home,
		"~/backups/x.db":    filepath.Join(home, "backups/x.db"),
		"/abs/x.db":         "/abs/x.db",
		"backups/x.db":      "/plans/dir/backups/x.db",
		"../pki/ca.crt":     "/plans/pki/ca.crt",
		"~other/x":          "/plans/dir/~other/x", // ~user is not expanded
		"./~/not-home/x.db": "/plans/dir/~/not-home/x.db",
	} {
		if got := LocalFile("/plans/dir", in); got != want {
			t.Errorf("LocalFile(%q) = %q, want %q", in, got, want)
		}
	}
	if _, err := os.Stat(home); err != nil {
		t.Fatal(err)
	}
}
