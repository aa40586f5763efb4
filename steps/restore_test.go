package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/uploadtmp"
)

// restoreLab is a host in a temp dir: a fake etcdutl that logs its calls,
// answers `snapshot status` with revision rev and writes a member dir for
// `snapshot restore` (or fails when the file "fail" exists), and a snapshot
// whose status snapshot-verify recorded.
type restoreLab struct {
	t       *testing.T
	dir     string
	c       *Ctx
	ts      []Target
	env     *shipEnv
	snap    string
	callLog string
}

func newRestoreLab(t *testing.T, rev int64) *restoreLab {
	dir := t.TempDir()
	c, ts := testCtx(t, dir, "systemd")
	c.Cluster.Layout.Owner = fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	bin := filepath.Join(dir, "bin")
	calls := filepath.Join(dir, "etcdutl.calls")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	fake := fmt.Sprintf(`#!/bin/sh
echo "$*" >> %[1]s
case "$2" in
status) echo '{"hash":1,"revision":%[2]d,"totalKey":5,"totalSize":9}' ;;
restore)
  [ -e %[3]s ] && { echo "restore: boom" >&2; exit 3; }
  while [ $# -gt 0 ]; do [ "$1" = --data-dir ] && d=$2; shift; done
  mkdir -p "$d/member/snap" "$d/member/wal" && echo db > "$d/member/snap/db" ;;
esac
`, q(calls), rev, q(filepath.Join(dir, "fail")))
	if err := os.WriteFile(filepath.Join(bin, "etcdutl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	c.Cluster.Layout.BinDir = bin
	snap := filepath.Join(dir, "snapshot.db")
	writeSnap(t, snap, strings.Repeat("snapshot", 512))
	return &restoreLab{t: t, dir: dir, c: c, ts: ts, env: &shipEnv{facts: map[string]string{}}, snap: snap, callLog: calls}
}

// recordStatus records what snapshot-verify would have: revision rev of the
// snapshot as it is now.
func (l *restoreLab) recordStatus(rev int64) {
	id, err := sh(l.t, "stat -c "+q(uploadtmp.StatFormat)+" -- "+q(l.snap))
	if err != nil {
		l.t.Fatal(err, id)
	}
	l.env.facts[FactSnapStatus("h1", l.snap)] = fmt.Sprintf("%d 5 %s", rev, strings.TrimSpace(id))
}

// apply runs restore's actions on h1 but the live precondition (tested in
// engine/live_test.go), as the engine does: Run when set, else Cmd.
func (l *restoreLab) apply(s *Restore) error {
	l.env.cmds = nil
	for _, a := range s.Describe(l.c, l.ts[0])[1:] {
		var err error
		if a.Run != nil {
			err = a.Run(context.Background(), l.env)
		} else {
			_, err = l.env.Run(context.Background(), a.Cmd, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// calls are the fake etcdutl's subcommands ("status", "restore --bump-revision N").
func (l *restoreLab) calls() []string {
	b, _ := os.ReadFile(l.callLog)
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		call := f[1]
		for i := range f {
			if f[i] == "--bump-revision" && i+1 < len(f) {
				call += " --bump-revision " + f[i+1]
			}
		}
		out = append(out, call)
	}
	return out
}

func (l *restoreLab) restored() bool {
	_, err := os.Stat(filepath.Join(l.c.DataDir(), "member", "snap", "db"))
	_, terr := os.Stat((&Restore{}).tmpDir(l.c))
	return err == nil && os.IsNotExist(terr)
}

// With the revision snapshot-verify recorded and the file unchanged, the
// restore is two remote commands: one that removes a leftover restoring dir,
// confirms the file, restores with the bump computed from the recorded
// revision and chowns, and the rename. The snapshot is not read again.
func TestRestoreAutoFromRecordedStatus(t *testing.T) {
	l := newRestoreLab(t, 99)
	l.recordStatus(500)
	l.env.facts[FactPreRevision] = "1500"
	leftover := filepath.Join((&Restore{}).tmpDir(l.c), "member", "half")
	if err := os.MkdirAll(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Restore{Snapshot: l.snap, BumpRevision: "auto", Margin: 1000}
	if err := l.apply(s); err != nil {
		t.Fatal(err)
	}
	if len(l.env.cmds) != 2 || !strings.Contains(l.env.cmds[1], "mv -T") {
		t.Errorf("%d remote commands, want 2 (restore, rename):\n%s", len(l.env.cmds), strings.Join(l.env.cmds, "\n"))
	}
	if got := l.calls(); len(got) != 1 || got[0] != "restore --bump-revision 2000" {
		t.Errorf("etcdutl calls %q, want one restore with --bump-revision 2000 (1000 + 1500 - 500)", got)
	}
	if !l.restored() {
		t.Error("member not in place, or the restoring dir left behind")
	}
	if _, err := os.Stat(filepath.Join(l.c.DataDir(), "member", "half")); !os.IsNotExist(err) {
		t.Error("the leftover of an earlier attempt was restored along")
	}
	if l.env.facts[bumpFact] != "2000" || l.env.facts["restore.h1.snapshotRevision"] != "500" {
		t.Errorf("facts %v", l.env.facts)
	}
}

// A snapshot changed since snapshot-verify read it: nothing is restored
// from the recorded revision; its status is read and the bump follows it.
// Without a recorded status, the same.
func TestRestoreAutoReadsChangedSnapshot(t *testing.T) {
	for name, changed := range map[string]bool{"changed": true, "nothing recorded": false} {
		t.Run(name, func(t *testing.T) {
			l := newRestoreLab(t, 1200)
			l.env.facts[FactPreRevision] = "1500"
			if changed {
				l.recordStatus(500)
				later := time.Now().Add(2 * time.Second)
				if err := os.Chtimes(l.snap, later, later); err != nil {
					t.Fatal(err)
				}
			}
			s := &Restore{Snapshot: l.snap, BumpRevision: "auto", Margin: 1000}
			if err := l.apply(s); err != nil {
				t.Fatal(err)
			}
			if got := l.calls(); len(got) != 2 || got[0] != "status" || got[1] != "restore --bump-revision 1300" {
				t.Errorf("etcdutl calls %q, want status, then restore with --bump-revision 1300 (1000 + 1500 - 1200)", got)
			}
			if !l.restored() || l.env.facts[bumpFact] != "1300" {
				t.Errorf("restored %v, facts %v", l.restored(), l.env.facts)
			}
		})
	}
}

// A resumed run restores with the bump the interrupted one chose, in one
// command, without confirming or reading the snapshot.
func TestRestoreAutoResumedKeepsBump(t *testing.T) {
	l := newRestoreLab(t, 1200)
	l.recordStatus(500)
	l.env.facts[bumpFact] = "4242"
	if err := l.apply(&Restore{Snapshot: l.snap, BumpRevision: "auto", Margin: 1000}); err != nil {
		t.Fatal(err)
	}
	if got := l.calls(); len(got) != 1 || got[0] != "restore --bump-revision 4242" {
		t.Errorf("etcdutl calls %q, want one restore with the recorded bump 4242", got)
	}
	if !l.restored() {
		t.Error("not restored")
	}
}

// Each part of the one command fails with its own message, and the data
// dir is left alone.
func TestRestoreFailuresSayWhichPart(t *testing.T) {
	for name, tc := range map[string]struct {
		mode  string
		spoil func(l *restoreLab)
		want  string
	}{
		"restore tool": {"auto", func(l *restoreLab) { os.WriteFile(filepath.Join(l.dir, "fail"), nil, 0o600) }, "etcdutl snapshot restore of"},
		"chown":        {"5000", func(l *restoreLab) { l.c.Cluster.Layout.Owner = "no-such-user-4711:no-such-group" }, "chown -R no-such-user-4711:no-such-group of the restored"},
	} {
		t.Run(name, func(t *testing.T) {
			l := newRestoreLab(t, 99)
			l.recordStatus(500)
			tc.spoil(l)
			err := l.apply(&Restore{Snapshot: l.snap, BumpRevision: tc.mode, Margin: 1000})
			var ee *ExitError
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ee) {
				t.Fatalf("error %v, want one saying %q around the command's exit", err, tc.want)
			}
			if _, err := os.Stat(l.c.DataDir()); !os.IsNotExist(err) {
				t.Error("the data dir was touched")
			}
		})
	}
}
