package e2e

// Snapshots in object storage, for real: a lab whose operator side runs a
// real S3-compatible server (lab up --s3: SeaweedFS built from its Go
// module, HTTPS with the lab's CA, an access key of its own). Checked from
// outside etcd-rescue with minio-go: what is stored, its metadata and its
// bytes.
//
//   - five backups with keep {last: 3} leave exactly the three newest
//     objects, each read back whole and matching its recorded sha256;
//   - a backup killed with SIGKILL in the middle of its upload leaves no
//     object (nothing a later select: latest could pick), and its resume
//     completes and prunes to three again;
//   - after lab break total-loss, a latest object with one flipped byte is
//     refused before any host is touched (the hosts' state is compared);
//   - with the object repaired, the restore (examples/restore-from-s3.yaml)
//     is killed in the middle of its download, resumed, and repairs the
//     cluster (lab verify, every bulk value);
//   - the scheduled backup: the command line of
//     examples/systemd/etcd-rescue-backup.service, run as the unit runs it
//     (no terminal, a clean environment, the S3 credentials from a shared
//     credentials file by the AWS chain), backs up; while a run holds its
//     state dir a second one is refused with exit 3; a backup that fails
//     (etcd1 stopped) exits 1 and deletes nothing.
//
//	go test ./tests/e2e/ -run TestE2ES3Lab -v
//
// `make test` runs it in its late stage, once `make s3-bins` has built the
// server.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"gopkg.in/yaml.v3"

	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework"
)

// s3Prefix is where the test's backups go in the lab's bucket: the prefix
// examples/restore-from-s3.yaml and backup-s3.yaml use.
const s3Prefix = "prod-etcd/"

