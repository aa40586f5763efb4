package lab

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// The static-pod layout (Options.Layout = LayoutStaticPod): every host is a
// kubeadm-style control-plane node.  A real kubelet (standalone: no API
// server of its own, staticPodPath /etc/kubernetes/manifests) runs etcd and
// kube-apiserver as static pods with hostNetwork, on containerd and runc
// from Debian's packages.  The names below are what `make kube-bins`
// (lab/lab.mk: KUBE_VERSION, CRICTL_VERSION, PAUSE_IMAGE, the image rules)
// builds into lab/bin; keep them in sync.
const (
	LayoutSystemd   = "systemd"
	LayoutStaticPod = "static-pod"

	KubeVersion   = "v1.35.4"
	CrictlVersion = "v1.34.0"
	PauseImage    = "registry.k8s.io/pause:3.10.1"
	// APIServerImage is registry.k8s.io/kube-apiserver:KubeVersion.
	APIServerImage = "registry.k8s.io/kube-apiserver:" + KubeVersion

	// under the lab's bin dir (lab/bin):
	kubeBinSubdir = "k8s/" + KubeVersion // kubelet, kube-apiserver, crictl
	imagesSubdir  = "images"             // etcd-<x.y.z>.tar, kube-apiserver-<KubeVersion>.tar, pause.tar

	// on the hosts, as kubeadm lays them out
	ManifestDir       = "/etc/kubernetes/manifests"
	EtcdManifest      = ManifestDir + "/etcd.yaml"
	APIServerManifest = ManifestDir + "/kube-apiserver.yaml"
	// ParkedDir is where a stopped static pod's manifest is kept: the
	// stop-service step of etcd-rescue parks it there (steps/service.go,
	// parkedManifest), and so do the lab's breaks, so a plan finds it.
	ParkedDir      = "/etc/kubernetes/etcd-rescue-parked"
	KubePKIDir     = "/etc/kubernetes/pki"
	KubeEtcdPKIDir = KubePKIDir + "/etcd"
	APIServerPort  = 6443

	// ConfigMapNamespace holds the ConfigMaps `lab up` creates through the
	// API server (ConfigMapCount of them, label app=etcd-rescue-lab).
	ConfigMapNamespace = "etcd-rescue-lab"
	ConfigMapCount     = 200
	configMapLabel     = "app=etcd-rescue-lab"

	// serviceCIDR of the API servers (its first address is in their certificate)
	serviceCIDR = "10.96.0.0/12"
	serviceIP   = "10.96.0.1"
)

// EtcdImage is the image of etcd version v (3.5.35 or v3.5.35), named as
// kubeadm names it: registry.k8s.io/etcd:3.5.35-0.
func EtcdImage(v string) string { return "registry.k8s.io/etcd:" + strings.TrimPrefix(v, "v") + "-0" }

// KubeBinDir is where the static-pod layout's kubelet, kube-apiserver and
// crictl are, under the lab's bin dir.
func KubeBinDir(binDir string) string { return filepath.Join(binDir, kubeBinSubdir) }

// KubeImageTars are the image tarballs the static-pod layout imports on
// every host for etcd version v, under the lab's bin dir.
func KubeImageTars(binDir, v string) []string {
	d := filepath.Join(binDir, imagesSubdir)
	return []string{
		filepath.Join(d, "pause.tar"),
		filepath.Join(d, "etcd-"+strings.TrimPrefix(v, "v")+".tar"),
		filepath.Join(d, "kube-apiserver-"+KubeVersion+".tar"),
	}
}

// StaticPod reports whether the lab runs etcd as a kubelet static pod.
func (l *Lab) StaticPod() bool { return l.st.Layout == LayoutStaticPod }

// Layout is the lab's etcd layout: LayoutSystemd or LayoutStaticPod.
func (l *Lab) Layout() string {
	if l.st.Layout == "" {
		return LayoutSystemd
	}
	return l.st.Layout
}

// kubeMissing lists what the static-pod layout needs besides the light
// mode's prerequisites.
func kubeMissing(binDir, version string) []Missing {
	var miss []Missing
	for _, p := range []struct{ prog, pkg string }{
		{"containerd", "containerd"}, {"ctr", "containerd"}, {"containerd-shim-runc-v2", "containerd"}, {"runc", "runc"},
	} {
		if _, ok := lookPath(p.prog); !ok {
			miss = append(miss, aptMissing(p.prog+" (the static-pod layout's container runtime)", p.pkg))
		}
	}
	files := []string{
		filepath.Join(KubeBinDir(binDir), "kubelet"),
		filepath.Join(KubeBinDir(binDir), "kube-apiserver"),
		filepath.Join(KubeBinDir(binDir), "crictl"),
	}
	files = append(files, KubeImageTars(binDir, version)...)
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			miss = append(miss, Missing{What: f + " (static-pod layout)", Install: "make kube-bins"})
		}
	}
	return miss
}

