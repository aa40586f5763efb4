package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/golden"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// TestBadPlans loads one small plan per validation rule; each file lists the
// findings it must produce as trailing "# want: LINE:COL: text" comments.
func TestBadPlans(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) < 20 {
		t.Fatalf("only %d bad plans found", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			for _, line := range strings.Split(string(raw), "\n") {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					wants = append(wants, w)
				}
			}
			if len(wants) == 0 {
				t.Fatal("no # want: lines")
			}
			_, fs := Load(f, "")
			if fs.Errors() == 0 {
				t.Fatalf("no error findings; got %v", fs)
			}
			var got []string
			for _, x := range fs {
				got = append(got, strings.TrimPrefix(strings.SplitN(x.Error(), "\n", 2)[0], f+":"))
			}
			for _, w := range wants {
				found := false
				for _, g := range got {
					if strings.HasPrefix(g, w) {
						found = true
					}
				}
				if !found {
					t.Errorf("missing finding %q\ngot:\n  %s", w, strings.Join(got, "\n  "))
				}
			}
		})
	}
}

// TestGoodPlans loads the plans that each validation rule must let through
// (the correct way to write what a bad plan gets wrong): no error, and only
// the warnings listed as trailing "# warn: LINE:COL: text" comments.
func TestGoodPlans(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	if len(files) < 5 {
		t.Fatalf("only %d good plans found", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var warns []string
			for _, line := range strings.Split(string(raw), "\n") {
				if w, ok := strings.CutPrefix(line, "# warn: "); ok {
					warns = append(warns, w)
				}
			}
			c, fs := Load(f, "")
			if c == nil || fs.Errors() > 0 {
				t.Fatalf("not valid: %v", fs)
			}
			for _, x := range fs {
				got := strings.TrimPrefix(strings.SplitN(x.Error(), "\n", 2)[0], f+":")
				listed := false
				for _, w := range warns {
					listed = listed || strings.HasPrefix(got, w)
				}
				if !listed {
					t.Errorf("unexpected finding %s", got)
				}
			}
			if len(fs) != len(warns) {
				t.Errorf("%d findings, %d listed", len(fs), len(warns))
			}
		})
	}
}

// TestExamplesValid: every example validates with no error and no warning.
func TestExamplesValid(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	if len(files) != 13 {
		t.Fatalf("want the 7 seed scenarios, the 5-member quorum loss, the quorum loss from the survivor's snapshot, the two new-certificate plans and the two S3 plans (backup, restore) in examples/, found %d", len(files))
	}
	for _, f := range files {
		c, fs := Load(f, "")
		if c == nil || len(fs) > 0 {
			t.Errorf("%s: %v", f, fs)
		}
	}
}

// TestDryRunGolden renders every example's dry-run (text and JSON), and
// those of testdata/dryrun, and compares it with testdata/golden;
// UPDATE_GOLDEN=1 rewrites them.
func TestDryRunGolden(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	// Plans that are not examples but whose dry-run is worth pinning.
	more, _ := filepath.Glob("testdata/dryrun/*.yaml")
	for _, f := range append(files, more...) {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			c, fs := Load(f, "")
			if c == nil {
				t.Fatal(fs)
			}
			d := BuildDryRun(c)
			var txt, js bytes.Buffer
			if err := d.WriteText(&txt); err != nil {
				t.Fatal(err)
			}
			if err := d.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "testdata/golden/"+name+".txt", txt.Bytes())
			golden.Check(t, "testdata/golden/"+name+".json", js.Bytes())
		})
	}
}

