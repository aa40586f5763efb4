package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/steps"

	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
)

// sshPlan writes a plan whose one host is the test sshd on 127.0.0.1.
func sshPlan(t *testing.T, srv *sshxtest.Server, dir, stepsYAML string) string {
	t.Helper()
	plan := fmt.Sprintf(`version: 1
name: smoke
cluster:
  name: smoke
  token: smoke-1
  etcdVersion: "3.5.17"
  layout: {dataDir: %[1]s/etcd-data}
  members:
    - {name: m1, host: local, peerURL: "http://127.0.0.1:2380", clientURL: "http://127.0.0.1:2379"}
hosts:
  local: {address: 127.0.0.1, port: %[2]d}
ssh: {user: %[3]s, identity: %[4]s, knownHosts: %[5]s}
vars: {dir: %[1]s, apiPassword: hunter2-SMOKE-secret}
steps:
%[6]s`, dir, srv.Port, srv.User, srv.ClientKey, srv.KnownHosts, stepsYAML)
	path := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(path, []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadReal(t *testing.T, path string) *Compiled {
	t.Helper()
	c, fs := Load(path, "")
	if c == nil || fs.Errors() > 0 {
		t.Fatalf("plan: %v", fs.Err())
	}
	return c
}

// One real run through the SSH backend: exec with creates, a wipe-dir that
// moves a directory aside under the run id, journal and checkpoint.
func TestApplyOverRealSSH(t *testing.T) {
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	plan := sshPlan(t, srv, dir, `
  - id: prepare
    type: exec
    on: all
    with: {command: "mkdir -p ${vars.dir}/etcd-old && echo keep > ${vars.dir}/etcd-old/f", creates: "${vars.dir}/etcd-old/f"}
  - id: aside
    type: wipe-dir
    on: all
    needs: [prepare]
    with: {path: "${vars.dir}/etcd-old", force: true}
  - id: mark
    type: exec
    on: all
    needs: [aside]
    with: {command: "echo ${vars.apiPassword} >/dev/null && touch ${vars.dir}/done", creates: "${vars.dir}/done"}
`)
	var progress strings.Builder
	o := Options{Progress: &syncWriter{w: &progress}}
	res, err := Apply(testCtx(t), loadReal(t, plan), o)
	if err != nil {
		t.Fatalf("apply: %v\nprogress:\n%s\nsshd log:\n%s", err, progress.String(), srv.Log())
	}
	if res.StateDir != filepath.Join(dir, runstate.DefaultStateDir) {
		t.Errorf("state dir %s, want beside the plan", res.StateDir)
	}
	// TestMain moves the host lock file (all hosts here are this machine):
	// every session says so, loudly.
	if !strings.Contains(progress.String(), "WARNING: "+HostLockFileEnv+"=") {
		t.Errorf("no warning that the host lock file is moved:\n%s", progress.String())
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etcd-old.rescue-"+res.RunID, "f")); err != nil || string(b) != "keep\n" {
		t.Errorf("moved-aside data: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd-old")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "done")); err != nil {
		t.Error(err)
	}
	wantStatuses(t, res.State, map[string]string{"prepare@local": "done", "aside@local": "done", "mark@local": "done"})
	hs := res.State.Find("aside", "local")
	if hs.Cmds != 1 || hs.Elapsed < hs.Remote {
		t.Errorf("times: %+v", hs)
	}

	run := filepath.Join(res.StateDir, "runs", res.RunID)
	ev := readFile(t, filepath.Join(run, "events.jsonl"))
	st := readFile(t, filepath.Join(run, "state.json"))
	// Over SSH the session collects the facts before and after itself;
	// the journal says what they cost (the added wall time of an apply).
	for _, f := range []string{"facts-before.json", "facts-after.json", "summary.md"} {
		if _, err := os.Stat(filepath.Join(run, "evidence", f)); err != nil {
			t.Errorf("evidence: %v", err)
		}
	}
	for _, l := range strings.Split(ev, "\n") {
		if strings.Contains(l, `"type":"facts"`) {
			t.Log(l)
		}
	}
	// The journal says how each host was reached.
	if want := fmt.Sprintf(`"host":"local","msg":"ssh %s@127.0.0.1:%d, host key known_hosts %s"`, srv.User, srv.Port, srv.KnownHosts); !strings.Contains(ev, want) {
		t.Errorf("the journal lacks the route of host local (%s):\n%s", want, ev)
	}
	for name, text := range map[string]string{"events": ev, "state": st, "progress": progress.String()} {
		if strings.Contains(text, "hunter2-SMOKE-secret") {
			t.Errorf("%s holds the secret", name)
		}
	}
	var cmds int
	for _, line := range strings.Split(strings.TrimSpace(ev), "\n") {
		var e runstate.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		if e.Type == "cmd" {
			cmds++
			if e.Exit == nil || e.DurationMs == nil || e.Host != "local" {
				t.Errorf("cmd event lacks exit/duration/host: %s", line)
			}
		}
	}
	// exec creates-check (x2), exec (x2), wipe-dir: 5 commands.
	if cmds != 5 {
		t.Errorf("%d cmd events, want 5:\n%s", cmds, ev)
	}

	// A second run: mark's creates: holds, so it is not run again; the
	// data dir was moved aside, so prepare and aside run again under the
	// new run id.
	res2, err := Apply(testCtx(t), loadReal(t, plan), o)
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if why := res2.State.Find("mark", "local").Why; !strings.Contains(why, "already done") {
		t.Errorf("second apply re-ran mark: %q", why)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd-old.rescue-"+res2.RunID, "f")); err != nil {
		t.Errorf("second run's aside dir: %v", err)
	}
}

// A connection killed while a command runs: the outcome is unknown, the
// engine reconnects, probes with the Check and re-applies what is safe.
func TestDroppedConnectionIsProbed(t *testing.T) {
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	plan := sshPlan(t, srv, dir, `
  - id: slow
    type: exec
    on: all
    with: {command: "if [ -e ${vars.dir}/started ]; then touch ${vars.dir}/finished; else touch ${vars.dir}/started; sleep 61.25; touch ${vars.dir}/late; fi", creates: "${vars.dir}/finished"}
`)
	killed := make(chan int, 1)
	go func() {
		// Wait (bounded by the test's context) for the command to start,
		// then drop every connection without a goodbye.
		ctx := testCtx(t)
		for ctx.Err() == nil {
			if _, err := os.Stat(started); err == nil {
				killed <- srv.KillConnections()
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
		killed <- 0
	}()
	var progress strings.Builder
	res, err := Apply(testCtx(t), loadReal(t, plan), Options{Progress: &syncWriter{w: &progress}, RetryDelay: -1})
	if n := <-killed; n == 0 {
		t.Fatal("no connection was killed")
	}
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, progress.String())
	}
	hs := res.State.Find("slow", "local")
	if hs.Status != runstate.StatusDone || hs.Attempts != 2 {
		t.Errorf("slow: %+v\n%s", hs, progress.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "finished")); err != nil {
		t.Error(err)
	}
	// The first attempt's command outlived its connection; it was killed
	// (shell included) before the probe, so it never reaches "late".
	if left := sshxtest.ProcessesMatching("sleep 61.25"); len(left) != 0 {
		t.Errorf("the first attempt is still running: pids %v", left)
	}
	if !strings.Contains(progress.String(), "killed 2 process(es) left running by the earlier attempt") {
		t.Errorf("no reap reported:\n%s", progress.String())
	}
}

// A host key that known_hosts does not hold stops apply before its first
// change, even for a step that skips unreachable hosts: it is never
// treated as an unreachable host, and no run is created.
func TestUnknownHostKeyFails(t *testing.T) {
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	srv.KnownHosts = filepath.Join(dir, "empty_known_hosts")
	if err := os.WriteFile(srv.KnownHosts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	plan := sshPlan(t, srv, dir, `
  - {id: stop-api, type: stop-service, on: all, with: {unit: kube-apiserver, unreachable: skip}}
`)
	state := filepath.Join(dir, "state")
	_, err := Apply(testCtx(t), loadReal(t, plan), Options{RetryDelay: -1, StateDir: state})
	var ge *HostGateError
	if !errors.As(err, &ge) {
		t.Fatalf("want a *HostGateError, got %v", err)
	}
	for _, want := range []string{"host key unknown", "host key verification failed", "nothing was changed on any host", "ssh-keyscan -p", "needed by step stop-api"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if len(ge.Hosts) != 1 || ge.Hosts[0].Reach != facts.ReachHostKeyUnknown {
		t.Errorf("hosts: %+v", ge.Hosts)
	}
	if runs, _ := os.ReadDir(filepath.Join(state, "runs")); len(runs) != 0 {
		t.Errorf("a run was created: %v", runs)
	}
}

// The etcd API reached through the host's SSH connection (clientAccess:
// ssh-tunnel): check-quorum records the revision as a fact, wait-healthy
// and verify-data pass against a real etcd.
func TestEtcdThroughSSHTunnel(t *testing.T) {
	srv, m, res := applyAPIPlan(t, "ssh-tunnel")
	ev := readFile(t, filepath.Join(res.StateDir, "runs", res.RunID, "events.jsonl"))
	if !strings.Contains(ev, `"type":"etcd"`) || !strings.Contains(ev, "health "+m.ClientURL) {
		t.Errorf("etcd calls not journaled:\n%s", ev)
	}
	// No step of this plan runs a shell command: the only reason to log in
	// to sshd is the tunnel to the client URL.
	if !strings.Contains(srv.Log(), "Accepted publickey") {
		t.Errorf("the etcd API did not go through sshd:\n%s", srv.Log())
	}
}

// clientAccess: direct dials the client URLs from the operator machine:
// the same plan passes without any SSH login.
func TestEtcdDirect(t *testing.T) {
	srv, m, res := applyAPIPlan(t, "direct")
	ev := readFile(t, filepath.Join(res.StateDir, "runs", res.RunID, "events.jsonl"))
	if !strings.Contains(ev, "health "+m.ClientURL) {
		t.Errorf("etcd calls not journaled:\n%s", ev)
	}
	if strings.Contains(srv.Log(), "Accepted publickey") {
		t.Errorf("clientAccess: direct logged in to sshd:\n%s", srv.Log())
	}
}

// applyAPIPlan applies a plan of API-only steps (check-quorum,
// wait-healthy, verify-data) against a real one-member etcd, reached as
// access says, and checks what the steps recorded.
func applyAPIPlan(t *testing.T, access string) (*sshxtest.Server, *etcdtest.Member, *Result) {
	t.Helper()
	srv := sshxtest.Start(t)
	m := etcdtest.Start(t, etcdtest.Options{Name: "m1"})
	m.WaitHealthy(t)
	dir := t.TempDir()
	plan := sshPlan(t, srv, dir, `
  - {id: record, type: check-quorum, with: {expect: present}}
  - {id: healthy, type: wait-healthy, needs: [record], with: {within: 30s}}
  - {id: same, type: verify-data, needs: [healthy]}
`)
	b := readFile(t, plan)
	b = strings.ReplaceAll(b, "http://127.0.0.1:2379", m.ClientURL)
	b = strings.ReplaceAll(b, "http://127.0.0.1:2380", m.PeerURL)
	b = strings.Replace(b, "  etcdVersion:", "  clientAccess: "+access+"\n  etcdVersion:", 1)
	if err := os.WriteFile(plan, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	// No session facts: their collection logs in to every host, and these
	// tests tell from sshd's log whether the etcd API went through it.
	noFacts := func(context.Context) (*facts.Facts, error) { return nil, nil }
	res, err := Apply(testCtx(t), loadReal(t, plan), Options{Progress: &syncWriter{w: &progress}, CollectFacts: noFacts})
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, progress.String())
	}
	if res.State.Facts["cluster.preRevision"] == "" {
		t.Errorf("no revision recorded: %v", res.State.Facts)
	}
	if hs := res.State.Find("healthy", ""); hs.Status != runstate.StatusDone || hs.Cmds != 0 {
		t.Errorf("healthy: %+v", hs)
	}
	return srv, m, res
}

// insecureIgnoreHostKey works (for labs) and is announced on every run.
func TestInsecureHostKeyIsLoud(t *testing.T) {
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	srv.KnownHosts = filepath.Join(dir, "empty_known_hosts")
	if err := os.WriteFile(srv.KnownHosts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	plan := sshPlan(t, srv, dir, `
  - {id: x, type: exec, on: all, with: {command: "true"}}
`)
	b := strings.Replace(readFile(t, plan), "knownHosts:", "insecureIgnoreHostKey: true, knownHosts:", 1)
	if err := os.WriteFile(plan, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	res, err := Apply(testCtx(t), loadReal(t, plan), Options{Progress: &syncWriter{w: &progress}})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if !strings.Contains(progress.String(), "WARNING: host key of local is NOT verified") {
		t.Errorf("no warning:\n%s", progress.String())
	}
	if ev := readFile(t, filepath.Join(res.StateDir, "runs", res.RunID, "events.jsonl")); !strings.Contains(ev, "host key not verified") || !strings.Contains(ev, ", host key NOT verified") {
		t.Errorf("no warning in the journal:\n%s", ev)
	}
}

// spyBackend wraps the real SSH backend; before each command, hook may
// stop it with an error (the command then never runs).
type spyBackend struct {
	Backend
	hook func(host, cmd string) error
}

func (s *spyBackend) Shell(host string) (steps.Runner, error) {
	r, err := s.Backend.Shell(host)
	if err != nil {
		return nil, err
	}
	return &spyRunner{Runner: r, host: host, hook: s.hook}, nil
}

type spyRunner struct {
	steps.Runner
	host string
	hook func(host, cmd string) error
}

func (s *spyRunner) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	if err := s.hook(s.host, cmd); err != nil {
		return nil, err
	}
	return s.Runner.Run(ctx, cmd, stdin)
}

// A real restore over SSH, interrupted just before the restored dir is
// renamed into place, then resumed: the probe finds no member, restore is
// repeated with the SAME recorded bump, and etcd starts on the result with
// the data and a revision above the pre-disaster one.
func TestRestoreInterruptedThenResumed(t *testing.T) {
	// The static-pod stop waits until crictl lists no running etcd
	// container: this machine's stands in for a host whose kubelet has
	// stopped the pod (the hook below stops the real etcd).
	fakeBin := t.TempDir()
	if err := os.WriteFile(filepath.Join(fakeBin, "crictl"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := sshxtest.Start(t, sshxtest.Options{Env: []string{"PATH=" + fakeBin + ":" + os.Getenv("PATH")}})
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "lab", "bin", "v3.5.35")
	if _, err := os.Stat(filepath.Join(bin, "etcdutl")); err != nil {
		sshxtest.Require(t, bin+"/etcdutl", "make etcd-bins (lab/build-etcd.sh)")
	}
	orig := etcdtest.Start(t, etcdtest.Options{Binary: filepath.Join(bin, "etcd"), Name: "m1"})
	orig.WaitHealthy(t)
	api, err := etcdapi.New(etcdapi.Config{Endpoints: []string{orig.ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	for i := 0; i < 20; i++ {
		if _, err := api.Raw().Put(testCtx(t), fmt.Sprintf("/k/%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	plan := sshPlan(t, srv, dir, `
  - {id: record, type: check-quorum}
  - {id: save, type: snapshot-save, on: m1, needs: [record], with: {to: "${vars.dir}/backup/snap.db"}}
  - {id: stop, type: stop-service, on: all, needs: [save]}
  - {id: wipe, type: wipe-dir, on: all, needs: [stop]}
  - {id: ship, type: snapshot-copy, on: all, needs: [save], with: {from: "${vars.dir}/backup/snap.db", to: "${vars.dir}/remote/snap.db"}}
  - {id: check, type: snapshot-verify, on: all, needs: [ship], with: {file: "${vars.dir}/remote/snap.db"}}
  - {id: restore, type: restore, on: all, needs: [wipe, check], with: {snapshot: "${vars.dir}/remote/snap.db", margin: 1000, apiServerRunning: allow}}
  - {id: start, type: start-service, on: all, needs: [restore], with: {missingOK: true}}
`)
	b := readFile(t, plan)
	b = strings.ReplaceAll(b, "http://127.0.0.1:2379", orig.ClientURL)
	b = strings.ReplaceAll(b, "http://127.0.0.1:2380", orig.PeerURL)
	// A static-pod layout whose manifest lives in the temp dir: stop-service
	// parks a file instead of touching this machine's services.
	b = strings.Replace(b, "  layout: {", fmt.Sprintf("  layout: {service: static-pod, manifest: %s/manifests/etcd.yaml, owner: \"\", binDir: %s, ", dir, bin), 1)
	b = strings.Replace(b, `etcdVersion: "3.5.17"`, `etcdVersion: "3.5.35"`, 1)
	if err := os.WriteFile(plan, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "etcd-data")
	if err := os.MkdirAll(filepath.Join(dataDir, "member", "old"), 0o700); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	var bumps []string
	var mu sync.Mutex
	var stopped sync.Once
	hook := func(host, cmd string) error {
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(cmd, "manifests/etcd.yaml") {
			// parking the manifest stands for stopping etcd: stop the real
			// one, as the kubelet would (wipe-dir and restore check live
			// that no member of the cluster being replaced still answers)
			stopped.Do(orig.Stop)
		}
		if i := strings.Index(cmd, "--bump-revision "); i >= 0 {
			bumps = append(bumps, strings.Fields(cmd[i:])[1])
		}
		if strings.HasPrefix(cmd, "{ [ ! -e ") && len(bumps) == 1 {
			cancel() // the operator's second Ctrl-C, just before the rename
			return context.Canceled
		}
		return nil
	}
	o := Options{RetryDelay: -1, Backend: func(c *Compiled) (Backend, error) {
		b, err := NewSSHBackend(c.Plan)
		return &spyBackend{Backend: b, hook: hook}, err
	}}
	var progress strings.Builder
	o.Progress = &syncWriter{w: &progress}
	res, err := Apply(ctx, loadReal(t, plan), o)
	if re := runErrOf(t, err); !re.Interrupted {
		t.Fatalf("want interrupted, got %v\n%s", err, progress.String())
	}
	wantStatuses(t, res.State, map[string]string{"wipe@local": "done", "restore@local": "failed"})
	if res.State.Facts["restore.bump"] == "" || res.State.Facts[steps.FactPreRevision] == "" {
		t.Fatalf("facts: %v", res.State.Facts)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "member")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("data dir should be empty before the rename: %v", err)
	}

	o.StateDir = res.StateDir
	res, err = Resume(testCtx(t), res.RunID, o)
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, progress.String())
	}
	if len(bumps) != 2 || bumps[0] != bumps[1] || bumps[0] != res.State.Facts["restore.bump"] {
		t.Errorf("bumps %v, fact %s", bumps, res.State.Facts["restore.bump"])
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd-data.rescue-"+res.RunID, "member", "old")); err != nil {
		t.Errorf("old data not kept aside: %v", err)
	}

	// The restored member starts and has the data, above the old revision.
	pre := res.State.Facts[steps.FactPreRevision]
	orig.Stop()
	restored := etcdtest.Start(t, etcdtest.Options{Binary: filepath.Join(bin, "etcd"), Name: "m1", DataDir: dataDir, PeerURL: orig.PeerURL})
	restored.WaitHealthy(t)
	api2, err := etcdapi.New(etcdapi.Config{Endpoints: []string{restored.ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer api2.Close()
	got, err := api2.Raw().Get(testCtx(t), "/k/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || got.Count != 20 {
		t.Fatalf("restored keys: %v %v", got, err)
	}
	// Nothing was written between record and save, so the snapshot's
	// revision is the recorded one and the bump adds exactly the margin.
	preN, _ := strconv.ParseInt(pre, 10, 64)
	bumpN, _ := strconv.ParseInt(res.State.Facts["restore.bump"], 10, 64)
	if bumpN != 1000 || got.Header.Revision < preN+bumpN {
		t.Errorf("revision %d, want at least %d + %d", got.Header.Revision, preN, bumpN)
	}
}
