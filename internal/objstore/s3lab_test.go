package objstore

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"compress/lzw"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// randomFile writes size pseudo-random bytes (incompressible, like a
// snapshot's pages as far as the store cares) and returns the path and
// the hex sha256.
func randomFile(t *testing.T, dir, name string, size int64) (string, string) {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	var seed [32]byte
	copy(seed[:], name)
	r := mrand.NewChaCha8(seed)
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := int64(len(buf))
		if left < n {
			n = left
		}
		_, _ = r.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		h.Write(buf[:n])
		left -= n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func mustNotExist(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists (err %v), want nothing there", p, err)
	}
}

func incompleteUploads(t *testing.T, c *Client, prefix string) int {
	t.Helper()
	n := 0
	for u := range c.mc.ListIncompleteUploads(context.Background(), testBucket, prefix, true) {
		if u.Err != nil {
			t.Fatalf("list incomplete uploads: %v", u.Err)
		}
		n++
	}
	return n
}

// Upload 40 MiB (three parts), verify, read the metadata back, list,
// select, download over a stale .part.
func TestUploadDownloadS3Lab(t *testing.T) {
	w := startWeed(t)
	c := w.client(t, w.cfg)
	ctx := context.Background()
	dir := t.TempDir()
	const size = 40 << 20
	src, sum := randomFile(t, dir, "snap.db", size)
	dst := Location{Bucket: testBucket, Key: "prod/etcd-20261202T220000Z.db"}

	var mu sync.Mutex
	var calls [][2]int64
	o, err := c.Upload(ctx, dst, src, Meta{SHA256: sum, Revision: 4711, Cluster: "prod-etcd", RunID: "run-1"}, func(d, tot int64) {
		mu.Lock()
		calls = append(calls, [2]int64{d, tot})
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Meta{SHA256: sum, Revision: 4711, Size: size, Cluster: "prod-etcd", RunID: "run-1"}
	if o.Meta != want || o.Size != size || o.Layout != LayoutRescue || o.Revision != 4711 {
		t.Errorf("Upload returned %+v, want meta %+v and %d bytes", o, want, size)
	}
	if len(calls) == 0 || calls[len(calls)-1] != [2]int64{size, size} {
		t.Fatalf("progress calls %v: the last one must be (size, size)", calls)
	}
	for i := 1; i < len(calls); i++ {
		if d := calls[i][0] - calls[i-1][0]; d < 0 || (d < progressEvery && i != len(calls)-1) {
			t.Errorf("progress call %d moved %d bytes: at most one call per %d bytes", i, d, progressEvery)
		}
	}
	t.Logf("uploaded %d MiB with %d progress calls", size>>20, len(calls))

	st, err := c.Stat(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	if st.Meta != want || st.Layout != LayoutRescue {
		t.Errorf("Stat: meta %+v layout %q, want %+v", st.Meta, st.Layout, want)
	}
	if _, err := c.Verify(ctx, dst, Meta{SHA256: strings.Repeat("0", 64)}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Verify against another sha256 = %v, want ErrCorrupt", err)
	}

	objs, err := c.List(ctx, Location{Bucket: testBucket, Key: "prod/"})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].Meta != want || objs[0].Key != dst.Key {
		t.Fatalf("List = %+v, want the one object with its metadata", objs)
	}
	sel, err := SelectLatest(objs)
	if err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "restore", "snap.db")
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		t.Fatal(err)
	}
	// What a killed download leaves: a .part, world-readable even.
	if err := os.WriteFile(out+".part", []byte("half a snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := c.Download(ctx, sel, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != sum || fileSHA(t, out) != sum {
		t.Errorf("Download returned sha256 %s, file has %s, want %s", got, fileSHA(t, out), sum)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != size {
		t.Errorf("downloaded file: mode %v, %d bytes; want 0600, %d", fi.Mode().Perm(), fi.Size(), size)
	}
	mustNotExist(t, out+".part")
}

// etcd-backup-restore's layout: names classified, compressed full
// snapshots decompressed on the way down, deltas and lz4 refused.
func TestBackupRestoreLayoutS3Lab(t *testing.T) {
	w := startWeed(t)
	c := w.client(t, w.cfg)
	ctx := context.Background()
	dir := t.TempDir()

	plain := func(n int, seed byte) []byte {
		r := mrand.NewChaCha8([32]byte{seed})
		b := make([]byte, n)
		_, _ = r.Read(b)
		return b
	}
	put := func(key string, data []byte, comp func(io.Writer) io.WriteCloser) {
		t.Helper()
		var buf bytes.Buffer
		if comp != nil {
			zw := comp(&buf)
			zw.Write(data)
			zw.Close()
		} else {
			buf.Write(data)
		}
		if _, err := c.mc.PutObject(ctx, testBucket, key, bytes.NewReader(buf.Bytes()), int64(buf.Len()), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	gz := func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) }
	zl := func(w io.Writer) io.WriteCloser { return zlib.NewWriter(w) }
	lz := func(w io.Writer) io.WriteCloser { return lzw.NewWriter(w, lzw.LSB, 8) }
	dataV1, dataGz, dataZlib := plain(3<<20+17, 1), plain(5<<20, 2), plain(6<<20+3, 3)
	// Uploaded oldest first: the newest selectable one is the zlib full.
	put("eb/v1/Backup-1600000000/Full-00000000-00000050-1600000000.Z", dataV1, lz)
	put("eb/v2/Full-00000000-00000100-1700000000.gz", dataGz, gz)
	put("eb/v2/Incr-00000101-00000200-1700000100.gz", plain(1000, 4), gz)
	put("eb/v2/Full-00000000-00000400-1700000300.lz4", plain(1000, 5), nil)
	put("eb/v2/Full-00000000-00000300-1700000200.zlib", dataZlib, zl)
	put("eb/README", []byte("not a snapshot"), nil)

	objs, err := c.List(ctx, Location{Bucket: testBucket, Key: "eb/"})
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]Object{}
	for _, o := range objs {
		byKey[o.Key] = o
	}
	for key, want := range map[string]struct {
		layout, comp string
		rev          int64
	}{
		"eb/v1/Backup-1600000000/Full-00000000-00000050-1600000000.Z": {LayoutBackupFull, CompressionLzw, 50},
		"eb/v2/Full-00000000-00000100-1700000000.gz":                  {LayoutBackupFull, CompressionGzip, 100},
		"eb/v2/Incr-00000101-00000200-1700000100.gz":                  {LayoutBackupDelta, CompressionGzip, 200},
		"eb/v2/Full-00000000-00000400-1700000300.lz4":                 {LayoutBackupFull, CompressionLz4, 400},
		"eb/v2/Full-00000000-00000300-1700000200.zlib":                {LayoutBackupFull, CompressionZlib, 300},
		"eb/README": {LayoutUnknown, CompressionNone, 0},
	} {
		o, ok := byKey[key]
		if !ok {
			t.Errorf("%s not listed", key)
			continue
		}
		if o.Layout != want.layout || o.Compression != want.comp || o.Revision != want.rev {
			t.Errorf("%s: layout %q compression %q revision %d; want %q %q %d", key, o.Layout, o.Compression, o.Revision, want.layout, want.comp, want.rev)
		}
	}
	sel, err := SelectLatest(objs)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Key != "eb/v2/Full-00000000-00000300-1700000200.zlib" {
		t.Errorf("selected %s, want the zlib full snapshot (the lz4 one is newer but unreadable)", sel.Key)
	}
	sha := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	for key, data := range map[string][]byte{
		"eb/v1/Backup-1600000000/Full-00000000-00000050-1600000000.Z": dataV1,
		"eb/v2/Full-00000000-00000100-1700000000.gz":                  dataGz,
		"eb/v2/Full-00000000-00000300-1700000200.zlib":                dataZlib,
	} {
		out := filepath.Join(dir, filepath.Base(key)+".db")
		got, err := c.Download(ctx, byKey[key], out, nil)
		if err != nil {
			t.Errorf("Download %s: %v", key, err)
			continue
		}
		if got != sha(data) || fileSHA(t, out) != sha(data) {
			t.Errorf("%s: decompressed sha256 %s, want %s", key, got, sha(data))
		}
	}
	out := filepath.Join(dir, "x.db")
	if _, err := c.Download(ctx, byKey["eb/v2/Incr-00000101-00000200-1700000100.gz"], out, nil); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "never applies deltas") {
		t.Errorf("Download of a delta = %v, want ErrUnsupported saying deltas are not applied", err)
	}
	if _, err := c.Download(ctx, byKey["eb/v2/Full-00000000-00000400-1700000300.lz4"], out, nil); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "lz4 -d") {
		t.Errorf("Download of lz4 = %v, want ErrUnsupported with the lz4 hint", err)
	}
	mustNotExist(t, out)
	mustNotExist(t, out+".part")

	// A gzip object whose stream is damaged: ErrCorrupt, nothing left.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(dataGz)
	zw.Close()
	bad := buf.Bytes()
	bad[len(bad)/2] ^= 0x55
	key := "eb2/v2/Full-00000000-00000500-1700000400.gz"
	if _, err := c.mc.PutObject(ctx, testBucket, key, bytes.NewReader(bad), int64(len(bad)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	o, err := c.Stat(ctx, Location{Bucket: testBucket, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Download(ctx, o, out, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Download of a damaged gzip stream = %v, want ErrCorrupt", err)
	}
	mustNotExist(t, out)
	mustNotExist(t, out+".part")
}

// A flipped byte in a stored object that keeps its original metadata:
// Verify and Download say ErrCorrupt and leave no file. An upload whose
// read-back does not match is removed. An object replaced after it was
// listed is not read.
func TestCorruptObjectS3Lab(t *testing.T) {
	w := startWeed(t)
	c := w.client(t, w.cfg)
	ctx := context.Background()
	dir := t.TempDir()
	src, sum := randomFile(t, dir, "snap.db", 5<<20+123)
	dst := Location{Bucket: testBucket, Key: "c/etcd-1.db"}
	meta := Meta{SHA256: sum, Revision: 99, Cluster: "prod-etcd", RunID: "r"}
	if _, err := c.Upload(ctx, dst, src, meta, nil); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	meta.Size = int64(len(data))
	if _, err := c.mc.PutObject(ctx, testBucket, dst.Key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{UserMetadata: userMetadata(meta)}); err != nil {
		t.Fatal(err)
	}
	o, err := c.Stat(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Selectable() || o.Meta.SHA256 != sum {
		t.Fatalf("the damaged object should look valid by its metadata: %+v", o)
	}
	if _, err := c.Verify(ctx, dst, Meta{SHA256: sum}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Verify of the damaged object = %v, want ErrCorrupt", err)
	}
	out := filepath.Join(dir, "restore.db")
	_, err = c.Download(ctx, o, out, nil)
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("Download of the damaged object = %v, want ErrCorrupt", err)
	}
	t.Logf("download of the damaged object: %v", err)
	mustNotExist(t, out)
	mustNotExist(t, out+".part")

	// An upload whose recorded sha256 is not the file's: the read-back
	// fails, the object is removed.
	dst2 := Location{Bucket: testBucket, Key: "c/etcd-2.db"}
	_, err = c.Upload(ctx, dst2, src, Meta{SHA256: strings.Repeat("ab", 32), Revision: 1}, nil)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "was removed") {
		t.Errorf("Upload with a wrong sha256 = %v, want ErrCorrupt and the object removed", err)
	}
	if _, err := c.Stat(ctx, dst2); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat after a failed verification = %v, want not found", err)
	}

	// Listed, then replaced: the download refuses the new bytes.
	if _, err := c.Upload(ctx, dst2, src, Meta{SHA256: sum, Revision: 2}, nil); err != nil {
		t.Fatal(err)
	}
	listed, err := c.Stat(ctx, dst2)
	if err != nil {
		t.Fatal(err)
	}
	other, osum := randomFile(t, dir, "other.db", 1<<20)
	if _, err := c.Upload(ctx, dst2, other, Meta{SHA256: osum, Revision: 3}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Download(ctx, listed, out, nil); err == nil {
		t.Errorf("Download of an object replaced since it was listed succeeded")
	} else {
		t.Logf("download of a replaced object: %v", err)
	}
	mustNotExist(t, out)
	mustNotExist(t, out+".part")
}

// A cancelled upload and a killed one leave no object; the killed one
// leaves an incomplete multipart upload that AbortStaleUploads removes.
func TestKilledUploadS3Lab(t *testing.T) {
	w := startWeed(t)
	c := w.client(t, w.cfg)
	ctx := context.Background()
	dir := t.TempDir()
	src, sum := randomFile(t, dir, "snap.db", 96<<20)
	prefix := Location{Bucket: testBucket, Key: "k/"}

	// Cancelled mid-way: minio-go aborts its own upload.
	cctx, cancel := context.WithCancel(ctx)
	_, err := c.Upload(cctx, Location{Bucket: testBucket, Key: "k/cancelled.db"}, src, Meta{SHA256: sum}, func(d, _ int64) {
		if d >= 16<<20 {
			cancel()
		}
	})
	cancel()
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Upload = %v, want context.Canceled", err)
	}
	if objs, err := c.List(ctx, prefix); err != nil || len(objs) != 0 {
		t.Fatalf("after a cancelled upload List = %+v, %v; want nothing", objs, err)
	}
	if n := incompleteUploads(t, c, "k/"); n != 0 {
		t.Errorf("a cancelled upload left %d incomplete uploads: minio-go should have aborted it", n)
	}

	// Killed: a process of its own, SIGKILL once 16 MiB are read.
	cfg, _ := json.Marshal(w.cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^TestUploadHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "OBJSTORE_HELPER=upload", "OBJSTORE_CFG="+string(cfg),
		"OBJSTORE_FILE="+src, "OBJSTORE_KEY=k/killed.db", "OBJSTORE_SHA="+sum)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		var n int64
		if _, err := fmt.Sscanf(sc.Text(), "progress %d", &n); err == nil && n >= 16<<20 {
			_ = cmd.Process.Kill()
			killed = true
			break
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("the helper never reported 16 MiB of progress; stderr:\n%s", stderr.String())
	}
	if objs, err := c.List(ctx, prefix); err != nil || len(objs) != 0 {
		t.Fatalf("after a killed upload List = %+v, %v; want nothing", objs, err)
	}
	if _, err := c.Stat(ctx, Location{Bucket: testBucket, Key: "k/killed.db"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat of the killed upload's key = %v, want not found", err)
	}
	left := incompleteUploads(t, c, "k/")
	if left < 1 {
		t.Fatalf("a killed upload left %d incomplete uploads, want at least 1", left)
	}
	if n, err := c.AbortStaleUploads(ctx, prefix, time.Hour); err != nil || n != 0 {
		t.Errorf("AbortStaleUploads(older than an hour) = %d, %v; want 0 (the upload is minutes old)", n, err)
	}
	n, err := c.AbortStaleUploads(ctx, prefix, 0)
	if err != nil || n != left {
		t.Errorf("AbortStaleUploads(0) = %d, %v; want %d", n, err, left)
	}
	if left := incompleteUploads(t, c, "k/"); left != 0 {
		t.Errorf("%d incomplete uploads left after AbortStaleUploads", left)
	}
}

// Wrong secret, wrong access key, no credentials, a missing bucket, an
// endpoint certificate the system roots do not know: errors that say so.
func TestErrorsS3Lab(t *testing.T) {
	w := startWeed(t)
	ctx := context.Background()
	dir := t.TempDir()
	src, sum := randomFile(t, dir, "snap.db", 1<<20)
	where := Location{Bucket: testBucket, Key: "e/x.db"}

	bad := w.cfg
	bad.SecretKey = "wrong-" + bad.SecretKey
	c := w.client(t, bad)
	_, err := c.List(ctx, Location{Bucket: testBucket, Key: "e/"})
	if !errors.Is(err, ErrCredentials) || !strings.Contains(err.Error(), "credentials refused") {
		t.Errorf("List with a wrong secret = %v, want credentials refused", err)
	}
	_, uerr := c.Upload(ctx, where, src, Meta{SHA256: sum}, nil)
	if !errors.Is(uerr, ErrCredentials) {
		t.Errorf("Upload with a wrong secret = %v, want credentials refused", uerr)
	}
	for _, e := range []error{err, uerr} {
		if e != nil && (strings.Contains(e.Error(), bad.SecretKey) || strings.Contains(e.Error(), w.cfg.SecretKey)) {
			t.Errorf("the error shows the secret: %v", e)
		}
	}
	t.Logf("wrong secret: %v", err)

	bad = w.cfg
	bad.AccessKey = "AKNOSUCHKEY"
	if _, err := w.client(t, bad).Stat(ctx, where); !errors.Is(err, ErrCredentials) {
		t.Errorf("Stat with an unknown access key = %v, want credentials refused", err)
	}

	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, "none"))
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} {
		t.Setenv(v, "")
	}
	anon := w.cfg
	anon.AccessKey, anon.SecretKey = "", ""
	_, err = w.client(t, anon).List(ctx, Location{Bucket: testBucket, Key: "e/"})
	if !errors.Is(err, ErrCredentials) || !strings.Contains(err.Error(), "no credentials were found") {
		t.Errorf("List without credentials = %v, want credentials refused with where they are looked for", err)
	}
	// The AWS environment is a source of credentials.
	t.Setenv("AWS_ACCESS_KEY_ID", w.cfg.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", w.cfg.SecretKey)
	if _, err := w.client(t, anon).List(ctx, Location{Bucket: testBucket, Key: "e/"}); err != nil {
		t.Errorf("List with the keys in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: %v", err)
	}

	c = w.client(t, w.cfg)
	if _, err := c.List(ctx, Location{Bucket: "no-such-bucket", Key: ""}); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "the bucket does not exist") {
		t.Errorf("List of a missing bucket = %v, want the bucket named missing", err)
	}
	if _, err := c.Stat(ctx, Location{Bucket: testBucket, Key: "e/none.db"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat of a missing object = %v, want not found", err)
	}

	sys := w.cfg
	sys.CAFile = ""
	_, err = w.client(t, sys).Stat(ctx, where)
	if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "not signed by the configured CA") {
		t.Errorf("Stat trusting the system roots only = %v, want the certificate named", err)
	}
}

