package lab

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// InventoryOptions says how the plans reach the hosts in an inventory
// written by WriteInventory.  The zero value is the lab's own inventory
// (InventoryPath): root, no sudo, no jump host.
type InventoryOptions struct {
	// User is ssh.user (default root).  OperatorUser ("rescue") is the
	// lab hosts' non-root account with passwordless sudo.
	User string `json:"user,omitempty"`
	// Sudo is ssh.sudo: every command runs as `sudo -n ...`.
	Sudo bool `json:"sudo,omitempty"`
	// Jump is a lab host to tunnel every connection through (ssh.jump, like
	// ssh -J): "h1", or "user@h1" (default user root).  The inventory
	// gets the host's current address: jump: root@10.77.0.11.  Its host key
	// is checked against the same known_hosts.
	Jump string `json:"jump,omitempty"`
}

var simpleWord = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)

func (o InventoryOptions) isDefault() bool { return o == InventoryOptions{} }

// WriteInventory writes an inventory like InventoryPath's (the cluster as it
// must be after recovery) to path, with the ssh section o says, e.g.
// ssh: {user: rescue, sudo: true, jump: root@10.77.0.11, identity: ...,
// knownHosts: ...} for {User: "rescue", Sudo: true, Jump: "h1"}.  The
// lab remembers it: a later Break rewrites it too, like its own inventory
// (unless the jump host is gone; that is logged and the file left as it
// was).  Down deletes it only when it is inside the state dir.
func (l *Lab) WriteInventory(path string, o InventoryOptions) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("inventory path: %w", err)
	}
	if abs == l.InventoryPath() && !o.isDefault() {
		return fmt.Errorf("%s is the lab's own inventory (root, no jump host); write the variant elsewhere", abs)
	}
	b, err := l.inventoryAt(abs, o)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(abs, b, l.inventoryPerm()); err != nil {
		return err
	}
	if abs == l.InventoryPath() {
		return nil
	}
	l.mu.Lock()
	if l.st.Inventories == nil {
		l.st.Inventories = map[string]InventoryOptions{}
	}
	l.st.Inventories[abs] = o
	l.mu.Unlock()
	return l.save()
}

// writeInventory writes <state>/inventory.yaml in etcd-rescue's plan
// inventory format: the cluster as it must be after recovery; and again
// every variant WriteInventory wrote.
func (l *Lab) writeInventory() error {
	b, err := l.inventory(InventoryOptions{})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(l.InventoryPath(), b, l.inventoryPerm()); err != nil {
		return err
	}
	l.mu.Lock()
	variants := make(map[string]InventoryOptions, len(l.st.Inventories))
	for p, o := range l.st.Inventories {
		variants[p] = o
	}
	l.mu.Unlock()
	for _, p := range sortedKeys(variants) {
		b, err := l.inventoryAt(p, variants[p])
		if err != nil {
			l.logf("inventory %s not rewritten: %v", p, err)
			continue
		}
		if err := writeFileAtomic(p, b, l.inventoryPerm()); err != nil {
			return err
		}
		l.logf("inventory rewritten: %s", p)
	}
	return nil
}

// jumpSpec resolves o.Jump ("h1", "user@h1") to user@address.
func (l *Lab) jumpSpec(jump string) (string, error) {
	user, name := "root", jump
	if u, n, ok := strings.Cut(jump, "@"); ok {
		user, name = u, n
	}
	if user == "" || name == "" {
		return "", fmt.Errorf("jump host %q: want a lab host name such as h1, or user@h1", jump)
	}
	h, ok := l.Host(name)
	if !ok {
		var names []string
		for _, x := range l.Hosts() {
			names = append(names, x.Name)
		}
		return "", fmt.Errorf("jump host %q: no lab host %s (the lab has %s)", jump, name, strings.Join(names, ", "))
	}
	return user + "@" + h.Address, nil
}

// inventoryPerm is the mode of the inventory files: 0600 when they hold
// the S3 store's secret key, else 0644.
func (l *Lab) inventoryPerm() os.FileMode {
	if l.S3() != nil {
		return 0o600
	}
	return 0o644
}

// inventory renders the lab's own inventory (InventoryPath) with the ssh
// section o says.
func (l *Lab) inventory(o InventoryOptions) ([]byte, error) {
	return l.inventoryAt(l.InventoryPath(), o)
}

