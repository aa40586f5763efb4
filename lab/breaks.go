package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Scenario is a kind of damage Break does.
type Scenario struct {
	Name string
	Does string // one line for usage messages
}

// Scenarios are the breaks the lab knows, in the order of the runbooks.
var Scenarios = []Scenario{
	{"ip-change", "member 3's host moves to a new address (10.77.0.2N); its etcd fails on the old settings (vars.oldPeerURL)"},
	{"lost-host", "host of member 2 destroyed with its disk; blank replacement host h(N+1) with a new address (vars.lostPeerURL)"},
	{"quorum-loss", "a majority of members stopped and their data dirs deleted; the others keep data and run on"},
	{"total-loss", "snapshot saved on the operator side, then every data dir deleted and etcd stopped everywhere"},
}

// Break damages the lab as scenario says, prints what it did to the lab's
// log, and rewrites the inventory to describe the cluster as it must be
// after recovery.
func (l *Lab) Break(ctx context.Context, scenario string) error {
	var err error
	switch scenario {
	case "ip-change":
		err = l.breakIPChange(ctx)
	case "lost-host":
		err = l.breakLostHost(ctx)
	case "quorum-loss":
		err = l.breakQuorumLoss(ctx, nil)
	case "total-loss":
		err = l.breakTotalLoss(ctx)
	default:
		var names []string
		for _, s := range Scenarios {
			names = append(names, s.Name)
		}
		return fmt.Errorf("unknown scenario %q (known: %s)", scenario, strings.Join(names, ", "))
	}
	if err != nil {
		return fmt.Errorf("break %s: %w", scenario, err)
	}
	return l.recordBreak(scenario)
}

// BreakQuorumLossOf is the quorum-loss break with the victims chosen:
// etcd is stopped and the data dir deleted on exactly those members (a
// majority, not all of them), so that the survivors need not be the first
// members.  It is recorded and logged as quorum-loss.
func (l *Lab) BreakQuorumLossOf(ctx context.Context, victims []string) error {
	if err := l.breakQuorumLoss(ctx, victims); err != nil {
		return fmt.Errorf("break quorum-loss: %w", err)
	}
	return l.recordBreak("quorum-loss")
}

// recordBreak adds scenario to the lab's breaks and rewrites the
// inventory.
func (l *Lab) recordBreak(scenario string) error {
	l.mu.Lock()
	l.st.Breaks = append(l.st.Breaks, scenario)
	l.mu.Unlock()
	if err := l.writeInventory(); err != nil {
		return err
	}
	if err := l.save(); err != nil {
		return err
	}
	l.logf("inventory rewritten: %s", l.InventoryPath())
	return nil
}

func (l *Lab) setVarLocked(k, v string) {
	if l.st.Vars == nil {
		l.st.Vars = map[string]string{}
	}
	l.st.Vars[k] = v
}

// memberAt returns the i-th member (1-based, clamped to the last one) and
// its host.
func (l *Lab) memberAt(i int) (*Member, *Host, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.st.Members) == 0 {
		return nil, nil, fmt.Errorf("the lab has no members")
	}
	if i > len(l.st.Members) {
		i = len(l.st.Members)
	}
	m := l.st.Members[i-1]
	h := l.hostLocked(m.Host)
	if h == nil {
		return nil, nil, fmt.Errorf("host %s of member %s is gone", m.Host, m.Name)
	}
	return m, h, nil
}

func (l *Lab) addrInUse(addr string) bool {
	for _, h := range l.hostPtrs() {
		if h.Address == addr {
			return true
		}
	}
	return false
}

// run runs command on host name and wraps a failure with its output.
func (l *Lab) mustRun(ctx context.Context, name, command string) error {
	out, err := l.Run(ctx, name, command, nil)
	if err != nil {
		return withOutput(fmt.Errorf("%s: %s: %w", name, command, err), out)
	}
	return nil
}

