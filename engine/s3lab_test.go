package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/objstore"
	"github.com/etcd-rescue/etcd-rescue/internal/weedserver/weedtest"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// The S3Lab tests run the steps through the real S3 client (newObjectStore)
// against a real SeaweedFS that the test starts (weedtest) on 127.0.0.1
// with TLS and a static identity: lab/bin/seaweedfs/weed (make s3-bins),
// or the binary ETCD_RESCUE_WEED names. They skip when the binary is
// missing (under CI=true they fail).

// s3LabStore starts weed with bucket etcd-backups and returns the s3:
// section and vars of a plan that reach it.
func s3LabStore(t *testing.T) (section, vars string) {
	t.Helper()
	srv := weedtest.StartT(t, weedtest.Options{AccessKey: "AKS3LABSTEPS", SecretKey: "s3lab-steps-secret-0001", Buckets: []string{"etcd-backups"}})
	section = fmt.Sprintf("s3:\n  endpoint: %s\n  region: %s\n  pathStyle: true\n  ca: %s\n  accessKey: ${vars.s3AccessKey}\n  secretKey: ${vars.s3SecretKey}\n", srv.Endpoint, srv.Region, srv.CAFile)
	vars = fmt.Sprintf("  s3AccessKey: %s\n  s3SecretKey: %s\n", srv.AccessKey, srv.SecretKey)
	return section, vars
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Two backups through the real client, keep {last: 1}: the second run's
// retention deletes the first object; then a restore plan's fetch with
// select: latest downloads exactly the second snapshot, verified, before
// its host step runs, and records it.
func TestS3LabSaveRetentionFetch(t *testing.T) {
	section, vars := s3LabStore(t)
	saveSteps := `
  - {id: save, type: snapshot-save, on: h1, with: {to: "s3://etcd-backups/prod/etcd-${run.id}.db", keep: {last: 1}}}
`
	var keys []string
	var snaps [][]byte
	for i := range 2 {
		h := newS3HarnessWith(t, section, vars, saveSteps)
		snap := snapshotBytes(strings.Repeat(fmt.Sprint(i), 24<<20))
		h.withSnapshot(snap)
		res, err := h.apply(h.opts())
		if err != nil {
			t.Fatalf("backup %d: %v\n%s", i, err, h.progress.String())
		}
		keys = append(keys, "s3://etcd-backups/prod/etcd-"+res.RunID+".db")
		snaps = append(snaps, snap)
		journal := readFile(t, filepath.Join(h.stateDir, "runs", res.RunID, "events.jsonl"))
		if !strings.Contains(journal, "s3 upload "+keys[i]+" 24.0 MiB of 24.0 MiB") || !strings.Contains(journal, "uploaded and verified "+keys[i]) {
			t.Errorf("backup %d: journal lacks the upload lines", i)
		}
		if i == 1 && !strings.Contains(journal, "retention: deleted "+keys[0]) {
			t.Errorf("second backup did not delete the first: %s", lastLines(journal, 5))
		}
		if strings.Contains(journal, "s3lab-steps-secret") {
			t.Errorf("the secret key is in the journal")
		}
		time.Sleep(1100 * time.Millisecond) // distinct upload times
	}
	fetchSteps := `
  - {id: fetch, type: snapshot-fetch, with: {from: "s3://etcd-backups/prod/", select: latest, to: "snap/restore-${run.id}.db"}}
  - {id: first, type: run, on: h1, with: {cmd: touch-host}}
`
	h := newS3HarnessWith(t, section, vars, fetchSteps)
	res, err := h.apply(h.opts())
	if err != nil {
		t.Fatalf("fetch: %v\n%s", err, h.progress.String())
	}
	file := filepath.Join(h.dir, "snap", "restore-"+res.RunID+".db")
	got, err := os.ReadFile(file)
	if err != nil || string(got) != string(snaps[1]) {
		t.Fatalf("fetched file is not the newest snapshot (%d bytes): %v", len(got), err)
	}
	if fact := res.State.Facts[steps.FactFetched(file)]; !strings.HasSuffix(fact, " "+keys[1]) || !strings.HasPrefix(fact, sum(snaps[1])+" ") {
		t.Errorf("fact %q, want the sha256 and key of %s", fact, keys[1])
	}
	if h.w.ran("h1", "touch-host") != 1 {
		t.Errorf("host step did not run after the fetch: %v", h.w.commands())
	}
}

// A backup killed mid-upload (the crash failpoint on a progress line, in a
// child process) leaves no object; the resumed run saves and uploads again
// and ends with one verified object. The killed upload is an incomplete
// multipart upload, never an object.
func TestS3LabSaveKilledMidUploadResumes(t *testing.T) {
	if dir := os.Getenv("S3LAB_CHILD_DIR"); dir != "" {
		h := &harness{t: t, dir: dir, w: &world{}, stateDir: filepath.Join(dir, "state"), plan: filepath.Join(dir, "plan.yaml")}
		h.withSnapshot(s3LabSnap())
		_, err := h.apply(h.opts())
		t.Fatalf("the failpoint did not kill the process: %v", err)
	}
	section, vars := s3LabStore(t)
	h := newS3HarnessWith(t, section, vars, `
  - {id: save, type: snapshot-save, on: h1, with: {to: "s3://etcd-backups/crash/etcd-${run.id}.db", keep: {last: 3}}}
`)
	cmd := exec.Command(os.Args[0], "-test.run=^TestS3LabSaveKilledMidUploadResumes$", "-test.count=1")
	cmd.Env = append(os.Environ(), "S3LAB_CHILD_DIR="+h.dir, CrashAfterEnv+"=s3 upload s3://etcd-backups/crash/")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("want the child killed by SIGKILL, got %v\n%s", err, lastLines(string(out), 20))
	}
	runs, _ := (&runstate.Store{Dir: h.stateDir}).Runs()
	if len(runs) != 1 {
		t.Fatalf("runs %v", runs)
	}
	runID := runs[0]
	key := "s3://etcd-backups/crash/etcd-" + runID + ".db"
	st, err := newObjectStore(storeCfg(t, h))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(context.Background(), s3Loc(key)); err == nil {
		t.Fatalf("an object exists after a kill mid-upload")
	}
	journal := readFile(t, filepath.Join(h.stateDir, "runs", runID, "events.jsonl"))
	if !strings.Contains(lastLines(journal, 1), "s3 upload "+key) {
		t.Fatalf("not killed on a progress line: %s", lastLines(journal, 2))
	}

	snap := s3LabSnap()
	h.withSnapshot(snap)
	res, err := h.resume(runID, h.opts())
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, h.progress.String())
	}
	wantStatuses(t, res.State, map[string]string{"save@h1": "done"})
	o, err := st.Verify(context.Background(), s3Loc(key), objstore.Meta{SHA256: sum(snap)})
	if err != nil || o.Meta.RunID != runID || o.Meta.Revision != 4242 {
		t.Fatalf("object after the resume: %+v %v", o.Meta, err)
	}
	objs, err := st.List(context.Background(), objstore.Location{Bucket: "etcd-backups", Key: "crash/"})
	if err != nil || len(objs) != 1 {
		t.Errorf("objects under crash/: %v %v", objs, err)
	}
}

func s3LabSnap() []byte { return snapshotBytes(strings.Repeat("c", 40<<20)) }

func s3Loc(u string) objstore.Location {
	l, _ := objstore.ParseURL(u)
	return l
}

// storeCfg is the object store configuration of h's plan.
func storeCfg(t *testing.T, h *harness) objstore.Config {
	t.Helper()
	c := compileTest(t, h.plan)
	cfg, err := StoreConfig(c.Plan)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
