package e2e

// Crash tests: the etcd-rescue process is killed with SIGKILL (a laptop
// that dies) between two steps and in the middle of long steps, an SSH
// connection is dropped in the middle of a remote command, and a second
// apply or resume is started on a locked state dir. Then `resume RUN --yes`
// must complete the recovery, with the checks of e2e_test.go: lab.Verify
// (no key lost), a revision above the pre-disaster one after a restore, no
// step-host that was done repeated, and every data dir that wipe-dir moved
// aside still there with the data it held.
//
//	go test ./tests/e2e/ -run 'TestE2ECrash' -v

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework"
)

func TestE2ECrash(t *testing.T) {
	e := newE2E(t)
	t0 := time.Now()
	// Kill -9 at every step boundary and in the middle of every destructive
	// and polling step (crashAtEveryPoint), each scenario on a fresh lab;
	// every session after a kill is a plain resume. In
	// quorum-loss-force-new-cluster, force-new-cluster is also killed
	// while the flag is in the env file (its restart with the flag, and
	// the wait that follows). `make test` runs
	// each scenario on one etcd version, 3.5 and 3.6 alternating, and
	// force-new-cluster (whose restarts differ most between versions) on
	// both; E2E_CRASH_ALL_VERSIONS=1 runs every scenario on both (about 4
	// minutes more).
	all := os.Getenv("E2E_CRASH_ALL_VERSIONS") == "1"
	for _, sc := range []struct {
		scenario
		versions []string
	}{
		{scenario{plan: "ip-change", brk: "ip-change", members: 3}, []string{"3.6"}},
		{scenario{plan: "lost-host", brk: "lost-host", members: 3}, []string{"3.5"}},
		{scenario{plan: "quorum-loss-force-new-cluster", brk: "quorum-loss", members: 3}, []string{"3.5", "3.6"}},
		{scenario{plan: "quorum-loss-snapshot", brk: "quorum-loss", members: 3}, []string{"3.6"}},
		{scenario{plan: "restore-all-from-snapshot", brk: "total-loss", members: 3, restore: true}, []string{"3.5"}},
	} {
		versions := sc.versions
		if all {
			versions = []string{"3.5", "3.6"}
		}
		for _, v := range versions {
			sc := sc.scenario
			t.Run("every-point/"+sc.plan+"/etcd"+v, func(t *testing.T) {
				t1 := time.Now()
				l := framework.UpLab(t, lab.Options{Members: sc.members, Version: v})
				preRev := framework.ClusterRevision(t, l)
				if err := l.Break(context.Background(), sc.brk); err != nil {
					t.Fatalf("lab break %s: %v", sc.brk, err)
				}
				var inv, plan string
				if sc.plan == "quorum-loss-snapshot" {
					inv, plan = e.snapshotRoutePlan(t, l)
				} else {
					inv, plan = e.reviewed(t, l, sc.plan)
				}
				// --parallelism 1: one step-host at a time, so that no kill
				// lands while a parallel branch runs, whose boundary and
				// middle a later session could then only probe
				res := e.crashAtEveryPoint(t, l, inv, plan, "--parallelism", "1")
				if sc.restore {
					checkRevisionAbove(t, l, preRev)
				}
				if len(res.failures) > 0 {
					t.Errorf("%d kill point(s) after which a plain resume did not complete:\n  %s", len(res.failures), strings.Join(res.failures, "\n  "))
				}
				t.Logf("KILL POINTS %s etcd%s: %d (wall %.0fs with lab up)", sc.plan, v, len(res.kills), time.Since(t1).Seconds())
			})
		}
	}
	// ... and on 5 members with etcd 3.7, one step-host at a time
	// (--parallelism 1), so that every kill lands between two step-hosts:
	// 28 of them, among them right after the member adds and promotes.
	t.Run("every-boundary/quorum-loss-five-members/etcd3.7", func(t *testing.T) {
		l := framework.UpLab(t, lab.Options{Members: 5, Version: "3.7"})
		n := e.crashEveryBoundary(t, l, scenario{plan: "quorum-loss-five-members", brk: "quorum-loss", members: 5}, "--parallelism", "1")
		killPoints.Add(int64(n))
	})
	// (c) killed in the instant between a membership change etcd accepted
	// and its checkpoint (the ETCD_RESCUE_CRASH_AFTER failpoint): member
	// remove, then member add, then member promote, one session each.
	t.Run("after-etcd-call/lost-host/etcd3.6", func(t *testing.T) {
		l := framework.UpLab(t, lab.Options{Members: 3, Version: "3.6"})
		e.crashAfterCalls(t, l, scenario{plan: "lost-host", brk: "lost-host", members: 3}, map[string]string{
			"member remove":  "remove-dead",
			"member add":     "add@h4",
			"member promote": "promote@h4",
		}, []string{"member remove", "member add", "member promote"})
		killPoints.Add(3)
		// and the backup, on the repaired cluster: killed right after
		// the snapshot arrived, before it was renamed and hashed
		e.crashAfterSnapshotSave(t, l)
		killPoints.Add(1)
	})
	// (b) kill -9 in the middle of long steps and a dropped SSH connection
	// mid-command, on a restore of ~100 MB of data (a planned roll-back of a
	// healthy cluster to a snapshot: the old data dirs hold data that must
	// survive, moved aside).
	t.Run("mid-step/restore/etcd3.5", func(t *testing.T) {
		e.crashMidStep(t, "3.5", []midPoint{
			{session: 0, step: "ship", host: "h2", needle: uploadNeedle, act: dropSSH},
			{session: 0, step: "restore", needle: restoreNeedle, act: kill9},
			{session: 1, step: "healthy", act: kill9},
		})
	})
	t.Run("mid-step/restore/etcd3.6", func(t *testing.T) {
		e.crashMidStep(t, "3.6", []midPoint{
			{session: 0, step: "ship", needle: uploadNeedle, act: kill9},
			{session: 1, step: "restore", host: "h1", needle: restoreNeedle, act: dropSSH},
			{session: 1, step: "healthy", act: kill9},
		})
	})
	t.Run("kill-points-total", func(t *testing.T) {
		t.Logf("KILL POINTS IN ALL: %d kills -9 (plus the dropped SSH connections), in %.0fs", killPoints.Load(), time.Since(t0).Seconds())
	})
}

