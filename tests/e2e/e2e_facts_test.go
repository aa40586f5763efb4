package e2e

// The 3 a.m. path of issue 9 on the lab, with nothing edited by hand: a
// break; `diagnose` names the situation with its evidence and prints the
// `new` command; that command writes the plan from the live cluster
// (--from-facts); the plan validates; `apply --yes` repairs the cluster;
// lab verify passes and diagnose says healthy again. Also `facts` against
// 5 members with 3 hosts cut off: it returns in about one timeout and
// changes nothing anywhere.
//
//	go test ./tests/e2e/ -run 'TestE2EFacts' -v
//	go test ./tests/e2e/ -run 'TestE2EFacts/etcd3.6-5members/survivor-behind' -v

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework"
)

// factsVersions: the versions of issue 9's "done when".
var factsVersions = []string{"3.5", "3.6"}

// factsTimeout is the per-host timeout the facts tests pass.
const factsTimeout = 5 * time.Second

func TestE2EFacts(t *testing.T) {
	e := newE2E(t)
	t0 := time.Now()
	for _, v := range factsVersions {
		t.Run("etcd"+v, func(t *testing.T) {
			// One lab takes the four breaks in a row: each recovery
			// leaves it healthy (lab verify, diagnose), and the next
			// break starts from there (ip-change moved h3, lost-host
			// replaced h2 by h4: the later plans see that cluster).
			l := framework.UpLab(t, lab.Options{Members: 3, Version: v})
			e.diagnoseHealthy(t, l.InventoryPath())
			e.breaksInARow(t, l, "ip-change", "lost-host", "quorum-loss", "total-loss")
		})
	}
	t.Run("etcd3.6-5members", func(t *testing.T) {
		l := framework.UpLab(t, lab.Options{Members: 5, Version: "3.6"})
		if !t.Run("facts-3-isolated", func(t *testing.T) { e.factsIsolated(t, l, []string{"h2", "h4", "h5"}) }) {
			t.FailNow()
		}
		if !t.Run("survivors-not-last", func(t *testing.T) { e.survivorsNotLast(t, l) }) {
			t.FailNow()
		}
		if !t.Run("survivor-behind", func(t *testing.T) { e.survivorBehind(t, l) }) {
			t.FailNow()
		}
		// the lab's other breaks on 5 members (its quorum-loss is the
		// 3-member one's, above, and the two variants before)
		e.breaksInARow(t, l, "ip-change", "lost-host", "total-loss")
	})
	t.Logf("TestE2EFacts: %.1fs", time.Since(t0).Seconds())
}

// breaksInARow breaks l as each of brks says, one after the other, and
// rescues it from facts each time: each recovery leaves the lab healthy
// (lab verify, diagnose), and the next break starts from there.
func (e *e2e) breaksInARow(t *testing.T, l *lab.Lab, brks ...string) {
	t.Helper()
	for _, brk := range brks {
		ok := t.Run(brk, func(t *testing.T) {
			e.rescueFromFacts(t, l, func(ctx context.Context) error { return l.Break(ctx, brk) }, expectFor(t, l, brk))
		})
		if !ok {
			t.Fatalf("after %s the lab may still be broken: the later breaks would prove nothing", brk)
		}
	}
}

// expect is what diagnose must say after a break, and what else the test
// checks of the diagnosis, the plan `new` wrote, and the repaired cluster.
type expect struct {
	situation string // diagnosis situation
	scenario  string // recommended scenario (`new SCENARIO`)
	restore   bool   // a restore: the revision must end above the pre-disaster one
	diagnosis func(t *testing.T, d *framework.DiagnosisDoc)
	plan      func(t *testing.T, d *framework.DiagnosisDoc, steps []framework.PlanStep)
	after     func(t *testing.T) // after lab verify
	newExtra  []string           // added to diagnose's `new` command (e.g. --ca-cert, --ca-key)
}

