package sshx

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by [Config.withDefaults].
const (
	DefaultPort           = 22
	DefaultConnectTimeout = 15 * time.Second
	DefaultKeepAlive      = 15 * time.Second
	// DefaultMaxSessions stays below OpenSSH's MaxSessions default (10).
	DefaultMaxSessions = 8
)

// Config says how to reach and authenticate to one host.
type Config struct {
	// Address is the host name or IP address to connect to.
	Address string
	// Port defaults to 22.
	Port int
	// User defaults to the local user name.
	User string
	// IdentityFiles are private key files (a leading ~ is expanded). When empty and
	// the agent is not used, OpenSSH's default identities that exist are tried.
	// Passphrase-protected keys are skipped: load them into ssh-agent instead.
	IdentityFiles []string
	// UseAgent adds the keys of the ssh-agent at $SSH_AUTH_SOCK.
	UseAgent bool
	// KnownHosts is the known_hosts file; defaults to ~/.ssh/known_hosts.
	KnownHosts string
	// KnownHostsExtra are further known_hosts files consulted (an ssh config's
	// UserKnownHostsFile may list several); missing ones are skipped.
	KnownHostsExtra []string
	// InsecureIgnoreHostKey disables host key verification. It exists for throwaway
	// labs only; callers must say loudly that it is on ([Client.HostKeyCheckDisabled]).
	InsecureIgnoreHostKey bool
	// Sudo runs every command as `sudo -n ...` (never prompts for a password).
	Sudo bool
	// Jump, when set, is a bastion the connection is tunnelled through
	// (like ssh -J); it may have its own Jump (a ProxyJump chain). Its zero
	// fields User, IdentityFiles, UseAgent, KnownHosts and InsecureIgnoreHostKey
	// are taken from the target's Config; Sudo is ignored.
	Jump *Config
	// ConnectTimeout bounds TCP connect plus SSH handshake; defaults to 15 s.
	ConnectTimeout time.Duration
	// KeepAlive is the interval between keepalive@openssh.com requests; defaults to
	// 15 s, negative disables them.
	KeepAlive time.Duration
	// KeepAliveTimeout is how long a keepalive may go unanswered before the
	// connection is declared dead; defaults to twice KeepAlive, at least 10 s.
	KeepAliveTimeout time.Duration
	// MaxSessions is how many sessions the client opens at once on the
	// connection; one of them is kept for killing timed-out commands, so
	// MaxSessions-1 commands run concurrently and the others queue. Keep it at or
	// below the host's sshd MaxSessions (10 unless configured). Defaults to 8.
	MaxSessions int
}

// HostPort returns the address dialled, "host:port".
func (c Config) HostPort() string {
	port := c.Port
	if port == 0 {
		port = DefaultPort
	}
	return net.JoinHostPort(c.Address, strconv.Itoa(port))
}

func (c Config) withDefaults() (Config, error) {
	if strings.TrimSpace(c.Address) == "" {
		return c, errors.New("ssh config: empty address")
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Port < 0 || c.Port > 65535 {
		return c, fmt.Errorf("ssh config for %s: port %d out of range", c.Address, c.Port)
	}
	if c.User == "" {
		u, err := user.Current()
		if err != nil {
			return c, fmt.Errorf("ssh config for %s: no user given and the local user is unknown: %w", c.Address, err)
		}
		c.User = u.Username
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.KeepAliveTimeout <= 0 {
		c.KeepAliveTimeout = 2 * c.KeepAlive
		if c.KeepAliveTimeout < 10*time.Second {
			c.KeepAliveTimeout = 10 * time.Second
		}
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.KnownHosts == "" {
		c.KnownHosts = "~/.ssh/known_hosts"
	}
	kh, err := expandHome(c.KnownHosts)
	if err != nil {
		return c, err
	}
	c.KnownHosts = kh
	extra := make([]string, 0, len(c.KnownHostsExtra))
	for _, f := range c.KnownHostsExtra {
		p, err := expandHome(f)
		if err != nil {
			return c, err
		}
		extra = append(extra, p)
	}
	c.KnownHostsExtra = extra
	files := make([]string, 0, len(c.IdentityFiles))
	for _, f := range c.IdentityFiles {
		p, err := expandHome(f)
		if err != nil {
			return c, err
		}
		files = append(files, p)
	}
	c.IdentityFiles = files
	if c.Jump != nil {
		j := *c.Jump
		if j.User == "" {
			j.User = c.User
		}
		if len(j.IdentityFiles) == 0 {
			j.IdentityFiles = c.IdentityFiles
		}
		if !j.UseAgent {
			j.UseAgent = c.UseAgent
		}
		if j.KnownHosts == "" {
			j.KnownHosts = c.KnownHosts
			if len(j.KnownHostsExtra) == 0 {
				j.KnownHostsExtra = c.KnownHostsExtra
			}
		}
		if !j.InsecureIgnoreHostKey {
			j.InsecureIgnoreHostKey = c.InsecureIgnoreHostKey
		}
		if j.ConnectTimeout == 0 {
			j.ConnectTimeout = c.ConnectTimeout
		}
		if j.KeepAlive == 0 {
			j.KeepAlive = c.KeepAlive
		}
		if j.KeepAliveTimeout == 0 {
			j.KeepAliveTimeout = c.KeepAliveTimeout
		}
		j.Sudo = false
		jd, err := j.withDefaults()
		if err != nil {
			return c, fmt.Errorf("jump host of %s: %w", c.Address, err)
		}
		c.Jump = &jd
	}
	return c, nil
}

// expandHome expands a leading "~" or "~/" to the local home directory.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("expanding %s: %w", p, err)
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
}
