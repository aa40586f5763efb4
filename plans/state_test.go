package plans

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseStateURL(t *testing.T) {
	good := map[string]StateURL{
		"etcd://127.0.0.1:2479/etcd-rescue": {Endpoints: []string{"127.0.0.1:2479"}, Prefix: "etcd-rescue"},
		"etcd://a:1,b:2,[::1]:3/teams/a/":   {Endpoints: []string{"a:1", "b:2", "[::1]:3"}, Prefix: "teams/a"},
		"ETCD://h:2379/p?cacert=ca.pem&cert=c.pem&key=k.pem&user=rescue&lockTTL=30s": {
			Endpoints: []string{"h:2379"}, Prefix: "p", CA: "ca.pem", Cert: "c.pem", Key: "k.pem", User: "rescue", LockTTL: 30 * time.Second},
		"etcd://ops@h:2379/p":              {Endpoints: []string{"h:2379"}, Prefix: "p", User: "ops"},
		"etcd://h:2379/p?lockTTL=3s":       {Endpoints: []string{"h:2379"}, Prefix: "p", LockTTL: 3 * time.Second},
		"etcd://h:2379/p?cacert=/x/ca.crt": {Endpoints: []string{"h:2379"}, Prefix: "p", CA: "/x/ca.crt"},
		"etcd://h:1/p?user=ops@corp":       {Endpoints: []string{"h:1"}, Prefix: "p", User: "ops@corp"},
		"etcd://h:1/a%20b":                 {Endpoints: []string{"h:1"}, Prefix: "a b"},
	}
	for raw, want := range good {
		got, err := ParseStateURL(raw)
		if err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, want %+v", raw, got, want)
		}
	}
	if s := good["etcd://a:1,b:2,[::1]:3/teams/a/"].String(); s != "etcd://a:1,b:2,[::1]:3/teams/a" {
		t.Errorf("String: %s", s)
	}

	const pw = "Hunter2-s3cr3t"
	bad := map[string]string{
		"":                                    "state URL is empty",
		"127.0.0.1:2379/p":                    "is not etcd://HOST:PORT/PREFIX",
		"http://h:2379/p":                     "scheme must be etcd",
		"etcds://h:2379/p":                    "hint: write etcd://HOST:PORT/PREFIX?cacert=FILE",
		"https://h:2379/p":                    "scheme https is not supported",
		"etcd:///p":                           "names no host",
		"etcd://h/p":                          "no port",
		"etcd://h:x/p":                        `port "x" is not a number`,
		"etcd://h:70000/p":                    "is not a number from 1 to 65535",
		"etcd://h:1,/p":                       `endpoint "": empty`,
		"etcd://::1:2379/p":                   "brackets",
		"etcd://h:2379":                       "has no key prefix",
		"etcd://h:2379/":                      "has no key prefix",
		"etcd://h:2379/a//b":                  "empty segment",
		"etcd://rescue:" + pw + "@h:2379/p":   "holds a password\nhint: the password comes from ETCD_RESCUE_STATE_PASSWORD or state.password",
		"etcd://h:2379/p?password=" + pw:      "query key password is not allowed",
		"etcd://h:2379/p?cacrt=ca.pem":        `unknown query key "cacrt"` + "\nhint: the query takes cacert, cert, key, user, lockTTL (did you mean \"cacert\"?)",
		"etcd://h:2379/p?lockTTL=1s":          "lockTTL 1s is out of range",
		"etcd://h:2379/p?lockTTL=11m":         "out of range",
		"etcd://h:2379/p?lockTTL=soon":        `lockTTL "soon" is not a duration`,
		"etcd://h:2379/p?cert=c.pem":          "cert= and key= go together",
		"etcd://h:2379/p?user=a&user=b":       "must have one value",
		"etcd://a@h:2379/p?user=b":            "names two users",
		"etcd://h:2379/p#frag":                "fragment",
		"etcd://x:" + pw + "@h:1/p?key=" + pw: "holds a password",
		// a password not escaped as a URL needs it: still never echoed
		"etcd://u:" + pw + "/x@h:1/p":        "holds a password",
		"etcd://u:" + pw + "?x@h:1/p":        "holds a password",
		"etcd://u:" + pw + "#x@h:1/p":        "holds a password",
		"etcd://u:" + pw + "@x@h:1/p":        "holds a password",
		"etcd://u:" + pw + "@h:1/p?user=a@b": "holds a password",
		"etcd://u%3A" + pw + "@h:1/p":        "holds a password",
		"u:" + pw + "@h:1/p":                 "is not etcd://HOST:PORT/PREFIX",
		"etcd://u:12/" + pw + "@h:1/p":       "the prefix holds an @",
		"etcd://h:1/team@x":                  "the prefix holds an @",
	}
	for raw, want := range bad {
		_, err := ParseStateURL(raw)
		if err == nil {
			t.Errorf("%q: no error, want %q", raw, want)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", raw, err, want)
		}
		if !strings.Contains(err.Error(), "\nhint: ") {
			t.Errorf("%q: no hint in %v", raw, err)
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("%q: the password is in the error: %v", raw, err)
		}
	}
}

