package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/objstore"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// The S3Lab tests run the steps through the real S3 client (newObjectStore)
// against a real SeaweedFS that the test starts on 127.0.0.1 with TLS and
// a static identity: lab/bin/seaweedfs/weed (make s3-bins), or the binary
// ETCD_RESCUE_WEED names. They skip when the binary is missing (under
// CI=true they fail).

// s3LabStore starts weed with bucket etcd-backups and returns the s3:
// section and vars of a plan that reach it.
func s3LabStore(t *testing.T) (section, vars string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a SeaweedFS server")
	}
	bin := os.Getenv("ETCD_RESCUE_WEED")
	if bin == "" {
		bin = "../lab/bin/seaweedfs/weed"
	}
	if st, err := os.Stat(bin); err != nil || st.Mode()&0o111 == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no SeaweedFS binary at %s (make s3-bins)", bin)
		}
		t.Skipf("no SeaweedFS binary at %s (make s3-bins builds it; ETCD_RESCUE_WEED names another)", bin)
	}
	bin, _ = filepath.Abs(bin)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	ca := labPKI(t, dir)
	access, secret := "AKS3LABSTEPS", "s3lab-steps-secret-0001"
	ids, _ := json.Marshal(map[string]any{"identities": []map[string]any{{
		"name": "test", "credentials": []map[string]string{{"accessKey": access, "secretKey": secret}},
		"actions": []string{"Admin", "Read", "List", "Tagging", "Write"},
	}}})
	if err := os.WriteFile(filepath.Join(dir, "s3.json"), ids, 0o600); err != nil {
		t.Fatal(err)
	}
	names := []string{"s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc"}
	ports := labPorts(t, len(names))
	args := []string{"-logtostderr", "-config_dir=" + dir, "server",
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-dir=" + filepath.Join(dir, "data"),
		"-master.telemetry=false", "-master.volumeSizeLimitMB=256", "-master.defaultReplication=000",
		"-volume.max=16", "-volume.preStopSeconds=0", "-filer.localSocket=" + filepath.Join(dir, "filer.sock"),
		"-s3", "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.iam=false",
		"-s3.cert.file=" + filepath.Join(dir, "tls.crt"), "-s3.key.file=" + filepath.Join(dir, "tls.key"),
		"-s3.config=" + filepath.Join(dir, "s3.json"), "-s3.localSocket=" + filepath.Join(dir, "s3.sock")}
	for i, n := range names {
		args = append(args, fmt.Sprintf("-%s=%d", n, ports[i]))
	}
	logf, err := os.Create(filepath.Join(dir, "weed.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = dir, []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + dir}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		for _, p := range ports {
			for _, svc := range []string{"master", "volume", "filer", "s3"} {
				os.Remove(fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", svc, p))
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "weed.log"))
			t.Logf("weed log:\n%s", lastLines(string(b), 30))
		}
	})
	// The bucket, through weed shell, once the master and filer answer.
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("weed exited before it answered")
		default:
		}
		sh := exec.Command(bin, "shell", fmt.Sprintf("-master=127.0.0.1:%d.%d", ports[2], ports[3]), fmt.Sprintf("-filer=127.0.0.1:%d.%d", ports[6], ports[7]))
		sh.Dir, sh.Env = dir, cmd.Env
		sh.Stdin = strings.NewReader("s3.bucket.create -name etcd-backups\nexit\n")
		out, err := sh.CombinedOutput()
		if err == nil && !strings.Contains(strings.ToLower(string(out)), "error") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("could not create the bucket: %v\n%s", err, out)
		}
		time.Sleep(time.Second)
	}
	// The S3 gateway answers: a listing of the new bucket succeeds.
	cfg := objstore.Config{Endpoint: fmt.Sprintf("https://127.0.0.1:%d", ports[0]), Region: "us-east-1", PathStyle: true, CAFile: ca, AccessKey: access, SecretKey: secret}
	st, err := newObjectStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := st.List(ctx, objstore.Location{Bucket: "etcd-backups", Key: "x/"})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the S3 gateway did not answer: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	section = fmt.Sprintf("s3:\n  endpoint: %s\n  region: us-east-1\n  pathStyle: true\n  ca: %s\n  accessKey: ${vars.s3AccessKey}\n  secretKey: ${vars.s3SecretKey}\n", cfg.Endpoint, ca)
	vars = fmt.Sprintf("  s3AccessKey: %s\n  s3SecretKey: %s\n", access, secret)
	return section, vars
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func labPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// labPKI writes ca.crt, tls.crt and tls.key (for 127.0.0.1) into dir and
// returns the CA file.
func labPKI(t *testing.T, dir string) string {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "s3lab test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	for name, blk := range map[string]*pem.Block{"ca.crt": {Type: "CERTIFICATE", Bytes: caDER},
		"tls.crt": {Type: "CERTIFICATE", Bytes: der}, "tls.key": {Type: "PRIVATE KEY", Bytes: kb}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(blk), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "ca.crt")
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
