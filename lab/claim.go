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

// ErrBusy is returned by Up when another lab is up on this machine.
var ErrBusy = errors.New("another lab is up on this machine")

// withLock runs f while holding the machine-wide lab lock (flock).
func withLock(f func() error) error {
	fd, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lab lock: %w", err)
	}
	defer fd.Close()
	if err := syscall.Flock(int(fd.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lab lock: %w", err)
	}
	defer syscall.Flock(int(fd.Fd()), syscall.LOCK_UN)
	return f()
}

// claim makes dir the owner of the lab network, waiting up to wait for
// another lab to go down.
func claim(ctx context.Context, dir string, wait time.Duration, log io.Writer) error {
	deadline := time.Now().Add(wait)
	said := false
	for {
		err := withLock(func() error {
			if why := busy(dir); why != "" {
				return fmt.Errorf("%w: %s", ErrBusy, why)
			}
			return os.WriteFile(claimFile, []byte(dir+"\n"), 0o600)
		})
		if err == nil || !errors.Is(err, ErrBusy) || time.Now().After(deadline) {
			return err
		}
		if !said {
			fmt.Fprintf(log, "waiting for the other lab to go down (%v)\n", err)
			said = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up waiting: %w)", err, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// busy says why the lab network is in use, or "".
func busy(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, stateFile)); err == nil {
		return fmt.Sprintf("a lab is already up in %s (run `etcd-rescue lab down --state-dir %s` first)", dir, dir)
	}
	if b, err := os.ReadFile(claimFile); err == nil {
		owner := strings.TrimSpace(string(b))
		if owner != dir {
			if _, err := os.Stat(filepath.Join(owner, stateFile)); err == nil {
				return fmt.Sprintf("the lab in %s owns the lab network (run `etcd-rescue lab down --state-dir %s`)", owner, owner)
			}
		}
	}
	if ns := labNetns(); len(ns) > 0 {
		return fmt.Sprintf("network namespace %s exists, made by another lab or by hand (remove it with `ip netns del %s` once nothing uses it)", ns[0], ns[0])
	}
	if _, err := net.InterfaceByName(BridgeName); err == nil {
		return fmt.Sprintf("bridge %s exists, made by another lab or by hand (remove it with `ip link del %s`)", BridgeName, BridgeName)
	}
	return ""
}

// unclaim gives up the lab network if dir owns it.
func unclaim(dir string) error {
	if !owned(dir) {
		return nil
	}
	return withLock(func() error {
		b, err := os.ReadFile(claimFile)
		if err != nil || strings.TrimSpace(string(b)) != dir {
			return nil
		}
		if err := os.Remove(claimFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("release lab network: %w", err)
		}
		return nil
	})
}
