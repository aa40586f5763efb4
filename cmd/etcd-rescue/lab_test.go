package main

import (
	"bytes"
	"strings"
	"testing"
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
