package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/objstore"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// fakeStore is an object store in memory. It records every call, in order,
// and fails the calls named in fail.
type fakeStore struct {
	mu    sync.Mutex
	objs  map[objstore.Location]*fakeObject
	calls []string
	fail  map[string]error // by method name
	cfg   objstore.Config
	// echo puts the credentials into every error, as a careless client
	// might.
	echo bool
	// onCall, when set, is called with each method's name first.
	onCall func(name string)
}

type fakeObject struct {
	data     []byte
	meta     objstore.Meta
	layout   string
	modified time.Time
	revision int64
}

func newFakeStore() *fakeStore {
	return &fakeStore{objs: map[objstore.Location]*fakeObject{}, fail: map[string]error{}}
}

// use puts s behind newObjectStore for the test.
func (s *fakeStore) use(t *testing.T) {
	old := newObjectStore
	newObjectStore = func(cfg objstore.Config) (objstore.Store, error) {
		s.mu.Lock()
		s.cfg = cfg
		s.mu.Unlock()
		return s, nil
	}
	t.Cleanup(func() { newObjectStore = old })
}

func (s *fakeStore) call(name, arg string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onCall != nil {
		s.onCall(name)
	}
	s.calls = append(s.calls, name+" "+arg)
	if err := s.fail[name]; err != nil {
		if s.echo {
			return fmt.Errorf("%w (signed with %s:%s)", err, s.cfg.AccessKey, s.cfg.SecretKey)
		}
		return err
	}
	return nil
}

func (s *fakeStore) callNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.calls {
		out = append(out, strings.Fields(c)[0])
	}
	return out
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// snapshotBytes is a snapshot with a valid sha256 trailer.
func snapshotBytes(body string) []byte {
	h := sha256.Sum256([]byte(body))
	return append([]byte(body), h[:]...)
}

// put stores a snapshot etcd-rescue wrote, modified at mod.
// put stores an earlier backup of the test plan's cluster ("test").
func (s *fakeStore) put(url string, data []byte, rev int64, mod time.Time) {
	s.putFor("test", url, data, rev, mod)
}

// putFor stores an earlier backup of cluster.
func (s *fakeStore) putFor(cluster, url string, data []byte, rev int64, mod time.Time) {
	l, _ := objstore.ParseURL(url)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objs[l] = &fakeObject{data: data, layout: objstore.LayoutRescue, modified: mod, revision: rev,
		meta: objstore.Meta{SHA256: sum(data), Revision: rev, Size: int64(len(data)), RunID: "old", Cluster: cluster}}
}

func (s *fakeStore) object(l objstore.Location, o *fakeObject) objstore.Object {
	ob := objstore.Object{Location: l, Size: int64(len(o.data)), Modified: o.modified, Layout: o.layout, Revision: o.revision}
	if o.layout == objstore.LayoutRescue {
		ob.Meta = o.meta
	}
	return ob
}

func (s *fakeStore) Upload(ctx context.Context, dst objstore.Location, file string, meta objstore.Meta, progress objstore.Progress) (objstore.Object, error) {
	if err := s.call("Upload", dst.String()); err != nil {
		return objstore.Object{}, err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return objstore.Object{}, err
	}
	for done := int64(0); done < int64(len(data)); done += 1 << 20 {
		progress(done, int64(len(data)))
	}
	progress(int64(len(data)), int64(len(data)))
	s.mu.Lock()
	o := &fakeObject{data: data, meta: meta, layout: objstore.LayoutRescue, modified: time.Now(), revision: meta.Revision}
	s.objs[dst] = o
	s.mu.Unlock()
	// Like objstore.Client: read back and verified, removed on a mismatch.
	ob, err := s.Verify(ctx, dst, meta)
	if err != nil {
		s.mu.Lock()
		delete(s.objs, dst)
		s.mu.Unlock()
		return objstore.Object{}, err
	}
	return ob, nil
}

// lookup records the call of method on l and returns the stored object.
func (s *fakeStore) lookup(method string, l objstore.Location) (*fakeObject, error) {
	if err := s.call(method, l.String()); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objs[l]
	if !ok {
		return nil, fmt.Errorf("%s: no such key", l)
	}
	return o, nil
}