// expectFor is the expectation of the lab's own break brk on l.
func expectFor(t *testing.T, l *lab.Lab, brk string) expect {
	switch brk {
	case "ip-change":
		return expect{situation: "ip-change", scenario: "ip-change", diagnosis: func(t *testing.T, d *framework.DiagnosisDoc) {
			newPeer, _, _ := l.MemberURLs("etcd3")
			checkMemberChoice(t, d, "etcd3", framework.InventoryVar(t, l, "oldPeerURL"), newPeer)
		}}
	case "lost-host":
		return expect{situation: "lost-host", scenario: "lost-host", diagnosis: func(t *testing.T, d *framework.DiagnosisDoc) {
			newPeer, _, _ := l.MemberURLs("etcd2")
			checkMemberChoice(t, d, "etcd2", framework.InventoryVar(t, l, "lostPeerURL"), newPeer)
		}}
	case "quorum-loss":
		// the lab's break: the last N/2+1 members lose etcd and data
		ms := l.Members()
		k := len(ms)/2 + 1
		var survivors []string
		for _, m := range ms[:len(ms)-k] {
			survivors = append(survivors, m.Name)
		}
		return quorumLossExpect(survivors, survivors[0])
	case "total-loss":
		return expect{situation: "total-loss", scenario: "restore-all-from-snapshot", restore: true,
			plan: func(t *testing.T, _ *framework.DiagnosisDoc, steps []framework.PlanStep) {
				if !slices.ContainsFunc(steps, func(s framework.PlanStep) bool { return s.Type == "restore" }) {
					t.Errorf("the restore-all-from-snapshot plan has no restore step: %+v", steps)
				}
			}}
	}
	t.Fatalf("no expectation for break %q", brk)
	return expect{}
}

// quorumLossExpect: the survivor must be one of survivors (want, if not
// ""), every other member fenced, and the plan's force-new-cluster step
// on the survivor.
func quorumLossExpect(survivors []string, want string) expect {
	return expect{situation: "quorum-loss", scenario: "quorum-loss",
		diagnosis: func(t *testing.T, d *framework.DiagnosisDoc) {
			r := d.Recommend
			switch {
			case want != "" && r.Survivor != want:
				t.Errorf("survivor %q, want %s (ranking %+v)", r.Survivor, want, r.Ranking)
			case !slices.Contains(survivors, r.Survivor):
				t.Errorf("survivor %q is not one of the members that kept their data, %v (ranking %+v)", r.Survivor, survivors, r.Ranking)
			}
			for _, m := range d.Recommend.Ranking {
				if !slices.Contains(survivors, m.Name) {
					t.Errorf("ranking has %s, which lost its data: %+v", m.Name, r.Ranking)
				}
			}
			if len(r.Ranking) > 0 && r.Ranking[0].Name != r.Survivor {
				t.Errorf("survivor %s is not first in the ranking %+v", r.Survivor, r.Ranking)
			}
			if slices.Contains(r.Fence, r.Survivor) {
				t.Errorf("the survivor %s is to be fenced: %v", r.Survivor, r.Fence)
			}
			t.Logf("survivor %s, ranking %+v, fence %v", r.Survivor, r.Ranking, r.Fence)
		},
		plan: func(t *testing.T, d *framework.DiagnosisDoc, steps []framework.PlanStep) {
			n := 0
			for _, s := range steps {
				if s.Type != "force-new-cluster" {
					continue
				}
				n++
				if len(s.On) != 1 || s.On[0] != d.Recommend.Survivor {
					t.Errorf("step %s (force-new-cluster) is on %v, want [%s], the survivor diagnose named", s.ID, s.On, d.Recommend.Survivor)
				}
			}
			if n != 1 && d.Recommend.Route != "snapshot" {
				t.Errorf("the plan has %d force-new-cluster steps, want 1 (route %q): %+v", n, d.Recommend.Route, steps)
			}
		}}
}

// checkMemberChoice: the recommendation acts on member name, moving it from
// oldPeer (the cluster's member list) to newPeer (the inventory).
func checkMemberChoice(t *testing.T, d *framework.DiagnosisDoc, name, oldPeer, newPeer string) {
	t.Helper()
	for _, m := range d.Recommend.Members {
		if m.Name != name {
			continue
		}
		if oldPeer != "" && m.OldPeerURL != oldPeer {
			t.Errorf("recommendation for %s: old peer URL %q, want %q (the lab's vars)", name, m.OldPeerURL, oldPeer)
		}
		if m.NewPeerURL != newPeer {
			t.Errorf("recommendation for %s: new peer URL %q, want %q (the inventory)", name, m.NewPeerURL, newPeer)
		}
		if m.ID == "" {
			t.Errorf("recommendation for %s: no member id (it is still in the cluster's list)", name)
		}
		return
	}
	t.Errorf("the recommendation does not act on %s: %+v", name, d.Recommend.Members)
}