// hostInitKube runs in a light host's mount namespace after hostInit's
// mounts ($1 = host dir): containerd's and the kubelet's state in per-host
// directories of the state dir, not in the /var/lib overlay (containerd's
// overlayfs snapshotter cannot put its layers on an overlay), and the
// global sysctls the kubelet insists on (it would set them on this
// machine: kernel.panic=10, kernel.panic_on_oops=1, vm.overcommit_memory=1)
// shown to it with the values it wants, from files of the host.
//
// ip netns exec mounts a fresh sysfs for the namespace, without the cgroup
// file systems under /sys/fs/cgroup (runc: "no cgroup mount found in
// mountinfo"): they are mounted again as this machine has them
// ($H/cgroup-mounts, written from the lab's own mountinfo).
const hostInitKube = `
if ! grep -q '^/sys/fs/cgroup ' "$H/cgroup-mounts"; then
  mount -t tmpfs -o mode=0755,nosuid,nodev,noexec cgroup /sys/fs/cgroup
fi
while read -r mp fs o; do
  mkdir -p "$mp"
  if [ "$o" = - ]; then mount -t "$fs" cgroup "$mp"; else mount -t "$fs" -o "$o" cgroup "$mp"; fi
done < "$H/cgroup-mounts"
mkdir -p /var/lib/containerd /var/lib/kubelet
mount --bind "$H/containerd" /var/lib/containerd
mount --bind "$H/kubelet" /var/lib/kubelet
for f in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
  mount --bind "$H/sysctl/$f" "/proc/sys/$(echo "$f" | tr . /)"
done
mkdir -p /run/containerd
`

// cgroupMounts lists this machine's cgroup file systems under /sys/fs/cgroup,
// one "mountpoint fstype options" a line (options without rw/ro, "-" for
// none), for hostInitKube.
func cgroupMounts() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+3 >= len(f)+1 || len(f) < sep+4 {
			continue
		}
		mp, fs, so := f[4], f[sep+1], f[sep+3]
		if (fs != "cgroup" && fs != "cgroup2") || (mp != "/sys/fs/cgroup" && !strings.HasPrefix(mp, "/sys/fs/cgroup/")) {
			continue
		}
		var opts []string
		for _, o := range strings.Split(so, ",") {
			if o != "rw" && o != "ro" && o != "" {
				opts = append(opts, o)
			}
		}
		o := strings.Join(opts, ",")
		if o == "" {
			o = "-"
		}
		fmt.Fprintf(&out, "%s %s %s\n", mp, fs, o)
	}
	if out.Len() == 0 {
		return "", errors.New("no cgroup file system under /sys/fs/cgroup")
	}
	return out.String(), nil
}

// kubeletSysctls are the values the kubelet wants (setupKernelTunables).
var kubeletSysctls = map[string]string{
	"vm.overcommit_memory":      "1",
	"vm.panic_on_oom":           "0",
	"kernel.panic":              "10",
	"kernel.panic_on_oops":      "1",
	"kernel.keys.root_maxkeys":  "1000000",
	"kernel.keys.root_maxbytes": "25000000",
}

// kubeSnapshotter is containerd's snapshotter: overlayfs, unless the state
// dir is itself on an overlay (then native, which copies).
func kubeSnapshotter(dir string) string {
	out, err := exec0("stat", "-fc", "%T", dir)
	if err == nil && strings.TrimSpace(out) == "overlayfs" {
		return "native"
	}
	return "overlayfs"
}

func exec0(name string, args ...string) (string, error) {
	return run(context.Background(), name, args...)
}

// cgroupV1Controllers are the mounted cgroup v1 controller hierarchies
// (/sys/fs/cgroup/memory...); none on a pure cgroup v2 machine.
func cgroupV1Controllers() []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return nil
	}
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "systemd" || e.Name() == "unified" {
			continue
		}
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// kubeCgroupRoots are every cgroup hierarchy the kubelet and runc of a host
// make cgroups in (under the host's cgroupRoot /etcdlab-hN).
func kubeCgroupRoots() []string {
	return append(cgroupRoots(), cgroupV1Controllers()...)
}

// makeKubeCgroupRoot creates the kubelet's cgroupRoot /etcdlab-hN in every
// hierarchy (the kubelet refuses a root that does not exist); cpuset needs
// its cpus and mems before anything can join it.
func makeKubeCgroupRoot(h *Host) error {
	for _, r := range kubeCgroupRoots() {
		cg := filepath.Join(r, cgroupName(h))
		if err := os.MkdirAll(cg, 0o755); err != nil {
			return fmt.Errorf("cgroup of %s: %w", h.Name, err)
		}
		if filepath.Base(r) == "cpuset" || strings.Contains(filepath.Base(r), "cpuset") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(r, f))
				if err != nil {
					continue
				}
				if err := os.WriteFile(filepath.Join(cg, f), bytes.TrimSpace(b), 0o644); err != nil {
					return fmt.Errorf("cgroup of %s: %s: %w", h.Name, f, err)
				}
			}
		}
	}
	return nil
}

