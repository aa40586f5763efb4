package e2e

// Fleet backups for real: one command, examples/backup.yaml on three
// inventories (apply --inventory A --inventory B --inventory C):
//
//   - lab: the lab's inventory;
//   - lab-gone: a copy whose hosts' SSH port is closed (unreachable);
//   - lab-copy: a copy under another cluster name, on the same hosts.
//
// The two reachable clusters are backed up (a verified snapshot each, in
// their own backup dir, each run done in its own state dir DIR/CLUSTER),
// the unreachable one is refused before anything ran, the exit code is 6
// and the summary table names each cluster with its result.
//
// The run lock on the hosts (/run/etcd-rescue.lock, internal/hostlock) is
// per host, not per cluster name: lab and lab-copy are one cluster under
// two names, so two runs of them at once collide on node1's lock (the
// second is refused, exit 3, as for any two runs on one host). The main
// run therefore uses --parallel 1; a second command runs both at once
// (--parallel 2) and checks that a collision, if any, is that refusal and
// nothing else.
//
//	go test ./tests/e2e/ -run TestE2EFleet -v

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework"
)

func TestE2EFleet(t *testing.T) {
	e := newE2E(t)
	l := framework.UpLab(t, lab.Options{Members: 3, Version: "3.6"})
	verifyLab(t, l)
	base := t.TempDir()
	backups := func(name string) string { return filepath.Join(base, "backups-"+name) }
	rename := func(name string, closePorts bool) func(inv map[string]any) {
		return func(inv map[string]any) {
			cl, _ := inv["cluster"].(map[string]any)
			hosts, _ := inv["hosts"].(map[string]any)
			if cl == nil || hosts == nil {
				t.Fatalf("the lab inventory has no cluster or hosts: %v", inv)
			}
			cl["name"] = name
			if closePorts {
				for _, h := range hosts {
					if hm, _ := h.(map[string]any); hm != nil {
						hm["port"] = 1 // nothing listens there: connection refused
					}
				}
			}
		}
	}
	invLab := framework.InventoryWithVars(t, l, map[string]string{"backupDir": backups("lab")})
	invGone := framework.EditInventory(t, l, map[string]string{"backupDir": backups("lab-gone")}, rename("lab-gone", true))
	invCopy := framework.EditInventory(t, l, map[string]string{"backupDir": backups("lab-copy")}, rename("lab-copy", false))
	plan := planPath("backup")
	state := filepath.Join(base, "state")

	rev := framework.ClusterRevision(t, l)
	r := e.CLI(t, "apply", plan, "--yes", "--parallel", "1", "--state-dir", state,
		"--inventory", invLab, "--inventory", invGone, "--inventory", invCopy)
	t.Logf("fleet apply: exit %d in %.1fs\n%s", r.Code, r.Wall.Seconds(), framework.TailLines(r.Stdout, 8))
	if r.Code != 6 {
		t.Fatalf("fleet apply: exit %d, want 6 (one cluster unreachable)\n%s", r.Code, r)
	}
	rows := fleetRows(t, r.Stdout)
	want := []struct{ cluster, inv, result string }{{"lab", invLab, "done"}, {"lab-gone", invGone, "unreachable"}, {"lab-copy", invCopy, "done"}}
	if len(rows) != len(want) {
		t.Fatalf("summary rows %q, want %d", rows, len(want))
	}
	for i, w := range want {
		row := rows[i]
		if row[0] != w.cluster || row[1] != w.inv || row[3] != w.result {
			t.Errorf("row %d: %q, want %s %s ... %s", i, row, w.cluster, w.inv, w.result)
		}
	}
	if d := strings.Join(rows[1][5:], " "); !strings.Contains(d, "not proven reachable") {
		t.Errorf("the unreachable row's detail %q does not say why", d)
	}
	if !strings.Contains(r.Stderr, "[lab-gone] etcd-rescue: error: ") || !strings.Contains(r.Stderr, "fleet run: 1 of 3 clusters did not succeed (lab-gone unreachable)") {
		t.Errorf("stderr:\n%s", r.Stderr)
	}
	for _, i := range []int{0, 2} {
		name, runID := rows[i][0], rows[i][2]
		st := e.StatusJSON(t, filepath.Join(state, name), runID)
		checkRunDone(t, st)
		file := filepath.Join(backups(name), "etcd-"+runID+".db")
		sum := framework.CheckSnapshotFile(t, file)
		srev, keys := framework.SnapshotStatus(t, l, file)
		if srev < rev {
			t.Errorf("%s: backup %s at revision %d, older than the cluster's %d before the fleet run", name, file, srev, rev)
		}
		t.Logf("%s: run %s, backup %s: sha256 %.16s, revision %d, %d keys", name, runID, filepath.Base(file), sum, srev, keys)
	}
	if ents, err := os.ReadDir(backups("lab-gone")); err == nil && len(ents) > 0 {
		t.Errorf("the unreachable cluster's backup dir holds %d file(s)", len(ents))
	}
	if _, err := os.Stat(filepath.Join(state, "lab-gone", "runs")); err == nil {
		if runs, _ := os.ReadDir(filepath.Join(state, "lab-gone", "runs")); len(runs) > 0 {
			t.Errorf("the unreachable cluster has a run: %v (a refusal leaves nothing behind)", runs)
		}
	}

	// Both names of the one cluster at once: a collision on the host lock
	// is refused, never half-run; whoever took the lock is done.
	state2 := filepath.Join(base, "state2")
	r = e.CLI(t, "apply", plan, "--yes", "--parallel", "2", "--state-dir", state2, "--inventory", invLab, "--inventory", invCopy)
	rows = fleetRows(t, r.Stdout)
	done := 0
	for _, row := range rows {
		switch row[3] {
		case "done":
			done++
		case "refused":
			if d := strings.Join(row[5:], " "); !strings.Contains(d, "is locked by run") {
				t.Errorf("%s refused, but not for the host lock: %q", row[0], d)
			}
		default:
			t.Errorf("%s: %s, want done or refused by the host lock (%q)", row[0], row[3], row)
		}
	}
	switch {
	case done == 2 && r.Code != 0, done < 2 && r.Code != 6, done == 0:
		t.Errorf("both at once: %d done, exit %d\n%s", done, r.Code, r)
	}
	t.Logf("lab and lab-copy at once (--parallel 2): %d done, exit %d\n%s", done, r.Code, framework.TailLines(r.Stdout, 3))
	verifyLab(t, l)
}

// fleetRows are the rows of a fleet run's summary table, split on
// whitespace: CLUSTER INVENTORY RUN RESULT TIME DETAIL... ("not started"
// is never expected here).
func fleetRows(t *testing.T, stdout string) [][]string {
	t.Helper()
	_, table, ok := strings.Cut(stdout, "\nCLUSTER ")
	if !ok {
		t.Fatalf("no summary table in:\n%s", stdout)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 || !regexp.MustCompile(`^\d{8}T\d{6}Z-[0-9a-f]+$|^-$`).MatchString(f[2]) {
			t.Fatalf("summary row %q", line)
		}
		rows = append(rows, f)
	}
	return rows
}
