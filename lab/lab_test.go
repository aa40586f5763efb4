package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/ssh/knownhosts"
	"gopkg.in/yaml.v3"

	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/tests/framework/testutil"
)

// testStateDir is the lab state dir of the tests (one lab at a time).
const testStateDir = "/var/tmp/etcd-rescue-lab-test"

// needLab skips (or, under CI=true, fails) when the lab cannot run here.
func needLab(t *testing.T) {
	t.Helper()
	testutil.Need(t, "lab test", Unavailable())
}

// upLab brings a lab up for one test and takes it down (checking that
// nothing is left) when the test ends.
func upLab(t *testing.T, o Options) *Lab {
	t.Helper()
	needLab(t)
	ctx := context.Background()
	if err := DownDir(ctx, testStateDir, nil); err != nil {
		t.Fatalf("clean up an earlier test lab: %v", err)
	}
	o.StateDir = testStateDir
	o.Log = testutil.Log{T: t}
	if o.WaitBusy == 0 {
		o.WaitBusy = 10 * time.Minute // another package's tests may hold the lab network
	}
	t0 := time.Now()
	l, err := Up(ctx, o)
	var pe *PrereqError
	if errors.As(err, &pe) && os.Getenv("CI") != "true" {
		t.Skipf("lab test: %v; hints: %s (or: make lab-prereqs)", err, strings.Join(pe.Hints(), "; "))
	}
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Logf("lab up (%d members, %s, %s mode) in %.1fs", o.Members, l.Version(), l.Mode(), time.Since(t0).Seconds())
	t.Cleanup(func() { downAndCheck(t, l) })
	return l
}

// downAndCheck runs Down and checks it left no namespace, mount, process,
// cgroup or state behind.
func downAndCheck(t *testing.T, l *Lab) {
	t.Helper()
	var pids []int
	var names []string
	for _, h := range l.Hosts() {
		pids = append(pids, netnsPids(h.Netns())...)
		names = append(names, h.Name)
	}
	t0 := time.Now()
	if err := l.Down(context.Background()); err != nil {
		t.Errorf("lab down: %v", err)
	}
	t.Logf("lab down in %.1fs", time.Since(t0).Seconds())
	if err := l.Down(context.Background()); err != nil {
		t.Errorf("second lab down (must be a no-op): %v", err)
	}
	if ns := labNetns(); len(ns) > 0 {
		t.Errorf("network namespaces left after down: %v", ns)
	}
	if m := mountsUnder(l.StateDir()); len(m) > 0 {
		t.Errorf("mounts left after down: %v", m)
	}
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil && strings.Contains(string(b), "etcdlab-h") {
		t.Errorf("lab overlay mounts left after down")
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("process %d (%s) of the lab still runs after down", p, cmdline(p))
		}
	}
	if _, err := net.InterfaceByName(BridgeName); err == nil {
		t.Errorf("bridge %s left after down", BridgeName)
	}
	if _, err := os.Stat(l.StateDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir %s left after down", l.StateDir())
	}
	for _, r := range kubeCgroupRoots() {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(r, netnsPrefix+n)); err == nil {
				t.Errorf("cgroup %s left after down", filepath.Join(r, netnsPrefix+n))
			}
		}
	}
}

func sshOut(t *testing.T, l *Lab, host, cmd string) string {
	t.Helper()
	return strings.TrimSpace(testutil.HostRun(t, l, host, cmd))
}

// etcdState is `systemctl is-active etcd` on host (no error on inactive).
func etcdState(t *testing.T, l *Lab, host string) string {
	t.Helper()
	return sshOut(t, l, host, "systemctl is-active etcd || true")
}

