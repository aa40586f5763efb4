package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
)

// A missing local prerequisite (SSH identity, known_hosts, etcd TLS files)
// stops apply and resume with exit 4 before anything is run or written.
func TestMissingPrerequisiteExit4(t *testing.T) {
	noTTY(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	plan := copyExample(t, "restore-all-from-snapshot.yaml") // ssh.identity: ~/.ssh/id_ed25519
	state := filepath.Join(t.TempDir(), "state")

	code, _, errs := runCLI("apply", "--yes", "--state-dir", state, plan)
	if code != 4 {
		t.Fatalf("exit %d, want 4\n%s", code, errs)
	}
	want := "missing prerequisite: hosts node1, node2, node3: identity file " + filepath.Join(home, ".ssh/id_ed25519")
	if !strings.Contains(errs, want) || !strings.Contains(errs, "hint: nothing was run") {
		t.Errorf("stderr lacks %q and the hint:\n%s", want, errs)
	}
	if runs, _ := filepath.Glob(filepath.Join(state, "runs", "*")); len(runs) > 0 {
		t.Errorf("apply created runs %v although it stopped before running", runs)
	}

	// A usable key but an unreadable known_hosts, and the plan's TLS files
	// missing (relative to the plan's directory): every problem at once.
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	sshxtest.WriteKey(t, filepath.Join(home, ".ssh", "id_ed25519"))
	if err := os.Mkdir(filepath.Join(home, ".ssh", "known_hosts"), 0o700); err != nil { // a dir: unreadable as a file
		t.Fatal(err)
	}
	backup := copyExample(t, "backup.yaml") // tls: {ca: pki/ca.crt, ...}
	code, _, errs = runCLI("apply", "--yes", "--state-dir", state, backup)
	if code != 4 {
		t.Fatalf("exit %d, want 4\n%s", code, errs)
	}
	for _, w := range []string{"missing prerequisites:", "reading known_hosts " + filepath.Join(home, ".ssh", "known_hosts"),
		"etcd tls ca: open " + filepath.Join(filepath.Dir(backup), "pki", "ca.crt")} {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}

	// resume of a run whose prerequisites went missing: exit 4, checkpoint untouched.
	if err := os.Remove(filepath.Join(home, ".ssh", "known_hosts")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(home, ".ssh", "id_ed25519")); err != nil {
		t.Fatal(err)
	}
	runID := failedRun(t, plan, state)
	store, id, err := runstate.LocateRun(state, runID)
	if err != nil {
		t.Fatal(err)
	}
	before, err := store.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI("resume", "--yes", "--state-dir", state, runID)
	if code != 4 || !strings.Contains(errs, "identity file") {
		t.Fatalf("resume: exit %d, want 4 naming the identity file\n%s", code, errs)
	}
	after, err := store.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if after.Sessions != before.Sessions || !after.Updated.Equal(before.Updated) {
		t.Errorf("resume changed the checkpoint: sessions %d -> %d, updated %s -> %s", before.Sessions, after.Sessions, before.Updated, after.Updated)
	}
}

// An operator in another directory finds the run apply put beside its plan:
// runs lists it with its state dir, status and resume take its id alone.
func TestRunsFoundThroughTheIndex(t *testing.T) {
	noTTY(t)
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	plan := copyExample(t, "restore-all-from-snapshot.yaml")
	runID := failedRun(t, plan, "") // state in .etcd-rescue beside the plan
	stateDir := filepath.Join(filepath.Dir(plan), ".etcd-rescue")

	old, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chdir(old) })

	code, out, errs := runCLI("runs")
	if code != 0 || !strings.Contains(out, "STATE DIR") || !strings.Contains(out, runID+"  restore-all-from-snapshot  failed") || !strings.Contains(out, stateDir) {
		t.Errorf("runs: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCLI("status", runID)
	if code != 0 || !strings.Contains(out, "run "+runID) {
		t.Errorf("status %s: exit %d\n%s%s", runID, code, out, errs)
	}
	// resume finds it too; it fails again with the same backend, and the
	// hint names the state dir.
	oldOpts := testOptions
	testOptions = func(o *engine.Options) {
		o.Backend = func(*engine.Compiled) (engine.Backend, error) { return failingBackend{}, nil }
		o.RetryDelay = -1
	}
	t.Cleanup(func() { testOptions = oldOpts })
	code, out, errs = runCLI("resume", "--yes", runID)
	if code != 1 || !strings.Contains(out, "run "+runID+", state in "+filepath.Join(stateDir, "runs", runID)) || !strings.Contains(errs, "--state-dir "+stateDir) {
		t.Errorf("resume %s: exit %d\n%s%s", runID, code, out, errs)
	}
	code, out, errs = runCLI("unlock", "--force", runID)
	if code != 0 || !strings.Contains(out, "no lock held") {
		t.Errorf("unlock --force %s: exit %d\n%s%s", runID, code, out, errs)
	}
	code, out, errs = runCLI("unlock", "--force") // the latest run's state dir
	if code != 0 || !strings.Contains(out, "no lock held") {
		t.Errorf("unlock --force: exit %d\n%s%s", code, out, errs)
	}
	code, _, errs = runCLI("status", "20000101T000000Z-0000")
	if code != 2 || !strings.Contains(errs, "no run 20000101T000000Z-0000 in the run index") {
		t.Errorf("status of an unknown run: exit %d\n%s", code, errs)
	}
}