// snapshotRoutePlan writes the quorum-loss plan of the snapshot route
// (`new quorum-loss --route snapshot`: a snapshot saved from the survivor
// restores every member) for the broken lab, reviewed with `plan`.
func (e *e2e) snapshotRoutePlan(t *testing.T, l *lab.Lab) (inv, plan string) {
	t.Helper()
	inv = l.InventoryPath()
	dir := t.TempDir()
	plan = filepath.Join(dir, "quorum-loss-snapshot.yaml")
	r := e.CLI(t, "new", "quorum-loss", "--inventory", inv, "--route", "snapshot", "--survivor", "etcd1",
		"--to", filepath.Join(dir, "survivor.db"), "-o", plan)
	if r.Code != 0 {
		t.Fatalf("new quorum-loss --route snapshot:\n%s", r)
	}
	dry := e.CLI(t, "plan", plan, "--inventory", inv)
	if dry.Code != 0 {
		t.Fatalf("plan: %s", dry)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the dry-run of the plan:\n%s", dry.Stdout)
		}
	})
	return inv, plan
}

// --- (a) between steps -----------------------------------------------------

// checkLocked: while p holds the state dir's lock, a second apply and a
// resume are refused with exit 3 and create no run.
func (e *e2e) checkLocked(t *testing.T, plan, inv, stateDir, runID string) {
	t.Helper()
	r := e.CLI(t, "apply", plan, "--inventory", inv, "--yes", "--state-dir", stateDir)
	if r.Code != 3 || !strings.Contains(r.Stderr, "locked by another run") {
		t.Errorf("a second apply on a locked state dir: want exit 3 and \"locked by another run\":\n%s", r)
	} else {
		t.Logf("second concurrent apply refused: exit 3: %s", firstLine(r.Stderr))
	}
	r = e.CLI(t, "resume", runID, "--yes", "--state-dir", stateDir)
	if r.Code != 3 || !strings.Contains(r.Stderr, "locked by another run") {
		t.Errorf("a resume while the run is locked: want exit 3:\n%s", r)
	}
	framework.OnlyRun(t, stateDir)
	r = e.CLI(t, "status", runID, "--state-dir", stateDir)
	if r.Code != 0 || !strings.Contains(r.Stdout, "in progress") {
		t.Errorf("status while the run holds the lock should say it is in progress:\n%s", r)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// afterKill checks what a kill -9 left: exit by SIGKILL, the lock free,
// status pointing at resume. It returns the checkpoint as the kill left it.
func (e *e2e) afterKill(t *testing.T, r framework.Result, stateDir, runID string) *framework.RunState {
	t.Helper()
	if r.Code != 128+int(syscall.SIGKILL) {
		t.Errorf("etcd-rescue was killed with SIGKILL but exited %d", r.Code)
	}
	st := framework.ReadState(t, stateDir, runID)
	if st.Outcome != "running" {
		t.Errorf("after kill -9 the checkpoint says outcome %q, want running (nothing could record an end)", st.Outcome)
	}
	s := e.CLI(t, "status", runID, "--state-dir", stateDir)
	if s.Code != 0 || !strings.Contains(s.Stdout, "the engine stopped mid-run; resume it") {
		t.Errorf("status after kill -9 should say the engine stopped mid-run:\n%s", s)
	}
	return st
}

// stepsIn returns "step@host=status" for every step-host with one of the
// statuses.
func stepsIn(st *framework.RunState, statuses ...string) []string {
	var out []string
	for _, s := range st.Steps {
		for _, h := range s.Hosts {
			for _, want := range statuses {
				if h.Status == want {
					k := s.ID
					if h.Host != "" {
						k += "@" + h.Host
					}
					out = append(out, k)
				}
			}
		}
	}
	return out
}

// reviewed returns the lab's inventory and the example plan name, after
// checking its dry-run against them; a failed test logs that dry-run.
func (e *e2e) reviewed(t *testing.T, l *lab.Lab, name string) (inv, plan string) {
	t.Helper()
	inv, plan = l.InventoryPath(), planPath(name)
	dry := e.CLI(t, "plan", plan, "--inventory", inv)
	if dry.Code != 0 {
		t.Fatalf("plan: %s", dry)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the dry-run of the plan:\n%s", dry.Stdout)
		}
	})
	return inv, plan
}

