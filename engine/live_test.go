package engine

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// factsOf is facts as a collection at session start would give them:
// members answering with a status, or on a host that answered with a data
// dir (and maybe an offline revision), or on a host that could not be asked.
type liveMember struct {
	name, api  string // facts.APIState
	rev        int64
	idx        uint64
	hostAsked  bool
	hasData    bool
	offlineRev int64
	learner    bool
	// reach of a host not asked (default timeout): ok is a host that
	// answered SSH whose member's API could not be asked.
	reach facts.Reach
}

func factsOf(ms ...liveMember) *facts.Facts {
	f := &facts.Facts{Kind: facts.Kind, Version: facts.Version}
	for i, m := range ms {
		host := "h" + m.name[1:]
		h := &facts.Host{Name: host, Reach: facts.ReachTimeout, Error: "no answer within the timeout"}
		if m.reach != "" {
			h.Reach, h.Error = m.reach, ""
		}
		if m.hostAsked {
			h.Reach, h.Error = facts.ReachOK, ""
			h.DataDir = &facts.DataDir{Path: "/var/lib/etcd", Present: true, HasMember: m.hasData, OfflineRevision: m.offlineRev}
		}
		f.Hosts = append(f.Hosts, h)
		fm := &facts.Member{Name: m.name, Host: host, ClientURL: "http://10.0.0." + m.name[1:] + ":2379", API: facts.APIState(m.api)}
		if fm.API == facts.APIAnswered {
			fm.Status = &facts.Status{MemberID: string(rune('a' + i)), Revision: m.rev, RaftIndex: m.idx, IsLearner: m.learner}
		}
		f.Members = append(f.Members, fm)
	}
	return f
}

// liveHarness is a harness whose session starts from f and whose etcd is e.
func liveHarness(t *testing.T, stepsYAML string, f *facts.Facts, e *fakeEtcd) (*harness, Options) {
	h := newHarness(t, "", stepsYAML)
	h.w.etcd = e
	o := h.opts()
	o.CollectFacts = func(context.Context) (*facts.Facts, error) { return f, nil }
	return h, o
}

func refusalOf(t *testing.T, err error) *steps.Refusal {
	t.Helper()
	var ref *steps.Refusal
	if !errors.As(err, &ref) {
		t.Fatalf("want a refusal, got %v", err)
	}
	return ref
}

// ranPrefix counts the commands on host starting with prefix.
func (w *world) ranPrefix(host, prefix string) int {
	n := 0
	for _, c := range w.commands() {
		if strings.HasPrefix(c, host+": "+prefix) {
			n++
		}
	}
	return n
}

func TestMemberRemoveLive(t *testing.T) {
	dead := steps.Member{ID: 0xd, Name: "old", PeerURLs: []string{"http://10.0.0.9:2380"}, ClientURLs: []string{"http://10.0.0.9:2379"}}
	for name, tc := range map[string]struct {
		state     string // of the member to remove, now
		wantRefus bool
		wantLog   string
	}{
		"answers health: refused":          {state: "healthy", wantRefus: true},
		"runs without quorum: refused":     {state: "running", wantRefus: true},
		"nothing listens: removed":         {state: "down", wantLog: "concluded: old is down"},
		"could not ask: removed, and said": {state: "unreachable", wantLog: "not proven down"},
		"host key of its host: refused":    {state: "untrusted", wantRefus: true},
	} {
		t.Run(name, func(t *testing.T) {
			e := newFakeEtcd()
			e.list = []steps.Member{dead, {ID: 1, Name: "m1", ClientURLs: []string{"http://10.0.0.1:2379"}}}
			e.set("http://10.0.0.9:2379", tc.state, steps.EndpointStatus{MemberID: 0xd, Revision: 7})
			h, o := liveHarness(t, "  - {id: rm, type: member-remove, with: {name: old}}\n", nil, e)
			_, err := h.apply(o)
			if tc.wantRefus {
				ref := refusalOf(t, err)
				if !strings.Contains(ref.Error(), "10.0.0.9:2379") {
					t.Errorf("refusal without evidence: %v", ref)
				}
				if len(e.removedIDs()) != 0 {
					t.Errorf("removed %v despite the refusal", e.removedIDs())
				}
				if re := runErrOf(t, err); len(re.Failed) != 1 || re.Failed[0].Step != "rm" {
					t.Errorf("want rm failed: %v", re)
				}
				return
			}
			if err != nil {
				t.Fatalf("apply: %v", err)
			}
			if got := e.removedIDs(); len(got) != 1 || got[0] != 0xd {
				t.Errorf("removed %v, want [d]", got)
			}
			if !strings.Contains(h.progress.String(), tc.wantLog) {
				t.Errorf("progress lacks %q:\n%s", tc.wantLog, h.progress.String())
			}
		})
	}
}

