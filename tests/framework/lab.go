package framework

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"gopkg.in/yaml.v3"

	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework/testutil"
)

// e2eLabDir is this test process's lab state dir. Only one lab can be up
// on a machine; Up makes a second one wait (WaitBusy). The dir is per
// process so that a test never takes down a lab it did not start: two
// `go test` runs at once (make test and a developer's) each wait for the
// other's lab instead of removing it.
var e2eLabDir = fmt.Sprintf("%s-%d", e2eLabPrefix, os.Getpid())

const e2eLabPrefix = "/var/tmp/etcd-rescue-lab-e2e"

// waitBusy is how long Up waits for another lab (the lab package's tests,
// running in parallel under `go test ./...`) to go down.
const waitBusy = 30 * time.Minute

// UpLab brings up a lab for t in e2eLabDir and takes it down when t ends
// (after collecting diagnostics if t failed). E2E_KEEP_LAB=1 keeps a failed
// test's lab up for a look (the next test takes it down).
func UpLab(t *testing.T, o lab.Options) *lab.Lab {
	t.Helper()
	ctx := context.Background()
	downStaleLabs(t)
	o.StateDir = e2eLabDir
	o.Log = testutil.Log{T: t, Prefix: "lab: "}
	o.WaitBusy = waitBusy
	t0 := time.Now()
	l, err := lab.Up(ctx, o)
	var pe *lab.PrereqError
	if errors.As(err, &pe) && os.Getenv("CI") != "true" {
		t.Skipf("e2e: %v; hints: %s (or: make lab-prereqs)", err, strings.Join(pe.Hints(), "; "))
	}
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Logf("lab up: %d member(s), etcd %s, %s mode, in %.1fs", len(l.Members()), l.Version(), l.Mode(), time.Since(t0).Seconds())
	t.Cleanup(func() {
		if t.Failed() {
			labDiagnostics(t, l)
			if os.Getenv("E2E_KEEP_LAB") == "1" {
				t.Logf("E2E_KEEP_LAB=1: lab left up in %s (the next test takes it down; or: etcd-rescue lab down --state-dir %s)", l.StateDir(), l.StateDir())
				return
			}
		}
		l.SetLog(io.Discard)
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// downStaleLabs takes down labs these tests left behind: this process's
// own (kept by E2E_KEEP_LAB), and those of test processes that are gone
// (killed, or ended by the -timeout panic). A lab whose test process still
// runs is never touched.
func downStaleLabs(t *testing.T) {
	t.Helper()
	dirs, _ := filepath.Glob(e2eLabPrefix + "-*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(d, e2eLabPrefix+"-"))
		if err != nil || (pid != os.Getpid() && processAlive(pid)) {
			continue
		}
		if err := lab.DownDir(context.Background(), d, nil); err != nil {
			t.Fatalf("take down the lab left in %s: %v", d, err)
		}
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// labDiagnostics logs the lab's status and the tail of every host's etcd
// journal and env file.
func labDiagnostics(t *testing.T, l *lab.Lab) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Logf("lab status after the failure:\n%s", statusText(l.Status(ctx)))
	for _, h := range l.Hosts() {
		out, err := l.Run(ctx, h.Name, "cat /etc/etcd/etcd.env 2>&1; ls -la /var/lib | grep etcd; systemctl is-active etcd; journalctl -u etcd -n 40 --no-pager -o short-precise 2>&1 | grep -v 'recognized and used environment variable' | cut -c1-400", nil)
		t.Logf("host %s (%s): %v\n%s", h.Name, h.Address, err, out)
	}
}

// HostRun runs a command on a lab host and fails the test on error.
func HostRun(t *testing.T, l *lab.Lab, host, cmd string) string {
	t.Helper()
	return testutil.HostRun(t, l, host, cmd)
}

// ClusterRevision is the store revision through the client API (a
// linearizable read: it needs a leader).
func ClusterRevision(t *testing.T, l *lab.Lab) int64 {
	t.Helper()
	cli := client(t, l)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("read the cluster revision: %v", err)
	}
	return r.Header.Revision
}

// MemberRevisions is every inventory member's own revision (Status).
func MemberRevisions(t *testing.T, l *lab.Lab) map[string]int64 {
	t.Helper()
	cli := client(t, l)
	defer cli.Close()
	out := map[string]int64{}
	for _, m := range l.Members() {
		_, url, err := l.MemberURLs(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, url)
		cancel()
		if err != nil {
			t.Fatalf("status of %s: %v", m.Name, err)
		}
		out[m.Name] = st.Header.Revision
	}
	return out
}

func PutKey(t *testing.T, l *lab.Lab, key, value string) {
	t.Helper()
	cli := client(t, l)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// GetKey returns the value of key and whether it exists.
func GetKey(t *testing.T, l *lab.Lab, key string) (string, bool) {
	t.Helper()
	cli := client(t, l)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(r.Kvs) == 0 {
		return "", false
	}
	return string(r.Kvs[0].Value), true
}

// InventoryWithVars writes a copy of the lab's inventory with extra vars
// (an operator's choice such as where backups go).
func InventoryWithVars(t *testing.T, l *lab.Lab, vars map[string]string) string {
	t.Helper()
	return EditInventory(t, l, vars, nil)
}

// EditInventory writes a copy of the lab's inventory, decoded as YAML,
// with vars added to vars: and then edit applied to the whole document
// (nil: no edit), and returns its path.
func EditInventory(t *testing.T, l *lab.Lab, vars map[string]string, edit func(inv map[string]any)) string {
	t.Helper()
	b, err := os.ReadFile(l.InventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	var inv map[string]any
	if err := yaml.Unmarshal(b, &inv); err != nil {
		t.Fatalf("decode the lab inventory: %v", err)
	}
	vs, _ := inv["vars"].(map[string]any)
	if vs == nil {
		vs = map[string]any{}
	}
	for k, v := range vars {
		vs[k] = v
	}
	inv["vars"] = vs
	if edit != nil {
		edit(inv)
	}
	out, err := yaml.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// DataDirInfo is what a host's data dir (or a moved-aside copy) holds.
type DataDirInfo struct {
	Exists bool // the directory exists
	Empty  bool // ... and holds nothing at all
	Member bool // ... and holds member/snap/db (non-empty) and member/wal
	Marker bool // ... and the marker string occurs in member/ (db or WAL)
}

// DataDirs looks at dir on every host of the lab. A marker (a key written
// just before) proves that a moved-aside copy holds the newest data, not
// merely some directory.
func DataDirs(t *testing.T, l *lab.Lab, dir, marker string) map[string]DataDirInfo {
	t.Helper()
	out := map[string]DataDirInfo{}
	for _, h := range l.Hosts() {
		cmd := fmt.Sprintf(`d=%s; [ -e "$d" ] && echo exists; [ -d "$d" ] && [ -z "$(ls -A "$d")" ] && echo empty; [ -s "$d/member/snap/db" ] && [ -d "$d/member/wal" ] && echo member; `, dir)
		if marker != "" {
			cmd += fmt.Sprintf(`grep -rqaF -- %q "$d/member" 2>/dev/null && echo marker; `, marker)
		}
		s := HostRun(t, l, h.Name, cmd+"true")
		var in DataDirInfo
		for _, f := range strings.Fields(s) {
			switch f {
			case "exists":
				in.Exists = true
			case "empty":
				in.Empty = true
			case "member":
				in.Member = true
			case "marker":
				in.Marker = true
			}
		}
		out[h.Name] = in
	}
	return out
}

// CheckAsideDirs checks that on every host where wipe-dir ran in the run
// and found a data dir, that dir was moved aside to
// /var/lib/etcd.rescue-<run>, not deleted, with the member (and the marker)
// it held. before is /var/lib/etcd just before the run.
func CheckAsideDirs(t *testing.T, l *lab.Lab, st *RunState, before map[string]DataDirInfo, marker string) {
	t.Helper()
	aside := lab.DataDir + ".rescue-" + st.RunID
	after := DataDirs(t, l, aside, marker)
	checked := 0
	for _, s := range st.Steps {
		if s.Type != "wipe-dir" {
			continue
		}
		for _, h := range s.Hosts {
			b, ok := before[h.Host]
			if !ok || !b.Exists {
				t.Logf("wipe-dir %s@%s: there was no %s before the run: nothing to move aside", s.ID, h.Host, lab.DataDir)
				continue
			}
			a := after[h.Host]
			switch {
			case !a.Exists && b.Empty:
				// wipe-dir's check finds an empty dir done (nothing to
				// lose): a run killed before the move leaves no copy
				t.Logf("wipe-dir %s@%s: %s was empty before the run: nothing to lose, and no copy was made", s.ID, h.Host, lab.DataDir)
			case !a.Exists:
				t.Errorf("DATA DIR DESTROYED: %s@%s: %s existed before the run (member: %v) but %s does not exist", s.ID, h.Host, lab.DataDir, b.Member, aside)
			case b.Member && !a.Member:
				t.Errorf("DATA DIR DESTROYED: %s@%s: %s held a member before the run, %s holds none", s.ID, h.Host, lab.DataDir, aside)
			case b.Marker && !a.Marker:
				t.Errorf("DATA DIR DESTROYED: %s@%s: %s held the newest data (%q) before the run, %s does not", s.ID, h.Host, lab.DataDir, marker, aside)
			default:
				checked++
				t.Logf("wipe-dir %s@%s: the old data dir is kept as %s (member: %v, newest data: %v)", s.ID, h.Host, aside, a.Member, a.Marker)
			}
		}
	}
	if checked == 0 {
		t.Logf("no moved-aside data dir to check in run %s", st.RunID)
	}
}

// --- snapshots ------------------------------------------------------------

// CheckSnapshotFile checks an etcd snapshot file independently of
// etcd-rescue: its last 32 bytes are the sha256 of the rest (the trailer
// etcd's snapshot API appends), and FILE.sha256 names the sha256 of the
// whole file. It returns the file's sha256.
func CheckSnapshotFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if len(b) <= sha256.Size {
		t.Fatalf("snapshot %s is %d bytes", path, len(b))
	}
	body, trailer := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], trailer) {
		t.Errorf("snapshot %s: the sha256 trailer does not match its content", path)
	}
	whole := fmt.Sprintf("%x", sha256.Sum256(b))
	side, err := os.ReadFile(path + ".sha256")
	if err != nil {
		t.Errorf("snapshot %s: no .sha256 file: %v", path, err)
		return whole
	}
	f := strings.Fields(string(side))
	if len(f) < 1 || f[0] != whole {
		t.Errorf("snapshot %s: %s.sha256 says %q, the file's sha256 is %s", path, filepath.Base(path), strings.TrimSpace(string(side)), whole)
	}
	if len(f) >= 2 && f[1] != filepath.Base(path) {
		t.Errorf("snapshot %s: %s.sha256 names %q", path, filepath.Base(path), f[1])
	}
	return whole
}

// SnapshotStatus runs the lab's etcdutl snapshot status on a local file.
func SnapshotStatus(t *testing.T, l *lab.Lab, path string) (rev int64, keys int64) {
	t.Helper()
	out, err := exec.Command(filepath.Join(l.BinDir(), "etcdutl"), "snapshot", "status", "-w", "json", path).CombinedOutput()
	if err != nil {
		t.Errorf("etcdutl snapshot status %s: %v\n%s", path, err, out)
		return 0, 0
	}
	var st struct {
		Revision  int64 `json:"revision"`
		TotalKeys int64 `json:"totalKey"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Errorf("etcdutl snapshot status: %v: %s", err, out)
	}
	return st.Revision, st.TotalKeys
}

// --- processes in a lab host ------------------------------------------------

// HostPids lists the processes in a lab host's network namespace with their
// command lines (as the host machine's root sees them).
func HostPids(t *testing.T, l *lab.Lab, host string) map[int]string {
	t.Helper()
	h, ok := l.Host(host)
	if !ok {
		t.Fatalf("no lab host %s", host)
	}
	out, err := exec.Command("ip", "netns", "pids", h.Netns()).Output()
	if err != nil {
		t.Fatalf("ip netns pids %s: %v", h.Netns(), err)
	}
	procs := map[int]string{}
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue // gone meanwhile
		}
		procs[pid] = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	}
	return procs
}

// FindHostProcs returns the pids in host whose command line contains s.
func FindHostProcs(t *testing.T, l *lab.Lab, host, s string) []int {
	var pids []int
	for pid, c := range HostPids(t, l, host) {
		if strings.Contains(c, s) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// Poll calls f every interval until it returns true; the safety limit
// ends a wait for something that never happens (no performance claim).
func Poll(t *testing.T, what string, interval time.Duration, f func() bool) {
	t.Helper()
	testutil.Poll(t, what, interval, f)
}

// statusText is a short form of `etcd-rescue lab status` for diagnostics.
func statusText(s *lab.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "lab %s: %s mode, etcd %s, TLS %v\n", s.StateDir, s.Mode, s.Version, s.TLS)
	for _, h := range s.Hosts {
		fmt.Fprintf(&b, "host %s %s: ssh %v, etcd %s, data dir %v\n", h.Name, h.Address, h.SSH, h.Etcd, h.DataDir)
	}
	for _, m := range s.Members {
		state := fmt.Sprintf("leader %x, revision %d, etcd %s", m.Leader, m.Revision, m.Version)
		if m.Err != "" {
			state = "down: " + m.Err
		}
		fmt.Fprintf(&b, "member %s on %s (%s): %s\n", m.Name, m.Host, m.ClientURL, state)
	}
	for _, m := range s.MemberList {
		fmt.Fprintf(&b, "member list: %s\n", m)
	}
	fmt.Fprintf(&b, "keys: %d under %s", s.Keys, lab.KeyPrefix)
	return b.String()
}

// client is a client of the lab's cluster; the caller closes it.
func client(t *testing.T, l *lab.Lab) *clientv3.Client {
	t.Helper()
	cli, err := l.Client()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	return cli
}
