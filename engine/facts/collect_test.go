package facts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/etcd-rescue/etcd-rescue/internal/access"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// treeState records every file under the dirs: mode, size, mtime and a
// hash of the content; two equal states mean nothing was written.
func treeState(t *testing.T, dirs ...string) map[string]string {
	t.Helper()
	st := map[string]string{}
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := e.Info()
			if err != nil {
				return err
			}
			v := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
			if fi.Mode().IsRegular() {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				sum := sha256.Sum256(b)
				v += " " + hex.EncodeToString(sum[:])
			}
			st[p] = v
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func sameTree(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s changed: %q -> %q", p, v, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}

// stoppedMember starts a one-member etcd, writes keys, stops it and
// returns its data dir and the revision it stopped at.
func stoppedMember(t *testing.T, bin string) (string, int64) {
	t.Helper()
	m := etcdtest.Start(t, etcdtest.Options{Binary: bin, Name: "m0"})
	m.WaitHealthy(t)
	cli, err := etcdapi.New(etcdapi.Config{Endpoints: []string{m.ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		if _, err := cli.Raw().Put(ctx, fmt.Sprintf("/k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	st, err := cli.Status(ctx, m.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	_ = cli.Close()
	m.Stop()
	return m.DataDir, st.Revision
}

func etcdVersionOf(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	v := parseVersion(string(out))
	if v == "" {
		t.Fatalf("%s --version: %s", bin, out)
	}
	return v
}

// The probe script itself, run by sh on this machine as sshd would run it:
// it reads a stopped member's data dir, its revision offline (etcdutl
// snapshot status), the env file, and writes nothing.
func TestHostScriptLocally(t *testing.T) {
	bin := etcdtest.Binary(t)
	if _, err := os.Stat(filepath.Join(filepath.Dir(bin), "etcdutl")); err != nil {
		t.Skipf("no etcdutl beside %s", bin)
	}
	dataDir, rev := stoppedMember(t, bin)
	host := t.TempDir()
	env := filepath.Join(host, "etcd.env")
	if err := os.WriteFile(env, []byte("ETCD_NAME='m0'\nETCD_DATA_DIR=\""+dataDir+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := treeState(t, host, dataDir)
	// No process is named like this: the offline revision is read even
	// while other tests run etcd on this machine.
	spec := probeSpec{Token: "tok", Layout: "systemd", Unit: "etcd-rescue-test-none", EnvFile: env, DataDir: dataDir,
		BinDir: filepath.Dir(bin), Process: "etcd-rescue-none"}
	cmd := exec.Command("sh", "-c", hostScript(spec))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, stderr.String())
	}
	h, _ := readProbe(spec, parseSections(string(out), "tok"), stderr.String(), nil, false, 2380, 2379)
	if h.Reach != ReachOK || h.DataDir == nil || !h.DataDir.Present || !h.DataDir.HasMember || h.DataDir.SizeBytes == 0 {
		t.Fatalf("host: %+v data dir %+v\n%s", h, h.DataDir, out)
	}
	if h.DataDir.OfflineRevision != rev {
		t.Errorf("offline revision %d, want %d (notes %q)\n%s", h.DataDir.OfflineRevision, rev, h.Notes, out)
	}
	if want := etcdVersionOf(t, bin); h.EtcdVersion != want {
		t.Errorf("version %q, want %q", h.EtcdVersion, want)
	}
	if h.Settings == nil || h.Settings.Name != "m0" || h.Settings.DataDir != dataDir || h.Service.Running {
		t.Errorf("settings %+v service %+v", h.Settings, h.Service)
	}
	sameTree(t, before, treeState(t, host, dataDir))

	// A static pod: the manifest's flags.
	manifest := filepath.Join(host, "etcd.yaml")
	if err := os.WriteFile(manifest, []byte("spec:\n  containers:\n  - name: etcd\n    command: [etcd, --name=m0, --initial-cluster-state=existing]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sp := spec
	sp.Layout, sp.Manifest = "static-pod", manifest
	out, err = exec.Command("sh", "-c", hostScript(sp)).Output()
	if err != nil {
		t.Fatal(err)
	}
	h, _ = readProbe(sp, parseSections(string(out), "tok"), "", nil, false, 2380, 2379)
	if h.Service == nil || h.Service.Kind != "static-pod" || !h.Service.ManifestPresent || h.Settings == nil ||
		h.Settings.Name != "m0" || h.Settings.InitialClusterState != "existing" || h.Settings.Source != manifest {
		t.Errorf("static pod: service %+v settings %+v notes %q", h.Service, h.Settings, h.Notes)
	}

	// The same with an absent data dir and no binary: facts, not errors.
	spec.DataDir, spec.BinDir = filepath.Join(host, "gone"), filepath.Join(host, "nobin")
	out, err = exec.Command("sh", "-c", hostScript(spec)).Output()
	if err != nil {
		t.Fatal(err)
	}
	h, _ = readProbe(spec, parseSections(string(out), "tok"), "", nil, false, 2380, 2379)
	if h.DataDir == nil || h.DataDir.Present || h.EtcdVersion != "" {
		t.Errorf("absent: data dir %+v version %q", h.DataDir, h.EtcdVersion)
	}
}

// When every process named like etcd runs the installed binary itself,
// the script does not start it for its version (the running member's
// status says it); when one runs another file, it does.
func TestHostScriptRunningBinary(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep here")
	}
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	binDir, otherDir := filepath.Join(dir, "bin"), filepath.Join(dir, "other")
	for _, d := range []string{binDir, otherDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "etcd"), data, 0o755); err != nil {
			t.Fatal(err)
		}
		// Started through this link, the process is named etcd-rescue-run
		// (its comm) and runs d/etcd.
		if err := os.Symlink(filepath.Join(d, "etcd"), filepath.Join(d, "etcd-rescue-run")); err != nil {
			t.Fatal(err)
		}
	}
	start := func(d string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(d, "etcd-rescue-run"), "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	spec := probeSpec{Token: "tok", Layout: "static-pod", Manifest: filepath.Join(dir, "none.yaml"), DataDir: filepath.Join(dir, "data"),
		BinDir: binDir, Process: "etcd-rescue-run"}
	probe := func() (*Host, probeExtra, string) {
		out, err := exec.Command("sh", "-c", hostScript(spec)).Output()
		if err != nil {
			t.Fatal(err)
		}
		h, x := readProbe(spec, parseSections(string(out), "tok"), "", nil, false, 2380, 2379)
		return h, x, string(out)
	}

	cmd := start(binDir)
	h, x, out := probe()
	if !h.Service.Running || x.bin != filepath.Join(binDir, "etcd") || x.runningPIDs != strconv.Itoa(cmd.Process.Pid) || h.EtcdVersion != "" {
		t.Errorf("same binary running: running %v extra %+v version %q\n%s", h.Service.Running, x, h.EtcdVersion, out)
	}
	if strings.Contains(out, "coreutils") {
		t.Errorf("the binary was started for its version:\n%s", out)
	}

	start(otherDir)
	_, x, out = probe()
	if x.runningPIDs != "" || !strings.Contains(out, "coreutils") {
		t.Errorf("another file running too: extra %+v, want `etcd --version` run\n%s", x, out)
	}
}

// silentListener accepts TCP connections and never speaks: an SSH
// handshake to it waits until the timeout.
func silentListener(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

// acceptKey makes srv accept the private key file key too.
func acceptKey(t *testing.T, srv *sshxtest.Server, key string) {
	t.Helper()
	b, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(srv.Dir, "authorized_keys"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(ssh.MarshalAuthorizedKey(signer.PublicKey())); err != nil {
		t.Fatal(err)
	}
}

func loadInventory(t *testing.T, dir, yaml string) *plans.Plan {
	t.Helper()
	path := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p, fs := plans.LoadInventory(path)
	if p == nil || fs.Errors() > 0 {
		t.Fatalf("inventory: %v\n%s", fs, yaml)
	}
	for _, f := range fs {
		t.Logf("inventory: %v", f)
	}
	return p
}

// A real collection: a host reached over a real sshd with a real etcd
// member answering through the SSH tunnel, a member whose port is closed
// on a reachable host, and hosts that cannot be asked (silent, refused,
// unknown and changed host keys, refused login), all in about one timeout,
// nothing written, every connection closed at the end.
func TestCollect(t *testing.T) {
	bin := etcdtest.Binary(t)
	srv := sshxtest.Start(t)
	other := sshxtest.Start(t) // not in known_hosts
	srv2 := sshxtest.Start(t)  // one address per host: local2
	srv3 := sshxtest.Start(t)  // noauth
	acceptKey(t, srv2, srv.ClientKey)
	acceptKey(t, srv3, srv.ClientKey)
	dataDir, _ := stoppedMember(t, bin)
	m1 := etcdtest.Start(t, etcdtest.Options{Binary: bin, Name: "m1"})
	m1.WaitHealthy(t)

	dir := t.TempDir()
	host := filepath.Join(dir, "host")
	if err := os.MkdirAll(host, 0o700); err != nil {
		t.Fatal(err)
	}
	// the certificate files the settings name: the server's is there (with
	// its key after it), the peer's is not
	certPEM, keyPEM, err := pki.Issue(testCA(t), pki.Request{CommonName: "m1", IPs: []net.IP{net.IPv4(127, 0, 0, 1).To4()},
		KeyType: pki.ECDSAP256, Valid: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	serverCrt, peerCrt := filepath.Join(host, "server.crt"), filepath.Join(host, "peer.crt")
	if err := os.WriteFile(serverCrt, append(certPEM, keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	env := filepath.Join(host, "etcd.env")
	if err := os.WriteFile(env, []byte("ETCD_NAME=m1\nETCD_INITIAL_CLUSTER=\"m1="+m1.PeerURL+"\"\nETCD_INITIAL_CLUSTER_STATE=new\n"+
		"ETCD_CERT_FILE="+serverCrt+"\nETCD_PEER_CERT_FILE="+peerCrt+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// known_hosts: the test sshd, and another key for "localhost" on its port.
	var kh []byte
	for _, s := range []*sshxtest.Server{srv, srv2, srv3} {
		b, err := os.ReadFile(s.KnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		kh = append(kh, b...)
	}
	fake := filepath.Join(dir, "fake_known")
	sshxtest.WriteKnownHosts(t, fake, fmt.Sprintf("localhost:%d", srv.Port), sshxtest.WriteKey(t, filepath.Join(dir, "fake_key")))
	fb, _ := os.ReadFile(fake)
	knownHosts := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(knownHosts, append(kh, fb...), 0o600); err != nil {
		t.Fatal(err)
	}

	free := func() string { return etcdtest.FreeURL(t) }
	down := free()
	inv := loadInventory(t, dir, fmt.Sprintf(`cluster:
  name: t
  etcdVersion: "3.6"
  layout: {dataDir: %[1]s, envFile: %[2]s, unit: etcd-rescue-test-none, binDir: %[3]s}
  members:
    - {name: m1, host: local, peerURL: %[4]q, clientURL: %[5]q}
    - {name: m2, host: local2, peerURL: %[6]q, clientURL: %[7]q}
    - {name: m3, host: silent, peerURL: %[8]q, clientURL: %[9]q}
    - {name: m4, host: refused, peerURL: %[10]q, clientURL: %[11]q}
    - {name: m5, host: unknown, peerURL: %[12]q, clientURL: %[13]q}
    - {name: m6, host: changed, peerURL: %[14]q, clientURL: %[15]q}
    - {name: m7, host: noauth, peerURL: %[16]q, clientURL: %[17]q}
hosts:
  local: {address: 127.0.0.1, port: %[18]d}
  local2: {address: 127.0.0.1, port: %[25]d}
  silent: {address: 127.0.0.1, port: %[19]d}
  refused: {address: 127.0.0.1, port: %[20]d}
  unknown: {address: 127.0.0.1, port: %[21]d}
  changed: {address: localhost, port: %[18]d}
  noauth: {address: 127.0.0.1, port: %[26]d, user: no-such-user-facts}
ssh: {user: %[22]s, identity: %[23]s, knownHosts: %[24]s}
`, dataDir, env, filepath.Dir(bin), m1.PeerURL, m1.ClientURL, free(), down, free(), free(), free(), free(), free(), free(),
		free(), free(), free(), free(), srv.Port, silentListener(t), sshxtest.FreePort(t), other.Port, srv.User, srv.ClientKey, knownHosts, srv2.Port, srv3.Port))

	before := treeState(t, host, dataDir)
	// generous: under -race on a loaded 2-core machine the probes need
	// seconds
	const timeout = 12 * time.Second
	// The addresses as ip says them, before and after (a bridge may come
	// or go meanwhile, e.g. a rehearsal lab's).
	ipAddrs := func() string {
		out, err := exec.Command("ip", "-o", "addr", "show", "scope", "global").Output()
		if err != nil {
			return ""
		}
		a := parseIPAddrs(string(out))
		sort.Strings(a)
		return fmt.Sprint(a)
	}
	ipBefore := ipAddrs()
	start := time.Now()
	f, err := Collect(context.Background(), inv, Options{Timeout: timeout, Inventory: "inventory.yaml"})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("collection of %d hosts (timeout %s each) took %s (Elapsed %s)", len(f.Hosts), timeout, took, time.Duration(f.Elapsed))
	if took > 3*timeout {
		t.Errorf("collection took %s, more than 3 x %s", took, timeout)
	}
	sameTree(t, before, treeState(t, host, dataDir))

	if f.Kind != Kind || f.Version != Version || f.Inventory != "inventory.yaml" || f.Timeout != Duration(timeout) || f.Elapsed == 0 || f.CollectedAt.IsZero() {
		t.Errorf("header: %+v", f)
	}
	var names []string
	for _, h := range f.Hosts {
		names = append(names, h.Name)
	}
	if got := strings.Join(names, " "); got != "changed local local2 noauth refused silent unknown" {
		t.Errorf("hosts not sorted: %s", got)
	}
	for i, m := range f.Members {
		if want := fmt.Sprintf("m%d", i+1); m.Name != want {
			t.Errorf("member %d is %s, want %s (inventory order)", i, m.Name, want)
		}
	}
	wantReach := map[string]Reach{"local": ReachOK, "local2": ReachOK, "silent": ReachTimeout, "refused": ReachRefused,
		"unknown": ReachHostKeyUnknown, "changed": ReachHostKeyChanged, "noauth": ReachAuthFailed}
	for n, want := range wantReach {
		h := f.HostByName(n)
		if h.Reach != want {
			t.Errorf("host %s: reach %s (%s), want %s", n, h.Reach, h.Error, want)
		}
		if want != ReachOK && (h.Error == "" || h.Service != nil) {
			t.Errorf("host %s: %+v", n, h)
		}
	}

	local := f.HostByName("local")
	if local.Member != "m1" || local.Service == nil || !local.Service.Running || local.Service.Kind != "systemd" || local.Service.Unit != "etcd-rescue-test-none" {
		t.Errorf("local service: %+v %+v", local, local.Service)
	}
	if local.DataDir == nil || !local.DataDir.Present || !local.DataDir.HasMember || local.DataDir.SizeBytes == 0 {
		t.Errorf("local data dir: %+v", local.DataDir)
	}
	if want := etcdVersionOf(t, bin); local.EtcdVersion != want {
		t.Errorf("local etcd version %q, want %q", local.EtcdVersion, want)
	}
	if s := local.Settings; s == nil || s.Source != env || s.Name != "m1" || s.InitialCluster != "m1="+m1.PeerURL || s.InitialClusterState != "new" {
		t.Errorf("local settings: %+v", s)
	}
	// read over the host's SSH connection; nothing of the key
	if c := local.Certificates; len(c) != 2 || c[0].Path != serverCrt || c[0].Setting != "ETCD_CERT_FILE" || !c[0].Present || c[0].Error != "" ||
		c[0].Subject != "CN=m1" || fmt.Sprint(c[0].SANs) != "[IP:127.0.0.1]" || c[0].KeyType != "ecdsa-p256" ||
		c[1].Path != peerCrt || c[1].Setting != "ETCD_PEER_CERT_FILE" || c[1].Present || c[1].Error != "" {
		t.Errorf("local certificates: %+v", c)
	}
	if local.PeerPort == nil || !*local.PeerPort || local.ClientPort == nil || !*local.ClientPort {
		t.Errorf("local ports: peer %v client %v", local.PeerPort, local.ClientPort)
	}
	if ipBefore != "" {
		// As a set: ip lists them by interface, /proc/net by address.
		got := append([]string(nil), local.Addresses...)
		sort.Strings(got)
		if after := ipAddrs(); fmt.Sprint(got) != ipBefore && fmt.Sprint(got) != after {
			t.Errorf("addresses %v, want %v (ip before) or %v (after)", got, ipBefore, after)
		}
	}
	if l2 := f.HostByName("local2"); l2.ClientPort == nil || *l2.ClientPort {
		t.Errorf("local2: client port %v, want closed", l2.ClientPort)
	}

	// m1 answered through the tunnel; compare with asking it directly.
	cli, err := etcdapi.New(etcdapi.Config{Endpoints: []string{m1.ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	st, err := cli.Status(context.Background(), m1.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	mf := f.MemberByName("m1")
	if mf.API != APIAnswered || mf.Status == nil {
		t.Fatalf("m1: %+v", mf)
	}
	s := mf.Status
	if s.MemberID != etcdapi.FormatID(st.MemberID) || s.ClusterID != etcdapi.FormatID(st.ClusterID) || s.Leader != s.MemberID ||
		s.Revision != st.Revision || s.RaftIndex == 0 || s.DBSize == 0 || s.Version == "" || s.IsLearner {
		t.Errorf("m1 status %+v, direct %+v", s, st)
	}
	if len(mf.MemberList) != 1 || mf.MemberList[0].Name != "m1" || mf.MemberList[0].ID != s.MemberID || mf.MemberList[0].PeerURLs[0] != m1.PeerURL {
		t.Errorf("m1 member list: %+v", mf.MemberList)
	}
	if mf.HashKV == nil || mf.HashKV.Revision != s.Revision || mf.HashKV.Hash == 0 {
		t.Errorf("m1 hashkv: %+v", mf.HashKV)
	}
	if m2 := f.MemberByName("m2"); m2.API != APIDown || m2.Status != nil {
		t.Errorf("m2 (closed port on a reachable host): %+v", m2)
	}
	for _, n := range []string{"m3", "m4", "m5", "m6", "m7"} {
		if m := f.MemberByName(n); m.API != APICouldNotAsk || m.Error == "" {
			t.Errorf("%s: %+v", n, m)
		}
	}

	// Every connection was closed: sshd's per-connection processes end.
	deadline := time.Now().Add(10 * time.Second)
	for len(srv.ConnectionPIDs()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(srv.ConnectionPIDs()); n > 0 {
		t.Errorf("%d ssh connections still open after Collect", n)
	}
}

// With clientAccess: direct the member is asked without SSH, so a member
// answers even though its host cannot be reached over SSH.
func TestCollectDirectAccess(t *testing.T) {
	bin := etcdtest.Binary(t)
	m1 := etcdtest.Start(t, etcdtest.Options{Binary: bin, Name: "m1"})
	m1.WaitHealthy(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	sshxtest.WriteKey(t, key)
	inv := loadInventory(t, dir, fmt.Sprintf(`cluster:
  name: t
  etcdVersion: "3.6"
  clientAccess: direct
  members:
    - {name: m1, host: h1, peerURL: %q, clientURL: %q}
    - {name: m2, host: h2, peerURL: %q, clientURL: %q}
hosts:
  h1: {address: 127.0.0.1, port: %d}
  h2: {address: 127.0.0.1, port: %d}
ssh: {identity: %s, knownHosts: %s}
`, m1.PeerURL, m1.ClientURL, etcdtest.FreeURL(t), etcdtest.FreeURL(t), sshxtest.FreePort(t), sshxtest.FreePort(t), key, filepath.Join(dir, "known_hosts")))
	f, err := Collect(context.Background(), inv, Options{Timeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if h := f.HostByName("h1"); h.Reach != ReachRefused {
		t.Errorf("h1: %+v", h)
	}
	if m := f.MemberByName("m1"); m.API != APIAnswered || m.Status == nil || !m.Status.HasLeader() {
		t.Errorf("m1: %+v", m)
	}
	if m := f.MemberByName("m2"); m.API != APIDown {
		t.Errorf("m2 (refused directly): %+v", m)
	}
}

// A missing identity file stops the collection before it starts.
func TestCollectMissingIdentity(t *testing.T) {
	dir := t.TempDir()
	inv := loadInventory(t, dir, `cluster:
  name: t
  etcdVersion: "3.6"
  members:
    - {name: m1, host: h1, peerURL: "http://10.0.0.1:2380", clientURL: "http://10.0.0.1:2379"}
hosts:
  h1: {address: 10.0.0.1}
ssh: {identity: no-such-key}
`)
	f, err := Collect(context.Background(), inv, Options{})
	if err == nil || f != nil || !strings.Contains(err.Error(), "no-such-key") {
		t.Errorf("facts %v, err %v", f, err)
	}
}

// With Options.Client the collection uses the caller's connection (an
// apply session's, kept for its host locks and steps): two collections
// and the tunnel to the member cost one SSH connection, which stays open
// afterwards; a host without a client is could not ask.
func TestCollectOnCallersConnection(t *testing.T) {
	bin := etcdtest.Binary(t)
	srv := sshxtest.Start(t)
	m1 := etcdtest.Start(t, etcdtest.Options{Binary: bin, Name: "m1"})
	m1.WaitHealthy(t)
	dir := t.TempDir()
	inv := loadInventory(t, dir, fmt.Sprintf(`cluster:
  name: t
  etcdVersion: "3.6"
  layout: {dataDir: %[1]s, envFile: %[1]s/etcd.env, unit: etcd-rescue-test-none, binDir: %[2]s}
  members:
    - {name: m1, host: local, peerURL: %[3]q, clientURL: %[4]q}
    - {name: m2, host: gone, peerURL: %[5]q, clientURL: %[6]q}
hosts:
  local: {address: 127.0.0.1, port: %[7]d}
  gone: {address: 127.0.0.1, port: %[8]d}
ssh: {user: %[9]s, identity: %[10]s, knownHosts: %[11]s}
`, dir, filepath.Dir(bin), m1.PeerURL, m1.ClientURL, etcdtest.FreeURL(t), etcdtest.FreeURL(t), srv.Port, sshxtest.FreePort(t),
		srv.User, srv.ClientKey, srv.KnownHosts))
	client := localClient(t, inv)
	clients := func(host string) (*sshx.Client, error) {
		if host == "local" {
			return client, nil
		}
		return nil, fmt.Errorf("no client for host %s", host)
	}
	for i := range 2 {
		f, err := Collect(context.Background(), inv, Options{Timeout: 12 * time.Second, Client: clients})
		if err != nil {
			t.Fatal(err)
		}
		if h := f.HostByName("local"); h.Reach != ReachOK || h.Service == nil || h.DataDir == nil {
			t.Errorf("collection %d: local: %+v", i, h)
		}
		if m := f.MemberByName("m1"); m.API != APIAnswered || m.Status == nil {
			t.Errorf("collection %d: m1 (through the caller's tunnel): %+v", i, m)
		}
		if h := f.HostByName("gone"); h.Reach.Asked() || !strings.Contains(h.Error, "no client for host gone") {
			t.Errorf("collection %d: gone: %+v", i, h)
		}
		if m := f.MemberByName("m2"); m.API != APICouldNotAsk {
			t.Errorf("collection %d: m2 (its host not asked): %+v", i, m)
		}
	}
	if n := client.Dials(); n != 1 {
		t.Errorf("the caller's client dialled %d times for two collections, want 1", n)
	}
	// still the caller's: open after the collections
	if _, err := client.Run(context.Background(), "true", sshx.RunOpts{}); err != nil || client.Dials() != 1 {
		t.Errorf("the caller's connection after the collections: err %v, dials %d", err, client.Dials())
	}
}

// The installed binary's version comes from a member's status only when
// its client URL leads to the host: one of the host's addresses, or its
// loopback through the host's SSH tunnel (not when dialled directly).
func TestInstalledVersionFromStatus(t *testing.T) {
	tunnel := &collector{inv: &plans.Plan{Cluster: &plans.Cluster{ClientAccess: "ssh-tunnel"}}}
	direct := &collector{inv: &plans.Plan{Cluster: &plans.Cluster{ClientAccess: "direct"}}}
	addrs := []string{"10.0.0.1", "fd00::1"}
	cases := []struct {
		c    *collector
		url  string
		want bool
	}{
		{tunnel, "http://10.0.0.1:2379", true},
		{tunnel, "https://[fd00::1]:2379", true},
		{tunnel, "http://127.0.0.1:2379", true},
		{tunnel, "http://localhost:2379", true},
		{tunnel, "http://10.0.0.2:2379", false},
		{tunnel, "http://node1:2379", false},
		{direct, "http://10.0.0.1:2379", true},
		{direct, "http://127.0.0.1:2379", false},
	}
	for _, c := range cases {
		if got := c.c.leadsTo(c.url, addrs); got != c.want {
			t.Errorf("%s %s: leadsTo %v, want %v", c.c.inv.Cluster.ClientAccess, c.url, got, c.want)
		}
	}
	h := &Host{Addresses: addrs}
	ms := []*plans.Member{{Name: "m1", ClientURL: "http://10.0.0.1:2379"}}
	tunnel.deadline = time.Now().Add(5 * time.Second)
	st := make(chan *Status, 1)
	st <- &Status{Version: "3.5.35"}
	v, note := tunnel.installedVersion(context.Background(), nil, h, probeExtra{bin: "/usr/bin/etcd", runningPIDs: "1"}, ms,
		[]chan *Status{st})
	if v != "3.5.35" || note != "" {
		t.Errorf("from status: %q %q", v, note)
	}
}

// A probe that hangs on the host (here an "etcd" whose --version never
// returns) is killed a second before the collection's deadline, and what
// the script printed before it is kept.
func TestCollectHungProbe(t *testing.T) {
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	binDir := filepath.Join(dir, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	const marker = "31.25" // no other test sleeps this long
	if err := os.WriteFile(filepath.Join(binDir, "etcd"), []byte("#!/bin/sh\nexec sleep "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etcd.env"), []byte("ETCD_NAME=m1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv := loadInventory(t, dir, fmt.Sprintf(`cluster:
  name: t
  etcdVersion: "3.6"
  layout: {dataDir: %[1]s, envFile: %[1]s/etcd.env, unit: etcd-rescue-test-none, binDir: %[2]s}
  members:
    - {name: m1, host: local, peerURL: %[3]q, clientURL: %[4]q}
hosts:
  local: {address: 127.0.0.1, port: %[5]d}
ssh: {user: %[6]s, identity: %[7]s, knownHosts: %[8]s}
`, dir, binDir, etcdtest.FreeURL(t), etcdtest.FreeURL(t), srv.Port, srv.User, srv.ClientKey, srv.KnownHosts))
	const timeout = 4 * time.Second
	start := time.Now()
	f, err := Collect(context.Background(), inv, Options{Timeout: timeout})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	h := f.HostByName("local")
	if h.Reach != ReachOK || h.DataDir == nil || !h.DataDir.Present || h.Settings == nil || h.Settings.Name != "m1" || h.EtcdVersion != "" {
		t.Errorf("local: %+v data dir %+v settings %+v", h, h.DataDir, h.Settings)
	}
	joined := strings.Join(h.Notes, "\n")
	for _, w := range []string{"probe script:", "etcd --version: did not finish"} {
		if !strings.Contains(joined, w) {
			t.Errorf("notes lack %q:\n%s", w, joined)
		}
	}
	if took > timeout+time.Second {
		t.Errorf("collection took %s, timeout %s", took, timeout)
	}
	// The hung process was killed with the script.
	time.Sleep(200 * time.Millisecond)
	if out, err := exec.Command("pgrep", "-f", "sleep "+marker).Output(); err == nil {
		t.Errorf("the hung probe still runs: pids %s", out)
	}
}

// A member that does not answer its status in time does not cost the
// version: etcd --version is asked once the wait (a quarter of what is
// left) is over.
func TestInstalledVersionMemberSilent(t *testing.T) {
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "etcd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'etcd Version: 9.9.9'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	inv := loadInventory(t, dir, fmt.Sprintf(`cluster:
  name: t
  etcdVersion: "3.6"
  members:
    - {name: m1, host: local, peerURL: "http://127.0.0.1:2380", clientURL: "http://127.0.0.1:2379"}
hosts:
  local: {address: 127.0.0.1, port: %d}
ssh: {user: %s, identity: %s, knownHosts: %s}
`, srv.Port, srv.User, srv.ClientKey, srv.KnownHosts))
	client := localClient(t, inv)
	if err := client.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := &collector{inv: inv, deadline: time.Now().Add(2 * time.Second)}
	start := time.Now()
	v, note := c.installedVersion(context.Background(), client, &Host{}, probeExtra{bin: bin, runningPIDs: "1"}, inv.Cluster.Members,
		[]chan *Status{make(chan *Status)}) // never answers
	if took := time.Since(start); v != "9.9.9" || note != "" || took > 1500*time.Millisecond {
		t.Errorf("version %q note %q after %s", v, note, took)
	}
}

// localClient is an sshx client of the inventory's host "local", closed
// at the test's end.
func localClient(t *testing.T, inv *plans.Plan) *sshx.Client {
	t.Helper()
	cfg, err := access.SSHConfig(inv, inv.Hosts["local"])
	if err != nil {
		t.Fatal(err)
	}
	client, err := sshx.New("local", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// TestClusterOfKubernetes: the inventory's cluster.kubernetes is copied
// into the facts (control plane and its hosts, defaults applied), and left
// out without the section.
func TestClusterOfKubernetes(t *testing.T) {
	p := &plans.Plan{Cluster: &plans.Cluster{Name: "k", Layout: plans.Layout{Service: "static-pod"},
		Members: []*plans.Member{{Name: "cp1", Host: "h1"}, {Name: "cp2", Host: "h2"}}}}
	if c := clusterOf(p); c.ControlPlane != "" || c.ControlPlaneHosts != nil {
		t.Errorf("without cluster.kubernetes: %q %v", c.ControlPlane, c.ControlPlaneHosts)
	}
	p.Cluster.Kubernetes = &plans.Kubernetes{}
	p.ApplyDefaults()
	c := clusterOf(p)
	if c.ControlPlane != "static-pod" || strings.Join(c.ControlPlaneHosts, ",") != "h1,h2" {
		t.Errorf("controlPlane %q hosts %v, want static-pod h1,h2", c.ControlPlane, c.ControlPlaneHosts)
	}
}
