package steps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/objstore"
	"github.com/etcd-rescue/etcd-rescue/internal/uploadtmp"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// verifySnapshotFile reads path once: see [VerifySnapshotFile].
func verifySnapshotFile(path string) (fileSHA string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if st.Size() <= sha256.Size {
		return "", fmt.Errorf("%s is %d bytes: too small to be an etcd snapshot", path, st.Size())
	}
	// One hash pass: the whole file's digest continues the body's state.
	body := sha256.New()
	if _, err := io.CopyBuffer(body, io.LimitReader(f, st.Size()-sha256.Size), make([]byte, 1<<20)); err != nil {
		return "", err
	}
	trailer := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, trailer); err != nil {
		return "", err
	}
	state, err := body.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return "", err
	}
	whole := sha256.New()
	if err := whole.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return "", err
	}
	whole.Write(trailer)
	if !bytes.Equal(body.Sum(nil), trailer) {
		return "", fmt.Errorf("%s has no valid sha256 trailer: not a snapshot saved through the etcd API, or truncated", path)
	}
	return hex.EncodeToString(whole.Sum(nil)), nil
}

// trailerCheck is the same check as a shell command on a host, for a file
// whose size is in $n.
func trailerCheck(file string) string {
	f := q(file)
	return "[ \"$n\" -gt 32 ] && b=$(head -c $((n-32)) " + f + " | sha256sum) && [ \"${b%% *}\" = \"$(tail -c 32 " + f + " | od -An -v -tx1 | tr -d ' \\n')\" ]"
}

// SnapshotSave streams a snapshot from one member through the client API to
// a file on the operator machine, checks its trailer and writes FILE.sha256.
type SnapshotSave struct {
	To       string `yaml:"to" rescue:"required" doc:"file on the operator machine, or s3://BUCKET/KEY in the plan's object store (s3:); ${run.id} makes it unique per run"`
	KeepDays int    `yaml:"keepDays" doc:"local to: only: afterwards delete *.db files older than this many days in the same directory (0: keep all)"`
	// Keep and LocalCopy are for to: s3://...
	Keep      *SnapshotKeep `yaml:"keep" doc:"s3 to: only: after a verified upload, delete etcd-rescue's older snapshots under the same prefix unless among the newest last: or younger than days: (never the newest, never a failed run's doing)"`
	LocalCopy string        `yaml:"localCopy" doc:"s3 to: only: the local staging file the snapshot is saved to and checked in before the upload, removed after a verified upload (default: in the run's directory)"`
}

func (*SnapshotSave) NeedsMember() bool { return true }

func (s *SnapshotSave) Describe(c *Ctx, t Target) []Action {
	url := ""
	if t.Member != nil {
		url = t.Member.ClientURL
	}
	if objstore.IsURL(s.To) {
		return s.describeS3(c, t, url)
	}
	to := c.LocalPath(s.To)
	acts := []Action{
		{Host: t.Name(), Kind: API, Cmd: fmt.Sprintf("snapshot save from %s to %s (Maintenance.Snapshot; like etcdctl --endpoints=%s snapshot save %s)", url, to, url, q(to)),
			Run: func(ctx context.Context, env Env) error { return s.save(ctx, env, url, to) }},
		{Kind: Local, Cmd: "verify the sha256 trailer of " + q(to) + "; write " + q(to+".sha256")},
	}
	if s.KeepDays > 0 {
		acts = append(acts, Action{Kind: Local, Destructive: true,
			Cmd: join("find", filepath.Dir(to), "-maxdepth", "1", "-name", "*.db", "-mtime", fmt.Sprintf("+%d", s.KeepDays-1), "-delete")})
	}
	return acts
}

