package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Fixed names and addresses of the lab network.  Only one lab can be up on a
// machine at a time.
const (
	DefaultStateDir  = "/var/tmp/etcd-rescue-lab"
	DefaultRootfsDir = "/var/cache/etcd-rescue-lab/rootfs"
	BridgeName       = "etcdlab0"
	GatewayAddr      = "10.77.0.1"
	subnetPrefix     = "10.77.0."
	netnsPrefix      = "etcdlab-"  // + host name: etcdlab-h1
	vethPrefix       = "etcdlab-v" // + host index: etcdlab-v1 (root side)
	claimFile        = "/run/etcd-rescue-lab.owner"
	lockFile         = "/run/etcd-rescue-lab.lock"
	stateFile        = "lab.json"
)

// Data written by Up: Keys keys KeyPrefix%09d with deterministic values.
const (
	KeyPrefix   = "/lab/k/"
	ValueSize   = 100
	DefaultKeys = 1000
)

// Mode is how a lab host is made.
type Mode string

const (
	// ModeAuto picks ModeNspawn when it can run here, else ModeLight.
	ModeAuto Mode = ""
	// ModeNspawn boots a bookworm rootfs with systemd-nspawn: real systemd.
	ModeNspawn Mode = "nspawn"
	// ModeLight runs the machine's own sshd in per-host namespaces, with a
	// systemctl-compatible shim instead of systemd.
	ModeLight Mode = "light"
)

// Options of Up.  Zero values mean the defaults.
type Options struct {
	Members  int       // cluster size, 1..9 (default 3)
	Version  string    // "3.5", "3.6", "3.7" or a full version such as "3.5.35" (default "3.5")
	Keys     int       // keys written and fingerprinted (default 1000; negative: none)
	StateDir string    // default DefaultStateDir
	Log      io.Writer // progress messages (default io.Discard)
	Mode     Mode      // default ModeAuto

	// BinDir holds <version>/{etcd,etcdctl,etcdutl}; default: $ETCD_RESCUE_LAB_BIN,
	// else lab/bin of the etcd-rescue checkout found above the working directory.
	BinDir string
	// RootfsDir is the debootstrap'd rootfs of the nspawn mode (default:
	// $ETCD_RESCUE_LAB_ROOTFS, else DefaultRootfsDir).
	RootfsDir string
	// WaitBusy: when another lab is up, wait up to this long for it to go down
	// instead of failing at once (for test binaries running in parallel).
	WaitBusy time.Duration
	// TLS: etcd with https client and peer URLs and client certificates
	// required on both; a CA and an operator client certificate are made
	// under <state>/pki (see PKIDir), every host gets a member certificate
	// of its own, valid only for its address at the time (and loopback,
	// localhost, its name), as a real cluster has: an IP change or a
	// replacement host needs a new one (IssueMemberCert).  The inventory
	// gets cluster.tls and vars.caCert, vars.caKey.
	TLS bool
	// TLSSharedCert (with TLS): one member certificate, valid for every
	// address a lab host can ever have, on every host instead (no new
	// certificate is ever needed).
	TLSSharedCert bool
	// Layout is how etcd runs on the hosts: LayoutSystemd ("" too: a
	// systemd unit) or LayoutStaticPod (kubeadm's static pods for etcd and
	// kube-apiserver under a real kubelet with containerd; light host mode
	// and TLS only; Up also creates ConfigMapCount ConfigMaps through the
	// API server and fingerprints them).
	Layout string
	// S3: also a real S3-compatible object store (SeaweedFS, make s3-bins)
	// on this machine, on 127.0.0.1 only, https with a certificate the
	// lab's CA signs (the CA is made even without TLS), one key pair made
	// for the lab and the bucket S3Bucket; the inventory gets its s3:
	// section and vars.s3AccessKey, s3SecretKey, s3Bucket (see S3, S3Dir).
	S3 bool
	// StateStore: also a management etcd on this machine (the lab's etcd
	// binary, one member on 127.0.0.1, https with a certificate the lab's
	// CA signs, client certificates required): the team's shared store of
	// run state and run locks; the inventory gets its state: section (see
	// StateStoreOf, StopStateStore, StartStateStore).
	StateStore bool
}