func (l *Lab) breakIPChange(ctx context.Context) error {
	if l.StaticPod() {
		return fmt.Errorf("not available on the %s layout yet (total-loss, quorum-loss and lost-host are)", LayoutStaticPod)
	}
	m, h, err := l.memberAt(3)
	if err != nil {
		return err
	}
	old, addr := h.Address, ""
	for n := 20 + h.Index; n < 250; n += 10 {
		if a := fmt.Sprintf("%s%d", subnetPrefix, n); !l.addrInUse(a) {
			addr = a
			break
		}
	}
	if err := l.mustRun(ctx, h.Name, "systemctl stop etcd"); err != nil {
		return err
	}
	if err := setAddr(ctx, h, addr); err != nil {
		return err
	}
	l.mu.Lock()
	h.Address = addr
	l.setVarLocked("oldPeerURL", l.peerURL(old))
	l.setVarLocked("oldClientURL", l.clientURL(old))
	l.mu.Unlock()
	if err := l.save(); err != nil {
		return err
	}
	if err := l.writeSSHFiles(); err != nil {
		return err
	}
	l.updateEtcHosts(ctx)
	// like a host that came back from a reboot with a new address: etcd
	// starts with its old settings and cannot bind the old address
	if err := l.mustRun(ctx, h.Name, "systemctl start --no-block etcd"); err != nil {
		return err
	}
	l.logf("ip-change: %s moved from %s to %s (same host key; known_hosts and ssh config updated)", h.Name, old, addr)
	l.logf("ip-change: etcd on %s was restarted with its old %s: it cannot bind %s and fails (Restart=on-failure retries)", h.Name, EnvFile, l.peerURL(old))
	l.logf("ip-change: the cluster's member list still has %s at %s; the inventory now says %s", m.Name, l.peerURL(old), l.peerURL(addr))
	switch {
	case l.TLSSharedCert():
		l.logf("ip-change: %s keeps the shared member certificate %s, valid for every lab address (%s too): no new certificate needed", h.Name, HostServerCert, addr)
	case l.st.TLS:
		ips, _ := memberSANs(h.Name, old)
		l.logf("ip-change: %s keeps its member certificate %s, valid for %s, not %s: peers and clients refuse etcd at the new address (\"x509: certificate is valid for %s, not %s\") until a new certificate is issued for it",
			h.Name, HostServerCert, old, addr, sanList(ips, nil), addr)
	}
	return nil
}

