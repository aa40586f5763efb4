package objstore

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/weedserver"
	"github.com/minio/minio-go/v7"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// An etcd-backup-restore full snapshot as that tool makes one: the
// stream of clientv3's Maintenance.Snapshot from a real etcd (which ends
// in etcd's sha256 trailer), gzip-compressed, stored as
// v2/Full-00000000-<revision>-<unix ts>.gz. Listed, selected and
// downloaded, it comes back as a snapshot whose trailer matches and that
// etcdutl restores (etcdutl checks the trailer).
func TestBackupRestoreEtcdSnapshotS3Lab(t *testing.T) {
	w := startWeed(t)
	etcdDir := "../../lab/bin/v3.6.16"
	if _, err := os.Stat(filepath.Join(etcdDir, "etcd")); err != nil {
		msg := fmt.Sprintf("no etcd in %s\nhint: make etcd-bins", etcdDir)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	ports, err := weedserver.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cmd := exec.Command(filepath.Join(etcdDir, "etcd"), "--name=s1", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=s1="+peer, "--log-level=error")
	var elog bytes.Buffer
	cmd.Stdout, cmd.Stderr = &elog, &elog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("etcd log:\n%s", tail(elog.String(), 20))
		}
	}()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var rev int64
	for i := 0; i < 500; i++ {
		r, err := cli.Put(ctx, fmt.Sprintf("/registry/k%04d", i), fmt.Sprintf("value %d %s", i, bytes.Repeat([]byte("x"), 100)))
		if err != nil {
			t.Fatal(err)
		}
		rev = r.Header.Revision
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := io.Copy(zw, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	zw.Close()

	c := w.client(t, w.cfg)
	key := fmt.Sprintf("snap/v2/Full-%08d-%08d-%d.gz", 0, rev, time.Now().Unix())
	if _, err := c.mc.PutObject(ctx, testBucket, key, bytes.NewReader(gz.Bytes()), int64(gz.Len()), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	objs, err := c.List(ctx, Location{Bucket: testBucket, Key: "snap/"})
	if err != nil {
		t.Fatal(err)
	}
	o, err := SelectLatest(objs)
	if err != nil {
		t.Fatal(err)
	}
	if o.Key != key || o.Layout != LayoutBackupFull || o.Revision != rev {
		t.Fatalf("selected %+v, want %s at revision %d", o, key, rev)
	}
	out := filepath.Join(dir, "restore.db")
	if _, err := c.Download(ctx, o, out, nil); err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(db)%512 != sha256.Size {
		t.Fatalf("downloaded snapshot is %d bytes: no sha256 trailer (size %% 512 = %d, want 32)", len(db), len(db)%512)
	}
	body, trailer := db[:len(db)-sha256.Size], db[len(db)-sha256.Size:]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], trailer) {
		t.Fatalf("the sha256 trailer does not match the snapshot's body")
	}
	res, err := exec.Command(filepath.Join(etcdDir, "etcdutl"), "snapshot", "restore", out,
		"--data-dir="+filepath.Join(dir, "restored"), "--name=s1",
		"--initial-cluster=s1="+peer, "--initial-advertise-peer-urls="+peer).CombinedOutput()
	if err != nil {
		t.Fatalf("etcdutl snapshot restore of the downloaded snapshot: %v\n%s", err, res)
	}
	t.Logf("etcd snapshot at revision %d: %d bytes, %d gzip-compressed; trailer intact, etcdutl restored it", rev, len(db), gz.Len())
}