// checkResumed checks a run that crashes interrupted and resumes completed:
// done, no step-host done before a crash ran again, the lab verified.
func (e *e2e) checkResumed(t *testing.T, l *lab.Lab, stateDir, runID string, doneAt map[string]int) *framework.RunState {
	t.Helper()
	st := e.StatusJSON(t, stateDir, runID)
	checkRunDone(t, st)
	for k, att := range doneAt {
		step, host, _ := strings.Cut(k, "@")
		if h := st.Find(step, host); h == nil || h.Attempts != att {
			t.Errorf("%s was done before a crash with %d attempt(s) but ended with %+v: a done step ran again", k, att, h)
		}
	}
	logRecoveries(t, stateDir, runID)
	verifyLab(t, l)
	return st
}

// recordSessions records a crashed run's timings: the wall time of all its
// sessions together.
func recordSessions(t *testing.T, l *lab.Lab, plan string, st *framework.RunState, walls []time.Duration, lastStdout string) {
	t.Helper()
	var total time.Duration
	for _, w := range walls {
		total += w
	}
	framework.Record(t, framework.Measurement{Test: t.Name(), Plan: plan, Version: l.Version(), Members: len(l.Members()),
		Wall: total, Sessions: st.Sessions, Steps: framework.TimesOf(st), Summary: framework.SummaryOf(lastStdout)})
}

// --- (b) in the middle of a step --------------------------------------------

type midAction int

const (
	kill9   midAction = iota // SIGKILL the etcd-rescue process
	dropSSH                  // kill the host's sshd session processes (by pid): the connection drops
)

func (a midAction) String() string {
	if a == dropSSH {
		return "dropped SSH connection"
	}
	return "kill -9"
}

// midPoint is one crash point: in session (0 = apply, n = n-th resume),
// once step (on host, or any host) is running and, if needle is set, a
// process whose command line holds needle runs on that host, do act.
type midPoint struct {
	session int
	step    string
	host    string
	needle  string
	act     midAction
}

const (
	// the remote side of an upload: sh -c '... cat > DIR/.snapshot.db.sshx-TOKEN.tmp ...'
	uploadNeedle = ".snapshot.db.sshx-"
	// etcdutl snapshot restore ...
	restoreNeedle = "snapshot restore"
)

const (
	bulkPrefix = "/e2e/bulk/"
	bulkKeys   = 100
	bulkSize   = 1 << 20 // 100 x 1 MiB: the snapshot copy and the restore take a moment
	marker     = "/e2e/written-after-the-snapshot"
)

func bulkValue(i int) []byte {
	b := bytes.Repeat([]byte(fmt.Sprintf("bulk-%04d-", i)), bulkSize/10+1)
	return b[:bulkSize]
}

// fillBulk writes bulkKeys values of bulkSize bytes (besides the lab's own
// fingerprinted keys).
func fillBulk(t *testing.T, l *lab.Lab) {
	t.Helper()
	cli, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var next int64 = -1
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(atomic.AddInt64(&next, 1))
				if i >= bulkKeys {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := cli.Put(ctx, fmt.Sprintf("%s%04d", bulkPrefix, i), string(bulkValue(i)))
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("bulk put: %v", err)
	}
}

// checkBulk: every bulk value is back, byte for byte.
func checkBulk(t *testing.T, l *lab.Lab) {
	t.Helper()
	cli, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	bad := 0
	for i := 0; i < bulkKeys; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r, err := cli.Get(ctx, fmt.Sprintf("%s%04d", bulkPrefix, i))
		cancel()
		if err != nil {
			t.Fatalf("get bulk %d: %v", i, err)
		}
		if len(r.Kvs) != 1 || !bytes.Equal(r.Kvs[0].Value, bulkValue(i)) {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("DATA LOST: %d of %d bulk values (%d MiB each) missing or wrong after the restore", bad, bulkKeys, bulkSize>>20)
	}
}

