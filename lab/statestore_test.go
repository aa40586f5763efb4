package lab

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/tests/framework/testutil"
)

// stateStoreEtcdVersion is the etcd the test runs the store with.
const stateStoreEtcdVersion = "v3.6.16"

// TestStateStore runs the lab's state store on its own, without lab hosts
// (they add nothing to it): a real etcd on 127.0.0.1 that answers over TLS
// with the operator's client certificate and refuses a client without
// one, that the inventory names so that plans resolve it, that survives a
// SIGKILL and a start on the same data and ports, and that stopStateStore
// (lab down) removes with its data.
func TestStateStore(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Join(root, "lab", "bin")
	if _, err := os.Stat(filepath.Join(binDir, stateStoreEtcdVersion, "etcd")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("state store test: %v (CI=true: a failure, not a skip); make etcd-bins", err)
		}
		t.Skipf("state store test: %v; make etcd-bins", err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	l := &Lab{dir: dir, log: testutil.Log{T: t}, st: state{BinDir: binDir, Version: stateStoreEtcdVersion, Token: "lab-test"}}
	if err := l.ensurePKI(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.stopStateStore() })
	if b, err := l.inventoryAt(filepath.Join(dir, "inventory.yaml"), InventoryOptions{}); err != nil || strings.Contains(string(b), "\nstate:") {
		t.Errorf("inventory of a lab without a state store: %v\n%s", err, b)
	}
	t0 := time.Now()
	if err := l.startStateStore(); err != nil {
		t.Fatal(err)
	}
	if err := waitStateStore(ctx, dir, true); err != nil {
		t.Fatal(err)
	}
	info, err := StateStoreOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state store answers at %s %.1fs after it started (pid %d)", info.URL, time.Since(t0).Seconds(), info.PID)
	port, _ := strconv.Atoi(strings.TrimPrefix(info.Endpoint, "127.0.0.1:"))
	if !strings.HasPrefix(info.URL, "etcd://127.0.0.1:") || !strings.HasSuffix(info.URL, "/"+StateStorePrefix) || memberPort(port) {
		t.Errorf("url %s", info.URL)
	}
	if pgid, err := syscall.Getpgid(info.PID); err != nil || pgid != info.PID {
		t.Errorf("etcd (pid %d) is not in a session of its own: pgid %d, %v", info.PID, pgid, err)
	}
	if st := l.stateStoreStatus(ctx); st == nil || st.State != "up" || st.URL != info.URL {
		t.Errorf("status %+v", st)
	}

	// The inventory's state: section, as plans read it.
	inv := filepath.Join(dir, "inventory.yaml")
	b, err := l.inventoryAt(inv, InventoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inv, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p, fs := plans.LoadInventory(inv)
	for _, f := range fs {
		if strings.Contains(f.Msg, "state") {
			t.Errorf("inventory: %v\n%s", f, b)
		}
	}
	if p == nil || p.State == nil {
		t.Fatalf("no state: in the inventory:\n%s", b)
	}
	u, pw, err := p.StateConfig()
	if err != nil || u.String() != info.URL || u.CA != l.CACertPath() || u.Cert != info.CertFile || u.Key != info.KeyFile || pw != "" {
		t.Errorf("inventory state: %+v %v, want %s", u, err, info.URL)
	}

	// TLS with the client certificate: a write and a read.
	put := func(key, val string) error {
		cli := storeClient(t, info)
		defer cli.Close()
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := cli.Put(c, StateStorePrefix+"/"+key, val)
		return err
	}
	get := func(key string) (string, error) {
		cli := storeClient(t, info)
		defer cli.Close()
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err := cli.Get(c, StateStorePrefix+"/"+key)
		if err != nil || len(r.Kvs) == 0 {
			return "", err
		}
		return string(r.Kvs[0].Value), nil
	}
	if err := put("probe", "before the outage"); err != nil {
		t.Fatalf("put over TLS with the client certificate: %v", err)
	}

	// Without a client certificate the handshake is refused.
	tc, err := StateStoreTLS(info)
	if err != nil {
		t.Fatal(err)
	}
	tc.Certificates = nil
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 3 * time.Second}
	if resp, err := hc.Get("https://" + info.Endpoint + "/health"); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate got %s", resp.Status)
	} else {
		t.Logf("without a client certificate: %v", err)
	}
	hc.CloseIdleConnections()

	// An outage: SIGKILL, then a start on the same data and ports.
	pid := info.PID
	if err := StopStateStore(dir); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("etcd %d still runs after StopStateStore", pid)
	}
	if st := l.stateStoreStatus(ctx); st == nil || !strings.HasPrefix(st.State, "down: ") {
		t.Errorf("status while stopped %+v", st)
	}
	if err := put("probe2", "x"); err == nil {
		t.Error("a put succeeded while the store was stopped")
	}
	if err := StopStateStore(dir); err != nil {
		t.Errorf("second stop: %v", err)
	}
	t0 = time.Now()
	if err := StartStateStore(dir); err != nil {
		t.Fatal(err)
	}
	again, err := StateStoreOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started again in %.1fs (pid %d)", time.Since(t0).Seconds(), again.PID)
	if again.URL != info.URL || again.PID == pid || !isStoreEtcd(again.PID, again.DataDir) {
		t.Errorf("after a restart: %+v, before %+v", again, info)
	}
	if v, err := get("probe"); err != nil || v != "before the outage" {
		t.Errorf("after a restart: %q, %v", v, err)
	}
	if err := StartStateStore(dir); err != nil {
		t.Errorf("start of a running store: %v", err)
	}
	if cur, _ := StateStoreOf(dir); cur == nil || cur.PID != again.PID {
		t.Errorf("a start of a running store started another: %+v", cur)
	}

	// lab down: the process and the data are gone.
	if err := l.stopStateStore(); err != nil {
		t.Fatal(err)
	}
	if alive(again.PID) {
		t.Errorf("etcd %d runs after lab down", again.PID)
	}
	if _, err := os.Stat(StateStoreDir(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left after lab down: %v", StateStoreDir(dir), err)
	}
	if _, err := StateStoreOf(dir); !errors.Is(err, ErrNoStateStore) {
		t.Errorf("StateStoreOf after down: %v", err)
	}
	if l.StateStore() != nil || l.stateStoreStatus(ctx) != nil {
		t.Error("the lab still reports a state store")
	}
	if err := l.stopStateStore(); err != nil {
		t.Errorf("second down: %v", err)
	}
}

