package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/lab"
)

// TestCmdLabUsage: bad usage exits 2 with an error and a hint; asking for
// a lab that is not up exits 1.  None of this needs root or a lab.
func TestCmdLabUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: etcd-rescue lab"},
		{[]string{"--help"}, 0, ""},
		{[]string{"frobnicate"}, 2, `unknown lab command "frobnicate"`},
		{[]string{"break"}, 2, "needs a SCENARIO"},
		{[]string{"break", "meteor", "--state-dir", dir}, 2, `unknown scenario "meteor"`},
		{[]string{"reboot", "--state-dir", dir}, 2, "needs a HOST"},
		{[]string{"up", "--members", "12", "--state-dir", dir}, 2, "--members must be between 1 and 9"},
		{[]string{"up", "--etcd", "banana", "--state-dir", dir}, 2, "--etcd"},
		{[]string{"up", "--mode", "vm", "--state-dir", dir}, 2, "--mode"},
		{[]string{"up", "--tls-shared-cert", "--state-dir", dir}, 2, "--tls-shared-cert needs --tls"},
		{[]string{"up", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"status", "extra", "--state-dir", dir}, 2, `unexpected argument "extra"`},
		{[]string{"verify", "--state-dir", dir}, 1, "no lab is up"},
		{[]string{"break", "quorum-loss", "--state-dir", dir}, 1, "no lab is up"},
		{[]string{"inventory", "--sudo=maybe", "--state-dir", dir}, 2, "-sudo"},
		{[]string{"inventory", "--user", "rescue", "--sudo", "--jump", "h1", "--state-dir", dir}, 1, "no lab is up"},
		{[]string{"down", "--state-dir", dir}, 0, ""},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"lab"}, tc.args...), &out, &errb)
		if code != tc.code {
			t.Errorf("lab %v: exit %d, want %d\nstderr: %s", tc.args, code, tc.code, errb.String())
			continue
		}
		if tc.code != 0 {
			if !strings.HasPrefix(errb.String(), "etcd-rescue: error: ") && tc.args != nil {
				t.Errorf("lab %v: stderr does not start with the error prefix: %q", tc.args, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("lab %v: stderr %q does not contain %q", tc.args, errb.String(), tc.want)
			}
			if tc.args != nil && !strings.Contains(errb.String(), "\nhint: ") {
				t.Errorf("lab %v: no hint line: %q", tc.args, errb.String())
			}
		}
	}
}

// lab status -o json: lower-case keys, lists never null, member ids in hex
// as etcdctl shows them, healthy exactly when there is no problem.
func TestLabStatusJSON(t *testing.T) {
	s := &lab.Status{StateDir: "/var/tmp/lab", Mode: "light", Version: "3.6.16", Keys: 1000,
		Hosts:    []lab.HostStatus{{Name: "h1", Address: "10.77.0.11", SSH: true, Etcd: "active", DataDir: true, Memory: 1 << 20}},
		Members:  []lab.MemberStatus{{Name: "etcd1", Host: "h1", ClientURL: "http://10.77.0.11:2379", ID: 0xbeef, Leader: 0xbeef, Revision: 812}, {Name: "etcd2", Host: "h2", Err: "connection refused"}},
		Problems: []string{"etcd2 is down"}}
	var b bytes.Buffer
	if err := writeJSON(&b, labStatusJSON(s)); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	members := got["members"].([]any)
	m0, m1 := members[0].(map[string]any), members[1].(map[string]any)
	if got["healthy"] != false || got["etcdVersion"] != "3.6.16" || m0["id"] != "beef" || m0["leader"] != "beef" || m0["revision"] != 812.0 ||
		m1["error"] != "connection refused" || m1["id"] != nil || got["breaks"] == nil || got["memberList"] == nil ||
		got["hosts"].([]any)[0].(map[string]any)["memoryBytes"] != float64(1<<20) {
		t.Errorf("lab status json:\n%s", b.String())
	}
}