// state: in an inventory: merged like s3:, its files relative to the
// inventory, the section's keys over the URL's query, its variables
// resolved from the merged vars.
func TestStateSection(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "env")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(sub, "inv.yaml")
	if err := os.WriteFile(inv, []byte(`state:
  url: etcd://127.0.0.1:2479,127.0.0.2:2479/etcd-rescue?cacert=url-ca.crt&user=fromurl&lockTTL=20s
  ca: pki/ca.crt
  cert: /abs/client.crt
  key: pki/client.key
  user: ${vars.stateUser}
  password: "${vars.mgmt}"
  lockTTL: 7s
vars:
  stateUser: rescue
  mgmt: pw-of-the-store
`), 0o600); err != nil {
		t.Fatal(err)
	}
	plan := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(plan, []byte(`version: 1
name: p
inventory: env/inv.yaml
cluster:
  name: c
  etcdVersion: "3.5"
  members:
    - {name: etcd1, host: h1, peerURL: "http://10.0.0.1:2380", clientURL: "http://10.0.0.1:2379"}
hosts:
  h1: {address: 10.0.0.1}
steps:
  - {id: a, type: approve}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	p, fs := Load(plan, "")
	if p == nil || len(fs) > 0 {
		t.Fatalf("load: %v", fs)
	}
	if p.State == nil || p.StateBase != sub {
		t.Fatalf("state not merged: %+v base %q", p.State, p.StateBase)
	}
	u, pw, err := p.StateConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := StateURL{Endpoints: []string{"127.0.0.1:2479", "127.0.0.2:2479"}, Prefix: "etcd-rescue",
		CA: filepath.Join(sub, "pki/ca.crt"), Cert: "/abs/client.crt", Key: filepath.Join(sub, "pki/client.key"),
		User: "rescue", LockTTL: 7 * time.Second}
	if !reflect.DeepEqual(u, want) || pw != "pw-of-the-store" {
		t.Errorf("config %+v %q, want %+v", u, pw, want)
	}

	// The URL's query alone: its files are relative to the file too.
	p.State = &StateStore{URL: "etcd://h:1/p?cacert=ca.pem&user=u"}
	if u, pw, err := p.StateConfig(); err != nil || u.CA != filepath.Join(sub, "ca.pem") || u.User != "u" || pw != "" {
		t.Errorf("query only: %+v %q %v", u, pw, err)
	}

	// LoadInventory sees it too.
	ip, fs := LoadInventory(inv)
	if ip == nil || ip.State == nil || ip.StateBase != sub {
		t.Fatalf("inventory alone: %+v %v", ip, fs)
	}

	// --inventory replaces the plan's own state:; without it, a section
	// in both files is a finding.
	raw, _ := os.ReadFile(plan)
	if err := os.WriteFile(plan, append(raw, []byte("state: {url: \"etcd://x:1/plan\"}\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	_, fs = Load(plan, "")
	if fs.Err() == nil || !strings.Contains(fs.Err().Error(), "state: defined both here and in inventory") {
		t.Errorf("want a finding for state: in both files: %v", fs)
	}
	p, fs = Load(plan, inv)
	if fs.Errors() > 0 || p.State.URL == "etcd://x:1/plan" || p.StateBase != sub {
		t.Errorf("--inventory: %+v %v", p.State, fs)
	}
}

// Every finding of state: is at the key it is about.
func TestStateFindings(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.yaml")
	write := func(section string) Findings {
		t.Helper()
		if err := os.WriteFile(inv, []byte(section), 0o600); err != nil {
			t.Fatal(err)
		}
		_, fs := LoadInventory(inv)
		var out Findings
		for _, f := range fs {
			if strings.Contains(f.Msg, "state") {
				out = append(out, f)
			}
		}
		return out
	}
	type want struct {
		line, col int
		msg       string
	}
	for name, c := range map[string]struct {
		yaml string
		want []want
	}{
		"bad url": {"state:\n  url: http://h:1/p\n", []want{{2, 8, "state.url: state URL \"http://h:1/p\": scheme must be etcd"}}},
		"literal password": {"state:\n  url: etcd://h:1/p\n  user: u\n  password: Hunter2\n",
			[]want{{4, 13, "state.password is written in the file"}}},
		"password without user": {"state:\n  url: etcd://h:1/p\n  password: ${vars.pw}\nvars: {pw: x}\n",
			[]want{{3, 13, "state.password without state.user"}}},
		"user in url": {"state:\n  url: etcd://u@h:1/p\n  password: ${vars.pw}\nvars: {pw: x}\n", nil},
		"cert without key": {"state:\n  url: etcd://h:1/p\n  cert: c.pem\n",
			[]want{{3, 9, "state.cert without state.key"}}},
		"key without cert": {"state:\n  url: etcd://h:1/p\n  key: k.pem\n",
			[]want{{3, 8, "state.key without state.cert"}}},
		"cert in url, key in section": {"state:\n  url: etcd://h:1/p?cert=c.pem\n  key: k.pem\n", nil},
		"cert in url only": {"state:\n  url: etcd://h:1/p?cert=c.pem\n",
			[]want{{2, 8, "state.url's cert= without state.key"}}},
		"bad lockTTL": {"state:\n  url: etcd://h:1/p\n  lockTTL: 1s\n",
			[]want{{3, 12, "state.lockTTL 1s is out of range"}}},
		"unresolved": {"state:\n  url: etcd://${vars.host}:1/p\n",
			[]want{{2, 8, "state.url: unresolved variable ${vars.host}"}}},
		"missing url": {"state:\n  user: u\n", []want{{2, 3, "missing required key \"url\""}}},
		"good":        {"state:\n  url: etcd://${vars.h}:2479/p\n  ca: ca.pem\n  cert: c\n  key: k\n  user: u\n  password: ${vars.p}\n  lockTTL: 1m\nvars: {h: x, p: y}\n", nil},
	} {
		fs := write(c.yaml)
		if len(fs) != len(c.want) {
			t.Errorf("%s: findings %v, want %v", name, fs, c.want)
			continue
		}
		for i, w := range c.want {
			f := fs[i]
			if f.Pos.File != inv || f.Pos.Line != w.line || f.Pos.Col != w.col || !strings.Contains(f.Msg, w.msg) || f.Severity != Error {
				t.Errorf("%s: %v (%v), want %d:%d %q", name, f, f.Severity, w.line, w.col, w.msg)
			}
			if f.Hint == "" && !strings.Contains(f.Msg, "missing required") {
				t.Errorf("%s: no hint in %v", name, f)
			}
			if strings.Contains(f.Msg+f.Hint, "Hunter2") {
				t.Errorf("%s: the password is in %v", name, f)
			}
		}
	}
}

// Whatever a password holds, unescaped, it is refused and never echoed.
func TestParseStateURLNeverEchoesPassword(t *testing.T) {
	for _, pw := range []string{"s3cr3t-A", "s3cr3t@A", "s3cr3t/A", "s3cr3t?A=1", "s3cr3t#A", "s3cr3t:A", "s3cr3t%zzA", "s3cr3t,A", "1234567"} {
		for _, form := range []string{"etcd://u:%s@h:1/p", "etcd://u:%s@h:1,g:2/p?cacert=c", "etcd://u:%s@h:1", "https://u:%s@h:1/p", "u:%s@h:1/p", "etcd://u:%s@/p"} {
			raw := strings.Replace(form, "%s", pw, 1)
			_, err := ParseStateURL(raw)
			if err == nil {
				t.Errorf("%q: no error", raw)
				continue
			}
			if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("%q: the password is in the error: %v", raw, err)
			}
		}
	}
}
