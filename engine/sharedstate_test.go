package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

func sharedPlan(t *testing.T, state string) *plans.Plan {
	t.Helper()
	dir := t.TempDir()
	inv := `cluster:
  name: prod
  etcdVersion: "3.6"
  members:
    - {name: e1, host: h1, peerURL: "http://10.0.0.1:2380", clientURL: "http://10.0.0.1:2379"}
    - {name: e2, host: h2, peerURL: "http://10.0.0.2:2380", clientURL: "http://10.0.0.2:2379"}
hosts:
  h1: {address: 10.0.0.1}
  h2: {address: 10.0.0.2}
ssh: {identity: key, knownHosts: known_hosts}
` + state
	plan := "version: 1\nname: p\nsteps:\n  - {id: check, type: check-quorum}\n"
	for name, body := range map[string]string{"inv.yaml": inv, "plan.yaml": plan, "key": "k", "known_hosts": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p, fs := plans.Load(filepath.Join(dir, "plan.yaml"), filepath.Join(dir, "inv.yaml"))
	if p == nil || fs.Errors() > 0 {
		t.Fatalf("load: %v", fs)
	}
	return p
}

// A store on the cluster being repaired, or on one of its machines, is
// refused however the endpoint is written.
func TestSharedStoreOnTheClusterRefused(t *testing.T) {
	p := sharedPlan(t, "")
	for _, c := range []struct {
		url  string
		want string
	}{
		{"etcd://10.0.0.1:2379/x", "member e1"},
		{"etcd://192.168.1.9:2379,10.0.0.2:2380/x", "member e2"},
		{"etcd://10.0.0.2:12379/x", "host h2"},
	} {
		u, err := plans.ParseStateURL(c.url)
		if err != nil {
			t.Fatal(err)
		}
		err = checkOverlap(u, p)
		var se *StateError
		if !errors.As(err, &se) || !se.Usage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a usage StateError naming %s", c.url, err, c.want)
		}
	}
	u, _ := plans.ParseStateURL("etcd://10.9.0.5:2379,10.9.0.6:2379/team")
	if err := checkOverlap(u, p); err != nil {
		t.Errorf("a store outside the cluster: %v", err)
	}
}

// --state wins over the inventory's state:, and the URL recorded in the
// run index reaches the same store with the same files, never a password.
func TestSharedStoreWhichAndRecordedURL(t *testing.T) {
	p := sharedPlan(t, "state:\n  url: etcd://10.9.0.5:2379/from-inventory\n  ca: ca.crt\n  user: rescue\n  password: \"${vars.pw}\"\n  lockTTL: 20s\nvars:\n  pw: s3cret-pw\n")
	u, pw, ok, err := stateOf(p, "")
	if err != nil || !ok {
		t.Fatalf("state: section: %v %v", ok, err)
	}
	if u.Prefix != "from-inventory" || pw != "s3cret-pw" || !filepath.IsAbs(u.CA) || u.LockTTL != 20*time.Second {
		t.Errorf("state: section read as %+v (password %q)", u, pw)
	}
	rec := StateURLString(u)
	if strings.Contains(rec, "s3cret") {
		t.Errorf("the recorded URL holds the password: %s", rec)
	}
	back, err := plans.ParseStateURL(rec)
	if err != nil {
		t.Fatalf("the recorded URL %s does not parse: %v", rec, err)
	}
	if back.String() != u.String() || back.CA != u.CA || back.User != "rescue" || back.LockTTL != u.LockTTL {
		t.Errorf("recorded %s reads back as %+v, want %+v", rec, back, u)
	}
	t.Setenv(StatePasswordEnv, "from-env")
	u, pw, ok, err = stateOf(p, "etcd://10.9.0.7:2379/from-flag?cacert=rel/ca.pem")
	if err != nil || !ok || u.Prefix != "from-flag" || pw != "from-env" || !filepath.IsAbs(u.CA) {
		t.Errorf("--state over the inventory: %+v %q %v %v", u, pw, ok, err)
	}
	if _, _, _, err := stateOf(p, "etcd://user:pw@10.9.0.7:2379/x"); err == nil || strings.Contains(err.Error(), "pw@") {
		t.Errorf("a password in --state: %v", err)
	}
	if _, _, ok, err := stateOf(sharedPlan(t, ""), ""); ok || err != nil {
		t.Errorf("no --state and no state: section: %v %v", ok, err)
	}
}
