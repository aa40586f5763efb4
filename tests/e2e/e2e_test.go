package e2e

// End-to-end tests: every example plan, run by the real etcd-rescue binary
// over real SSH against a lab (real sshd, real systemd, real etcd 3.5, 3.6
// and 3.7) broken the way the plan expects. Afterwards the cluster is checked
// from outside etcd-rescue: lab.Verify (every member healthy, one leader,
// member list equal to the inventory's members, every fingerprinted key
// intact), the revision through the client API after a restore, the run's
// status, and the moved-aside data dirs.
//
//	go test ./tests/e2e/ -run 'TestE2E$' -v            # all scenarios, every version
//	go test ./tests/e2e/ -run 'TestE2E$/etcd3.6/lost-host' -v
//
// Needs root (make test installs the lab's prerequisites). E2E_MEASUREMENTS=FILE
// appends every run's timings there as JSON lines; E2E_KEEP_LAB=1 leaves a
// failed test's lab up for a look.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework"
)

// etcdVersions are the minor versions every scenario runs on.
var etcdVersions = []string{"3.5", "3.6", "3.7"}

// scenario is one example plan and the damage it repairs.
type scenario struct {
	plan    string // examples/<plan>.yaml
	brk     string // lab break before the apply; "" for none
	members int
	restore bool // restores from a snapshot: the revision must end above the pre-disaster one
}

func TestE2E(t *testing.T) {
	e := newE2E(t)
	for _, v := range etcdVersions {
		t.Run("etcd"+v, func(t *testing.T) {
			// One lab for the backup (which needs a healthy cluster and
			// damages nothing) and then the ip-change.
			t.Run("backup+ip-change", func(t *testing.T) {
				l := framework.UpLab(t, lab.Options{Members: 3, Version: v})
				e.backup(t, l)
				e.recoverLab(t, l, scenario{plan: "ip-change", brk: "ip-change", members: 3})
			})
			// A break is destructive: one scenario per lab from here on.
			scs := []scenario{
				{plan: "lost-host", brk: "lost-host", members: 3},
				{plan: "quorum-loss-force-new-cluster", brk: "quorum-loss", members: 3},
				// 3 of 5 lost; the second survivor must be fenced too.
				{plan: "quorum-loss-five-members", brk: "quorum-loss", members: 5},
				{plan: "restore-all-from-snapshot", brk: "total-loss", members: 3, restore: true},
				{plan: "single-node-restore", brk: "total-loss", members: 1, restore: true},
			}
			if v == "3.6" {
				// The 3-member plans, unchanged, on 5 members: the lab's
				// inventory says which cluster they repair.
				scs = append(scs,
					scenario{plan: "ip-change", brk: "ip-change", members: 5},
					scenario{plan: "lost-host", brk: "lost-host", members: 5},
					scenario{plan: "restore-all-from-snapshot", brk: "total-loss", members: 5, restore: true})
			}
			for _, sc := range scs {
				name := sc.plan
				if sc.members == 5 && sc.plan != "quorum-loss-five-members" {
					name += "/5-members"
				}
				t.Run(name, func(t *testing.T) {
					l := framework.UpLab(t, lab.Options{Members: sc.members, Version: v})
					e.recoverLab(t, l, sc)
				})
			}
		})
	}
}

func planPath(name string) string { return filepath.Join("examples", name+".yaml") }

// recoverLab breaks l as sc says, applies sc's plan with the lab's
// inventory and checks the outcome. It returns the run's final state and
// the run's state dir (runs/<id>/events.jsonl is there).
func (e *e2e) recoverLab(t *testing.T, l *lab.Lab, sc scenario) (*framework.RunState, string) {
	t.Helper()
	ctx := context.Background()
	preRev := framework.ClusterRevision(t, l)
	if sc.brk != "" {
		t0 := time.Now()
		if err := l.Break(ctx, sc.brk); err != nil {
			t.Fatalf("lab break %s: %v", sc.brk, err)
		}
		t.Logf("lab break %s in %.1fs (revision before it: %d)", sc.brk, time.Since(t0).Seconds(), preRev)
		// The damage must be visible, or the test below proves nothing.
		if err := l.Verify(ctx); err == nil {
			t.Fatalf("after lab break %s, lab verify still passes: the break did no damage", sc.brk)
		} else {
			t.Logf("as expected after the break: %v", err)
		}
		// and diagnose names it (every break's name is its situation)
		e.diagnoseBroken(t, l.InventoryPath(), sc.brk)
	}
	before := framework.DataDirs(t, l, lab.DataDir, "")
	plan := planPath(sc.plan)
	stateDir, runID, r := e.applyPlan(t, plan, l.InventoryPath(), fmt.Sprintf("against the lab broken by %q", sc.brk))
	t.Logf("apply %s: exit 0 in %.1fs; summary:\n%s", sc.plan, r.Wall.Seconds(), framework.SummaryOf(r.Stdout))
	st := e.StatusJSON(t, stateDir, runID)
	checkRunDone(t, st)
	verifyLab(t, l)
	if sc.restore {
		checkRevisionAbove(t, l, preRev)
	}
	framework.CheckAsideDirs(t, l, st, before, "")
	checkNoForceNewCluster(t, l)
	logLiveChecks(t, stateDir, runID)
	framework.Record(t, framework.Measurement{Test: t.Name(), Plan: sc.plan, Version: l.Version(), Members: len(l.Members()),
		Wall: r.Wall, Sessions: st.Sessions, Steps: framework.TimesOf(st), Summary: framework.SummaryOf(r.Stdout)})
	return st, stateDir
}

