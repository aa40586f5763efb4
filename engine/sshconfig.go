package engine

import (
	"fmt"
	"net"
	"strconv"
	"strings"

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