// Retention on the real store: keep {last: 3} over five of ours leaves
// three, the newest among them; etcd-backup-restore's and foreign objects
// stay.
func TestRetentionS3Lab(t *testing.T) {
	w := startWeed(t)
	c := w.client(t, w.cfg)
	ctx := context.Background()
	dir := t.TempDir()
	var last Location
	for i := 1; i <= 5; i++ {
		src, sum := randomFile(t, dir, fmt.Sprintf("s%d.db", i), 64<<10)
		last = Location{Bucket: testBucket, Key: fmt.Sprintf("r/etcd-%d.db", i)}
		if _, err := c.Upload(ctx, last, src, Meta{SHA256: sum, Revision: int64(100 * i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"r/README", "r/v2/Full-00000000-00000009-1700000000.gz"} {
		if _, err := c.mc.PutObject(ctx, testBucket, k, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := c.List(ctx, Location{Bucket: testBucket, Key: "r/"})
	if err != nil {
		t.Fatal(err)
	}
	del := PlanRetention(objs, Keep{Last: 3}, time.Now(), last)
	if got := strings.Join(keys(del), ","); got != "r/etcd-1.db,r/etcd-2.db" {
		t.Fatalf("retention would delete %s, want r/etcd-1.db,r/etcd-2.db", got)
	}
	if err := c.Delete(ctx, del); err != nil {
		t.Fatal(err)
	}
	objs, err = c.List(ctx, Location{Bucket: testBucket, Key: "r/"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys(objs), ","); got != "r/README,r/etcd-3.db,r/etcd-4.db,r/etcd-5.db,r/v2/Full-00000000-00000009-1700000000.gz" {
		t.Errorf("after retention: %s", got)
	}
}

// memReport is what the helper process measures.
type memReport struct {
	Mode      string  `json:"mode"`
	Bytes     int64   `json:"bytes"`
	PeakHeap  uint64  `json:"peakHeapBytes"` // the largest HeapInuse seen, sampled every 2 ms
	PeakRSS   uint64  `json:"peakRSSBytes"`  // VmHWM of the helper process
	Baseline  uint64  `json:"baselineRSSBytes"`
	UploadSec float64 `json:"uploadSeconds"`
}

// Memory stays bounded: a 200 MiB file (OBJSTORE_MEM_MIB) goes up (Upload: multipart from
// the file with ReadAt, then the read-back) and down (Download) in a
// process whose peak heap and peak RSS are measured; for comparison the
// same file through minio-go with a plain io.Reader, which buffers a part
// in memory.
func TestMemoryS3Lab(t *testing.T) {
	w := startWeed(t)
	dir := t.TempDir()
	size := int64(200 << 20)
	if v := os.Getenv("OBJSTORE_MEM_MIB"); v != "" { // a larger file by hand: OBJSTORE_MEM_MIB=1024
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			t.Fatalf("OBJSTORE_MEM_MIB=%q: want a number of MiB", v)
		}
		size = n << 20
	}
	src, sum := randomFile(t, dir, "big.db", size)
	cfg, _ := json.Marshal(w.cfg)
	run := func(mode string) memReport {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestUploadHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "OBJSTORE_HELPER="+mode, "OBJSTORE_CFG="+string(cfg),
			"OBJSTORE_FILE="+src, "OBJSTORE_KEY=m/"+mode+".db", "OBJSTORE_SHA="+sum)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("helper %s: %v\n%s\n%s", mode, err, stdout.String(), stderr.String())
		}
		for _, line := range strings.Split(stdout.String(), "\n") {
			if js, ok := strings.CutPrefix(line, "memreport "); ok {
				var r memReport
				if err := json.Unmarshal([]byte(js), &r); err != nil {
					t.Fatal(err)
				}
				return r
			}
		}
		t.Fatalf("helper %s printed no report:\n%s\n%s", mode, stdout.String(), stderr.String())
		return memReport{}
	}
	ours := run("memory")
	plain := run("plain-reader")
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	t.Logf("Upload+Verify+Download of %d MiB (part %d MiB, %d in flight): peak heap %.1f MiB, peak RSS %.1f MiB (process baseline %.1f MiB), upload %.1f s",
		size>>20, DefaultPartSize>>20, DefaultUploadStream, mib(ours.PeakHeap), mib(ours.PeakRSS), mib(ours.Baseline), ours.UploadSec)
	t.Logf("minio-go PutObject from a plain io.Reader, same part size and threads: peak heap %.1f MiB, peak RSS %.1f MiB",
		mib(plain.PeakHeap), mib(plain.PeakRSS))
	const budget = 100 << 20
	if ours.PeakRSS >= budget || ours.PeakHeap >= budget {
		t.Errorf("peak RSS %.1f MiB / heap %.1f MiB moving %d MiB: want both under %d MiB", mib(ours.PeakRSS), mib(ours.PeakHeap), size>>20, budget>>20)
	}
}

// TestUploadHelperProcess is the process the S3Lab tests start and kill
// or measure; it does nothing in a normal test run.
func TestUploadHelperProcess(t *testing.T) {
	mode := os.Getenv("OBJSTORE_HELPER")
	if mode == "" {
		t.Skip("run by the S3Lab tests")
	}
	var cfg Config
	if err := json.Unmarshal([]byte(os.Getenv("OBJSTORE_CFG")), &cfg); err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	file, key, sum := os.Getenv("OBJSTORE_FILE"), os.Getenv("OBJSTORE_KEY"), os.Getenv("OBJSTORE_SHA")
	dst := Location{Bucket: testBucket, Key: key}
	ctx := context.Background()
	switch mode {
	case "upload":
		_, err := c.Upload(ctx, dst, file, Meta{SHA256: sum}, func(d, _ int64) {
			fmt.Printf("progress %d\n", d)
		})
		if err != nil {
			t.Fatal(err)
		}
	case "memory", "plain-reader":
		baseline := vmHWM()
		stop := make(chan struct{})
		peak := make(chan uint64)
		go func() {
			var ms runtime.MemStats
			var max uint64
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for {
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > max {
					max = ms.HeapInuse
				}
				select {
				case <-stop:
					peak <- max
					return
				case <-tick.C:
				}
			}
		}()
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var upSec float64
		if mode == "memory" {
			if _, err := c.Upload(ctx, dst, file, Meta{SHA256: sum}, nil); err != nil {
				t.Fatal(err)
			}
			upSec = time.Since(start).Seconds()
			o, err := c.Stat(ctx, dst)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Download(ctx, o, file+".down", nil)
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(file + ".down")
			if got != sum {
				t.Fatalf("downloaded sha256 %s, want %s", got, sum)
			}
		} else {
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// io.Reader only: minio-go cannot ReadAt and buffers parts.
			_, err = c.mc.PutObject(ctx, testBucket, key, struct{ io.Reader }{f}, fi.Size(), minio.PutObjectOptions{
				PartSize: DefaultPartSize, NumThreads: DefaultUploadStream, ContentType: "application/octet-stream",
			})
			if err != nil {
				t.Fatal(err)
			}
			upSec = time.Since(start).Seconds()
		}
		close(stop)
		r := memReport{Mode: mode, Bytes: fi.Size(), PeakHeap: <-peak, PeakRSS: vmHWM(), Baseline: baseline, UploadSec: upSec}
		js, _ := json.Marshal(r)
		fmt.Printf("memreport %s\n", js)
	default:
		t.Fatalf("unknown helper mode %q", mode)
	}
}

// vmHWM is the process's peak resident set (bytes), from /proc.
func vmHWM() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Over plain http:// minio-go signs every 64 KiB chunk of a part
// (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) instead of sending it unsigned
// inside TLS: a different code path on both ends. Upload 40 MiB, list,
// download, and a wrong secret is still named.
func TestPlainHTTPS3Lab(t *testing.T) {
	w := startPlainWeed(t)
	if !strings.HasPrefix(w.cfg.Endpoint, "http://") {
		t.Fatalf("endpoint %s is not plain http", w.cfg.Endpoint)
	}
	c := w.client(t, w.cfg)
	ctx := context.Background()
	dir := t.TempDir()
	const size = 40<<20 + 5
	src, sum := randomFile(t, dir, "snap.db", size)
	dst := Location{Bucket: testBucket, Key: "h/etcd-1.db"}
	if _, err := c.Upload(ctx, dst, src, Meta{SHA256: sum, Revision: 7}, nil); err != nil {
		t.Fatal(err)
	}
	objs, err := c.List(ctx, Location{Bucket: testBucket, Key: "h/"})
	if err != nil {
		t.Fatal(err)
	}
	o, err := SelectLatest(objs)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.db")
	got, err := c.Download(ctx, o, out, nil)
	if err != nil || got != sum || fileSHA(t, out) != sum {
		t.Fatalf("Download = %s, %v; want %s", got, err, sum)
	}
	bad := w.cfg
	bad.SecretKey = "wrong"
	if _, err := w.client(t, bad).Upload(ctx, Location{Bucket: testBucket, Key: "h/x.db"}, src, Meta{SHA256: sum}, nil); !errors.Is(err, ErrCredentials) {
		t.Errorf("Upload with a wrong secret over http = %v, want credentials refused", err)
	}
}
