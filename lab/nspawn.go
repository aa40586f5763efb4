package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// driver makes and unmakes hosts in one host mode.  The network namespace
// of a host exists before create and is removed by destroy.
type driver interface {
	prepare(ctx context.Context) error                   // once per lab
	create(ctx context.Context, h *Host) error           // new disk, then boot
	boot(ctx context.Context, h *Host) error             // start the host on its disk
	halt(ctx context.Context, h *Host, hard bool) error  // power off (hard: power cut), disk kept
	destroy(ctx context.Context, h *Host) error          // power cut, disk and network gone
	diag(h *Host) string                                 // log tail for error messages
	unusable(h *Host) bool                               // the host mode cannot run here
	mounted(h *Host) []string                            // mount points the host keeps in the root namespace
	releaseAll(ctx context.Context, hosts []*Host) error // remove what is left (cgroups...)
}

var errNspawnUnusable = errors.New("systemd-nspawn cannot boot a host here")

func newDriver(l *Lab, m Mode) driver {
	if m == ModeLight {
		return &lightDriver{l: l}
	}
	return &nspawnDriver{l: l}
}

// Rootfs of the nspawn mode: a Debian bookworm minbase with these packages
// (keep in sync with LAB_ROOTFS_PACKAGES in lab/lab.mk; a test checks it).
// The marker file in the rootfs holds RootfsStamp: a rootfs made with
// another package list (an older checkout's) is debootstrapped again.
const (
	RootfsSuite    = "bookworm"
	RootfsPackages = "systemd,systemd-sysv,dbus,openssh-server,iproute2,procps,sudo,openssl"
	RootfsStamp    = RootfsSuite + " minbase " + RootfsPackages
	rootfsMarker   = ".etcd-rescue-lab-rootfs"
)

// readRootfsStamp is what the marker of the rootfs in dir says ("" if none).
func readRootfsStamp(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, rootfsMarker))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// rootfsReady: dir holds a rootfs made with today's package list.
func rootfsReady(dir string) bool { return readRootfsStamp(dir) == RootfsStamp }

// rootfsInUse reports whether a mounted overlay (a host disk of a lab that
// is up) has dir as a lower layer.
func rootfsInUse(dir string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "overlay" {
			continue
		}
		for _, o := range strings.Split(f[3], ",") {
			if low, ok := strings.CutPrefix(o, "lowerdir="); ok {
				for _, d := range strings.Split(low, ":") {
					if unescapeMount(d) == dir {
						return true
					}
				}
			}
		}
	}
	return false
}

