package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/steps"
)

// etcd that cannot start on the learner's host ends member-promote within
// seconds, naming the host, the unit's exit status and its last journal
// lines, instead of polling "not in sync" until the step's deadline.
func TestPromoteFailsEarlyWhenEtcdCannotStart(t *testing.T) {
	h := newHarness(t, "", `
  - {id: promote, type: member-promote, on: m3, with: {within: 1m}}
`)
	e := newFakeEtcd()
	e.list = []steps.Member{{ID: 1, Name: "m1", PeerURLs: []string{"http://10.0.0.1:2380"}},
		{ID: 3, PeerURLs: []string{"http://10.0.0.3:2380"}, IsLearner: true}}
	h.w.etcd = e
	h.w.handler = func(host, cmd string) (string, int, error) {
		switch {
		case host == "h3" && strings.HasPrefix(cmd, "systemctl show"):
			return "LoadState=loaded\nActiveState=activating\nSubState=auto-restart\nResult=exit-code\nExecMainCode=1\nExecMainStatus=203\nNRestarts=7\n", 0, nil
		case host == "h3" && strings.HasPrefix(cmd, "journalctl -u etcd"):
			return "etcd.service: Failed to locate executable /usr/local/bin/etcd: No such file or directory\netcd.service: Failed at step EXEC spawning /usr/local/bin/etcd: No such file or directory\n", 0, nil
		}
		return "", 0, nil
	}
	start := time.Now()
	_, err := h.apply(h.opts())
	took := time.Since(start)
	re := runErrOf(t, err)
	if len(re.Failed) != 1 || re.Failed[0].Step != "promote" || re.Failed[0].Host != "h3" {
		t.Fatalf("want promote@h3 failed: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"etcd on h3 cannot run", "exit status 203 (status=203/EXEC)", "log: etcd.service: Failed at step EXEC spawning /usr/local/bin/etcd"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if took > 15*time.Second {
		t.Errorf("took %s", took)
	}
}
