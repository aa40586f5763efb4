package e2e

// The generic crash driver: kill -9 at every step boundary and in the
// middle of every destructive and polling step of a plan, chained (each
// session is killed at the next point it has not visited; the next session
// is a plain `resume RUN --yes`), until a session completes the run. Then
// the same checks as every crash test: lab verify, no step-host done before
// a kill ran again, moved-aside data dirs kept.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
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

// killPoints counts the kills every crash driver made in this test process
// (printed per subtest and, in total, by TestE2ECrash's last subtest).
var killPoints atomic.Int64

// midKind is how a step type is killed in its middle.
type midKind int

const (
	midNone   midKind = iota
	midRemote         // while its remote command (marked with the step-host's mark) runs on the host
	midPoll           // a moment after it began polling
	midCall           // right after etcd accepted its call (the ETCD_RESCUE_CRASH_AFTER failpoint)
)

// midOf says how the middle of each destructive and polling step type is
// reached; types not listed (check-quorum, approve, snapshot-verify, ...)
// are crashed at their boundaries only.
var midOf = map[string]midKind{
	"stop-service":      midRemote,
	"start-service":     midRemote,
	"wipe-dir":          midRemote,
	"chown":             midRemote,
	"restore":           midRemote,
	"set-config":        midRemote,
	"snapshot-copy":     midRemote,
	"force-new-cluster": midRemote, // and while the flag is written: see fncFlagWritten
	"exec":              midRemote,
	"wait-healthy":      midPoll,
	"verify-data":       midPoll,
	"snapshot-save":     midPoll,
	"member-promote":    midPoll, // waits for the learner to catch up, then promotes
	"member-add":        midCall,
	"member-remove":     midCall,
	"member-update":     midCall,
}

// callOf is the journal text of each midCall type's etcd call.
var callOf = map[string]string{
	"member-add":    "member add",
	"member-remove": "member remove",
	"member-update": "member update",
}

// pollDelay is how long after a polling step's "running" line it is
// killed: inside its first polls (if the step is done before, the point
// counts as missed, and its boundary is crashed anyway).
const pollDelay = 150 * time.Millisecond

var runningLine = regexp.MustCompile(`^\S+ (\S+) running$`)

// settledLine matches the progress line of a step-host recorded done, by an
// attempt ("done 1.2s") or by the probe of a resume ("done (found running;
// check: ...)"): its checkpoint is written before the line.
var settledLine = regexp.MustCompile(`^\S+ (\S+) done( [0-9]| \()`)

// pointsResult is what crashAtEveryPoint did.
type pointsResult struct {
	kills    []string // "after KEY" / "in KEY (how)"
	missed   []string // points the run had passed when the kill would have landed
	failures []string // points after which a plain resume did not complete
}