func (l *Lab) breakLostHost(ctx context.Context) error {
	m, h, err := l.memberAt(2)
	if err != nil {
		return err
	}
	if err := l.drv.destroy(ctx, h); err != nil {
		return err
	}
	l.mu.Lock()
	var keep []*Host
	for _, x := range l.st.Hosts {
		if x != h {
			keep = append(keep, x)
		}
	}
	idx := l.st.NextIndex
	l.st.NextIndex++
	nh := &Host{Name: fmt.Sprintf("h%d", idx), Index: idx, Address: defaultAddr(idx)}
	l.st.Hosts = append(keep, nh)
	m.Host = nh.Name
	l.setVarLocked("lostPeerURL", l.peerURL(h.Address))
	l.setVarLocked("lostHost", h.Name)
	l.mu.Unlock()
	if err := l.save(); err != nil {
		return err
	}
	l.logf("lost-host: %s (%s) destroyed: every process killed, its disk (with %s) deleted, its network namespace removed", h.Name, h.Address, DataDir)
	if err := l.writeSSHFiles(); err != nil {
		return err
	}
	if l.st.TLS && !l.st.TLSSharedCert {
		// the lost host's certificate went with it
		for _, p := range []string{l.MemberCertPath(h.Name), l.MemberKeyPath(h.Name)} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	t := time.Now()
	// a freshly provisioned host: its own member certificate is not made
	// yet (with a shared certificate, that one is installed)
	if err := l.createHost(ctx, nh, l.TLSSharedCert()); err != nil {
		return err
	}
	if l.StaticPod() {
		// a fresh control-plane node (kubelet and containerd running, the
		// images there, /etc/kubernetes/pki without a member certificate):
		// the etcd manifest with only the TLS and data flags and the
		// kube-apiserver manifest wait in ParkedDir, where stop-service
		// parks them, for set-config to complete etcd's and start-service
		// to put them in place
		em := l.etcdManifest("", "", "", "", "", false)
		if err := l.WriteFile(ctx, nh.Name, ParkedDir+"/etcd.yaml", []byte(em), 0o600); err != nil {
			return err
		}
		if err := l.WriteFile(ctx, nh.Name, ParkedDir+"/kube-apiserver.yaml", []byte(apiServerManifest(nh.Address)), 0o600); err != nil {
			return err
		}
	} else if l.st.TLS {
		// as the configuration management that installed it would leave it:
		// the CA, and an env file that only says where the certificates are
		env := "# " + EnvFile + ": written by etcd-rescue lab (a blank host: TLS settings only)\n" + tlsEnv()
		if err := l.WriteFile(ctx, nh.Name, EnvFile, []byte(env), 0o644); err != nil {
			return err
		}
	}
	if err := l.writeSSHFiles(); err != nil {
		return err
	}
	l.updateEtcHosts(ctx)
	switch {
	case l.StaticPod():
		l.logf("lost-host: blank replacement control-plane host %s at %s made in %.1fs: containerd and kubelet %s running, images imported, empty %s, %s without a member certificate (with --tls-shared-cert: the shared one), no manifest in %s: etcd.yaml (TLS and data flags only) and kube-apiserver.yaml wait in %s",
			nh.Name, nh.Address, time.Since(t).Seconds(), KubeVersion, DataDir, KubeEtcdPKIDir, ManifestDir, ParkedDir)
	case l.TLSSharedCert():
		l.logf("lost-host: blank replacement host %s at %s made in %.1fs: sshd, etcd %s binaries, user etcd, empty %s, %s with the shared member certificate and an %s with only the TLS settings, etcd not started",
			nh.Name, nh.Address, time.Since(t).Seconds(), l.Version(), DataDir, HostPKIDir, EnvFile)
	case l.st.TLS:
		l.logf("lost-host: blank replacement host %s at %s made in %.1fs: sshd, etcd %s binaries, user etcd, empty %s, the lab CA %s and an %s with only the TLS settings, etcd not started",
			nh.Name, nh.Address, time.Since(t).Seconds(), l.Version(), DataDir, HostCACert, EnvFile)
		l.logf("lost-host: %s has no member certificate yet (no %s, %s): etcd cannot start there until one is issued for %s",
			nh.Name, HostServerCert, HostServerKey, nh.Address)
	default:
		l.logf("lost-host: blank replacement host %s at %s made in %.1fs: sshd, etcd %s binaries, user etcd, empty %s, no %s, etcd not started",
			nh.Name, nh.Address, time.Since(t).Seconds(), l.Version(), DataDir, EnvFile)
	}
	l.logf("lost-host: the cluster's member list still has %s at %s; the inventory now puts %s on %s (%s)", m.Name, l.peerURL(h.Address), m.Name, nh.Name, l.peerURL(nh.Address))
	return nil
}

// breakQuorumLoss stops etcd and deletes the data dir on the members
// named in chosen, or on the last N/2+1 members when chosen is empty.
func (l *Lab) breakQuorumLoss(ctx context.Context, chosen []string) error {
	ms := l.Members()
	n := len(ms)
	k := n/2 + 1
	isVictim := func(i int, m Member) bool { return i >= n-k }
	if len(chosen) > 0 {
		known := map[string]bool{}
		for _, m := range ms {
			known[m.Name] = true
		}
		set := map[string]bool{}
		for _, v := range chosen {
			if !known[v] {
				return fmt.Errorf("victim %s is not a member of the lab", v)
			}
			set[v] = true
		}
		if len(set) < k || len(set) >= n {
			return fmt.Errorf("victims %v: a quorum loss of %d members takes %d to %d of them, not %d", chosen, n, k, n-1, len(set))
		}
		k = len(set)
		isVictim = func(_ int, m Member) bool { return set[m.Name] }
	}
	var victims, survivors []*Host
	var vnames, snames []string
	for i, m := range ms {
		h, ok := l.hostPtr(m.Host)
		if !ok {
			return fmt.Errorf("host %s of member %s is gone", m.Host, m.Name)
		}
		if isVictim(i, m) {
			victims = append(victims, h)
			vnames = append(vnames, m.Name+" on "+h.Name)
		} else {
			survivors = append(survivors, h)
			snames = append(snames, m.Name+" on "+h.Name)
		}
	}
	if err := parallel(victims, func(h *Host) error {
		return l.mustRun(ctx, h.Name, l.stopEtcdCmd()+" && rm -rf "+DataDir)
	}); err != nil {
		return err
	}
	l.logf("quorum-loss: stopped etcd and deleted %s on %d of %d members: %s", DataDir, k, n, strings.Join(vnames, ", "))
	if len(survivors) > 0 {
		verb := "keeps its data and still runs"
		if len(survivors) > 1 {
			verb = "keep their data and still run"
		}
		l.logf("quorum-loss: %s %s, without quorum (no leader, no writes)", strings.Join(snames, ", "), verb)
	}
	return nil
}

func (l *Lab) hostPtr(name string) (*Host, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.hostLocked(name)
	return h, h != nil
}

func (l *Lab) breakTotalLoss(ctx context.Context) error {
	snap, err := l.Snapshot(ctx, l.SnapshotPath())
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.st.Snapshot = snap
	l.mu.Unlock()
	if err := l.save(); err != nil {
		return err
	}
	l.logf("total-loss: snapshot of revision %d saved from %s to %s (sha256 %s in %s.sha256)", snap.Revision, snap.Member, snap.Path, snap.SHA256[:16], snap.Path)
	var hosts []*Host
	var names []string
	for _, m := range l.Members() {
		h, ok := l.hostPtr(m.Host)
		if !ok {
			return fmt.Errorf("host %s of member %s is gone", m.Host, m.Name)
		}
		hosts = append(hosts, h)
		names = append(names, h.Name)
	}
	if err := parallel(hosts, func(h *Host) error {
		return l.mustRun(ctx, h.Name, l.stopEtcdCmd()+" && rm -rf "+DataDir)
	}); err != nil {
		return err
	}
	l.logf("total-loss: etcd stopped and %s deleted on every host (%s); only the snapshot is left", DataDir, strings.Join(names, ", "))
	return nil
}

// updateEtcHosts rewrites /etc/hosts on every host (best effort).
func (l *Lab) updateEtcHosts(ctx context.Context) {
	data := l.etcHosts()
	_ = parallel(l.hostPtrs(), func(h *Host) error {
		return l.WriteFile(ctx, h.Name, "/etc/hosts", data, 0o644)
	})
}

// Reboot reboots host name with its disk kept: hard=false is a clean
// poweroff and boot, hard=true a power cut.  etcd comes back by itself only
// where its unit is enabled, as on a real machine.
func (l *Lab) Reboot(ctx context.Context, name string, hard bool) error {
	h, ok := l.hostPtr(name)
	if !ok {
		return fmt.Errorf("no host %s", name)
	}
	t := time.Now()
	if err := l.drv.halt(ctx, h, hard); err != nil {
		return err
	}
	if err := l.drv.boot(ctx, h); err != nil {
		return err
	}
	if err := l.save(); err != nil {
		return err
	}
	if err := l.waitSSH(ctx, h, 90*time.Second); err != nil {
		return fmt.Errorf("%w%s", err, l.drv.diag(h))
	}
	kind := "clean reboot"
	if hard {
		kind = "power cut and boot"
	}
	l.logf("reboot: %s: %s in %.1fs (disk kept; etcd starts again if its unit is enabled)", name, kind, time.Since(t).Seconds())
	return nil
}