// diagnoseHealthy: diagnose says healthy, exit 0, no recommendation.
func (e *e2e) diagnoseHealthy(t *testing.T, inv string) {
	t.Helper()
	d, r := e.DiagnoseJSON(t, "--inventory", inv)
	if r.Code != 0 || d.Situation != "healthy" || !d.Healthy || d.Recommend != nil {
		t.Errorf("diagnose of a healthy lab: exit %d, situation %q, healthy %v, recommendation %v, findings %v\n%s",
			r.Code, d.Situation, d.Healthy, d.Recommend != nil, d.FindingCodes(), r)
		return
	}
	t.Logf("diagnose: healthy in %.1fs: %s", r.Wall.Seconds(), d.Summary)
}

// diagnoseBroken: diagnose names situation with evidence and a
// recommendation, exit 1.
func (e *e2e) diagnoseBroken(t *testing.T, inv, situation string) *framework.DiagnosisDoc {
	t.Helper()
	d, r := e.DiagnoseJSON(t, "--inventory", inv)
	if d.Situation != situation {
		t.Fatalf("diagnose: situation %q, want %q; findings %v\n%s", d.Situation, situation, d.FindingCodes(), r)
	}
	if r.Code != 1 || d.Healthy {
		t.Errorf("diagnose of a lab broken by %s: exit %d, healthy %v, want exit 1, not healthy", situation, r.Code, d.Healthy)
	}
	evidence := 0
	for _, f := range d.Findings {
		if f.Severity == "error" {
			evidence += len(f.Evidence)
		}
	}
	if evidence == 0 {
		t.Errorf("diagnose %s: no error finding with evidence: %+v", situation, d.Findings)
	}
	if d.Recommend == nil {
		t.Fatalf("diagnose %s: no recommendation\n%s", situation, r)
	}
	t.Logf("diagnose: %s in %.1fs (exit %d): %s; findings %v", d.Situation, r.Wall.Seconds(), r.Code, d.Summary, d.FindingCodes())
	return d
}

// rescueFromFacts breaks l with brk, then runs the path diagnose → new
// --from-facts → validate → apply → verify with nothing edited, checking
// what want says on the way.
func (e *e2e) rescueFromFacts(t *testing.T, l *lab.Lab, brk func(context.Context) error, want expect) {
	t.Helper()
	ctx := context.Background()
	preRev := framework.ClusterRevision(t, l)
	t0 := time.Now()
	if err := brk(ctx); err != nil {
		t.Fatalf("break: %v", err)
	}
	t.Logf("break in %.1fs (revision before it: %d)", time.Since(t0).Seconds(), preRev)
	inv := l.InventoryPath()

	d := e.diagnoseBroken(t, inv, want.situation)
	if d.Recommend.Scenario != want.scenario {
		t.Fatalf("diagnose recommends %q, want %q: %+v", d.Recommend.Scenario, want.scenario, d.Recommend)
	}
	if want.diagnosis != nil {
		want.diagnosis(t, d)
	}
	// what a person reads
	tbl := e.CLI(t, "diagnose", "--inventory", inv)
	t.Logf("diagnose (table), exit %d in %.1fs:\n%s%s", tbl.Code, tbl.Wall.Seconds(), tbl.Stdout, tbl.Stderr)
	if tbl.Code != 1 {
		t.Errorf("diagnose (table) of a broken lab: exit %d, want 1", tbl.Code)
	}
	if !strings.Contains(tbl.Stdout+tbl.Stderr, "etcd-rescue new "+want.scenario) {
		t.Errorf("diagnose (table) does not print the `etcd-rescue new %s` command", want.scenario)
	}

	// the command diagnose printed, with its -o into this test's dir
	plan := filepath.Join(t.TempDir(), want.scenario+".yaml")
	args := append(newArgs(t, d.Next, want.scenario, inv, plan), want.newExtra...)
	nr := e.CLI(t, args...)
	if nr.Code != 0 {
		t.Fatalf("%s", nr)
	}
	data, err := os.ReadFile(plan)
	if err != nil {
		t.Fatalf("new wrote no plan: %v\n%s", err, nr)
	}
	t.Logf("etcd-rescue %s: %.1fs; the plan's comments:\n%s", strings.Join(args, " "), nr.Wall.Seconds(), commentLines(data))
	if want.plan != nil {
		want.plan(t, d, framework.PlanSteps(t, data))
	}
	if t.Failed() {
		t.FailNow() // a wrong choice: applying it would prove nothing (or do harm)
	}

	stateDir, runID, r := e.applyPlan(t, plan, "", "written by new --from-facts after "+want.situation)
	t.Logf("apply: exit 0 in %.1fs; summary:\n%s", r.Wall.Seconds(), framework.SummaryOf(r.Stdout))
	st := e.StatusJSON(t, stateDir, runID)
	checkRunDone(t, st)
	verifyLab(t, l)
	if want.restore {
		checkRevisionAbove(t, l, preRev)
	}
	checkNoForceNewCluster(t, l)
	if want.after != nil {
		want.after(t)
	}
	e.diagnoseHealthy(t, inv)
	framework.Record(t, framework.Measurement{Test: t.Name(), Plan: "new " + want.scenario + " --from-facts", Version: l.Version(), Members: len(l.Members()),
		Wall: r.Wall, Sessions: st.Sessions, Steps: framework.TimesOf(st), Summary: framework.SummaryOf(r.Stdout)})
}