// Host is one lab machine.
type Host struct {
	Name    string `json:"name"`    // h1, h2...
	Index   int    `json:"index"`   // N of hN
	Address string `json:"address"` // current IPv4 address
	PID     int    `json:"pid"`     // systemd-nspawn (nspawn mode) or sshd (light mode)
}

// Netns is the name of the host's network namespace.
func (h *Host) Netns() string { return netnsPrefix + h.Name }

func (h *Host) veth() string { return fmt.Sprintf("%s%d", vethPrefix, h.Index) }

// Member is one etcd member of the lab's cluster, as it must be after
// recovery: the inventory describes this.
type Member struct {
	Name string `json:"name"` // etcd1...
	Host string `json:"host"` // h1...
}

// SnapshotInfo describes the snapshot left by the total-loss break.
type SnapshotInfo struct {
	Path     string    `json:"path"`
	SHA256   string    `json:"sha256"`
	Revision int64     `json:"revision"`
	Member   string    `json:"member"`
	Taken    time.Time `json:"taken"`
}

type state struct {
	Mode   Mode   `json:"mode"`
	Layout string `json:"layout,omitempty"` // "" (systemd) or LayoutStaticPod
	TLS    bool   `json:"tls,omitempty"`    // https URLs, certificates in <state>/pki
	// one member certificate for every address (Options.TLSSharedCert)
	TLSSharedCert bool              `json:"tlsSharedCert,omitempty"`
	Version       string            `json:"version"` // full, with v: v3.5.35
	BinDir        string            `json:"binDir"`
	RootfsDir     string            `json:"rootfsDir,omitempty"`
	SeedToken     string            `json:"seedToken"` // --initial-cluster-token the lab's cluster was made with
	Token         string            `json:"token"`     // token for a new cluster made by a plan (inventory)
	Keys          int               `json:"keys"`
	Hosts         []*Host           `json:"hosts"`
	Members       []*Member         `json:"members"`
	NextIndex     int               `json:"nextIndex"`
	Created       time.Time         `json:"created"`
	Breaks        []string          `json:"breaks,omitempty"`
	Vars          map[string]string `json:"vars,omitempty"` // extra inventory vars left by breaks (lostPeerURL...)
	Snapshot      *SnapshotInfo     `json:"snapshot,omitempty"`
	Isolated      []string          `json:"isolated,omitempty"` // hosts cut off the lab network (Isolate)
	// inventory variants written by WriteInventory (path: options); a break rewrites them
	Inventories map[string]InventoryOptions `json:"inventories,omitempty"`
	S3          *s3State                    `json:"s3,omitempty"` // the object store (Options.S3)
}

// Lab is a lab that is up (or partly up, while Up runs or after a failure).
type Lab struct {
	dir string
	log io.Writer
	drv driver

	mu sync.Mutex // guards st
	st state

	saveMu sync.Mutex // serializes writes of lab.json
}

// ErrNotUp is returned by Open when the state dir holds no lab.
var ErrNotUp = errors.New("no lab is up")

// StateDir is the lab's state directory.
func (l *Lab) StateDir() string { return l.dir }

// Mode is the host mode of the lab.
func (l *Lab) Mode() Mode { return l.st.Mode }

// Version is the full etcd version on the hosts, e.g. "3.5.35".
func (l *Lab) Version() string { return strings.TrimPrefix(l.st.Version, "v") }

// BinDir is the directory of the lab's etcd, etcdctl and etcdutl binaries on
// the operator machine.
func (l *Lab) BinDir() string { return filepath.Join(l.st.BinDir, l.st.Version) }

// InventoryPath is the plan inventory describing the lab's cluster.
func (l *Lab) InventoryPath() string { return filepath.Join(l.dir, "inventory.yaml") }

// SnapshotPath is where the total-loss break leaves its snapshot.
func (l *Lab) SnapshotPath() string { return filepath.Join(l.dir, "snapshots", "lab.db") }

// SSHDir holds id_ed25519, known_hosts, config and the host keys.
func (l *Lab) SSHDir() string { return filepath.Join(l.dir, "ssh") }

// SetLog changes where progress messages go.
func (l *Lab) SetLog(w io.Writer) {
	if w == nil {
		w = io.Discard
	}
	l.log = w
}

// Hosts returns a copy of the lab's current hosts, by index.
func (l *Lab) Hosts() []Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Host, 0, len(l.st.Hosts))
	for _, h := range l.st.Hosts {
		out = append(out, *h)
	}
	return out
}