// sshSessions are the sshd session processes ("sshd: root@notty", one per
// connection) in host.
func sshSessions(t *testing.T, l *lab.Lab, host string) map[int]string {
	out := map[int]string{}
	for pid, c := range framework.HostPids(t, l, host) {
		if strings.HasPrefix(c, "sshd: root@") {
			out[pid] = c
		}
	}
	return out
}

func (e *e2e) crashMidStep(t *testing.T, version string, points []midPoint) {
	ctx := context.Background()
	l := framework.UpLab(t, lab.Options{Members: 3, Version: version})
	t0 := time.Now()
	fillBulk(t, l)
	t.Logf("wrote %d x %d MiB in %.1fs", bulkKeys, bulkSize>>20, time.Since(t0).Seconds())
	t0 = time.Now()
	snap, err := l.Snapshot(ctx, l.SnapshotPath())
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	fi, _ := os.Stat(snap.Path)
	t.Logf("snapshot %s: %.0f MB at revision %d in %.1fs", snap.Path, float64(fi.Size())/1e6, snap.Revision, time.Since(t0).Seconds())
	// Written after the snapshot: the restore must not have it, and the
	// moved-aside data dirs must.
	framework.PutKey(t, l, marker, "the restore must not bring this back")
	preRev := framework.ClusterRevision(t, l)
	var before map[string]framework.DataDirInfo
	framework.Poll(t, "the marker key in every member's WAL", 100*time.Millisecond, func() bool {
		before = framework.DataDirs(t, l, lab.DataDir, marker)
		for _, d := range before {
			if !d.Member || !d.Marker {
				return false
			}
		}
		return true
	})

	inv, plan := e.reviewed(t, l, "restore-all-from-snapshot")
	stateDir := filepath.Join(t.TempDir(), "state")
	runID := ""
	var walls []time.Duration
	doneAt := map[string]int{}
	sessions := 0
	for _, pt := range points {
		if pt.session >= sessions {
			sessions = pt.session + 1
		}
	}
	var last framework.Result
	for s := 0; s <= sessions; s++ {
		args := []string{"apply", plan, "--inventory", inv, "--yes", "--state-dir", stateDir}
		if s > 0 {
			args = []string{"resume", runID, "--yes", "--state-dir", stateDir}
		}
		// A kill at a step's start is done from the output hook, at once;
		// the other points poll the checkpoint and the hosts' processes.
		var hookPt *midPoint
		for i := range points {
			if pt := points[i]; pt.session == s && pt.act == kill9 && pt.needle == "" {
				hookPt = &points[i]
			}
		}
		killedAt := make(chan string, 1)
		var hook func(*framework.Proc, string)
		if hookPt != nil {
			key := hookPt.step
			if hookPt.host != "" {
				key += "@" + hookPt.host
			}
			re := regexp.MustCompile(`^\S+ ` + regexp.QuoteMeta(key) + `(@\S+)? running$`)
			var once sync.Once
			hook = func(p *framework.Proc, line string) {
				if re.MatchString(line) {
					once.Do(func() {
						_ = p.Signal(syscall.SIGKILL)
						killedAt <- line
					})
				}
			}
		}
		p := e.StartHook(t, hook, args...)
		if runID == "" {
			framework.Poll(t, "apply's run id", 10*time.Millisecond, func() bool {
				out, _ := p.Output()
				runID = framework.RunIDOf(out)
				select {
				case <-p.Exited():
					r := p.Wait(t)
					t.Fatalf("apply ended before printing a run id:\n%s", r)
				default:
				}
				return runID != ""
			})
			// a second apply (and a resume) on the same state dir while this one runs
			e.checkLocked(t, plan, inv, stateDir, runID)
		}
		killed := false
		for _, pt := range points {
			if pt.session == s && !(pt.act == kill9 && pt.needle == "") && e.midStep(t, l, p, stateDir, runID, pt) {
				killed = true
				break
			}
		}
		if !killed && hookPt != nil {
			select {
			case line := <-killedAt:
				killed = true
				t.Logf("kill -9 of session %d (%s) as it printed %q", s, args[0], line)
			case <-p.Exited():
			}
		}
		r := p.Wait(t)
		walls = append(walls, r.Wall)
		last = r
		if s == sessions {
			break
		}
		if !killed {
			t.Fatalf("session %d (%s) ended before its crash point was reached:\n%s", s, args[0], r)
		}
		st := e.afterKill(t, r, stateDir, runID)
		t.Logf("after the kill of session %d: running: %s; pending: %s", s, strings.Join(stepsIn(st, "running"), ", "), strings.Join(stepsIn(st, "pending"), ", "))
		for h, pids := range leftovers(t, l) {
			t.Logf("left running on %s by the killed engine: %s", h, strings.Join(pids, "; "))
		}
		for _, ss := range st.Steps {
			for _, h := range ss.Hosts {
				if h.Status == "done" {
					doneAt[ss.ID+"@"+h.Host] = h.Attempts
				}
			}
		}
	}
	if last.Code != 0 {
		t.Fatalf("the final session did not complete the recovery:\n%s", last)
	}
	t.Logf("final session: exit 0; summary:\n%s", framework.SummaryOf(last.Stdout))
	st := e.checkResumed(t, l, stateDir, runID, doneAt)
	checkRevisionAbove(t, l, preRev)
	if v, ok := framework.GetKey(t, l, marker); ok {
		t.Errorf("%s (written after the snapshot) is back with %q: the restore did not restore exactly the snapshot", marker, v)
	}
	checkBulk(t, l)
	framework.CheckAsideDirs(t, l, st, before, marker)
	for h, pids := range leftovers(t, l) {
		t.Errorf("still running on %s after the recovery: %s", h, strings.Join(pids, "; "))
	}
	for _, h := range l.Hosts() {
		if out := framework.HostRun(t, l, h.Name, "ls -A /var/tmp/etcd-rescue/ 2>/dev/null; ls -d /var/lib/etcd.restoring-* 2>/dev/null; true"); strings.TrimSpace(out) != "snapshot.db" {
			t.Logf("NOTE: %s: left in /var/tmp/etcd-rescue and /var/lib: %q (temporary files of killed sessions)", h.Name, strings.Fields(out))
		}
	}
	recordSessions(t, l, "restore-all-from-snapshot", st, walls, last.Stdout)
}