func TestE2ES3Lab(t *testing.T) {
	e := newE2E(t)
	l := framework.UpLab(t, lab.Options{Members: 3, Version: "3.5", S3: true})
	s := labStore(t, l)
	// 100 MiB of values besides the lab's keys: the snapshot spans several
	// multipart parts, so a kill lands in the middle of a transfer.
	fillBulk(t, l)
	backup := s.backupPlan(t, 3, "30s")

	var runs []string
	if !t.Run("five-backups-keep-3", func(t *testing.T) {
		for i := 1; i <= 5; i++ {
			framework.PutKey(t, l, fmt.Sprintf("/e2e/backup-round-%d", i), "x")
			stateDir, runID, r := e.applyPlan(t, backup, l.InventoryPath(), fmt.Sprintf("backup %d of 5", i))
			_ = stateDir
			t.Logf("backup %d: run %s, exit 0 in %.1fs", i, runID, r.Wall.Seconds())
			runs = append(runs, runID)
		}
		objs := s.verifiedObjects(t)
		if len(objs) != 3 {
			t.Fatalf("after 5 backups with keep {last: 3}: %d objects under %s, want 3: %v", len(objs), s3Prefix, keysOf(objs))
		}
		for _, id := range runs[2:] {
			if !hasRun(objs, id) {
				t.Errorf("the backup of run %s (one of the 3 newest) is not kept: %v", id, keysOf(objs))
			}
		}
	}) {
		return
	}

	t.Run("kill-9-mid-upload", func(t *testing.T) {
		latestBefore := s.latest(t)
		stateDir := filepath.Join(t.TempDir(), "state")
		p, line := e.killAt(t, regexp.MustCompile(`s3 upload .* of `), "apply", backup, "--inventory", l.InventoryPath(), "--yes", "--state-dir", stateDir)
		runID := framework.RunIDOf(p.Stdout)
		t.Logf("killed with SIGKILL at %q (run %s)", line, runID)
		objs := s.verifiedObjects(t)
		if hasRun(objs, runID) {
			t.Errorf("the upload was killed, yet an object of run %s is listed: %v", runID, keysOf(objs))
		}
		if got := s.latest(t); got.Key != latestBefore.Key {
			t.Errorf("after the killed upload the newest object is %s, was %s", got.Key, latestBefore.Key)
		}
		res := e.CLI(t, "resume", runID, "--yes", "--state-dir", stateDir)
		if res.Code != 0 {
			t.Fatalf("resume after kill -9 in the upload: %s", res)
		}
		objs = s.verifiedObjects(t)
		if len(objs) != 3 || !hasRun(objs, runID) {
			t.Errorf("after the resumed backup: %v, want 3 objects with run %s's", keysOf(objs), runID)
		}
		if got := s.latest(t); !strings.Contains(got.Key, runID) {
			t.Errorf("the newest object is %s, not the resumed run's", got.Key)
		}
	})

	restore := examplePlanCopy(t, "restore-from-s3")
	if !t.Run("total-loss/flipped-byte-refused", func(t *testing.T) {
		if err := l.Break(context.Background(), "total-loss"); err != nil {
			t.Fatalf("lab break total-loss: %v", err)
		}
		latest := s.latest(t)
		orig := s.flipByte(t, latest)
		before := hostFiles(t, l)
		stateDir := filepath.Join(t.TempDir(), "state")
		r := e.CLI(t, "apply", restore, "--inventory", l.InventoryPath(), "--yes", "--state-dir", stateDir)
		if r.Code != 1 {
			t.Fatalf("a restore from an object with a flipped byte: exit %d, want 1 (refused):\n%s", r.Code, r)
		}
		out := r.Stdout + r.Stderr
		for _, want := range []string{latest.Key, "sha256", "no host was touched"} {
			if !strings.Contains(out, want) {
				t.Errorf("the refusal does not say %q:\n%s", want, r)
			}
		}
		t.Logf("refused: exit %d: %s", r.Code, firstLine(r.Stderr))
		sameState(t, "the hosts after the refused restore", before, hostFiles(t, l))
		s.put(t, latest, orig)
	}) {
		return
	}

	if !t.Run("total-loss/kill-9-mid-download", func(t *testing.T) {
		stateDir := filepath.Join(t.TempDir(), "state")
		r, line := e.killAt(t, regexp.MustCompile(`s3 download .* of `), "apply", restore, "--inventory", l.InventoryPath(), "--yes", "--state-dir", stateDir)
		runID := framework.RunIDOf(r.Stdout)
		t.Logf("killed with SIGKILL at %q (run %s)", line, runID)
		if runID == "" {
			t.Fatalf("no run id in the killed apply's output:\n%s", r)
		}
		st := e.afterKill(t, r, stateDir, runID)
		if len(stepsIn(st, "done", "running")) > 1 {
			t.Errorf("killed in the download, yet steps after the fetch began: %v", stepsIn(st, "done", "running"))
		}
		e.resumeToDone(t, l, stateDir, runID, "after kill -9 in the download")
		checkBulk(t, l)
	}) {
		return
	}

	t.Run("scheduled", func(t *testing.T) {
		e.scheduledBackup(t, l, s)
	})
}