// saveSnapshotFile streams a snapshot from the member at url into the
// local file to: written to to.part (made 0600, its directory 0700),
// synced, its sha256 trailer verified, then renamed to to.  It returns
// the snapshot's sha256 and size.  A failed save leaves no .part behind;
// a snapshot that fails its check stays in to.part for a look.
func saveSnapshotFile(ctx context.Context, api Etcd, url, to string) (sum string, size int64, err error) {
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return "", 0, err
	}
	part := to + ".part"
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", 0, err
	}
	_, size, err = api.SnapshotSave(ctx, url, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(part)
		return "", 0, fmt.Errorf("snapshot save from %s: %w", url, err)
	}
	if sum, err = VerifySnapshotFile(part); err != nil {
		return "", 0, err
	}
	if err := os.Rename(part, to); err != nil {
		return "", 0, err
	}
	return sum, size, nil
}

func (s *SnapshotSave) save(ctx context.Context, env Env, url, to string) error {
	api, err := env.Etcd(ctx)
	if err != nil {
		return err
	}
	sum, size, err := saveSnapshotFile(ctx, api, url, to)
	if err != nil {
		return err
	}
	if err := os.WriteFile(to+".sha256", []byte(sum+"  "+filepath.Base(to)+"\n"), 0o600); err != nil {
		return err
	}
	env.Logf("saved %s (%d bytes, sha256 %s)", to, size, sum)
	if s.KeepDays > 0 {
		return pruneSnapshots(filepath.Dir(to), to, time.Duration(s.KeepDays)*24*time.Hour, env)
	}
	return nil
}

func pruneSnapshots(dir, keep string, age time.Duration, env Env) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		info, err := e.Info()
		if err != nil || !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".db") || p == keep {
			continue
		}
		if time.Since(info.ModTime()) > age {
			if err := os.Remove(p); err != nil {
				return err
			}
			os.Remove(p + ".sha256")
			env.Logf("retention: removed %s", p)
		}
	}
	return nil
}

func (s *SnapshotSave) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	if objstore.IsURL(s.To) {
		return s.checkS3(ctx, c, env)
	}
	to := c.LocalPath(s.To)
	want, err := os.ReadFile(to + ".sha256")
	if err != nil {
		return false, "", nil
	}
	got, err := VerifySnapshotFile(to)
	if err != nil || !strings.HasPrefix(string(want), got) {
		return false, "", nil
	}
	return true, to + " exists and matches its .sha256", nil
}

// SnapshotCopy uploads a snapshot from the operator machine to hosts over the
// SSH connection and checks its sha256 on arrival.
type SnapshotCopy struct {
	From string `yaml:"from" rescue:"required" doc:"snapshot file on the operator machine"`
	To   string `yaml:"to" default:"/var/tmp/etcd-rescue/snapshot.db" doc:"path on the host"`
}

// PlacedSnapshot: see [PlacesSnapshot].
func (s *SnapshotCopy) PlacedSnapshot() string { return s.To }

func (s *SnapshotCopy) Describe(c *Ctx, t Target) []Action {
	from, to := c.LocalPath(s.From), s.To
	part := uploadtmp.RunPrefix(to, c.RunID) + "TOKEN" + uploadtmp.Suffix // the upload's temp file: this run's own
	return []Action{
		{Kind: Local, Cmd: "verify the sha256 trailer of " + q(from) + " and compute its sha256 (once per file and session, for every host)"},
		{Host: t.Name(), Kind: Shell, Cmd: uploadtmp.Script(to, part, s.checked(c.RunID, "<sha256 of "+from+">")) + " < " + q(from),
			Run: func(ctx context.Context, env Env) error {
				return s.copy(uploadtmp.WithRun(ctx, c.RunID), env, t, from, c.RunID)
			}},
	}
}

func (s *SnapshotCopy) checked(runID, sum string) uploadtmp.Checked {
	return uploadtmp.Checked{SHA256: sum, Perm: 0o600, DirPerm: 0o700, RemoveStale: true, RunID: runID}
}

