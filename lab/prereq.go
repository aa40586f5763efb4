package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"go/build"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Missing is one missing prerequisite and how to get it.
type Missing struct {
	What    string // e.g. "systemd-nspawn"
	Install string // shell command that fixes it
	Apt     string // Debian package, if one provides it
}

// PrereqError lists the prerequisites Up is missing.
type PrereqError struct {
	Missing []Missing
}

func (e *PrereqError) Error() string {
	var w []string
	for _, m := range e.Missing {
		w = append(w, m.What)
	}
	return "missing prerequisite: " + strings.Join(w, ", ")
}

// Hints are the commands that install what is missing, one per line.
func (e *PrereqError) Hints() []string {
	var apt, other []string
	seen := map[string]bool{}
	for _, m := range e.Missing {
		switch {
		case m.Apt != "":
			if !seen[m.Apt] {
				apt = append(apt, m.Apt)
				seen[m.Apt] = true
			}
		case m.Install != "" && !seen[m.Install]:
			other = append(other, m.Install)
			seen[m.Install] = true
		}
	}
	var out []string
	if len(apt) > 0 {
		sort.Strings(apt)
		out = append(out, "apt-get update && apt-get install -y --no-install-recommends "+strings.Join(apt, " ")+
			"   (or: make lab-deps, which also makes /usr/sbin/policy-rc.d stop apt from starting sshd on this machine)")
	}
	return append(out, other...)
}

// aptMissing builds a Missing for a program from a Debian package.
func aptMissing(what, pkg string) Missing {
	return Missing{What: what + " (Debian package " + pkg + ")", Apt: pkg, Install: "apt-get install -y " + pkg}
}

// lookPath finds a program in PATH or in the sbin directories root uses.
func lookPath(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

type prereqs struct {
	mode     Mode
	fallback string // why the light mode was chosen automatically
	version  string // v3.5.35
	binDir   string // holds <version>/
	buildDir string // nested module that builds version, "" if unknown
}

// checkPrereqs checks what Up needs and picks the host mode and version.
// Unavailable says why no lab can run on this machine at all (not Linux,
// not root), or "" when one can; missing packages and binaries are reported
// by Up itself. Tests use it to skip, or under CI=true to fail.
func Unavailable() string {
	switch {
	case runtime.GOOS != "linux":
		return "the lab needs Linux"
	case os.Geteuid() != 0:
		return "the lab needs root (network namespaces, mounts, systemd-nspawn)"
	}
	return ""
}

func checkPrereqs(ctx context.Context, o *Options) (*prereqs, error) {
	if runtime.GOOS != "linux" {
		return nil, &PrereqError{Missing: []Missing{{What: "Linux (the lab uses network namespaces; this is " + runtime.GOOS + ")"}}}
	}
	if os.Geteuid() != 0 {
		return nil, &PrereqError{Missing: []Missing{{What: "root (the lab creates network namespaces, mounts and a bridge)", Install: "run it as root, e.g. sudo etcd-rescue lab up"}}}
	}
	var miss []Missing
	if _, ok := lookPath("ip"); !ok {
		miss = append(miss, aptMissing("ip", "iproute2"))
	}
	if !hasOverlayFS() {
		miss = append(miss, Missing{What: "overlayfs in the kernel", Install: "modprobe overlay"})
	}
	nspawnMiss := nspawnMissing(o.RootfsDir)
	lightMiss := lightMissing()
	p := &prereqs{}
	switch o.Mode {
	case ModeNspawn:
		p.mode, miss = ModeNspawn, append(miss, nspawnMiss...)
	case ModeLight:
		p.mode, miss = ModeLight, append(miss, lightMiss...)
	default:
		switch {
		case len(nspawnMiss) == 0:
			p.mode = ModeNspawn
		case len(lightMiss) == 0:
			p.mode = ModeLight
			var w []string
			for _, m := range nspawnMiss {
				w = append(w, m.What)
			}
			p.fallback = "no " + strings.Join(w, ", ") + " for the default nspawn mode"
		default:
			p.mode, miss = ModeNspawn, append(miss, nspawnMiss...)
		}
	}
	if err := resolveVersion(o, p); err != nil {
		var pe *PrereqError
		if !errors.As(err, &pe) {
			return nil, err
		}
		miss = append(miss, pe.Missing...)
	}
	if o.Layout == LayoutStaticPod && p.binDir != "" && p.version != "" {
		miss = append(miss, kubeMissing(p.binDir, p.version)...)
	}
	if o.S3 && p.binDir != "" {
		miss = append(miss, s3Missing(p.binDir)...)
	}
	if len(miss) > 0 {
		return nil, &PrereqError{Missing: miss}
	}
	return p, nil
}

func nspawnMissing(rootfs string) []Missing {
	var miss []Missing
	if _, ok := lookPath("systemd-nspawn"); !ok {
		miss = append(miss, aptMissing("systemd-nspawn", "systemd-container"))
	}
	if !rootfsReady(rootfs) {
		if _, ok := lookPath("debootstrap"); !ok {
			miss = append(miss, aptMissing("debootstrap (to build the host rootfs "+rootfs+")", "debootstrap"))
		}
	}
	return miss
}

func lightMissing() []Missing {
	var miss []Missing
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		miss = append(miss, aptMissing("/usr/sbin/sshd", "openssh-server"))
	}
	for _, p := range []string{"unshare", "mount", "setsid", "setpriv"} {
		if _, ok := lookPath(p); !ok {
			miss = append(miss, aptMissing(p, "util-linux"))
		}
	}
	if _, ok := lookPath("socat"); !ok {
		miss = append(miss, aptMissing("socat (Type=notify in the systemctl shim)", "socat"))
	}
	for _, p := range []string{"sudo", "visudo"} {
		if _, ok := lookPath(p); !ok {
			miss = append(miss, aptMissing(p+" (the hosts' operator account "+OperatorUser+")", "sudo"))
		}
	}
	if _, ok := lookPath("openssl"); !ok {
		// light hosts run this machine's programs: openssl x509 on a host
		miss = append(miss, aptMissing("openssl (to read certificates on the hosts)", "openssl"))
	}
	return miss
}