// examplePlanCopy copies examples/NAME.yaml into a temporary directory, so
// that the files it writes beside itself stay out of the checkout.
func examplePlanCopy(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", planPath(name)))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// scheduledBackup runs the backup as examples/systemd/etcd-rescue-backup.service
// runs it: its ExecStart (paths moved into the test's directories, the lab's
// inventory added, without the S3 keys), its Environment= lines and no
// other, stdin /dev/null, the keys in an AWS shared credentials file.
func (e *e2e) scheduledBackup(t *testing.T, l *lab.Lab, s *s3Lab) {
	unit, err := os.ReadFile(filepath.Join("..", "..", "examples", "systemd", "etcd-rescue-backup.service"))
	if err != nil {
		t.Fatal(err)
	}
	var args, env []string
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	plan := examplePlanCopy(t, "backup-s3")
	for _, ln := range strings.Split(string(unit), "\n") {
		switch {
		case strings.HasPrefix(ln, "ExecStart="):
			f := strings.Fields(strings.TrimPrefix(ln, "ExecStart="))
			if len(f) < 2 || f[0] != "/usr/local/bin/etcd-rescue" || f[1] != "apply" {
				t.Fatalf("ExecStart is not an etcd-rescue apply: %q", ln)
			}
			for i, a := range f[2:] {
				switch {
				case a == "/etc/etcd-rescue/backup-s3.yaml":
					a = plan
				case i > 0 && f[2+i-1] == "--state-dir":
					a = stateDir
				}
				args = append(args, a)
			}
		case strings.HasPrefix(ln, "Environment="):
			kv := strings.TrimPrefix(ln, "Environment=")
			switch {
			case strings.HasPrefix(kv, "XDG_STATE_HOME="):
				kv = "XDG_STATE_HOME=" + filepath.Join(dir, "xdg")
			case strings.HasPrefix(kv, "AWS_SHARED_CREDENTIALS_FILE="):
				kv = "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "aws-credentials")
			}
			env = append(env, kv)
		}
	}
	if !slices.Contains(args, "--yes") || !slices.Contains(args, stateDir) {
		t.Fatalf("ExecStart lacks --yes or --state-dir: %q", args)
	}
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "AWS_SHARED_CREDENTIALS_FILE=") }) {
		t.Fatalf("the unit hands no AWS_SHARED_CREDENTIALS_FILE to the run: %q", env)
	}
	access, secret := framework.InventoryVar(t, l, "s3AccessKey"), framework.InventoryVar(t, l, "s3SecretKey")
	creds := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", access, secret)
	if err := os.WriteFile(filepath.Join(dir, "aws-credentials"), []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	// the lab's inventory without the keys: the AWS chain must find them
	inv := framework.EditInventory(t, l, nil, func(inv map[string]any) {
		if s3, ok := inv["s3"].(map[string]any); ok {
			delete(s3, "accessKey")
			delete(s3, "secretKey")
			if ca, ok := s3["ca"].(string); ok && !filepath.IsAbs(ca) {
				s3["ca"] = filepath.Join(filepath.Dir(l.InventoryPath()), ca) // the copy is elsewhere
			}
		}
		if vs, ok := inv["vars"].(map[string]any); ok {
			delete(vs, "s3AccessKey")
			delete(vs, "s3SecretKey")
		}
	})
	args = append(args, "--inventory", inv)
	env = append(env, "PATH=/usr/local/bin:/usr/bin:/bin", "HOME="+filepath.Join(dir, "home"))
	t.Logf("as the unit runs it: env %q, etcd-rescue apply %q", env, args)
	before := s.verifiedObjects(t)

	// 1. a nightly run
	r := e.StartOnlyEnv(t, nil, env, append([]string{"apply"}, args...)...).Wait(t)
	if r.Code != 0 {
		t.Fatalf("the scheduled backup: %s", r)
	}
	after := s.verifiedObjects(t)
	if len(after) != len(before)+1 || !strings.Contains(after[0].Key, framework.RunIDOf(r.Stdout)) {
		t.Errorf("after the scheduled backup (keep {last: 7, days: 30}): %v, want %v and the new run's", keysOf(after), keysOf(before))
	}
	if strings.Contains(r.Stdout+r.Stderr, secret) {
		t.Errorf("the scheduled run printed the S3 secret")
	}

	// 2. the next firing while a run holds the state dir: exit 3, nothing done
	stopped := make(chan struct{}, 1)
	var once sync.Once
	held := e.StartOnlyEnv(t, func(p *framework.Proc, line string) {
		if strings.Contains(line, "s3 upload ") {
			once.Do(func() {
				_ = p.Signal(syscall.SIGSTOP)
				stopped <- struct{}{}
			})
		}
	}, env, append([]string{"apply"}, args...)...)
	select {
	case <-stopped:
	case <-held.Exited():
		t.Fatalf("the first run ended before its upload: %s", held.Wait(t))
	}
	second := e.StartOnlyEnv(t, nil, env, append([]string{"apply"}, args...)...).Wait(t)
	_ = held.Signal(syscall.SIGCONT)
	if second.Code != 3 {
		t.Errorf("a second run on the locked state dir: exit %d, want 3: %s", second.Code, second)
	}
	if hr := held.Wait(t); hr.Code != 0 {
		t.Errorf("the run that held the lock: %s", hr)
	}

	// 3. a backup that fails never prunes
	keep1 := s.backupPlan(t, 1, "3s") // etcd1 will not answer: fail soon
	before = s.verifiedObjects(t)
	framework.HostRun(t, l, "h1", "systemctl stop etcd")
	failed := e.CLI(t, "apply", keep1, "--inventory", l.InventoryPath(), "--yes", "--state-dir", filepath.Join(t.TempDir(), "state"))
	framework.HostRun(t, l, "h1", "systemctl start etcd")
	if failed.Code != 1 {
		t.Errorf("a backup with etcd1 stopped: exit %d, want 1: %s", failed.Code, failed)
	}
	if got := s.verifiedObjects(t); !slices.Equal(keysOf(got), keysOf(before)) {
		t.Errorf("a failed backup with keep {last: 1} changed the store: %v, was %v", keysOf(got), keysOf(before))
	}
	verifyLab(t, l)
}