// UploadChecker is implemented by Runners that can upload a file in one
// remote command that checks the expected sha256 on arrival (the SSH
// runner); snapshot-copy falls back to Runner.Upload otherwise.
type UploadChecker interface {
	UploadChecked(ctx context.Context, local, remote string, c uploadtmp.Checked) (placed string, err error)
}

// FactPlaced is the fact under which snapshot-copy records a file it placed
// on host: "SHA256 IDENTITY", the identity being uploadtmp.StatFormat of the
// file right after the rename. snapshot-verify trusts the file's trailer
// while the identity is unchanged.
func FactPlaced(host, file string) string { return "snapshot.placed." + host + ":" + path.Clean(file) }

func (s *SnapshotCopy) copy(ctx context.Context, env Env, t Target, from, runID string) error {
	sum, err := VerifySnapshotFile(from)
	if err != nil {
		return err
	}
	r, err := env.Shell(t.Name())
	if err != nil {
		return err
	}
	if u, ok := r.(UploadChecker); ok {
		placed, err := u.UploadChecked(ctx, from, s.To, s.checked(runID, sum))
		if err != nil {
			return err
		}
		return env.SetFact(FactPlaced(t.Name(), s.To), sum+" "+placed)
	}
	if _, err := r.Run(ctx, join("mkdir", "-p", "-m", "0700", filepath.Dir(s.To))+" && "+staleUploads(s.To, runID), nil); err != nil {
		return err
	}
	got, err := r.Upload(ctx, from, s.To, 0o600)
	if err != nil {
		return err
	}
	if got != sum {
		return fmt.Errorf("%s: %s arrived with sha256 %s, want %s", t.Name(), s.To, got, sum)
	}
	return nil
}

func (s *SnapshotCopy) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	sum, err := VerifySnapshotFile(c.LocalPath(s.From))
	if err != nil {
		return false, "", err
	}
	return remoteTest(ctx, env, t, "[ \"$(sha256sum "+q(s.To)+" 2>/dev/null | cut -d' ' -f1)\" = "+sum+" ]", s.To+" has sha256 "+sum)
}

func (s *SnapshotCopy) Validate(c *Ctx, at At, fs *plans.Findings) {
	if objstore.IsURL(s.From) {
		fs.Add(at("from"), "snapshot-copy from: %s is in the object store: snapshot-copy ships a file of the operator machine", s.From).
			WithHint("fetch it first (before any host is touched) with a step {id: fetch, type: snapshot-fetch, with: {from: %q, to: snapshots/restore-${run.id}.db}}, and name its to: here: from: snapshots/restore-${run.id}.db", s.From)
	}
	if !filepath.IsAbs(s.To) {
		fs.Add(at("to"), "snapshot-copy to %q must be an absolute path", s.To)
	}
	if strings.HasPrefix(filepath.Clean(s.To)+"/", filepath.Clean(c.DataDir())+"/") {
		fs.Add(at("to"), "snapshot-copy to %q is inside the data dir %s, which wipe-dir and restore replace", s.To, c.DataDir())
	}
}

// staleUploads removes the temp files of uploads to f that an interrupted
// run left behind (the transport writes one beside f and renames it).
//
// Only this run's: another run's upload may be in flight (its temp files
// carry its run id).
func staleUploads(f, runID string) string {
	return "rm -f -- " + q(uploadtmp.RunPrefix(f, runID)) + "*" + uploadtmp.Suffix
}

// SnapshotVerify checks a snapshot on a host: the sha256 trailer and
// `etcdutl snapshot status`, whose revision and key count are recorded.
type SnapshotVerify struct {
	File string `yaml:"file" default:"/var/tmp/etcd-rescue/snapshot.db" doc:"snapshot file on the host"`
}

// CheckedSnapshot: see [ChecksSnapshot].
func (s *SnapshotVerify) CheckedSnapshot() string { return s.File }

