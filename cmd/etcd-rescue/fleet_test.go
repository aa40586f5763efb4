package main

import (
	"context"
	"crypto/sha256"
	"errors"
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

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// fleetPlan is a backup plan made of read-only steps only.
const fleetPlan = `version: 1
name: fleet-backup
cluster:
  name: placeholder
  etcdVersion: "3.6"
  members:
    - {name: etcd1, host: node1, peerURL: "http://10.0.0.1:2380", clientURL: "http://10.0.0.1:2379"}
hosts:
  node1: {address: 10.0.0.1}
ssh: {user: root, knownHosts: /tmp/known_hosts}
steps:
  - id: save
    type: snapshot-save
    on: etcd1
    with: {to: "backups/${cluster.name}-${run.id}.db"}
`

// fleetInventory is the inventory of cluster name, its members on
// 10.0.N.x.
func fleetInventory(t *testing.T, dir, name string, n int) string {
	t.Helper()
	inv := fmt.Sprintf(`cluster:
  name: %s
  etcdVersion: "3.6"
  members:
    - {name: etcd1, host: node1, peerURL: "http://10.0.%d.1:2380", clientURL: "http://10.0.%d.1:2379"}
hosts:
  node1: {address: 10.0.%d.1}
ssh: {user: root, knownHosts: /tmp/known_hosts}
`, name, n, n, n)
	p := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(p, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// snapEtcd serves a small valid snapshot (body and its sha256 trailer).
type snapEtcd struct {
	steps.Etcd // everything else: not called by snapshot-save
	hold       time.Duration
	onSave     func()
}

func (e snapEtcd) SnapshotSave(ctx context.Context, url string, w io.Writer) (string, int64, error) {
	if e.onSave != nil {
		e.onSave()
	}
	time.Sleep(e.hold) // long enough for the runs to overlap
	body := []byte("a snapshot of " + url + strings.Repeat(".", 100))
	sum := sha256.Sum256(body)
	data := append(body, sum[:]...)
	if _, err := w.Write(data); err != nil {
		return "", 0, err
	}
	whole := sha256.Sum256(data)
	return fmt.Sprintf("%x", whole), int64(len(data)), nil
}

func (snapEtcd) IsRetryable(error) bool { return false }

// fleetBackend is a backend per cluster: the cluster named bad has no
// etcd; it counts the runs that hold a backend at once.
type fleetBackend struct {
	f    *fleetFake
	name string
}

type fleetFake struct {
	mu       sync.Mutex
	active   int
	max      int
	clusters []string
	onSave   func() // called as each snapshot save begins
}

func (f *fleetFake) backend(c *engine.Compiled) (engine.Backend, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active++
	f.max = max(f.max, f.active)
	f.clusters = append(f.clusters, c.Plan.Cluster.Name)
	return &fleetBackend{f, c.Plan.Cluster.Name}, nil
}

func (b *fleetBackend) Shell(host string) (steps.Runner, error) { return failingRunner{host}, nil }
func (b *fleetBackend) Etcd(context.Context) (steps.Etcd, error) {
	if b.name == "bad" {
		return nil, errors.New("dial tcp 10.0.2.1:2379: connect: connection refused")
	}
	return snapEtcd{hold: 50 * time.Millisecond, onSave: b.f.onSave}, nil
}
func (b *fleetBackend) Close() error {
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	b.f.active--
	return nil
}

func withFleetFake(t *testing.T) *fleetFake {
	t.Helper()
	noTTY(t)
	f := &fleetFake{}
	old := testOptions
	testOptions = func(o *engine.Options) {
		o.Backend = f.backend
		o.RetryDelay = -1
	}
	t.Cleanup(func() { testOptions = old })
	return f
}

func writeFleetPlan(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Three clusters, one failing: the other two are done, the table has a
// row per cluster in inventory order, the exit code is fleet-partial,
// each cluster has its own state dir.
func TestFleetOneFailing(t *testing.T) {
	f := withFleetFake(t)
	dir := t.TempDir()
	plan := writeFleetPlan(t, dir, fleetPlan)
	a, bad, c := fleetInventory(t, dir, "alpha", 1), fleetInventory(t, dir, "bad", 2), fleetInventory(t, dir, "gamma", 3)
	code, out, errs := runCLI("apply", plan, "--yes", "--inventory", a, "--inventory", bad, "--inventory", c)
	if code != exitFleetPartial {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFleetPartial, out, errs)
	}
	_, table, ok := strings.Cut(out, "\nCLUSTER ")
	if !ok {
		t.Fatalf("no summary table:\n%s", out)
	}
	rows := strings.Split(strings.TrimSpace(table), "\n")[1:]
	want := []struct{ name, inv, result string }{{"alpha", a, "done"}, {"bad", bad, "failed"}, {"gamma", c, "done"}}
	if len(rows) != len(want) {
		t.Fatalf("table rows %q, want %d", rows, len(want))
	}
	for i, w := range want {
		re := regexp.MustCompile(`^` + w.name + `\s+` + regexp.QuoteMeta(w.inv) + `\s+\d{8}T\d{6}Z-[0-9a-f]+\s+` + w.result + `\s+\S+`)
		if !re.MatchString(rows[i]) {
			t.Errorf("row %d: %q, want %s %s RUN %s TIME", i, rows[i], w.name, w.inv, w.result)
		}
	}
	if !strings.Contains(rows[1], "connection refused") {
		t.Errorf("the failed row has no detail: %q", rows[1])
	}
	for _, name := range []string{"alpha", "gamma"} {
		snaps, _ := filepath.Glob(filepath.Join(dir, "backups", name+"-*.db"))
		if len(snaps) != 1 {
			t.Errorf("cluster %s: snapshots %v, want one", name, snaps)
		}
		runs, _ := filepath.Glob(filepath.Join(dir, ".etcd-rescue", "fleet", name, "runs", "*"))
		if len(runs) != 1 {
			t.Errorf("cluster %s: runs %v in its state dir, want one", name, runs)
		}
		if !regexp.MustCompile(`(?m)^\[` + name + `\] \S+ run \S+, state in `).MatchString(out) {
			t.Errorf("no [%s] start line:\n%s", name, out)
		}
	}
	if !strings.Contains(errs, "[bad] etcd-rescue: error: ") || !strings.Contains(errs, "etcd-rescue: error: fleet run: 1 of 3 clusters did not succeed (bad failed)") {
		t.Errorf("stderr:\n%s", errs)
	}
	if len(f.clusters) != 3 {
		t.Errorf("runs of %v, want 3", f.clusters)
	}
}

// --parallel bounds the runs at once; --state-dir D puts each cluster in
// D/CLUSTER.
func TestFleetParallelBound(t *testing.T) {
	for _, par := range []int{1, 2} {
		t.Run(fmt.Sprint(par), func(t *testing.T) {
			f := withFleetFake(t)
			dir := t.TempDir()
			plan := writeFleetPlan(t, dir, fleetPlan)
			state := filepath.Join(dir, "state")
			args := []string{"apply", plan, "--yes", "--parallel", fmt.Sprint(par), "--state-dir", state}
			for i := range 5 {
				args = append(args, "--inventory", fleetInventory(t, dir, fmt.Sprintf("c%d", i), i+1))
			}
			code, out, errs := runCLI(args...)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
			}
			if f.max > par {
				t.Errorf("%d runs at once, --parallel %d", f.max, par)
			}
			if par > 1 && f.max < 2 {
				t.Errorf("runs never overlapped (max %d at once, --parallel %d)", f.max, par)
			}
			if par == 1 && strings.Join(f.clusters, " ") != "c0 c1 c2 c3 c4" {
				t.Errorf("--parallel 1 ran %v, want inventory order", f.clusters)
			}
			for i := range 5 {
				if _, err := os.Stat(filepath.Join(state, fmt.Sprintf("c%d", i), "runs")); err != nil {
					t.Errorf("cluster c%d: %v", i, err)
				}
			}
		})
	}
}

func TestFleetRefusals(t *testing.T) {
	f := withFleetFake(t)
	dir := t.TempDir()
	plan := writeFleetPlan(t, dir, fleetPlan)
	a, b := fleetInventory(t, dir, "alpha", 1), fleetInventory(t, dir, "beta", 2)
	dup := filepath.Join(t.TempDir(), "alpha.yaml")
	if err := os.WriteFile(dup, []byte(strings.ReplaceAll(mustRead(t, b), "beta", "alpha")), 0o600); err != nil {
		t.Fatal(err)
	}
	invalid := filepath.Join(dir, "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("cluster:\n  name: x\n  etcdVersion: \"3.6\"\n  membres: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	changing := writeFleetPlan(t, t.TempDir(), strings.Replace(fleetPlan, "steps:\n", `steps:
  - id: stop
    type: stop-service
    on: [etcd1]
`, 1))

	cases := map[string]struct {
		args     []string
		code     int
		inStderr []string
	}{
		"not read-only": {[]string{"apply", changing, "--yes", "--inventory", a, "--inventory", b}, exitUsage,
			[]string{`fleet run refused: a step changes the hosts or the cluster of ` + changing + `: step "stop" (stop-service); nothing was run`,
				"hint: a fleet run (several --inventory) only runs plans whose every step changes nothing", "snapshot-save",
				"hint: run this plan on one cluster at a time"}},
		"same cluster": {[]string{"apply", plan, "--yes", "--inventory", a, "--inventory", dup}, exitUsage,
			[]string{"fleet run: inventories " + a + " and " + dup + ` both name cluster "alpha"; nothing was run`}},
		"invalid inventory": {[]string{"apply", plan, "--yes", "--inventory", a, "--inventory", invalid}, exitUsage,
			[]string{invalid + ":4:3: ", "fleet run: " + plan + " is not valid with 1 of its 2 inventories", "hint: fix the findings above"}},
		"parallel 0":        {[]string{"apply", plan, "--yes", "--parallel", "0", "--inventory", a, "--inventory", b}, exitUsage, []string{"--parallel must be at least 1"}},
		"parallel with one": {[]string{"apply", plan, "--yes", "--parallel", "2", "--inventory", a}, exitUsage, []string{"--parallel is for a fleet run"}},
		"live progress":     {[]string{"apply", plan, "--yes", "--progress", "live", "--inventory", a, "--inventory", b}, exitUsage, []string{"a fleet run prints plain progress lines"}},
		"no tty no yes":     {[]string{"apply", plan, "--inventory", a, "--inventory", b}, exitUsage, []string{"no terminal is attached"}},
		"approve unknown":   {[]string{"apply", plan, "--yes", "--approve", "nope", "--inventory", a, "--inventory", b}, exitUsage, []string{`--approve nope: no step "nope"`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			for _, s := range tc.inStderr {
				if !strings.Contains(errs, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errs)
				}
			}
		})
	}
	if len(f.clusters) != 0 {
		t.Errorf("a refused fleet ran %v", f.clusters)
	}
	if _, err := os.Stat(filepath.Join(dir, ".etcd-rescue")); err == nil {
		t.Errorf("a refused fleet created its state dir")
	}
}

// The first Ctrl-C lets the running cluster finish and starts no other:
// they are "not started", the exit is 130.
func TestFleetInterrupt(t *testing.T) {
	f := withFleetFake(t)
	var once sync.Once
	f.onSave = func() {
		once.Do(func() {
			if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
				t.Error(err)
			}
			time.Sleep(50 * time.Millisecond) // the signal is handled before the save ends
		})
	}
	dir := t.TempDir()
	plan := writeFleetPlan(t, dir, fleetPlan)
	args := []string{"apply", plan, "--yes", "--parallel", "1"}
	for i, name := range []string{"alpha", "beta", "gamma"} {
		args = append(args, "--inventory", fleetInventory(t, dir, name, i+1))
	}
	code, out, errs := runCLI(args...)
	if code != exitInterrupted {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitInterrupted, out, errs)
	}
	rows := regexp.MustCompile(`(?m)^(alpha|beta|gamma) .*$`).FindAllString(out, -1)
	if len(rows) != 3 || !strings.Contains(rows[0], " done ") ||
		!strings.Contains(rows[1], " not started ") || !strings.Contains(rows[2], " not started ") {
		t.Errorf("rows %q: want alpha done (its running step finished), beta and gamma not started", rows)
	}
	if strings.Join(f.clusters, " ") != "alpha" {
		t.Errorf("after the interrupt ran %v, want alpha only", f.clusters)
	}
	if !strings.Contains(errs, "fleet run interrupted: 2 of 3 clusters not done") {
		t.Errorf("stderr:\n%s", errs)
	}
}

// The confirmation lists every cluster; anything but yes runs nothing.
func TestFleetConfirmation(t *testing.T) {
	f := withFleetFake(t)
	terminal.isTTY = func() bool { return true }
	terminal.in = strings.NewReader("no\n")
	dir := t.TempDir()
	plan := writeFleetPlan(t, dir, fleetPlan)
	a, b := fleetInventory(t, dir, "alpha", 1), fleetInventory(t, dir, "beta", 2)
	code, out, errs := runCLI("apply", plan, "--progress", "plain", "--inventory", a, "--inventory", b)
	if code != exitFailed || !strings.Contains(errs, `apply plan fleet-backup to these 2 clusters? only "yes" proceeds: `) {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for _, s := range []string{"== cluster alpha (inventory " + a + ")", "== cluster beta (inventory " + b + ")", "  alpha (inventory " + a + ")\n  beta (inventory " + b + ")\n"} {
		if !strings.Contains(out, s) {
			t.Errorf("stdout lacks %q:\n%s", s, out)
		}
	}
	if len(f.clusters) != 0 {
		t.Errorf("not confirmed, yet ran %v", f.clusters)
	}
	terminal.in = strings.NewReader("yes\n")
	if code, out, errs := runCLI("apply", plan, "--progress", "plain", "--inventory", a, "--inventory", b); code != 0 || len(f.clusters) != 2 {
		t.Errorf("confirmed: exit %d, ran %v\nstdout:\n%s\nstderr:\n%s", code, f.clusters, out, errs)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
