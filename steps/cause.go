package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// When an etcd call or a wait fails with nothing but a deadline or
// "unavailable", the error text says nothing of why. FindCause asks every
// member and every member's host right then, and names what it finds: the
// cluster lost quorum, a host became unreachable, a host key is refused.

// causeTimeout bounds each question of the cause-finding; all are asked at
// once.
var causeTimeout = 4 * time.Second

// ErrUnreachableText is how the engine's unreachable-host errors begin; it
// is not repeated after "host unreachable:".
const ErrUnreachableText = "host unreachable"

// CauseError is a failure with its cause found after the fact.
type CauseError struct {
	Cause string
	Err   error
}

func (e *CauseError) Error() string {
	return e.Cause + "; the step's error: " + e.Err.Error()
}

func (e *CauseError) Unwrap() error { return e.Err }

// IsStall reports whether err is a deadline or "unavailable" failure, whose
// cause must be found elsewhere. A service failure, a refusal or a cause
// already found are not.
func IsStall(err error) bool {
	if err == nil {
		return false
	}
	var se *ServiceError
	var ref *Refusal
	var ce *CauseError
	if errors.As(err, &se) || errors.As(err, &ref) || errors.As(err, &ce) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrCouldNotAsk) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"deadline exceeded", "code = unavailable", "etcdserver: no leader", "etcdserver: request timed out", "etcdserver: unhealthy cluster", "i/o timeout"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// HostReach is whether a host answered a trivial command over SSH.
type HostReach struct {
	Host string
	OK   bool
	Why  string // one line, when not OK
}

// MemberSeen is one voting member as the cause-finding saw it.
type MemberSeen struct {
	Name   string
	Host   string // "" when it is not in cluster.members
	Answer Answer
	Reach  *HostReach // its host, when known
}

// DescribeCause turns what was seen into one sentence; "" when nothing
// explains the failure (every voter answers, every host answers). A
// refused host key is named as such first, and a member that could not be
// asked is never counted as down: quorum is "lost" only when the members
// proven down leave too few.
func DescribeCause(voters []MemberSeen, hosts []HostReach) string {
	alive, unknown := 0, 0
	var missing []string
	onVoter := map[string]bool{}
	for _, m := range voters {
		if m.Host != "" {
			onVoter[m.Host] = true
		}
		if m.Answer.Alive() {
			alive++
			continue
		}
		if m.Answer.State != LiveDown || (m.Reach != nil && !m.Reach.OK) {
			unknown++
		}
		missing = append(missing, m.why())
	}
	var parts, gone []string
	for _, h := range hosts {
		switch {
		case h.OK:
		case isHostKey(h.Why):
			parts = append(parts, hostWhy(h))
		case !onVoter[h.Host] || len(voters) == 0:
			gone = append(gone, hostWhy(h))
		default:
			// Named with its member below; said alone when quorum holds.
			if alive >= len(voters)/2+1 {
				gone = append(gone, hostWhy(h))
			}
		}
	}
	quorum := len(voters)/2 + 1
	counts := fmt.Sprintf("%d of %d members answer", alive, len(voters))
	switch {
	case len(voters) > 0 && alive+unknown < quorum:
		parts = append(parts, fmt.Sprintf("the cluster lost quorum: %s, quorum is %d (%s)", counts, quorum, strings.Join(missing, "; ")))
		parts = append(parts, gone...)
	case len(voters) > 0 && alive < quorum:
		parts = append(parts, fmt.Sprintf("quorum is out of reach: %s, quorum is %d (%s)", counts, quorum, strings.Join(missing, "; ")))
		parts = append(parts, gone...)
	case len(gone) > 0 || len(missing) > 0:
		parts = append(parts, gone...)
		parts = append(parts, missing...)
		if len(voters) > 0 {
			parts[len(parts)-1] += fmt.Sprintf(" (%s, quorum %d holds)", counts, quorum)
		}
	}
	return strings.Join(parts, "; ")
}

func hostWhy(h HostReach) string {
	if isHostKey(h.Why) {
		return fmt.Sprintf("host %s: its SSH host key is refused: %s", h.Host, h.Why)
	}
	return fmt.Sprintf("host %s became unreachable: %s", h.Host, h.Why)
}

func isHostKey(why string) bool { return strings.Contains(strings.ToLower(why), "host key") }