// kubeFiles are the files a static-pod host gets on its disk (paths relative
// to the host dir, as lightDriver.create writes them).
func (l *Lab) kubeFiles(h *Host) []struct {
	path, data string
	mode       os.FileMode
} {
	snap := kubeSnapshotter(l.dir)
	containerdConf := fmt.Sprintf(`# etcd-rescue lab host %s: containerd for the kubelet (CRI), state per host
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  disable_apparmor = true
  enable_selinux = false
  # the pods' oom_score_adj no lower than containerd's: this machine refuses
  # to lower it (runc: "failed to update /proc/self/oom_score_adj")
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = %q
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
`, h.Name, PauseImage, snap)
	kubeletConf := fmt.Sprintf(`# etcd-rescue lab host %s: a standalone kubelet (no API server of its own)
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: %s
fileCheckFrequency: 2s
syncFrequency: 10s
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /%s
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
enableServer: false
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", nodefs.inodesFree: "1%%", imagefs.available: "1%%"}
serializeImagePulls: false
`, h.Name, ManifestDir, cgroupName(h))
	files := []struct {
		path, data string
		mode       os.FileMode
	}{
		{"etc.upper/containerd/config.toml", containerdConf, 0o644},
		{"etc.upper/crictl.yaml", "runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\ntimeout: 10\n", 0o644},
		{"etc.upper/systemd/system/containerd.service", "[Unit]\nDescription=containerd container runtime (etcd-rescue lab)\n[Service]\nExecStart=/usr/bin/containerd --config /etc/containerd/config.toml\nRestart=always\n", 0o644},
		{"etc.upper/systemd/system/kubelet.service", "[Unit]\nDescription=kubelet (etcd-rescue lab, standalone)\nAfter=containerd.service\n[Service]\nExecStart=/usr/local/sbin/kubelet --config=/var/lib/kubelet/config.yaml --v=1\nRestart=always\n", 0o644},
		{"kubelet/config.yaml", kubeletConf, 0o644},
	}
	for k, v := range kubeletSysctls {
		files = append(files, struct {
			path, data string
			mode       os.FileMode
		}{"sysctl/" + k, v + "\n", 0o644})
	}
	return files
}

// kubeDirs are the extra directories of a static-pod host's disk.
var kubeDirs = []string{"containerd", "kubelet", "sysctl", "etc.upper/containerd", "etc.upper/kubernetes/manifests", "etc.upper/systemd/system/multi-user.target.wants"}

// kubeBinaries are linked into a static-pod host's /usr/local/sbin.
var kubeBinaries = []string{"kubelet", "crictl"}

// setupKube makes host h a control-plane node: containerd and the kubelet
// enabled and running (the systemctl shim supervises them), the images
// imported into its containerd, /etc/kubernetes/pki filled.  The manifests
// are written by the caller.
func (l *Lab) setupKube(ctx context.Context, h *Host) error {
	t := time.Now()
	if err := makeKubeCgroupRoot(h); err != nil {
		return err
	}
	const start = `set -e
systemctl enable --quiet containerd
systemctl enable --quiet kubelet
systemctl start containerd
for i in $(seq 100); do ctr --address /run/containerd/containerd.sock version >/dev/null 2>&1 && exit 0; sleep 0.1; done
echo "containerd does not answer on /run/containerd/containerd.sock" >&2; tail -20 /var/log/containerd.log >&2; exit 1`
	if out, err := l.Run(ctx, h.Name, start, nil); err != nil {
		return withOutput(fmt.Errorf("containerd on %s: %w", h.Name, err), out)
	}
	snap := kubeSnapshotter(l.dir)
	for _, tar := range KubeImageTars(l.st.BinDir, l.st.Version) {
		f, err := os.Open(tar)
		if err != nil {
			return fmt.Errorf("images for %s: %w", h.Name, err)
		}
		out, err := l.Run(ctx, h.Name, "ctr --address /run/containerd/containerd.sock -n k8s.io images import --snapshotter "+snap+" -", f)
		f.Close()
		if err != nil {
			return withOutput(fmt.Errorf("import %s on %s: %w", filepath.Base(tar), h.Name, err), out)
		}
	}
	if out, err := l.Run(ctx, h.Name, "systemctl start kubelet", nil); err != nil {
		return withOutput(fmt.Errorf("kubelet on %s: %w", h.Name, err), out)
	}
	l.logf("%s: containerd and kubelet %s running, images imported (%s snapshotter) in %.1fs", h.Name, KubeVersion, snap, time.Since(t).Seconds())
	return nil
}

