package lab

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Isolate cuts host name off the lab network, as a pulled cable or a dead
// switch port would: the root-side end of its veth goes down, so nothing
// reaches the host and nothing leaves it.  A connection from this machine
// (ssh, the client API) then TIMES OUT; it is not refused.  For that the
// machine's neighbour entry of the host's address is pinned to the host's
// MAC first: without it ARP would fail within ~3 s and connect() would get
// "no route to host" at once, which is not what an operator far from a
// dead host sees.  Processes inside the host run on (etcd there loses its
// peers).  Rejoin undoes it; RunConsole still reaches the host meanwhile.
func (l *Lab) Isolate(ctx context.Context, name string) error {
	h, ok := l.hostPtr(name)
	if !ok {
		return fmt.Errorf("isolate: no host %s", name)
	}
	mac, err := hostMAC(ctx, h)
	if err != nil {
		return fmt.Errorf("isolate %s: %w", name, err)
	}
	if _, err := run(ctx, "ip", "neigh", "replace", h.Address, "lladdr", mac, "dev", BridgeName, "nud", "permanent"); err != nil {
		return fmt.Errorf("isolate %s: %w", name, err)
	}
	if _, err := run(ctx, "ip", "link", "set", h.veth(), "down"); err != nil {
		return fmt.Errorf("isolate %s: %w", name, err)
	}
	l.mu.Lock()
	if !containsString(l.st.Isolated, name) {
		l.st.Isolated = append(l.st.Isolated, name)
		sort.Strings(l.st.Isolated)
	}
	l.mu.Unlock()
	if err := l.save(); err != nil {
		return err
	}
	l.logf("isolate: %s (%s) cut off the lab network (%s down; %s pinned to %s on %s, so connections time out instead of failing with no route to host)",
		name, h.Address, h.veth(), h.Address, mac, BridgeName)
	return nil
}

// Rejoin puts an isolated host back on the lab network and waits until it
// answers over ssh again.  Rejoining a host that is not isolated only
// checks that it answers.
func (l *Lab) Rejoin(ctx context.Context, name string) error {
	h, ok := l.hostPtr(name)
	if !ok {
		return fmt.Errorf("rejoin: no host %s", name)
	}
	t := time.Now()
	if _, err := run(ctx, "ip", "link", "set", h.veth(), "up"); err != nil {
		return fmt.Errorf("rejoin %s: %w", name, err)
	}
	unpinNeighbour(ctx, h.Address)
	l.mu.Lock()
	var keep []string
	for _, n := range l.st.Isolated {
		if n != name {
			keep = append(keep, n)
		}
	}
	l.st.Isolated = keep
	l.mu.Unlock()
	if err := l.save(); err != nil {
		return err
	}
	if err := l.waitSSH(ctx, h, 30*time.Second); err != nil {
		return fmt.Errorf("rejoin %s: %w", name, err)
	}
	l.logf("rejoin: %s (%s) back on the lab network, reachable over ssh in %.1fs", name, h.Address, time.Since(t).Seconds())
	return nil
}

// Isolated lists the hosts Isolate cut off (and Rejoin did not put back).
func (l *Lab) Isolated() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.st.Isolated...)
}

// unpinNeighbour removes a neighbour entry Isolate pinned (best effort:
// there may be none).
func unpinNeighbour(ctx context.Context, addr string) {
	_, _ = run(ctx, "ip", "neigh", "del", addr, "dev", BridgeName)
}

var macRE = regexp.MustCompile(`link/ether ([0-9a-f:]{17})`)

// hostMAC is the MAC address of the host's eth0.
func hostMAC(ctx context.Context, h *Host) (string, error) {
	out, err := run(ctx, "ip", "-n", h.Netns(), "-o", "link", "show", "eth0")
	if err != nil {
		return "", err
	}
	m := macRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("no MAC address for eth0 of %s in %q", h.Name, strings.TrimSpace(out))
	}
	return m[1], nil
}

// RunConsole runs a shell command on host name as root through its
// "console": nsenter into the namespaces of the host's first process
// (systemd in the nspawn mode, sshd in the light mode), not over the
// network.  It works while the host is isolated, so a test can look at a
// host that nothing else can reach.  A non-zero exit is an error.
func (l *Lab) RunConsole(ctx context.Context, name, command string) (string, error) {
	h, ok := l.hostPtr(name)
	if !ok {
		return "", fmt.Errorf("console %s: no such host", name)
	}
	pids := netnsPids(h.Netns())
	if len(pids) == 0 {
		return "", fmt.Errorf("console %s: no process runs in %s (host down?)", name, h.Netns())
	}
	sort.Ints(pids)
	// --all enters every namespace of the target (skipping those it shares
	// with us): mount, UTS, IPC, network, PID and cgroup
	cmd := exec.CommandContext(ctx, "nsenter", "--target", strconv.Itoa(pids[0]), "--all", "--", "/bin/sh", "-c", command)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), withOutput(fmt.Errorf("console %s: %s: %w", name, command, err), out.String())
	}
	return out.String(), nil
}

func containsString(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
