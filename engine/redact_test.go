package engine

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

func TestSecretVarRule(t *testing.T) {
	for name, want := range map[string]bool{
		"dbPassword": true, "API_TOKEN": true, "s3SecretKey": true, "accessKey": true, "passwd": true,
		"snapshot": false, "clusterName": false, "dir": false,
	} {
		if IsSecretVar(name) != want {
			t.Errorf("IsSecretVar(%q) = %v", name, !want)
		}
	}
	p := &plans.Plan{Vars: map[string]string{"dbPassword": `pa"ss<word>`, "snapshot": "/tmp/s.db", "emptyToken": ""}}
	r := NewRedactor(p)
	if got := r.String(`echo pa"ss<word> /tmp/s.db`); got != "echo <redacted> /tmp/s.db" {
		t.Errorf("String: %q", got)
	}
	// The JSON-escaped form is caught in serialized bytes too.
	if got := string(r.Bytes([]byte(`{"cmd":"pa\"ss\u003cword\u003e"}`))); strings.Contains(got, "ss") {
		t.Errorf("Bytes: %q", got)
	}
}

// A secret var never reaches state.json, events.jsonl, the progress output
// or the returned error, even when the failing command echoes it.
func TestSecretNeverWritten(t *testing.T) {
	const secret = "hunter2-Very-Secret"
	h := newHarness(t, "  apiPassword: "+secret+"\n  dir: /srv\n", `
  - {id: login, type: exec, on: h1, with: {command: "curl -u admin:${vars.apiPassword} https://x/${vars.dir}"}}
  - {id: note, type: fact-secret}
`)
	h.w.handler = func(host, cmd string) (string, int, error) {
		if strings.Contains(cmd, "curl") {
			return "", 22, nil // stderr "stderr of <cmd>" echoes the secret
		}
		return "", 0, nil
	}
	res, err := h.apply(h.opts())
	runErrOf(t, err)
	if h.w.ran("h1", "curl -u admin:"+secret+" https://x//srv") != 1 {
		t.Fatalf("the command itself must carry the secret: %v", h.w.commands())
	}
	run := filepath.Join(res.StateDir, "runs", res.RunID)
	for name, text := range map[string]string{
		"state.json":   readFile(t, filepath.Join(run, "state.json")),
		"events.jsonl": readFile(t, filepath.Join(run, "events.jsonl")),
		"progress":     h.progress.String(),
		"error":        err.Error(),
	} {
		if strings.Contains(text, secret) {
			t.Errorf("%s contains the secret:\n%s", name, text)
		}
		if name != "progress" && !strings.Contains(text, "<redacted>") {
			t.Errorf("%s shows no <redacted> marker:\n%s", name, text)
		}
	}
	// Non-secret values stay readable.
	if !strings.Contains(readFile(t, filepath.Join(run, "events.jsonl")), "https://x//srv") {
		t.Error("non-secret text was redacted")
	}
	fi, _ := os.Stat(filepath.Join(run, "events.jsonl"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("events.jsonl mode %v", fi.Mode())
	}
}

func TestRedactorJSONForms(t *testing.T) {
	r := NewRedactor(&plans.Plan{Vars: map[string]string{"secret": "a<b\"c\\d"}})
	for _, enc := range []string{`a\u003cb\"c\\d`, `a<b\"c\\d`, "a<b\"c\\d"} {
		if got := r.String("x " + enc + " y"); got != "x <redacted> y" {
			t.Errorf("%s: %q", enc, got)
		}
	}
}

// TestFindingsRedactSecrets plants a secret variable in every parameter of
// every step type (a duration, an enum, a bool, a number, a URL, a path, a
// member name, a shell command ...) and validates: the value reaches many
// findings' messages, and none of them may show it.
func TestFindingsRedactSecrets(t *testing.T) {
	head := `version: 1
name: secrets
cluster:
  name: c
  token: t-1
  etcdVersion: "3.5.17"
  members:
    - {name: e1, host: h1, peerURL: "http://10.9.0.1:2380", clientURL: "http://10.9.0.1:2379"}
    - {name: e2, host: h2, peerURL: "http://10.9.0.2:2380", clientURL: "http://10.9.0.2:2379"}
    - {name: e3, host: h3, peerURL: "http://10.9.0.3:2380", clientURL: "http://10.9.0.3:2379"}
hosts:
  h1: {address: 10.9.0.1}
  h2: {address: 10.9.0.2}
  h3: {address: 10.9.0.3}
vars:
  apiSecret: 'Zq9-s3cr3t''v"@l\x'
steps:
`
	reg := registry()
	redacted, planted := 0, 0
	for _, name := range steps.Names(reg) {
		typ := reg[name]
		on := "    on: members\n"
		if typ.Scope == steps.Once {
			on = ""
		}
		for _, f := range plans.FieldsOf(reflect.TypeOf(typ.New())) {
			planted++
			src := head + "  - id: s\n    type: " + name + "\n" + on + "    with: {" + f.Key + ": \"${vars.apiSecret}\"}\n"
			_, fs := LoadBytes("p.yaml", []byte(src), "")
			for _, x := range fs {
				text := x.Error()
				if strings.Contains(text, "s3cr3t") {
					t.Errorf("%s.%s: finding shows the secret: %s", name, f.Key, text)
				}
				if strings.Contains(text, Redacted) {
					redacted++
				}
			}
		}
	}
	if planted < 40 || redacted < planted/4 {
		t.Fatalf("planted the secret in %d parameters, %d findings redacted it: the test no longer reaches finding messages", planted, redacted)
	}
	t.Logf("planted in %d parameters; %d findings redacted it", planted, redacted)
}

// state.password is a secret whatever its variable is called, like
// s3.secretKey; a literal one (an error finding) is redacted too.
func TestRedactorStatePassword(t *testing.T) {
	for pw, vars := range map[string]map[string]string{
		"${vars.mgmt}": {"mgmt": "Zq9-st0re-pw"},
		"Zq9-st0re-pw": nil,
	} {
		p := &plans.Plan{State: &plans.StateStore{URL: "etcd://h:1/p", User: "u", Password: pw}, Vars: vars}
		got := NewRedactor(p).String(`login "Zq9-st0re-pw" failed`)
		if strings.Contains(got, "st0re") || !strings.Contains(got, Redacted) {
			t.Errorf("password %q: %s", pw, got)
		}
	}
}
