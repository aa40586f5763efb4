package plans

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadInventory(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "inv.yaml")
	if err := os.WriteFile(good, []byte(`cluster:
  name: c
  etcdVersion: "3.5"
  members:
    - {name: etcd1, host: h1, peerURL: "http://10.0.0.1:2380", clientURL: "http://10.0.0.1:2379"}
hosts:
  h1: {address: 10.0.0.1}
ssh: {identity: id}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	p, fs := LoadInventory(good)
	if fs.Errors() > 0 || p == nil {
		t.Fatalf("good inventory: %v", fs)
	}
	if p.Cluster.Layout.DataDir != "/var/lib/etcd" || p.Hosts["h1"].Port != 22 || p.SSH.User != "root" {
		t.Errorf("defaults not applied: %+v %+v %+v", p.Cluster.Layout, p.Hosts["h1"], p.SSH)
	}
	if p.SSHBase != dir {
		t.Errorf("SSHBase = %q, want %q", p.SSHBase, dir)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("cluster:\n  name: c\n  etcdVersion: \"3.5\"\n  members:\n    - {name: etcd1, host: h9, peerURL: \"http://10.0.0.1:2380\", clientURL: \"http://10.0.0.1:2379\"}\nhosts:\n  h1: {address: 10.0.0.1, prot: 22}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, fs = LoadInventory(bad)
	if fs.Errors() == 0 {
		t.Fatal("bad inventory: no findings")
	}
	for _, f := range fs {
		if f.Pos.File != bad || f.Pos.Line == 0 {
			t.Errorf("finding without file:line: %v", f)
		}
	}
	if !strings.Contains(fs.Err().Error(), "prot") {
		t.Errorf("unknown key not reported: %v", fs)
	}

	if _, fs := LoadInventory(filepath.Join(dir, "missing.yaml")); fs.Errors() == 0 {
		t.Error("missing file: no finding")
	}
	scalar := filepath.Join(dir, "scalar.yaml")
	os.WriteFile(scalar, []byte("just a string\n"), 0o644)
	if p, fs := LoadInventory(scalar); p != nil || fs.Errors() == 0 {
		t.Errorf("scalar inventory: plan %v findings %v", p, fs)
	}
}