// EnsureRootfs debootstraps the nspawn hosts' rootfs into dir unless it is
// there with RootfsPackages (about 70 s and 270 MB, once per machine and
// package list; `make lab-rootfs` does the same).  A rootfs made with
// another package list is made again, unless a lab that is up uses it.
// $DEBIAN_MIRROR overrides the Debian mirror.
func EnsureRootfs(ctx context.Context, dir string, log io.Writer) error {
	if rootfsReady(dir) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	lk, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("rootfs lock: %w", err)
	}
	defer lk.Close()
	if err := syscall.Flock(int(lk.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("rootfs lock: %w", err)
	}
	if rootfsReady(dir) {
		return nil
	}
	if old := readRootfsStamp(dir); old != "" {
		// made by an older checkout with other packages: the hosts would
		// lack one (sudo for the operator account...); build it again
		if rootfsInUse(dir) {
			return fmt.Errorf("rootfs %s is out of date (made with %q, this etcd-rescue needs %q) and a lab that is up uses it: take that lab down first (etcd-rescue lab down), then retry", dir, old, RootfsStamp)
		}
		fmt.Fprintf(log, "rootfs %s was made with %q; this etcd-rescue needs %q: building it again\n", dir, old, RootfsStamp)
	}
	mirror := os.Getenv("DEBIAN_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	db, ok := lookPath("debootstrap")
	if !ok {
		return &PrereqError{Missing: []Missing{aptMissing("debootstrap", "debootstrap")}}
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	t := time.Now()
	fmt.Fprintf(log, "debootstrap %s into %s (once per machine, about 70 s)\n", RootfsSuite, dir)
	if _, err := run(ctx, db, "--variant=minbase", "--include="+RootfsPackages, RootfsSuite, tmp, mirror); err != nil {
		return fmt.Errorf("build rootfs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, rootfsMarker), []byte(RootfsStamp+"\n"), 0o644); err != nil {
		return fmt.Errorf("build rootfs: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("build rootfs: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("build rootfs: %w", err)
	}
	fmt.Fprintf(log, "rootfs ready in %.0fs\n", time.Since(t).Seconds())
	return nil
}

// etcdUnit is etcd.service on every host (both modes read the same file).
const etcdUnit = `[Unit]
Description=etcd key-value store (etcd-rescue lab)
Documentation=https://etcd.io/docs/
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
User=etcd
Group=etcd
EnvironmentFile=/etc/etcd/etcd.env
ExecStart=/usr/local/bin/etcd
Restart=on-failure
RestartSec=5s
TimeoutStartSec=90
TimeoutStopSec=30
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`

const sshdConf = `# etcd-rescue lab
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
PrintMotd no
MaxStartups 200:30:400
MaxSessions 100
HostKey /etc/ssh/ssh_host_ed25519_key
`

// units masked in the nspawn hosts: useless or slow in a container.
var maskedUnits = []string{
	"console-getty.service", "getty@.service", "systemd-networkd-wait-online.service",
	"apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_reap.service",
	"e2scrub_all.timer", "fstrim.timer", "systemd-timesyncd.service", "systemd-pstore.service",
}

// nspawnDriver: host = systemd-nspawn --boot of rootfs, overlay
// lower=<state>/layer:<rootfs>, upper=<state>/hosts/hN/upper.
type nspawnDriver struct{ l *Lab }

func (d *nspawnDriver) layer() string { return filepath.Join(d.l.dir, "layer") }

// prepare writes the lab layer: the parts of the hosts' disks that are the
// same on every host (etcd.service, sshd settings, authorized_keys, the etcd
// binaries on PATH).
func (d *nspawnDriver) prepare(ctx context.Context) error {
	base, lay := d.l.st.RootfsDir, d.layer()
	if !rootfsReady(base) {
		return fmt.Errorf("rootfs %s is not ready (make lab-rootfs)", base)
	}
	if err := os.RemoveAll(lay); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	if err := os.Mkdir(lay, 0o755); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	pub, err := os.ReadFile(d.l.ClientKeyPath() + ".pub")
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	files := []struct {
		path string
		data string
		mode os.FileMode
	}{
		{"etc/systemd/system/etcd.service", etcdUnit, 0o644},
		{"etc/ssh/sshd_config.d/etcd-rescue-lab.conf", sshdConf, 0o644},
		{"root/.ssh/authorized_keys", string(pub), 0o600},
	}
	for _, f := range files {
		if err := mkdirLike(lay, base, filepath.Dir(f.path)); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(lay, f.path), []byte(f.data), f.mode); err != nil {
			return fmt.Errorf("layer: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(lay, "root/.ssh"), 0o700); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	for _, u := range maskedUnits {
		if err := os.Symlink("/dev/null", filepath.Join(lay, "etc/systemd/system", u)); err != nil {
			return fmt.Errorf("layer: %w", err)
		}
	}
	for _, dir := range []string{"usr/local/bin", "opt/etcd-bin"} {
		if err := mkdirLike(lay, base, dir); err != nil {
			return err
		}
	}
	for _, b := range []string{"etcd", "etcdctl", "etcdutl"} {
		if err := os.Symlink("/opt/etcd-bin/"+d.l.st.Version+"/"+b, filepath.Join(lay, "usr/local/bin", b)); err != nil {
			return fmt.Errorf("layer: %w", err)
		}
	}
	return nil
}

// mkdirLike creates rel under dst with the mode and owner rel has under src
// (an overlay's upper layers decide a merged directory's attributes).
func mkdirLike(dst, src, rel string) error {
	parts := strings.Split(filepath.Clean(rel), string(filepath.Separator))
	for i := range parts {
		r := filepath.Join(parts[:i+1]...)
		p := filepath.Join(dst, r)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		mode, uid, gid := os.FileMode(0o755), 0, 0
		if st, err := os.Stat(filepath.Join(src, r)); err == nil {
			mode = st.Mode().Perm()
			if s, ok := st.Sys().(*syscall.Stat_t); ok {
				uid, gid = int(s.Uid), int(s.Gid)
			}
		}
		if err := os.Mkdir(p, mode); err != nil {
			return fmt.Errorf("layer: %w", err)
		}
		if err := os.Chmod(p, mode); err != nil {
			return fmt.Errorf("layer: %w", err)
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("layer: %w", err)
		}
	}
	return nil
}

func (d *nspawnDriver) root(h *Host) string { return filepath.Join(d.l.hostDir(h), "root") }

func (d *nspawnDriver) create(ctx context.Context, h *Host) error {
	hd := d.l.hostDir(h)
	for _, s := range []string{"upper", "work", "root"} {
		if err := os.MkdirAll(filepath.Join(hd, s), 0o755); err != nil {
			return fmt.Errorf("disk of %s: %w", h.Name, err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s:%s,upperdir=%s,workdir=%s", d.layer(), d.l.st.RootfsDir, filepath.Join(hd, "upper"), filepath.Join(hd, "work"))
	if err := syscall.Mount("etcdlab-"+h.Name, d.root(h), "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount disk of %s: %w", h.Name, err)
	}
	r := d.root(h)
	key, err := os.ReadFile(d.l.HostKeyPath(h.Name))
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	pub, err := os.ReadFile(d.l.HostKeyPath(h.Name) + ".pub")
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{"etc/hostname", []byte(h.Name + "\n"), 0o644},
		{"etc/hosts", d.l.etcHosts(), 0o644},
		{"etc/machine-id", []byte(randHex(16) + "\n"), 0o444},
		{"etc/ssh/ssh_host_ed25519_key", key, 0o600},
		{"etc/ssh/ssh_host_ed25519_key.pub", pub, 0o644},
	} {
		p := filepath.Join(r, f.path)
		_ = os.Remove(p)
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return fmt.Errorf("disk of %s: %w", h.Name, err)
		}
	}
	return d.boot(ctx, h)
}

// cgroupRoots are the writable cgroup hierarchies nspawn and the container's
// systemd use: the cgroup2 root on a pure v2 machine, else name=systemd v1
// and the cgroup2 "unified" mount of a hybrid machine.
func cgroupRoots() []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup"}
	}
	var out []string
	for _, r := range []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(r); err == nil {
			out = append(out, r)
		}
	}
	return out
}

func cgroupName(h *Host) string { return netnsPrefix + h.Name }

// boot starts systemd-nspawn for h.  Each container MUST start in its own
// cgroup: with --keep-unit and no systemd as PID 1 of this machine, nspawn
// uses its own cgroup as the container's base, so containers sharing one
// would share .../system.slice/etcd.service and `systemctl stop etcd` on one
// host would kill etcd on all of them.
func (d *nspawnDriver) boot(ctx context.Context, h *Host) error {
	if pids := netnsPids(h.Netns()); len(pids) > 0 {
		return fmt.Errorf("boot %s: processes %v still run in %s", h.Name, pids, h.Netns())
	}
	nspawn, ok := lookPath("systemd-nspawn")
	if !ok {
		return &PrereqError{Missing: []Missing{aptMissing("systemd-nspawn", "systemd-container")}}
	}
	d.removeCgroups(h)
	var procs []string
	for _, r := range cgroupRoots() {
		cg := filepath.Join(r, cgroupName(h))
		if err := os.MkdirAll(cg, 0o755); err != nil {
			return fmt.Errorf("cgroup of %s: %w", h.Name, err)
		}
		procs = append(procs, filepath.Join(cg, "cgroup.procs"))
	}
	logf, err := os.OpenFile(filepath.Join(d.l.hostDir(h), "nspawn.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("boot %s: %w", h.Name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- boot %s\n", time.Now().Format(time.RFC3339))
	// the shell moves itself into the host's cgroups, then becomes nspawn
	cmd := exec.Command("/bin/sh", "-c", `for f in $LAB_CGROUP_PROCS; do echo $$ > "$f" || exit 97; done; exec "$@"`, "sh",
		nspawn, "--quiet", "--boot", "--register=no", "--keep-unit", "--console=passive",
		"-D", d.root(h), "-M", h.Name,
		"--network-namespace-path=/run/netns/"+h.Netns(),
		"--bind-ro="+d.l.st.BinDir+":/opt/etcd-bin")
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LAB_CGROUP_PROCS=" + strings.Join(procs, " ")}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("boot %s: %w", h.Name, err)
	}
	go func() { _ = cmd.Wait() }() // reap it while this process lives
	d.l.mu.Lock()
	h.PID = cmd.Process.Pid
	d.l.mu.Unlock()
	return nil
}

// halt powers host h off: SIGTERM to nspawn is a clean poweroff of the
// container; hard is a power cut.  A SIGKILLed nspawn leaves its container
// running (orphaned init), so whatever is left in the netns is killed too.
func (d *nspawnDriver) halt(ctx context.Context, h *Host, hard bool) error {
	d.l.mu.Lock()
	pid := h.PID
	d.l.mu.Unlock()
	if alive(pid) && strings.Contains(cmdline(pid), "systemd-nspawn") {
		if hard {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		} else {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			if !waitGone(pid, 60*time.Second) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	waitGone(pid, 10*time.Second)
	if err := killNetns(h.Netns()); err != nil {
		return fmt.Errorf("halt %s: %w", h.Name, err)
	}
	d.l.mu.Lock()
	h.PID = 0
	d.l.mu.Unlock()
	return nil
}

func (d *nspawnDriver) destroy(ctx context.Context, h *Host) error {
	var errs []error
	if err := d.halt(ctx, h, true); err != nil {
		errs = append(errs, err)
	}
	if err := netDown(ctx, h); err != nil {
		errs = append(errs, err)
	}
	for _, m := range mountsUnder(d.l.hostDir(h)) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	if err := os.RemoveAll(d.l.hostDir(h)); err != nil {
		errs = append(errs, fmt.Errorf("remove disk of %s: %w", h.Name, err))
	}
	_ = os.RemoveAll(filepath.Join("/run/systemd/nspawn/propagate", h.Name))
	d.removeCgroups(h)
	return errors.Join(errs...)
}

// removeCgroups removes host h's (empty) cgroup trees.
func (d *nspawnDriver) removeCgroups(h *Host) { removeHostCgroups(h) }

// removeHostCgroups removes host h's cgroup trees, retrying for a few
// seconds while the last processes leave them.
func removeHostCgroups(h *Host) error {
	var err error
	// every hierarchy: a static-pod host's kubelet and runc make cgroups
	// under /etcdlab-hN in the v1 controllers too
	for _, r := range kubeCgroupRoots() {
		top := filepath.Join(r, cgroupName(h))
		deadline := time.Now().Add(5 * time.Second)
		for {
			err = removeCgroupTree(top)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return err
}

func removeCgroupTree(top string) error {
	var dirs []string
	_ = filepath.WalkDir(top, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var last error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			last = fmt.Errorf("remove cgroup %s: %w", dirs[i], err)
		}
	}
	return last
}

func (d *nspawnDriver) diag(h *Host) string {
	b, _ := os.ReadFile(filepath.Join(d.l.hostDir(h), "nspawn.log"))
	b = bytes.TrimSpace(b)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	if len(b) == 0 {
		return ""
	}
	return "\nsystemd-nspawn log of " + h.Name + ":\n" + string(b)
}

func (d *nspawnDriver) unusable(h *Host) bool { return !alive(h.PID) }

func (d *nspawnDriver) mounted(h *Host) []string { return mountsUnder(d.l.hostDir(h)) }

func (d *nspawnDriver) releaseAll(ctx context.Context, hosts []*Host) error {
	for _, h := range hosts {
		_ = os.RemoveAll(filepath.Join("/run/systemd/nspawn/propagate", h.Name))
	}
	return nil
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		mp := unescapeMount(f[1])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// etcHosts is /etc/hosts for the lab hosts.
func (l *Lab) etcHosts() []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, h := range l.hostPtrs() {
		fmt.Fprintf(&b, "%s\t%s\n", h.Address, h.Name)
	}
	return b.Bytes()
}