// applyPlan validates plan with inventory inv ("": the plan's own, as
// `new` writes it), prints its dry-run and applies it with --yes into a
// fresh state dir; a failure stops the test with the output, the dry-run
// and the tail of the run's events. what says what the apply ran against.
func (e *e2e) applyPlan(t *testing.T, plan, inv, what string) (stateDir, runID string, r framework.Result) {
	t.Helper()
	var invArgs []string
	if inv != "" {
		invArgs = []string{"--inventory", inv}
	}
	if r := e.CLI(t, append([]string{"validate", plan}, invArgs...)...); r.Code != 0 {
		t.Fatalf("validate %s with inventory %q: %s", plan, inv, r)
	}
	dry := e.CLI(t, append([]string{"plan", plan}, invArgs...)...)
	if dry.Code != 0 {
		t.Fatalf("plan (dry-run) %s with inventory %q: %s", plan, inv, dry)
	}
	stateDir = filepath.Join(t.TempDir(), "state")
	r = e.CLI(t, append([]string{"apply", plan}, append(invArgs, "--yes", "--state-dir", stateDir)...)...)
	runID = framework.RunIDOf(r.Stdout)
	if r.Code != 0 {
		msg := fmt.Sprintf("apply %s failed %s:\n%s\n--- the dry-run it ran:\n%s", plan, what, r, dry.Stdout)
		if runID != "" {
			if ev, err := os.ReadFile(filepath.Join(stateDir, "runs", runID, "events.jsonl")); err == nil {
				msg += "\n--- events.jsonl (tail):\n" + framework.TailLines(string(ev), 40)
			}
		}
		t.Fatal(msg)
	}
	if runID == "" {
		t.Fatalf("apply printed no run id:\n%s", r.Stdout)
	}
	return stateDir, runID, r
}

// checkRunDone: outcome done, every step-host done, the lock released.
func checkRunDone(t *testing.T, st *framework.RunState) {
	t.Helper()
	if st.Outcome != "done" {
		t.Errorf("status: outcome %q, want done", st.Outcome)
	}
	if nd := st.NotDone(); len(nd) > 0 {
		t.Errorf("status: step-hosts not done: %s", strings.Join(nd, ", "))
	}
	if st.Lock == nil || st.Lock.Held {
		t.Errorf("status: the run lock is still held (or not reported) after the run ended")
	}
	n := 0
	for _, s := range st.Steps {
		n += len(s.Hosts)
	}
	if n == 0 {
		t.Errorf("status: the run has no steps")
	}
}

// verifyLab: lab.Verify must pass: every inventory member answers, one
// leader, the member list equals the inventory, every key intact.
func verifyLab(t *testing.T, l *lab.Lab) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := l.Verify(ctx); err != nil {
		t.Errorf("lab verify after the recovery: %v", err)
		return
	}
	fp, _ := l.Fingerprint()
	if fp == nil || fp.Keys == 0 {
		t.Errorf("lab verify passed but no keys were fingerprinted: it checked no data")
		return
	}
	t.Logf("lab verify: %d members healthy, member list = inventory, all %d fingerprinted keys intact", len(l.Members()), fp.Keys)
}