// hostFiles is hostsState without the member list (no cluster answers
// after a total loss).
func hostFiles(t *testing.T, l *lab.Lab) map[string]string {
	st := hostsState(t, l)
	st["member list"] = "(not compared: no cluster answers after a total loss)"
	return st
}

// s3Lab is the lab's S3 store as the test sees it, through minio-go.
type s3Lab struct {
	cli      *minio.Client
	bucket   string
	inv      string
	endpoint string
}

// labStore reads the s3: section and the vars of the lab's inventory.
func labStore(t *testing.T, l *lab.Lab) *s3Lab {
	t.Helper()
	b, err := os.ReadFile(l.InventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	var inv struct {
		S3 struct {
			Endpoint  string `yaml:"endpoint"`
			Region    string `yaml:"region"`
			CA        string `yaml:"ca"`
			PathStyle bool   `yaml:"pathStyle"`
		} `yaml:"s3"`
		Vars map[string]string `yaml:"vars"`
	}
	if err := yaml.Unmarshal(b, &inv); err != nil {
		t.Fatalf("the lab inventory: %v", err)
	}
	u, err := url.Parse(inv.S3.Endpoint)
	if err != nil || u.Host == "" {
		t.Fatalf("the lab inventory has no s3.endpoint (%q): was the lab started with --s3?", inv.S3.Endpoint)
	}
	ca := inv.S3.CA
	if !filepath.IsAbs(ca) {
		ca = filepath.Join(filepath.Dir(l.InventoryPath()), ca)
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatalf("the S3 CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", ca)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	cli, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(inv.Vars["s3AccessKey"], inv.Vars["s3SecretKey"], ""),
		Secure:       u.Scheme == "https",
		Region:       inv.S3.Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    tr,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &s3Lab{cli: cli, bucket: inv.Vars["s3Bucket"], inv: l.InventoryPath(), endpoint: inv.S3.Endpoint}
}

// backupPlan writes a backup plan for the lab: a snapshot from etcd1 to
// s3://BUCKET/PREFIX, keeping the newest keep, after all members answer
// health within the given time.
func (s *s3Lab) backupPlan(t *testing.T, keep int, within string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "backup-s3.yaml")
	plan := fmt.Sprintf(`version: 1
name: backup-s3-e2e
description: a verified snapshot to the lab's S3 store, the newest %d kept
steps:
  - id: healthy
    type: wait-healthy
    with: {within: %s}
  - id: save
    type: snapshot-save
    on: etcd1
    needs: [healthy]
    with:
      to: "s3://${vars.s3Bucket}/%setcd-${run.id}.db"
      keep: {last: %d}
`, keep, within, s3Prefix, keep)
	if err := os.WriteFile(p, []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type s3Object struct {
	Key    string
	Size   int64
	SHA256 string
	When   time.Time
}

func keysOf(objs []s3Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Key)
	}
	return out
}

func hasRun(objs []s3Object, runID string) bool {
	for _, o := range objs {
		if runID != "" && strings.Contains(o.Key, runID) {
			return true
		}
	}
	return false
}

// verifiedObjects lists the prefix and reads every object back whole: each
// must carry etcd-rescue's sha256 metadata and match it byte for byte.
// Newest first.
func (s *s3Lab) verifiedObjects(t *testing.T) []s3Object {
	t.Helper()
	ctx := context.Background()
	var out []s3Object
	for o := range s.cli.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s3Prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list s3://%s/%s: %v", s.bucket, s3Prefix, o.Err)
		}
		st, err := s.cli.StatObject(ctx, s.bucket, o.Key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatalf("stat %s: %v", o.Key, err)
		}
		want := metaValue(st.UserMetadata, "sha256")
		if want == "" {
			t.Errorf("%s has no etcd-rescue sha256 metadata: %v", o.Key, st.UserMetadata)
		}
		obj, err := s.cli.GetObject(ctx, s.bucket, o.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, obj)
		obj.Close()
		if err != nil {
			t.Fatalf("read %s: %v", o.Key, err)
		}
		got := hex.EncodeToString(h.Sum(nil))
		if got != want || n != st.Size {
			t.Errorf("%s: %d bytes with sha256 %s, metadata says %s (size %d)", o.Key, n, got, want, st.Size)
		}
		out = append(out, s3Object{Key: o.Key, Size: n, SHA256: got, When: st.LastModified})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].When.After(out[j].When) })
	t.Logf("s3://%s/%s: %d verified objects: %v", s.bucket, s3Prefix, len(out), keysOf(out))
	return out
}