// midStep waits for pt's moment in the running session p and acts. It
// returns true if it killed p.
func (e *e2e) midStep(t *testing.T, l *lab.Lab, p *framework.Proc, stateDir, runID string, pt midPoint) bool {
	t.Helper()
	hosts := []string{pt.host}
	if pt.host == "" {
		hosts = nil
		for _, h := range l.Hosts() {
			hosts = append(hosts, h.Name)
		}
	}
	var at string
	var pids []int
	reached := false
	framework.Poll(t, fmt.Sprintf("%s in the middle of %s", pt.act, pt.step), 5*time.Millisecond, func() bool {
		select {
		case <-p.Exited():
			return true
		default:
		}
		b, err := os.ReadFile(filepath.Join(stateDir, "runs", runID, "state.json"))
		if err != nil {
			return false
		}
		var st framework.RunState
		if json.Unmarshal(b, &st) != nil {
			return false
		}
		for _, h := range hosts {
			hs := st.Find(pt.step, h)
			if hs == nil {
				hs = st.Find(pt.step, "")
			}
			if hs == nil || hs.Status != "running" {
				continue
			}
			if pt.needle != "" {
				if pids = framework.FindHostProcs(t, l, h, pt.needle); len(pids) == 0 {
					continue
				}
			}
			at, reached = h, true
			return true
		}
		return false
	})
	if !reached {
		out, _ := p.Output()
		t.Errorf("the session ended before %s was running%s: crash point %s not reached\n%s", pt.step, map[bool]string{true: " with " + pt.needle, false: ""}[pt.needle != ""], pt.act, framework.TailLines(out, 30))
		return false
	}
	switch pt.act {
	case kill9:
		_ = p.Signal(syscall.SIGKILL)
		t.Logf("kill -9 of etcd-rescue while %s@%s ran (remote %q: pids %v)", pt.step, at, pt.needle, pids)
		return true
	}
	// dropSSH: kill the sshd processes of the host's connections, by pid.
	sess := sshSessions(t, l, at)
	if len(sess) == 0 {
		t.Fatalf("no sshd session process on %s to kill (processes: %v)", at, framework.HostPids(t, l, at))
	}
	var killed []string
	for pid, c := range sess {
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			killed = append(killed, fmt.Sprintf("%d (%s)", pid, c))
		}
	}
	sort.Strings(killed)
	t.Logf("dropped the SSH connection to %s while %s@%s ran (remote %q: pids %v): killed %s", at, pt.step, at, pt.needle, pids, strings.Join(killed, ", "))
	// The session must survive it: the step-host gets done (reconnect, probe,
	// and apply again or find it done) without the process dying.
	key := pt.step + "@" + at
	framework.Poll(t, key+" done after the dropped connection", 20*time.Millisecond, func() bool {
		select {
		case <-p.Exited():
			return true
		default:
		}
		// "failed" is passed through before the engine probes and retries
		hs := framework.ReadState(t, stateDir, runID).Find(pt.step, at)
		return hs != nil && hs.Status == "done"
	})
	st := framework.ReadState(t, stateDir, runID)
	hs := st.Find(pt.step, at)
	select {
	case <-p.Exited():
		r := p.Wait(t)
		t.Fatalf("etcd-rescue did not survive the dropped SSH connection to %s:\n%s", at, r)
	default:
	}
	if hs.Status != "done" {
		t.Fatalf("%s after the dropped SSH connection: %s: %s", key, hs.Status, hs.Error)
	}
	lost := connectionLost(t, stateDir, runID, pt.step, at)
	if hs.Attempts < 2 && lost == "" {
		t.Errorf("%s: the dropped connection did not hit a running command (1 attempt, no connection-lost event): nothing was survived", key)
	}
	t.Logf("%s survived the dropped connection: done after %d attempt(s); the engine saw: %s", key, hs.Attempts, lost)
	return false
}