func (s *fakeStore) Verify(ctx context.Context, l objstore.Location, want objstore.Meta) (objstore.Object, error) {
	o, err := s.lookup("Verify", l)
	if err != nil {
		return objstore.Object{}, err
	}
	if sum(o.data) != want.SHA256 {
		return objstore.Object{}, objstore.ErrCorrupt
	}
	return s.object(l, o), nil
}

func (s *fakeStore) Stat(ctx context.Context, l objstore.Location) (objstore.Object, error) {
	o, err := s.lookup("Stat", l)
	if err != nil {
		return objstore.Object{}, err
	}
	return s.object(l, o), nil
}

func (s *fakeStore) List(ctx context.Context, prefix objstore.Location) ([]objstore.Object, error) {
	if err := s.call("List", prefix.String()); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []objstore.Object
	for l, o := range s.objs {
		if l.Bucket == prefix.Bucket && strings.HasPrefix(l.Key, prefix.Key) {
			out = append(out, s.object(l, o))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (s *fakeStore) Download(ctx context.Context, src objstore.Object, file string, progress objstore.Progress) (string, error) {
	o, err := s.lookup("Download", src.Location)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(file, o.data, 0o600); err != nil {
		return "", err
	}
	progress(int64(len(o.data)), int64(len(o.data)))
	return sum(o.data), nil
}

func (s *fakeStore) Delete(ctx context.Context, objs []objstore.Object) error {
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Location.String())
	}
	if err := s.call("Delete", strings.Join(keys, ",")); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range objs {
		delete(s.objs, o.Location)
	}
	return nil
}

func (s *fakeStore) AbortStaleUploads(ctx context.Context, prefix objstore.Location, olderThan time.Duration) (int, error) {
	if err := s.call("AbortStaleUploads", prefix.String()); err != nil {
		return 0, err
	}
	return 0, nil
}

func (s *fakeStore) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for l := range s.objs {
		out = append(out, l.String())
	}
	sort.Strings(out)
	return out
}

const s3Section = `s3:
  endpoint: https://127.0.0.1:8333
  region: us-east-1
  pathStyle: true
  accessKey: ${vars.s3AccessKey}
  secretKey: ${vars.s3SecretKey}
`

const s3Vars = "  s3AccessKey: AKIDEXAMPLE\n  s3SecretKey: wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY\n"

// newS3Harness is newHarness for a plan with an s3: section.
func newS3Harness(t *testing.T, stepsYAML string) *harness {
	return newS3HarnessWith(t, s3Section, s3Vars, stepsYAML)
}

