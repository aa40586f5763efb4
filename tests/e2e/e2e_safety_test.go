package e2e

// Issue 10's "done when" on the lab, one lab for the three (each leaves it
// healthy for the next):
//
//   - member-remove of a live member: an operator believes etcd2's host is
//     gone and shrinks the cluster to etcd1 and etcd3; etcd2 is alive. The
//     plan validates (nothing static can know), and apply refuses at
//     member-remove with the evidence, before any change: member list, data
//     dirs and revision as before.
//   - a reviewed plan applied after a further break: lost-host reviewed with
//     `plan --out`, then etcd3 stops; `apply FILE.plan` refuses with exit 3,
//     lists the drift, creates no run and changes nothing on any host. Once
//     etcd3 runs again (and the cluster took a write: the revision grew),
//     the same document applies and repairs the cluster.
//   - the evidence of a quorum-loss recovery: facts before (3 members, 2
//     not answering) and after (3 voters answering, HashKV equal at one
//     revision, checked against the members themselves), summary.md, and
//     `report -o` packs them with no secret in them.
//
//	go test -p 1 ./tests/e2e/ -run 'TestE2ESafety' -v

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework"
)

func TestE2ESafety(t *testing.T) {
	e := newE2E(t)
	t0 := time.Now()
	l := framework.UpLab(t, lab.Options{Members: 3, Version: "3.6"})
	for _, st := range []struct {
		name string
		f    func(*testing.T, *lab.Lab)
	}{
		{"live-member-remove-refused", e.liveMemberRemoveRefused},
		{"reviewed-plan-after-further-break", e.reviewedPlanAfterFurtherBreak},
		{"quorum-loss-evidence", e.quorumLossEvidence},
	} {
		if !t.Run(st.name, func(t *testing.T) { st.f(t, l) }) {
			t.Fatalf("after %s the lab may not be healthy: the later tests would prove nothing", st.name)
		}
	}
	t.Logf("TestE2ESafety: %.1fs", time.Since(t0).Seconds())
}

// removeGonePlan is an operator's plan for a member whose host died for
// good, when no replacement is ready: remove it and run on the two that
// are left. The inventory it runs with no longer lists the member.
const removeGonePlan = `version: 1
name: remove-gone-member
description: etcd2's host is gone for good; the cluster runs on etcd1 and etcd3 until a new host is ready.
steps:
  - id: quorum
    type: check-quorum
    on: [etcd1, etcd3]
    with: {expect: present}
  - id: remove-dead
    type: member-remove
    needs: [quorum]
    with: {name: etcd2, peerURL: "${vars.gonePeerURL}"}
  - id: healthy
    type: wait-healthy
    needs: [remove-dead]
  - id: same-data
    type: verify-data
    needs: [healthy]
`

