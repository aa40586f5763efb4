package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/access"
	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
)

// The host gate runs at the start of every apply and resume session, on
// the facts collected then, before anything is changed: every host the
// session touches must be reachable and trusted. A host key, login or sudo
// failure on any of them stops the session (a member behind an untrusted
// host may be alive: nothing it says, or fails to say, is evidence). A
// host some remaining step-host needs that cannot be reached over the
// network stops it too, unless every one of those step-hosts is skipped on
// an unreachable host (stop-service with unreachable: skip, the fence of a
// quorum-loss plan). A host used only to tunnel etcd questions may be
// unreachable: its members are then "could not ask", which check-quorum
// never counts as down.

// HostGateError is a session stopped before its first change because some
// host it touches was not proven reachable and trusted. Nothing was changed
// on any host; apply created no run, resume left the run as it was.
type HostGateError struct {
	Command string // apply | resume
	RunID   string // the run resumed; "" for apply
	Hosts   []GateHost
}

// GateHost is one host that stopped the gate.
type GateHost struct {
	Host    string
	Address string      // host:port dialled
	Reach   facts.Reach // why
	Cause   string      // the error, one line
	Uses    string      // which remaining steps need it, or "the etcd tunnel"
	Hints   []string
}

func (e *HostGateError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s stopped before the first change: %d host(s) not proven reachable and trusted; nothing was changed on any host", e.Command, len(e.Hosts))
	for _, h := range e.Hosts {
		fmt.Fprintf(&b, "\n  - %s (%s): %s: %s; needed by %s", h.Host, h.Address, reachWords(h.Reach), h.Cause, h.Uses)
		for _, hint := range h.Hints {
			fmt.Fprintf(&b, "\n      hint: %s", hint)
		}
	}
	return b.String()
}

// reachWords says a Reach for people.
func reachWords(r facts.Reach) string {
	switch r {
	case facts.ReachHostKeyUnknown:
		return "host key unknown"
	case facts.ReachHostKeyChanged:
		return "host key changed"
	case facts.ReachAuthFailed:
		return "login refused"
	case facts.ReachSudoFailed:
		return "sudo refused"
	case facts.ReachTimeout:
		return "unreachable (timeout)"
	case facts.ReachNoRoute:
		return "unreachable (no route)"
	case facts.ReachRefused:
		return "unreachable (SSH port refused)"
	}
	return "could not be checked"
}

// gateUse is one remaining step-host on a host.
type gateUse struct {
	step  string
	skips bool // skipped, not failed, when the host is unreachable
}

// gateHosts lists the hosts a session touches: the host of every step-host
// not yet done or skipped (st nil: every one), and, when etcd is dialled
// through SSH, the member hosts.
func gateHosts(c *Compiled, st *runstate.State, markDone []Selector) (uses map[string][]gateUse, tunnels map[string]bool) {
	uses = map[string][]gateUse{}
	tunnels = map[string]bool{}
	eachRemaining(c, st, markDone, func(n *Node, t *Target) {
		uses[t.Name()] = append(uses[t.Name()], gateUse{step: n.ID(), skips: skipsUnreachable(t)})
	})
	if cl := c.Plan.Cluster; cl != nil && cl.ClientAccess != "direct" {
		for _, m := range cl.Members {
			if c.Plan.Hosts[m.Host] != nil {
				tunnels[m.Host] = true
			}
		}
	}
	return uses, tunnels
}

// eachRemaining calls fn for every step-host on a host that the session
// still has to run: not done or skipped in st (nil: every one), not marked
// done.
func eachRemaining(c *Compiled, st *runstate.State, markDone []Selector, fn func(n *Node, t *Target)) {
	for _, n := range c.Nodes {
	targets:
		for _, t := range n.Targets {
			host := t.Name()
			if host == "" {
				continue
			}
			if st != nil {
				if hs := st.Find(n.ID(), host); hs != nil && (hs.Status == runstate.StatusDone || hs.Status == runstate.StatusSkipped) {
					continue
				}
			}
			for _, sel := range markDone {
				if sel.matches(n.ID(), host) {
					continue targets
				}
			}
			fn(n, t)
		}
	}
}

// gate checks the session-start facts against the hosts the session
// touches. It returns a line for the journal, or a *HostGateError.
func gate(ctx context.Context, c *Compiled, st *runstate.State, opts *Options, before *sessionFacts, command, runID string) (string, error) {
	if before == nil || before.f == nil {
		if opts.Backend != nil {
			return "host gate skipped: a backend other than SSH, without facts of the hosts", nil
		}
		return "host gate skipped: no facts of the hosts were collected", nil
	}
	uses, tunnels := gateHosts(c, st, opts.MarkDone)
	names := map[string]bool{}
	for h := range uses {
		names[h] = true
	}
	for h := range tunnels {
		names[h] = true
	}
	sorted := make([]string, 0, len(names))
	for h := range names {
		sorted = append(sorted, h)
	}
	sort.Strings(sorted)

	rechecked := recheckAll(ctx, c, opts, before.f, sorted, uses)
	var bad []GateHost
	var notes []string
	ok := 0
	for _, name := range sorted {
		h := before.f.HostByName(name)
		if h == nil {
			notes = append(notes, name+" not in the facts: not checked")
			continue
		}
		if h.Reach == facts.ReachOK {
			ok++
			continue
		}
		u := uses[name]
		var stepIDs []string
		allSkip := true
		for _, x := range u {
			stepIDs = append(stepIDs, x.step)
			allSkip = allSkip && x.skips
		}
		what := "the etcd tunnel"
		if len(stepIDs) > 0 {
			what = "step " + strings.Join(sortedSet(stepIDs), ", ")
		}
		switch {
		case h.Reach.Trust():
		case len(u) == 0:
			notes = append(notes, fmt.Sprintf("%s %s (only an etcd tunnel: its members count as could not ask)", name, h.Reach))
			continue
		case h.Reach.Network() && allSkip:
			notes = append(notes, fmt.Sprintf("%s %s (its remaining steps %s skip an unreachable host)", name, h.Reach, strings.Join(sortedSet(stepIDs), ", ")))
			continue
		case h.Reach.Network() && opts.Backend == nil:
			// The facts give each host a few seconds; a slow host gets
			// one more try with the plan's SSH connect timeout before it
			// stops the session.
			r := rechecked[name]
			again, why := r.reach, r.why
			if again == facts.ReachOK {
				if before.answeredLater == nil {
					before.answeredLater = map[string]bool{}
				}
				before.answeredLater[name] = true
				ok++
				notes = append(notes, fmt.Sprintf("%s answered SSH on a second try (the facts said %s)", name, h.Reach))
				continue
			}
			if again != "" {
				h = &facts.Host{Name: h.Name, Address: h.Address, Reach: again, Error: why}
			}
		}
		bad = append(bad, gateHost(c, name, h, what))
	}
	if len(bad) > 0 {
		return "", &HostGateError{Command: command, RunID: runID, Hosts: bad}
	}
	msg := fmt.Sprintf("host gate: %d host(s) reachable and trusted", ok)
	if len(notes) > 0 {
		msg += "; " + strings.Join(notes, "; ")
	}
	return msg, nil
}