func TestForceNewClusterLive(t *testing.T) {
	const plan = "  - {id: fence, type: stop-service, on: [m2, m3], with: {disable: true, unreachable: skip}}\n  - {id: fnc, type: force-new-cluster, on: m1, needs: [fence], with: {within: 1s%s}}\n"
	for name, tc := range map[string]struct {
		now       string // m1's state now
		rev       int64
		idx       uint64
		others    []liveMember
		with      string
		wantRefus string
	}{
		"survivor newest: goes on": {now: "running", rev: 100, idx: 50,
			others: []liveMember{{name: "m2", api: "answered", rev: 100, idx: 50, hostAsked: true, hasData: true}, {name: "m3", api: "down", hostAsked: true}}},
		"behind a running member: refused": {now: "running", rev: 90, idx: 40,
			others: []liveMember{{name: "m2", api: "answered", rev: 100, idx: 50, hostAsked: true, hasData: true}}, wantRefus: "up to 10 revisions"},
		"behind in raft index only: refused": {now: "running", rev: 100, idx: 40,
			others: []liveMember{{name: "m2", api: "answered", rev: 100, idx: 50, hostAsked: true, hasData: true}}, wantRefus: "m1 is behind m2"},
		"behind a stopped member's data: refused": {now: "running", rev: 90, idx: 40,
			others: []liveMember{{name: "m3", api: "down", hostAsked: true, hasData: true, offlineRev: 120}}, wantRefus: "up to 30 revisions"},
		"behind, allowBehind: goes on": {now: "running", rev: 90, idx: 40, with: ", allowBehind: true",
			others: []liveMember{{name: "m2", api: "answered", rev: 100, idx: 50, hostAsked: true, hasData: true}}},
		"others wiped or not asked: goes on": {now: "running", rev: 90, idx: 40,
			others: []liveMember{{name: "m2", api: "down", hostAsked: true}, {name: "m3", api: "could-not-ask"}}},
	} {
		t.Run(name, func(t *testing.T) {
			e := newFakeEtcd().set("http://10.0.0.1:2379", tc.now, steps.EndpointStatus{MemberID: 1, Revision: tc.rev, RaftIndex: tc.idx})
			f := factsOf(append([]liveMember{{name: "m1", api: "answered", rev: tc.rev, idx: tc.idx, hostAsked: true, hasData: true}}, tc.others...)...)
			h, o := liveHarness(t, strings.Replace(plan, "%s", tc.with, 1), f, e)
			_, err := h.apply(o)
			edits := h.w.ranPrefix("h1", "{ [ ! -e /etc/etcd/etcd.env ]")
			if tc.wantRefus != "" {
				ref := refusalOf(t, err)
				if !strings.Contains(ref.Reason, tc.wantRefus) {
					t.Errorf("reason %q lacks %q", ref.Reason, tc.wantRefus)
				}
				if edits != 0 {
					t.Errorf("config edited despite the refusal: %v", h.w.commands())
				}
				return
			}
			// Past the precondition: the flag is set (the fake cluster
			// then never becomes a one-member cluster, which is fine here).
			if edits == 0 {
				t.Errorf("never got past the precondition: %v\n%s", err, h.progress.String())
			}
			if err != nil && errors.As(err, new(*steps.Refusal)) {
				t.Errorf("refused: %v", err)
			}
		})
	}
}

