package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/objstore"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// Snapshots in S3-compatible object storage: snapshot-save with to:
// s3://..., and snapshot-fetch, which brings one to the operator machine
// before any host is touched.

// ObjectStoreEnv is implemented by an Env that reaches the plan's object
// store (its s3: section).
type ObjectStoreEnv interface {
	ObjectStore() (objstore.Store, error)
}

// store returns the object store of env, or says why there is none.
func store(env Env) (objstore.Store, error) {
	se, ok := env.(ObjectStoreEnv)
	if !ok {
		return nil, errors.New("this run has no object store (no s3: section reached the engine)")
	}
	return se.ObjectStore()
}

// UsesObjectStore is implemented by steps that reach the plan's object
// store with some parameters (snapshot-save to: s3://..., snapshot-fetch):
// the engine then checks the s3: section's files before anything runs.
type UsesObjectStore interface {
	UsesObjectStore() bool
}

func (s *SnapshotSave) UsesObjectStore() bool { return objstore.IsURL(s.To) }
func (*SnapshotFetch) UsesObjectStore() bool  { return true }

// Prepares is implemented by operator-side steps that must complete before
// the first step that touches a host (snapshot-fetch): the engine runs
// every one of them after the preflight and before any other step, and a
// failure ends the run with nothing changed on any host.
type Prepares interface {
	PreparesRun() bool
}

// FetchesSnapshot is implemented by steps that bring a snapshot file to
// the operator machine (snapshot-fetch): a later step may read the file
// they name even when it does not exist when the plan is checked.
type FetchesSnapshot interface {
	FetchedSnapshot(c *Ctx) string
}

// SnapshotKeep is snapshot-save's retention in an object store.
type SnapshotKeep struct {
	Last int `yaml:"last" doc:"keep at least the newest N snapshots under the prefix (0: count does not protect)"`
	Days int `yaml:"days" doc:"keep every snapshot younger than D days (0: age does not protect)"`

	Pos    plans.Pos            `yaml:"-"`
	KeyPos map[string]plans.Pos `yaml:"-"`
}

// IsTransferProgress reports whether a step's log line is the progress of
// an object-store transfer (what [progressLogger] writes). The engine makes
// such lines, and no other log line of a step, crash points: a line that
// merely mentions a call ("member promote ...") before the call is made
// must not pass for the call having succeeded.
func IsTransferProgress(msg string) bool {
	return strings.HasPrefix(msg, "s3 upload s3://") || strings.HasPrefix(msg, "s3 download s3://")
}