// connectionLost returns the first journal error of step@host that says
// the SSH connection was lost.
func connectionLost(t *testing.T, stateDir, runID, step, host string) string {
	b, err := os.ReadFile(filepath.Join(stateDir, "runs", runID, "events.jsonl"))
	if err != nil {
		t.Errorf("events.jsonl: %v", err)
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		var ev struct{ Type, Step, Host, Error string }
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Step == step && ev.Host == host && strings.Contains(ev.Error, "connection lost") {
			return firstLine(ev.Error)
		}
	}
	return ""
}

// leftovers lists etcd-rescue-marked processes still running on the hosts
// (ETCD_RESCUE_MARK in their environment).
func leftovers(t *testing.T, l *lab.Lab) map[string][]string {
	out := map[string][]string{}
	for _, h := range l.Hosts() {
		for pid, c := range framework.HostPids(t, l, h.Name) {
			env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if err != nil || !bytes.Contains(env, []byte("ETCD_RESCUE_MARK=")) {
				continue
			}
			if len(c) > 120 {
				c = c[:120] + "..."
			}
			out[h.Name] = append(out[h.Name], fmt.Sprintf("%d %s", pid, c))
		}
	}
	return out
}

// logRecoveries logs what the resumes did about step-hosts they found
// running: the probes, reaps and checks in events.jsonl.
func logRecoveries(t *testing.T, stateDir, runID string) {
	b, err := os.ReadFile(filepath.Join(stateDir, "runs", runID, "events.jsonl"))
	if err != nil {
		t.Errorf("events.jsonl: %v", err)
		return
	}
	var lines []string
	for _, line := range strings.Split(string(b), "\n") {
		var ev struct {
			Type, Step, Host, Status, Msg, Error string
		}
		if json.Unmarshal([]byte(line), &ev) != nil {
			continue
		}
		switch {
		case ev.Type == "probe" || ev.Type == "reap" || ev.Type == "check",
			ev.Type == "run" && ev.Status != "",
			ev.Error != "" && strings.Contains(ev.Error, "connection"):
			lines = append(lines, fmt.Sprintf("%s %s@%s %s %s %s", ev.Type, ev.Step, ev.Host, ev.Status, ev.Msg, ev.Error))
		}
	}
	t.Logf("what the sessions recorded about the crashes (events.jsonl):\n  %s", strings.Join(lines, "\n  "))
}

// --- every boundary ----------------------------------------------------------

// anyDoneLine matches the progress line of any step-host finishing an attempt.
var anyDoneLine = regexp.MustCompile(`^\S+ (\S+) done [0-9]`)