func newS3HarnessWith(t *testing.T, section, vars, stepsYAML string) *harness {
	dir := t.TempDir()
	h := &harness{t: t, dir: dir, w: &world{}, stateDir: filepath.Join(dir, "state")}
	body := planHead + section + "vars:\n" + vars + "steps:\n" + stepsYAML
	h.plan = filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(h.plan, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}

// withSnapshot makes every member stream snap through SnapshotSave.
func (h *harness) withSnapshot(snap []byte) {
	h.w.etcd = newFakeEtcd()
	h.w.etcd.snap = snap
	h.w.etcd.set("http://10.0.0.1:2379", "healthy", steps.EndpointStatus{MemberID: 1, Leader: 1, Revision: 4242})
}

const saveS3Steps = `
  - {id: save, type: snapshot-save, on: h1, with: {to: "s3://backups/etcd/etcd-${run.id}.db", keep: {last: 2}}}
`

// A backup to S3: saved, uploaded, verified by the store, and only then
// stale uploads aborted and old snapshots pruned, each deletion logged;
// the staging file is removed after the verified upload.
func TestS3SaveUploadVerifyThenRetention(t *testing.T) {
	st := newFakeStore()
	st.use(t)
	old := time.Now().Add(-72 * time.Hour)
	for i := 1; i <= 3; i++ {
		st.put(fmt.Sprintf("s3://backups/etcd/etcd-old%d.db", i), snapshotBytes(fmt.Sprint("old", i)), int64(i), old.Add(time.Duration(i)*time.Hour))
	}
	st.put("s3://backups/other/keep.db", snapshotBytes("other"), 1, old)
	h := newS3Harness(t, saveS3Steps)
	snap := snapshotBytes(strings.Repeat("k", 9<<20))
	h.withSnapshot(snap)
	res, err := h.apply(h.opts())
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, h.progress.String())
	}
	want := "Upload Verify AbortStaleUploads List Delete"
	if got := strings.Join(st.callNames(), " "); got != want {
		t.Errorf("store calls %q, want %q", got, want)
	}
	newKey := "s3://backups/etcd/etcd-" + res.RunID + ".db"
	wantKeys := []string{newKey, "s3://backups/etcd/etcd-old3.db", "s3://backups/other/keep.db"}
	sort.Strings(wantKeys)
	if got := st.keys(); strings.Join(got, " ") != strings.Join(wantKeys, " ") {
		t.Errorf("objects after retention %v, want %v", got, wantKeys)
	}
	l, _ := objstore.ParseURL(newKey)
	if o := st.objs[l]; o.meta.SHA256 != sum(snap) || o.meta.Revision != 4242 || o.meta.Size != int64(len(snap)) || o.meta.RunID != res.RunID || o.meta.Cluster != "test" {
		t.Errorf("metadata %+v", o.meta)
	}
	if v := res.State.Facts[steps.FactSaved(newKey)]; !strings.HasPrefix(v, sum(snap)+" 4242 ") {
		t.Errorf("fact %q", v)
	}
	journal := readFile(t, filepath.Join(h.stateDir, "runs", res.RunID, "events.jsonl"))
	for _, line := range []string{"s3 upload " + newKey + " 4.0 MiB of 9.0 MiB", "retention: deleted s3://backups/etcd/etcd-old1.db", "retention: deleted s3://backups/etcd/etcd-old2.db"} {
		if !strings.Contains(journal, line) {
			t.Errorf("journal lacks %q", line)
		}
	}
	stage := filepath.Join(h.stateDir, "runs", res.RunID, "snapshot-save-etcd-"+res.RunID+".db")
	if _, err := os.Stat(stage); !os.IsNotExist(err) {
		t.Errorf("staging file %s not removed: %v", stage, err)
	}
}

// Two clusters backed up under one prefix: a backup's keep: counts and
// prunes only its own cluster's snapshots, never the other's, however old.
func TestS3RetentionOnlyThisCluster(t *testing.T) {
	st := newFakeStore()
	st.use(t)
	old := time.Now().Add(-72 * time.Hour)
	for i := 1; i <= 3; i++ {
		st.put(fmt.Sprintf("s3://backups/etcd/etcd-old%d.db", i), snapshotBytes(fmt.Sprint("old", i)), int64(i), old.Add(time.Duration(i)*time.Hour))
		st.putFor("staging", fmt.Sprintf("s3://backups/etcd/staging-%d.db", i), snapshotBytes(fmt.Sprint("staging", i)), int64(i), old.Add(-time.Duration(i)*time.Hour))
	}
	h := newS3Harness(t, saveS3Steps)
	h.withSnapshot(snapshotBytes("new"))
	res, err := h.apply(h.opts())
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, h.progress.String())
	}
	want := []string{"s3://backups/etcd/etcd-" + res.RunID + ".db", "s3://backups/etcd/etcd-old3.db",
		"s3://backups/etcd/staging-1.db", "s3://backups/etcd/staging-2.db", "s3://backups/etcd/staging-3.db"}
	sort.Strings(want)
	if got := st.keys(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("objects after retention with keep {last: 2}: %v, want %v", got, want)
	}
	journal := readFile(t, filepath.Join(h.stateDir, "runs", res.RunID, "events.jsonl"))
	if !strings.Contains(journal, "3 snapshot(s) of other clusters left alone") {
		t.Errorf("the journal does not say the other cluster's snapshots were left alone")
	}
}

