package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// noTTY makes the commands see no terminal (and restores the default).
func noTTY(t *testing.T) {
	t.Helper()
	old := terminal
	terminal.isTTY = func() bool { return false }
	terminal.in = strings.NewReader("")
	t.Cleanup(func() { terminal = old })
}

// copyExample copies an example plan into a fresh directory.
func copyExample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../examples", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// failingBackend answers every command with exit 1: enough to leave a
// failed run in a state dir without any host.
type failingBackend struct{}

func (failingBackend) Shell(host string) (steps.Runner, error) { return failingRunner{host}, nil }
func (failingBackend) Etcd(context.Context) (steps.Etcd, error) {
	return nil, errors.New("no etcd here")
}
func (failingBackend) Close() error { return nil }

type failingRunner struct{ host string }

func (r failingRunner) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	return nil, &steps.ExitError{Host: r.host, Cmd: cmd, Code: 1, Stderr: "nope"}
}
func (r failingRunner) Upload(ctx context.Context, local, remote string, mode os.FileMode) (string, error) {
	return "", errors.New("nope")
}

// failedRun leaves a failed run of plan in stateDir and returns its id.
func failedRun(t *testing.T, plan, stateDir string) string {
	t.Helper()
	c, fs := engine.Load(plan, "")
	if c == nil {
		t.Fatal(fs.Err())
	}
	res, err := engine.Apply(context.Background(), c, engine.Options{StateDir: stateDir, RetryDelay: -1,
		Backend: func(*engine.Compiled) (engine.Backend, error) { return failingBackend{}, nil }})
	var re *engine.RunError
	if !errors.As(err, &re) {
		t.Fatalf("want a failed run, got %v", err)
	}
	return res.RunID
}

func TestRunCommandsBadInput(t *testing.T) {
	noTTY(t)
	plan := copyExample(t, "restore-all-from-snapshot.yaml")
	state := filepath.Join(t.TempDir(), "state")
	runID := failedRun(t, plan, state)

	cases := map[string]struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		"apply no file":         {[]string{"apply"}, 2, "", "apply needs exactly one plan file"},
		"apply missing plan":    {[]string{"apply", "--yes", "nope.yaml"}, 2, "", "cannot read plan"},
		"apply invalid plan":    {[]string{"apply", "--yes", "../../engine/testdata/bad/cycle.yaml"}, 2, "", "dependency cycle"},
		"apply without tty":     {[]string{"apply", plan}, 2, "", "hint: review the dry-run"},
		"apply bad parallelism": {[]string{"apply", "--yes", "--parallelism", "0", plan}, 2, "", "--parallelism"},
		"apply approve unknown": {[]string{"apply", "--yes", "--state-dir", state, "--approve", "nope", plan}, 2, "", `no step "nope"`},
		"resume no run":         {[]string{"resume", "--yes"}, 2, "", "resume needs exactly one run id"},
		"resume unknown run":    {[]string{"resume", "--yes", "--state-dir", state, "20000101T000000Z-0000"}, 2, "", "no run 20000101T000000Z-0000"},
		"resume no state dir":   {[]string{"resume", "--yes", "--state-dir", "/nonexistent/x", runID}, 2, "", "no state dir"},
		"resume without tty":    {[]string{"resume", "--state-dir", state, runID}, 2, "", "hint: look at etcd-rescue status"},
		"resume bad rerun":      {[]string{"resume", "--yes", "--state-dir", state, "--rerun", "nope@node1", runID}, 2, "", `--rerun nope@node1: no step "nope"`},
		"resume bad host":       {[]string{"resume", "--yes", "--state-dir", state, "--mark-done", "restore@node9", runID}, 2, "", "does not run on host"},
		"status no state":       {[]string{"status", "--state-dir", "/nonexistent/x"}, 2, "", "no state dir"},
		"status bad output":     {[]string{"status", "-o", "yaml", "--state-dir", state}, 2, "", `unknown output "yaml"`},
		"status latest":         {[]string{"status", "--state-dir", state}, 0, "not run: step record did not complete", ""},
		"status by path":        {[]string{"status", filepath.Join(state, "runs", runID)}, 0, "run " + runID, ""},
		"runs":                  {[]string{"runs", "--state-dir", state}, 0, runID + "  restore-all-from-snapshot  failed", ""},
		"runs no state":         {[]string{"runs", "--state-dir", "/nonexistent/x"}, 2, "", "no state dir"},
		"unlock without force":  {[]string{"unlock", "--state-dir", state}, 2, "", "needs --force"},
		"unlock free":           {[]string{"unlock", "--force", "--state-dir", state}, 0, "", ""},
		"unlock two runs":       {[]string{"unlock", "--force", runID, runID}, 2, "", "at most one run id"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			if !strings.Contains(out, tc.inStdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.inStdout, out)
			}
			if !strings.Contains(errs, tc.inStderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.inStderr, errs)
			}
		})
	}
}

