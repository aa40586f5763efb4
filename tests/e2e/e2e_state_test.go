package e2e

// A recovery handed over between two operators through a shared state
// store, for real: the lab's management etcd (lab up --state-store: a real
// etcd on the operator side, TLS with the lab's CA, separate from the lab
// cluster) holds the run lock, the checkpoints, the journal and the plan
// files.
//
//   - takeover: operator A (its own HOME and working directory, the plan
//     and inventory copied there) applies lost-host with --state; frozen
//     after its first step-host, B (another HOME) is refused with exit 3
//     naming A (pid, machine) for both apply and resume, and `runs` and
//     `status` from B show A's run as A's; A is killed with SIGKILL and its
//     files deleted; B's resume is still refused (the lease outlives A by
//     its TTL), `unlock --force` frees it at once, and B's resume, with
//     only the state URL, completes: lab verify, every step-host done
//     once, the journal in the store holds both sessions;
//   - lock-ttl: a holder killed with SIGKILL frees the lock by itself once
//     its lease expires (no unlock);
//   - fleet: two clusters backed up in one command, each run and lock
//     in the store;
//   - store-killed: the management etcd is killed (SIGKILL) in the middle
//     of an ip-change run: the run stops without starting another
//     step-host, and once the store is back the resume completes with no
//     step-host attempted twice.
//
//	go test ./tests/e2e/ -run TestE2EStateStore -v

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework"
)

// stateTTL is the lock lease of the runs of this test: short, so that
// the expiry is seen without a long wait.
const stateTTL = 5 * time.Second

// operator is one on-call engineer: a HOME (and with it a run index) and
// a working directory of their own.
type operator struct {
	name, home, work string
}

