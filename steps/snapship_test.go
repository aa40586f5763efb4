package steps

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/uploadtmp"
)

// shipEnv is localEnv with facts, and a checked upload that runs
// uploadtmp.Script with this machine's sh, the file on its stdin.
type shipEnv struct {
	localEnv
	facts map[string]string
}

func (e *shipEnv) Shell(string) (Runner, error) { return e, nil }
func (e *shipEnv) Fact(k string) (string, bool) { v, ok := e.facts[k]; return v, ok }
func (e *shipEnv) SetFact(k, v string) error    { e.facts[k] = v; return nil }
func (e *shipEnv) UploadChecked(ctx context.Context, local, remote string, c uploadtmp.Checked) (string, error) {
	f, err := os.Open(local)
	if err != nil {
		return "", err
	}
	defer f.Close()
	out, err := e.Run(ctx, uploadtmp.Script(remote, uploadtmp.NameFor(ctx, remote, "tok"), c), f)
	if err != nil {
		return "", err
	}
	_, placed, _ := strings.Cut(string(out), "placed ")
	return strings.TrimSpace(placed), nil
}

// The file snapshot-copy placed is trusted by snapshot-verify while it is
// unchanged; once written to, its trailer is checked again (and a damaged
// one refused). restore reuses snapshot-verify's status of the unchanged
// file and reads it again once the file changed.
func TestShippedSnapshotTrustedWhileUnchanged(t *testing.T) {
	dir := t.TempDir()
	c, ts := testCtx(t, dir, "systemd")
	bin := filepath.Join(dir, "bin")
	calls := filepath.Join(dir, "etcdutl.calls")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "etcdutl"), []byte("#!/bin/sh\necho x >> "+calls+"\necho '{\"hash\":1,\"revision\":77,\"totalKey\":5,\"totalSize\":9}'\n"), 0o755)
	c.Cluster.Layout.BinDir = bin
	statusCalls := func() int { b, _ := os.ReadFile(calls); return bytes.Count(b, []byte("x")) }

	from := filepath.Join(dir, "local.db")
	writeSnap(t, from, strings.Repeat("snapshot", 4096))
	to := filepath.Join(dir, "host", "snapshot.db")
	env := &shipEnv{facts: map[string]string{}}
	ctx := context.Background()
	if err := (&SnapshotCopy{From: from, To: to}).copy(ctx, env, ts[0], from, "R1"); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(from)
	if got, _ := os.ReadFile(to); !bytes.Equal(got, want) {
		t.Fatal("placed file differs")
	}
	if env.facts[FactPlaced("h1", to)] == "" {
		t.Fatalf("no placement recorded: %v", env.facts)
	}

	v := &SnapshotVerify{File: to}
	if err := v.verify(ctx, c, env, ts[0]); err != nil {
		t.Fatal(err)
	}
	if l := env.logs[len(env.logs)-1]; !strings.Contains(l, "placed by this run's snapshot-copy") || !strings.Contains(l, "revision 77, 5 keys") {
		t.Errorf("log %q", l)
	}
	r := &Restore{Snapshot: to}
	if rev, err := r.snapshotRevision(ctx, c, env, ts[0], env); err != nil || rev != 77 || statusCalls() != 1 {
		t.Fatalf("restore's revision %d, %v; snapshot status ran %d times, want once", rev, err, statusCalls())
	}

	// Written to since (same size, damaged trailer): checked again, refused.
	b, _ := os.ReadFile(to)
	b[len(b)-1] ^= 1
	os.WriteFile(to, b, 0o600)
	later := time.Now().Add(time.Second)
	os.Chtimes(to, later, later)
	if err := v.verify(ctx, c, env, ts[0]); err == nil || !strings.Contains(err.Error(), "no valid sha256 trailer") {
		t.Fatalf("a changed, damaged file passed: %v", err)
	}
	// restore reads the status of the changed file itself.
	if _, err := r.snapshotRevision(ctx, c, env, ts[0], env); err != nil || statusCalls() != 2 {
		t.Fatalf("%v; snapshot status ran %d times, want 2", err, statusCalls())
	}
	// Repaired: the trailer check passes on the host, without the record.
	os.WriteFile(to, want, 0o600)
	if err := v.verify(ctx, c, env, ts[0]); err != nil {
		t.Fatal(err)
	}
	if l := env.logs[len(env.logs)-1]; !strings.Contains(l, "trailer checked on the host") {
		t.Errorf("log %q", l)
	}
}

// The dry-run shows the one upload command that runs, with the expected
// digest's placeholder, and the once-per-session local verification.
func TestSnapshotCopyDescribe(t *testing.T) {
	c, ts := testCtx(t, t.TempDir(), "systemd")
	c.RunID = "<run-id>"
	acts := (&SnapshotCopy{From: "/b/s.db", To: "/var/tmp/x/s.db"}).Describe(c, ts[0])
	if len(acts) != 2 || !strings.Contains(acts[0].Cmd, "once per file and session") {
		t.Fatalf("%+v", acts)
	}
	want := uploadtmp.Script("/var/tmp/x/s.db", "/var/tmp/x/.s.db.sshx-<run-id>-TOKEN.tmp",
		uploadtmp.Checked{SHA256: "<sha256 of /b/s.db>", Perm: 0o600, DirPerm: 0o700, RemoveStale: true, RunID: "<run-id>"}) + " < /b/s.db"
	if acts[1].Cmd != want {
		t.Errorf("upload shown as\n%s\nwant\n%s", acts[1].Cmd, want)
	}
	for _, s := range []string{"mkdir -p -m 0700 -- /var/tmp/x", "set -- '/var/tmp/x/.s.db.sshx-<run-id>-'*.tmp", "rm -f -- \"$@\"", "dd of=\"$t\" bs=1M conv=fsync", "exit 92", "mv -f --"} {
		if !strings.Contains(acts[1].Cmd, s) {
			t.Errorf("upload lacks %q", s)
		}
	}
}