// inventoryAt renders the inventory to be written at path (relative paths
// in it, the s3: section's ca:, are relative to path's directory) with the
// ssh section o says.
func (l *Lab) inventoryAt(path string, o InventoryOptions) ([]byte, error) {
	user := o.User
	if user == "" {
		user = "root"
	}
	var jump string
	if o.Jump != "" {
		var err error
		if jump, err = l.jumpSpec(o.Jump); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	q := strconv.Quote
	fmt.Fprintf(&b, "# etcd-rescue lab inventory, written %s by `etcd-rescue lab`.\n", time.Now().UTC().Format(time.RFC3339))
	b.WriteString("# It describes the cluster as it must be AFTER recovery: a break that moves or\n")
	b.WriteString("# replaces a host rewrites it.  Point a plan at it with `inventory:` or --inventory.\n")
	if !o.isDefault() {
		fmt.Fprintf(&b, "# A variant of %s: ssh as %s", l.InventoryPath(), user)
		if o.Sudo {
			b.WriteString(" with sudo")
		}
		if o.Jump != "" {
			fmt.Fprintf(&b, " through %s (%s)", o.Jump, jump)
		}
		b.WriteString(".\n")
	}
	l.mu.Lock()
	st := l.st
	if len(st.Breaks) > 0 {
		fmt.Fprintf(&b, "# breaks so far: %v\n", st.Breaks)
	}
	b.WriteString("cluster:\n")
	b.WriteString("  name: lab\n")
	fmt.Fprintf(&b, "  token: %s    # --initial-cluster-token for any NEW cluster a plan creates\n", q(st.Token))
	fmt.Fprintf(&b, "  etcdVersion: %s\n", q(l.Version()))
	if st.Layout == LayoutStaticPod {
		// kubeadm runs etcd as root: no owner
		fmt.Fprintf(&b, "  layout: {service: static-pod, manifest: %s, dataDir: %s, owner: \"\"}\n", EtcdManifest, DataDir)
	} else {
		fmt.Fprintf(&b, "  layout: {service: systemd, unit: %s, envFile: %s, dataDir: %s, owner: %s}\n", Unit, EnvFile, DataDir, q(Owner))
	}
	if st.TLS {
		// absolute paths: the inventory may be copied anywhere
		fmt.Fprintf(&b, "  tls: {ca: %s, cert: %s, key: %s}    # client API: the lab's CA, the operator's certificate\n",
			q(l.CACertPath()), q(l.ClientCertPath()), q(l.ClientCertKeyPath()))
	}
	b.WriteString("  clientAccess: ssh-tunnel\n")
	b.WriteString("  members:\n")
	var cp []string
	for _, m := range st.Members {
		h := l.hostLocked(m.Host)
		addr := "MISSING"
		if h != nil {
			addr = h.Address
		}
		cp = append(cp, m.Host)
		fmt.Fprintf(&b, "    - {name: %s, host: %s, peerURL: %s, clientURL: %s}\n", m.Name, m.Host, q(l.peerURL(addr)), q(l.clientURL(addr)))
	}
	if st.Layout == LayoutStaticPod {
		b.WriteString("  kubernetes:    # the control plane: kubelet static pods, kube-apiserver on every member's host\n")
		fmt.Fprintf(&b, "    controlPlane: static-pod\n    manifests: %s\n    components: [kube-apiserver]\n", ManifestDir)
		fmt.Fprintf(&b, "    hosts: [%s]\n", strings.Join(cp, ", "))
		fmt.Fprintf(&b, "    apiServer: {port: %d, ca: %s, cert: %s, key: %s}    # the lab's CA; admin (O=system:masters)\n",
			APIServerPort, q(l.CACertPath()), q(l.AdminCertPath()), q(l.AdminKeyPath()))
	}
	b.WriteString("hosts:\n")
	for _, h := range st.Hosts {
		fmt.Fprintf(&b, "  %s: {address: %s, port: 22}\n", h.Name, h.Address)
	}
	l.mu.Unlock()
	if !simpleWord.MatchString(user) {
		user = q(user)
	}
	fmt.Fprintf(&b, "ssh: {user: %s", user)
	if o.Sudo {
		b.WriteString(", sudo: true")
	}
	if jump != "" {
		fmt.Fprintf(&b, ", jump: %s", q(jump))
	}
	fmt.Fprintf(&b, ", identity: %s, knownHosts: %s}\n", q(l.ClientKeyPath()), q(l.KnownHostsPath()))
	s3 := l.S3()
	if s3 != nil {
		ca, err := filepath.Rel(filepath.Dir(path), s3.CAFile)
		if err != nil {
			ca = s3.CAFile
		}
		b.WriteString("s3:    # the lab's S3-compatible store (SeaweedFS on this machine, 127.0.0.1 only; lab down deletes it)\n")
		fmt.Fprintf(&b, "  endpoint: %s\n", q(s3.Endpoint))
		fmt.Fprintf(&b, "  region: %s\n", s3.Region)
		b.WriteString("  pathStyle: true\n")
		fmt.Fprintf(&b, "  ca: %s    # the lab's CA, relative to this file\n", q(ca))
		b.WriteString("  accessKey: \"${vars.s3AccessKey}\"\n")
		b.WriteString("  secretKey: \"${vars.s3SecretKey}\"\n")
	}
	if st := l.StateStore(); st != nil {
		// absolute paths: the inventory may be copied anywhere
		b.WriteString("state:    # the lab's management etcd, the shared store of run state and run locks (127.0.0.1 only; lab down deletes it)\n")
		fmt.Fprintf(&b, "  url: %s\n", q(st.URL))
		fmt.Fprintf(&b, "  ca: %s\n  cert: %s\n  key: %s\n", q(st.CAFile), q(st.CertFile), q(st.KeyFile))
	}
	fmt.Fprintf(&b, "vars:\n  snapshot: %s    # where total-loss leaves its snapshot\n", q(l.SnapshotPath()))
	if s3 != nil {
		fmt.Fprintf(&b, "  s3AccessKey: %s    # made for this lab\n", q(s3.AccessKey))
		fmt.Fprintf(&b, "  s3SecretKey: %s\n", q(s3.SecretKey))
		fmt.Fprintf(&b, "  s3Bucket: %s\n", q(s3.Bucket))
	}
	if l.st.TLS {
		// for a plan that issues member certificates: ca: {cert: "${vars.caCert}", key: "${vars.caKey}"}
		fmt.Fprintf(&b, "  caCert: %s    # the lab's CA (operator side), for a plan that issues member certificates\n", q(l.CACertPath()))
		fmt.Fprintf(&b, "  caKey: %s\n", q(l.CAKeyPath()))
	}
	l.mu.Lock()
	for _, k := range sortedKeys(l.st.Vars) {
		fmt.Fprintf(&b, "  %s: %s\n", k, q(l.st.Vars[k]))
	}
	l.mu.Unlock()
	return b.Bytes(), nil
}