func (e *e2e) crashEveryBoundary(t *testing.T, l *lab.Lab, sc scenario, extra ...string) int {
	ctx := context.Background()
	if err := l.Break(ctx, sc.brk); err != nil {
		t.Fatalf("lab break %s: %v", sc.brk, err)
	}
	before := framework.DataDirs(t, l, lab.DataDir, "")
	inv, plan := e.reviewed(t, l, sc.plan)
	stateDir := filepath.Join(t.TempDir(), "state")
	runID := ""
	doneAt := map[string]int{}
	var walls []time.Duration
	var points []string
	var last framework.Result
	for session := 0; ; session++ {
		if session > 60 {
			t.Fatalf("still not done after %d sessions", session)
		}
		args := []string{"apply", plan, "--inventory", inv, "--yes", "--state-dir", stateDir}
		if session > 0 {
			args = []string{"resume", runID, "--yes", "--state-dir", stateDir}
		}
		args = append(args, extra...)
		frozen := make(chan string, 1)
		var once sync.Once
		p := e.StartHook(t, func(p *framework.Proc, line string) {
			if m := anyDoneLine.FindStringSubmatch(line); m != nil {
				once.Do(func() {
					_ = p.Signal(syscall.SIGSTOP)
					frozen <- m[1]
				})
			}
		}, args...)
		var key string
		select {
		case key = <-frozen:
		case <-p.Exited():
		}
		if key == "" {
			last = p.Wait(t)
			walls = append(walls, last.Wall)
			break
		}
		// Frozen right after key's checkpoint: if that was the run's last
		// step-host, the session would end by itself; kill it anyway.
		r := p.Kill9(t)
		walls = append(walls, r.Wall)
		if runID == "" {
			if runID = framework.RunIDOf(r.Stdout); runID == "" {
				t.Fatalf("no run id in apply's output:\n%s", r.Stdout)
			}
		}
		st := e.afterKill(t, r, stateDir, runID)
		running := stepsIn(st, "running")
		where := "between two steps"
		if len(running) > 0 {
			where = "inside " + strings.Join(running, ", ")
		}
		points = append(points, key)
		t.Logf("session %d (%s): kill -9 right after %s was done (%s)", session, args[0], key, where)
		for _, s := range st.Steps {
			for _, h := range s.Hosts {
				if h.Status == "done" {
					doneAt[s.ID+"@"+h.Host] = h.Attempts
				}
			}
		}
		if len(stepsIn(st, "pending", "running", "failed")) == 0 {
			// the kill came after the last step-host: one more resume
			// only records the end
			t.Logf("every step-host was done at the kill")
		}
	}
	if last.Code != 0 {
		t.Fatalf("the session that was not killed did not complete the recovery:\n%s", last)
	}
	t.Logf("%d kills, one after each of: %s; the last session completed the run:\n%s", len(points), strings.Join(points, ", "), framework.SummaryOf(last.Stdout))
	if len(points) < 3 {
		t.Errorf("only %d crash points were reached", len(points))
	}
	st := e.checkResumed(t, l, stateDir, runID, doneAt)
	framework.CheckAsideDirs(t, l, st, before, "")
	recordSessions(t, l, sc.plan, st, walls, last.Stdout)
	return len(points)
}

// --- (c) right after etcd accepted a change ---------------------------------------

// crashAfterCalls runs sc with the failpoint set to each of calls in turn
// (apply, then a resume per call): each session dies right after etcd
// accepted that call, before the step-host's checkpoint. The step-host must
// be left running, the next session's Check must find the change made and
// record the step-host done without calling etcd again (attempts stay 1),
// and the last resume completes the recovery.
func (e *e2e) crashAfterCalls(t *testing.T, l *lab.Lab, sc scenario, stepOf map[string]string, calls []string) {
	ctx := context.Background()
	if err := l.Break(ctx, sc.brk); err != nil {
		t.Fatalf("lab break %s: %v", sc.brk, err)
	}
	inv, plan := e.reviewed(t, l, sc.plan)
	stateDir := filepath.Join(t.TempDir(), "state")
	runID := ""
	var walls []time.Duration
	for i, call := range calls {
		args := []string{"apply", plan, "--inventory", inv, "--yes", "--state-dir", stateDir}
		if i > 0 {
			args = []string{"resume", runID, "--yes", "--state-dir", stateDir}
		}
		r := e.StartProc(t, nil, []string{engine.CrashAfterEnv + "=" + call}, args...).Wait(t)
		walls = append(walls, r.Wall)
		if runID == "" {
			if runID = framework.RunIDOf(r.Stdout); runID == "" {
				t.Fatalf("no run id in apply's output:\n%s", r)
			}
		}
		if !strings.Contains(r.Stdout, "WARNING: "+engine.CrashAfterEnv) {
			t.Errorf("session %d did not warn that the failpoint is set:\n%s", i, r.Stdout)
		}
		st := e.afterKill(t, r, stateDir, runID)
		step, host, _ := strings.Cut(stepOf[call], "@")
		if h := st.Find(step, host); h == nil || h.Status != "running" || h.Attempts != 1 {
			t.Fatalf("after the kill right after %q, %s is %+v, want running in its first attempt", call, stepOf[call], h)
		}
		t.Logf("session %d (%s): killed right after etcd accepted %q, %s left running", i, args[0], call, stepOf[call])
	}
	r := e.CLI(t, "resume", runID, "--yes", "--state-dir", stateDir)
	walls = append(walls, r.Wall)
	if r.Code != 0 {
		t.Fatalf("the final resume did not complete the recovery:\n%s", r)
	}
	st := e.checkResumed(t, l, stateDir, runID, nil)
	for _, call := range calls {
		step, host, _ := strings.Cut(stepOf[call], "@")
		h := st.Find(step, host)
		if h == nil || h.Attempts != 1 {
			t.Errorf("%s: %+v, want 1 attempt: the change etcd had accepted was made again", stepOf[call], h)
			continue
		}
		t.Logf("%s: found done by its check, not applied again: %s", stepOf[call], h.Why)
	}
	// etcd saw each change once: one remove, one add, one promote.
	for _, call := range calls {
		if n := countEvents(t, stateDir, runID, call); n != 1 {
			t.Errorf("events.jsonl has %d successful %q calls, want 1", n, call)
		}
	}
	recordSessions(t, l, sc.plan, st, walls, r.Stdout)
}