func sortedSet(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// gateHost describes a host that stops the gate, with what to do.
func gateHost(c *Compiled, name string, h *facts.Host, uses string) GateHost {
	g := GateHost{Host: name, Address: h.Address, Reach: h.Reach, Cause: h.Error, Uses: uses}
	if g.Cause == "" {
		g.Cause = string(h.Reach)
	}
	kh, addr, port, user := "~/.ssh/known_hosts", h.Address, 22, ""
	if ph := c.Plan.Hosts[name]; ph != nil {
		if cfg, err := access.SSHConfig(c.Plan, ph); err == nil {
			if cfg.KnownHosts != "" {
				kh = cfg.KnownHosts
			}
			if cfg.Port != 0 {
				port = cfg.Port
			}
			user = cfg.User
			g.Address = cfg.HostPort()
		}
	}
	keyName := addr
	if port != 22 {
		keyName = fmt.Sprintf("[%s]:%d", addr, port)
	}
	scan := fmt.Sprintf("ssh-keyscan -p %d %s >> %s", port, shellquote.Quote(addr), shellquote.Quote(kh))
	switch h.Reach {
	case facts.ReachHostKeyUnknown:
		g.Hints = []string{
			"check the host's fingerprint out of band (on the host: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then add it: " + scan,
		}
	case facts.ReachHostKeyChanged:
		g.Hints = []string{
			"the stale line is named above; if the change is expected (a reinstalled host), check the new fingerprint out of band, then: ssh-keygen -R " + shellquote.Quote(keyName) + " -f " + shellquote.Quote(kh) + " && " + scan,
			"if it is not expected, stop: someone may be impersonating the host",
		}
	case facts.ReachAuthFailed:
		who := "the plan's ssh.user"
		if user != "" {
			who = user
		}
		g.Hints = []string{fmt.Sprintf("the host refused the login of %s: check ssh.user and ssh.identity (or the agent), and that the public key is in that user's authorized_keys on %s", who, name)}
	case facts.ReachSudoFailed:
		g.Hints = []string{fmt.Sprintf("the plan runs commands through sudo -n: give the login user a NOPASSWD sudo rule on %s, or log in as root", name)}
	case facts.ReachTimeout, facts.ReachNoRoute, facts.ReachRefused:
		g.Hints = []string{fmt.Sprintf("bring %s back (or its sshd); if it is gone for good, the plan must not need it: fence it with stop-service unreachable: skip, or take it out of on:", name)}
	default:
		g.Hints = []string{"etcd-rescue facts shows what each host says"}
	}
	return g
}

type recheckResult struct {
	reach facts.Reach
	why   string
}

// recheckAll tries again, at once, every host the facts found unreachable
// over the network that a remaining step needs without skipping it.
func recheckAll(ctx context.Context, c *Compiled, opts *Options, f *facts.Facts, hosts []string, uses map[string][]gateUse) map[string]recheckResult {
	out := map[string]recheckResult{}
	if opts.Backend != nil {
		return out
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range hosts {
		h := f.HostByName(name)
		if h == nil || !h.Reach.Network() || len(uses[name]) == 0 {
			continue
		}
		allSkip := true
		for _, u := range uses[name] {
			allSkip = allSkip && u.skips
		}
		if allSkip {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, why := recheck(ctx, c, name)
			mu.Lock()
			out[name] = recheckResult{r, why}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// recheckBound bounds the second try of a host the facts could not reach.
const recheckBound = 15 * time.Second

// recheck connects to host once more (host key and login checked); ""
// when it cannot even try.
func recheck(ctx context.Context, c *Compiled, name string) (facts.Reach, string) {
	ph := c.Plan.Hosts[name]
	if ph == nil {
		return "", ""
	}
	cfg, err := access.SSHConfig(c.Plan, ph)
	if err != nil {
		return "", ""
	}
	if cfg.ConnectTimeout <= 0 || cfg.ConnectTimeout > recheckBound {
		cfg.ConnectTimeout = recheckBound
	}
	cl, err := sshx.New(name, cfg)
	if err != nil {
		return "", ""
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, recheckBound)
	defer cancel()
	err = cl.Connect(cctx)
	if err != nil {
		l, _, _ := strings.Cut(err.Error(), "\n")
		return facts.ReachOf(err), l
	}
	return facts.ReachOK, ""
}