// crashAtEveryPoint applies plan (reviewed against inv) to the broken lab l
// and kills every session at the next point not yet visited: at a step
// boundary (the "done" line after which every step-host of the step is done:
// the checkpoint is written before the line), or in the middle of a
// destructive or polling step (see midOf; the first of its step-hosts to
// run). E2E_CRASH_EVERY_HOST=1 takes both points per step-host instead. A session that ends by itself
// must end with exit 0 and the recovery complete. A session that fails
// instead (exit != 0 without a kill) is a failure of the point before it:
// it is reported, and the chain goes on with `resume --rerun KEY` of the
// step-hosts the kill left running (so that one failure does not hide the
// later points), or stops when even that fails.
func (e *e2e) crashAtEveryPoint(t *testing.T, l *lab.Lab, inv, plan string, extra ...string) pointsResult {
	t0 := time.Now()
	// E2E_CRASH_EVERY_HOST=1: the points of every step-host, not of every
	// step (about twice the kills on 3 hosts; too slow for CI)
	perHost := os.Getenv("E2E_CRASH_EVERY_HOST") == "1"
	data, err := os.ReadFile(filepath.Join(e.Repo, plan))
	if err != nil {
		data, err = os.ReadFile(plan)
	}
	if err != nil {
		t.Fatalf("read the plan: %v", err)
	}
	typeOf := map[string]string{}
	for _, s := range framework.PlanSteps(t, data) {
		typeOf[s.ID] = s.Type
	}
	before := framework.DataDirs(t, l, lab.DataDir, "")
	stateDir := filepath.Join(t.TempDir(), "state")
	runID := ""
	visited := map[string]bool{}
	doneAt := map[string]int{}
	var res pointsResult
	var walls []time.Duration
	var last framework.Result
	var rerun []string // --rerun for the next session, after a failed one
	lastPoint := "the apply"
	var mu sync.Mutex // visited, and each session's point
	for session := 0; ; session++ {
		if session > 120 {
			t.Fatalf("still not done after %d sessions", session)
		}
		args := []string{"apply", plan, "--inventory", inv, "--yes", "--state-dir", stateDir}
		if session > 0 {
			args = []string{"resume", runID, "--yes", "--state-dir", stateDir}
			for _, k := range rerun {
				args = append(args, "--rerun", k)
			}
		}
		rerun = nil
		args = append(args, extra...)
		var env []string
		// The failpoint kills the session right after etcd accepted the
		// first call of an unvisited midCall step; the hook's kills come
		// first if an earlier point is unvisited.
		// One call text per session: the first unvisited in the plan's order.
		var callStep string
		mu.Lock()
		for _, s := range framework.PlanSteps(t, data) {
			if midOf[s.Type] == midCall && !visited["in "+s.ID] && callStep == "" {
				callStep = s.ID
				env = []string{engine.CrashAfterEnv + "=" + callOf[s.Type]}
			}
		}
		mu.Unlock()
		point := "" // the point this session was killed at
		claim := func(p string) bool {
			mu.Lock()
			defer mu.Unlock()
			if point != "" || visited[p] {
				return false
			}
			point = p
			return true
		}
		doneSeen := map[string]bool{}
		var proc *framework.Proc
		started := make(chan struct{})
		hook := func(p *framework.Proc, line string) {
			if m := settledLine.FindStringSubmatch(line); m != nil {
				mu.Lock()
				doneSeen[m[1]] = true
				mu.Unlock()
				step, _, _ := strings.Cut(m[1], "@")
				after := "after " + m[1]
				if !perHost {
					// a step boundary: every step-host of the step done
					// (the checkpoint is written before the line)
					if !stepDone(stateDir, step) {
						return
					}
					after = "after " + step
				}
				if claim(after) {
					_ = p.Signal(syscall.SIGSTOP)
				}
				return
			}
			m := runningLine.FindStringSubmatch(line)
			if m == nil {
				return
			}
			key := m[1]
			step, host, _ := strings.Cut(key, "@")
			mk := key // the mid point's name: per step-host, or per step
			if !perHost {
				mk = step
			}
			ty := typeOf[step]
			kind := midOf[ty]
			if kind == midNone || kind == midCall {
				return
			}
			mu.Lock()
			taken := point != "" || visited["in "+mk]
			if ty == "force-new-cluster" && point == "" {
				taken = visited["in "+mk] && visited["in "+mk+" (flag written)"]
			}
			mu.Unlock()
			if taken {
				return
			}
			mu.Lock()
			fncSecond := ty == "force-new-cluster" && visited["in "+mk]
			mu.Unlock()
			go func() {
				<-started
				var how string
				switch {
				case fncSecond:
					// second visit: while the flag is written
					if !waitFor(proc, 30*time.Second, func() bool { return fncFlagWritten(l, host) }) {
						return
					}
					if !claim("in " + mk + " (flag written)") {
						return
					}
					how = "ETCD_FORCE_NEW_CLUSTER=true in the env file"
				case kind == midRemote:
					if host == "" || !waitFor(proc, 30*time.Second, func() bool { return len(markedProcs(l, host, runID+"/"+key)) > 0 }) {
						return
					}
					if !claim("in " + mk) {
						return
					}
					how = "its remote command running"
				case kind == midPoll:
					time.Sleep(pollDelay)
					mu.Lock()
					d := doneSeen[key]
					mu.Unlock()
					if d {
						mu.Lock()
						res.missed = append(res.missed, "in "+key)
						visited["in "+mk] = true
						mu.Unlock()
						return
					}
					if !claim("in " + mk) {
						return
					}
					how = fmt.Sprintf("%s after it began", pollDelay)
				}
				_ = proc.Signal(syscall.SIGKILL)
				t.Logf("session %d: kill -9 in %s (%s)", session, key, how)
			}()
		}
		proc = e.StartProc(t, hook, env, args...)
		close(started)
		// wait for the end, or a frozen process (SIGSTOP at a done line)
		var r framework.Result
		for {
			mu.Lock()
			p := point
			mu.Unlock()
			if strings.HasPrefix(p, "after ") {
				time.Sleep(20 * time.Millisecond) // let the SIGSTOP land
				r = proc.Kill9(t)
				break
			}
			select {
			case <-proc.Exited():
				r = proc.Wait(t)
			case <-time.After(10 * time.Millisecond):
				continue
			}
			break
		}
		walls = append(walls, r.Wall)
		last = r
		// what this session decided about the step-hosts it found begun
		if probes := probeLines(r.Stdout); probes != "" {
			t.Logf("session %d (%s) found:\n%s", session, args[0], probes)
		}
		if runID == "" {
			if runID = framework.RunIDOf(r.Stdout); runID == "" {
				t.Fatalf("no run id in apply's output:\n%s", r)
			}
		}
		mu.Lock()
		p := point
		mu.Unlock()
		// A kill aimed at a point that the run had already passed when it
		// landed: the session exited by itself first (the SIGSTOP or SIGKILL
		// found no process: exit 0), or the kill hit the process on its way
		// out, after its checkpoint had recorded the run done (the last
		// step, start-apiserver, takes a few ms). Either way the point was
		// not reached: it counts as missed, like a polling step done within
		// pollDelay, and the run is complete. Only a session that was
		// killed while the run was still going is a kill point.
		if p != "" && (r.Code == 0 || r.Code == 128+int(syscall.SIGKILL) && framework.ReadState(t, stateDir, runID).Outcome == "done") {
			t.Logf("session %d: the kill aimed %s landed after the run had ended (exit %d, outcome done): point not reached", session, p, r.Code)
			mu.Lock()
			res.missed = append(res.missed, p+" (the run had ended)")
			visited[p] = true
			mu.Unlock()
			break
		}
		if p == "" && callStep != "" && r.Code == 128+int(syscall.SIGKILL) {
			p = "in " + callStep + " (" + strings.TrimPrefix(env[0], engine.CrashAfterEnv+"=") + " accepted)"
			mu.Lock()
			visited["in "+callStep] = true
			mu.Unlock()
			t.Logf("session %d: killed itself right after etcd accepted %s", session, env[0])
		}
		if p == "" {
			if r.Code == 0 {
				break
			}
			// a session that failed by itself: the point before it is one
			// that a plain resume does not get past
			st := framework.ReadState(t, stateDir, runID)
			running := stepsIn(st, "running", "failed")
			res.failures = append(res.failures, fmt.Sprintf("after the kill %s: %s exit %d: %s", lastPoint, args[0], r.Code, lastLines(r.Stderr, 3)))
			t.Errorf("FAILED KILL POINT %s: the next plain %s did not complete: exit %d\n%s", lastPoint, args[0], r.Code, framework.TailLines(r.Stderr, 15))
			logRecoveries(t, stateDir, runID)
			if len(args) > 3 && strings.Contains(strings.Join(args, " "), "--rerun") {
				t.Fatalf("resume --rerun failed too; the chain stops:\n%s", r)
			}
			if len(running) == 0 {
				t.Fatalf("nothing running or failed to --rerun; the chain stops:\n%s", r)
			}
			rerun = running
			t.Logf("the chain goes on with resume --rerun %s", strings.Join(running, " --rerun "))
			continue
		}
		mu.Lock()
		visited[p] = true
		mu.Unlock()
		st := e.afterKill(t, r, stateDir, runID)
		res.kills = append(res.kills, p)
		killPoints.Add(1)
		lastPoint = p
		where := ""
		if strings.HasPrefix(p, "after ") {
			if running := stepsIn(st, "running"); len(running) > 0 {
				where = " (inside " + strings.Join(running, ", ") + ")"
			} else {
				where = " (between two steps)"
			}
		}
		t.Logf("session %d (%s): kill point %d: %s%s", session, args[0], len(res.kills), p, where)
		for _, s := range st.Steps {
			for _, h := range s.Hosts {
				if h.Status == "done" {
					if _, ok := doneAt[s.ID+"@"+h.Host]; !ok {
						doneAt[s.ID+"@"+h.Host] = h.Attempts
					}
				}
			}
		}
	}
	t.Logf("%d kill points (%d in the middle of a step): %s", len(res.kills), countPrefix(res.kills, "in "), strings.Join(res.kills, "; "))
	if len(res.missed) > 0 {
		sort.Strings(res.missed)
		t.Logf("points not reached (a polling step done within %s, or the run ended before the kill landed): %s", pollDelay, strings.Join(res.missed, ", "))
	}
	if len(res.kills) == 0 {
		t.Errorf("no kill point was reached: the first session completed the run")
	}
	t.Logf("the last session completed the run; summary:\n%s", framework.SummaryOf(last.Stdout))
	st := e.checkResumed(t, l, stateDir, runID, doneAt)
	framework.CheckAsideDirs(t, l, st, before, "")
	checkNoForceNewCluster(t, l)
	var total time.Duration
	for _, w := range walls {
		total += w
	}
	t.Logf("crash chain: %d sessions, %.1fs of etcd-rescue in all, %.1fs with the checks", len(walls), total.Seconds(), time.Since(t0).Seconds())
	recordSessions(t, l, filepath.Base(plan), st, walls, last.Stdout)
	return res
}

