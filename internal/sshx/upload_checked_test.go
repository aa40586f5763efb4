package sshx_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
	"github.com/etcd-rescue/etcd-rescue/internal/uploadtmp"
)

func checkedFixture(t *testing.T) (*sshx.Client, string, []byte, string) {
	t.Helper()
	srv := sshxtest.Start(t)
	c := newClient(t, config(srv))
	data := make([]byte, 5<<20+3)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	dst := filepath.Join(srv.Dir, "new dir", "snap'shot.db")
	return c, dst, data, hex.EncodeToString(sum[:])
}

// dirEntries lists the target's directory (temporary files included).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// One command makes the directory, removes this run's stale temporary file,
// writes, checks and renames; the identity it reports is the placed file's.
func TestUploadCheckedPlaces(t *testing.T) {
	c, dst, data, sum := checkedFixture(t)
	ctx := uploadtmp.WithRun(context.Background(), "run1")
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	stale := uploadtmp.NameFor(ctx, dst, "old")
	other := uploadtmp.NameFor(uploadtmp.WithRun(context.Background(), "run2"), dst, "inflight")
	for _, f := range []string{stale, other} {
		if err := os.WriteFile(f, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var cmds []string
	c2 := newClient(t, c.Config(), sshx.WithEventHook(func(e sshx.Event) { cmds = append(cmds, e.Cmd) }))
	got, err := c2.UploadChecked(ctx, bytes.NewReader(data), dst, uploadtmp.Checked{SHA256: sum, Perm: 0o640, DirPerm: 0o700, RemoveStale: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 1 {
		t.Errorf("the upload ran %d remote commands, want 1: %q", len(cmds), cmds)
	}
	if b, err := os.ReadFile(dst); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("target differs (%v)", err)
	}
	fi, _ := os.Stat(dst)
	if fi.Mode().Perm() != 0o640 || got.SHA256 != sum || got.Size != int64(len(data)) {
		t.Errorf("mode %v, result %+v", fi.Mode(), got)
	}
	if f := strings.Fields(got.Placed); len(f) != 5 || f[0] != "5242883" {
		t.Errorf("placed identity %q", got.Placed)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("this run's stale temporary file survived (%v)", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another run's temporary file was removed: %v", err)
	}
}

// Bytes that do not hash to the expected digest are never renamed into
// place, and the error says whether the local side sent what was verified.
func TestUploadCheckedMismatchLeavesTarget(t *testing.T) {
	c, dst, data, sum := checkedFixture(t)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed := bytes.Clone(data)
	changed[12345] ^= 1
	_, err := c.UploadChecked(context.Background(), bytes.NewReader(changed), dst, uploadtmp.Checked{SHA256: sum, Perm: 0o600})
	var me *sshx.MismatchError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "local file changed after it was verified") || me.Size != int64(len(data)) {
		t.Fatalf("want a mismatch blamed on the local file, got %v", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "old" {
		t.Fatalf("target changed to %d bytes", len(b))
	}
	if n := dirEntries(t, filepath.Dir(dst)); len(n) != 1 {
		t.Fatalf("left behind: %v", n)
	}
}

// A read error locally ends stdin early: the host sees a short file, whose
// digest cannot match, and the target stays.
func TestUploadCheckedTruncatedStdin(t *testing.T) {
	c, dst, _, sum := checkedFixture(t)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := c.UploadChecked(context.Background(), &failingReader{n: 100000}, dst, uploadtmp.Checked{SHA256: sum, Perm: 0o600})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("want the read error, got %v", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "old" {
		t.Fatalf("target changed to %d bytes", len(b))
	}
	if n := dirEntries(t, filepath.Dir(dst)); len(n) != 1 {
		t.Fatalf("left behind: %v", n)
	}
	if _, err := c.UploadChecked(context.Background(), strings.NewReader("x"), filepath.Join(filepath.Dir(dst), "no", "dir", "f"), uploadtmp.Checked{SHA256: sum, Perm: 0o600}); err == nil || !strings.Contains(err.Error(), "remote write exited 91") {
		t.Fatalf("upload into a missing directory without DirPerm: %v", err)
	}
}

// slowReader gives n bytes, then blocks until ctx ends.
type slowReader struct {
	ctx context.Context
	n   int
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		<-r.ctx.Done()
		return 0, r.ctx.Err()
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

// Killed mid-upload (the context ends while bytes still flow): the target
// is untouched and the temporary file is removed.
func TestUploadCheckedKilledMidway(t *testing.T) {
	c, dst, _, sum := checkedFixture(t)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &slowReader{ctx: ctx, n: 3 << 20}
	go func() {
		// Cancel once part of the file is on the host.
		for i := 0; i < 200; i++ {
			for _, n := range dirEntries(t, filepath.Dir(dst)) {
				if fi, err := os.Stat(filepath.Join(filepath.Dir(dst), n)); err == nil && strings.HasSuffix(n, uploadtmp.Suffix) && fi.Size() > 0 {
					cancel()
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
	}()
	_, err := c.UploadChecked(ctx, io.LimitReader(r, 10<<20), dst, uploadtmp.Checked{SHA256: sum, Perm: 0o600})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want a cancelled upload, got %v", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "old" {
		t.Fatalf("target changed to %d bytes", len(b))
	}
	if n := dirEntries(t, filepath.Dir(dst)); len(n) != 1 {
		t.Fatalf("left behind: %v", n)
	}
}