func hasOverlayFS() bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err == nil && strings.Contains(string(b), "\toverlay\n") {
		return true
	}
	if p, ok := lookPath("modprobe"); ok {
		_ = exec.Command(p, "overlay").Run()
		b, err = os.ReadFile("/proc/filesystems")
		return err == nil && strings.Contains(string(b), "\toverlay\n")
	}
	return false
}

const modulePath = "github.com/etcd-rescue/etcd-rescue"

// RepoRoot finds the etcd-rescue checkout above the working directory (or
// above the running executable).
func RepoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, d := range starts {
		for {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && modLine(b) == modulePath {
				return d, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", errors.New("not inside the etcd-rescue checkout (no go.mod of " + modulePath + " above the working directory)")
}

func modLine(gomod []byte) string {
	sc := bufio.NewScanner(strings.NewReader(string(gomod)))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "module" {
			return f[1]
		}
	}
	return ""
}

var versionRE = regexp.MustCompile(`^v?(3\.[0-9]+)(\.[0-9]+)?$`)

// resolveVersion turns o.Version into a full version and finds where its
// binaries are (or are built).
func resolveVersion(o *Options, p *prereqs) error {
	v := o.Version
	if v == "" {
		v = "3.5"
	}
	m := versionRE.FindStringSubmatch(v)
	if m == nil {
		return fmt.Errorf("bad etcd version %q (want 3.5, 3.6, 3.7 or a full version like 3.5.35)", o.Version)
	}
	minor, full := m[1], ""
	if m[2] != "" {
		full = "v" + minor + m[2]
	}
	binDir := o.BinDir
	if binDir == "" {
		binDir = os.Getenv("ETCD_RESCUE_LAB_BIN")
	}
	root, rootErr := RepoRoot()
	if binDir == "" {
		if rootErr != nil {
			return &PrereqError{Missing: []Missing{{What: "etcd binaries: " + rootErr.Error(), Install: "run from the etcd-rescue checkout, or set ETCD_RESCUE_LAB_BIN to a directory holding v3.x.y/{etcd,etcdctl,etcdutl}"}}}
		}
		binDir = filepath.Join(root, "lab", "bin")
	}
	binDir, _ = filepath.Abs(binDir)
	p.binDir = binDir
	if rootErr == nil {
		bd := filepath.Join(root, "lab", "etcdbuild", "v"+minor)
		if pinned, err := pinnedVersion(bd); err == nil {
			if full == "" {
				full = pinned
			}
			if full == pinned {
				p.buildDir = bd
			}
		}
	}
	if full == "" {
		// no build module: take the newest patch release already in binDir
		ents, _ := os.ReadDir(binDir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "v"+minor+".") && binariesPresent(filepath.Join(binDir, e.Name())) &&
				(full == "" || patchOf(e.Name()) > patchOf(full)) {
				full = e.Name()
			}
		}
	}
	if full == "" {
		return &PrereqError{Missing: []Missing{{What: "etcd " + minor + " binaries (no lab/etcdbuild/v" + minor + " module and nothing in " + binDir + ")"}}}
	}
	p.version = full
	if !binariesPresent(filepath.Join(binDir, full)) && p.buildDir == "" {
		return &PrereqError{Missing: []Missing{{What: "etcd " + full + " binaries in " + filepath.Join(binDir, full), Install: "make etcd-bins ETCD_VERSIONS=" + full}}}
	}
	if !binariesPresent(filepath.Join(binDir, full)) {
		if _, ok := goTool(); !ok {
			return &PrereqError{Missing: []Missing{{What: "etcd " + full + " binaries in " + filepath.Join(binDir, full) + " and no go toolchain to build them", Install: "install Go, then: make etcd-bins"}}}
		}
	}
	return nil
}

