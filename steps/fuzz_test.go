package steps

import (
	"strings"
	"testing"
)

// FuzzHostOutput: what a host prints back to the service watch (systemctl
// show, crictl inspect, a journal) is input too: any bytes give a state or
// an error, never a crash, and the log pick keeps at most n lines, each one
// a line of the log or the gap marker.
func FuzzHostOutput(f *testing.F) {
	f.Add("LoadState=loaded\nActiveState=activating\nSubState=auto-restart\nResult=exit-code\nExecMainStatus=2\nExecMainCode=1\nNRestarts=3\n", 15)
	f.Add(`{"status":{"id":"abc","state":"CONTAINER_EXITED","exitCode":1,"reason":"Error","metadata":{"attempt":2}}}`, 3)
	f.Add("flag provided but not defined: -x\nUsage:\n\n  etcd [flags]\n", 2)
	f.Add("\x00\xff=\n=\n", 0)
	f.Fuzz(func(t *testing.T, out string, n int) {
		u := ParseUnitState(out)
		_ = u.Status()
		_ = u.failing(ParseUnitState(""))
		if k, err := ParseContainer([]byte(out)); err == nil {
			_ = k.failing(Container{})
		}
		if n < 0 || n > 1000 {
			n = 15
		}
		got := PickLogLines(out, n)
		if len(got) > n && n > 0 {
			t.Fatalf("PickLogLines(_, %d) kept %d lines", n, len(got))
		}
		for _, l := range got {
			if l != "..." && !strings.Contains(out, l) {
				t.Fatalf("PickLogLines made up line %q", l)
			}
		}
	})
}