// stepDone: the only run in stateDir has every step-host of step done.
func stepDone(stateDir, step string) bool {
	files, _ := filepath.Glob(filepath.Join(stateDir, "runs", "*", "state.json"))
	if len(files) != 1 {
		return false
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		return false
	}
	var st framework.RunState
	if json.Unmarshal(b, &st) != nil {
		return false
	}
	for _, s := range st.Steps {
		if s.ID != step {
			continue
		}
		for _, h := range s.Hosts {
			if h.Status != "done" {
				return false
			}
		}
		return len(s.Hosts) > 0
	}
	return false
}

// probeLines are a session's progress lines about step-hosts it found
// begun by an earlier session: "found running: ...", "done (found ...)",
// "waiting for the operator: ...".
func probeLines(stdout string) string {
	var out []string
	for _, line := range strings.Split(stdout, "\n") {
		if strings.Contains(line, " found ") || strings.Contains(line, " done (found") || strings.Contains(line, "waiting for the operator") {
			out = append(out, "  "+line)
		}
	}
	return strings.Join(out, "\n")
}

func countPrefix(xs []string, p string) int {
	n := 0
	for _, x := range xs {
		if strings.HasPrefix(x, p) {
			n++
		}
	}
	return n
}

func lastLines(s string, n int) string {
	return strings.ReplaceAll(framework.TailLines(strings.TrimSpace(s), n), "\n", " | ")
}