func storeClient(t *testing.T, info *StateStoreInfo) *clientv3.Client {
	t.Helper()
	tc, err := StateStoreTLS(info)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + info.Endpoint}, TLS: tc, DialTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// TestStateStoreLabUp: lab up with Options.StateStore starts the store,
// every inventory names it, lab status shows it, and lab down leaves no
// process of it.
func TestStateStoreLabUp(t *testing.T) {
	l := upLab(t, Options{Members: 1, Version: "3.6", Keys: 10, Mode: ModeLight, StateStore: true})
	ctx := context.Background()
	info, err := StateStoreOf(l.StateDir())
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, l)
	checkInventory(t, l)
	variant := filepath.Join(l.StateDir(), "sub", "inv.yaml")
	if err := os.MkdirAll(filepath.Dir(variant), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := l.WriteInventory(variant, InventoryOptions{User: OperatorUser, Sudo: true}); err != nil {
		t.Fatal(err)
	}
	for _, inv := range []string{l.InventoryPath(), variant} {
		p, fs := plans.LoadInventory(inv)
		if p == nil || fs.Errors() > 0 || p.State == nil {
			t.Fatalf("%s: %v", inv, fs)
		}
		u, _, err := p.StateConfig()
		if err != nil || u.String() != info.URL || u.CA != l.CACertPath() || u.Cert != info.CertFile || u.Key != info.KeyFile {
			t.Errorf("%s: state %+v %v, want %s", inv, u, err, info.URL)
		}
	}
	if st := l.Status(ctx).StateStore; st == nil || st.State != "up" || st.URL != info.URL || st.PID != info.PID {
		t.Errorf("status: %+v", st)
	}
	cli := storeClient(t, info)
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = cli.Put(c, StateStorePrefix+"/probe", "x")
	cancel()
	cli.Close()
	if err != nil {
		t.Errorf("put: %v", err)
	}
	if err := StopStateStore(l.StateDir()); err != nil {
		t.Fatal(err)
	}
	if st := l.Status(ctx).StateStore; st == nil || !strings.HasPrefix(st.State, "down: ") {
		t.Errorf("status while stopped: %+v", st)
	}
	if err := l.Verify(ctx); err != nil {
		t.Errorf("lab verify looks at the state store: %v", err)
	}
	if err := StartStateStore(l.StateDir()); err != nil {
		t.Fatal(err)
	}
	if info, err = StateStoreOf(l.StateDir()); err != nil {
		t.Fatal(err)
	}
	downAndCheck(t, l)
	if isStoreEtcd(info.PID, info.DataDir) {
		t.Errorf("state store etcd %d runs after lab down", info.PID)
		_ = syscall.Kill(info.PID, syscall.SIGKILL)
	}
}