// A failed upload or a failed verification never prunes: nothing is
// listed or deleted, and the staging file is kept.
func TestS3SaveFailureNeverPrunes(t *testing.T) {
	for _, method := range []string{"Upload", "Verify"} {
		t.Run(method, func(t *testing.T) {
			st := newFakeStore()
			st.use(t)
			for i := 1; i <= 3; i++ {
				st.put(fmt.Sprintf("s3://backups/etcd/etcd-old%d.db", i), snapshotBytes(fmt.Sprint("old", i)), int64(i), time.Now().Add(-time.Duration(100+i)*time.Hour))
			}
			st.fail[method] = errors.New("injected " + method + " failure")
			h := newS3Harness(t, saveS3Steps)
			h.withSnapshot(snapshotBytes("data"))
			_, err := h.apply(h.opts())
			re := runErrOf(t, err)
			if len(re.Failed) != 1 || !strings.Contains(re.Failed[0].Err.Error(), "injected "+method) || !strings.Contains(re.Failed[0].Err.Error(), "nothing was pruned") {
				t.Fatalf("want the save to fail on %s: %v", method, err)
			}
			for _, c := range st.callNames() {
				if c == "Delete" || c == "List" || c == "AbortStaleUploads" {
					t.Errorf("%s after a failed %s: %v", c, method, st.callNames())
				}
			}
			if n := len(st.keys()); n < 3 {
				t.Errorf("objects deleted: %v", st.keys())
			}
			stage := filepath.Join(h.stateDir, "runs", re.RunID, "snapshot-save-etcd-"+re.RunID+".db")
			if _, err := os.Stat(stage); err != nil {
				t.Errorf("staging file kept after the failure: %v", err)
			}
		})
	}
}

const fetchSteps = `
  - {id: fetch, type: snapshot-fetch, with: {from: "s3://backups/etcd/", select: latest, to: "snap/restore-${run.id}.db"}}
  - {id: first, type: run, on: all, with: {cmd: touch-host}}
  - {id: second, type: run, on: h1, needs: [first], with: {cmd: later}}
`

// select: latest takes the newest valid snapshot, records what it took,
// and runs before every host step.
func TestS3FetchSelectLatestFirst(t *testing.T) {
	st := newFakeStore()
	st.use(t)
	now := time.Now()
	st.put("s3://backups/etcd/a.db", snapshotBytes("a"), 10, now.Add(-2*time.Hour))
	newest := snapshotBytes("newest")
	st.put("s3://backups/etcd/b.db", newest, 20, now.Add(-1*time.Hour))
	st.put("s3://backups/etcd/junk.txt", []byte("not a snapshot"), 0, now)
	st.objs[objstore.Location{Bucket: "backups", Key: "etcd/junk.txt"}].layout = objstore.LayoutUnknown
	h := newS3Harness(t, fetchSteps)
	h.w.handler = func(host, cmd string) (string, int, error) { return "", 0, nil }
	o := h.opts()
	res, err := h.apply(o)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, h.progress.String())
	}
	file := filepath.Join(h.dir, "snap", "restore-"+res.RunID+".db")
	got, err := os.ReadFile(file)
	if err != nil || string(got) != string(newest) {
		t.Fatalf("fetched file: %v", err)
	}
	fact := res.State.Facts[steps.FactFetched(file)]
	if fact != sum(newest)+" 20 s3://backups/etcd/b.db" {
		t.Errorf("fact %q", fact)
	}
	// The fetch finished before the first host command started.
	_, fetchDone := stepTimes(res.State, "fetch", "")
	firstStart, _ := stepTimes(res.State, "first", "h1")
	if fetchDone.IsZero() || firstStart.Before(fetchDone) {
		t.Errorf("first host step started %v, before the fetch finished %v", firstStart, fetchDone)
	}
}

// stepTimes is when step@host started and finished (zero when it did not).
func stepTimes(st *runstate.State, step, host string) (started, finished time.Time) {
	for _, s := range st.Steps {
		for _, h := range s.Hosts {
			if s.ID != step || h.Host != host {
				continue
			}
			if h.Started != nil {
				started = *h.Started
			}
			if h.Finished != nil {
				finished = *h.Finished
			}
		}
	}
	return started, finished
}