// metaValue finds etcd-rescue's metadata key name in m (S3 servers differ
// in how they case user metadata).
func metaValue(m map[string]string, name string) string {
	for k, v := range m {
		k = strings.ToLower(strings.TrimPrefix(strings.ToLower(k), "x-amz-meta-"))
		if k == "etcd-rescue-"+name {
			return v
		}
	}
	return ""
}

// latest is the newest object under the prefix.
func (s *s3Lab) latest(t *testing.T) s3Object {
	t.Helper()
	objs := s.verifiedObjects(t)
	if len(objs) == 0 {
		t.Fatalf("no object under s3://%s/%s", s.bucket, s3Prefix)
	}
	return objs[0]
}

// flipByte rewrites o with one byte in its middle inverted, keeping its
// metadata (so its recorded sha256 no longer matches), and returns the
// original bytes.
func (s *s3Lab) flipByte(t *testing.T, o s3Object) []byte {
	t.Helper()
	ctx := context.Background()
	obj, err := s.cli.GetObject(ctx, s.bucket, o.Key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	orig, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(orig)
	bad[len(bad)/2] ^= 0xff
	s.put(t, o, bad)
	t.Logf("flipped byte %d of %s (%d bytes), metadata kept", len(bad)/2, o.Key, len(bad))
	return orig
}

// put stores data under o's key with o's metadata as the test read it.
func (s *s3Lab) put(t *testing.T, o s3Object, data []byte) {
	t.Helper()
	ctx := context.Background()
	st, err := s.cli.StatObject(ctx, s.bucket, o.Key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	meta := map[string]string{}
	for k, v := range st.UserMetadata {
		meta[strings.TrimPrefix(strings.ToLower(k), "x-amz-meta-")] = v
	}
	if _, err := s.cli.PutObject(ctx, s.bucket, o.Key, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{UserMetadata: meta, ContentType: "application/octet-stream"}); err != nil {
		t.Fatalf("put %s: %v", o.Key, err)
	}
}