// etcdManifest is kubeadm's etcd static pod for member name at addr.  With
// member=false (a blank replacement host) it has only the TLS and data
// flags: set-config adds the member's settings after the "- etcd" line.
func (l *Lab) etcdManifest(name, addr, initialCluster, clusterState, token string, member bool) string {
	flags := []string{
		"--cert-file=" + KubeEtcdPKIDir + "/server.crt",
		"--client-cert-auth=true",
		"--data-dir=" + DataDir,
		"--key-file=" + KubeEtcdPKIDir + "/server.key",
		"--listen-metrics-urls=http://127.0.0.1:2381",
		"--peer-cert-file=" + KubeEtcdPKIDir + "/peer.crt",
		"--peer-client-cert-auth=true",
		"--peer-key-file=" + KubeEtcdPKIDir + "/peer.key",
		"--peer-trusted-ca-file=" + KubeEtcdPKIDir + "/ca.crt",
		"--snapshot-count=10000",
		"--trusted-ca-file=" + KubeEtcdPKIDir + "/ca.crt",
	}
	if member {
		flags = append(flags,
			"--advertise-client-urls="+l.clientURL(addr),
			"--initial-advertise-peer-urls="+l.peerURL(addr),
			"--initial-cluster="+initialCluster,
			"--initial-cluster-state="+clusterState,
			"--initial-cluster-token="+token,
			"--listen-client-urls=https://127.0.0.1:2379,"+l.clientURL(addr),
			"--listen-peer-urls="+l.peerURL(addr),
			"--name="+name,
		)
	}
	sort.Strings(flags)
	var b strings.Builder
	fmt.Fprintf(&b, `# %s: written by etcd-rescue lab (kubeadm's layout)
apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
  labels: {component: etcd, tier: control-plane}
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  containers:
  - name: etcd
    image: %s
    imagePullPolicy: IfNotPresent
    command:
    - etcd
`, EtcdManifest, EtcdImage(l.st.Version))
	for _, f := range flags {
		fmt.Fprintf(&b, "    - %s\n", f)
	}
	fmt.Fprintf(&b, `    resources:
      requests: {cpu: 100m, memory: 100Mi}
    volumeMounts:
    - {name: etcd-data, mountPath: %[1]s}
    - {name: etcd-certs, mountPath: %[2]s}
  volumes:
  - name: etcd-data
    hostPath: {path: %[1]s, type: DirectoryOrCreate}
  - name: etcd-certs
    hostPath: {path: %[2]s, type: DirectoryOrCreate}
`, DataDir, KubeEtcdPKIDir)
	return b.String()
}