// A fetch that fails ends the run before any host is touched: no command
// ran anywhere, every other step is skipped, the run failed (exit 1).
func TestS3FetchFailureTouchesNoHost(t *testing.T) {
	st := newFakeStore()
	st.use(t)
	st.put("s3://backups/etcd/Incr-1-2-3", []byte("delta"), 3, time.Now())
	st.objs[objstore.Location{Bucket: "backups", Key: "etcd/Incr-1-2-3"}].layout = objstore.LayoutBackupDelta
	h := newS3Harness(t, fetchSteps)
	_, err := h.apply(h.opts())
	re := runErrOf(t, err)
	if len(re.Failed) != 1 || re.Failed[0].Step != "fetch" || !errors.Is(re.Failed[0].Err, objstore.ErrNoSnapshot) ||
		!strings.Contains(re.Failed[0].Err.Error(), "delta snapshots") {
		t.Fatalf("want the fetch to fail saying what was there: %v", err)
	}
	if cmds := h.w.commands(); len(cmds) != 0 {
		t.Errorf("commands ran on hosts after a failed fetch: %v", cmds)
	}
	wantStatuses(t, re2state(t, h, re.RunID), map[string]string{"fetch": "failed", "first@h1": "skipped", "first@h3": "skipped", "second@h1": "skipped"})
}

func re2state(t *testing.T, h *harness, runID string) *runstate.State {
	t.Helper()
	st, err := (&runstate.Store{Dir: h.stateDir}).Load(runID)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A resumed run fetches the object it chose before, never a newer one,
// and refuses an object that changed since.
func TestS3FetchResumeUsesRecordedKey(t *testing.T) {
	st := newFakeStore()
	st.use(t)
	chosen := snapshotBytes("chosen")
	st.put("s3://backups/etcd/a.db", chosen, 10, time.Now().Add(-time.Hour))
	h := newS3Harness(t, fetchSteps)
	fail := true
	h.w.handler = func(host, cmd string) (string, int, error) {
		if cmd == "later" && fail {
			return "", 1, nil
		}
		return "", 0, nil
	}
	_, err := h.apply(h.opts())
	runID := runErrOf(t, err).RunID
	file := filepath.Join(h.dir, "snap", "restore-"+runID+".db")

	// A newer snapshot arrives, and the fetched file is lost.
	st.put("s3://backups/etcd/z-newer.db", snapshotBytes("newer"), 99, time.Now())
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	fail = false
	before := len(st.calls)
	res, err := h.resume(runID, h.opts())
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, h.progress.String())
	}
	if got, _ := os.ReadFile(file); string(got) != string(chosen) {
		t.Errorf("resume fetched %q, want the object chosen first", got)
	}
	var downloads []string
	for _, c := range st.calls[before:] {
		if strings.HasPrefix(c, "Download") || strings.HasPrefix(c, "List") {
			downloads = append(downloads, c)
		}
	}
	if strings.Join(downloads, ";") != "Download s3://backups/etcd/a.db" {
		t.Errorf("resume store calls %v, want one download of the recorded key and no listing", downloads)
	}
	wantStatuses(t, res.State, map[string]string{"fetch": "done", "second@h1": "done"})

	// Resumed again with the file in place: no download at all.
	before = len(st.calls)
	if _, err := h.resume(runID, h.opts()); err != nil {
		t.Fatalf("second resume: %v", err)
	}
	for _, c := range st.calls[before:] {
		if strings.HasPrefix(c, "Download") {
			t.Errorf("downloaded again with the file in place: %v", st.calls[before:])
		}
	}
}

// The recorded object changed in the store: a resume refuses it, and no
// host step runs.
func TestS3FetchResumeRefusesChangedObject(t *testing.T) {
	st := newFakeStore()
	st.use(t)
	st.put("s3://backups/etcd/a.db", snapshotBytes("chosen"), 10, time.Now().Add(-time.Hour))
	h := newS3Harness(t, fetchSteps)
	h.w.handler = func(host, cmd string) (string, int, error) {
		if cmd == "later" {
			return "", 1, nil
		}
		return "", 0, nil
	}
	_, err := h.apply(h.opts())
	runID := runErrOf(t, err).RunID
	file := filepath.Join(h.dir, "snap", "restore-"+runID+".db")
	os.Remove(file)
	st.put("s3://backups/etcd/a.db", snapshotBytes("replaced"), 11, time.Now())
	n := len(h.w.commands())
	_, err = h.resume(runID, h.opts())
	re := runErrOf(t, err)
	if len(re.Failed) != 1 || re.Failed[0].Step != "fetch" || !strings.Contains(re.Failed[0].Err.Error(), "changed since this run chose it") {
		t.Fatalf("want the fetch refused: %v", err)
	}
	if cmds := h.w.commands(); len(cmds) != n {
		t.Errorf("host commands ran after the refused fetch: %v", cmds[n:])
	}
}

