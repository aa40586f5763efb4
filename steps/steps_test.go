package steps

import (
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// testCtx builds a 3-member context whose paths point into dir, so the
// rendered shell commands can be run for real with sh on this machine.
func testCtx(t *testing.T, dir, service string) (*Ctx, []Target) {
	t.Helper()
	c := &plans.Cluster{Name: "c", Token: "tok-1", EtcdVersion: "3.5.17",
		Layout: plans.Layout{Service: service, Unit: "etcd", EnvFile: filepath.Join(dir, "etcd.env"),
			Manifest: filepath.Join(dir, "manifests", "etcd.yaml"), DataDir: filepath.Join(dir, "data")}}
	var ts []Target
	for i, n := range []string{"e1", "e2", "e3"} {
		ip := "10.9.0." + string(rune('1'+i))
		m := &plans.Member{Name: n, Host: "h" + n[1:], PeerURL: "http://" + ip + ":2380", ClientURL: "http://" + ip + ":2379"}
		c.Members = append(c.Members, m)
		ts = append(ts, Target{Host: &plans.Host{Name: m.Host, Address: ip}, Member: m})
	}
	v, _ := plans.ParseVersion(c.EtcdVersion)
	return &Ctx{Plan: &plans.Plan{Cluster: c}, Cluster: c, Version: v, RunID: "R1"}, ts
}

func sh(t *testing.T, cmd string) (string, error) {
	t.Helper()
	out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
	return string(out), err
}

func TestSetConfigEnvFileForReal(t *testing.T) {
	dir := t.TempDir()
	c, ts := testCtx(t, dir, "systemd")
	env := filepath.Join(dir, "etcd.env")
	os.WriteFile(env, []byte("ETCD_NAME=old\nETCD_CERT_FILE=/pki/x.crt\nETCD_FORCE_NEW_CLUSTER=true\nETCD_INITIAL_CLUSTER_TOKEN=per-node-token\n"), 0o640)
	s := &SetConfig{ClusterState: "existing", InitialCluster: []string{"e1", "e2"}, Set: map[string]string{"ETCD_SNAPSHOT_COUNT": "10000"}}
	for _, a := range s.Describe(c, ts[1]) {
		if out, err := sh(t, a.Cmd); err != nil {
			t.Fatalf("%s: %v %s", a.Cmd, err, out)
		}
	}
	b, _ := os.ReadFile(env)
	got := string(b)
	for _, want := range []string{"ETCD_NAME=e2\n", "ETCD_CERT_FILE=/pki/x.crt\n", "ETCD_INITIAL_CLUSTER=e1=http://10.9.0.1:2380,e2=http://10.9.0.2:2380\n",
		"ETCD_INITIAL_CLUSTER_STATE=existing\n", "ETCD_LISTEN_CLIENT_URLS=http://10.9.0.2:2379,http://127.0.0.1:2379\n", "ETCD_SNAPSHOT_COUNT=10000\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("env file lacks %q:\n%s", want, got)
		}
	}
	for _, gone := range []string{"ETCD_NAME=old", "FORCE_NEW_CLUSTER", "per-node-token"} {
		if strings.Contains(got, gone) {
			t.Errorf("env file still has %q:\n%s", gone, got)
		}
	}
	if st, _ := os.Stat(env); st.Mode().Perm() != 0o640 {
		t.Errorf("mode changed to %v", st.Mode().Perm())
	}
	// The read-only check agrees.
	set, unset := s.settings(c, ts[1])
	if out, err := sh(t, configTest(c, set, unset)); err != nil {
		t.Errorf("check says not done after apply: %v %s", err, out)
	}
}