// apiServerManifest is kubeadm's kube-apiserver static pod on addr: it
// talks to its local etcd member over TLS, as kubeadm sets it up.
func apiServerManifest(addr string) string {
	flags := []string{
		"--advertise-address=" + addr,
		"--allow-privileged=true",
		"--authorization-mode=Node,RBAC",
		"--client-ca-file=" + KubePKIDir + "/ca.crt",
		"--enable-admission-plugins=NodeRestriction",
		"--enable-bootstrap-token-auth=true",
		"--etcd-cafile=" + KubeEtcdPKIDir + "/ca.crt",
		"--etcd-certfile=" + KubePKIDir + "/apiserver-etcd-client.crt",
		"--etcd-keyfile=" + KubePKIDir + "/apiserver-etcd-client.key",
		"--etcd-servers=https://127.0.0.1:2379",
		fmt.Sprintf("--secure-port=%d", APIServerPort),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + KubePKIDir + "/sa.pub",
		"--service-account-signing-key-file=" + KubePKIDir + "/sa.key",
		"--service-cluster-ip-range=" + serviceCIDR,
		"--tls-cert-file=" + KubePKIDir + "/apiserver.crt",
		"--tls-private-key-file=" + KubePKIDir + "/apiserver.key",
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# %s: written by etcd-rescue lab (kubeadm's layout)
apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
  labels: {component: kube-apiserver, tier: control-plane}
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  containers:
  - name: kube-apiserver
    image: %s
    imagePullPolicy: IfNotPresent
    command:
    - kube-apiserver
`, APIServerManifest, APIServerImage)
	for _, f := range flags {
		fmt.Fprintf(&b, "    - %s\n", f)
	}
	fmt.Fprintf(&b, `    resources:
      requests: {cpu: 250m}
    volumeMounts:
    - {name: k8s-certs, mountPath: %[1]s, readOnly: true}
  volumes:
  - name: k8s-certs
    hostPath: {path: %[1]s, type: DirectoryOrCreate}
`, KubePKIDir)
	return b.String()
}

// Operator-side files of the static-pod layout, in PKIDir: the admin
// client certificate (CN admin, O system:masters) for the API servers,
// the client certificate every kube-apiserver uses for etcd, and the
// service account key pair the API servers share.
func (l *Lab) AdminCertPath() string   { return filepath.Join(l.PKIDir(), "admin.crt") }
func (l *Lab) AdminKeyPath() string    { return filepath.Join(l.PKIDir(), "admin.key") }
func (l *Lab) apiEtcdCertPath() string { return filepath.Join(l.PKIDir(), "apiserver-etcd-client.crt") }
func (l *Lab) apiEtcdKeyPath() string  { return filepath.Join(l.PKIDir(), "apiserver-etcd-client.key") }
func (l *Lab) saKeyPath() string       { return filepath.Join(l.PKIDir(), "sa.key") }
func (l *Lab) saPubPath() string       { return filepath.Join(l.PKIDir(), "sa.pub") }
func (l *Lab) apiServerCertPath(host string) string {
	return filepath.Join(l.PKIDir(), "apiserver-"+host+".crt")
}
func (l *Lab) apiServerKeyPath(host string) string {
	return filepath.Join(l.PKIDir(), "apiserver-"+host+".key")
}

// ensureKubePKI makes the operator-side files of the static-pod layout (kept
// if they exist).
func (l *Lab) ensureKubePKI() error {
	if _, err := os.Stat(l.AdminKeyPath()); err == nil {
		return nil
	}
	ca, err := l.loadCA()
	if err != nil {
		return err
	}
	ecrt, ekey, err := ca.issueSubject("kube-apiserver-etcd-client", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
	if err != nil {
		return fmt.Errorf("pki: apiserver-etcd-client: %w", err)
	}
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: sa key: %w", err)
	}
	sder, err := x509.MarshalECPrivateKey(sa)
	if err != nil {
		return fmt.Errorf("pki: sa key: %w", err)
	}
	pder, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return fmt.Errorf("pki: sa key: %w", err)
	}
	acrt, akey, err := ca.issueSubject("admin", []string{"system:masters"}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
	if err != nil {
		return fmt.Errorf("pki: admin: %w", err)
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{l.apiEtcdCertPath(), ecrt, 0o644},
		{l.apiEtcdKeyPath(), ekey, 0o600},
		{l.saKeyPath(), pemBlock("EC PRIVATE KEY", sder), 0o600},
		{l.saPubPath(), pemBlock("PUBLIC KEY", pder), 0o644},
		{l.AdminCertPath(), acrt, 0o644},
		{l.AdminKeyPath(), akey, 0o600}, // last: its presence means the set is complete
	} {
		if err := writeFileAtomic(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// issueAPIServerCert makes host h's kube-apiserver serving certificate, valid
// for its address, loopback, the first service address and the names
// kubeadm puts in it.
func (l *Lab) issueAPIServerCert(h *Host) error {
	l.mu.Lock()
	name, addr := h.Name, h.Address
	l.mu.Unlock()
	ca, err := l.loadCA()
	if err != nil {
		return err
	}
	ips := []net.IP{net.ParseIP(addr).To4(), net.ParseIP("127.0.0.1").To4(), net.ParseIP(serviceIP).To4()}
	dns := []string{name, "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	crt, key, err := ca.issueSubject("kube-apiserver", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, ips, dns)
	if err != nil {
		return fmt.Errorf("apiserver certificate of %s: %w", name, err)
	}
	if err := writeFileAtomic(l.apiServerKeyPath(name), key, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(l.apiServerCertPath(name), crt, 0o644)
}

// installKubePKI fills /etc/kubernetes/pki on host h as kubeadm does (one
// lab CA for both the cluster and etcd): ca.crt/key, apiserver.crt/key,
// apiserver-etcd-client.crt/key, sa.key/pub, and etcd/ca.crt/key; with
// member also etcd/server.crt/key and etcd/peer.crt/key (the host's member
// certificate, which serves both ports).
func (l *Lab) installKubePKI(ctx context.Context, h *Host, member bool) error {
	type file struct{ src, path, mode string }
	files := []file{
		{l.CACertPath(), KubePKIDir + "/ca.crt", "0644"},
		{l.CAKeyPath(), KubePKIDir + "/ca.key", "0600"},
		{l.apiServerCertPath(h.Name), KubePKIDir + "/apiserver.crt", "0644"},
		{l.apiServerKeyPath(h.Name), KubePKIDir + "/apiserver.key", "0600"},
		{l.apiEtcdCertPath(), KubePKIDir + "/apiserver-etcd-client.crt", "0644"},
		{l.apiEtcdKeyPath(), KubePKIDir + "/apiserver-etcd-client.key", "0600"},
		{l.saKeyPath(), KubePKIDir + "/sa.key", "0600"},
		{l.saPubPath(), KubePKIDir + "/sa.pub", "0644"},
		{l.CACertPath(), KubeEtcdPKIDir + "/ca.crt", "0644"},
		{l.CAKeyPath(), KubeEtcdPKIDir + "/ca.key", "0600"},
	}
	if member {
		files = append(files,
			file{l.MemberCertPath(h.Name), KubeEtcdPKIDir + "/server.crt", "0644"},
			file{l.MemberKeyPath(h.Name), KubeEtcdPKIDir + "/server.key", "0600"},
			file{l.MemberCertPath(h.Name), KubeEtcdPKIDir + "/peer.crt", "0644"},
			file{l.MemberKeyPath(h.Name), KubeEtcdPKIDir + "/peer.key", "0600"},
		)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "set -e\ninstall -d -m 0755 %s %s %s %s\numask 077\n", KubePKIDir, KubeEtcdPKIDir, ManifestDir, ParkedDir)
	for _, f := range files {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return fmt.Errorf("install kubernetes pki on %s: %w", h.Name, err)
		}
		fmt.Fprintf(&b, "cat > %s.tmp <<'LABPKI'\n%sLABPKI\nchmod %s %s.tmp\nmv -f %s.tmp %s\n", f.path, data, f.mode, f.path, f.path, f.path)
	}
	if out, err := l.Run(ctx, h.Name, b.String(), nil); err != nil {
		return withOutput(fmt.Errorf("install kubernetes pki on %s: %w", h.Name, err), out)
	}
	return nil
}

// provisionKube: the static-pod part of provisioning host h.  kubeadm runs
// etcd as root: /var/lib/etcd is root's (the inventory's owner is "").
func (l *Lab) provisionKube(ctx context.Context, h *Host, memberCert bool) error {
	if err := l.issueAPIServerCert(h); err != nil {
		return err
	}
	if err := l.installKubePKI(ctx, h, memberCert); err != nil {
		return err
	}
	if out, err := l.Run(ctx, h.Name, "chown root:root "+DataDir+" && chmod 0700 "+DataDir, nil); err != nil {
		return withOutput(fmt.Errorf("provision %s: %w", h.Name, err), out)
	}
	return l.setupKube(ctx, h)
}

// startStaticCluster writes every member's etcd manifest (the kubelet starts
// the pods within fileCheckFrequency) and waits for a healthy cluster.
func (l *Lab) startStaticCluster(ctx context.Context) error {
	ic := l.initialCluster()
	var hosts []*Host
	for _, mh := range l.memberHosts() {
		m := l.etcdManifest(mh.m.Name, mh.h.Address, ic, "new", l.st.SeedToken, true)
		if err := l.WriteFile(ctx, mh.h.Name, EtcdManifest, []byte(m), 0o600); err != nil {
			return err
		}
		hosts = append(hosts, mh.h)
	}
	err := l.waitHealthy(ctx, 3*time.Minute)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w%s", err, l.podDiag(ctx, hosts, "etcd"))
	}
	return err
}

// startAPIServers writes the kube-apiserver manifest on every host and
// waits until every API server answers /readyz with 200.
func (l *Lab) startAPIServers(ctx context.Context) error {
	hosts := l.kubeHosts()
	for _, h := range hosts {
		if err := l.WriteFile(ctx, h.Name, APIServerManifest, []byte(apiServerManifest(h.Address)), 0o600); err != nil {
			return err
		}
	}
	probs := untilNoProblems(ctx, 3*time.Minute, 500*time.Millisecond, l.readyzProblems)
	if len(probs) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("API servers not ready after 3m: %s%s", strings.Join(probs, "; "), l.podDiag(ctx, hosts, "kube-apiserver"))
}

// podDiag is the state of a static pod's container on hosts and the tail
// of its log, for error messages.
func (l *Lab) podDiag(ctx context.Context, hosts []*Host, container string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	var b strings.Builder
	for _, h := range hosts {
		cmd := fmt.Sprintf(`crictl ps -a --name '^%[1]s$' 2>&1 | tail -n +2 | head -3; id=$(crictl ps -a -q --name '^%[1]s$' 2>/dev/null | head -1); [ -n "$id" ] && crictl logs --tail 6 "$id" 2>&1 | cut -c1-240; [ -n "$id" ] || tail -n 6 /var/log/kubelet.log | cut -c1-300`, container)
		out, _ := l.Run(ctx, h.Name, cmd, nil)
		fmt.Fprintf(&b, "\n--- %s on %s (%s): %s", container, h.Name, h.Address, strings.TrimSpace(out))
	}
	return b.String()
}

// kubeHosts are the control-plane hosts: the hosts of the members.
func (l *Lab) kubeHosts() []*Host {
	var out []*Host
	for _, mh := range l.memberHosts() {
		if mh.h != nil {
			out = append(out, mh.h)
		}
	}
	return out
}

// stopEtcdCmd stops etcd on a host of the lab's layout: systemctl stop, or
// for a static pod its manifest parked in ParkedDir (as stop-service does)
// and a wait until the runtime runs no etcd container any more.
func (l *Lab) stopEtcdCmd() string {
	if !l.StaticPod() {
		return "systemctl stop etcd"
	}
	// no exit 0 here: the callers append more commands with &&
	return fmt.Sprintf(`mkdir -p %[1]s && if [ -e %[2]s ]; then mv -f %[2]s %[1]s/etcd.yaml; fi && `+
		`{ i=0; while crictl ps -q --name '^etcd$' | grep -q .; do i=$((i+1)); if [ $i -ge 1200 ]; then echo "the etcd container still runs 120 s after its manifest was parked" >&2; exit 1; fi; sleep 0.1; done; }`, ParkedDir, EtcdManifest)
}

// APIClient is an HTTPS client for the lab's API servers: the lab's CA and
// the admin certificate (CN admin, O system:masters).
func (l *Lab) APIClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	b, err := os.ReadFile(l.CACertPath())
	if err != nil {
		return nil, fmt.Errorf("api client: %w", err)
	}
	pool.AppendCertsFromPEM(b)
	pair, err := tls.LoadX509KeyPair(l.AdminCertPath(), l.AdminKeyPath())
	if err != nil {
		return nil, fmt.Errorf("api client: %w", err)
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 16,
	}
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}, nil
}

// APIServerURL is the base URL of the API server on host address addr.
func APIServerURL(addr string) string { return fmt.Sprintf("https://%s:%d", addr, APIServerPort) }

// apiDo sends a request with a JSON body (nil: none) and decodes a JSON
// answer into out (nil: ignored); it returns the status code.
func apiDo(ctx context.Context, c *http.Client, method, url string, body, out any) (int, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		s := strings.TrimSpace(string(b))
		if len(s) > 300 {
			s = s[:300] + "..."
		}
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, s)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode: %w", method, url, err)
		}
	}
	return resp.StatusCode, nil
}

// readyzProblems asks /readyz of every control-plane host's API server.
func (l *Lab) readyzProblems(ctx context.Context) []string {
	c, err := l.APIClient()
	if err != nil {
		return []string{err.Error()}
	}
	defer c.CloseIdleConnections()
	hosts := l.kubeHosts()
	probs := make([]string, len(hosts))
	_ = parallel(hosts, func(h *Host) error {
		i := 0
		for hosts[i] != h {
			i++
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if code, err := apiDo(rctx, c, http.MethodGet, APIServerURL(h.Address)+"/readyz", nil, nil); err != nil {
			if code == 0 {
				probs[i] = fmt.Sprintf("API server on %s (%s) does not answer /readyz: %s", h.Name, h.Address, shortErr(err))
			} else {
				probs[i] = fmt.Sprintf("API server on %s (%s): /readyz answers %d", h.Name, h.Address, code)
			}
		}
		return nil
	})
	var out []string
	for _, p := range probs {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ConfigMapName is the name of the i-th lab ConfigMap.
func ConfigMapName(i int) string { return fmt.Sprintf("lab-cm-%03d", i) }

// configMapData is the deterministic data of the i-th lab ConfigMap.
func configMapData(i int) map[string]string {
	return map[string]string{"index": fmt.Sprint(i), "value": string(Value(1_000_000 + i))}
}

// KubeFingerprint is what Up records of the ConfigMaps it created through
// the API server (<state>/kube-fingerprint.json).
type KubeFingerprint struct {
	Namespace  string    `json:"namespace"`
	ConfigMaps int       `json:"configMaps"`
	SHA256     string    `json:"sha256"` // over name NUL key=value... LF of every ConfigMap, by name
	Taken      time.Time `json:"taken"`
}

// KubeFingerprintPath is where Up records the ConfigMaps' fingerprint.
func (l *Lab) KubeFingerprintPath() string { return filepath.Join(l.dir, "kube-fingerprint.json") }

// KubeFingerprint reads the recorded fingerprint (nil, nil without one).
func (l *Lab) KubeFingerprint() (*KubeFingerprint, error) {
	return readRecord[KubeFingerprint](l.KubeFingerprintPath(), "kube fingerprint")
}

type configMap struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Data map[string]string `json:"data"`
}

// createConfigMaps creates the namespace and ConfigMapCount ConfigMaps
// through the first API server and records their fingerprint, read back
// through the API.
func (l *Lab) createConfigMaps(ctx context.Context) (*KubeFingerprint, error) {
	hosts := l.kubeHosts()
	if len(hosts) == 0 {
		return nil, errors.New("no control-plane host")
	}
	c, err := l.APIClient()
	if err != nil {
		return nil, err
	}
	defer c.CloseIdleConnections()
	base := APIServerURL(hosts[0].Address)
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ConfigMapNamespace}}
	if code, err := apiDo(ctx, c, http.MethodPost, base+"/api/v1/namespaces", ns, nil); err != nil && code != http.StatusConflict {
		return nil, fmt.Errorf("create namespace %s: %w", ConfigMapNamespace, err)
	}
	var next int
	var mu sync.Mutex
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= ConfigMapCount {
					return
				}
				cm := map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
					"metadata": map[string]any{"name": ConfigMapName(i), "labels": map[string]string{"app": "etcd-rescue-lab"}},
					"data":     configMapData(i)}
				if _, err := apiDo(ctx, c, http.MethodPost, base+"/api/v1/namespaces/"+ConfigMapNamespace+"/configmaps", cm, nil); err != nil {
					errs[w] = fmt.Errorf("create ConfigMap %s: %w", ConfigMapName(i), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	n, sum, err := listConfigMaps(ctx, c, base)
	if err != nil {
		return nil, err
	}
	if n != ConfigMapCount {
		return nil, fmt.Errorf("created %d ConfigMaps but read back %d", ConfigMapCount, n)
	}
	fp := &KubeFingerprint{Namespace: ConfigMapNamespace, ConfigMaps: n, SHA256: sum, Taken: time.Now().UTC()}
	b, _ := json.MarshalIndent(fp, "", "  ")
	if err := writeFileAtomic(l.KubeFingerprintPath(), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return fp, nil
}

// listConfigMaps lists the lab's ConfigMaps through the API server at base
// and hashes their names and data.
func listConfigMaps(ctx context.Context, c *http.Client, base string) (int, string, error) {
	var list struct {
		Items []configMap `json:"items"`
	}
	url := base + "/api/v1/namespaces/" + ConfigMapNamespace + "/configmaps?labelSelector=" + configMapLabel
	if _, err := apiDo(ctx, c, http.MethodGet, url, nil, &list); err != nil {
		return 0, "", err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Metadata.Name < list.Items[j].Metadata.Name })
	h := sha256.New()
	for _, cm := range list.Items {
		h.Write([]byte(cm.Metadata.Name))
		h.Write([]byte{0})
		for _, k := range sortedKeys(cm.Data) {
			fmt.Fprintf(h, "%s=%s\x00", k, cm.Data[k])
		}
		h.Write([]byte{'\n'})
	}
	return len(list.Items), hex.EncodeToString(h.Sum(nil)), nil
}

// configMapProblems compares the ConfigMaps every API server lists with the
// fingerprint.
func (l *Lab) configMapProblems(ctx context.Context, fp *KubeFingerprint) []string {
	c, err := l.APIClient()
	if err != nil {
		return []string{err.Error()}
	}
	defer c.CloseIdleConnections()
	var probs []string
	for _, h := range l.kubeHosts() {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, sum, err := listConfigMaps(lctx, c, APIServerURL(h.Address))
		cancel()
		switch {
		case err != nil:
			probs = append(probs, fmt.Sprintf("ConfigMaps through the API server on %s: %s", h.Name, shortErr(err)))
		case n != fp.ConfigMaps:
			probs = append(probs, fmt.Sprintf("the API server on %s lists %d ConfigMaps in %s, the fingerprint has %d", h.Name, n, fp.Namespace, fp.ConfigMaps))
		case sum != fp.SHA256:
			probs = append(probs, fmt.Sprintf("the ConfigMaps the API server on %s lists differ from the fingerprint (names or data)", h.Name))
		}
	}
	return probs
}

// kubeProblems is what Verify checks on the static-pod layout besides etcd:
// /readyz = 200 on every API server, and the fingerprinted ConfigMaps
// through each of them.
func (l *Lab) kubeProblems(ctx context.Context) []string {
	probs := l.readyzProblems(ctx)
	fp, err := l.KubeFingerprint()
	if err != nil {
		return append(probs, err.Error())
	}
	switch {
	case fp == nil:
	case len(probs) > 0:
		// an API server that is not ready would only time out
		probs = append(probs, "ConfigMaps not checked (not every API server is ready)")
	default:
		probs = append(probs, l.configMapProblems(ctx, fp)...)
	}
	return probs
}

// etcdPodState is the state of etcd on a static-pod host for Status:
// running (a container runs), parked (its manifest is in ParkedDir),
// stopped (neither), from one shell command's output.
const etcdPodStateCmd = `if crictl ps -q --name '^etcd$' 2>/dev/null | grep -q .; then echo pod-running; elif [ -e ` + ParkedDir + `/etcd.yaml ]; then echo manifest-parked; elif [ -e ` + EtcdManifest + ` ]; then echo pod-not-running; else echo no-manifest; fi`

// apiServerState is "ready" when the API server on h answers /readyz with
// 200, else a short reason (Status).
func (l *Lab) apiServerState(ctx context.Context, h *Host) string {
	c, err := l.APIClient()
	if err != nil {
		return err.Error()
	}
	defer c.CloseIdleConnections()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	code, err := apiDo(rctx, c, http.MethodGet, APIServerURL(h.Address)+"/readyz", nil, nil)
	switch {
	case err == nil:
		return "ready"
	case code == 0:
		return shortErr(err)
	default:
		return fmt.Sprintf("not ready (/readyz %d)", code)
	}
}
