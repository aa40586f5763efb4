package plans

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
)

// Check runs the structural rules that need only the plan: the cluster, the
// hosts, step ids, needs and on:. Step parameters, the DAG and the etcd
// domain rules are checked by the engine, which knows the step types.
func (p *Plan) Check() Findings {
	var fs Findings
	if _, ok := p.KeyPos["version"]; ok && p.Version != 1 {
		fs.Add(p.KeyPos["version"], "unsupported plan version %d", p.Version).WithHint("this etcd-rescue reads version: 1")
	}
	if p.Cluster == nil {
		fs.Add(p.Pos, "missing required key %q", "cluster").
			WithHint("describe the cluster in the plan or in an inventory file (inventory: FILE or --inventory FILE)")
	} else {
		fs = append(fs, p.checkCluster()...)
	}
	if len(p.Hosts) == 0 {
		fs.Add(p.Pos, "missing required key %q", "hosts").
			WithHint("list the machines in the plan or in an inventory file (inventory: FILE or --inventory FILE)")
	}
	fs = append(fs, p.checkHosts()...)
	if p.SSH != nil && p.SSH.InsecureIgnoreHostKey {
		fs.Warn(p.SSH.KeyPos["insecureIgnoreHostKey"], "ssh.insecureIgnoreHostKey is on: host keys will not be verified").
			WithHint("use it only for a throwaway lab; put the hosts' keys in ssh.knownHosts instead")
	}
	fs = append(fs, p.checkS3()...)
	fs = append(fs, p.checkState()...)
	fs = append(fs, p.checkSteps()...)
	return fs
}

func (p *Plan) checkCluster() Findings {
	var fs Findings
	c := p.Cluster
	if c.EtcdVersion != "" {
		if _, err := ParseVersion(c.EtcdVersion); err != nil {
			fs.Add(c.KeyPos["etcdVersion"], "%v", err)
		}
	}
	if c.TLS != nil && (c.TLS.Cert == "") != (c.TLS.Key == "") {
		fs.Add(c.TLS.Pos, "tls: cert and key go together").WithHint("set both cert and key, or neither (CA only)")
	}
	l := c.Layout
	if !path.IsAbs(l.DataDir) || path.Clean(l.DataDir) == "/" {
		fs.Add(layoutPos(c, "dataDir"), "layout.dataDir %q must be an absolute path below /", l.DataDir)
	}
	if l.Service == "systemd" && !path.IsAbs(l.EnvFile) {
		fs.Add(layoutPos(c, "envFile"), "layout.envFile %q must be an absolute path", l.EnvFile)
	}
	if l.Service == "static-pod" && !path.IsAbs(l.Manifest) {
		fs.Add(layoutPos(c, "manifest"), "layout.manifest %q must be an absolute path", l.Manifest)
	}
	if l.Owner != "" && !ownerOK(l.Owner) {
		fs.Add(layoutPos(c, "owner"), "layout.owner %q is not user or user:group", l.Owner)
	}
	if k := l.PKI; k != nil {
		for _, f := range []struct{ key, val string }{{"serverCert", k.ServerCert}, {"serverKey", k.ServerKey}, {"trustedCA", k.TrustedCA},
			{"peerCert", k.PeerCert}, {"peerKey", k.PeerKey}, {"peerTrustedCA", k.PeerTrustedCA}} {
			if f.val != "" && !path.IsAbs(f.val) {
				fs.Add(pkiPos(k, f.key), "layout.pki.%s %q must be an absolute path on the hosts", f.key, f.val)
			}
		}
		if d := k.MinValidDays; d != nil && (*d < 0 || *d > 3650) {
			fs.Add(pkiPos(k, "minValidDays"), "layout.pki.minValidDays %d is not between 0 and 3650", *d).
				WithHint("the number of days a member certificate must still be valid; 0 turns the margin off")
		}
	}
	if c.Kubernetes != nil {
		fs = append(fs, p.checkKubernetes()...)
	}
	names := map[string]*Member{}
	peers := map[string]*Member{}
	clients := map[string]*Member{}
	onHost := map[string]*Member{}
	for _, m := range c.Members {
		if m == nil {
			continue
		}
		if m.Name != "" {
			if prev, dup := names[m.Name]; dup {
				fs.Add(m.KeyPos["name"], "duplicate member name %q (first at %s)", m.Name, prev.KeyPos["name"])
			}
			names[m.Name] = m
		}
		if m.Host != "" {
			h, ok := p.Hosts[m.Host]
			if !ok && len(p.Hosts) > 0 {
				fs.Add(m.KeyPos["host"], "member %q: host %q is not in hosts%s", m.Name, m.Host, Suggest(m.Host, p.hostNames()))
			}
			if prev, dup := onHost[m.Host]; dup {
				fs.Add(m.KeyPos["host"], "members %q and %q both run on host %q", prev.Name, m.Name, m.Host).
					WithHint("one member per host: they would share the data dir")
			}
			onHost[m.Host] = m
			for _, key := range []string{"peerURL", "clientURL"} {
				raw := m.PeerURL
				seen := peers
				if key == "clientURL" {
					raw, seen = m.ClientURL, clients
				}
				if raw == "" {
					continue
				}
				u, err := parseMemberURL(raw)
				if err != nil {
					fs.Add(m.KeyPos[key], "member %q: %s %v", m.Name, key, err)
					continue
				}
				norm := u.Scheme + "://" + strings.ToLower(u.Host)
				if prev, dup := seen[norm]; dup {
					fs.Add(m.KeyPos[key], "member %q: %s %s is already used by member %q", m.Name, key, raw, prev.Name)
				}
				seen[norm] = m
				if ok && h != nil && h.Address != "" && !sameHost(u.Hostname(), h.Address) && !comparable(u.Hostname(), h.Address) {
					fs.Warn(m.KeyPos[key], "member %q: %s host %q cannot be checked against host %q address %q (a name and an IP)", m.Name, key, u.Hostname(), m.Host, h.Address).
						WithHint("use the same form in both places so the validator can check them")
				} else if ok && h != nil && h.Address != "" && !sameHost(u.Hostname(), h.Address) {
					fs.Add(m.KeyPos[key], "member %q: %s host %q does not match host %q address %q", m.Name, key, u.Hostname(), m.Host, h.Address).
						WithHint("etcd would advertise an address that is not where the member runs; fix the URL or hosts.%s.address", m.Host)
				}
			}
		}
	}
	if n := len(c.Members); n > 0 && n%2 == 0 {
		fs.Warn(c.KeyPos["members"], "%d members tolerate %d failure(s), the same as %d: quorum is %d of %d", n, (n-1)/2, n-1, n/2+1, n).
			WithHint("use an odd member count (3 or 5)")
	}
	return fs
}