// Members returns a copy of the cluster's members (as the inventory has them).
func (l *Lab) Members() []Member {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Member, 0, len(l.st.Members))
	for _, m := range l.st.Members {
		out = append(out, *m)
	}
	return out
}

// Host returns the host named name (h1...).
func (l *Lab) Host(name string) (Host, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h := l.hostLocked(name); h != nil {
		return *h, true
	}
	return Host{}, false
}

func (l *Lab) hostLocked(name string) *Host {
	for _, h := range l.st.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// MemberURLs returns the peer and client URL of member name.
func (l *Lab) MemberURLs(name string) (peer, client string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.st.Members {
		if m.Name == name {
			h := l.hostLocked(m.Host)
			if h == nil {
				return "", "", fmt.Errorf("member %s: host %s is gone", name, m.Host)
			}
			return l.peerURL(h.Address), l.clientURL(h.Address), nil
		}
	}
	return "", "", fmt.Errorf("no member %s", name)
}

// scheme of the lab's client and peer URLs: https in a TLS lab.
func (l *Lab) scheme() string {
	if l.st.TLS {
		return "https"
	}
	return "http"
}

func (l *Lab) peerURL(addr string) string   { return l.scheme() + "://" + addr + ":2380" }
func (l *Lab) clientURL(addr string) string { return l.scheme() + "://" + addr + ":2379" }

func (l *Lab) logf(format string, a ...any) {
	fmt.Fprintf(l.log, format+"\n", a...)
}

func (l *Lab) hostDir(h *Host) string { return filepath.Join(l.dir, "hosts", h.Name) }

// save writes lab.json atomically.
func (l *Lab) save() error {
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	l.mu.Lock()
	b, err := json.MarshalIndent(&l.st, "", "  ")
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	return writeFileAtomic(filepath.Join(l.dir, stateFile), append(b, '\n'), 0o600)
}

// Open returns the lab that is up in stateDir ("" means DefaultStateDir).
// It returns an error wrapping ErrNotUp when there is none.
func Open(stateDir string) (*Lab, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	dir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNotUp, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	l := &Lab{dir: dir, log: io.Discard}
	if err := json.Unmarshal(b, &l.st); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(dir, stateFile), err)
	}
	l.drv = newDriver(l, l.st.Mode)
	return l, nil
}