func TestSetConfigStaticPodForReal(t *testing.T) {
	dir := t.TempDir()
	c, ts := testCtx(t, dir, "static-pod")
	os.MkdirAll(filepath.Join(dir, "manifests"), 0o755)
	manifest := "spec:\n  containers:\n  - command:\n    - etcd\n    - --name=old\n    - --initial-cluster=old=http://x:2380\n    - --cert-file=/pki/s.crt\n    image: etcd\n"
	os.WriteFile(c.Cluster.Layout.Manifest, []byte(manifest), 0o600)
	// stop-service parks the manifest; set-config must edit the parked copy.
	for _, a := range (&StopService{}).Describe(c, ts[0])[:1] {
		if out, err := sh(t, a.Cmd); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	s := &SetConfig{ClusterState: "new"}
	for _, a := range s.Describe(c, ts[0]) {
		if out, err := sh(t, a.Cmd); err != nil {
			t.Fatalf("%s: %v %s", a.Cmd, err, out)
		}
	}
	parked := parkedManifest(c, "etcd")
	b, err := os.ReadFile(parked)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{"    - etcd\n    - --name=e1\n", "    - --initial-cluster-token=tok-1\n", "    - --cert-file=/pki/s.crt\n", "    image: etcd\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("manifest lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "--name=old") || strings.Count(got, "--initial-cluster=") != 1 {
		t.Errorf("old flags left:\n%s", got)
	}
	set, unset := s.settings(c, ts[0])
	if out, err := sh(t, configTest(c, set, unset)); err != nil {
		t.Errorf("check says not done: %v %s", err, out)
	}
	// Edited where the kubelet reads it (not parked), the temp file is
	// hidden from the kubelet (a leading dot) and carries the run id: an mv
	// shim records what was renamed.
	if err := os.Rename(parked, c.Cluster.Layout.Manifest); err != nil {
		t.Fatal(err)
	}
	shim := filepath.Join(dir, "shim")
	os.MkdirAll(shim, 0o755)
	os.WriteFile(filepath.Join(shim, "mv"), []byte("#!/bin/sh\necho \"$1\" >> "+filepath.Join(dir, "moved")+"\nexec /bin/mv \"$@\"\n"), 0o755)
	for _, a := range (&SetConfig{ClusterState: "existing"}).Describe(c, ts[0]) {
		if out, err := sh(t, "PATH="+shim+":$PATH; "+a.Cmd); err != nil {
			t.Fatalf("%s: %v %s", a.Cmd, err, out)
		}
	}
	moved, _ := os.ReadFile(filepath.Join(dir, "moved"))
	want := filepath.Join(filepath.Dir(c.Cluster.Layout.Manifest), "."+filepath.Base(c.Cluster.Layout.Manifest)+".rescue-tmp-"+c.RunID)
	if strings.TrimSpace(string(moved)) != want {
		t.Errorf("renamed %q into place, want the hidden run temp %q", moved, want)
	}
	if b, _ := os.ReadFile(c.Cluster.Layout.Manifest); !strings.Contains(string(b), "--initial-cluster-state=existing") {
		t.Errorf("manifest not edited in place:\n%s", b)
	}
}

func TestWipeDirMovesAsideForReal(t *testing.T) {
	dir := t.TempDir()
	c, ts := testCtx(t, dir, "systemd")
	data := c.DataDir()
	os.MkdirAll(filepath.Join(data, "member", "snap"), 0o700)
	os.WriteFile(filepath.Join(data, "member", "snap", "db"), []byte("precious"), 0o600)
	w := &WipeDir{}
	for i := 0; i < 2; i++ { // twice: the second run must change nothing
		for _, a := range w.Describe(c, ts[0]) {
			if a.Run != nil {
				continue // the live precondition (tested in live_test.go)
			}
			if !a.Destructive {
				t.Error("wipe-dir action not marked destructive")
			}
			if out, err := sh(t, a.Cmd); err != nil {
				t.Fatalf("%v %s", err, out)
			}
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("data dir still there: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(AsideDir(data, "R1"), "member", "snap", "db"))
	if err != nil || string(b) != "precious" {
		t.Errorf("moved-aside data lost: %q %v", b, err)
	}
}

func TestRestoreDescribe(t *testing.T) {
	c, ts := testCtx(t, "/x", "systemd")
	c.Cluster.Layout.Owner = "etcd:etcd"
	acts := (&Restore{Snapshot: "/s.db", BumpRevision: "5000"}).Describe(c, ts[2])
	var cmds []string
	for _, a := range acts {
		cmds = append(cmds, a.Cmd)
	}
	all := strings.Join(cmds, "\n")
	for _, want := range []string{
		"etcdutl snapshot restore /s.db --name e3 --initial-cluster 'e1=http://10.9.0.1:2380,e2=http://10.9.0.2:2380,e3=http://10.9.0.3:2380' --initial-cluster-token tok-1 --initial-advertise-peer-urls http://10.9.0.3:2380 --data-dir /x/data.restoring-R1 --bump-revision 5000 --mark-compacted",
		"chown -R etcd:etcd -- /x/data.restoring-R1",
		"mv -T -- /x/data.restoring-R1 /x/data",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("restore lacks %q in:\n%s", want, all)
		}
	}
	c.Version, _ = plans.ParseVersion("3.4.30")
	acts = (&Restore{Snapshot: "/s.db", BumpRevision: "none"}).Describe(c, ts[0])
	// the API precondition, then one command up to the restored dir, then the rename
	if len(acts) != 3 || !strings.Contains(acts[1].Cmd, "; ETCDCTL_API=3 etcdctl snapshot restore /s.db --name e1") || strings.Contains(acts[1].Cmd, "bump") {
		t.Errorf("3.4 restore: %+v", acts)
	}
}

func TestVerifySnapshotFile(t *testing.T) {
	dir := t.TempDir()
	body := []byte(strings.Repeat("bolt", 1000))
	sum := sha256.Sum256(body)
	good := filepath.Join(dir, "good.db")
	os.WriteFile(good, append(append([]byte{}, body...), sum[:]...), 0o600)
	if _, err := VerifySnapshotFile(good); err != nil {
		t.Errorf("good snapshot refused: %v", err)
	}
	if out, err := sh(t, "n=$(stat -c %s "+q(good)+") && "+trailerCheck(good)); err != nil {
		t.Errorf("shell trailer check refused a good snapshot: %v %s", err, out)
	}
	raw := filepath.Join(dir, "raw.db")
	os.WriteFile(raw, body, 0o600)
	if _, err := VerifySnapshotFile(raw); err == nil || !strings.Contains(err.Error(), "no valid sha256 trailer") {
		t.Errorf("raw db accepted: %v", err)
	}
	if _, err := sh(t, "n=$(stat -c %s "+q(raw)+") && "+trailerCheck(raw)); err == nil {
		t.Error("shell trailer check accepted a raw db")
	}
}

func TestRegistryComplete(t *testing.T) {
	reg := Registry()
	for _, n := range []string{"stop-service", "start-service", "wipe-dir", "chown", "snapshot-save", "snapshot-copy", "snapshot-verify",
		"restore", "set-config", "member-add", "member-remove", "member-update", "member-promote", "force-new-cluster",
		"wait-healthy", "check-quorum", "verify-data", "approve", "exec"} {
		typ, ok := reg[n]
		if !ok {
			t.Errorf("catalog lacks %s", n)
			continue
		}
		if typ.New() == nil {
			t.Errorf("%s: New returns nil", n)
		}
	}
}
