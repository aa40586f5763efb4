package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/etcd-rescue/etcd-rescue/tests/framework/testutil"
)

// TestStaticPodLab is the static-pod layout on real parts, with one lab up
// for every check: a kubelet with containerd runs etcd and kube-apiserver as
// static pods on three hosts; verify sees the keys, the 200 ConfigMaps and
// /readyz on every API server; the kubelet restarts through the systemctl
// shim; total-loss breaks it (manifests parked: the runtime runs no etcd
// container) and verify says so; a hand repair (apiserver manifests parked,
// etcdutl snapshot restore with a revision bump, manifests back) makes
// verify pass again; down leaves no process, mount or cgroup.
func TestStaticPodLab(t *testing.T) {
	l := upLab(t, Options{Members: 3, Version: "3.5", Keys: 300, Layout: LayoutStaticPod})
	ctx := context.Background()
	mustVerify(t, l)
	if err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	kfp, err := l.KubeFingerprint()
	if err != nil || kfp == nil || kfp.ConfigMaps != ConfigMapCount {
		t.Fatalf("kube fingerprint = %+v, %v; want %d ConfigMaps", kfp, err, ConfigMapCount)
	}

	// the inventory describes the layout and the control plane
	b, err := os.ReadFile(l.InventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	var inv struct {
		Cluster struct {
			Layout     map[string]string `yaml:"layout"`
			Kubernetes struct {
				ControlPlane string   `yaml:"controlPlane"`
				Hosts        []string `yaml:"hosts"`
				APIServer    struct {
					Port          int
					CA, Cert, Key string
				} `yaml:"apiServer"`
			} `yaml:"kubernetes"`
		} `yaml:"cluster"`
	}
	if err := yaml.Unmarshal(b, &inv); err != nil {
		t.Fatalf("inventory: %v\n%s", err, b)
	}
	if lo := inv.Cluster.Layout; lo["service"] != "static-pod" || lo["manifest"] != EtcdManifest || lo["dataDir"] != DataDir || lo["owner"] != "" {
		t.Errorf("inventory layout = %v", lo)
	}
	k := inv.Cluster.Kubernetes
	if k.ControlPlane != "static-pod" || strings.Join(k.Hosts, ",") != "h1,h2,h3" || k.APIServer.Port != APIServerPort || k.APIServer.Cert != l.AdminCertPath() {
		t.Errorf("inventory kubernetes = %+v", k)
	}

	// kubeadm's files, the runtime's view, the kubelet's cgroups
	for _, h := range []string{"h1", "h2", "h3"} {
		out := sshOut(t, l, h, "ls "+ManifestDir+" "+KubeEtcdPKIDir+"; crictl ps --name '^(etcd|kube-apiserver)$' -o json | grep -c '\"state\": \"CONTAINER_RUNNING\"'; systemctl is-active containerd kubelet")
		for _, w := range []string{"etcd.yaml", "kube-apiserver.yaml", "server.crt", "peer.key", "\n2\n", "active"} {
			if !strings.Contains(out, w) {
				t.Errorf("%s: want %q in:\n%s", h, w, out)
			}
		}
	}
	if v1 := cgroupV1Controllers(); len(v1) > 0 {
		if _, err := os.Stat(filepath.Join(v1[0], "etcdlab-h1", "kubepods")); err != nil {
			t.Errorf("the kubelet's pod cgroups are not under its cgroupRoot: %v", err)
		}
	}
	st := l.Status(ctx)
	if st.Layout != LayoutStaticPod || len(st.Problems) > 0 {
		t.Errorf("status: layout %q, problems %v", st.Layout, st.Problems)
	}
	for _, h := range st.Hosts {
		if h.Etcd != "pod-running" || h.APIServer != "ready" || !h.DataDir {
			t.Errorf("status of %s: etcd %q, api server %q, data %v", h.Name, h.Etcd, h.APIServer, h.DataDir)
		}
		t.Logf("memory of %s (kubelet, containerd, shims, etcd, kube-apiserver, sshd): %.0f MiB PSS", h.Name, float64(h.Memory)/(1<<20))
	}

	// the kubelet is a supervised unit; a restart leaves the pods running
	before := sshOut(t, l, "h1", "crictl ps -q --name '^etcd$'")
	sshOut(t, l, "h1", "systemctl restart kubelet && systemctl is-active kubelet")
	if after := sshOut(t, l, "h1", "crictl ps -q --name '^etcd$'"); after != before || after == "" {
		t.Errorf("etcd container %q before the kubelet's restart, %q after", before, after)
	}

	// total-loss: manifests parked, no etcd container, data gone
	if err := l.Break(ctx, "total-loss"); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		if out := sshOut(t, l, h, "crictl ps -q --name '^etcd$'; ls "+ParkedDir+"; test -e "+DataDir+" || echo nodata"); out != "etcd.yaml\nnodata" {
			t.Errorf("%s after total-loss: %q", h, out)
		}
	}
	verifyFails(t, l, "does not answer", "API server on h1", "ConfigMaps not checked")

	// a hand repair, as the runbook does it
	snap := readSnapshot(t, l)
	t0 := time.Now()
	ic := l.initialCluster()
	// the API servers first, all at once (each stops within its 30 s grace
	// period: without etcd it does not finish its requests sooner)
	for _, mh := range l.memberHosts() {
		sshOut(t, l, mh.h.Name, "mv "+APIServerManifest+" "+ParkedDir+"/")
	}
	for _, mh := range l.memberHosts() {
		h := mh.h.Name
		if err := l.WriteFile(ctx, h, "/root/lab.db", snap, 0o600); err != nil {
			t.Fatal(err)
		}
		sshOut(t, l, h, "until ! crictl ps -q --name '^kube-apiserver$' | grep -q .; do sleep 0.2; done")
		sshOut(t, l, h, fmt.Sprintf("etcdutl snapshot restore /root/lab.db --name %s --initial-cluster %s --initial-cluster-token %s --initial-advertise-peer-urls %s --data-dir %s --bump-revision 1000000 --mark-compacted >/dev/null",
			mh.m.Name, ic, l.st.Token, l.peerURL(mh.h.Address), DataDir))
	}
	for _, mh := range l.memberHosts() {
		sshOut(t, l, mh.h.Name, "mv "+ParkedDir+"/etcd.yaml "+EtcdManifest)
	}
	if err := l.WaitHealthy(ctx, 2*time.Minute); err != nil {
		t.Fatalf("etcd after the restore: %v%s", err, l.podDiag(ctx, l.kubeHosts(), "etcd"))
	}
	for _, mh := range l.memberHosts() {
		sshOut(t, l, mh.h.Name, "mv "+ParkedDir+"/kube-apiserver.yaml "+APIServerManifest)
	}
	testutil.Poll(t, "every API server ready after the restore", 500*time.Millisecond, func() bool {
		return len(l.readyzProblems(ctx)) == 0
	})
	if err := l.Verify(ctx); err != nil {
		t.Fatalf("verify after the hand repair: %v", err)
	}
	t.Logf("hand repair (restore with --bump-revision, manifests back, API servers ready) in %.1fs", time.Since(t0).Seconds())
}
