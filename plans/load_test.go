package plans

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Local files named in ssh: and cluster.tls: are relative to the file that
// holds the section, not to the current directory.
func TestLocalFilesRelativeToTheirFile(t *testing.T) {
	root := t.TempDir()
	inv := filepath.Join(root, "env", "lab.yaml")
	if err := os.MkdirAll(filepath.Dir(inv), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inv, []byte("ssh: {identity: keys/id, knownHosts: /abs/known_hosts}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plan := filepath.Join(root, "plans", "p.yaml")
	if err := os.MkdirAll(filepath.Dir(plan), 0o700); err != nil {
		t.Fatal(err)
	}
	src := `version: 1
name: p
inventory: ../env/lab.yaml
cluster:
  name: c
  etcdVersion: "3.5"
  tls: {ca: pki/ca.crt}
  members: [{name: e1, host: n1, peerURL: "http://10.0.0.1:2380", clientURL: "http://10.0.0.1:2379"}]
hosts: {n1: {address: 10.0.0.1}}
steps: [{id: s, type: stop-service, on: all}]
`
	if err := os.WriteFile(plan, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	p, fs := Load(plan, "")
	if p == nil {
		t.Fatal(fs.Err())
	}
	home, _ := os.UserHomeDir()
	for _, c := range []struct{ got, want string }{
		{LocalFile(p.SSHBase, p.SSH.Identity), filepath.Join(root, "env", "keys", "id")},
		{LocalFile(p.SSHBase, p.SSH.KnownHosts), "/abs/known_hosts"},
		{LocalFile(p.ClusterBase, p.Cluster.TLS.CA), filepath.Join(root, "plans", "pki", "ca.crt")},
		{LocalFile(p.ClusterBase, "~/x"), filepath.Join(home, "x")},
		{LocalFile(p.ClusterBase, ""), ""},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
}

// A document that is not a mapping gets one finding at its position, and
// no plan: the "missing required key" findings that would follow say
// nothing new and had no position (found by make fuzz with input "0").
func TestParseNotAMapping(t *testing.T) {
	for name, src := range map[string]string{
		"scalar": "0\n",
		"list":   "- a\n- b\n",
		"word":   "plan\n",
	} {
		p, fs := Parse("p.yaml", []byte(src))
		if p != nil {
			t.Errorf("%s: got a plan from %q", name, src)
		}
		if len(fs) != 1 || fs[0].Pos.File != "p.yaml" || fs[0].Pos.Line != 1 {
			t.Errorf("%s: want one finding at p.yaml:1, got %v", name, fs)
		}
	}
}

// A section that is not a mapping stays absent: no check reads an empty
// section, whose findings would have no position (make fuzz, "cluster: 000").
func TestSectionNotAMapping(t *testing.T) {
	p, fs := Parse("p.yaml", []byte("version: 1\nname: x\ncluster: 000\nhosts: {h1: {address: 10.9.0.1}}\nsteps: []\n"))
	if p == nil || p.Cluster != nil {
		t.Fatalf("want a plan without a cluster, got %+v", p)
	}
	fs = append(fs, p.Check()...)
	found := false
	for _, f := range fs {
		if f.Pos.File != "p.yaml" || f.Pos.Line == 0 {
			t.Errorf("finding without position: %v", f)
		}
		if f.Pos.Line == 3 && strings.Contains(f.Msg, "expected a mapping") {
			found = true
		}
	}
	if !found {
		t.Errorf("want cluster: expected a mapping at line 3, got %v", fs)
	}
}

// LoadSources reads nothing from disk: a plan whose inventory: key names a
// file the sources do not hold is a finding at that key, and relative
// paths resolve against the directories the sources name.
func TestLoadSourcesReadsNothing(t *testing.T) {
	plan := Source{Path: "/nowhere/plans/p.yaml", Raw: []byte("version: 1\nname: p\ninventory: ../inv/i.yaml\nsteps: []\n")}
	inv := Source{Path: "/nowhere/inv/i.yaml", Raw: []byte("cluster:\n  name: c\n  etcdVersion: \"3.6\"\n  members:\n    - {name: e1, host: h1, peerURL: \"http://10.0.0.1:2380\", clientURL: \"http://10.0.0.1:2379\"}\nhosts:\n  h1: {address: 10.0.0.1}\nssh: {identity: id}\n")}
	p, fs := LoadSources(plan, &inv, false)
	if p == nil || p.Cluster == nil || p.SSHBase != "/nowhere/inv" || p.ClusterBase != "/nowhere/inv" || string(p.InvRaw) != string(inv.Raw) {
		t.Fatalf("plan %+v findings %v", p, fs)
	}
	for _, f := range fs {
		if strings.Contains(f.Msg, "inventory") {
			t.Errorf("unexpected finding %v", f)
		}
	}
	_, fs = LoadSources(plan, nil, false)
	if !strings.Contains(fs.Sort().Err().Error(), "p.yaml:3:12: inventory: names /nowhere/inv/i.yaml, but no inventory bytes are held with the plan") {
		t.Errorf("findings: %v", fs)
	}
	other := inv
	other.Path = "/elsewhere/i.yaml"
	_, fs = LoadSources(plan, &other, false)
	if !strings.Contains(fs.Err().Error(), "inventory: names /nowhere/inv/i.yaml, but the inventory held is /elsewhere/i.yaml") {
		t.Errorf("findings: %v", fs)
	}
}