func (s *SnapshotVerify) Describe(c *Ctx, t Target) []Action {
	placed := "<identity recorded by this run's snapshot-copy of " + s.File + ", if any>"
	if !c.DryRun {
		placed = placedID(c.Facts[FactPlaced(t.Name(), s.File)])
	}
	return []Action{{Host: t.Name(), Kind: Shell, Cmd: s.command(c, placed),
		Run: func(ctx context.Context, env Env) error { return s.verify(ctx, c, env, t) }}}
}

// command checks the file and reads its status in one remote command. The
// trailer check (a whole read) is skipped when the file is still the one
// this run's snapshot-copy placed: that upload compared the digest of the
// bytes that arrived with the digest of the operator's file, whose trailer
// was verified, and the identity (size, device, inode, mtime and ctime in
// ns, taken right after the rename) shows nothing wrote to or replaced it
// since. `snapshot status` (revision, keys) runs always, once. The size
// for the trailer check is the identity's first field, not another stat.
func (s *SnapshotVerify) command(c *Ctx, placed string) string {
	tool := c.Bin("etcdutl")
	if c.Version.Minor <= 4 {
		tool = "ETCDCTL_API=3 " + c.Bin("etcdctl")
	}
	f := q(s.File)
	return "id=$(stat -c " + q(uploadtmp.StatFormat) + " -- " + f + ") && " +
		"{ [ \"$id\" = " + q(placed) + " ] || { n=${id%% *}; " + trailerCheck(s.File) + "; } || { echo " + q(s.File+": no valid sha256 trailer: not a snapshot saved through the etcd API, or truncated") + " >&2; exit 1; }; } && " +
		"echo \"id $id\" && " + tool + " " + join("snapshot", "status", "-w", "json", s.File)
}

// placedID is the identity in a FactPlaced value ("SHA256 IDENTITY").
func placedID(v string) string {
	if _, id, ok := strings.Cut(v, " "); ok {
		return id
	}
	return ""
}

// FactSnapStatus is the fact under which snapshot-verify records what
// `snapshot status` said of file on host: "REVISION KEYS IDENTITY". restore
// reuses the revision while the file's identity is unchanged.
func FactSnapStatus(host, file string) string {
	return "snapshot.status." + host + ":" + path.Clean(file)
}

func (s *SnapshotVerify) verify(ctx context.Context, c *Ctx, env Env, t Target) error {
	r, err := env.Shell(t.Name())
	if err != nil {
		return err
	}
	placed, _ := env.Fact(FactPlaced(t.Name(), s.File))
	out, err := r.Run(ctx, s.command(c, placedID(placed)), nil)
	if err != nil {
		return err
	}
	var id string
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "id "); ok {
			id = strings.TrimSpace(v)
			break
		}
	}
	st, err := parseSnapStatus(out)
	if err != nil || id == "" {
		return fmt.Errorf("%s: reading the snapshot status of %s: %v (%q)", t.Name(), s.File, err, strings.TrimSpace(string(out)))
	}
	how := "trailer checked on the host"
	if placed != "" && placedID(placed) == id {
		how = "placed by this run's snapshot-copy with the verified sha256, unchanged since"
	}
	env.Logf("%s: %s at revision %d, %d keys (%s)", t.Name(), s.File, st.Revision, st.TotalKey, how)
	return env.SetFact(FactSnapStatus(t.Name(), s.File), fmt.Sprintf("%d %d %s", st.Revision, st.TotalKey, id))
}

type snapStatus struct {
	Revision int64 `json:"revision"`
	TotalKey int64 `json:"totalKey"`
}

// parseSnapStatus reads `snapshot status -w json` from out, after any
// lines before it.
func parseSnapStatus(out []byte) (snapStatus, error) {
	var st snapStatus
	i := bytes.IndexByte(out, '{')
	if i < 0 {
		return st, fmt.Errorf("no json in the output")
	}
	err := json.Unmarshal(bytes.TrimSpace(out[i:]), &st)
	return st, err
}