// The store's credentials never reach the journal, the checkpoint, the
// progress output or the error, even when the store echoes them.
func TestS3SecretNeverLeaks(t *testing.T) {
	st := newFakeStore()
	st.use(t)
	st.echo = true
	st.fail["List"] = errors.New("access denied")
	h := newS3Harness(t, fetchSteps)
	_, err := h.apply(h.opts())
	re := runErrOf(t, err)
	if st.cfg.SecretKey == "" || !strings.Contains(st.cfg.SecretKey, "EXAMPLEKEY") {
		t.Fatalf("the store got no credentials: %+v", st.cfg.AccessKey)
	}
	var texts []string
	texts = append(texts, err.Error(), re.Failed[0].Err.Error(), h.progress.String())
	filepath.Walk(h.stateDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			texts = append(texts, readFile(t, p))
		}
		return nil
	})
	seen := false
	for _, s := range texts {
		if strings.Contains(s, "EXAMPLEKEY") || strings.Contains(s, "AKIDEXAMPLE") {
			t.Errorf("credentials leaked: %s", s)
		}
		seen = seen || strings.Contains(s, "signed with "+Redacted)
	}
	if !seen {
		t.Errorf("the echoed error never reached the output (nothing was tested)")
	}
}

// crashAtStoreCall runs apply and keeps a copy of state.json as it was
// when the store's method was called: what a kill -9 at that moment
// leaves behind; the copy is put back after the run.
func crashAtStoreCall(t *testing.T, h *harness, st *fakeStore, method string) string {
	t.Helper()
	var statePath string
	var saved []byte
	st.mu.Lock()
	st.onCall = func(name string) {
		if name == method && saved == nil {
			saved = []byte(readFile(t, statePath))
		}
	}
	st.mu.Unlock()
	o := h.opts()
	o.OnStart = func(r *runstate.Run) { statePath = filepath.Join(r.Dir(), "state.json") }
	res, err := h.apply(o)
	if err != nil || saved == nil {
		t.Fatalf("apply: %v; %s called: %v", err, method, saved != nil)
	}
	if err := runstate.WriteFileAtomic(statePath, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.onCall = nil
	st.mu.Unlock()
	return res.RunID
}

// Killed after the upload: the resumed save is done by its Check (the
// object is there, this run's, and verifies), not uploaded again. Killed
// mid-upload (nothing stored): the resume saves and uploads again.
func TestS3SaveResumeChecksTheObject(t *testing.T) {
	t.Run("after the upload", func(t *testing.T) {
		st := newFakeStore()
		st.use(t)
		h := newS3Harness(t, saveS3Steps)
		h.withSnapshot(snapshotBytes("data"))
		runID := crashAtStoreCall(t, h, st, "Verify")
		wantStatuses(t, re2state(t, h, runID), map[string]string{"save@h1": "running"})
		before := len(st.callNames())
		res, err := h.resume(runID, h.opts())
		if err != nil {
			t.Fatalf("resume: %v\n%s", err, h.progress.String())
		}
		if got := strings.Join(st.callNames()[before:], " "); got != "Stat Verify" {
			t.Errorf("resume store calls %q, want the Check only (Stat Verify)", got)
		}
		wantStatuses(t, res.State, map[string]string{"save@h1": "done"})
	})
	t.Run("mid-upload", func(t *testing.T) {
		st := newFakeStore()
		st.use(t)
		h := newS3Harness(t, saveS3Steps)
		h.withSnapshot(snapshotBytes("data"))
		runID := crashAtStoreCall(t, h, st, "Upload")
		// The upload never completed: nothing under the key.
		st.mu.Lock()
		st.objs = map[objstore.Location]*fakeObject{}
		st.mu.Unlock()
		before := len(st.callNames())
		res, err := h.resume(runID, h.opts())
		if err != nil {
			t.Fatalf("resume: %v\n%s", err, h.progress.String())
		}
		if got := strings.Join(st.callNames()[before:], " "); !strings.HasPrefix(got, "Stat Upload Verify") {
			t.Errorf("resume store calls %q, want the Check, then the save again", got)
		}
		if len(st.keys()) != 1 {
			t.Errorf("objects %v", st.keys())
		}
		wantStatuses(t, res.State, map[string]string{"save@h1": "done"})
	})
}

// The crash failpoint matches a transfer's progress line: a run can be
// killed mid-upload (the e2e's crash test relies on it). The test runs
// itself in a child process with ETCD_RESCUE_CRASH_AFTER set.
func TestS3CrashFailpointMidUpload(t *testing.T) {
	if dir := os.Getenv("S3_CRASH_CHILD_DIR"); dir != "" {
		st := newFakeStore()
		st.use(t)
		h := newS3Harness(t, saveS3Steps)
		h.stateDir = dir
		h.withSnapshot(snapshotBytes(strings.Repeat("x", 20<<20)))
		_, err := h.apply(h.opts())
		t.Fatalf("the failpoint did not kill the process: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestS3CrashFailpointMidUpload$", "-test.count=1")
	cmd.Env = append(os.Environ(), "S3_CRASH_CHILD_DIR="+dir, CrashAfterEnv+"=8.0 MiB of 20.0 MiB")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("want the child killed by SIGKILL, got %v\n%s", err, out)
	}
	runs, _ := (&runstate.Store{Dir: dir}).Runs()
	if len(runs) != 1 {
		t.Fatalf("runs %v", runs)
	}
	journal := readFile(t, filepath.Join(dir, "runs", runs[0], "events.jsonl"))
	lines := strings.Split(strings.TrimSpace(journal), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, "s3 upload s3://backups/etcd/etcd-"+runs[0]+".db 8.0 MiB of 20.0 MiB") {
		t.Errorf("last journal line %s", last)
	}
	st, err := (&runstate.Store{Dir: dir}).Load(runs[0])
	if err != nil {
		t.Fatal(err)
	}
	wantStatuses(t, st, map[string]string{"save@h1": "running"})
}

// A secret key written in the file (a warning finding) is redacted like a
// secret variable, and so is a credential held by a variable whose name
// says nothing of secrets.
func TestS3CredentialsRedacted(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.yaml")
	body := planHead + "s3:\n  endpoint: http://127.0.0.1:9000\n  accessKey: ${vars.s3User}\n  secretKey: literal-Secret-Value-42\n" +
		"vars:\n  s3User: plainUserName77\nsteps:\n  - {id: fetch, type: snapshot-fetch, with: {from: \"s3://bkt/etcd/\", select: latest, to: a.db}}\n"
	if err := os.WriteFile(plan, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, fs := Load(plan, "")
	if c == nil || fs.Errors() > 0 {
		t.Fatalf("load: %v", fs)
	}
	warned := false
	for _, f := range fs {
		warned = warned || strings.Contains(f.Msg, "s3.secretKey is written in the file")
	}
	if !warned {
		t.Errorf("no warning for the literal secret key: %v", fs)
	}
	red := NewRedactor(c.Plan)
	for _, v := range []string{"literal-Secret-Value-42", "plainUserName77"} {
		if got := red.String("x " + v + " y"); got != "x "+Redacted+" y" {
			t.Errorf("%s not redacted: %q", v, got)
		}
	}
	var txt strings.Builder
	if err := BuildDryRun(c).WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(txt.String(), "literal-Secret") || !strings.Contains(txt.String(), "credentials written in the file (redacted)") {
		t.Errorf("dry-run: %s", txt.String())
	}
}

// A missing s3.ca stops apply before anything runs (exit 4): no run, no
// store call, no host command.
func TestS3CAPreflight(t *testing.T) {
	st := newFakeStore()
	st.use(t)
	h := newS3HarnessWith(t, s3Section+"  ca: pki/missing-ca.crt\n", s3Vars, fetchSteps)
	_, err := h.apply(h.opts())
	var pe *PrereqError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "s3.ca") || !strings.Contains(err.Error(), filepath.Join(h.dir, "pki/missing-ca.crt")) {
		t.Fatalf("want a prerequisite error naming s3.ca: %v", err)
	}
	if runs, _ := (&runstate.Store{Dir: h.stateDir}).Runs(); len(runs) != 0 || len(st.calls) != 0 || len(h.w.commands()) != 0 {
		t.Errorf("runs %v, store calls %v, commands %v", runs, st.calls, h.w.commands())
	}
}
