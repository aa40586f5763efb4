package reviewed

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

const planYAML = `version: 1
name: p
inventory: ../inv/inventory.yaml
steps:
  - {id: ship, type: snapshot-copy, on: all, with: {from: "${vars.snapshot}"}}
`

const invYAML = `cluster:
  name: c
  etcdVersion: "3.6"
  members:
    - {name: e1, host: h1, peerURL: "http://10.0.0.1:2380", clientURL: "http://10.0.0.1:2379"}
hosts:
  h1: {address: 10.0.0.1}
ssh: {identity: keys/id, knownHosts: known_hosts}
vars: {snapshot: snap.db, dbPassword: "hunter2-do-not-leak"}
`

// writePlan writes a plan in DIR/plans that names its inventory in
// DIR/inv, and returns the plan path.
func writePlan(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for path, body := range map[string]string{"plans/plan.yaml": planYAML, "inv/inventory.yaml": invYAML} {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "plans", "plan.yaml")
}

func newDoc(t *testing.T, planPath string) *Document {
	t.Helper()
	p, fs := plans.Load(planPath, "")
	if p == nil || fs.Errors() > 0 {
		t.Fatal(fs.Err())
	}
	sub := &facts.Subset{CollectedAt: time.Date(2026, 12, 1, 21, 0, 4, 0, time.UTC), Hosts: []facts.SubsetHost{{Name: "h1", Reach: facts.ReachTimeout}}}
	d, err := New(p, "plan.yaml", "", false, "the dry-run\n", sub, 5*time.Second, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Written, read back from another directory, rebuilt: relative paths of
// the plan and of its inventory resolve against their ORIGINAL
// directories, and nothing is read from disk (the files are gone).
func TestRoundTripResolvesAgainstOriginalDirs(t *testing.T) {
	planPath := writePlan(t)
	d := newDoc(t, planPath)
	root := filepath.Dir(filepath.Dir(planPath))
	out := filepath.Join(t.TempDir(), "x.plan")
	if err := d.Write(out); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("written: %v %v", fi, err)
	}
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())

	back, err := Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if back.Plan.Given != "plan.yaml" || back.Plan.Path != planPath || back.Inventory == nil || back.Inventory.FromFlag ||
		back.Inventory.Path != filepath.Join(root, "inv", "inventory.yaml") || back.Inventory.Given != "../inv/inventory.yaml" {
		t.Errorf("files: plan %+v inventory %+v", back.Plan, back.Inventory)
	}
	if back.DryRun != "the dry-run\n" || back.Facts == nil || back.Facts.Hosts[0].Reach != facts.ReachTimeout || time.Duration(back.FactsTimeout) != 5*time.Second {
		t.Errorf("document: %+v", back)
	}
	p, fs := back.LoadPlan()
	if p == nil || fs.Errors() > 0 {
		t.Fatalf("rebuilt: %v", fs)
	}
	if p.File != planPath || p.SSHBase != filepath.Join(root, "inv") || p.ClusterBase != filepath.Join(root, "inv") {
		t.Errorf("bases: file %s ssh %s cluster %s", p.File, p.SSHBase, p.ClusterBase)
	}
	if got := plans.LocalFile(p.SSHBase, p.SSH.Identity); got != filepath.Join(root, "inv", "keys", "id") {
		t.Errorf("identity resolves to %s", got)
	}
	if p.Vars["snapshot"] != "snap.db" || string(p.Raw) != planYAML || string(p.InvRaw) != invYAML {
		t.Errorf("vars %v", p.Vars)
	}
}

// The document holds the plan and inventory as written, and nothing
// resolved: the secret var appears only inside the inventory's content.
func TestSecretOnlyAsWritten(t *testing.T) {
	d := newDoc(t, writePlan(t))
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "hunter2-do-not-leak"); n != 1 {
		t.Errorf("the secret appears %d times, want once (in the inventory as written)", n)
	}
	d.Inventory.Content = ""
	b, _ = d.Marshal()
	if strings.Contains(string(b), "hunter2") {
		t.Errorf("the secret is outside the inventory's content:\n%s", b)
	}
}