// Up creates a lab: N hosts, a healthy N-member cluster with Keys keys,
// their fingerprint and the inventory.  On failure everything it made is
// torn down again (the error says why).
func Up(ctx context.Context, o Options) (*Lab, error) {
	t0 := time.Now()
	if o.Members == 0 {
		o.Members = 3
	}
	if o.Members < 1 || o.Members > 9 {
		return nil, fmt.Errorf("members must be between 1 and 9, not %d", o.Members)
	}
	if o.Keys == 0 {
		o.Keys = DefaultKeys
	}
	if o.Keys < 0 {
		o.Keys = 0
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	if o.RootfsDir == "" {
		o.RootfsDir = os.Getenv("ETCD_RESCUE_LAB_ROOTFS")
	}
	if o.RootfsDir == "" {
		o.RootfsDir = DefaultRootfsDir
	}
	if o.TLSSharedCert && !o.TLS {
		return nil, fmt.Errorf("a shared member certificate (TLSSharedCert) needs TLS")
	}
	if o.Mode != ModeAuto && o.Mode != ModeNspawn && o.Mode != ModeLight {
		return nil, fmt.Errorf("unknown host mode %q (want nspawn or light)", o.Mode)
	}
	switch o.Layout {
	case "", LayoutSystemd:
		o.Layout = ""
	case LayoutStaticPod:
		// see lab/README.md: on a cgroup v1 machine an nspawn host sees the
		// v1 controllers (memory, cpu, pids...) read-only, so neither the
		// kubelet nor runc can make a pod's cgroups there
		if o.Mode == ModeNspawn {
			return nil, fmt.Errorf("the static-pod layout runs in the light host mode only (a kubelet needs writable cgroup controllers, which an nspawn host does not get here)")
		}
		o.Mode = ModeLight
		o.TLS = true // etcd under kubeadm always talks TLS
	default:
		return nil, fmt.Errorf("unknown layout %q (want %s or %s)", o.Layout, LayoutSystemd, LayoutStaticPod)
	}
	dir, err := filepath.Abs(o.StateDir)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	pre, err := checkPrereqs(ctx, &o)
	if err != nil {
		return nil, err
	}
	// first run on a machine: build etcd and debootstrap the rootfs at once
	var rootfsErr error
	var wg sync.WaitGroup
	if pre.mode == ModeNspawn {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rootfsErr = EnsureRootfs(ctx, o.RootfsDir, o.Log)
		}()
	}
	binErr := ensureBinaries(ctx, pre, o.Log)
	wg.Wait()
	if err := errors.Join(binErr, rootfsErr); err != nil {
		return nil, err
	}
	if err := claim(ctx, dir, o.WaitBusy, o.Log); err != nil {
		return nil, err
	}
	l := &Lab{dir: dir, log: o.Log}
	l.st = state{
		Mode:          pre.mode,
		Layout:        o.Layout,
		Version:       pre.version,
		BinDir:        pre.binDir,
		RootfsDir:     o.RootfsDir,
		Keys:          o.Keys,
		TLS:           o.TLS,
		TLSSharedCert: o.TLSSharedCert,
		Created:       time.Now().UTC(),
		NextIndex:     o.Members + 1,
	}
	stamp := time.Now().UTC().Format("20060102-150405") + "-" + randHex(2)
	l.st.SeedToken = "lab-seed-" + stamp
	l.st.Token = "lab-" + stamp
	if pre.fallback != "" {
		l.logf("host mode: light (%s)", pre.fallback)
	} else {
		l.logf("host mode: %s", pre.mode)
	}
	if err := l.up(ctx, o); err != nil {
		if pre.mode == ModeNspawn && o.Mode == ModeAuto && errors.Is(err, errNspawnUnusable) {
			l.logf("systemd-nspawn cannot run here (%v); falling back to the light mode", err)
			if derr := l.teardown(context.WithoutCancel(ctx)); derr != nil {
				return nil, errors.Join(err, derr)
			}
			if miss := lightMissing(); len(miss) > 0 {
				return nil, errors.Join(err, &PrereqError{Missing: miss})
			}
			if cerr := claim(ctx, dir, o.WaitBusy, o.Log); cerr != nil {
				return nil, cerr
			}
			l.st.Mode, l.st.Hosts, l.st.Members = ModeLight, nil, nil
			err = l.up(ctx, o)
		}
		if err != nil {
			l.logf("lab up failed; tearing down what was made")
			if derr := l.teardown(context.WithoutCancel(ctx)); derr != nil {
				return nil, errors.Join(err, derr)
			}
			return nil, err
		}
	}
	tlsNote := ""
	if l.st.TLS {
		tlsNote = ", TLS (a member certificate per host, valid for its address only; certificates in " + l.PKIDir() + ")"
		if l.st.TLSSharedCert {
			tlsNote = ", TLS (one shared member certificate for every lab address; certificates in " + l.PKIDir() + ")"
		}
	}
	s3Note := ""
	if s3 := l.S3(); s3 != nil {
		s3Note = fmt.Sprintf(", S3 store at %s (bucket %s)", s3.Endpoint, s3.Bucket)
	}
	if st := l.StateStore(); st != nil {
		s3Note += ", state store at " + st.URL
	}
	kubeNote := ""
	if l.StaticPod() {
		kubeNote = fmt.Sprintf(", static pods under kubelet %s (etcd, kube-apiserver), %d ConfigMaps", KubeVersion, ConfigMapCount)
	}
	l.logf("lab up: %d members, etcd %s, %s mode, %d keys%s%s%s, in %.1fs", o.Members, l.Version(), l.st.Mode, o.Keys, kubeNote, tlsNote, s3Note, time.Since(t0).Seconds())
	l.logf("inventory: %s", l.InventoryPath())
	return l, nil
}