func TestRunCommandsLockedAndStale(t *testing.T) {
	noTTY(t)
	plan := copyExample(t, "restore-all-from-snapshot.yaml")
	state := filepath.Join(t.TempDir(), "state")
	runID := failedRun(t, plan, state)

	store, err := runstate.OpenStore(state)
	if err != nil {
		t.Fatal(err)
	}
	lock, err := store.Lock("20261122T031500Z-beef", "apply")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"apply", "--yes", "--state-dir", state, plan},
		{"resume", "--yes", "--state-dir", state, runID},
		{"unlock", "--force", "--state-dir", state},
	} {
		code, _, errs := runCLI(args...)
		if code != 3 || !strings.Contains(errs, "locked by another run: pid ") || !strings.Contains(errs, "20261122T031500Z-beef") {
			t.Errorf("%s while locked: exit %d\n%s", args[0], code, errs)
		}
	}
	code, out, _ := runCLI("status", "--state-dir", state, runID)
	if code != 0 || !strings.Contains(out, "outcome failed") {
		t.Errorf("status while locked: %d %s", code, out)
	}
	lock.Release()

	// The plan changes: resume refuses with exit 3 and a hint.
	b, _ := os.ReadFile(plan)
	if err := os.WriteFile(plan, append(b, "# edited\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI("resume", "--yes", "--state-dir", state, runID)
	if code != 3 || !strings.Contains(errs, "changed since the run began") || !strings.Contains(errs, "hint: etcd-rescue status "+runID) {
		t.Errorf("stale resume: exit %d\n%s", code, errs)
	}
	// The state is untouched by the refusals.
	st, err := store.Load(runID)
	if err != nil || st.Sessions != 1 {
		t.Errorf("state after refusals: %+v %v", st, err)
	}
}

// On a terminal, apply asks after the dry-run (and after the host gate:
// its host is reachable and trusted); anything but yes stops before a run
// is created.
func TestApplyAsksOnTTY(t *testing.T) {
	old := terminal
	t.Cleanup(func() { terminal = old })
	terminal.isTTY = func() bool { return true }
	terminal.in = strings.NewReader("no\n")
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.yaml")
	body := fmt.Sprintf(`version: 1
name: tty
cluster:
  name: tty
  token: tty-1
  etcdVersion: "3.6"
  clientAccess: direct
  layout: {dataDir: %[1]s/etcd-data}
  members:
    - {name: m1, host: local, peerURL: "http://127.0.0.1:2380", clientURL: "http://127.0.0.1:1"}
hosts:
  local: {address: 127.0.0.1, port: %[2]d}
ssh: {user: %[3]s, identity: %[4]s, knownHosts: %[5]s}
steps:
  - {id: aside, type: exec, on: all, with: {command: "mv %[1]s/etcd %[1]s/etcd.old", destructive: true, creates: "%[1]s/etcd.old"}}
`, dir, srv.Port, srv.User, srv.ClientKey, srv.KnownHosts)
	if err := os.WriteFile(plan, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	code, out, errs := runCLI("apply", "--state-dir", state, plan)
	if code != 1 || !strings.Contains(out, "etcd.old") || !strings.Contains(errs, `only "yes" proceeds`) || !strings.Contains(errs, "nothing was run") {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if ents, _ := os.ReadDir(filepath.Join(state, "runs")); len(ents) != 0 {
		t.Errorf("a run was created: %v", ents)
	}
}

// The whole command line against a real sshd: apply, status, runs.
func TestApplyCLIOverRealSSH(t *testing.T) {
	noTTY(t)
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.yaml")
	body := fmt.Sprintf(`version: 1
name: cli-smoke
cluster:
  name: smoke
  token: smoke-1
  etcdVersion: "3.6"
  layout: {dataDir: %[1]s/etcd-data}
  members:
    - {name: m1, host: local, peerURL: "http://127.0.0.1:2380", clientURL: "http://127.0.0.1:2379"}
hosts:
  local: {address: 127.0.0.1, port: %[2]d}
ssh: {user: %[3]s, identity: %[4]s, knownHosts: %[5]s}
vars: {dir: %[1]s, dbPassword: s3cret-CLI-value}
steps:
  - {id: make, type: exec, on: all, with: {command: "mkdir -p ${vars.dir}/etcd/member && echo ${vars.dbPassword} >/dev/null", creates: "${vars.dir}/etcd/member"}}
  - {id: ok, type: approve, needs: [make], with: {message: "go on"}}
  - {id: aside, type: wipe-dir, on: all, needs: [ok], with: {path: "${vars.dir}/etcd", force: true}}
`, dir, srv.Port, srv.User, srv.ClientKey, srv.KnownHosts)
	if err := os.WriteFile(plan, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// Without --approve, the approve step waits: exit 5 and the hint.
	code, out, errs := runCLI("apply", "--yes", plan)
	if code != 5 || !strings.Contains(errs, "--approve ok") {
		t.Fatalf("apply: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if strings.Contains(out+errs, "s3cret-CLI-value") {
		t.Error("the secret was printed")
	}
	state := filepath.Join(dir, ".etcd-rescue")
	code, out, errs = runCLI("runs", "--state-dir", state)
	if code != 0 || !strings.Contains(out, "cli-smoke  waiting") {
		t.Fatalf("runs: %d %s %s", code, out, errs)
	}
	runID := strings.Fields(strings.Split(out, "\n")[1])[0]
	code, out, errs = runCLI("resume", "--yes", "--state-dir", state, "--approve", "ok", runID)
	if code != 0 {
		t.Fatalf("resume: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	for _, want := range []string{"make@local done earlier", "aside@local running", "aside@local done", "STEP", "SSH (CMDS)", "ETCD API", "OTHER", ": done; step-hosts: 3 done"} {
		if !strings.Contains(out, want) {
			t.Errorf("resume output lacks %q:\n%s", want, out)
		}
	}
	// The engine's own time, in the form benchmarks parse.
	if !regexp.MustCompile(`(?m)^engine time: [0-9]+\.[0-9]{3} s \([0-9]+\.[0-9]% of [0-9]+\.[0-9]{3} s wall\)$`).MatchString(out) {
		t.Errorf("resume output lacks the engine time line:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd.rescue-"+runID, "member")); err != nil {
		t.Errorf("not moved aside: %v", err)
	}
	code, out, _ = runCLI("status", "-o", "json", "--state-dir", state, runID)
	var st struct {
		Outcome   string
		Approvals map[string]struct{ How string }
		Lock      struct{ Held bool }
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Outcome != "done" || st.Approvals["ok"].How != "flag" || st.Lock.Held {
		t.Errorf("status json: %d %s", code, out)
	}
	// Resuming a finished run changes nothing and succeeds.
	if code, out, errs = runCLI("resume", "--yes", "--state-dir", state, runID); code != 0 {
		t.Errorf("resume of a done run: %d %s %s", code, out, errs)
	}
}

// After a kill -9 the state says running and the lock file still names the
// dead process, but nobody holds the flock: status says so, and unlock
// --force clears the leftover.
func TestStatusAndUnlockAfterCrash(t *testing.T) {
	noTTY(t)
	plan := copyExample(t, "restore-all-from-snapshot.yaml")
	state := filepath.Join(t.TempDir(), "state")
	runID := failedRun(t, plan, state)
	store, _ := runstate.OpenStore(state)
	st, err := store.Load(runID)
	if err != nil {
		t.Fatal(err)
	}
	st.Outcome = runstate.OutcomeRunning
	b, _ := json.Marshal(st)
	if err := runstate.WriteFileAtomic(filepath.Join(state, "runs", runID, "state.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	info := `{"pid":999999,"host":"laptop","user":"sre","started":"2026-11-22T03:15:00Z","runId":"` + runID + `","command":"apply"}`
	if err := os.WriteFile(store.LockPath(), []byte(info), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI("status", "--state-dir", state)
	if code != 0 || !strings.Contains(out, "the engine stopped mid-run; resume it") {
		t.Errorf("status: %d\n%s", code, out)
	}
	code, out, errs := runCLI("unlock", "--force", "--state-dir", state)
	if code != 0 || !strings.Contains(out, "removed the lock left by pid 999999 on laptop") {
		t.Errorf("unlock: %d %s %s", code, out, errs)
	}
	if _, err := os.Stat(store.LockPath()); !os.IsNotExist(err) {
		t.Errorf("lock file still there: %v", err)
	}
}