// liveMemberRemoveRefused: the inventory says etcd2 is gone (it lists
// etcd1 and etcd3 only), etcd2 is alive. validate passes: no static rule
// can know; member-remove must refuse before any change.
func (e *e2e) liveMemberRemoveRefused(t *testing.T, l *lab.Lab) {
	verifyLab(t, l)
	gonePeer, _, err := l.MemberURLs("etcd2")
	if err != nil {
		t.Fatal(err)
	}
	inv := inventoryWithout(t, l, "etcd2", map[string]string{"gonePeerURL": gonePeer})
	plan := filepath.Join(t.TempDir(), "remove-gone-member.yaml")
	if err := os.WriteFile(plan, []byte(removeGonePlan), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.CLI(t, "validate", plan, "--inventory", inv); r.Code != 0 {
		t.Fatalf("the plan must pass validate (only the live cluster shows the mistake): %s", r)
	}

	listBefore := memberList(t, l, "", false)
	rev := framework.ClusterRevision(t, l)
	hashBefore := memberHashes(t, l, rev)
	before := framework.QuietEtcdStates(t, l)
	idxBefore := raftIndexes(t, l)
	stateDir := filepath.Join(t.TempDir(), "state")
	r := e.CLI(t, "apply", plan, "--inventory", inv, "--yes", "--state-dir", stateDir)
	t.Logf("apply with etcd2 alive: exit %d in %.1fs\n--- stdout (tail)\n%s\n--- stderr\n%s", r.Code, r.Wall.Seconds(), framework.TailLines(r.Stdout, 30), r.Stderr)
	if r.Code != 1 {
		t.Errorf("apply of a plan that removes a live member: exit %d, want 1", r.Code)
	}
	out := r.Stdout + r.Stderr
	for _, want := range []string{"refused:", "etcd2", "is alive", "evidence: etcd2 answers health at " + clientURLOf(t, l, "etcd2")} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not say %q", want)
		}
	}

	// nothing changed: every host's unit state and data dir (file by
	// file, sizes and mtimes, but for the raft log's and the backend's
	// mtimes: asking a member's health, as the refusal must, lists the
	// alarms, which etcd does through raft: one log entry, no data), the
	// member list (no conf change), the revision (no write) and HashKV
	framework.CompareEtcdStates(t, raftLogTimesMasked(before), raftLogTimesMasked(framework.EtcdStates(t, l)))
	listAfter := memberList(t, l, "", false)
	if !slices.Equal(listBefore, listAfter) {
		t.Errorf("member list changed:\nbefore %v\nafter  %v", listBefore, listAfter)
	}
	if got := framework.ClusterRevision(t, l); got != rev {
		t.Errorf("revision %d before the apply, %d after: something wrote", rev, got)
	}
	if hashAfter := memberHashes(t, l, rev); !maps.Equal(hashBefore, hashAfter) {
		t.Errorf("HashKV at revision %d: %v before the apply, %v after", rev, hashBefore, hashAfter)
	}
	idxAfter := raftIndexes(t, l)
	t.Logf("raft index before the apply %v, after %v (entries that change no key and no membership: health asks the alarm list through raft)", idxBefore, idxAfter)
	verifyLab(t, l)

	// the run says where and why, and did not retry a refusal
	runID := framework.RunIDOf(r.Stdout)
	if runID == "" {
		t.Fatalf("apply printed no run id")
	}
	st := e.StatusJSON(t, stateDir, runID)
	if st.Outcome != "failed" {
		t.Errorf("outcome %q, want failed", st.Outcome)
	}
	if h := st.Find("quorum", ""); h == nil || h.Status != "done" {
		t.Errorf("check-quorum: %+v, want done", h)
	}
	h := st.Find("remove-dead", "")
	switch {
	case h == nil:
		t.Errorf("no remove-dead in the run's state")
	case h.Status != "failed" || !strings.Contains(h.Error, "refused") || h.Attempts != 1:
		t.Errorf("remove-dead: status %s, attempts %d, error %q; want failed after 1 attempt, refused", h.Status, h.Attempts, h.Error)
	}
	if h := st.Find("healthy", ""); h == nil || h.Status == "done" || h.Status == "running" {
		t.Errorf("wait-healthy after the refusal: %+v, want not run", h)
	}
	var ev framework.EvidenceDoc
	framework.ReadEvidenceJSON(t, stateDir, runID, "evidence.json", &ev)
	if !slices.ContainsFunc(ev.Failures, func(f string) bool { return strings.HasPrefix(f, "remove-dead") && strings.Contains(f, "refused") }) {
		t.Errorf("evidence.json failures %q do not hold the refusal of remove-dead", ev.Failures)
	}
	t.Logf("refused before any change: member list %v, revision %d, data dirs and units unchanged; evidence.json failures: %q", listAfter, rev, ev.Failures)
}

