// Package access owns how this machine reaches a plan's hosts and members:
// the SSH configuration of each host (host keys always verified), the etcd
// client TLS files, the Kubernetes API server files, and the local
// preflight of them. The engine (apply)
// and the read-only facts collector share it, so that both reach a host
// the same way.
package access

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// SSHConfig is the sshx configuration of one host of the plan. A value the
// plan sets wins; with ssh.config, the OpenSSH config file fills what the
// plan leaves unset (hosts.X.address read as a Host alias); the plan's
// defaults come last.
func SSHConfig(p *plans.Plan, h *plans.Host) (sshx.Config, error) {
	s := p.SSH
	if s == nil {
		s = &plans.SSH{}
	}
	cfg := sshx.Config{
		Address:               h.Address,
		UseAgent:              s.Agent,
		InsecureIgnoreHostKey: s.InsecureIgnoreHostKey,
		Sudo:                  s.Sudo,
		ConnectTimeout:        s.Timeout.D(),
	}
	if h.IsSet("port") {
		cfg.Port = h.Port
	}
	if h.IsSet("user") {
		cfg.User = h.User
	} else if s.IsSet("user") {
		cfg.User = s.User
	}
	if s.IsSet("knownHosts") {
		cfg.KnownHosts = plans.LocalFile(p.SSHBase, s.KnownHosts)
	}
	if s.Identity != "" {
		cfg.IdentityFiles = []string{plans.LocalFile(p.SSHBase, s.Identity)}
	}
	if s.Jump != "" {
		j, err := parseJump(s.Jump)
		if err != nil {
			return cfg, err
		}
		cfg.Jump = &j
	}
	if s.Config != "" {
		var err error
		if cfg, err = cfg.WithSSHConfig(plans.LocalFile(p.SSHBase, s.Config)); err != nil {
			return cfg, err
		}
	}
	if cfg.Port == 0 {
		cfg.Port = h.Port
	}
	if cfg.User == "" {
		cfg.User = h.User
	}
	if cfg.KnownHosts == "" {
		cfg.KnownHosts = plans.LocalFile(p.SSHBase, s.KnownHosts)
	}
	return cfg, nil
}

// parseJump reads ssh.jump: [user@]host[:port].
func parseJump(s string) (sshx.Config, error) {
	var c sshx.Config
	rest := s
	if u, h, ok := strings.Cut(s, "@"); ok {
		c.User, rest = u, h
	}
	host, port := rest, ""
	if h, p, err := net.SplitHostPort(rest); err == nil {
		host, port = h, p
	}
	if host == "" {
		return c, fmt.Errorf("ssh.jump %q: no host", s)
	}
	c.Address = host
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil {
			return c, fmt.Errorf("ssh.jump %q: bad port", s)
		}
		c.Port = n
	}
	return c, nil
}

// TLSFiles is the plan's client TLS for the etcd API, its relative paths
// resolved against the file that defined cluster:; nil without cluster.tls.
func TLSFiles(p *plans.Plan) *etcdapi.TLSFiles {
	if p.Cluster == nil || p.Cluster.TLS == nil {
		return nil
	}
	t := p.Cluster.TLS
	b := p.ClusterBase
	return &etcdapi.TLSFiles{CA: plans.LocalFile(b, t.CA), Cert: plans.LocalFile(b, t.Cert), Key: plans.LocalFile(b, t.Key), ServerName: t.ServerName}
}

// checkAPIServerFiles reads cluster.kubernetes.apiServer's CA, client
// certificate and key (relative paths against the file that defined
// cluster:, like cluster.tls), so that a missing or broken file is found
// before the first change, not when kube-wait-ready or kube-verify-relist
// runs at the end of a recovery. Messages name the files, never a key's
// content.
func checkAPIServerFiles(p *plans.Plan) error {
	if p.Cluster == nil || p.Cluster.Kubernetes == nil || p.Cluster.Kubernetes.APIServer == nil {
		return nil
	}
	a, b := p.Cluster.Kubernetes.APIServer, p.ClusterBase
	if a.CA != "" {
		ca := plans.LocalFile(b, a.CA)
		pem, err := os.ReadFile(ca)
		if err != nil {
			return fmt.Errorf("kubernetes.apiServer.ca: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("kubernetes.apiServer.ca %s: no PEM certificate found", ca)
		}
	}
	if a.Cert != "" && a.Key != "" {
		cert, key := plans.LocalFile(b, a.Cert), plans.LocalFile(b, a.Key)
		if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
			return fmt.Errorf("kubernetes.apiServer client certificate %s / key %s: %w", cert, key, err)
		}
	}
	return nil
}

// PrereqError is a missing local prerequisite (an SSH identity file, the
// ssh-agent, a known_hosts file that does not parse, the etcd TLS files),
// found before any connection is opened.
type PrereqError struct {
	Problems []string
}

func (e *PrereqError) Error() string {
	if len(e.Problems) == 1 {
		return "missing prerequisite: " + e.Problems[0]
	}
	s := fmt.Sprintf("%d missing prerequisites:", len(e.Problems))
	for _, p := range e.Problems {
		s += "\n  " + p
	}
	return s
}

// Preflight checks, on this machine and without any network traffic, what
// reaching p's hosts and members needs: every host's SSH identity, agent
// and known_hosts, and the etcd client TLS files. Every problem is
// reported at once (a *PrereqError); the same problem shared by several
// hosts is reported once, naming them.
func Preflight(p *plans.Plan) error {
	byProblem := map[string][]string{}
	var order []string
	add := func(problem, host string) {
		if _, ok := byProblem[problem]; !ok {
			order = append(order, problem)
		}
		if host != "" {
			byProblem[problem] = append(byProblem[problem], host)
		}
	}
	names := make([]string, 0, len(p.Hosts))
	for n := range p.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		cfg, err := SSHConfig(p, p.Hosts[n])
		if err == nil {
			err = cfg.CheckLocal()
		}
		if err != nil {
			add(err.Error(), n)
		}
	}
	if f := TLSFiles(p); f != nil {
		if err := etcdapi.CheckTLS(*f); err != nil {
			add(err.Error(), "")
		}
	}
	if err := checkAPIServerFiles(p); err != nil {
		add(err.Error(), "")
	}
	if len(order) == 0 {
		return nil
	}
	e := &PrereqError{}
	for _, pr := range order {
		switch hs := byProblem[pr]; len(hs) {
		case 0:
		case 1:
			pr = "host " + hs[0] + ": " + pr
		default:
			pr = "hosts " + strings.Join(hs, ", ") + ": " + pr
		}
		e.Problems = append(e.Problems, pr)
	}
	return e
}