func patchOf(v string) int {
	var a, b, c int
	fmt.Sscanf(v, "v%d.%d.%d", &a, &b, &c)
	return c
}

var pinnedRE = regexp.MustCompile(`(?m)^\s*go\.etcd\.io/etcd/server/v3\s+(v3\.[0-9]+\.[0-9]+)\s*$`)

// pinnedVersion is the etcd version the build module in dir pins.
func pinnedVersion(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", err
	}
	m := pinnedRE.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s/go.mod does not require go.etcd.io/etcd/server/v3", dir)
	}
	return string(m[1]), nil
}

func binariesPresent(dir string) bool {
	for _, b := range []string{"etcd", "etcdctl", "etcdutl"} {
		st, err := os.Stat(filepath.Join(dir, b))
		if err != nil || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

func goTool() (string, bool) {
	if p, ok := lookPath("go"); ok {
		return p, true
	}
	// The toolchain this binary was built with ($GOROOT when set);
	// go/build keeps it now that runtime.GOROOT is deprecated.
	if root := build.Default.GOROOT; root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go", true
	}
	return "", false
}

// ensureBinaries builds the etcd binaries of p.version when they are missing.
func ensureBinaries(ctx context.Context, p *prereqs, log io.Writer) error {
	out := filepath.Join(p.binDir, p.version)
	if binariesPresent(out) {
		return nil
	}
	return BuildEtcd(ctx, p.buildDir, out, log)
}

// BuildEtcd builds etcd, etcdctl and etcdutl from the wrapper module in
// moduleDir (lab/etcdbuild/v3.X) into outDir, as `make etcd-bins` does.
func BuildEtcd(ctx context.Context, moduleDir, outDir string, log io.Writer) error {
	goBin, ok := goTool()
	if !ok {
		return &PrereqError{Missing: []Missing{{What: "go toolchain to build etcd", Install: "install Go, then: make etcd-bins"}}}
	}
	t := time.Now()
	fmt.Fprintf(log, "building etcd, etcdctl, etcdutl from %s into %s (1-2 minutes with a cold Go cache)\n", moduleDir, outDir)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("build etcd: %w", err)
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath",
		"-ldflags", "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=modproxy",
		"-o", outDir+"/", "./etcd", "./etcdctl", "./etcdutl")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		return withOutput(fmt.Errorf("build etcd in %s: %w", moduleDir, err), string(b))
	}
	fmt.Fprintf(log, "built etcd in %.0fs\n", time.Since(t).Seconds())
	return nil
}
