package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/etcd-rescue/etcd-rescue/engine"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCLIExitCodes(t *testing.T) {
	cases := map[string]struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		"no args":            {nil, 2, "", "etcd-rescue [command]"},
		"help":               {[]string{"--help"}, 0, "Exit codes:", ""},
		"unknown command":    {[]string{"valdate"}, 2, "", `unknown command "valdate"`},
		"validate examples":  {append([]string{"validate"}, examples()...), 0, "13 file(s) valid", ""},
		"validate bad":       {[]string{"validate", "../../engine/testdata/bad/unknown-param.yaml"}, 2, "", `unknown-param.yaml:27:29: step "restore": unknown key "bumpRevison" (did you mean "bumpRevision"?)`},
		"validate missing":   {[]string{"validate", "nope.yaml"}, 2, "", "nope.yaml: cannot read plan: no such file or directory"},
		"validate no file":   {[]string{"validate"}, 2, "", "validate needs at least one plan file"},
		"validate many bad":  {[]string{"validate", "../../engine/testdata/bad/cycle.yaml", "../../engine/testdata/bad/wipe-paths.yaml"}, 2, "", "7 error(s), 1 warning(s) in 2 file(s)"},
		"plan":               {[]string{"plan", "../../examples/restore-all-from-snapshot.yaml"}, 0, "etcdutl snapshot restore", ""},
		"plan invalid":       {[]string{"plan", "../../engine/testdata/bad/cycle.yaml"}, 2, "", "dependency cycle"},
		"plan bad output":    {[]string{"plan", "-o", "yaml", "../../examples/backup.yaml"}, 2, "", `unknown output "yaml"`},
		"graph dot":          {[]string{"graph", "../../examples/lost-host.yaml"}, 0, `"add" -> "start";`, ""},
		"graph mermaid":      {[]string{"graph", "-o", "mermaid", "../../examples/lost-host.yaml"}, 0, "flowchart TD", ""},
		"steps":              {[]string{"steps"}, 0, "force-new-cluster", ""},
		"steps one":          {[]string{"steps", "wipe-dir"}, 0, "delete", ""},
		"steps unknown":      {[]string{"steps", "wipedir"}, 2, "", `did you mean "wipe-dir"?`},
		"flags after args":   {[]string{"validate", "../../examples/backup.yaml", "-o", "json"}, 0, "[]", ""},
		"inventory override": {[]string{"validate", "--inventory", "testdata/inventory.yaml", "../../examples/quorum-loss-force-new-cluster.yaml"}, 0, "1 file(s) valid", ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			if !strings.Contains(out, tc.inStdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.inStdout, out)
			}
			if !strings.Contains(errs, tc.inStderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.inStderr, errs)
			}
		})
	}
}

func examples() []string {
	f, _ := filepath.Glob("../../examples/*.yaml")
	return f
}

func TestPlanJSONOpensNothing(t *testing.T) {
	code, out, errs := runCLI("plan", "-o", "json", "../../examples/quorum-loss-force-new-cluster.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var d struct {
		Waves []struct {
			Steps []struct {
				ID      string
				Actions []struct{ Host, Kind, Cmd string }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Waves) == 0 || d.Waves[0].Steps[0].ID != "quorum" {
		t.Fatalf("unexpected dry-run: %s", out)
	}
}

func TestSchemaIsJSON(t *testing.T) {
	code, out, _ := runCLI("schema")
	var v map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["title"] != "etcd-rescue plan" {
		t.Fatalf("schema: exit %d, %.200s", code, out)
	}
}

func TestMain(m *testing.M) {
	// The test binary is also the etcd-rescue of the testscript scripts
	// (script_test.go): run as "etcd-rescue", it is the command.
	testscript.Main(indexedM{m}, map[string]func(){
		"etcd-rescue": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// indexedM runs the tests with a throwaway run index: runs applied by
// tests do not go into the user's.
type indexedM struct{ m *testing.M }

func (im indexedM) Run() int {
	dir, err := os.MkdirTemp("", "etcd-rescue-index-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_STATE_HOME", dir)
	// The hosts of these tests are this machine: their run lock is a
	// file of this test binary, not /run/etcd-rescue.lock.
	os.Setenv(engine.HostLockFileEnv, filepath.Join(dir, "host.lock"))
	code := im.m.Run()
	os.RemoveAll(dir)
	return code
}