// restoreBegins starts restore's first command on a host (removing a
// leftover restoring dir, then restoring).
const restoreBegins = "if [ -e /var/lib/etcd.restoring"

func TestRestoreLive(t *testing.T) {
	const plan = `
  - {id: stop, type: stop-service, on: all}
  - {id: wipe, type: wipe-dir, on: all, needs: [stop]}
  - {id: check, type: snapshot-verify, on: all, with: {file: /s.db}}
  - {id: restore, type: restore, on: all, needs: [wipe, check], with: {snapshot: /s.db, bumpRevision: auto}}
  - {id: config, type: set-config, on: all, needs: [restore], with: {clusterState: new}}
  - {id: start, type: start-service, on: all, needs: [config]}
`
	// What the hosts print for snapshot-verify's check (its file identity,
	// then the status) and for restore's revision read.
	status := func(host, cmd string) (string, int, error) {
		if strings.Contains(cmd, "snapshot status") {
			return "id 100 64769 12 1.5 1.5\n" + `{"hash":1,"revision":4000,"totalKey":3,"totalSize":100}`, 0, nil
		}
		return "", 0, nil
	}
	t.Run("a member still answers: refused", func(t *testing.T) {
		e := newFakeEtcd().set("http://10.0.0.3:2379", "running", steps.EndpointStatus{MemberID: 3})
		h, o := liveHarness(t, plan, nil, e)
		h.w.handler = status
		_, err := h.apply(o)
		ref := refusalOf(t, err)
		if !strings.Contains(ref.Reason, "m3") {
			t.Errorf("reason does not name m3: %v", ref)
		}
		for _, host := range []string{"h1", "h2", "h3"} {
			if n := h.w.ranPrefix(host, restoreBegins); n != 0 {
				t.Errorf("restore began on %s despite the refusal: %v", host, h.w.commands())
			}
		}
	})
	t.Run("a member behind an untrusted host: refused", func(t *testing.T) {
		e := newFakeEtcd().set("http://10.0.0.3:2379", "untrusted", steps.EndpointStatus{})
		h, o := liveHarness(t, plan, nil, e)
		h.w.handler = status // check runs beside stop and wipe: it must pass for the refusal to be the cause
		_, err := h.apply(o)
		ref := refusalOf(t, err)
		// wipe-dir on h3 refuses first (it refuses any "could not ask");
		// restore would too: nothing is restored anywhere.
		if !strings.Contains(ref.Reason, "m3 could not be asked") {
			t.Errorf("reason: %v", ref)
		}
		for _, host := range []string{"h1", "h2", "h3"} {
			if n := h.w.ranPrefix(host, restoreBegins); n != 0 {
				t.Errorf("restore began on %s despite the refusal: %v", host, h.w.commands())
			}
		}
	})
	t.Run("all stopped: restores and warns about the revisions lost", func(t *testing.T) {
		f := factsOf(liveMember{name: "m1", api: "down", hostAsked: true, hasData: true, offlineRev: 5000},
			liveMember{name: "m2", api: "down", hostAsked: true}, liveMember{name: "m3", api: "could-not-ask", reach: facts.ReachOK})
		e := newFakeEtcd()
		h, o := liveHarness(t, plan, f, e)
		h.w.handler = func(host, cmd string) (string, int, error) {
			if host == "h3" && strings.HasPrefix(cmd, "if [ -e /var/lib/etcd ]") {
				e.set("http://10.0.0.3:2379", "unreachable", steps.EndpointStatus{}) // h3's link fails after the wipe
			}
			return status(host, cmd)
		}
		res, err := h.apply(o)
		if err != nil {
			t.Fatalf("apply: %v\n%s", err, h.progress.String())
		}
		out := h.progress.String()
		for _, want := range []string{"1000 revisions written after the snapshot will be lost", "m3 could not be asked, so it is not proven stopped"} {
			if !strings.Contains(out, want) {
				t.Errorf("progress lacks %q:\n%s", want, out)
			}
		}
		// recorded by the host that read the snapshot's revision for the
		// bump (the first to get there)
		recorded := false
		for _, h := range []string{"h1", "h2", "h3"} {
			recorded = recorded || res.State.Facts["restore."+h+".snapshotRevision"] == "4000"
		}
		if !recorded {
			t.Errorf("snapshot revision not recorded: %v", res.State.Facts)
		}
		for _, host := range []string{"h1", "h2", "h3"} {
			if n := h.w.ranPrefix(host, restoreBegins); n != 1 {
				t.Errorf("restore ran %d times on %s, want once: %v", n, host, h.w.commands())
			}
		}
	})
}