// crashAfterSnapshotSave kills the backup plan right after etcd streamed
// the snapshot (it sits in FILE.part, unverified, no .sha256): the next
// session's check finds no verified snapshot, so the step (not destructive)
// is applied again, and the backup dir ends with the snapshot and its
// .sha256 only.
func (e *e2e) crashAfterSnapshotSave(t *testing.T, l *lab.Lab) {
	dir := filepath.Join(t.TempDir(), "backups")
	inv := framework.InventoryWithVars(t, l, map[string]string{"backupDir": dir})
	stateDir := filepath.Join(t.TempDir(), "state")
	r := e.StartProc(t, nil, []string{engine.CrashAfterEnv + "=snapshot save"},
		"apply", planPath("backup"), "--inventory", inv, "--yes", "--state-dir", stateDir).Wait(t)
	runID := framework.RunIDOf(r.Stdout)
	if runID == "" {
		t.Fatalf("no run id in apply's output:\n%s", r)
	}
	st := e.afterKill(t, r, stateDir, runID)
	file := filepath.Join(dir, "etcd-"+runID+".db")
	if h := st.Find("save", "h1"); h == nil || h.Status != "running" {
		t.Fatalf("after the kill right after the snapshot save, save@h1 is %+v, want running", h)
	}
	if _, err := os.Stat(file + ".part"); err != nil {
		t.Errorf("no %s.part after the kill: %v", file, err)
	}
	if _, err := os.Stat(file); err == nil {
		t.Errorf("%s exists after a kill before its verification", file)
	}
	r = e.CLI(t, "resume", runID, "--yes", "--state-dir", stateDir)
	if r.Code != 0 {
		t.Fatalf("resume of the killed backup:\n%s", r)
	}
	st = e.StatusJSON(t, stateDir, runID)
	checkRunDone(t, st)
	if h := st.Find("save", "h1"); h == nil || h.Attempts != 2 {
		t.Errorf("save@h1: %+v, want 2 attempts (the unverified snapshot saved again)", h)
	}
	sum := framework.CheckSnapshotFile(t, file)
	ents, _ := os.ReadDir(dir)
	for _, en := range ents {
		if n := en.Name(); n != filepath.Base(file) && n != filepath.Base(file)+".sha256" {
			t.Errorf("backup dir holds %s too after the resume", n)
		}
	}
	t.Logf("backup killed after the snapshot arrived, resumed: %s sha256 %.16s, trailer valid, .sha256 matches; nothing else left", file, sum)
}

// countEvents counts the successful etcd calls of the run whose text
// starts with call.
func countEvents(t *testing.T, stateDir, runID, call string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "runs", runID, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev struct{ Type, Cmd, Error string }
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Type == "etcd" && ev.Error == "" && strings.HasPrefix(ev.Cmd, call) {
			n++
		}
	}
	return n
}

// killAt runs the CLI and kills it with SIGKILL at the first output line
// matching re; it fails the test when the command ends first.
func (e *e2e) killAt(t *testing.T, re *regexp.Regexp, args ...string) (framework.Result, string) {
	t.Helper()
	return e.killAtEnv(t, re, nil, args...)
}

// killAtEnv is killAt with env added to the environment.
func (e *e2e) killAtEnv(t *testing.T, re *regexp.Regexp, env []string, args ...string) (framework.Result, string) {
	t.Helper()
	killed := make(chan string, 1)
	var once sync.Once
	p := e.StartProc(t, func(p *framework.Proc, line string) {
		if re.MatchString(line) {
			once.Do(func() {
				_ = p.Signal(syscall.SIGKILL)
				killed <- line
			})
		}
	}, env, args...)
	r := p.Wait(t)
	select {
	case line := <-killed:
		return r, line
	default:
		t.Fatalf("the command never printed a line matching %q (exit %d):\n%s", re, r.Code, r)
		return r, ""
	}
}

// resumeToDone resumes runID (why says after what), which must end done,
// and checks the lab from outside.
func (e *e2e) resumeToDone(t *testing.T, l *lab.Lab, stateDir, runID, why string) {
	t.Helper()
	res := e.CLI(t, "resume", runID, "--yes", "--state-dir", stateDir)
	if res.Code != 0 {
		t.Fatalf("resume %s:\n%s", why, res)
	}
	t.Logf("resume %s: exit 0 in %.1fs", why, res.Wall.Seconds())
	checkRunDone(t, e.StatusJSON(t, stateDir, runID))
	verifyLab(t, l)
}