func (l *Lab) up(ctx context.Context, o Options) error {
	l.drv = newDriver(l, l.st.Mode)
	if err := makeStateDir(l.dir); err != nil {
		return err
	}
	for _, d := range []string{filepath.Join(l.dir, "hosts"), filepath.Join(l.dir, "snapshots")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
	}
	if err := l.save(); err != nil {
		return err
	}
	if err := l.ensureClientKey(); err != nil {
		return err
	}
	if l.st.TLS || o.S3 || o.StateStore {
		// the S3 store's and the state store's certificates are signed
		// by the lab's CA too
		if err := l.ensurePKI(); err != nil {
			return err
		}
	}
	if l.StaticPod() {
		if err := l.ensureKubePKI(); err != nil {
			return err
		}
	}
	var s3Start time.Time
	if o.S3 {
		// weed starts while the hosts boot; waitS3 below waits for it
		s3Start = time.Now()
		if err := l.startS3(ctx); err != nil {
			return err
		}
	}
	var storeStart time.Time
	if o.StateStore {
		// etcd starts while the hosts boot; waitStateStore below waits
		storeStart = time.Now()
		if err := l.startStateStore(); err != nil {
			return err
		}
	}
	if err := ensureBridge(ctx); err != nil {
		return err
	}
	if err := l.drv.prepare(ctx); err != nil {
		return err
	}
	t := time.Now()
	for i := 1; i <= o.Members; i++ {
		h := &Host{Name: fmt.Sprintf("h%d", i), Index: i, Address: defaultAddr(i)}
		l.mu.Lock()
		l.st.Hosts = append(l.st.Hosts, h)
		l.st.Members = append(l.st.Members, &Member{Name: fmt.Sprintf("etcd%d", i), Host: h.Name})
		l.mu.Unlock()
	}
	if err := l.save(); err != nil {
		return err
	}
	if err := l.writeSSHFiles(); err != nil {
		return err
	}
	hosts := l.hostPtrs()
	if err := parallel(hosts, func(h *Host) error { return l.createHost(ctx, h, true) }); err != nil {
		return err
	}
	l.logf("%d hosts up and reachable over ssh in %.1fs", len(hosts), time.Since(t).Seconds())
	t = time.Now()
	if l.StaticPod() {
		if err := l.startStaticCluster(ctx); err != nil {
			return err
		}
	} else if err := l.startCluster(ctx); err != nil {
		return err
	}
	l.logf("cluster healthy in %.1fs", time.Since(t).Seconds())
	if o.Keys > 0 {
		t = time.Now()
		fp, err := l.writeKeys(ctx, o.Keys)
		if err != nil {
			return err
		}
		l.logf("wrote %d keys in %.1fs; fingerprint: revision %d, sha256 %s", fp.Keys, time.Since(t).Seconds(), fp.Revision, fp.SHA256[:16])
	}
	if l.StaticPod() {
		t = time.Now()
		if err := l.startAPIServers(ctx); err != nil {
			return err
		}
		l.logf("%d API servers ready (/readyz 200) in %.1fs", len(l.kubeHosts()), time.Since(t).Seconds())
		t = time.Now()
		kfp, err := l.createConfigMaps(ctx)
		if err != nil {
			return err
		}
		l.logf("created %d ConfigMaps in namespace %s through the API server in %.1fs; fingerprint sha256 %s", kfp.ConfigMaps, kfp.Namespace, time.Since(t).Seconds(), kfp.SHA256[:16])
	}
	if o.S3 {
		t = time.Now()
		if err := l.waitS3(ctx); err != nil {
			return err
		}
		s3 := l.S3()
		l.logf("s3: SeaweedFS %s ready: bucket %s made and a first object written, %.1fs after weed started (lab up waited %.1fs for it); RSS %.0f MiB; files in %s",
			SeaweedFSVersion, s3.Bucket, time.Since(s3Start).Seconds(), time.Since(t).Seconds(), float64(rss(s3.PID))/(1<<20), s3.Dir)
	}
	if o.StateStore {
		if err := waitStateStore(ctx, l.dir, true); err != nil {
			return err
		}
		st := l.StateStore()
		l.logf("state store: etcd %s (pid %d) answers at %s, %.1fs after it started; files in %s", l.Version(), st.PID, st.URL, time.Since(storeStart).Seconds(), st.Dir)
	}
	if err := l.writeInventory(); err != nil {
		return err
	}
	return l.save()
}

func (l *Lab) hostPtrs() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.st.Hosts...)
}