func TestWipeDirLive(t *testing.T) {
	const plan = "  - {id: stop, type: stop-service, on: m2}\n  - {id: wipe, type: wipe-dir, on: m2, needs: [stop]}\n"
	for name, tc := range map[string]struct {
		state     string
		learner   bool
		wantRefus string
	}{
		"healthy voter: refused":        {state: "healthy", wantRefus: "healthy voter"},
		"could not ask: refused":        {state: "unreachable", wantRefus: "could not be asked"},
		"stopped: wiped":                {state: "down"},
		"healthy learner: wiped":        {state: "healthy", learner: true},
		"running without quorum: wiped": {state: "running"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newFakeEtcd().set("http://10.0.0.2:2379", tc.state, steps.EndpointStatus{MemberID: 2, IsLearner: tc.learner})
			h, o := liveHarness(t, plan, nil, e)
			_, err := h.apply(o)
			moved := h.w.ranPrefix("h2", "if [ -e /var/lib/etcd ]")
			if tc.wantRefus != "" {
				ref := refusalOf(t, err)
				if !strings.Contains(ref.Reason, tc.wantRefus) {
					t.Errorf("reason %q lacks %q", ref.Reason, tc.wantRefus)
				}
				if moved != 0 {
					t.Errorf("moved the data dir despite the refusal")
				}
				return
			}
			if err != nil || moved != 1 {
				t.Errorf("apply: %v, moved %d times", err, moved)
			}
		})
	}
}

// A refusal is final: retries: does not repeat it.
func TestRefusalNotRetried(t *testing.T) {
	e := newFakeEtcd().set("http://10.0.0.2:2379", "healthy", steps.EndpointStatus{MemberID: 2})
	h, o := liveHarness(t, "  - {id: stop, type: stop-service, on: m2}\n  - {id: wipe, type: wipe-dir, on: m2, needs: [stop], retries: 3}\n", nil, e)
	_, err := h.apply(o)
	refusalOf(t, err)
	st, lerr := runstate.ExistingStore(h.stateDir)
	if lerr != nil {
		t.Fatal(lerr)
	}
	id, _ := st.Latest()
	s, _ := st.Load(id)
	if a := s.Find("wipe", "h2").Attempts; a != 1 {
		t.Errorf("%d attempts, want 1", a)
	}
}