func (m MemberSeen) why() string {
	who := m.Name
	if m.Host != "" {
		who += " on " + m.Host
	}
	if m.Reach != nil && !m.Reach.OK {
		if isHostKey(m.Reach.Why) {
			return who + ": host key refused, so it could not be asked: " + m.Reach.Why
		}
		return who + ": host unreachable: " + m.Reach.Why
	}
	switch m.Answer.State {
	case LiveDown:
		return fmt.Sprintf("%s: etcd does not run (nothing listens at %s)", who, m.Answer.URL)
	case "":
		return who + ": lists no client URL"
	}
	return fmt.Sprintf("%s: could not be asked: %s", who, oneLineErr(m.Answer.Err))
}

// FindCause returns err with its cause when err is a stall (IsStall) and a
// cause is found, else err. It asks every voting member (the member list
// if one answers, else cluster.members) and every host of
// cluster.members, all at once, within a few seconds.
func FindCause(ctx context.Context, c *Ctx, env Env, err error) error {
	if !IsStall(err) || ctx.Err() != nil || c == nil || c.Cluster == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*causeTimeout)
	defer cancel()
	var hostNames []string
	for _, m := range c.Cluster.Members {
		if m.Host != "" {
			hostNames = append(hostNames, m.Host)
		}
	}
	hostNames = sortedUnique(hostNames)
	reach := make([]HostReach, len(hostNames))
	var wg sync.WaitGroup
	for i, h := range hostNames {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reach[i] = askHost(ctx, env, h)
		}()
	}
	var voters []MemberSeen
	if api, aerr := env.Etcd(ctx); aerr == nil {
		voters = askVoters(ctx, c, api)
	}
	wg.Wait()
	byHost := map[string]*HostReach{}
	for i := range reach {
		byHost[reach[i].Host] = &reach[i]
	}
	for i := range voters {
		voters[i].Reach = byHost[voters[i].Host]
	}
	cause := DescribeCause(voters, reach)
	if cause == "" {
		return err
	}
	return &CauseError{Cause: cause, Err: err}
}

func askHost(ctx context.Context, env Env, host string) HostReach {
	r, err := env.Shell(host)
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, causeTimeout)
		_, err = r.Run(cctx, "true", nil)
		cancel()
	}
	if err != nil {
		var ee *ExitError
		if errors.As(err, &ee) {
			return HostReach{Host: host, OK: true} // it ran something
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// The connection is open but nothing comes back: a link down.
			return HostReach{Host: host, Why: fmt.Sprintf("no answer over SSH within %s", causeTimeout)}
		}
		return HostReach{Host: host, Why: strings.TrimPrefix(oneLineErr(err), ErrUnreachableText+": ")}
	}
	return HostReach{Host: host, OK: true}
}

// askVoters lists the voting members (a serializable list answers without
// quorum) and asks each at its client URL.
func askVoters(ctx context.Context, c *Ctx, api Etcd) []MemberSeen {
	var seen []MemberSeen
	lctx, cancel := context.WithTimeout(ctx, causeTimeout)
	list, err := api.MemberList(lctx, true)
	cancel()
	if err == nil && len(list) > 0 {
		for _, m := range list {
			if m.IsLearner {
				continue
			}
			ms := MemberSeen{Name: m.Name}
			urls := sortedUnique(m.ClientURLs)
			if pm := planMember(c, m); pm != nil {
				ms.Host = pm.Host
				if ms.Name == "" {
					ms.Name = pm.Name
				}
				if len(urls) == 0 {
					// A voter that never started lists none; it is
					// asked where the plan runs it.
					urls = []string{pm.ClientURL}
				}
			}
			if ms.Name == "" {
				ms.Name = fmt.Sprintf("member %x", m.ID)
			}
			if len(urls) > 0 {
				ms.Answer = Answer{URL: urls[0]}
			}
			seen = append(seen, ms)
		}
	} else {
		for _, m := range c.Cluster.Members {
			seen = append(seen, MemberSeen{Name: m.Name, Host: m.Host, Answer: Answer{URL: m.ClientURL}})
		}
	}
	var wg sync.WaitGroup
	for i := range seen {
		if seen[i].Answer.URL == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, causeTimeout)
			defer cancel()
			seen[i].Answer = AskMember(cctx, api, seen[i].Answer.URL)
		}()
	}
	wg.Wait()
	return seen
}

// planMember is the member of cluster.members that m is, by name or peer
// URL.
func planMember(c *Ctx, m Member) *plans.Member {
	for _, pm := range c.Cluster.Members {
		if (m.Name != "" && pm.Name == m.Name) || containsStr(m.PeerURLs, pm.PeerURL) {
			return pm
		}
	}
	return nil
}
