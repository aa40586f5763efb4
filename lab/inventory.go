package lab

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
)

// writeInventory writes <state>/inventory.yaml in etcd-rescue's plan
// inventory format: the cluster as it must be after recovery.
func (l *Lab) writeInventory() error {
	var b bytes.Buffer
	q := strconv.Quote
	fmt.Fprintf(&b, "# etcd-rescue lab inventory, written %s by `etcd-rescue lab`.\n", time.Now().UTC().Format(time.RFC3339))
	b.WriteString("# It describes the cluster as it must be AFTER recovery: a break that moves or\n")
	b.WriteString("# replaces a host rewrites it.  Point a plan at it with `inventory:` or --inventory.\n")
	l.mu.Lock()
	st := l.st
	if len(st.Breaks) > 0 {
		fmt.Fprintf(&b, "# breaks so far: %v\n", st.Breaks)
	}
	b.WriteString("cluster:\n")
	b.WriteString("  name: lab\n")
	fmt.Fprintf(&b, "  token: %s    # --initial-cluster-token for any NEW cluster a plan creates\n", q(st.Token))
	fmt.Fprintf(&b, "  etcdVersion: %s\n", q(l.Version()))
	fmt.Fprintf(&b, "  layout: {service: systemd, unit: %s, envFile: %s, dataDir: %s, owner: %s}\n", Unit, EnvFile, DataDir, q(Owner))
	b.WriteString("  clientAccess: ssh-tunnel\n")
	b.WriteString("  members:\n")
	for _, m := range st.Members {
		h := l.hostLocked(m.Host)
		addr := "MISSING"
		if h != nil {
			addr = h.Address
		}
		fmt.Fprintf(&b, "    - {name: %s, host: %s, peerURL: %s, clientURL: %s}\n", m.Name, m.Host, q(peerURL(addr)), q(clientURL(addr)))
	}
	b.WriteString("hosts:\n")
	for _, h := range st.Hosts {
		fmt.Fprintf(&b, "  %s: {address: %s, port: 22}\n", h.Name, h.Address)
	}
	l.mu.Unlock()
	fmt.Fprintf(&b, "ssh: {user: root, identity: %s, knownHosts: %s}\n", q(l.ClientKeyPath()), q(l.KnownHostsPath()))
	fmt.Fprintf(&b, "vars:\n  snapshot: %s    # where total-loss leaves its snapshot\n", q(l.SnapshotPath()))
	l.mu.Lock()
	for _, k := range sortedKeys(l.st.Vars) {
		fmt.Fprintf(&b, "  %s: %s\n", k, q(l.st.Vars[k]))
	}
	l.mu.Unlock()
	return writeFileAtomic(l.InventoryPath(), b.Bytes(), 0o644)
}