// The evidence dir holds the facts before and after, the journal, the
// timings and a summary, at the end of every session; a secret var never
// reaches it, nor the bundle.
func TestEvidence(t *testing.T) {
	const secret = "hunter2-TopSecret"
	h := newHarness(t, "  apiPassword: "+secret+"\n", `
  - {id: note, type: fact-secret}
  - {id: a, type: run, on: h1, needs: [note], with: {cmd: "echo ${vars.apiPassword}"}}
`)
	before := factsOf(liveMember{name: "m1", api: "answered", rev: 10, idx: 20, hostAsked: true, hasData: true},
		liveMember{name: "m2", api: "could-not-ask"})
	before.Members[0].MemberList = []facts.ListedMember{{ID: "a", Name: "m1"}, {ID: "b", Name: "m2"}}
	before.Members[0].HashKV = &facts.HashKV{Hash: 1, Revision: 10}
	after := factsOf(liveMember{name: "m1", api: "answered", rev: 12, idx: 22, hostAsked: true, hasData: true},
		liveMember{name: "m2", api: "answered", rev: 12, idx: 22, hostAsked: true, hasData: true})
	after.Members[0].MemberList = []facts.ListedMember{{ID: "a", Name: "m1"}, {ID: "c", Name: "m2"}}
	after.Members[0].HashKV = &facts.HashKV{Hash: 7, Revision: 12}
	after.Members[1].HashKV = &facts.HashKV{Hash: 7, Revision: 12}
	calls := 0
	o := h.opts()
	o.CollectFacts = func(context.Context) (*facts.Facts, error) {
		calls++
		if calls == 1 {
			return before, nil
		}
		return after, nil
	}
	res, err := h.apply(o)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	dir := filepath.Join(res.StateDir, "runs", res.RunID, "evidence")
	for _, f := range []string{"facts-before.json", "facts-after.json", "journal.jsonl", "evidence.json", "summary.md"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("evidence lacks %s: %v", f, err)
		}
	}
	sum := readFile(t, filepath.Join(dir, "summary.md"))
	for _, want := range []string{"outcome: **done**", "members before: m1 a, m2 b", "members after:  m1 a, m2 c", "revision: 10 → 12",
		"HashKV after:  equal", "could not ask (before): host h2", "| a | h1 | done | 1 |"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	// A resume of a done run does nothing; a second session of a failed
	// one adds facts-session-2.json.
	bundle := filepath.Join(h.dir, "bundle.tar.gz")
	store, _ := runstate.ExistingStore(h.stateDir)
	fout, err := os.Create(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Bundle(res.RunID, fout); err != nil {
		t.Fatal(err)
	}
	fout.Close()
	x := t.TempDir()
	if out, err := exec.Command("tar", "-xzf", bundle, "-C", x).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	n := 0
	_ = filepath.Walk(x, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		n++
		if strings.Contains(readFile(t, p), secret) {
			t.Errorf("%s holds the secret", p)
		}
		return nil
	})
	if n != 6 {
		t.Errorf("bundle holds %d files, want 6 (state.json and 5 evidence files)", n)
	}
	if !strings.Contains(readFile(t, filepath.Join(x, res.RunID, "evidence", "journal.jsonl")), "<redacted>") {
		t.Errorf("journal copy lacks the redacted secret line")
	}
}

// A failed session writes evidence too, and the next session adds its own
// start facts.
func TestEvidenceAcrossSessions(t *testing.T) {
	h := newHarness(t, "", "  - {id: a, type: checked, on: h1, with: {cmd: a}}\n")
	fail := true
	h.w.handler = func(host, cmd string) (string, int, error) {
		if cmd == "a" && fail {
			return "", 1, nil
		}
		if strings.HasPrefix(cmd, "check ") {
			return "", 1, nil
		}
		return "", 0, nil
	}
	o := h.opts()
	o.CollectFacts = func(context.Context) (*facts.Facts, error) {
		return factsOf(liveMember{name: "m1", api: "down", hostAsked: true}), nil
	}
	_, err := h.apply(o)
	re := runErrOf(t, err)
	fail = false
	res, err := h.resume(re.RunID, o)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	dir := filepath.Join(res.StateDir, "runs", res.RunID, "evidence")
	if _, err := os.Stat(filepath.Join(dir, "facts-session-2.json")); err != nil {
		t.Errorf("no facts of session 2: %v", err)
	}
	sum := readFile(t, filepath.Join(dir, "summary.md"))
	if !strings.Contains(sum, "| 1 | apply |") || !strings.Contains(sum, "| 2 | resume |") || !strings.Contains(sum, "failed") {
		t.Errorf("summary does not show both sessions:\n%s", sum)
	}
}

// Without a collector and with a fake backend, nothing is collected, and
// the evidence says so.
func TestFactsNotCollected(t *testing.T) {
	h := newHarness(t, "", "  - {id: a, type: run, on: h1, with: {cmd: a}}\n")
	res, err := h.apply(h.opts())
	if err != nil {
		t.Fatal(err)
	}
	sum := readFile(t, filepath.Join(res.StateDir, "runs", res.RunID, "evidence", "summary.md"))
	if !strings.Contains(sum, "facts not collected") || !strings.Contains(sum, "members before: not collected") {
		t.Errorf("summary:\n%s", sum)
	}
}
