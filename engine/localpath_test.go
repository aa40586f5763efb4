package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/access"
)

// Operator-side paths in steps' with: follow the same rule as ssh.identity:
// ~/ is the home directory (it used to become <plan dir>/~/...), a relative
// path is relative to the plan.
func TestOperatorPathsTilde(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.yaml")
	src := `version: 1
name: tilde
cluster:
  name: c
  etcdVersion: "3.5.17"
  token: t1
  members:
    - {name: etcd1, host: node1, peerURL: "https://10.0.0.1:2380", clientURL: "https://10.0.0.1:2379"}
  tls: {ca: ~/pki/ca.crt}
hosts:
  node1: {address: 10.0.0.1}
ssh: {identity: ~/.ssh/id_ed25519}
steps:
  - {id: save, type: snapshot-save, on: etcd1, with: {to: ~/backups/x.db}}
  - {id: copy, type: snapshot-copy, on: node1, needs: [save], with: {from: ~/backups/x.db}}
  - {id: rel, type: snapshot-copy, on: node1, needs: [copy], with: {from: backups/y.db, to: /var/tmp/y.db}}
`
	if err := os.WriteFile(plan, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c, fs := Load(plan, "")
	if c == nil || fs.Errors() > 0 {
		t.Fatal(fs)
	}
	var out bytes.Buffer
	if err := BuildDryRun(c).WriteText(&out); err != nil {
		t.Fatal(err)
	}
	txt := out.String()
	for _, want := range []string{
		"to " + filepath.Join(home, "backups/x.db") + " (Maintenance.Snapshot",
		"verify the sha256 trailer of " + filepath.Join(home, "backups/x.db") + " and compute",
		"verify the sha256 trailer of " + filepath.Join(dir, "backups/y.db") + " and compute",
	} {
		if !strings.Contains(txt, want) {
			t.Errorf("dry-run lacks %q:\n%s", want, txt)
		}
	}
	if strings.Contains(txt, "/~/") {
		t.Errorf("a ~/ path was joined to the plan dir:\n%s", txt)
	}
	if tls := access.TLSFiles(c.Plan); tls == nil || tls.CA != filepath.Join(home, "pki/ca.crt") {
		t.Errorf("cluster.tls.ca resolved to %+v", tls)
	}
}