// reviewedPlanAfterFurtherBreak: lost-host is reviewed, then etcd3 stops
// (the cluster loses quorum): the reviewed plan is refused with the drift
// and nothing changed; with etcd3 back (and a write since review) the same
// document applies.
func (e *e2e) reviewedPlanAfterFurtherBreak(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	if err := l.Break(ctx, "lost-host"); err != nil {
		t.Fatal(err)
	}
	inv := l.InventoryPath()
	dir := t.TempDir()
	planFile := filepath.Join(dir, "lost-host.plan")
	rv := e.CLI(t, "plan", planPath("lost-host"), "--inventory", inv, "--out", planFile)
	if rv.Code != 0 {
		t.Fatalf("plan --out: %s", rv)
	}
	t.Logf("plan --out in %.1fs:\n%s", rv.Wall.Seconds(), rv.Stderr)
	var doc struct {
		Kind   string `json:"kind"`
		DryRun string `json:"dryRun"`
	}
	b, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil || doc.Kind != "etcd-rescue/reviewed-plan" {
		t.Fatalf("the reviewed plan: kind %q, %v", doc.Kind, err)
	}
	if doc.DryRun == "" || doc.DryRun != rv.Stdout {
		t.Errorf("the document's dryRun is not the dry-run plan --out printed (%d and %d bytes)", len(doc.DryRun), len(rv.Stdout))
	}

	// the further break: etcd3 stops; etcd1 alone has no quorum
	h3 := memberHost(t, l, "etcd3")
	framework.HostRun(t, l, h3, "systemctl stop etcd")
	framework.Poll(t, "etcd1 without a leader", 200*time.Millisecond, func() bool {
		lead, err := framework.MemberLeader(t, l, "etcd1")
		return err == nil && lead == 0
	})
	runsBefore := e.runCount(t)
	listBefore := memberList(t, l, clientURLOf(t, l, "etcd1"), true)
	before := framework.QuietEtcdStates(t, l)
	stateDir := filepath.Join(dir, "state")
	r := e.CLI(t, "apply", planFile, "--yes", "--state-dir", stateDir)
	t.Logf("apply %s after etcd3 stopped: exit %d in %.1fs\n--- stdout\n%s\n--- stderr\n%s", filepath.Base(planFile), r.Code, r.Wall.Seconds(), r.Stdout, r.Stderr)
	if r.Code != 3 {
		t.Errorf("apply of the reviewed plan after a further break: exit %d, want 3", r.Code)
	}
	for _, want := range []string{"the cluster changed since the plan was reviewed", "nothing was changed", "etcd3 answered at review", "does not now", "no member knows a leader now", "--allow-drift"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("the refusal does not say %q", want)
		}
	}
	framework.CompareEtcdStates(t, before, framework.EtcdStates(t, l))
	if after := memberList(t, l, clientURLOf(t, l, "etcd1"), true); !slices.Equal(listBefore, after) {
		t.Errorf("member list (etcd1's) changed:\nbefore %v\nafter  %v", listBefore, after)
	}
	for _, d := range []string{stateDir, filepath.Join(dir, ".etcd-rescue")} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("the refused apply created %s", d)
		}
	}
	if n := e.runCount(t); n != runsBefore {
		t.Errorf("the run index lists %d runs after the refused apply, %d before", n, runsBefore)
	}
	if t.Failed() {
		t.FailNow()
	}

	// the world as reviewed again, but for a write: not drift
	framework.HostRun(t, l, h3, "systemctl start etcd")
	for _, m := range []string{"etcd1", "etcd3"} {
		framework.Poll(t, m+" with a leader", 200*time.Millisecond, func() bool {
			lead, err := framework.MemberLeader(t, l, m)
			return err == nil && lead != 0
		})
	}
	rev := framework.ClusterRevision(t, l)
	framework.PutKey(t, l, "/e2e/safety/after-review", "written after the review")
	rev2 := framework.ClusterRevision(t, l)
	if rev2 <= rev {
		t.Fatalf("the write did not grow the revision: %d, then %d", rev, rev2)
	}
	preStates := framework.DataDirs(t, l, lab.DataDir, "")
	r = e.CLI(t, "apply", planFile, "--yes", "--state-dir", stateDir)
	if r.Code != 0 {
		t.Fatalf("apply of the reviewed plan once etcd3 runs again: %s", r)
	}
	t.Logf("apply %s with etcd3 back (revision %d at review time's world, %d now): exit 0 in %.1fs; summary:\n%s",
		filepath.Base(planFile), rev, rev2, r.Wall.Seconds(), framework.SummaryOf(r.Stdout))
	if !strings.HasPrefix(r.Stdout, doc.DryRun) {
		t.Errorf("apply did not show the reviewed dry-run byte for byte first:\n%s", framework.TailLines(r.Stdout, 200))
	}
	if strings.Contains(r.Stdout, "DRIFT ACCEPTED") {
		t.Errorf("drift accepted without --allow-drift:\n%s", r.Stdout)
	}
	for _, line := range strings.Split(r.Stdout, "\n") {
		if strings.HasPrefix(line, "changed since review") || strings.HasPrefix(line, "the cluster is as it was") {
			t.Logf("apply says: %s", line)
		}
	}
	runID := framework.RunIDOf(r.Stdout)
	st := e.StatusJSON(t, stateDir, runID)
	checkRunDone(t, st)
	verifyLab(t, l)
	if _, ok := framework.GetKey(t, l, "/e2e/safety/after-review"); !ok {
		t.Errorf("the key written after the review is gone")
	}
	framework.CheckAsideDirs(t, l, st, preStates, "")
	checkNoForceNewCluster(t, l)
	evs := framework.ReadEvents(t, stateDir, runID)
	if !slices.ContainsFunc(evs, func(ev framework.RunEvent) bool {
		return ev.Type == "review" && strings.Contains(ev.Msg, "0 drift(s)")
	}) {
		t.Errorf("the journal has no review event with 0 drift(s)")
	}
	framework.Record(t, framework.Measurement{Test: t.Name(), Plan: "lost-host (reviewed)", Version: l.Version(), Members: len(l.Members()),
		Wall: r.Wall, Sessions: st.Sessions, Steps: framework.TimesOf(st), Summary: framework.SummaryOf(r.Stdout)})
}

