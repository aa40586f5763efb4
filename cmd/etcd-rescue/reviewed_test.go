package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/facts"
)

// readFacts reads one of diagnose's facts fixtures.
func readFactsFixture(t *testing.T, name string) *facts.Facts {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../engine/diagnose/testdata/facts", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f facts.Facts
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

// worldIs makes every facts collection of plan --out and apply return the
// named fixture.
func worldIs(t *testing.T, name string) {
	t.Helper()
	f := readFactsFixture(t, name)
	old := collectFacts
	collectFacts = func(context.Context, *engine.Compiled, facts.Options) (*facts.Facts, error) { return f, nil }
	t.Cleanup(func() { collectFacts = old })
}

// Reviewed on a healthy cluster, applied after two members were lost:
// refused with exit 3, every drift listed, no state written; with
// --allow-drift the run starts and the journal records the drifts as
// accepted and the review it came from.
func TestApplyReviewedRefusesDrift(t *testing.T) {
	noTTY(t)
	plan := copyExample(t, "restore-all-from-snapshot.yaml")
	dir := filepath.Dir(plan)
	out := filepath.Join(dir, "x.plan")
	worldIs(t, "healthy-3-v3.5")
	if code, _, stderr := runCLI("plan", plan, "--out", out); code != 0 {
		t.Fatalf("plan --out: exit %d\n%s", code, stderr)
	}

	worldIs(t, "quorum-loss-3")
	stateDir := filepath.Join(dir, "state")
	code, stdout, stderr := runCLI("apply", out, "--yes", "--state-dir", stateDir)
	if code != exitLocked {
		t.Fatalf("exit %d, want 3\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"etcd-rescue: error: the cluster changed since the plan was reviewed (facts at 2026-03-14T03:12:07Z): 5 drift(s); nothing was changed\n",
		"\n  - h2: data dir /var/lib/etcd had member/ at review, now absent\n",
		"\n  - etcd2 answered at review (03:12:07 UTC), does not now: down",
		"\n  - no member knows a leader now; at review etcd1 (8e9e05c52164694d) led (quorum lost since?)\n",
		"\nhint: or apply it as reviewed anyway, accepting the drift: etcd-rescue apply " + out + " --allow-drift\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Errorf("state dir written on a refusal: %v", err)
	}

	testOptions = func(o *engine.Options) {
		o.RetryDelay = -1
		o.Backend = func(*engine.Compiled) (engine.Backend, error) { return failingBackend{}, nil }
	}
	t.Cleanup(func() { testOptions = nil })
	code, stdout, stderr = runCLI("apply", out, "--yes", "--allow-drift", "--state-dir", stateDir, "--progress", "plain")
	if code != exitFailed {
		t.Fatalf("--allow-drift: exit %d, want 1 (the fake hosts fail)\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	reviewedDry := mustDocDryRun(t, out)
	if !strings.HasPrefix(stdout, reviewedDry) {
		t.Errorf("apply did not show the reviewed dry-run first:\n%s", stdout)
	}
	if !strings.Contains(stdout, "DRIFT ACCEPTED (--allow-drift): etcd3 answered at review (03:12:07 UTC), does not now") {
		t.Errorf("stdout lacks the accepted drift:\n%s", stdout)
	}
	runs, _ := filepath.Glob(filepath.Join(stateDir, "runs", "*", "events.jsonl"))
	if len(runs) != 1 {
		t.Fatalf("journals: %v", runs)
	}
	f, err := os.Open(runs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	accepted, review := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev struct{ Type, Status, Msg string }
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		switch {
		case ev.Type == "drift" && ev.Status == "accepted":
			accepted++
		case ev.Type == "review" && strings.Contains(ev.Msg, "applying reviewed plan "+out) && strings.Contains(ev.Msg, "5 drift(s)"):
			review = true
		}
	}
	if accepted != 5 || !review {
		t.Errorf("journal: %d accepted drifts (want 5), review event %v", accepted, review)
	}

	// resume reloads the run's plan from the document, not from the YAML
	// file, which may have changed since review.
	runID := filepath.Base(filepath.Dir(runs[0]))
	if err := os.WriteFile(plan, []byte("edited after review\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCLI("resume", runID, "--yes", "--state-dir", stateDir, "--progress", "plain")
	if code != exitFailed || !strings.Contains(stdout, "plan restore-all-from-snapshot ("+out+")") {
		t.Fatalf("resume: exit %d, want 1 (the fake hosts fail again)\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// The document itself edited: the plan it holds no longer matches its
	// hash; the original plan's path changed (not hashed, but shown in
	// the dry-run): both refused as stale.
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for edit, want := range map[[2]string]string{
		{"name: restore-all-from-snapshot", "name: restore-all-from-snapshoT"}:           "do not match its hash",
		{`"path": "` + plan + `"`, `"path": "` + filepath.Join(dir, "other.yaml") + `"`}: "renders differently from the dry-run it holds, at line 1",
	} {
		edited := strings.Replace(string(b), edit[0], edit[1], 1)
		if edited == string(b) {
			t.Fatalf("%q is not in the document", edit[0])
		}
		if err := os.WriteFile(out, []byte(edited), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr = runCLI("resume", runID, "--yes", "--state-dir", stateDir)
		if code != exitLocked || !strings.Contains(stderr, want) {
			t.Errorf("resume after %s: exit %d, want 3 saying %q\n%s", edit[1], code, want, stderr)
		}
	}
}

func mustDocDryRun(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct{ DryRun string }
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.DryRun == "" {
		t.Fatal("no dry-run in the document")
	}
	return d.DryRun
}