func pkiPos(k *PKI, key string) Pos {
	if p, ok := k.KeyPos[key]; ok {
		return p
	}
	return k.Pos
}

func layoutPos(c *Cluster, key string) Pos {
	if p, ok := c.Layout.KeyPos[key]; ok {
		return p
	}
	if p, ok := c.KeyPos["layout"]; ok {
		return p
	}
	return c.Pos
}

func ownerOK(s string) bool {
	parts := strings.Split(s, ":")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, " \t/'\"$`;&|") {
			return false
		}
	}
	return true
}

func parseMemberURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q must start with http:// or https://", raw)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("%q must name a host and a port, like https://10.0.0.1:2380", raw)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("%q must be scheme://host:port only", raw)
	}
	return u, nil
}

// sameHost compares a URL host with a host address; two different names or
// IPs are a mismatch, a name against an IP cannot be decided and passes.
func sameHost(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	ia, ib := net.ParseIP(a), net.ParseIP(b)
	if ia != nil && ib != nil {
		return ia.Equal(ib)
	}
	return false
}

// comparable reports whether two host strings are both IPs or both names.
func comparable(a, b string) bool {
	return (net.ParseIP(a) == nil) == (net.ParseIP(b) == nil)
}

func (p *Plan) hostNames() []string {
	var out []string
	for n := range p.Hosts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (p *Plan) checkHosts() Findings {
	var fs Findings
	addrs := map[string]string{}
	for _, name := range p.hostNames() {
		h := p.Hosts[name]
		if h.Port < 1 || h.Port > 65535 {
			fs.Add(h.KeyPos["port"], "host %q: port %d is not 1-65535", name, h.Port)
		}
		if h.Address == "" {
			continue
		}
		key := fmt.Sprintf("%s:%d", strings.ToLower(h.Address), h.Port)
		if prev, dup := addrs[key]; dup {
			fs.Add(h.KeyPos["address"], "hosts %q and %q have the same address %s", prev, name, key)
		}
		addrs[key] = name
	}
	return fs
}

// reserved names for on:
const (
	OnAll     = "all"
	OnMembers = "members"
)

func (p *Plan) checkSteps() Findings {
	var fs Findings
	ids := map[string]*Step{}
	var idList []string
	for _, s := range p.Steps {
		if s == nil || s.ID == "" {
			continue
		}
		if prev, dup := ids[s.ID]; dup {
			fs.Add(s.At("id"), "duplicate step id %q (first at %s)", s.ID, prev.At("id"))
			continue
		}
		if strings.ContainsAny(s.ID, " \t/\\:") {
			fs.Add(s.At("id"), "step id %q must not contain spaces, slashes or colons", s.ID)
		}
		ids[s.ID] = s
		idList = append(idList, s.ID)
	}
	for _, s := range p.Steps {
		if s == nil {
			continue
		}
		seen := map[string]bool{}
		for _, n := range s.Needs {
			switch {
			case n == s.ID:
				fs.Add(s.At("needs"), "needs itself").ForStep(s.ID)
			case ids[n] == nil:
				fs.Add(s.At("needs"), "needs %q, which is not a step%s", n, Suggest(n, idList)).ForStep(s.ID)
			case seen[n]:
				fs.Warn(s.At("needs"), "needs %q twice", n).ForStep(s.ID)
			}
			seen[n] = true
		}
		for _, o := range s.On {
			if _, err := p.ResolveOn(Strings{o}); err != nil {
				fs.Add(s.At("on"), "%v", err).ForStep(s.ID).WithHint("on: takes all, members, a host name, a member name, or a list of them")
			}
		}
		if s.Retries < 0 {
			fs.Add(s.At("retries"), "retries must not be negative").ForStep(s.ID)
		}
	}
	return fs
}

// ResolveOn turns an on: selector into host names, sorted and unique.
// "all" is every host, "members" every host that runs a member; a member
// name selects its host.
func (p *Plan) ResolveOn(on Strings) ([]string, error) {
	set := map[string]bool{}
	for _, o := range on {
		switch {
		case o == OnAll:
			for n := range p.Hosts {
				set[n] = true
			}
		case o == OnMembers:
			if p.Cluster != nil {
				for _, m := range p.Cluster.Members {
					set[m.Host] = true
				}
			}
		case p.Hosts[o] != nil:
			set[o] = true
		case p.Cluster != nil && p.Cluster.MemberByName(o) != nil:
			set[p.Cluster.MemberByName(o).Host] = true
		default:
			cands := append(p.hostNames(), OnAll, OnMembers)
			if p.Cluster != nil {
				for _, m := range p.Cluster.Members {
					cands = append(cands, m.Name)
				}
			}
			return nil, fmt.Errorf("on: %q names no host or member%s", o, Suggest(o, cands))
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		// Only hosts that exist: a member whose host is missing from hosts:
		// (or not written) is reported by checkCluster, and no step may
		// target a host it cannot describe.
		if p.Hosts[n] != nil {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// componentRe is what a control-plane component may be called: a systemd
// unit name or a static pod's manifest name (NAME.yaml) and container name.
var componentRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)

func (p *Plan) checkKubernetes() Findings {
	var fs Findings
	c := p.Cluster
	k := c.Kubernetes
	if k.ControlPlane == "static-pod" && (!path.IsAbs(k.Manifests) || path.Clean(k.Manifests) == "/") {
		fs.Add(k.At("manifests"), "kubernetes.manifests %q must be an absolute path below /", k.Manifests)
	}
	if _, set := k.KeyPos["components"]; set && len(k.Components) == 0 {
		fs.Add(k.At("components"), "kubernetes.components is empty: the kube-* steps would stop and start nothing").
			WithHint("leave components: out for kube-apiserver, kube-controller-manager, kube-scheduler")
	}
	seen := map[string]bool{}
	for _, name := range k.Components {
		switch {
		case !componentRe.MatchString(name):
			fs.Add(k.At("components"), "kubernetes.components: %q is not a unit or static pod name (lowercase letters, digits, dots and dashes)", name)
		case name == c.Layout.Unit:
			fs.Add(k.At("components"), "kubernetes.components lists %q, which is etcd itself (cluster.layout.unit)", name).
				WithHint("etcd is stopped and started by stop-service and start-service, so that restored members start together; list only the Kubernetes components")
		case seen[name]:
			fs.Add(k.At("components"), "kubernetes.components lists %q twice", name)
		}
		seen[name] = true
	}
	if _, set := k.KeyPos["hosts"]; set && len(k.Hosts) == 0 {
		fs.Add(k.At("hosts"), "kubernetes.hosts is empty").WithHint("leave hosts: out for the hosts of the members")
	}
	dup := map[string]bool{}
	for _, h := range k.Hosts {
		if _, ok := p.Hosts[h]; !ok && len(p.Hosts) > 0 {
			fs.Add(k.At("hosts"), "kubernetes.hosts: %q is not in hosts%s", h, Suggest(h, p.hostNames()))
		}
		if dup[h] {
			fs.Add(k.At("hosts"), "kubernetes.hosts lists %q twice", h)
		}
		dup[h] = true
	}
	if a := k.APIServer; a != nil {
		if a.Port < 1 || a.Port > 65535 {
			fs.Add(a.At(k, "port"), "kubernetes.apiServer.port %d is not 1-65535", a.Port)
		}
		if (a.Cert == "") != (a.Key == "") {
			fs.Add(a.At(k, "cert"), "kubernetes.apiServer: cert and key go together").WithHint("set both cert and key, or neither (the CA only: readiness is read anonymously)")
		}
	}
	return fs
}