// auditStep is appended to the quorum-loss example: it puts a secret var
// into a command (and its output), so that the evidence has something to
// redact.
const auditStep = `
  - id: audit
    type: exec
    on: etcd1
    needs: [same-data]
    with: {command: "echo recovered, audit token ${vars.auditToken}"}
`

// quorumLossEvidence: quorum loss, recovered with the force-new-cluster
// example; the evidence shows the member list before (3 members, 2 not
// answering) and after (3 voters answering, HashKV equal), and report
// packs it without the secret.
func (e *e2e) quorumLossEvidence(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	if err := l.Break(ctx, "quorum-loss"); err != nil {
		t.Fatal(err)
	}
	survivor := l.Members()[0].Name
	// the member list as the survivor sees it, asked directly
	listBroken := memberList(t, l, clientURLOf(t, l, survivor), true)
	secret := fmt.Sprintf("s3cr3t-%d", time.Now().UnixNano())
	inv := framework.InventoryWithVars(t, l, map[string]string{"auditToken": secret})
	src, err := os.ReadFile(filepath.Join(e.Repo, planPath("quorum-loss-force-new-cluster")))
	if err != nil {
		t.Fatal(err)
	}
	plan := filepath.Join(t.TempDir(), "quorum-loss-audited.yaml")
	if err := os.WriteFile(plan, append(bytes.TrimRight(src, "\n"), []byte("\n"+auditStep)...), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir, runID, r := e.applyPlan(t, plan, inv, "against the lab broken by quorum-loss")
	t.Logf("apply: exit 0 in %.1fs; summary:\n%s", r.Wall.Seconds(), framework.SummaryOf(r.Stdout))
	st := e.StatusJSON(t, stateDir, runID)
	checkRunDone(t, st)
	verifyLab(t, l)
	checkNoForceNewCluster(t, l)

	// the cluster as the members say it now, asked directly
	listNow := memberList(t, l, "", false)
	rev := framework.ClusterRevision(t, l)
	hashes := memberHashes(t, l, rev)

	evDir := framework.EvidenceDir(stateDir, runID)
	files := []string{"facts-before.json", "facts-after.json", "evidence.json", "summary.md", "journal.jsonl"}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(evDir, f)); err != nil {
			t.Errorf("evidence: %v", err)
		}
	}

	// before: the 3 members the survivor listed, 2 of them not answering
	var fb framework.EvidenceFacts
	framework.ReadEvidenceJSON(t, stateDir, runID, "facts-before.json", &fb)
	var answered, silent []string
	var listedBefore []string
	for _, m := range fb.Members {
		if m.API == "answered" {
			answered = append(answered, m.Name)
			if m.Name == survivor {
				listedBefore = listed(m.MemberList)
			}
		} else {
			silent = append(silent, m.Name+"="+m.API)
		}
	}
	if len(fb.Members) != 3 || len(answered) != 1 || answered[0] != survivor || len(silent) != 2 {
		t.Errorf("facts-before.json: answered %v, not answering %v; want %s alone answering, the other 2 not", answered, silent, survivor)
	}
	if !slices.Equal(listedBefore, listBroken) {
		t.Errorf("facts-before.json: %s listed %v, it listed %v when asked directly", survivor, listedBefore, listBroken)
	}

	// after: 3 voters, all answering, HashKV equal at one revision
	var fa framework.EvidenceFacts
	framework.ReadEvidenceJSON(t, stateDir, runID, "facts-after.json", &fa)
	var h0 *framework.HashKV
	for _, m := range fa.Members {
		if m.API != "answered" || m.HashKV == nil {
			t.Errorf("facts-after.json: %s api %q (%s), hashKV %v; want answered with a HashKV", m.Name, m.API, m.Error, m.HashKV)
			continue
		}
		if got := listed(m.MemberList); !slices.Equal(got, listNow) {
			t.Errorf("facts-after.json: %s listed %v, the cluster lists %v", m.Name, got, listNow)
		}
		if h0 == nil {
			h0 = m.HashKV
		} else if m.HashKV.Hash != h0.Hash || m.HashKV.Revision != h0.Revision {
			t.Errorf("facts-after.json: %s HashKV %08x at revision %d, %s's %08x at revision %d",
				m.Name, m.HashKV.Hash, m.HashKV.Revision, fa.Members[0].Name, h0.Hash, h0.Revision)
		}
		t.Logf("facts-after.json: %s answered, HashKV %08x at revision %d (compacted at %d)", m.Name, m.HashKV.Hash, m.HashKV.Revision, m.HashKV.CompactRevision)
		if m.HashKV.Revision == rev && m.HashKV.Hash != hashes[m.Name] {
			t.Errorf("facts-after.json: %s HashKV %08x at revision %d; asked directly it is %08x", m.Name, m.HashKV.Hash, rev, hashes[m.Name])
		}
	}
	if len(fa.Members) != 3 {
		t.Errorf("facts-after.json has %d members, want 3", len(fa.Members))
	}
	for _, x := range listNow {
		if strings.HasSuffix(x, " learner") {
			t.Errorf("after the recovery %s is still a learner", x)
		}
	}

	// evidence.json: the same, summarised
	var ev framework.EvidenceDoc
	framework.ReadEvidenceJSON(t, stateDir, runID, "evidence.json", &ev)
	switch {
	case ev.Kind != "etcd-rescue/evidence" || ev.Version != 1 || ev.RunID != runID || ev.Outcome != "done":
		t.Errorf("evidence.json: kind %q version %d run %q outcome %q", ev.Kind, ev.Version, ev.RunID, ev.Outcome)
	case ev.Before == nil || ev.After == nil:
		t.Errorf("evidence.json: before %v, after %v", ev.Before != nil, ev.After != nil)
	default:
		if got := listed(ev.Before.Members); !slices.Equal(got, listBroken) {
			t.Errorf("evidence.json before.members %v, want %v", got, listBroken)
		}
		if got := listed(ev.After.Members); !slices.Equal(got, listNow) {
			t.Errorf("evidence.json after.members %v, want %v", got, listNow)
		}
		if ev.After.HashKV != "equal" {
			t.Errorf("evidence.json after.hashKV %q, want equal", ev.After.HashKV)
		}
		n := 0
		for _, en := range ev.Before.Endpoints {
			if en.API == "answered" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("evidence.json before: %d endpoints answered, want 1 (%s)", n, survivor)
		}
		// the survivor keeps its id; the others were added again
		if id := idOf(listBroken, survivor); id == "" || id != idOf(listNow, survivor) {
			t.Errorf("survivor %s: id %q before, %q after", survivor, id, idOf(listNow, survivor))
		}
	}
	if !slices.ContainsFunc(ev.Steps, func(s framework.EvidenceStep) bool {
		return s.Type == "force-new-cluster" && s.Status == "done"
	}) {
		t.Errorf("evidence.json steps have no force-new-cluster done: %+v", ev.Steps)
	}

	// summary.md names them, and report prints it
	sum, err := os.ReadFile(filepath.Join(evDir, "summary.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range append(append([]string{"members before:", "members after:", "HashKV after:  equal"}, listBroken...), listNow...) {
		x = strings.TrimSuffix(x, " learner")
		if !strings.Contains(string(sum), x) {
			t.Errorf("summary.md does not mention %q", x)
		}
	}
	t.Logf("summary.md:\n%s", sum)
	rp := e.CLI(t, "report", runID, "--state-dir", stateDir)
	if rp.Code != 0 || rp.Stdout != string(sum) {
		t.Errorf("report %s: exit %d, prints summary.md: %v\n%s", runID, rp.Code, rp.Stdout == string(sum), rp)
	}

	// the bundle: state.json and every evidence file, no secret anywhere
	bundle := filepath.Join(t.TempDir(), "b.tar.gz")
	rb := e.CLI(t, "report", runID, "--state-dir", stateDir, "-o", bundle)
	if rb.Code != 0 {
		t.Fatalf("report -o: %s", rb)
	}
	tarFiles := framework.TarGzFiles(t, bundle)
	var names []string
	for n := range tarFiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, f := range append([]string{"state.json"}, prefixed("evidence/", files)...) {
		if _, ok := tarFiles[runID+"/"+f]; !ok {
			t.Errorf("the bundle lacks %s/%s (it holds %v)", runID, f, names)
		}
	}
	if want, _ := os.ReadFile(filepath.Join(evDir, "evidence.json")); !bytes.Equal(tarFiles[runID+"/evidence/evidence.json"], want) {
		t.Errorf("the bundle's evidence.json differs from the run's")
	}
	redacted := 0
	for n, b := range tarFiles {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("SECRET LEAKED: the bundle's %s holds the secret var's value", n)
		}
		redacted += bytes.Count(b, []byte("<redacted>"))
	}
	if redacted == 0 {
		t.Errorf("no <redacted> in the bundle: the audit step (which uses the secret) left no trace, so the check above proves nothing")
	}
	// nor anywhere in the state dir, nor in what apply printed
	_ = filepath.WalkDir(stateDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
				t.Errorf("SECRET LEAKED: %s holds the secret var's value", p)
			}
		}
		return nil
	})
	if strings.Contains(r.Stdout+r.Stderr+rp.Stdout, secret) {
		t.Errorf("SECRET LEAKED: apply's or report's output holds the secret var's value")
	}
	t.Logf("bundle %s: %v; <redacted> %d times, the secret nowhere", filepath.Base(bundle), names, redacted)
	framework.Record(t, framework.Measurement{Test: t.Name(), Plan: "quorum-loss-force-new-cluster + audit", Version: l.Version(), Members: len(l.Members()),
		Wall: r.Wall, Sessions: st.Sessions, Steps: framework.TimesOf(st), Summary: framework.SummaryOf(r.Stdout)})
}