func mustVerify(t *testing.T, l *Lab) {
	t.Helper()
	ctx := context.Background()
	if err := l.WaitHealthy(ctx, 90*time.Second); err != nil {
		t.Fatalf("cluster did not become healthy: %v", err)
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

// verifyFails checks that Verify fails and names every string in want.
func verifyFails(t *testing.T, l *Lab, want ...string) {
	t.Helper()
	err := l.Verify(context.Background())
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("verify after the break: want a *VerifyError, got %v", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("verify error does not mention %q: %v", w, err)
		}
	}
	t.Logf("verify says: %v", err)
}

type inventory struct {
	Cluster struct {
		Name         string            `yaml:"name"`
		Token        string            `yaml:"token"`
		EtcdVersion  string            `yaml:"etcdVersion"`
		Layout       map[string]string `yaml:"layout"`
		ClientAccess string            `yaml:"clientAccess"`
		TLS          *struct {
			CA         string `yaml:"ca"`
			Cert       string `yaml:"cert"`
			Key        string `yaml:"key"`
			ServerName string `yaml:"serverName"`
		} `yaml:"tls"`
		Members []struct {
			Name      string `yaml:"name"`
			Host      string `yaml:"host"`
			PeerURL   string `yaml:"peerURL"`
			ClientURL string `yaml:"clientURL"`
		} `yaml:"members"`
	} `yaml:"cluster"`
	Hosts map[string]struct {
		Address string `yaml:"address"`
		Port    int    `yaml:"port"`
	} `yaml:"hosts"`
	SSH struct {
		User       string `yaml:"user"`
		Identity   string `yaml:"identity"`
		KnownHosts string `yaml:"knownHosts"`
		Sudo       bool   `yaml:"sudo"`
		Jump       string `yaml:"jump"`
	} `yaml:"ssh"`
	S3 *struct {
		Endpoint  string `yaml:"endpoint"`
		Region    string `yaml:"region"`
		PathStyle bool   `yaml:"pathStyle"`
		CA        string `yaml:"ca"`
		AccessKey string `yaml:"accessKey"`
		SecretKey string `yaml:"secretKey"`
	} `yaml:"s3"`
	Vars map[string]string `yaml:"vars"`
}

func readInventory(t *testing.T, l *Lab) *inventory {
	t.Helper()
	return readInventoryFile(t, l.InventoryPath())
}

func readInventoryFile(t *testing.T, path string) *inventory {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var inv inventory
	if err := yaml.Unmarshal(b, &inv); err != nil {
		t.Fatalf("inventory is not valid YAML: %v\n%s", err, b)
	}
	return &inv
}

// checkInventory checks the inventory describes l's members and hosts.
func checkInventory(t *testing.T, l *Lab) *inventory {
	t.Helper()
	inv := readInventory(t, l)
	c := inv.Cluster
	if c.Name != "lab" || c.EtcdVersion != l.Version() || c.ClientAccess != "ssh-tunnel" || !strings.HasPrefix(c.Token, "lab-") {
		t.Errorf("inventory cluster: %+v", c)
	}
	wantLayout := map[string]string{"service": "systemd", "unit": "etcd", "envFile": EnvFile, "dataDir": DataDir, "owner": "etcd:etcd"}
	for k, v := range wantLayout {
		if c.Layout[k] != v {
			t.Errorf("inventory layout.%s = %q, want %q", k, c.Layout[k], v)
		}
	}
	scheme := "http"
	if l.TLS() {
		scheme = "https"
		if c.TLS == nil || c.TLS.CA != l.CACertPath() || c.TLS.Cert != l.ClientCertPath() || c.TLS.Key != l.ClientCertKeyPath() || c.TLS.ServerName != "" {
			t.Errorf("inventory cluster.tls = %+v, want {ca: %s, cert: %s, key: %s}", c.TLS, l.CACertPath(), l.ClientCertPath(), l.ClientCertKeyPath())
		} else {
			for _, p := range []string{c.TLS.CA, c.TLS.Cert, c.TLS.Key} {
				if !filepath.IsAbs(p) {
					t.Errorf("inventory cluster.tls path %s is not absolute", p)
				}
				if _, err := os.Stat(p); err != nil {
					t.Errorf("inventory names a missing file: %v", err)
				}
			}
		}
	} else if c.TLS != nil {
		t.Errorf("inventory of a lab without TLS has cluster.tls %+v", c.TLS)
	}
	ms := l.Members()
	if len(c.Members) != len(ms) {
		t.Fatalf("inventory has %d members, the lab %d", len(c.Members), len(ms))
	}
	for i, m := range ms {
		h, ok := l.Host(m.Host)
		if !ok {
			t.Fatalf("member %s: no host %s", m.Name, m.Host)
		}
		im := c.Members[i]
		if im.Name != m.Name || im.Host != m.Host || im.PeerURL != scheme+"://"+h.Address+":2380" || im.ClientURL != scheme+"://"+h.Address+":2379" {
			t.Errorf("inventory member %d = %+v, want %s on %s (%s)", i, im, m.Name, m.Host, h.Address)
		}
		if ih := inv.Hosts[m.Host]; ih.Address != h.Address || ih.Port != 22 {
			t.Errorf("inventory host %s = %+v, want address %s port 22", m.Host, ih, h.Address)
		}
	}
	if len(inv.Hosts) != len(l.Hosts()) {
		t.Errorf("inventory has %d hosts, the lab %d", len(inv.Hosts), len(l.Hosts()))
	}
	if inv.SSH.User != "root" || inv.SSH.Identity != l.ClientKeyPath() || inv.SSH.KnownHosts != l.KnownHostsPath() || inv.SSH.Sudo || inv.SSH.Jump != "" {
		t.Errorf("inventory ssh: %+v", inv.SSH)
	}
	for _, p := range []string{inv.SSH.Identity, inv.SSH.KnownHosts} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("inventory names a missing file: %v", err)
		}
	}
	if inv.Vars["snapshot"] != l.SnapshotPath() {
		t.Errorf("inventory vars.snapshot = %q, want %q", inv.Vars["snapshot"], l.SnapshotPath())
	}
	return inv
}

// TestMakefileInSync: lab/lab.mk builds what the Go code expects.
func TestMakefileInSync(t *testing.T) {
	b, err := os.ReadFile("lab.mk")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^LAB_ROOTFS_PACKAGES := (.*)$`).FindSubmatch(b)
	if m == nil || string(m[1]) != RootfsPackages {
		t.Errorf("LAB_ROOTFS_PACKAGES in lab.mk = %q, RootfsPackages = %q", m, RootfsPackages)
	}
	// the marker make writes and compares is the one EnsureRootfs expects,
	// so that either one rebuilds a rootfs made with another package list
	sm := regexp.MustCompile(`(?m)^LAB_ROOTFS_STAMP := (.*)$`).FindSubmatch(b)
	if sm == nil || strings.ReplaceAll(string(sm[1]), "$(LAB_ROOTFS_PACKAGES)", RootfsPackages) != RootfsStamp {
		t.Errorf("LAB_ROOTFS_STAMP in lab.mk = %q, want it to expand to RootfsStamp %q", sm, RootfsStamp)
	}
	if !strings.Contains(string(b), `"$$(cat $$m 2>/dev/null)" = "$(LAB_ROOTFS_STAMP)"`) {
		t.Errorf("lab.mk does not compare the rootfs marker with LAB_ROOTFS_STAMP (a stale rootfs would be kept)")
	}
	if !strings.Contains(string(b), rootfsMarker) {
		t.Errorf("lab.mk does not write the rootfs marker %s", rootfsMarker)
	}
	vm := regexp.MustCompile(`(?m)^ETCD_VERSIONS \?= (.*)$`).FindSubmatch(b)
	if vm == nil {
		t.Fatal("no ETCD_VERSIONS in lab.mk")
	}
	for _, v := range strings.Fields(string(vm[1])) {
		minor := v[:strings.LastIndex(v, ".")]
		pinned, err := pinnedVersion(filepath.Join("etcdbuild", minor))
		if err != nil || pinned != v {
			t.Errorf("ETCD_VERSIONS has %s but etcdbuild/%s pins %q (%v)", v, minor, pinned, err)
		}
	}
}

// TestMakefileKubeInSync: make kube-bins builds the versions and images the
// static-pod layout looks for.
func TestMakefileKubeInSync(t *testing.T) {
	b, err := os.ReadFile("lab.mk")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"KUBE_VERSION ?= ": KubeVersion, "CRICTL_VERSION ?= ": CrictlVersion, "PAUSE_IMAGE := ": PauseImage} {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(.*)$`).FindSubmatch(b)
		if m == nil || string(m[1]) != want {
			t.Errorf("lab.mk: %s%q, lab/kube.go: %q", name, m, want)
		}
	}
	minor := KubeVersion[:strings.LastIndex(KubeVersion, ".")]
	mod, err := os.ReadFile(filepath.Join("kubebuild", minor, "go.mod"))
	if err != nil || !regexp.MustCompile(`(?m)^\s*k8s\.io/kubernetes `+regexp.QuoteMeta(KubeVersion)+`\s*$`).Match(mod) {
		t.Errorf("kubebuild/%s/go.mod does not pin k8s.io/kubernetes %s (%v)", minor, KubeVersion, err)
	}
	cri, err := os.ReadFile(filepath.Join("kubebuild", "crictl", "go.mod"))
	if err != nil || !regexp.MustCompile(`(?m)sigs\.k8s\.io/cri-tools `+regexp.QuoteMeta(CrictlVersion)+`\s*$`).Match(cri) {
		t.Errorf("kubebuild/crictl/go.mod does not pin sigs.k8s.io/cri-tools %s (%v)", CrictlVersion, err)
	}
	for _, want := range []string{"$(KUBE_IMAGES)/etcd-$(patsubst v%,%,$(1)).tar", "registry.k8s.io/etcd:$(patsubst v%,%,$(1))-0", "$(KUBE_IMAGES)/kube-apiserver-$(KUBE_VERSION).tar", "registry.k8s.io/kube-apiserver:$(KUBE_VERSION)", "$(KUBE_IMAGES)/pause.tar"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("lab.mk does not make %s, which lab/kube.go expects", want)
		}
	}
	if got := KubeImageTars("/b", "v3.5.35"); !slices.Contains(got, "/b/images/etcd-3.5.35.tar") {
		t.Errorf("KubeImageTars = %v, want the etcd tarball as lab.mk names it", got)
	}
}