// createHost makes host h (network, disk, boot), waits for its sshd and
// provisions it (user etcd, /var/lib/etcd, /etc/etcd, user rescue; in a
// TLS lab also /etc/etcd/pki with the CA, and with memberCert the host's
// member certificate and key).
func (l *Lab) createHost(ctx context.Context, h *Host, memberCert bool) error {
	if err := l.ensureHostKey(h); err != nil {
		return err
	}
	if err := netUp(ctx, h); err != nil {
		return err
	}
	if err := l.drv.create(ctx, h); err != nil {
		return err
	}
	if err := l.save(); err != nil {
		return err
	}
	if err := l.waitSSH(ctx, h, 90*time.Second); err != nil {
		if l.drv.unusable(h) {
			return fmt.Errorf("%w: %s: %w%s", errNspawnUnusable, h.Name, err, l.drv.diag(h))
		}
		return fmt.Errorf("%w%s", err, l.drv.diag(h))
	}
	return l.provision(ctx, h, memberCert)
}

// OperatorUser is the lab hosts' operator account besides root: a normal
// user with a home, the lab's client key in its authorized_keys and
// passwordless sudo (/etc/sudoers.d/rescue), for plans with ssh.user: rescue
// and ssh.sudo: true (see WriteInventory).  Every command it runs through
// sudo is logged to SudoLog on its host.
const (
	OperatorUser = "rescue"
	SudoLog      = "/var/log/sudo-rescue.log"
)

// provisionScript makes a host look like one with the etcd package
// installed: user etcd, an empty /var/lib/etcd owned by it, /etc/etcd; and
// adds the operator account (OperatorUser, SudoLog: keep them in sync; a
// test checks).  Its stdin is the lab's client public key.
// The account's password is "*" (none, but not locked: sshd without PAM,
// as in the light mode, refuses a locked account even with a key).
const provisionScript = `set -e
pub=$(cat)
getent group etcd >/dev/null || groupadd --system etcd
getent passwd etcd >/dev/null || useradd --system --gid etcd --home-dir /var/lib/etcd --no-create-home --shell /usr/sbin/nologin etcd
install -d -o etcd -g etcd -m 0700 /var/lib/etcd
install -d -m 0755 /etc/etcd
command -v etcd >/dev/null && command -v etcdctl >/dev/null && command -v etcdutl >/dev/null
command -v sudo >/dev/null || { echo "sudo is not installed on this host" >&2; exit 1; }
getent passwd rescue >/dev/null || useradd --create-home --user-group --shell /bin/bash rescue
usermod -p '*' rescue
home=$(getent passwd rescue | cut -d: -f6)
install -d -o rescue -g rescue -m 0700 "$home" "$home/.ssh"
printf '%s\n' "$pub" >"$home/.ssh/authorized_keys"
chown rescue:rescue "$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"
mkdir -p /etc/sudoers.d
cat >/etc/sudoers.d/.rescue.tmp <<'EOF'
# etcd-rescue lab: the operator account, passwordless sudo, every command logged
rescue ALL=(ALL) NOPASSWD: ALL
Defaults:rescue logfile=/var/log/sudo-rescue.log, !loglinelen
EOF
chmod 0440 /etc/sudoers.d/.rescue.tmp
visudo -cqf /etc/sudoers.d/.rescue.tmp
mv -f /etc/sudoers.d/.rescue.tmp /etc/sudoers.d/rescue
`

func (l *Lab) provision(ctx context.Context, h *Host, memberCert bool) error {
	pub, err := os.ReadFile(l.ClientKeyPath() + ".pub")
	if err != nil {
		return fmt.Errorf("provision %s: %w", h.Name, err)
	}
	if out, err := l.Run(ctx, h.Name, provisionScript, bytes.NewReader(bytes.TrimSpace(pub))); err != nil {
		return withOutput(fmt.Errorf("provision %s: %w", h.Name, err), out)
	}
	if !l.st.TLS {
		return nil
	}
	if memberCert && !l.st.TLSSharedCert {
		if _, err := l.issueMemberFiles(h); err != nil {
			return fmt.Errorf("provision %s: %w", h.Name, err)
		}
	}
	if l.StaticPod() {
		return l.provisionKube(ctx, h, memberCert)
	}
	return l.installPKI(ctx, h, memberCert)
}

// parallel runs f for every host at once and joins the errors.
func parallel(hosts []*Host, f func(*Host) error) error {
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(h)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func defaultAddr(i int) string { return fmt.Sprintf("%s%d", subnetPrefix, 10+i) }

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := fmt.Sprintf("%s.tmp%d-%s", path, os.Getpid(), randHex(4))
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
