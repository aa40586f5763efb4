package sshx

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// This file reads an OpenSSH client config file (ssh_config(5)) with
// github.com/kevinburke/ssh_config, for the directives that say where a host
// is and how to log in: HostName, User, Port, IdentityFile, ProxyJump and
// UserKnownHostsFile. Precedence is ssh's own ("the command line beats the
// config file"): a value the caller set wins, the file fills what it left
// unset, built-in defaults come last ([Config.withDefaults]).
//
// Directives that would weaken host key checking (StrictHostKeyChecking no
// or accept-new, a UserKnownHostsFile of /dev/null, ...) are not obeyed:
// host keys are always verified against known_hosts, so /dev/null simply
// makes every host unknown. Other directives are ignored, except
// ProxyCommand, which is refused: connecting directly instead of through it
// would bypass the route the operator configured.

// maxJumpDepth bounds ProxyJump chains (and loops between aliases).
const maxJumpDepth = 8

// sshConfigFile is a parsed ssh_config file.
type sshConfigFile struct {
	path string
	cfg  *ssh_config.Config
}

// directive is one value of a directive with where it was read.
type directive struct {
	value string
	at    string // file:line
}

var parserPosRe = regexp.MustCompile(`^\((\d+), (\d+)\): `)

func loadSSHConfigFile(path string) (*sshConfigFile, error) {
	p, err := expandHome(path)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("ssh config %s: %w", p, err)
	}
	cfg, err := ssh_config.DecodeBytes(raw)
	if err != nil {
		msg := strings.TrimSpace(err.Error())
		if m := parserPosRe.FindStringSubmatch(msg); m != nil {
			return nil, fmt.Errorf("%s:%s:%s: %s", p, m[1], m[2], strings.TrimSpace(msg[len(m[0]):]))
		}
		return nil, fmt.Errorf("ssh config %s: %s", p, msg)
	}
	return &sshConfigFile{path: p, cfg: cfg}, nil
}

// includedKeys are the directives looked up inside Include'd files (whose
// lines the parser does not expose with positions).
var includedKeys = []string{"hostname", "user", "port", "identityfile", "proxyjump", "userknownhostsfile", "proxycommand"}

// lookup returns, by lower-case directive name, every value that applies to
// alias, in file order (the first one is the one ssh uses, except for
// IdentityFile, which accumulates).
func (f *sshConfigFile) lookup(alias string) map[string][]directive {
	out := map[string][]directive{}
	for _, h := range f.cfg.Hosts {
		if !h.Matches(alias) {
			continue
		}
		for _, n := range h.Nodes {
			switch n := n.(type) {
			case *ssh_config.KV:
				k := strings.ToLower(n.Key)
				out[k] = append(out[k], directive{value: n.Value, at: fmt.Sprintf("%s:%d", f.path, n.Pos().Line)})
			case *ssh_config.Include:
				for _, k := range includedKeys {
					vals, _ := n.GetAll(alias, k)
					for _, v := range vals {
						out[k] = append(out[k], directive{value: v, at: fmt.Sprintf("%s:%d (Include)", f.path, n.Pos().Line)})
					}
				}
			}
		}
	}
	return out
}

// WithSSHConfig returns c with what the OpenSSH client config file at path
// says for c.Address, read as a Host alias, filled into the settings c
// leaves unset: the address (HostName, with %h), User, Port, IdentityFiles
// (IdentityFile, every matching line, with %d %h %r %u %%), KnownHosts and
// KnownHostsExtra (UserKnownHostsFile) and Jump (ProxyJump, each hop being
// itself looked up as an alias; "none" for no jump host). A Jump c already
// has is looked up as an alias the same way. Errors name the file and line.
func (c Config) WithSSHConfig(path string) (Config, error) {
	f, err := loadSSHConfigFile(path)
	if err != nil {
		return c, err
	}
	return f.apply(c, 0)
}

