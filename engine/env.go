package engine

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// SSHConfig is the sshx configuration of one host of the plan.
func SSHConfig(p *plans.Plan, h *plans.Host) (sshx.Config, error) {
	s := p.SSH
	if s == nil {
		s = &plans.SSH{}
	}
	cfg := sshx.Config{
		Address:               h.Address,
		Port:                  h.Port,
		User:                  h.User,
		UseAgent:              s.Agent,
		KnownHosts:            plans.LocalFile(p.SSHBase, s.KnownHosts),
		InsecureIgnoreHostKey: s.InsecureIgnoreHostKey,
		Sudo:                  s.Sudo,
		ConnectTimeout:        s.Timeout.D(),
	}
	if cfg.User == "" {
		cfg.User = s.User
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