// checkRevisionAbove: after a restore with bumpRevision: auto, the
// cluster's revision (and every member's) is above the pre-disaster one,
// so watchers never see it go backwards.
func checkRevisionAbove(t *testing.T, l *lab.Lab, pre int64) {
	t.Helper()
	rev := framework.ClusterRevision(t, l)
	if rev <= pre {
		t.Errorf("revision after the restore is %d, not above the pre-disaster revision %d (bumpRevision: auto)", rev, pre)
	}
	for name, r := range framework.MemberRevisions(t, l) {
		if r <= pre {
			t.Errorf("member %s is at revision %d, not above the pre-disaster revision %d", name, r, pre)
		}
	}
	t.Logf("revision: %d before the disaster, %d after the restore", pre, rev)
}

// backup runs examples/backup.yaml against the healthy lab, with the
// backups going to a temp dir, and checks the saved snapshot on its own.
func (e *e2e) backup(t *testing.T, l *lab.Lab) {
	t.Helper()
	verifyLab(t, l)
	dir := filepath.Join(t.TempDir(), "backups")
	inv := framework.InventoryWithVars(t, l, map[string]string{"backupDir": dir})
	plan := planPath("backup")
	dry := e.CLI(t, "plan", plan, "--inventory", inv)
	if dry.Code != 0 {
		t.Fatalf("plan backup: %s", dry)
	}
	rev := framework.ClusterRevision(t, l)
	stateDir := filepath.Join(t.TempDir(), "state")
	r := e.CLI(t, "apply", plan, "--inventory", inv, "--yes", "--state-dir", stateDir)
	if r.Code != 0 {
		t.Fatalf("apply backup on a healthy lab:\n%s\n--- dry-run:\n%s", r, dry.Stdout)
	}
	runID := framework.RunIDOf(r.Stdout)
	st := e.StatusJSON(t, stateDir, runID)
	checkRunDone(t, st)
	file := filepath.Join(dir, "etcd-"+runID+".db")
	sum := framework.CheckSnapshotFile(t, file)
	srev, keys := framework.SnapshotStatus(t, l, file)
	fp, _ := l.Fingerprint()
	switch {
	case srev < rev:
		t.Errorf("backup %s is at revision %d, older than the cluster's %d before the backup", file, srev, rev)
	case fp != nil && keys < int64(fp.Keys):
		t.Errorf("backup %s holds %d keys, fewer than the %d fingerprinted", file, keys, fp.Keys)
	}
	t.Logf("backup %s: sha256 %.16s, trailer valid, .sha256 matches, revision %d, %d keys", file, sum, srev, keys)
	// nothing else in the backup dir but the snapshot and its .sha256
	ents, _ := os.ReadDir(dir)
	for _, en := range ents {
		if n := en.Name(); n != filepath.Base(file) && n != filepath.Base(file)+".sha256" {
			t.Errorf("backup dir holds %s too (a leftover .part?)", n)
		}
	}
	verifyLab(t, l)
	framework.Record(t, framework.Measurement{Test: t.Name(), Plan: "backup", Version: l.Version(), Members: len(l.Members()),
		Wall: r.Wall, Sessions: st.Sessions, Steps: framework.TimesOf(st), Summary: framework.SummaryOf(r.Stdout)})
}

// checkNoForceNewCluster: no member is left configured with
// --force-new-cluster (a later restart would reset the membership again,
// etcd #13848).
func checkNoForceNewCluster(t *testing.T, l *lab.Lab) {
	t.Helper()
	file, pattern := lab.EnvFile, "^ETCD_FORCE_NEW_CLUSTER"
	if l.StaticPod() {
		file, pattern = lab.EtcdManifest, "force-new-cluster"
	}
	for _, h := range l.Hosts() {
		out := framework.HostRun(t, l, h.Name, "grep -s "+pattern+" "+file+"; true")
		if strings.TrimSpace(out) != "" {
			t.Errorf("%s: %s still sets %s after the recovery", h.Name, file, strings.TrimSpace(out))
		}
	}
}

// logLiveChecks logs what the destructive steps of the run found in the
// live cluster right before they acted (their "before ...:" and
// "concluded: ..." journal lines): force-new-cluster's comparison of the
// survivor with the other members, member-remove's look at the member.
func logLiveChecks(t *testing.T, stateDir, runID string) {
	t.Helper()
	var lines []string
	for _, ev := range framework.ReadEvents(t, stateDir, runID) {
		if strings.HasPrefix(ev.Msg, "before ") || strings.HasPrefix(ev.Msg, "concluded: ") {
			lines = append(lines, fmt.Sprintf("%s@%s: %s", ev.Step, ev.Host, ev.Msg))
		}
	}
	if len(lines) > 0 {
		t.Logf("live checks of the destructive steps:\n%s", strings.Join(lines, "\n"))
	}
}