func (f *sshConfigFile) apply(c Config, depth int) (Config, error) {
	if depth > maxJumpDepth {
		return c, fmt.Errorf("ssh config %s: ProxyJump chain of %s is longer than %d hops (a loop?)", f.path, c.Address, maxJumpDepth)
	}
	alias := c.Address
	d := f.lookup(alias)
	first := func(k string) (directive, bool) {
		if v := d[k]; len(v) > 0 {
			return v[0], true
		}
		return directive{}, false
	}
	if v, ok := first("hostname"); ok {
		h, err := expandTokens(v, map[byte]string{'h': alias})
		if err != nil {
			return c, err
		}
		c.Address = h
	}
	if v, ok := first("user"); ok && c.User == "" {
		c.User = v.value
	}
	if v, ok := first("port"); ok && c.Port == 0 {
		n, err := strconv.Atoi(v.value)
		if err != nil || n < 1 || n > 65535 {
			return c, fmt.Errorf("%s: Port %q is not a port number (1-65535)", v.at, v.value)
		}
		c.Port = n
	}
	remoteUser := c.User
	if remoteUser == "" {
		if u, err := user.Current(); err == nil {
			remoteUser = u.Username
		}
	}
	port := c.Port
	if port == 0 {
		port = DefaultPort
	}
	tokens := map[byte]string{'h': c.Address, 'n': alias, 'r': remoteUser, 'p': strconv.Itoa(port)}
	if home, err := os.UserHomeDir(); err == nil {
		tokens['d'] = home
	}
	if u, err := user.Current(); err == nil {
		tokens['u'] = u.Username
	}
	if len(c.IdentityFiles) == 0 {
		for _, v := range d["identityfile"] {
			if strings.EqualFold(v.value, "none") {
				continue
			}
			p, err := expandTokens(v, tokens)
			if err != nil {
				return c, err
			}
			c.IdentityFiles = append(c.IdentityFiles, p)
		}
	}
	if v, ok := first("userknownhostsfile"); ok && c.KnownHosts == "" {
		for i, w := range strings.Fields(v.value) {
			p, err := expandTokens(directive{value: w, at: v.at}, tokens)
			if err != nil {
				return c, err
			}
			if i == 0 {
				c.KnownHosts = p
			} else {
				c.KnownHostsExtra = append(c.KnownHostsExtra, p)
			}
		}
	}
	if c.Jump != nil {
		j, err := f.apply(*c.Jump, depth+1)
		if err != nil {
			return c, fmt.Errorf("jump host %s: %w", c.Jump.Address, err)
		}
		c.Jump = &j
		return c, nil
	}
	if v, ok := first("proxyjump"); ok {
		if strings.EqualFold(v.value, "none") {
			return c, nil
		}
		var prev *Config
		for _, hop := range strings.Split(v.value, ",") {
			j, err := parseHop(strings.TrimSpace(hop))
			if err != nil {
				return c, fmt.Errorf("%s: ProxyJump %q: %w", v.at, v.value, err)
			}
			if j, err = f.apply(j, depth+1); err != nil {
				return c, fmt.Errorf("%s: ProxyJump %s: %w", v.at, hop, err)
			}
			// Like ssh -J a,b: b is reached through a; the first hop may have
			// its own ProxyJump.
			if prev != nil {
				j.Jump = prev
			}
			prev = &j
		}
		c.Jump = prev
		return c, nil
	}
	if v, ok := first("proxycommand"); ok && !strings.EqualFold(v.value, "none") {
		return c, fmt.Errorf("%s: ProxyCommand is not supported for %s\nhint: use ProxyJump (or ssh.jump) for a bastion", v.at, alias)
	}
	return c, nil
}

// parseHop reads one ProxyJump hop, [user@]host[:port].
func parseHop(s string) (Config, error) {
	var c Config
	s = strings.TrimPrefix(s, "ssh://")
	if u, h, ok := strings.Cut(s, "@"); ok {
		c.User, s = u, h
	}
	host := s
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return c, fmt.Errorf("bad port %q", p)
		}
		host, c.Port = h, n
	}
	if host == "" {
		return c, errors.New("no host")
	}
	c.Address = host
	return c, nil
}

// expandTokens expands ssh_config(5) %-tokens and a leading ~ in v.
func expandTokens(v directive, tokens map[byte]string) (string, error) {
	var b strings.Builder
	s := v.value
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", fmt.Errorf("%s: %q ends with a lone %%", v.at, s)
		}
		i++
		if s[i] == '%' {
			b.WriteByte('%')
			continue
		}
		t, ok := tokens[s[i]]
		if !ok {
			return "", fmt.Errorf("%s: token %%%c in %q is not supported here", v.at, s[i], s)
		}
		b.WriteString(t)
	}
	return expandHome(b.String())
}
