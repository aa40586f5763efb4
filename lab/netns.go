package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// run runs a command and returns its combined output; the error carries
// the command line and the output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), withOutput(fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err), out.String())
	}
	return out.String(), nil
}

// withOutput appends a command's output to err, if there is any.
func withOutput(err error, out string) error {
	if out = strings.TrimSpace(out); out == "" {
		return err
	}
	return fmt.Errorf("%w: %s", err, out)
}

func ensureBridge(ctx context.Context) error {
	if _, err := net.InterfaceByName(BridgeName); err == nil {
		return nil
	}
	for _, args := range [][]string{
		{"link", "add", BridgeName, "type", "bridge"},
		{"addr", "add", GatewayAddr + "/24", "dev", BridgeName},
		{"link", "set", BridgeName, "up"},
	} {
		if _, err := run(ctx, "ip", args...); err != nil {
			return fmt.Errorf("create bridge: %w", err)
		}
	}
	return nil
}

// netUp creates host h's network namespace with a veth "eth0" on the bridge.
func netUp(ctx context.Context, h *Host) error {
	ns := h.Netns()
	if netnsExists(ns) {
		return fmt.Errorf("network namespace %s already exists", ns)
	}
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", h.veth(), "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", h.veth(), "master", BridgeName, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", h.Address + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "default", "via", GatewayAddr},
	} {
		if _, err := run(ctx, "ip", args...); err != nil {
			return fmt.Errorf("network of %s: %w", h.Name, err)
		}
	}
	return nil
}

// setAddr moves host h from its address to addr (sshd listens on 0.0.0.0
// inside the namespace, so it answers on the new address).
func setAddr(ctx context.Context, h *Host, addr string) error {
	ns := h.Netns()
	for _, args := range [][]string{
		// delete first: deleting a primary address also deletes the
		// secondary ones of its subnet
		{"-n", ns, "addr", "del", h.Address + "/24", "dev", "eth0"},
		{"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
		{"-n", ns, "route", "replace", "default", "via", GatewayAddr},
	} {
		if _, err := run(ctx, "ip", args...); err != nil {
			return fmt.Errorf("change address of %s: %w", h.Name, err)
		}
	}
	return nil
}

// netDown kills every process left in host h's namespace and deletes it.
func netDown(ctx context.Context, h *Host) error {
	ns := h.Netns()
	var errs []error
	unpinNeighbour(ctx, h.Address) // Isolate's, if any: the next host at this address has another MAC
	if netnsExists(ns) {
		if err := killNetns(ns); err != nil {
			errs = append(errs, err)
		}
		if _, err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	// the veth normally goes with the namespace (asynchronously)
	if _, err := net.InterfaceByName(h.veth()); err == nil {
		// ... and may go between the check and the del: only an
		// interface that is still there after a failed del is an error.
		if _, err := run(ctx, "ip", "link", "del", h.veth()); err != nil {
			if _, still := net.InterfaceByName(h.veth()); still == nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func netnsExists(ns string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", ns))
	return err == nil
}

// labNetns lists the lab's network namespaces (etcdlab-h*), made by any lab.
func labNetns() []string {
	ents, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), netnsPrefix+"h") {
			out = append(out, e.Name())
		}
	}
	return out
}

// netnsPids lists the live (non-zombie) processes in network namespace ns.
func netnsPids(ns string) []int {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/run/netns", ns), &want); err != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue
		}
		if st.Ino == want.Ino && st.Dev == want.Dev && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive: the process exists and is not a zombie (PID 1 of this machine may
// reap orphans slowly).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// cmdline returns the command line of pid with spaces between arguments.
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// runsWith: pid is alive and arg is one of its command line's arguments
// (a pid may have been reused by an unrelated process since it was
// recorded).
func runsWith(pid int, arg string) bool {
	return alive(pid) && strings.Contains(cmdline(pid)+" ", " "+arg+" ")
}

// startDetached starts cmd in a session of its own, so that it outlives
// this process, its output appended to logFile after a line naming the
// time and the command; it returns the pid. The process is reaped while
// this process lives.
func startDetached(cmd *exec.Cmd, logFile string) (int, error) {
	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- %s: %s\n", time.Now().UTC().Format(time.RFC3339), strings.Join(cmd.Args, " "))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", cmd.Args[0], err)
	}
	go func() { _ = cmd.Wait() }() // reap it while this process lives
	return cmd.Process.Pid, nil
}

// killPID SIGKILLs pid and waits until it is gone; what names it in the
// error ("s3: weed"). Servers are not asked to stop gracefully: weed's
// shutdown hooks take seconds and tidy data deleted next anyway, and a
// killed state store is the outage a test wants.
func killPID(pid int, what string) error {
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !waitGone(pid, 10*time.Second) {
		return fmt.Errorf("%s (pid %d) does not exit after SIGKILL", what, pid)
	}
	return nil
}

// killNetns SIGKILLs every process in namespace ns until none is left,
// then waits until they have all exited (a dying process leaves its
// namespaces before it is gone, and keeps its cgroup busy until then).
func killNetns(ns string) error {
	deadline := time.Now().Add(15 * time.Second)
	killed := map[int]bool{}
	for {
		pids := netnsPids(ns)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in %s survive SIGKILL", pids, ns)
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
			killed[p] = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	for p := range killed {
		if !waitGone(p, time.Until(deadline)) {
			return fmt.Errorf("process %d of %s does not exit after SIGKILL", p, ns)
		}
	}
	return nil
}

// waitGone waits until pid is dead (or a zombie).
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// netnsMemory is the proportional set size (PSS) of all processes in ns.
func netnsMemory(ns string) uint64 {
	var total uint64
	for _, pid := range netnsPids(ns) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				total += kb * 1024
			}
		}
	}
	return total
}