// --- helpers -------------------------------------------------------------

// inventoryWithout writes a copy of the lab's inventory without member
// and its host, with vars added: the cluster as an operator believes it
// to be after the member is gone.
func inventoryWithout(t *testing.T, l *lab.Lab, member string, vars map[string]string) string {
	t.Helper()
	return framework.EditInventory(t, l, vars, func(inv map[string]any) {
		cl, _ := inv["cluster"].(map[string]any)
		ms, _ := cl["members"].([]any)
		hosts, _ := inv["hosts"].(map[string]any)
		if cl == nil || ms == nil || hosts == nil {
			t.Fatalf("the lab inventory has no cluster.members or hosts: %v", inv)
		}
		var keep []any
		host := ""
		for _, m := range ms {
			if mm, _ := m.(map[string]any); mm != nil && mm["name"] == member {
				host, _ = mm["host"].(string)
				continue
			}
			keep = append(keep, m)
		}
		if host == "" {
			t.Fatalf("no member %s in the lab inventory", member)
		}
		cl["members"] = keep
		delete(hosts, host)
	})
}

func clientURLOf(t *testing.T, l *lab.Lab, member string) string {
	t.Helper()
	_, url, err := l.MemberURLs(member)
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// memberList is the cluster's member list, each as "name id" (+"
// learner"), sorted: from endpoint alone if given, serializable if asked
// (it answers without quorum).
func memberList(t *testing.T, l *lab.Lab, endpoint string, serializable bool) []string {
	t.Helper()
	cli, err := l.Client()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	if endpoint != "" {
		cli.SetEndpoints(endpoint)
	}
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cli.MemberList(ctx, opts...)
	if err != nil {
		t.Fatalf("member list (endpoint %q, serializable %v): %v", endpoint, serializable, err)
	}
	var out []string
	for _, m := range r.Members {
		s := fmt.Sprintf("%s %x", m.Name, m.ID)
		if m.IsLearner {
			s += " learner"
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// listed is a facts member list in memberList's form.
func listed(ms []framework.ListedMember) []string {
	var out []string
	for _, m := range ms {
		s := m.Name + " " + m.ID
		if m.IsLearner {
			s += " learner"
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func idOf(list []string, name string) string {
	for _, x := range list {
		if f := strings.Fields(x); len(f) >= 2 && f[0] == name {
			return f[1]
		}
	}
	return ""
}

// memberHashes is every member's HashKV at rev, asked directly.
func memberHashes(t *testing.T, l *lab.Lab, rev int64) map[string]uint32 {
	t.Helper()
	cli, err := l.Client()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	out := map[string]uint32{}
	var first string
	for _, m := range l.Members() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		h, err := cli.HashKV(ctx, clientURLOf(t, l, m.Name), rev)
		cancel()
		if err != nil {
			t.Fatalf("HashKV of %s at revision %d: %v", m.Name, rev, err)
		}
		out[m.Name] = h.Hash
		if first == "" {
			first = m.Name
		} else if h.Hash != out[first] {
			t.Errorf("asked directly, HashKV at revision %d differs: %s %08x, %s %08x", rev, m.Name, h.Hash, first, out[first])
		}
	}
	t.Logf("HashKV at revision %d, asked directly: %v", rev, out)
	return out
}

// raftLogTimesMasked drops the mtimes of the raft log (member/wal/*.wal)
// and of the backend (member/snap/db) from EtcdStates listings: entries
// that change no key and no membership (an alarm list, which etcd runs
// through raft) touch them. Names and sizes stay compared.
func raftLogTimesMasked(states map[string]string) map[string]string {
	out := map[string]string{}
	for h, s := range states {
		lines := strings.Split(s, "\n")
		for i, line := range lines {
			f := strings.Fields(line)
			if len(f) == 4 && f[0] == "f" && (strings.HasSuffix(f[1], ".wal") && strings.Contains(f[1], "/member/wal/") || strings.HasSuffix(f[1], "/member/snap/db")) {
				lines[i] = strings.Join(f[:3], " ") + " (mtime not compared)"
			}
		}
		out[h] = strings.Join(lines, "\n")
	}
	return out
}

// raftIndexes is every member's raft index (Status), asked directly.
func raftIndexes(t *testing.T, l *lab.Lab) map[string]uint64 {
	t.Helper()
	cli, err := l.Client()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	out := map[string]uint64{}
	for _, m := range l.Members() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, clientURLOf(t, l, m.Name))
		cancel()
		if err != nil {
			t.Fatalf("status of %s: %v", m.Name, err)
		}
		out[m.Name] = st.RaftIndex
	}
	return out
}

// runCount is the number of runs in the run index.
func (e *e2e) runCount(t *testing.T) int {
	t.Helper()
	r := e.CLI(t, "runs", "-o", "json")
	if r.Code != 0 {
		t.Fatalf("runs: %s", r)
	}
	var runs []json.RawMessage
	if err := json.Unmarshal([]byte(r.Stdout), &runs); err != nil {
		t.Fatalf("runs -o json: %v\n%s", err, r.Stdout)
	}
	return len(runs)
}

func prefixed(p string, xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = p + x
	}
	return out
}