// progressLogger journals a transfer every step bytes (at least 4 MiB,
// at most about 64 lines per transfer) and at the end.
func progressLogger(env Env, verb, url string) objstore.Progress {
	var next int64
	return func(done, total int64) {
		step := int64(4 << 20)
		if total/64 > step {
			step = total / 64
		}
		if done < next && done != total {
			return
		}
		next = done + step
		if total >= 0 {
			env.Logf("s3 %s %s %s of %s", verb, url, mib(done), mib(total))
		} else {
			env.Logf("s3 %s %s %s", verb, url, mib(done))
		}
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// runDirFile is a file in the run's directory on the operator machine.
func (c *Ctx) runDirFile(name string) string {
	dir := c.RunDir
	if dir == "" {
		dir = "<state-dir>/runs/<run-id>"
	}
	return filepath.Join(dir, name)
}

// s3Location parses a to:/from: already known to be an s3:// URL.
func s3Location(u string) objstore.Location {
	l, _ := objstore.ParseURL(u)
	return l
}

// prefixOf is the "directory" of an object: the prefix retention and the
// stale-upload cleanup look at.
func prefixOf(l objstore.Location) objstore.Location {
	dir := path.Dir(l.Key)
	if dir == "." {
		return objstore.Location{Bucket: l.Bucket}
	}
	return objstore.Location{Bucket: l.Bucket, Key: dir + "/"}
}

// validateS3 checks an s3:// URL of a step: it parses, and the plan has
// an s3: section.
func validateS3(c *Ctx, at At, key, u string, fs *plans.Findings) (objstore.Location, bool) {
	l, err := objstore.ParseURL(u)
	if err != nil {
		fs.Add(at(key), "%s: %v", key, err)
		return l, false
	}
	if c.Plan != nil && c.Plan.S3 == nil {
		fs.Add(at(key), "%s %s: the plan has no s3: section", key, u).
			WithHint("add s3: (endpoint, region, pathStyle, ca, credentials) to the plan or its inventory")
	}
	return l, true
}

// describeS3Save is snapshot-save's dry-run and run with to: s3://...
func (s *SnapshotSave) describeS3(c *Ctx, t Target, url string) []Action {
	dst := s3Location(s.To)
	stage := s.staging(c)
	acts := []Action{
		{Host: t.Name(), Kind: API, Cmd: fmt.Sprintf("snapshot save from %s to the staging file %s (Maintenance.Snapshot)", url, stage),
			Run: func(ctx context.Context, env Env) error { return s.saveS3(ctx, c, env, url, stage, dst) }},
		{Kind: Local, Cmd: "verify the sha256 trailer of " + q(stage)},
		{Kind: Local, Cmd: fmt.Sprintf("upload %s to %s (streamed multipart; metadata sha256, revision, size, cluster, run), then read it back: sha256 and size must match", stage, dst)},
		{Kind: Local, Cmd: "remove " + q(stage)},
	}
	if k := s.Keep; k != nil && (k.Last > 0 || k.Days > 0) {
		acts = append(acts,
			Action{Kind: Local, Cmd: fmt.Sprintf("only after a verified upload: abort multipart uploads under %s older than 1h", prefixOf(dst))},
			Action{Kind: Local, Destructive: true, Cmd: fmt.Sprintf("retention under %s: %s; never %s nor the newest verified snapshot, nor objects etcd-rescue did not write", prefixOf(dst), keepText(*k), dst)})
	}
	return acts
}

func keepText(k SnapshotKeep) string {
	var parts []string
	if k.Last > 0 {
		parts = append(parts, fmt.Sprintf("delete all but the newest %d", k.Last))
	}
	if k.Days > 0 {
		parts = append(parts, fmt.Sprintf("that are older than %d days", k.Days))
	}
	return strings.Join(parts, " ")
}

// staging is the local file the snapshot is saved to before the upload.
func (s *SnapshotSave) staging(c *Ctx) string {
	if s.LocalCopy != "" {
		return c.LocalPath(s.LocalCopy)
	}
	return c.runDirFile("snapshot-save-" + path.Base(s3Location(s.To).Key))
}

// FactSaved is the fact under which snapshot-save records the object it
// uploaded and verified: "SHA256 REVISION SIZE".
func FactSaved(url string) string { return "snapshot.saved." + url }

func (s *SnapshotSave) saveS3(ctx context.Context, c *Ctx, env Env, url, stage string, dst objstore.Location) error {
	st, err := store(env)
	if err != nil {
		return err
	}
	api, err := env.Etcd(ctx)
	if err != nil {
		return err
	}
	rev := int64(0)
	if ep, err := api.Status(ctx, url); err == nil {
		// The member's revision as the save begins: the snapshot holds at
		// least this much history (it is taken in one read transaction
		// that starts after this answer).
		rev = ep.Revision
	}
	sum, size, err := saveSnapshotFile(ctx, api, url, stage)
	if err != nil {
		return err
	}
	cluster := ""
	if c.Cluster != nil {
		cluster = c.Cluster.Name
	}
	meta := objstore.Meta{SHA256: sum, Revision: rev, Size: size, Cluster: cluster, RunID: c.RunID}
	env.Logf("saved %s (%d bytes, sha256 %s); uploading to %s", stage, size, sum, dst)
	// Upload reads the object back and verifies it against meta (the
	// Store's contract; objstore.Client removes an object that does not
	// match): a second read here would double the transfer.
	o, err := st.Upload(ctx, dst, stage, meta, progressLogger(env, "upload", dst.String()))
	if err == nil && (o.Meta.SHA256 != sum || o.Size != size) {
		err = fmt.Errorf("the store reports sha256 %s and %d bytes, the snapshot has %s and %d: %w", o.Meta.SHA256, o.Size, sum, size, objstore.ErrCorrupt)
	}
	if err != nil {
		return fmt.Errorf("upload to %s: %w (nothing was pruned; the snapshot is kept in %s)", dst, err, stage)
	}
	if err := env.SetFact(FactSaved(dst.String()), fmt.Sprintf("%s %d %d", sum, rev, size)); err != nil {
		return err
	}
	env.Logf("uploaded and verified %s (sha256 %s, revision %d)", dst, sum, rev)
	if err := os.Remove(stage); err != nil {
		env.Logf("could not remove the staging file %s: %v", stage, err)
	}
	if k := s.Keep; k != nil && (k.Last > 0 || k.Days > 0) {
		return retention(ctx, env, st, dst, *k, cluster)
	}
	return nil
}

// retention runs only after a verified upload: stale multipart uploads
// first, then the objects the rule allows to delete, each logged.
//
// Only this cluster's snapshots count: an etcd-rescue object whose metadata
// names another cluster (two clusters backed up under one prefix) is
// neither deleted nor counted, so one cluster's keep: never prunes the
// other's backups.
func retention(ctx context.Context, env Env, st objstore.Store, dst objstore.Location, k SnapshotKeep, cluster string) error {
	pre := prefixOf(dst)
	if n, err := st.AbortStaleUploads(ctx, pre, time.Hour); err != nil {
		env.Logf("could not abort stale uploads under %s: %v", pre, err)
	} else if n > 0 {
		env.Logf("aborted %d stale multipart upload(s) under %s", n, pre)
	}
	objs, err := st.List(ctx, pre)
	if err != nil {
		return fmt.Errorf("retention: listing %s: %w", pre, err)
	}
	mine := objs[:0:0]
	others := 0
	for _, o := range objs {
		if o.Layout == objstore.LayoutRescue && o.Meta.Cluster != cluster {
			others++
			continue
		}
		mine = append(mine, o)
	}
	if others > 0 {
		env.Logf("retention under %s: %d snapshot(s) of other clusters left alone (their metadata names another cluster than %q)", pre, others, cluster)
	}
	objs = mine
	del := objstore.PlanRetention(objs, objstore.Keep{Last: k.Last, Days: k.Days}, time.Now(), dst)
	if len(del) == 0 {
		env.Logf("retention under %s (%s): nothing to delete of %d object(s)", pre, keepText(k), len(objs))
		return nil
	}
	if err := st.Delete(ctx, del); err != nil {
		return fmt.Errorf("retention: deleting under %s: %w", pre, err)
	}
	for _, o := range del {
		env.Logf("retention: deleted %s (uploaded %s)", o.Location, o.Modified.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkS3 says done only when the object exists, was written by this run
// and verifies.
func (s *SnapshotSave) checkS3(ctx context.Context, c *Ctx, env Env) (bool, string, error) {
	dst := s3Location(s.To)
	st, err := store(env)
	if err != nil {
		return false, "", err
	}
	var want objstore.Meta
	if v, ok := env.Fact(FactSaved(dst.String())); ok {
		f := strings.Fields(v)
		if len(f) == 3 {
			want.SHA256 = f[0]
			want.Revision, _ = strconv.ParseInt(f[1], 10, 64)
			want.Size, _ = strconv.ParseInt(f[2], 10, 64)
		}
	}
	if want.SHA256 == "" {
		o, err := st.Stat(ctx, dst)
		if err != nil || o.Layout != objstore.LayoutRescue || o.Meta.RunID != c.RunID {
			return false, "", nil
		}
		want = o.Meta
	}
	if _, err := st.Verify(ctx, dst, want); err != nil {
		return false, "", nil
	}
	return true, dst.String() + " exists and verifies (sha256 " + want.SHA256 + ")", nil
}

func (s *SnapshotSave) Validate(c *Ctx, at At, fs *plans.Findings) {
	if !objstore.IsURL(s.To) {
		if s.Keep != nil {
			fs.Add(at("keep"), "snapshot-save keep: is for to: s3://...; %q is a local file", s.To).
				WithHint("for local files use keepDays: N")
		}
		if s.LocalCopy != "" {
			fs.Add(at("localCopy"), "snapshot-save localCopy: is for to: s3://...; %q is a local file", s.To)
		}
		return
	}
	if s.KeepDays > 0 {
		fs.Add(at("keepDays"), "snapshot-save keepDays: is for local files; to: is %s", s.To).
			WithHint("in an object store use keep: {last: N, days: D}")
	}
	l, ok := validateS3(c, at, "to", s.To, fs)
	if ok && l.IsPrefix() {
		fs.Add(at("to"), "snapshot-save to: %s names a prefix, not an object", s.To).
			WithHint("name the object, unique per run: %setcd-${run.id}.db", s.To)
	}
	if k := s.Keep; k != nil {
		if k.Last < 0 || k.Days < 0 {
			fs.Add(at("keep"), "snapshot-save keep: last and days must not be negative")
		}
		if k.Last == 0 && k.Days == 0 {
			fs.Warn(at("keep"), "snapshot-save keep: with neither last nor days deletes nothing").
				WithHint("keep: {last: 7, days: 30} keeps the newest 7 and anything younger than 30 days")
		}
	}
}

// SnapshotFetch downloads a snapshot from the object store to the operator
// machine, verified, before any host is touched.
type SnapshotFetch struct {
	From   string `yaml:"from" rescue:"required" doc:"s3://BUCKET/KEY of one snapshot, or s3://BUCKET/PREFIX/ with select: latest"`
	Select string `yaml:"select" enum:"latest" doc:"latest: the newest valid snapshot under the prefix from: names (etcd-rescue's own, or etcd-backup-restore's full snapshots); required with a prefix"`
	To     string `yaml:"to" doc:"file on the operator machine (default: snapshot.db in the run's directory); name it as snapshot-copy's from:"`
}

func (*SnapshotFetch) PreparesRun() bool { return true }

// DefaultTimeout: a fetch moves a whole snapshot.
func (*SnapshotFetch) DefaultTimeout() (time.Duration, string) {
	return transferDeadline, "a snapshot transfer"
}

// FetchedSnapshot: see [FetchesSnapshot].
func (s *SnapshotFetch) FetchedSnapshot(c *Ctx) string { return s.file(c) }

func (s *SnapshotFetch) file(c *Ctx) string {
	if s.To != "" {
		return c.LocalPath(s.To)
	}
	return c.runDirFile("snapshot.db")
}

// FactFetched is the fact under which snapshot-fetch records the object it
// chose and verified: "SHA256 REVISION s3://BUCKET/KEY". A resumed run
// fetches exactly that object again, never a newer one.
func FactFetched(file string) string { return "snapshot.fetched." + file }

type fetched struct {
	sha string
	rev int64
	url string
}

func parseFetched(v string) (fetched, bool) {
	f := strings.SplitN(v, " ", 3)
	if len(f) != 3 {
		return fetched{}, false
	}
	rev, err := strconv.ParseInt(f[1], 10, 64)
	return fetched{sha: f[0], rev: rev, url: f[2]}, err == nil
}

func (s *SnapshotFetch) Describe(c *Ctx, t Target) []Action {
	file := s.file(c)
	what := s.From
	if s.Select != "" {
		what = fmt.Sprintf("the newest valid snapshot under %s (select: %s; etcd-backup-restore delta snapshots are not applied)", s.From, s.Select)
	}
	if f, ok := parseFetched(c.Facts[FactFetched(file)]); ok {
		what = f.url + " (chosen earlier in this run; its sha256 must still be " + f.sha + ")"
	}
	return []Action{
		{Kind: Local, Cmd: fmt.Sprintf("before any host is touched: download %s to %s", what, file),
			Run: func(ctx context.Context, env Env) error {
				if err := s.fetch(ctx, c, env, file); err != nil {
					return fmt.Errorf("%w (snapshot-fetch runs before every other step: no host was touched)", err)
				}
				return nil
			}},
		{Kind: Local, Cmd: "verify the download's sha256 against the object's metadata, and the sha256 trailer of " + q(file)},
	}
}

// resolve picks the object to fetch: the one this run chose before, else
// from: itself, else the newest under the prefix.
func (s *SnapshotFetch) resolve(ctx context.Context, env Env, st objstore.Store, file string) (objstore.Object, *fetched, error) {
	if v, ok := env.Fact(FactFetched(file)); ok {
		f, ok := parseFetched(v)
		if !ok {
			return objstore.Object{}, nil, fmt.Errorf("the recorded fetch %q is not readable", v)
		}
		o, err := st.Stat(ctx, s3Location(f.url))
		if err != nil {
			return o, nil, fmt.Errorf("%s, which this run chose before, cannot be read now: %w", f.url, err)
		}
		if o.Layout == objstore.LayoutRescue && o.Meta.SHA256 != f.sha {
			return o, nil, fmt.Errorf("%s changed since this run chose it: sha256 %s now, %s then; refusing to restore a different snapshot in the same run", f.url, o.Meta.SHA256, f.sha)
		}
		return o, &f, nil
	}
	src := s3Location(s.From)
	if !src.IsPrefix() {
		o, err := st.Stat(ctx, src)
		return o, nil, err
	}
	objs, err := st.List(ctx, src)
	if err != nil {
		return objstore.Object{}, nil, fmt.Errorf("listing %s: %w", src, err)
	}
	o, err := objstore.SelectLatest(objs)
	if err != nil {
		return o, nil, fmt.Errorf("%s: %w", src, err)
	}
	if o.Layout == objstore.LayoutBackupFull {
		newer := 0
		for _, d := range objs {
			if d.Layout == objstore.LayoutBackupDelta && d.Modified.After(o.Modified) {
				newer++
			}
		}
		if newer > 0 {
			env.Logf("warning: %d etcd-backup-restore delta snapshot(s) under %s are newer than %s and are NOT applied: the restore goes back to revision %d", newer, src, o.Location, o.Revision)
		}
	}
	return o, nil, nil
}

func (s *SnapshotFetch) fetch(ctx context.Context, c *Ctx, env Env, file string) error {
	st, err := store(env)
	if err != nil {
		return err
	}
	o, before, err := s.resolve(ctx, env, st, file)
	if err != nil {
		return err
	}
	env.Logf("chose %s (%d bytes, revision %d, uploaded %s)", o.Location, o.Size, o.Revision, o.Modified.UTC().Format(time.RFC3339))
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	part := file + ".part"
	sum, err := st.Download(ctx, o, part, progressLogger(env, "download", o.Location.String()))
	if err != nil {
		os.Remove(part)
		return fmt.Errorf("download %s: %w", o.Location, err)
	}
	if o.Layout == objstore.LayoutRescue && o.Meta.SHA256 != "" && sum != o.Meta.SHA256 {
		os.Remove(part)
		return fmt.Errorf("download %s: sha256 %s, the metadata says %s: %w", o.Location, sum, o.Meta.SHA256, objstore.ErrCorrupt)
	}
	if before != nil && sum != before.sha {
		os.Remove(part)
		return fmt.Errorf("%s changed since this run chose it: sha256 %s now, %s then; refusing to restore a different snapshot in the same run", before.url, sum, before.sha)
	}
	if err := os.Rename(part, file); err != nil {
		return err
	}
	// Verified under its final name: snapshot-copy's verification of the
	// same file is then this one (snapcache.go), not another read.
	fileSHA, err := VerifySnapshotFile(file)
	if err != nil {
		os.Remove(file)
		return fmt.Errorf("%s: %w", o.Location, err)
	}
	if err := os.WriteFile(file+".sha256", []byte(fileSHA+"  "+filepath.Base(file)+"\n"), 0o600); err != nil {
		return err
	}
	env.Logf("fetched %s to %s (sha256 %s, revision %d)", o.Location, file, sum, o.Revision)
	return env.SetFact(FactFetched(file), fmt.Sprintf("%s %d %s", sum, o.Revision, o.Location))
}

// Check: done when the file recorded by this run's fetch is still there
// and still the snapshot it fetched.
func (s *SnapshotFetch) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	file := s.file(c)
	v, ok := env.Fact(FactFetched(file))
	if !ok {
		return false, "", nil
	}
	f, ok := parseFetched(v)
	if !ok {
		return false, "", nil
	}
	want, err := os.ReadFile(file + ".sha256")
	if err != nil {
		return false, "", nil
	}
	got, err := VerifySnapshotFile(file)
	if err != nil || !strings.HasPrefix(string(want), got) {
		return false, "", nil
	}
	return true, file + " holds " + f.url + " as fetched earlier in this run", nil
}

// CheckFirst: a resumed run does not download again while the file it
// fetched is there.
func (*SnapshotFetch) CheckFirst() bool { return true }

func (s *SnapshotFetch) Validate(c *Ctx, at At, fs *plans.Findings) {
	l, ok := validateS3(c, at, "from", s.From, fs)
	if !ok {
		return
	}
	switch {
	case l.IsPrefix() && s.Select == "":
		fs.Add(at("from"), "snapshot-fetch from: %s is a prefix: say which snapshot", s.From).
			WithHint("add select: latest (the newest valid snapshot under it), or name one object")
	case !l.IsPrefix() && s.Select != "":
		fs.Add(at("select"), "snapshot-fetch select: %s with from: %s, which names one object", s.Select, s.From).
			WithHint("drop select:, or end from: with / to select under a prefix")
	}
	if s.To != "" && strings.HasSuffix(s.To, "/") {
		fs.Add(at("to"), "snapshot-fetch to: %q must be a file, not a directory", s.To)
	}
}
