package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Down tears the lab down: it kills only what the lab started (the S3
// store's weed and the state store's etcd by pid, with their data; each host's nspawn/sshd by pid, then
// whatever is left in the host's network namespace), unmounts the hosts' disks, removes the namespaces, veths,
// bridge and cgroups, and deletes the state dir.  It is idempotent.
func (l *Lab) Down(ctx context.Context) error {
	t := time.Now()
	err := l.teardown(ctx)
	if err == nil {
		l.logf("lab down in %.1fs", time.Since(t).Seconds())
	}
	return err
}

func (l *Lab) teardown(ctx context.Context) error {
	if l.drv == nil {
		l.drv = newDriver(l, l.st.Mode)
	}
	hosts := l.hostPtrs()
	// hosts whose disk is still there but which are no longer in the state
	known := map[string]bool{}
	for _, h := range hosts {
		known[h.Name] = true
	}
	ents, _ := os.ReadDir(filepath.Join(l.dir, "hosts"))
	for _, e := range ents {
		var i int
		if _, err := fmt.Sscanf(e.Name(), "h%d", &i); err == nil && !known[e.Name()] && e.Name() == fmt.Sprintf("h%d", i) {
			hosts = append(hosts, &Host{Name: e.Name(), Index: i})
		}
	}
	var errs []error
	if err := l.stopS3(); err != nil {
		errs = append(errs, err)
	}
	if err := l.stopStateStore(); err != nil {
		errs = append(errs, err)
	}
	if err := parallel(hosts, func(h *Host) error { return l.drv.destroy(ctx, h) }); err != nil {
		errs = append(errs, err)
	}
	if err := l.drv.releaseAll(ctx, hosts); err != nil {
		errs = append(errs, err)
	}
	// whatever the mode: no cgroup of a lab host may stay behind
	if err := parallel(hosts, removeHostCgroups); err != nil {
		errs = append(errs, err)
	}
	for _, m := range mountsUnder(l.dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	if owned(l.dir) || len(labNetns()) == 0 {
		if _, err := net.InterfaceByName(BridgeName); err == nil {
			if _, err := run(ctx, "ip", "link", "del", BridgeName); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("lab down: %w", errors.Join(errs...))
	}
	// only a directory Up made is deleted (it holds the marker)
	if isStateDir(l.dir) {
		if err := os.RemoveAll(l.dir); err != nil {
			return fmt.Errorf("lab down: remove state: %w", err)
		}
	}
	return unclaim(l.dir)
}

func owned(dir string) bool {
	b, err := os.ReadFile(claimFile)
	return err == nil && strings.TrimSpace(string(b)) == dir
}

// DownDir tears down the lab in stateDir ("" means DefaultStateDir), if
// any; with no lab there it only removes leftovers of one (mounts, the
// state dir) and returns nil.
func DownDir(ctx context.Context, stateDir string, log io.Writer) error {
	l, err := Open(stateDir)
	if err == nil {
		l.SetLog(log)
		return l.Down(ctx)
	}
	if !errors.Is(err, ErrNotUp) {
		return err
	}
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	dir, _ := filepath.Abs(stateDir)
	l = &Lab{dir: dir, log: log, st: state{Mode: ModeNspawn}}
	if log == nil {
		l.log = io.Discard
	}
	if owned(dir) {
		// the lab of this state dir owns the lab network but its state is
		// gone (deleted by hand?): its hosts are the lab's namespaces
		for _, ns := range labNetns() {
			var i int
			name := strings.TrimPrefix(ns, netnsPrefix)
			if _, err := fmt.Sscanf(name, "h%d", &i); err == nil && name == fmt.Sprintf("h%d", i) {
				l.st.Hosts = append(l.st.Hosts, &Host{Name: name, Index: i})
			}
		}
		return l.Down(ctx)
	}
	if !isStateDir(dir) {
		// not a lab's state dir: leave it alone
		return unclaim(dir)
	}
	return l.Down(ctx)
}

// stateMarker marks a directory as a lab state dir made by Up: only such a
// directory is ever deleted.
const stateMarker = ".etcd-rescue-lab-state"

func isStateDir(dir string) bool {
	for _, f := range []string{stateMarker, stateFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// makeStateDir creates dir (or takes an empty or earlier lab's one) and
// marks it.
func makeStateDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
	case err != nil:
		return fmt.Errorf("state dir: %w", err)
	case len(ents) > 0 && !isStateDir(dir):
		return fmt.Errorf("state dir %s exists and was not made by the lab; choose another (it is deleted by lab down)", dir)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, stateMarker), []byte("etcd-rescue lab state; deleted by `etcd-rescue lab down`\n"), 0o600)
}