func TestResolveVersion(t *testing.T) {
	for in, want := range map[string]string{"": "v3.5.35", "3.5": "v3.5.35", "3.6": "v3.6.16", "v3.6.16": "v3.6.16", "3.5.35": "v3.5.35"} {
		p := &prereqs{}
		err := resolveVersion(&Options{Version: in, BinDir: t.TempDir()}, p)
		var pe *PrereqError
		if err != nil && !errors.As(err, &pe) {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if p.version != want {
			t.Errorf("version %q resolves to %q, want %q", in, p.version, want)
		}
	}
	if err := resolveVersion(&Options{Version: "banana"}, &prereqs{}); err == nil {
		t.Error("a bad version is accepted")
	}
}

// TestDownLeavesForeignDirs: lab down never deletes a directory Up did not make.
func TestDownLeavesForeignDirs(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"hosts", "keep"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := DownDir(context.Background(), dir, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keep")); err != nil {
		t.Fatalf("lab down deleted a foreign directory: %v", err)
	}
	if err := makeStateDir(dir); err == nil {
		t.Fatal("Up would take a non-empty foreign directory as its state dir")
	}
}

func TestValueDeterministic(t *testing.T) {
	first, again := Value(7), Value(7)
	if string(first) != string(again) || string(first) == string(Value(8)) || len(Value(0)) != ValueSize {
		t.Fatal("Value is not a deterministic per-key value")
	}
	if Key(42) != "/lab/k/000000042" {
		t.Fatalf("Key(42) = %s", Key(42))
	}
}

// TestLab35 is one 3-member lab on etcd 3.5: health, inventory, host
// isolation, host keys, reboots, status, then the quorum-loss break.
func TestLab35(t *testing.T) {
	l := upLab(t, Options{Members: 3, Version: "3.5", Keys: 300})
	ctx := context.Background()
	mustVerify(t, l)
	if l.Version() != "3.5.35" {
		t.Errorf("version %s", l.Version())
	}
	fp, err := l.Fingerprint()
	if err != nil || fp == nil || fp.Keys != 300 || fp.Revision < 301 || len(fp.SHA256) != 64 {
		t.Fatalf("fingerprint %+v, %v", fp, err)
	}

	t.Run("inventory", func(t *testing.T) { checkInventory(t, l) })

	t.Run("hosts-isolated", func(t *testing.T) {
		sshOut(t, l, "h1", "touch /var/lib/etcd/isolation-probe-h1")
		defer sshOut(t, l, "h1", "rm -f /var/lib/etcd/isolation-probe-h1")
		if out := sshOut(t, l, "h2", "ls -A /var/lib/etcd; hostname"); strings.Contains(out, "isolation-probe") || !strings.HasSuffix(out, "h2") {
			t.Errorf("h2 sees h1's /var/lib/etcd or is not h2: %q", out)
		}
		if out := sshOut(t, l, "h1", "ls -A /var/lib/etcd; hostname; stat -c %U:%G /var/lib/etcd/member"); !strings.Contains(out, "isolation-probe-h1") || !strings.Contains(out, "etcd:etcd") {
			t.Errorf("h1: %q", out)
		}
		for _, h := range []string{"h1", "h2", "h3"} {
			addr, _ := l.Host(h)
			if out := sshOut(t, l, h, "hostname -I; cat /etc/etcd/etcd.env; etcd --version; command -v etcdctl etcdutl"); !strings.Contains(out, addr.Address) ||
				!strings.Contains(out, "etcd Version: 3.5.35") || !strings.Contains(out, "ETCD_DATA_DIR=/var/lib/etcd") {
				t.Errorf("%s: %s", h, out)
			}
		}
	})

	t.Run("stop-one-host", func(t *testing.T) {
		sshOut(t, l, "h1", "systemctl stop etcd")
		if s := etcdState(t, l, "h1"); s != "inactive" {
			t.Errorf("h1 after stop: %s", s)
		}
		for _, h := range []string{"h2", "h3"} {
			if s := etcdState(t, l, h); s != "active" {
				t.Errorf("%s after stopping etcd on h1: %s, want active", h, s)
			}
		}
		sshOut(t, l, "h1", "systemctl start etcd")
		mustVerify(t, l)
	})

	t.Run("wrong-host-key-refused", func(t *testing.T) {
		cfg, err := l.SSHClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		h1, _ := l.Host("h1")
		addr := net.JoinHostPort(h1.Address, "22")
		c, err := dialSSH(ctx, addr, cfg)
		if err != nil {
			t.Fatalf("the right host key is refused: %v", err)
		}
		c.Close()
		k2, err := readPublicKey(l.HostKeyPath("h2") + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		bad := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(bad, []byte(knownhosts.Line([]string{h1.Address}, k2)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if cfg.HostKeyCallback, err = knownhosts.New(bad); err != nil {
			t.Fatal(err)
		}
		_, err = dialSSH(ctx, addr, cfg)
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) || len(ke.Want) == 0 {
			t.Fatalf("ssh to h1 with h2's key in known_hosts: want a host key mismatch, got %v", err)
		}
		empty := filepath.Join(t.TempDir(), "empty")
		if err := os.WriteFile(empty, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if cfg.HostKeyCallback, err = knownhosts.New(empty); err != nil {
			t.Fatal(err)
		}
		if _, err = dialSSH(ctx, addr, cfg); !errors.As(err, &ke) || len(ke.Want) != 0 {
			t.Fatalf("ssh to h1 with an empty known_hosts: want an unknown-host error, got %v", err)
		}
	})

	t.Run("reboot", func(t *testing.T) {
		if err := l.Reboot(ctx, "h2", false); err != nil {
			t.Fatal(err)
		}
		mustVerify(t, l)
		if err := l.Reboot(ctx, "h3", true); err != nil {
			t.Fatal(err)
		}
		mustVerify(t, l)
		if s := etcdState(t, l, "h3"); s != "active" {
			t.Errorf("etcd on h3 after a power cut: %s (the unit is enabled: it must come back)", s)
		}
	})

	t.Run("status", func(t *testing.T) {
		s := l.Status(ctx)
		if len(s.Hosts) != 3 || len(s.Members) != 3 || len(s.MemberList) != 3 || s.Keys != 300 || len(s.Problems) != 0 {
			t.Fatalf("status: %+v", s)
		}
		for _, h := range s.Hosts {
			if !h.SSH || h.Etcd != "active" || !h.DataDir || h.Memory == 0 {
				t.Errorf("status of %s: %+v", h.Name, h)
			}
			t.Logf("memory of %s: %.1f MiB", h.Name, float64(h.Memory)/(1<<20))
		}
	})

	t.Run("break-quorum-loss", func(t *testing.T) {
		if err := l.Break(ctx, "quorum-loss"); err != nil {
			t.Fatal(err)
		}
		checkQuorumLoss(t, l, []string{"h1"}, []string{"h2", "h3"})
	})
}

func checkQuorumLoss(t *testing.T, l *Lab, survivors, victims []string) {
	t.Helper()
	for _, h := range victims {
		if out := sshOut(t, l, h, "systemctl is-active etcd || true; test -e /var/lib/etcd && echo data || echo nodata"); out != "inactive\nnodata" {
			t.Errorf("victim %s: %q, want etcd inactive and no /var/lib/etcd", h, out)
		}
	}
	for _, h := range survivors {
		if out := sshOut(t, l, h, "systemctl is-active etcd || true; test -d /var/lib/etcd/member && echo data || echo nodata"); out != "active\ndata" {
			t.Errorf("survivor %s: %q, want etcd active with its data", h, out)
		}
	}
	verifyFails(t, l, "does not answer")
}

// TestBreaks36: on one 3-member etcd 3.6 lab, each break leaves the damage
// it promises, and the inventory it rewrites is the one a repair needs (the
// test repairs the cluster from it, as a plan would, before the next break).
func TestBreaks36(t *testing.T) {
	l := upLab(t, Options{Members: 3, Version: "3.6", Keys: 500})
	ctx := context.Background()
	mustVerify(t, l)
	if l.Version() != "3.6.16" {
		t.Errorf("version %s", l.Version())
	}

	t.Run("ip-change", func(t *testing.T) {
		old, _ := l.Host("h3")
		if err := l.Break(ctx, "ip-change"); err != nil {
			t.Fatal(err)
		}
		h3, _ := l.Host("h3")
		if h3.Address == old.Address || h3.Address != "10.77.0.23" {
			t.Fatalf("h3 address %s (was %s), want 10.77.0.23", h3.Address, old.Address)
		}
		// same host key, known_hosts updated: ssh at the new address works
		if out := sshOut(t, l, "h3", "hostname -I"); !strings.Contains(out, "10.77.0.23") || strings.Contains(out, old.Address) {
			t.Errorf("h3 addresses: %q", out)
		}
		if c, err := net.DialTimeout("tcp", old.Address+":22", 2*time.Second); err == nil {
			c.Close()
			t.Errorf("the old address %s still answers", old.Address)
		}
		if s := etcdState(t, l, "h3"); s == "active" {
			t.Errorf("etcd on h3 is active after the address change; want it failing on its old settings")
		}
		for _, h := range []string{"h1", "h2"} {
			if s := etcdState(t, l, h); s != "active" {
				t.Errorf("etcd on %s: %s", h, s)
			}
		}
		if inv := checkInventory(t, l); inv.Vars["oldPeerURL"] != "http://"+old.Address+":2380" {
			t.Errorf("inventory vars.oldPeerURL = %q", inv.Vars["oldPeerURL"])
		}
		verifyFails(t, l, "etcd3", "10.77.0.23")

		// repair as a plan would: member update, new env, restart
		cli := client(t, l, "etcd1", "etcd2")
		id := memberID(t, cli, "etcd3")
		peer, _, _ := l.MemberURLs("etcd3")
		if _, err := cli.MemberUpdate(ctx, id, []string{peer}); err != nil {
			t.Fatal(err)
		}
		writeEnv(t, l, "etcd3", "existing")
		sshOut(t, l, "h3", "systemctl restart etcd")
		mustVerify(t, l)
	})

	t.Run("lost-host", func(t *testing.T) {
		old, _ := l.Host("h2")
		if err := l.Break(ctx, "lost-host"); err != nil {
			t.Fatal(err)
		}
		if _, ok := l.Host("h2"); ok {
			t.Error("h2 still in the lab")
		}
		if netnsExists(netnsPrefix + "h2") {
			t.Error("h2's network namespace still exists")
		}
		if _, err := os.Stat(filepath.Join(l.StateDir(), "hosts", "h2")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("h2's disk still exists: %v", err)
		}
		if c, err := net.DialTimeout("tcp", old.Address+":22", 2*time.Second); err == nil {
			c.Close()
			t.Errorf("h2's address %s still answers", old.Address)
		}
		h4, ok := l.Host("h4")
		if !ok || h4.Address != "10.77.0.14" {
			t.Fatalf("replacement host: %+v %v", h4, ok)
		}
		out := sshOut(t, l, "h4", `systemctl is-active etcd || true; systemctl is-enabled etcd || true
test -e /etc/etcd/etcd.env && echo env || echo noenv
stat -c %U:%G:%a /var/lib/etcd; ls -A /var/lib/etcd | wc -l; etcd --version | head -1`)
		if want := "inactive\ndisabled\nnoenv\netcd:etcd:700\n0\netcd Version: 3.6.16"; out != want {
			t.Errorf("replacement host h4:\n%s\nwant:\n%s", out, want)
		}
		if out := sshAs(t, l, "h4", OperatorUser, "id -un; sudo -n id -u"); out != OperatorUser+"\n0" {
			t.Errorf("replacement host h4: the operator account: %q, want rescue with sudo", out)
		}
		inv := checkInventory(t, l)
		if inv.Cluster.Members[1].Host != "h4" || inv.Cluster.Members[1].PeerURL != "http://10.77.0.14:2380" {
			t.Errorf("inventory member etcd2: %+v", inv.Cluster.Members[1])
		}
		if _, ok := inv.Hosts["h2"]; ok {
			t.Error("inventory still lists h2")
		}
		if inv.Vars["lostPeerURL"] != "http://"+old.Address+":2380" {
			t.Errorf("inventory vars.lostPeerURL = %q", inv.Vars["lostPeerURL"])
		}
		verifyFails(t, l, "etcd2")

		// repair: remove the lost member, add the replacement, start it
		replaceLostMember(t, l, nil)
	})

	t.Run("total-loss", func(t *testing.T) {
		fp, _ := l.Fingerprint()
		if err := l.Break(ctx, "total-loss"); err != nil {
			t.Fatal(err)
		}
		snap := readSnapshot(t, l)
		out, err := exec.Command(filepath.Join(l.BinDir(), "etcdutl"), "snapshot", "status", "-w", "json", l.SnapshotPath()).CombinedOutput()
		if err != nil {
			t.Fatalf("etcdutl snapshot status: %v\n%s", err, out)
		}
		var st struct{ Revision int64 }
		if err := json.Unmarshal(out, &st); err != nil || st.Revision < fp.Revision {
			t.Errorf("snapshot revision %d (%v), want >= the fingerprint's %d", st.Revision, err, fp.Revision)
		}
		for _, h := range l.Hosts() {
			if out := sshOut(t, l, h.Name, "systemctl is-active etcd || true; test -e /var/lib/etcd && echo data || echo nodata"); out != "inactive\nnodata" {
				t.Errorf("%s after total-loss: %q", h.Name, out)
			}
		}
		verifyFails(t, l, "does not answer")

		// restore every member from the snapshot: the fingerprinted keys
		// must all come back
		restoreAll(t, l, snap)
		mustVerify(t, l)
	})

	t.Run("quorum-loss", func(t *testing.T) {
		if err := l.Break(ctx, "quorum-loss"); err != nil {
			t.Fatal(err)
		}
		checkQuorumLoss(t, l, []string{"h1"}, []string{"h4", "h3"})
	})
}

func client(t *testing.T, l *Lab, members ...string) *clientv3.Client {
	t.Helper()
	var eps []string
	for _, m := range members {
		_, c, err := l.MemberURLs(m)
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, c)
	}
	cli, err := l.newClient(eps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func memberID(t *testing.T, cli *clientv3.Client, name string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ml.Members {
		if m.Name == name {
			return m.ID
		}
	}
	t.Fatalf("no member %s in %v", name, ml.Members)
	return 0
}

// writeEnv writes member name's env file from the inventory.
func writeEnv(t *testing.T, l *Lab, name, clusterState string) {
	t.Helper()
	for _, mh := range l.memberHosts() {
		if mh.m.Name == name {
			env := l.envFile(name, mh.h.Address, l.initialCluster(), clusterState, l.st.Token)
			if err := l.WriteFile(context.Background(), mh.h.Name, EnvFile, []byte(env), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no member %s", name)
}

func restoreAll(t *testing.T, l *Lab, snap []byte) {
	t.Helper()
	ctx := context.Background()
	ic := l.initialCluster()
	var hosts []*Host
	for _, mh := range l.memberHosts() {
		if err := l.WriteFile(ctx, mh.h.Name, "/root/lab.db", snap, 0o600); err != nil {
			t.Fatal(err)
		}
		writeEnv(t, l, mh.m.Name, "new")
		sshOut(t, l, mh.h.Name, fmt.Sprintf("etcdutl snapshot restore /root/lab.db --name %s --initial-cluster %s --initial-cluster-token %s --initial-advertise-peer-urls %s --data-dir %s >/dev/null && chown -R etcd:etcd %s",
			mh.m.Name, ic, l.st.Token, l.peerURL(mh.h.Address), DataDir, DataDir))
		hosts = append(hosts, mh.h)
	}
	if err := parallel(hosts, func(h *Host) error {
		out, err := l.Run(ctx, h.Name, "systemctl start etcd", nil)
		if err != nil {
			return fmt.Errorf("%s: %w: %s", h.Name, err, out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestLab5 is a 5-member lab: healthy, then quorum-loss takes 3 members.
func TestLab5(t *testing.T) {
	l := upLab(t, Options{Members: 5, Version: "3.5", Keys: 200})
	mustVerify(t, l)
	checkInventory(t, l)
	if err := l.Break(context.Background(), "quorum-loss"); err != nil {
		t.Fatal(err)
	}
	checkQuorumLoss(t, l, []string{"h1", "h2"}, []string{"h3", "h4", "h5"})
}

// TestLightMode runs the fallback host mode: isolation, the systemctl
// shim's stop/start, a power cut, and Down.
func TestLightMode(t *testing.T) {
	l := upLab(t, Options{Members: 3, Version: "3.6", Keys: 100, Mode: ModeLight})
	ctx := context.Background()
	mustVerify(t, l)
	if l.Mode() != ModeLight {
		t.Fatalf("mode %s", l.Mode())
	}
	sshOut(t, l, "h1", "touch /var/lib/etcd/isolation-probe-h1")
	if out := sshOut(t, l, "h2", "ls -A /var/lib/etcd; hostname"); strings.Contains(out, "isolation-probe") || !strings.HasSuffix(out, "h2") {
		t.Errorf("h2 sees h1's /var/lib/etcd or is not h2: %q", out)
	}
	// the console (nsenter, no network) is the same host as ssh
	if out, err := l.RunConsole(ctx, "h2", "hostname; ls -A /var/lib/etcd"); err != nil || strings.Contains(out, "isolation-probe") || !strings.HasPrefix(out, "h2\n") {
		t.Errorf("console of h2: %q, %v", out, err)
	}
	sshOut(t, l, "h1", "rm /var/lib/etcd/isolation-probe-h1; systemctl stop etcd")
	for h, want := range map[string]string{"h1": "inactive", "h2": "active", "h3": "active"} {
		if s := etcdState(t, l, h); s != want {
			t.Errorf("etcd on %s after stopping it on h1: %s, want %s", h, s, want)
		}
	}
	sshOut(t, l, "h1", "systemctl start etcd")
	mustVerify(t, l)
	if err := l.Reboot(ctx, "h2", true); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, l)
	checkInventory(t, l)
}

// TestRootfsStamp: a rootfs made with another package list (an older
// checkout's, e.g. without sudo) is not ready, so Up and make lab-rootfs
// build it again.
func TestRootfsStamp(t *testing.T) {
	dir := t.TempDir()
	if rootfsReady(dir) {
		t.Fatal("a rootfs without a marker is ready")
	}
	old := "bookworm minbase systemd,systemd-sysv,dbus,openssh-server,iproute2,procps\n"
	if err := os.WriteFile(filepath.Join(dir, rootfsMarker), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if rootfsReady(dir) {
		t.Fatal("a rootfs made with the old package list (no sudo) is ready")
	}
	if err := os.WriteFile(filepath.Join(dir, rootfsMarker), []byte(RootfsStamp+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !rootfsReady(dir) {
		t.Fatal("a rootfs made with RootfsPackages is not ready")
	}
	if !strings.Contains(RootfsPackages, "sudo") {
		t.Error("the nspawn hosts' rootfs has no sudo: the operator account needs it")
	}
	if rootfsInUse(dir) {
		t.Errorf("%s is in use by no overlay, yet rootfsInUse says so", dir)
	}
}

// sshAs runs cmd on host as user over real ssh with the lab's key and
// known_hosts, and returns its output (a non-zero exit fails the test).
func sshAs(t *testing.T, l *Lab, host, user, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := l.SSHClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = user
	h, ok := l.Host(host)
	if !ok {
		t.Fatalf("no host %s", host)
	}
	c, err := dialSSH(ctx, net.JoinHostPort(h.Address, "22"), cfg)
	if err != nil {
		t.Fatalf("ssh %s@%s: %v", user, host, err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("ssh %s@%s: %s: %v\n%s", user, host, cmd, err, out)
	}
	return strings.TrimSpace(string(out))
}

// sshxFromInventory is the sshx configuration etcd-rescue makes of the
// inventory's ssh section for host (engine.SSHConfig, which package lab
// cannot import: ssh.jump is [user@]host[:port]).
func sshxFromInventory(t *testing.T, inv *inventory, host string) sshx.Config {
	t.Helper()
	h, ok := inv.Hosts[host]
	if !ok {
		t.Fatalf("inventory has no host %s", host)
	}
	cfg := sshx.Config{Address: h.Address, Port: h.Port, User: inv.SSH.User, Sudo: inv.SSH.Sudo,
		IdentityFiles: []string{inv.SSH.Identity}, KnownHosts: inv.SSH.KnownHosts, KeepAlive: -1}
	if inv.SSH.Jump != "" {
		u, a, ok := strings.Cut(inv.SSH.Jump, "@")
		if !ok {
			t.Fatalf("inventory ssh.jump %q has no user@", inv.SSH.Jump)
		}
		cfg.Jump = &sshx.Config{User: u, Address: a}
	}
	return cfg
}

// sshxRun runs cmd through an sshx client made of cfg.
func sshxRun(t *testing.T, name string, cfg sshx.Config, cmd string) (string, error) {
	t.Helper()
	c, err := sshx.New(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.Run(ctx, cmd, sshx.RunOpts{})
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("%s: %s: exit %d: %s%s", name, cmd, res.ExitCode, res.Stdout, res.Stderr)
	}
	return strings.TrimSpace(string(res.Stdout)), nil
}

func mustSSHX(t *testing.T, name string, cfg sshx.Config, cmd string) string {
	t.Helper()
	out, err := sshxRun(t, name, cfg, cmd)
	if err != nil {
		t.Fatalf("sshx %s@%s (sudo %v, jump %v): %v", cfg.User, name, cfg.Sudo, cfg.Jump != nil, err)
	}
	return out
}

// TestOperatorSudoJump: in both host modes the hosts have the operator
// account rescue (not root, passwordless sudo, the lab's key), and the
// inventory variant {user: rescue, sudo: true, jump: root@h1} works over
// real ssh through sshx: commands run as root through sudo -n, and the
// connections to the other hosts really come from h1 (10.77.0.11), with
// h1's host key verified.
func TestOperatorSudoJump(t *testing.T) {
	for _, mode := range []Mode{ModeNspawn, ModeLight} {
		t.Run(string(mode), func(t *testing.T) {
			t0 := time.Now()
			l := upLab(t, Options{Members: 3, Version: "3.6", Keys: 50, Mode: mode})
			if l.Mode() != mode {
				t.Fatalf("mode %s, want %s", l.Mode(), mode)
			}
			checkOperatorSudoJump(t, l)
			t.Logf("%s mode: checks done %.1fs after the start", mode, time.Since(t0).Seconds())
		})
	}
}

func checkOperatorSudoJump(t *testing.T, l *Lab) {
	h1, _ := l.Host("h1")
	h2, _ := l.Host("h2")

	t.Run("account", func(t *testing.T) {
		for _, h := range l.Hosts() {
			out := sshAs(t, l, h.Name, OperatorUser, `id -u; id -un; echo "$HOME"; stat -c %U:%a "$HOME" "$HOME/.ssh/authorized_keys"
sudo -n true && echo sudo-ok; sudo -n id -u; sudo -n grep -c '^root:' /etc/shadow`)
			f := strings.Split(out, "\n")
			if len(f) != 8 || f[0] == "0" || f[1] != OperatorUser || f[2] != "/home/"+OperatorUser ||
				f[3] != OperatorUser+":700" || f[4] != OperatorUser+":600" || f[5] != "sudo-ok" || f[6] != "0" || f[7] != "1" {
				t.Errorf("%s as %s:\n%s\nwant: a uid other than 0, rescue, /home/rescue (rescue:700), authorized_keys rescue:600, sudo -n works, as uid 0, reads /etc/shadow", h.Name, OperatorUser, out)
			}
			// root is untouched, and the sudoers file is the one promised
			if out := sshOut(t, l, h.Name, "id -u; stat -c %U:%a /etc/sudoers.d/rescue; grep -v '^#' /etc/sudoers.d/rescue; sudo -l -U rescue | grep -c 'NOPASSWD: ALL'"); out !=
				"0\nroot:440\nrescue ALL=(ALL) NOPASSWD: ALL\nDefaults:rescue logfile=/var/log/sudo-rescue.log, !loglinelen\n1" {
				t.Errorf("%s as root: %q", h.Name, out)
			}
		}
		if out := sshAs(t, l, "h1", OperatorUser, "touch /etc/etcd/probe 2>/dev/null || echo refused; cat /etc/shadow >/dev/null 2>&1 || echo refused"); out != "refused\nrefused" {
			t.Errorf("rescue writes /etc/etcd or reads /etc/shadow without sudo: %q", out)
		}
		// no other host's home, nor this machine's /home (light mode binds a per-host one)
		if _, err := os.Stat("/home/" + OperatorUser); err == nil && l.Mode() == ModeLight {
			t.Errorf("light mode made /home/%s on this machine", OperatorUser)
		}
	})

	direct := sshx.Config{Address: h2.Address, User: OperatorUser, IdentityFiles: []string{l.ClientKeyPath()}, KnownHosts: l.KnownHostsPath(), KeepAlive: -1}
	t.Run("sshx-sudo", func(t *testing.T) {
		if out := mustSSHX(t, "h2", direct, `id -un; echo "$SSH_CONNECTION"`); !strings.HasPrefix(out, OperatorUser+"\n"+GatewayAddr+" ") {
			t.Errorf("direct, no sudo: %q, want rescue, from %s", out, GatewayAddr)
		}
		sudo := direct
		sudo.Sudo = true
		if out := mustSSHX(t, "h2", sudo, `whoami; echo "$SUDO_USER"; id -u`); out != "root\nrescue\n0" {
			t.Errorf("sshx with Sudo: %q, want root (SUDO_USER rescue, uid 0)", out)
		}
	})

	inv := filepath.Join(t.TempDir(), "inventory-sudo-jump.yaml")
	if err := l.WriteInventory(inv, InventoryOptions{User: OperatorUser, Sudo: true, Jump: "h1"}); err != nil {
		t.Fatal(err)
	}
	t.Run("inventory", func(t *testing.T) {
		iv := readInventoryFile(t, inv)
		if iv.SSH.User != OperatorUser || !iv.SSH.Sudo || iv.SSH.Jump != "root@"+h1.Address ||
			iv.SSH.Identity != l.ClientKeyPath() || iv.SSH.KnownHosts != l.KnownHostsPath() {
			t.Errorf("variant's ssh: %+v, want {rescue, sudo, jump root@%s, the lab's key and known_hosts}", iv.SSH, h1.Address)
		}
		own := readInventory(t, l)
		if len(iv.Cluster.Members) != len(own.Cluster.Members) || len(iv.Hosts) != len(own.Hosts) || iv.Cluster.Token != own.Cluster.Token {
			t.Errorf("the variant describes another cluster than the lab's inventory")
		}
		checkInventory(t, l) // the lab's own inventory is unchanged: root, no sudo, no jump
		if err := l.WriteInventory(filepath.Join(t.TempDir(), "x.yaml"), InventoryOptions{Jump: "h9"}); err == nil || !strings.Contains(err.Error(), "no lab host h9") {
			t.Errorf("a jump host that is not in the lab: %v", err)
		}
		if err := l.WriteInventory(l.InventoryPath(), InventoryOptions{Sudo: true}); err == nil {
			t.Error("WriteInventory overwrote the lab's own inventory with a variant")
		}
	})

	t.Run("jump", func(t *testing.T) {
		iv := readInventoryFile(t, inv)
		for _, h := range []string{"h2", "h3"} {
			cfg := sshxFromInventory(t, iv, h)
			if out := mustSSHX(t, h, cfg, `whoami; echo "$SUDO_USER"`); out != "root\nrescue" {
				t.Errorf("%s via h1 with sudo: %q, want root (sudo from rescue)", h, out)
			}
			// sudo resets the environment: SSH_CONNECTION is read without it
			cfg.Sudo = false
			out := mustSSHX(t, h, cfg, `id -un; echo "$SSH_CONNECTION"`)
			f := strings.Fields(out)
			hh, _ := l.Host(h)
			if len(f) != 5 || f[0] != OperatorUser || f[1] != h1.Address || f[3] != hh.Address {
				t.Errorf("%s via h1: %q, want rescue, client %s (h1), server %s", h, out, h1.Address, hh.Address)
			}
			// the target's sudo log has the command sshx wrapped
			if log := sshOut(t, l, h, "cat "+SudoLog); !regexp.MustCompile(`rescue : .*USER=root ; COMMAND=/usr/bin/setsid -w sh -c .*sshx:%s:%s.*; whoami`).MatchString(log) {
				t.Errorf("%s: %s does not show sshx's sudo -n setsid -w sh -c ... whoami as rescue:\n%s", h, SudoLog, log)
			}
		}
		if l.Mode() == ModeNspawn {
			// sshd's own word (journald): rescue came from h1, and root
			// logged in on h1 from this machine to make the tunnel
			if out := sshOut(t, l, "h2", "journalctl -u ssh --no-pager -o cat | grep 'Accepted publickey for rescue from' || true"); !strings.Contains(out, "for rescue from "+h1.Address+" ") {
				t.Errorf("h2's sshd log shows no login of rescue from %s:\n%s", h1.Address, out)
			}
			if out := sshOut(t, l, "h1", "journalctl -u ssh --no-pager -o cat | grep 'Accepted publickey for root from "+GatewayAddr+" ' | wc -l"); out == "0" {
				t.Errorf("h1's sshd log shows no root login from %s (the jump)", GatewayAddr)
			}
		}
	})

	t.Run("jump-host-key-verified", func(t *testing.T) {
		// known_hosts with h2 and h3 but not h1: the tunnel must be refused
		// at h1, before anything reaches h2
		b, err := os.ReadFile(l.KnownHostsPath())
		if err != nil {
			t.Fatal(err)
		}
		var keep []string
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if !strings.HasPrefix(line, "h1,") {
				keep = append(keep, line)
			}
		}
		if len(keep) != len(l.Hosts())-1 {
			t.Fatalf("known_hosts lines: %q", b)
		}
		kh := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(kh, []byte(strings.Join(keep, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := sshxFromInventory(t, readInventoryFile(t, inv), "h2")
		cfg.KnownHosts = kh
		_, err = sshxRun(t, "h2", cfg, "true")
		var he *sshx.HostKeyError
		if !errors.As(err, &he) || he.Address != h1.Address || !strings.Contains(err.Error(), "jump host") {
			t.Fatalf("via h1 with h1 missing from known_hosts: want a host key error for the jump host %s, got %v", h1.Address, err)
		}
		// and without the jump the same file reaches h2: only h1 was unknown
		cfg.Jump = nil
		mustSSHX(t, "h2", cfg, "true")
	})

	if l.Mode() != ModeNspawn {
		return
	}
	// the guard that keeps Up and make lab-rootfs from rebuilding a rootfs
	// under a running lab's hosts
	if !rootfsInUse(l.st.RootfsDir) {
		t.Errorf("rootfsInUse(%s) is false while an nspawn lab's host disks use it", l.st.RootfsDir)
	}
	t.Run("break-rewrites-variant", func(t *testing.T) {
		if err := l.Break(context.Background(), "ip-change"); err != nil {
			t.Fatal(err)
		}
		iv := readInventoryFile(t, inv)
		h3, _ := l.Host("h3")
		if iv.Hosts["h3"].Address != h3.Address || h3.Address != "10.77.0.23" || iv.Vars["oldPeerURL"] == "" || iv.SSH.Jump != "root@"+h1.Address || !iv.SSH.Sudo {
			t.Fatalf("the variant after ip-change: h3 %+v, vars %v, ssh %+v; want h3 at 10.77.0.23, oldPeerURL, still sudo through h1", iv.Hosts["h3"], iv.Vars, iv.SSH)
		}
		cfg := sshxFromInventory(t, iv, "h3")
		if out := mustSSHX(t, "h3", cfg, "whoami; hostname -I"); !strings.HasPrefix(out, "root\n10.77.0.23") {
			t.Errorf("h3 at its new address via h1: %q", out)
		}
	})
}

// replaceLostMember repairs a lost-host break by hand: remove etcd2, add
// it back at the replacement's URL (retried: "unhealthy cluster" for ~5 s
// after a membership change), write its env file and start it on h4 (or
// let start do that).
func replaceLostMember(t *testing.T, l *Lab, start func()) {
	t.Helper()
	ctx := context.Background()
	cli := client(t, l, "etcd1", "etcd3")
	if _, err := cli.MemberRemove(ctx, memberID(t, cli, "etcd2")); err != nil {
		t.Fatal(err)
	}
	peer, _, _ := l.MemberURLs("etcd2")
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := cli.MemberAdd(ctx, []string{peer})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member add: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	writeEnv(t, l, "etcd2", "existing")
	if start != nil {
		start()
	} else {
		sshOut(t, l, "h4", "systemctl enable --now etcd")
	}
	mustVerify(t, l)
}

// readSnapshot returns the total-loss break's snapshot after checking that
// its .sha256 (sha256sum format) matches it.
func readSnapshot(t *testing.T, l *Lab) []byte {
	t.Helper()
	snap, err := os.ReadFile(l.SnapshotPath())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(snap)
	if b, err := os.ReadFile(l.SnapshotPath() + ".sha256"); err != nil || string(b) != hex.EncodeToString(sum[:])+"  lab.db\n" {
		t.Errorf("lab.db.sha256 = %q (%v), want the snapshot's sha256", b, err)
	}
	return snap
}