func newOperator(t *testing.T, name string) *operator {
	t.Helper()
	root := t.TempDir()
	o := &operator{name: name, home: filepath.Join(root, "home"), work: filepath.Join(root, "work")}
	for _, d := range []string{o.home, o.work} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// env is the environment of the operator's etcd-rescue: their HOME, no
// XDG_STATE_HOME of the test's.
func (o *operator) env() []string {
	return []string{"HOME=" + o.home, "XDG_STATE_HOME=" + filepath.Join(o.home, ".local", "state")}
}

// copyIn copies src into the operator's working directory.
func (o *operator) copyIn(t *testing.T, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(o.work, filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

func (o *operator) cli(t *testing.T, e *e2e, args ...string) framework.Result {
	t.Helper()
	return e.StartProc(t, nil, o.env(), args...).Wait(t)
}

func TestE2EStateStore(t *testing.T) {
	e := newE2E(t)
	l := framework.UpLab(t, lab.Options{Members: 3, Version: "3.6", StateStore: true})
	info, err := lab.StateStoreOf(l.StateDir())
	if err != nil {
		t.Fatalf("the lab's state store: %v", err)
	}
	// The whole URL: B has nothing else (TLS files are the lab's).
	stateURL := fmt.Sprintf("%s?cacert=%s&cert=%s&key=%s&lockTTL=%s", info.URL, info.CAFile, info.CertFile, info.KeyFile, stateTTL)
	t.Logf("state store %s", stateURL)
	mgmt := mgmtClient(t, info)

	t.Run("takeover", func(t *testing.T) {
		if err := l.Break(context.Background(), "lost-host"); err != nil {
			t.Fatalf("lab break lost-host: %v", err)
		}
		a, b := newOperator(t, "A"), newOperator(t, "B")
		planA := a.copyIn(t, filepath.Join(e.Repo, planPath("lost-host")))
		invA := a.copyIn(t, l.InventoryPath())
		planB := b.copyIn(t, filepath.Join(e.Repo, planPath("lost-host")))
		invB := b.copyIn(t, l.InventoryPath())

		// A, frozen once its first step-host is done: it holds the lock.
		frozen := make(chan string, 1)
		var once sync.Once
		pa := e.StartProc(t, func(p *framework.Proc, line string) {
			if m := anyDoneLine.FindStringSubmatch(line); m != nil {
				once.Do(func() { _ = p.Signal(syscall.SIGSTOP); frozen <- m[1] })
			}
		}, a.env(), "apply", planA, "--inventory", invA, "--yes", "--state", stateURL)
		var key string
		select {
		case key = <-frozen:
		case <-pa.Exited():
			t.Fatalf("A's apply ended before its first step-host was done:\n%s", pa.Wait(t))
		}
		stdoutA, _ := pa.Output()
		runID := framework.RunIDOf(stdoutA)
		if runID == "" {
			t.Fatalf("A's apply printed no run id:\n%s", stdoutA)
		}
		pidA := pa.Pid()
		t.Logf("A (pid %d) frozen after %s, run %s", pidA, key, runID)

		// While A holds the run, B is refused, told who holds it.
		named := fmt.Sprintf("pid %d", pidA)
		for _, args := range [][]string{
			{"resume", runID, "--yes", "--state", stateURL},
			{"apply", planB, "--inventory", invB, "--yes", "--state", stateURL},
		} {
			r := b.cli(t, e, args...)
			if r.Code != 3 || !strings.Contains(r.Stderr, named) || !strings.Contains(r.Stderr, runID) {
				t.Errorf("B's %s while A holds the lock: want exit 3 naming A (%s, run %s):\n%s", args[0], named, runID, r)
			} else {
				t.Logf("B's %s refused: exit 3: %s", args[0], firstLine(r.Stderr))
			}
		}
		r := b.cli(t, e, "runs", "--state", stateURL)
		if r.Code != 0 || !strings.Contains(r.Stdout, runID) || !strings.Contains(r.Stdout, "@") {
			t.Errorf("B's runs --state should list A's run with who started it:\n%s", r)
		} else {
			t.Logf("B's runs --state:\n%s", r.Stdout)
		}
		r = b.cli(t, e, "status", runID, "--state", stateURL)
		if r.Code != 0 || !strings.Contains(r.Stdout, "in progress") || !strings.Contains(r.Stdout, "started by") {
			t.Errorf("B's status --state while A holds the run should say in progress, started by:\n%s", r)
		}

		// A dies, and its machine's files with it.
		pa.Kill9(t)
		for _, d := range []string{a.home, a.work} {
			if err := os.RemoveAll(d); err != nil {
				t.Fatal(err)
			}
		}
		atKill := statusShared(t, e, b, stateURL, runID)
		r = b.cli(t, e, "resume", runID, "--yes", "--state", stateURL)
		if r.Code != 3 {
			t.Errorf("B's resume right after A's kill -9: the lease outlives A by up to %s, want exit 3:\n%s", stateTTL, r)
		}
		r = b.cli(t, e, "unlock", "--force", runID, "--state", stateURL)
		if r.Code != 0 || !strings.Contains(r.Stdout, named) {
			t.Fatalf("B's unlock --force of A's lock:\n%s", r)
		}
		t.Logf("unlock --force: %s", firstLine(r.Stdout))
		r = b.cli(t, e, "resume", runID, "--yes", "--state", stateURL)
		if r.Code != 0 {
			t.Fatalf("B's resume with only the state URL:\n%s", r)
		}
		t.Logf("B's resume: exit 0 in %.1fs", r.Wall.Seconds())
		verifyLab(t, l)
		st := statusShared(t, e, b, stateURL, runID)
		checkRunDone(t, st)
		checkOnce(t, st, atKill)
		step, _, _ := strings.Cut(key, "@")
		aDone := `"step":"` + step + `"`
		journal := storedJournal(t, mgmt, info.Prefix, runID)
		if !strings.Contains(journal, aDone) {
			t.Errorf("the journal in the store lacks A's session (%s done)", key)
		}
		// A third engineer, who ran nothing, reports on the run: the
		// evidence of B's session and the journal of both.
		c := newOperator(t, "C")
		r = c.cli(t, e, "report", runID, "--state", stateURL)
		if r.Code != 0 || !strings.Contains(r.Stdout, "# etcd-rescue run "+runID) || !strings.Contains(r.Stdout, "| resume |") {
			t.Errorf("C's report --state:\n%s", r)
		}
		bundle := filepath.Join(c.work, "evidence.tgz")
		if r = c.cli(t, e, "report", runID, "--state", stateURL, "-o", bundle); r.Code != 0 {
			t.Fatalf("C's report -o: %s", r)
		}
		if j := bundledJournal(t, bundle); !strings.Contains(j, aDone) || !strings.Contains(j, `"msg":"`) {
			t.Errorf("the journal in C's bundle lacks A's session (%s)", aDone)
		}
	})

	t.Run("lock-ttl", func(t *testing.T) {
		// A backup run killed while it holds the lock: nobody unlocks.
		dir := t.TempDir()
		inv := framework.InventoryWithVars(t, l, map[string]string{"backupDir": dir})
		a, b := newOperator(t, "A"), newOperator(t, "B")
		p, line := e.killAtEnv(t, regexp.MustCompile(`^\S+ save@\S+ running`), a.env(), "apply", planPath("backup"), "--inventory", inv, "--yes", "--state", stateURL, "--state-dir", filepath.Join(a.work, "state"))
		runID := framework.RunIDOf(p.Stdout)
		t.Logf("killed at %q (run %s)", line, runID)
		killed := time.Now()
		for {
			r := b.cli(t, e, "resume", runID, "--yes", "--state", stateURL)
			if r.Code == 0 {
				t.Logf("the lock freed itself %.1fs after the kill (TTL %s); resume exit 0", time.Since(killed).Seconds(), stateTTL)
				break
			}
			if r.Code != 3 {
				t.Fatalf("resume after the holder's kill: want exit 3 until the lease expires, then 0:\n%s", r)
			}
			if time.Since(killed) > 3*stateTTL+10*time.Second {
				t.Fatalf("the lock of a killed holder is still held %.0fs later (TTL %s):\n%s", time.Since(killed).Seconds(), stateTTL, r)
			}
			time.Sleep(time.Second)
		}
		checkRunDone(t, statusShared(t, e, b, stateURL, runID))
	})

	t.Run("fleet", func(t *testing.T) {
		// Two clusters' backups in one command, each its own run and lock
		// in the store (the same lab under two names: one at a time, as
		// they share the hosts' locks).
		dir := t.TempDir()
		renamed := framework.EditInventory(t, l, map[string]string{"backupDir": filepath.Join(dir, "b")}, func(inv map[string]any) {
			inv["cluster"].(map[string]any)["name"] = "lab-b"
		})
		invA := framework.InventoryWithVars(t, l, map[string]string{"backupDir": filepath.Join(dir, "a")})
		o := newOperator(t, "A")
		r := o.cli(t, e, "apply", planPath("backup"), "--inventory", invA, "--inventory", renamed, "--parallel", "1", "--yes",
			"--state", stateURL, "--state-dir", filepath.Join(o.work, "state"))
		if r.Code != 0 {
			t.Fatalf("fleet backup with --state:\n%s", r)
		}
		b := newOperator(t, "B")
		runs := b.cli(t, e, "runs", "--state", stateURL, "-o", "json")
		var rows []struct{ RunID, Cluster, Outcome, StartedBy string }
		if err := json.Unmarshal([]byte(runs.Stdout), &rows); err != nil {
			t.Fatalf("runs -o json: %v\n%s", err, runs)
		}
		done := map[string]bool{}
		for _, row := range rows {
			if row.Outcome == "done" && row.StartedBy != "" {
				done[row.Cluster] = true
			}
		}
		if !done["lab"] || !done["lab-b"] {
			t.Errorf("the store should hold a done backup run of clusters lab and lab-b, started by someone: %+v", rows)
		}
	})

	t.Run("store-killed", func(t *testing.T) {
		if err := l.Break(context.Background(), "ip-change"); err != nil {
			t.Fatalf("lab break ip-change: %v", err)
		}
		a := newOperator(t, "A")
		stopped := make(chan string, 1)
		var once sync.Once
		p := e.StartProc(t, func(p *framework.Proc, line string) {
			if m := anyDoneLine.FindStringSubmatch(line); m != nil {
				once.Do(func() {
					if err := lab.StopStateStore(l.StateDir()); err != nil {
						t.Errorf("stopping the state store: %v", err)
					}
					stopped <- m[1]
				})
			}
		}, a.env(), "apply", planPath("ip-change"), "--inventory", l.InventoryPath(), "--yes", "--state", stateURL, "--state-dir", filepath.Join(a.work, "state"))
		r := p.Wait(t)
		runID := framework.RunIDOf(r.Stdout)
		var key string
		select {
		case key = <-stopped:
		default:
			t.Fatalf("the run never finished a step-host:\n%s", r)
		}
		if r.Code == 0 {
			t.Fatalf("the state store was killed after %s, yet the run went on to the end:\n%s", key, r)
		}
		t.Logf("store killed after %s: the run stopped with exit %d in %.1fs: %s", key, r.Code, r.Wall.Seconds(), firstLine(r.Stderr))
		checkStoppedAtCheckpoint(t, r.Stdout, key)
		if err := lab.StartStateStore(l.StateDir()); err != nil {
			t.Fatalf("starting the state store again: %v", err)
		}
		atRestart := statusShared(t, e, a, stateURL, runID)
		// The run's lease was not revoked (the store was down when the
		// run ended): it expires after its TTL, counted from the restart.
		began := time.Now()
		for {
			r = a.cli(t, e, "resume", runID, "--yes", "--state", stateURL)
			if r.Code == 0 {
				break
			}
			if r.Code != 3 || time.Since(began) > 3*stateTTL+20*time.Second {
				t.Fatalf("resume once the store is back:\n%s", r)
			}
			time.Sleep(time.Second)
		}
		t.Logf("resume once the store was back: exit 0 after %.1fs", time.Since(began).Seconds())
		verifyLab(t, l)
		st := statusShared(t, e, a, stateURL, runID)
		checkRunDone(t, st)
		checkOnce(t, st, atRestart)
	})
}

// checkStoppedAtCheckpoint: after the line of key's done (when the store
// was killed), every step-host that went running failed on its checkpoint
// and none went on to done: the run changed nothing it could not record.
func checkStoppedAtCheckpoint(t *testing.T, stdout, key string) {
	t.Helper()
	lines := strings.Split(stdout, "\n")
	from := -1
	for i, ln := range lines {
		if m := anyDoneLine.FindStringSubmatch(ln); m != nil && m[1] == key {
			from = i
			break
		}
	}
	if from < 0 {
		t.Fatalf("no done line of %s in the output:\n%s", key, stdout)
	}
	after := lines[from+1:]
	t.Logf("after the store was killed:\n%s", strings.Join(after, "\n"))
	var failedOnStore int
	for _, ln := range after {
		if m := anyDoneLine.FindStringSubmatch(ln); m != nil {
			t.Errorf("%s was done after the store was killed: its checkpoint cannot be in the store", m[1])
		}
		if strings.Contains(ln, " failed") && strings.Contains(ln, "state store") {
			failedOnStore++
		}
	}
	if failedOnStore == 0 {
		t.Errorf("no step-host failed on the state store after it was killed")
	}
}

// statusShared is status -o json of a run in the shared store, as o sees it.
func statusShared(t *testing.T, e *e2e, o *operator, stateURL, runID string) *framework.RunState {
	t.Helper()
	r := o.cli(t, e, "status", runID, "-o", "json", "--state", stateURL)
	if r.Code != 0 {
		t.Fatalf("status --state: %s", r)
	}
	var st framework.RunState
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, r.Stdout)
	}
	return &st
}

// checkOnce: a kill, a lost store or a takeover made the engine do no
// step-host again that the store held as done (or skipped) when the
// session stopped: only those it held running or failed, which resume
// probes first, may have a second attempt.
func checkOnce(t *testing.T, st, stopped *framework.RunState) {
	t.Helper()
	was := map[string]string{}
	for _, s := range stopped.Steps {
		for _, h := range s.Hosts {
			was[s.ID+"@"+h.Host] = h.Status
		}
	}
	for _, s := range st.Steps {
		for _, h := range s.Hosts {
			key := s.ID + "@" + h.Host
			switch {
			case was[key] == "running" || was[key] == "failed":
				if h.Attempts > 2 {
					t.Errorf("%s, %s when the session stopped, was attempted %d times", key, was[key], h.Attempts)
				}
			case h.Attempts > 1:
				t.Errorf("%s, %s when the session stopped, was attempted %d times", key, was[key], h.Attempts)
			}
		}
	}
}

// mgmtClient is a client of the lab's management etcd, for reading what
// the store holds from outside etcd-rescue.
func mgmtClient(t *testing.T, info *lab.StateStoreInfo) *clientv3.Client {
	t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(info.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(info.CertFile, info.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + info.Endpoint}, DialTimeout: 5 * time.Second,
		TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// bundledJournal is the journal copy in an evidence bundle (report -o).
func bundledJournal(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no journal in the bundle %s: %v", path, err)
		}
		if strings.HasSuffix(h.Name, "/evidence/journal.jsonl") {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
}

// storedJournal is run id's journal as the store holds it.
func storedJournal(t *testing.T, c *clientv3.Client, prefix, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key := "/" + strings.Trim(prefix, "/") + "/runs/" + id + "/journal/"
	resp, err := c.Get(ctx, key, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		t.Fatalf("reading the journal of run %s from the store: %v", id, err)
	}
	var b strings.Builder
	for _, kv := range resp.Kvs {
		b.Write(kv.Value)
	}
	if b.Len() == 0 {
		t.Errorf("the store holds no journal under %s", key)
	}
	return b.String()
}