// waitFor polls f until it holds (true) or p ends or limit passes (false).
func waitFor(p *framework.Proc, limit time.Duration, f func() bool) bool {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		select {
		case <-p.Exited():
			return false
		default:
		}
		if f() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// fncFlagWritten: host's env file sets ETCD_FORCE_NEW_CLUSTER=true (the
// force-new-cluster step restarts the survivor with it, or waits for it;
// the flag is removed, without a restart, once the survivor is a
// one-member cluster).
func fncFlagWritten(l *lab.Lab, host string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := l.Run(ctx, host, "grep -q '^ETCD_FORCE_NEW_CLUSTER=true' "+lab.EnvFile+" && echo yes", nil)
	return strings.TrimSpace(out) == "yes"
}

// markedProcs are the pids in host whose environment holds
// ETCD_RESCUE_MARK=mark: the remote commands of that step-host.
func markedProcs(l *lab.Lab, host, mark string) []int {
	h, ok := l.Host(host)
	if !ok {
		return nil
	}
	b, err := exec.Command("ip", "netns", "pids", h.Netns()).Output()
	if err != nil {
		return nil
	}
	out := string(b)
	want := []byte(engine.MarkEnv + "=" + mark + "\x00")
	var pids []int
	for _, f := range strings.Fields(out) {
		env, err := os.ReadFile("/proc/" + f + "/environ")
		if err != nil || !bytes.Contains(append(env, 0), want) {
			continue
		}
		var pid int
		fmt.Sscan(f, &pid)
		pids = append(pids, pid)
	}
	return pids
}