func TestReadRefuses(t *testing.T) {
	good, err := newDoc(t, writePlan(t)).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	tests := map[string]struct {
		in        []byte
		integrity bool
		want      string
	}{
		"garbage":       {[]byte("\x00\x01garbage\xff"), false, "not a reviewed plan (etcd-rescue plan --out writes them): not JSON"},
		"empty":         {nil, false, "not JSON"},
		"a yaml plan":   {[]byte(planYAML), false, "not JSON"},
		"facts":         {[]byte(`{"kind": "etcd-rescue/facts", "version": 1}`), false, `kind "etcd-rescue/facts", want "etcd-rescue/reviewed-plan"`},
		"older version": {edit(func(m map[string]any) { m["version"] = 0 }), false, "reviewed plan version 0; this etcd-rescue reads version 1"},
		"newer version": {edit(func(m map[string]any) { m["version"] = 2 }), false, "reviewed plan version 2"},
		"unknown field": {edit(func(m map[string]any) { m["signature"] = "x" }), false, `unknown field "signature"`},
		"no facts":      {edit(func(m map[string]any) { delete(m, "facts") }), false, "missing facts"},
		"relative path": {edit(func(m map[string]any) { m["plan"].(map[string]any)["path"] = "plan.yaml" }), false, "must be absolute"},
		"wrong type":    {edit(func(m map[string]any) { m["dryRun"] = 3 }), false, "dryRun is a JSON number"},
		"trailing data": {append(append([]byte{}, good...), []byte(`{}`)...), false, "not JSON"},
		"plan edited": {edit(func(m map[string]any) {
			pl := m["plan"].(map[string]any)
			pl["content"] = strings.Replace(pl["content"].(string), "ship", "shop", 1)
		}), true, "do not match its hash"},
		"inventory edited": {edit(func(m map[string]any) {
			inv := m["inventory"].(map[string]any)
			inv["content"] = strings.Replace(inv["content"].(string), "10.0.0.1}", "10.0.0.9}", 1)
		}), true, "edited or damaged since review"},
		"inventory dropped": {edit(func(m map[string]any) { delete(m, "inventory") }), true, "do not match its hash"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d, err := Parse("x.plan", tc.in)
			var fe *FormatError
			var ie *IntegrityError
			switch {
			case d != nil:
				t.Fatalf("accepted: %+v", d)
			case tc.integrity && !errors.As(err, &ie):
				t.Errorf("want an IntegrityError, got %T %v", err, err)
			case !tc.integrity && !errors.As(err, &fe):
				t.Errorf("want a FormatError, got %T %v", err, err)
			case !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "x.plan: "):
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
			if msg := err.Error(); strings.Contains(msg, "\x00") || strings.Contains(msg, "\xff") || strings.Contains(msg, "garbage") {
				t.Errorf("error echoes garbage: %q", err)
			}
		})
	}
}

func TestSizeCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.plan")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var fe *FormatError
	if _, err := Read(path); !errors.As(err, &fe) || !strings.Contains(err.Error(), "larger than 32 MiB") {
		t.Errorf("got %v", err)
	}
	if IsFile(filepath.Join(t.TempDir(), "absent.yaml")) {
		t.Error("an absent .yaml file is a reviewed plan")
	}
}

func TestSniff(t *testing.T) {
	for in, want := range map[string]bool{
		`{"kind": "etcd-rescue/reviewed-plan", "version": 1}`: true,
		"\n  {\"kind\": \"etcd-rescue/facts\"}":               true,
		`{"version": 1, "name": "a JSON-style YAML plan"}`:    false,
		"version: 1\nname: p\n":                               false,
		`{"kind": "Pod"}`:                                     false,
		"":                                                    false,
	} {
		if got, _ := Sniff([]byte(in)); got != want {
			t.Errorf("Sniff(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestFirstDifference(t *testing.T) {
	tests := []struct {
		a, b   string
		line   int
		la, lb string
	}{
		{"x\ny\n", "x\ny\n", 0, "", ""},
		{"x\ny\n", "x\nz\n", 2, "y", "z"},
		{"x\n", "x\ny\n", 2, "", "y"},
		{"x\ny", "x\ny\n", 3, "", ""},
	}
	for _, tc := range tests {
		line, la, lb := FirstDifference(tc.a, tc.b)
		if line != tc.line || la != tc.la || lb != tc.lb {
			t.Errorf("FirstDifference(%q, %q) = %d %q %q, want %d %q %q", tc.a, tc.b, line, la, lb, tc.line, tc.la, tc.lb)
		}
	}
}
