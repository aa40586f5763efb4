package plans

import (
	"os"
	"path/filepath"
	"strings"
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
	for _, v := range []any{&Plan{}, &Cluster{}, &Layout{}, &PKI{}, &TLS{}, &Member{}, &Host{}, &SSH{}, &Step{}, &Inventory{}} {
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

func TestLayoutPKI(t *testing.T) {
	plan := func(pki string) string {
		return "version: 1\nname: d\ncluster:\n  name: c\n  etcdVersion: \"3.5\"\n  layout:\n    pki: " + pki +
			"\n  members: [{name: e1, host: h1, peerURL: \"https://10.0.0.1:2380\", clientURL: \"https://10.0.0.1:2379\"}]\nhosts: {h1: {address: 10.0.0.1}}\nsteps: []\n"
	}
	cases := map[string]struct {
		pki     string
		want    string // a finding's text, "" for none
		line    int
		minDays time.Duration
	}{
		"absent":       {"", "", 0, 7},
		"paths":        {"{serverCert: /etc/etcd/pki/s.crt, serverKey: /etc/etcd/pki/s.key, trustedCA: /etc/etcd/pki/ca.crt, peerCert: /p.crt, peerKey: /p.key, peerTrustedCA: /ca.crt, minValidDays: 30}", "", 0, 30},
		"margin off":   {"{minValidDays: 0}", "", 0, 0},
		"unknown key":  {"{serverCrt: /x}", `unknown key "serverCrt" (did you mean "serverCert"?)`, 7, 7},
		"relative":     {"{peerKey: pki/peer.key}", `layout.pki.peerKey "pki/peer.key" must be an absolute path on the hosts`, 7, 7},
		"negative":     {"{minValidDays: -1}", "layout.pki.minValidDays -1 is not between 0 and 3650", 7, 7},
		"not a number": {"{minValidDays: week}", "expected a whole number", 7, 7},
		"not mapping":  {"[a]", "expected a mapping", 7, 7},
	}
	for name, c := range cases {
		p, fs := Parse("plan.yaml", []byte(plan(c.pki)))
		if p != nil && fs.Errors() == 0 {
			fs = append(fs, p.Check()...)
		}
		if c.want == "" {
			if fs.Errors() > 0 {
				t.Errorf("%s: %v", name, fs)
				continue
			}
			p.ApplyDefaults()
			if got := p.Cluster.Layout.MinValid(); got != c.minDays*24*time.Hour {
				t.Errorf("%s: MinValid %s", name, got)
			}
			continue
		}
		found := false
		for _, f := range fs {
			if strings.Contains(f.Msg, c.want) && f.Pos.Line == c.line {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no finding %q at line %d in %v", name, c.want, c.line, fs)
		}
	}
}