// TestRestoreCommandsPerMember is the acceptance check: one restore
// per member with its own --name and --initial-advertise-peer-urls and the
// identical --initial-cluster and --initial-cluster-token; etcdutl with
// --data-dir on 3.5+, etcdctl on 3.4.
func TestRestoreCommandsPerMember(t *testing.T) {
	for _, tc := range []struct{ version, tool string }{{"3.5.17", "etcdutl snapshot restore"}, {"3.6", "etcdutl snapshot restore"}, {"3.4.30", "ETCDCTL_API=3 etcdctl snapshot restore"}} {
		t.Run(tc.version, func(t *testing.T) {
			p, fs := plans.Load("../examples/restore-all-from-snapshot.yaml", "")
			if fs.Errors() > 0 {
				t.Fatal(fs)
			}
			p.Cluster.EtcdVersion = tc.version
			c, fs := Compile(p, registry())
			if c == nil {
				t.Fatal(fs)
			}
			var cmds []string
			for _, s := range BuildDryRun(c).Waves {
				for _, st := range s.Steps {
					for _, a := range st.Actions {
						if strings.Contains(a.Cmd, "snapshot restore") {
							cmds = append(cmds, a.Cmd)
						}
					}
				}
			}
			if len(cmds) != 3 {
				t.Fatalf("want 3 restore commands, got %d", len(cmds))
			}
			flagOf := func(cmd, flag string) string {
				f := strings.Fields(cmd)
				for i := range f {
					if f[i] == flag && i+1 < len(f) {
						return f[i+1]
					}
				}
				return ""
			}
			seenNames := map[string]bool{}
			for i, cmd := range cmds {
				// one command up to the restored dir: the restore follows the
				// removal of a leftover and the snapshot's identity check
				if !strings.Contains(cmd, "; "+tc.tool+" ") {
					t.Errorf("restore %d: %q does not run %q", i, cmd, tc.tool)
				}
				if flagOf(cmd, "--data-dir") == "" {
					t.Errorf("restore %d has no --data-dir", i)
				}
				name := flagOf(cmd, "--name")
				m := c.Plan.Cluster.MemberByName(name)
				if m == nil || seenNames[name] {
					t.Fatalf("restore %d: bad or repeated --name %q", i, name)
				}
				seenNames[name] = true
				if got := flagOf(cmd, "--initial-advertise-peer-urls"); got != m.PeerURL {
					t.Errorf("%s: --initial-advertise-peer-urls %s, want %s", name, got, m.PeerURL)
				}
				if flagOf(cmd, "--initial-cluster") != flagOf(cmds[0], "--initial-cluster") ||
					flagOf(cmd, "--initial-cluster-token") != "prod-etcd-2026-11-22" {
					t.Errorf("%s: initial cluster or token differ: %s", name, cmd)
				}
			}
		})
	}
}

// TestDryRunRedactsSecrets: a secret var used in a command never shows.
func TestDryRunRedactsSecrets(t *testing.T) {
	p, fs := plans.Load("../examples/backup.yaml", "")
	if fs.Errors() > 0 {
		t.Fatal(fs)
	}
	p.Vars["dbPassword"] = "hunter2-s3cr3t"
	p.Steps = append(p.Steps, &plans.Step{ID: "x", Type: "exec", On: plans.Strings{"node1"}})
	y := "{command: 'echo ${vars.dbPassword} | login', creates: /x}"
	p2, fs := plans.Parse("x.yaml", []byte("version: 1\nname: x\nsteps:\n  - {id: x, type: exec, on: node1, with: "+y+"}\n"))
	if fs.Errors() > 0 {
		t.Fatal(fs)
	}
	p.Steps[len(p.Steps)-1] = p2.Steps[0]
	c, fs := Compile(p, registry())
	if c == nil {
		t.Fatal(fs)
	}
	var b bytes.Buffer
	if err := BuildDryRun(c).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "hunter2") || !strings.Contains(b.String(), "echo <redacted> | login") {
		t.Errorf("dry-run does not redact the secret:\n%s", b.String())
	}
}

// TestMergeKeysSameDryRun: a plan written with anchors and merge keys
// validates with no finding and renders the same dry-run as the same plan
// written out.
func TestMergeKeysSameDryRun(t *testing.T) {
	var out [2]string
	for i, f := range []string{"testdata/merge/anchors.yaml", "testdata/merge/written-out.yaml"} {
		c, fs := Load(f, "")
		if c == nil || len(fs) > 0 {
			t.Fatalf("%s: %v", f, fs)
		}
		var b bytes.Buffer
		if err := BuildDryRun(c).WriteText(&b); err != nil {
			t.Fatal(err)
		}
		out[i] = strings.ReplaceAll(b.String(), f, "PLAN")
	}
	if out[0] != out[1] {
		t.Errorf("dry-runs differ:\n%s\n---\n%s", out[0], out[1])
	}
	if !strings.Contains(out[0], "etcd2") || !strings.Contains(out[0], "backups/etcd-20261121.db") {
		t.Errorf("dry-run lacks the merged members or vars:\n%s", out[0])
	}
}