// newArgs turns diagnose's next command into the arguments of the CLI: it
// must be `etcd-rescue new SCENARIO ... --inventory INV ... --from-facts`;
// its -o FILE becomes -o plan.
func newArgs(t *testing.T, next, scenario, inv, plan string) []string {
	t.Helper()
	a := framework.CommandArgs(next)
	if len(a) < 3 || a[0] != "etcd-rescue" || a[1] != "new" || a[2] != scenario {
		t.Fatalf("diagnose's next command is %q, want etcd-rescue new %s ...", next, scenario)
	}
	if !slices.Contains(a, "--from-facts") {
		t.Errorf("diagnose's next command %q lacks --from-facts", next)
	}
	if i := slices.Index(a, "--inventory"); i < 0 || i+1 >= len(a) || a[i+1] != inv {
		t.Errorf("diagnose's next command %q does not name --inventory %s", next, inv)
	}
	a = a[1:]
	if i := slices.Index(a, "-o"); i >= 0 && i+1 < len(a) {
		return append(append(a[:i:i], "-o", plan), a[i+2:]...)
	}
	return append(a, "-o", plan)
}

func commentLines(plan []byte) string {
	var b strings.Builder
	for _, line := range strings.Split(string(plan), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// factsIsolated: facts on the healthy lab, then with the hosts isolated
// cut off: it returns in about one timeout, reports them as timeouts and
// their members as could-not-ask, exits 0, and changes nothing on any host
// nor in the cluster.
func (e *e2e) factsIsolated(t *testing.T, l *lab.Lab, isolated []string) {
	ctx := context.Background()
	inv := l.InventoryPath()
	timeout := factsTimeout.String()
	rev := framework.ClusterRevision(t, l)

	// everything reachable. What facts must not change on a host: etcd's
	// unit state, its env file, the data dir's files with their owners and
	// modes (and sizes and mtimes where etcd is stopped); see
	// framework.UntouchedStates: etcd writing its own db or WAL while facts
	// runs is not facts' doing. The cluster revision, compared at the end,
	// says that nothing wrote through etcd.
	before := framework.UntouchedStates(t, l)
	f, r := e.FactsJSON(t, "--inventory", inv, "--timeout", timeout)
	if r.Code != 0 {
		t.Errorf("facts on a healthy lab: exit %d\n%s", r.Code, r)
	}
	for _, h := range f.Hosts {
		if h.Reach != "ok" {
			t.Errorf("healthy lab: host %s reach %q (%s)", h.Name, h.Reach, h.Error)
		}
	}
	for _, m := range f.Members {
		if m.API != "answered" || m.Status == nil || m.Status.Revision != rev {
			t.Errorf("healthy lab: member %s api %q (%s), status %+v, want answered at revision %d", m.Name, m.API, m.Error, m.Status, rev)
		}
	}
	framework.CompareEtcdStates(t, before, framework.UntouchedStates(t, l))
	t.Logf("facts on the healthy lab: %.2fs, every host ok, every member answered at revision %d; nothing changed", r.Wall.Seconds(), rev)

	// 3 of 5 cut off
	for _, h := range isolated {
		if err := l.Isolate(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, h := range l.Isolated() {
			if err := l.Rejoin(ctx, h); err != nil {
				t.Errorf("rejoin %s: %v", h, err)
			}
		}
	}()
	// the members that are left lose their leader (no quorum) before the
	// "before" picture is taken
	for _, m := range l.Members() {
		if slices.Contains(isolated, m.Host) {
			continue
		}
		framework.Poll(t, m.Name+" without a leader", 200*time.Millisecond, func() bool {
			lead, err := framework.MemberLeader(t, l, m.Name)
			return err == nil && lead == 0
		})
	}
	before = framework.UntouchedStates(t, l)
	f, r = e.FactsJSON(t, "--inventory", inv, "--timeout", timeout)
	ratio := r.Wall.Seconds() / factsTimeout.Seconds()
	t.Logf("facts with %d of %d hosts cut off (%s): wall %.2fs (its own elapsed %s) = %.2f × the %s timeout",
		len(isolated), len(l.Hosts()), strings.Join(isolated, ", "), r.Wall.Seconds(), f.Elapsed, ratio, timeout)
	framework.Record(t, framework.Measurement{Test: t.Name(), Plan: "facts --timeout " + timeout, Version: l.Version(), Members: len(l.Members()),
		Wall: r.Wall, Summary: fmt.Sprintf("%d of %d hosts isolated: wall %.2fs = %.2f × timeout", len(isolated), len(l.Hosts()), r.Wall.Seconds(), ratio)})
	if ratio > 3 {
		t.Errorf("facts took %.1fs with a %s timeout (%.1f×): the timeouts add up, or it hangs", r.Wall.Seconds(), timeout, ratio)
	}
	if r.Code != 0 {
		t.Errorf("facts with unreachable hosts: exit %d, want 0 (an unreachable host is a fact)\n%s", r.Code, r)
	}
	for _, h := range f.Hosts {
		want := "ok"
		if slices.Contains(isolated, h.Name) {
			want = "timeout"
		}
		if h.Reach != want {
			t.Errorf("host %s: reach %q (%s), want %s", h.Name, h.Reach, h.Error, want)
		}
	}
	for _, m := range f.Members {
		if slices.Contains(isolated, m.Host) {
			if m.API != "could-not-ask" {
				t.Errorf("member %s on the isolated %s: api %q, want could-not-ask", m.Name, m.Host, m.API)
			}
		} else if m.API != "answered" || m.Status == nil || m.Status.Leader != "0" && m.Status.Leader != "" {
			t.Errorf("member %s on the reachable %s: api %q (%s), status %+v, want answered without a leader", m.Name, m.Host, m.API, m.Error, m.Status)
		}
	}
	framework.CompareEtcdStates(t, before, framework.UntouchedStates(t, l))
	if t.Failed() {
		t.Logf("facts output:\n%s", r.Stdout)
	}

	for _, h := range isolated {
		if err := l.Rejoin(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.WaitHealthy(ctx, time.Minute); err != nil {
		t.Fatalf("the lab after the isolated hosts rejoined: %v", err)
	}
	if got := framework.ClusterRevision(t, l); got != rev {
		t.Errorf("cluster revision %d before, %d after: something wrote", rev, got)
	}
	verifyLab(t, l)
}

// survivorsNotLast: a quorum loss of 5 where the members that keep their
// data are etcd2 and etcd4, not the first (nor the last) ones.
func (e *e2e) survivorsNotLast(t *testing.T, l *lab.Lab) {
	victims := []string{"etcd1", "etcd3", "etcd5"}
	e.rescueFromFacts(t, l, func(ctx context.Context) error { return l.BreakQuorumLossOf(ctx, victims) },
		quorumLossExpect([]string{"etcd2", "etcd4"}, ""))
}

// survivorBehind: etcd1 is stopped, keys are written without it, then
// etcd3..5 lose etcd and data, and etcd1 starts again: etcd1 and etcd2 run
// without quorum, etcd1 behind.
//
// etcd1, restarted without quorum, listens on its client port but never
// answers there (etcd serves clients only once it has published itself
// through raft), and its data dir cannot be read while it runs: nothing
// says how far behind it is. diagnose must not guess (situation unknown,
// survivor-unknown naming etcd1, a hint to stop it and read its data dir);
// once etcd1 is stopped as the hint says, its revision is read offline and
// the scaffold must pick etcd2. The keys written while etcd1 was down must
// survive the recovery.
func (e *e2e) survivorBehind(t *testing.T, l *lab.Lab) {
	const n = 20
	key := func(i int) string { return fmt.Sprintf("/e2e/behind/%02d", i) }
	h1 := memberHost(t, l, "etcd1")
	brk := func(ctx context.Context) error {
		framework.HostRun(t, l, h1, "systemctl stop etcd")
		for i := 0; i < n; i++ {
			framework.PutKey(t, l, key(i), "written while etcd1 was down")
		}
		if err := l.BreakQuorumLossOf(ctx, []string{"etcd3", "etcd4", "etcd5"}); err != nil {
			return err
		}
		// etcd2 may have been the leader: until etcd's check-quorum steps
		// it down (an election timeout) it would still send etcd1 what
		// etcd1 missed
		framework.Poll(t, "etcd2 without a leader", 200*time.Millisecond, func() bool {
			lead, err := framework.MemberLeader(t, l, "etcd2")
			return err == nil && lead == 0
		})
		// --no-block: without quorum etcd never tells systemd it is ready
		framework.HostRun(t, l, h1, "systemctl start --no-block etcd")
		framework.Poll(t, "etcd1 listens on its client port again", 200*time.Millisecond, func() bool {
			out, err := l.Run(ctx, h1, "ss -Hltn 'sport = :2379'", nil)
			return err == nil && strings.TrimSpace(out) != ""
		})
		d, r := e.DiagnoseJSON(t, "--inventory", l.InventoryPath())
		unknown := false
		for _, f := range d.Findings {
			unknown = unknown || f.Code == "survivor-unknown" && slices.Contains(f.Members, "etcd1")
		}
		if d.Situation != "unknown" || d.Recommend != nil || !unknown || r.Code != 1 {
			t.Errorf("etcd1 runs behind and cannot be asked: diagnose exit %d, situation %q, findings %v, recommendation %v; want exit 1, unknown, survivor-unknown naming etcd1, none",
				r.Code, d.Situation, d.FindingCodes(), d.Recommend != nil)
		}
		t.Logf("diagnose with etcd1 running behind, not answering: %s in %.1fs: %s", d.Situation, r.Wall.Seconds(), d.Summary)
		t.Logf("etcd1's own raft position, from its journal: %s", strings.TrimSpace(framework.HostRun(t, l, h1,
			"journalctl -u etcd --no-pager -o cat | grep -o 'logterm: [0-9]*, index: [0-9]*] sent' | tail -1 | sed 's/] sent//'")))
		// what the hint says: stop it, so that its data dir can be read
		framework.HostRun(t, l, h1, "systemctl stop etcd")
		return nil
	}
	want := quorumLossExpect([]string{"etcd1", "etcd2"}, "etcd2")
	check := want.diagnosis
	want.diagnosis = func(t *testing.T, d *framework.DiagnosisDoc) {
		check(t, d)
		behind := false
		for _, r := range d.Recommend.Ranking {
			behind = behind || r.Name == "etcd1" && r.Behind > 0
		}
		if !behind {
			t.Errorf("ranking: etcd1 is not behind, after %d writes it missed: %+v", n, d.Recommend.Ranking)
		}
	}
	want.after = func(t *testing.T) {
		for i := 0; i < n; i++ {
			if _, ok := framework.GetKey(t, l, key(i)); !ok {
				t.Errorf("key %s, written while etcd1 was down, is gone: the recovery kept the member that was behind", key(i))
			}
		}
	}
	e.rescueFromFacts(t, l, brk, want)
}

func memberHost(t *testing.T, l *lab.Lab, member string) string {
	t.Helper()
	for _, m := range l.Members() {
		if m.Name == member {
			return m.Host
		}
	}
	t.Fatalf("no member %s", member)
	return ""
}
