package engine

import (
	"strings"
	"sync"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// A run killed inside force-new-cluster, right after it wrote the flag and
// while it restarted the survivor, finishes with a plain resume: the step
// observes the flag and the survivor, checks the fence again and goes on.
// Before, resume stopped for the operator (exit 5). The survivor is
// restarted at most once (with the flag): removing the flag restarts
// nothing, since etcd reads it only at start.
func TestForceNewClusterKilledMidStepResumes(t *testing.T) {
	for name, tc := range map[string]struct {
		single       bool // the survivor already answers as a one-member cluster
		flagRemoved  bool // the kill came after the flag was removed
		wantFence    bool
		wantRestarts int
		wantLog      string
	}{
		"flag written, etcd still a member of the old cluster": {wantFence: true, wantRestarts: 1,
			wantLog: "resumed force-new-cluster on m1 from: flag written, m1 answers as a member of a 3-member cluster → checking the fence again"},
		"flag written, etcd a one-member cluster": {single: true,
			wantLog: "resumed force-new-cluster on m1 from: flag written, m1 answers as a one-member cluster at revision 50 → removing the flag"},
		"flag removed, etcd a one-member cluster": {single: true, flagRemoved: true,
			wantLog: "m1 answers as a one-member cluster at revision 50: done"},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, "", `
  - {id: fence, type: stop-service, on: [m2, m3], with: {disable: true}}
  - {id: fnc, type: force-new-cluster, on: m1, needs: [fence], with: {within: 1s}}
`)
			h.w.handler = func(host, cmd string) (string, int, error) { return "", 0, nil }
			runID := crashAt(t, h, "h1", "systemctl restart etcd")

			// The world after the kill: the flag is in the env file.
			var mu sync.Mutex
			flag := !tc.flagRemoved
			e := newFakeEtcd()
			old := []steps.Member{{ID: 1, Name: "m1"}, {ID: 2, Name: "m2"}, {ID: 3, Name: "m3"}}
			setSurvivor := func(single bool) {
				if single {
					e.set("http://10.0.0.1:2379", "healthy", steps.EndpointStatus{MemberID: 1, Leader: 1, Revision: 50})
					e.list = old[:1]
				} else {
					e.set("http://10.0.0.1:2379", "running", steps.EndpointStatus{MemberID: 1, Revision: 50})
					e.list = old
				}
			}
			setSurvivor(tc.single)
			h.w = &world{etcd: e, handler: func(host, cmd string) (string, int, error) {
				mu.Lock()
				defer mu.Unlock()
				switch {
				case strings.HasPrefix(cmd, "if ! grep -q -- '^ETCD_FORCE_NEW_CLUSTER='"):
					if flag {
						return "flag\n", 0, nil
					}
				case strings.Contains(cmd, "printf") && strings.Contains(cmd, "ETCD_FORCE_NEW_CLUSTER=true"):
					flag = true
				case strings.Contains(cmd, "ETCD_FORCE_NEW_CLUSTER") && strings.Contains(cmd, "mv "):
					flag = false
				case cmd == "systemctl restart etcd" && flag:
					setSurvivor(true)
				}
				return "", 0, nil
			}}
			res, err := h.resume(runID, h.opts())
			if err != nil {
				t.Fatalf("resume: %v\n%s", err, h.progress.String())
			}
			wantStatuses(t, res.State, map[string]string{"fnc@h1": runstate.StatusDone})
			fenced, restarts := 0, 0
			for _, c := range h.w.commands() {
				if strings.Contains(c, "/dev/tcp/") {
					fenced++
				}
				if strings.HasSuffix(c, ": systemctl restart etcd") {
					restarts++
				}
			}
			if restarts != tc.wantRestarts {
				t.Errorf("the survivor was restarted %d times, want %d: %v", restarts, tc.wantRestarts, h.w.commands())
			}
			if (fenced > 0) != tc.wantFence {
				t.Errorf("fence ran %d times, want it %v: %v", fenced, tc.wantFence, h.w.commands())
			}
			if flag {
				t.Error("the flag is still in the env file")
			}
			if !strings.Contains(h.progress.String(), tc.wantLog) {
				t.Errorf("progress lacks %q:\n%s", tc.wantLog, h.progress.String())
			}
		})
	}
}
