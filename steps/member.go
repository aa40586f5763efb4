package steps

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// refusalWindow bounds how long a membership change is sent again while etcd
// refuses it transiently. The "unhealthy cluster" answer after a member
// restarts lasts about five seconds; a refusal that outlasts the window has a
// cause that waiting will not fix (a voting member down, no leader).
var refusalWindow = 20 * time.Second

// retry calls f until it succeeds, fails with an error that is not a
// transient refusal (Etcd.IsRetryable), refusalWindow has passed, or ctx ends.
//
// Who retries what (one owner per kind of failure; nothing else loops):
//   - a transient refusal of etcd ("unhealthy cluster", no leader, leader
//     changed, too many requests): this function, within refusalWindow, for
//     membership changes and the member list they read;
//   - a learner's "rpc not supported for learner": nobody; the etcd client
//     (internal/etcdapi) never sends a cluster call to a known learner and
//     sends a call a learner refused once more to the other members;
//   - a state that takes time (a learner catching up, a member starting):
//     the step's poll, within its within:;
//   - a failed step: the engine, up to the step's retries: (engine/target.go),
//     and a dropped SSH connection up to three times, each after a Check;
//   - an SSH connection: internal/sshx replaces a dead connection once when
//     it opens a session (which runs nothing remotely), and asks again for a
//     session the server refused for lack of slots (MaxSessions).
//
// The etcd client makes one attempt per call (its own retry interceptor is
// off), and each call goes through env.Etcd, which journals it. Every step
// ends by its deadline (timeout:, or its type's default).
//
// A refusal comes before the change is acted on, so the callers read the
// member list once and then send only the change again.
func retry(ctx context.Context, api Etcd, env Env, what string, f func() error) error {
	return retryWhile(ctx, env, what, api.IsRetryable, "etcd still refused it", refusedHint, f)
}

const (
	refusedHint = "etcd refuses membership changes for a few seconds after a member restarts, and for as long as a voting member is down or there is no leader; " +
		"check every member (etcdctl endpoint health --cluster), then resume the run"
	readHint = "the member list needs a leader and a quorum of members answering; " +
		"check every member (etcdctl endpoint health --cluster) and the network between them, then resume the run"
)

// TransientReads is the optional part of Etcd that tells apart a failed
// read that may simply be asked again: a transient refusal, an endpoint
// that could not be reached, a request that timed out. A read changes
// nothing, so a timeout is as safe to repeat as a refusal.
type TransientReads interface {
	IsTransientRead(err error) bool
}

func transientRead(api Etcd) func(error) bool {
	if tr, ok := api.(TransientReads); ok {
		return tr.IsTransientRead
	}
	return api.IsRetryable
}

// listMembers reads the member list, asked again within refusalWindow while
// the failure is transient (see [TransientReads]): the one retry owner of a
// step's member-list reads. etcd's client makes one attempt per call, so a
// list sent while a member is cut off or restarting ("request timed out")
// would otherwise fail the step at once.
func listMembers(ctx context.Context, api Etcd, env Env, serializable bool) ([]Member, error) {
	var list []Member
	err := retryWhile(ctx, env, "member list", transientRead(api), "still no answer", readHint, func() (err error) {
		list, err = api.MemberList(ctx, serializable)
		return err
	})
	return list, err
}

// retryWhile calls f until it succeeds, fails with an error transient does
// not accept, refusalWindow has passed (the error then says gaveUp and
// hint), or ctx ends. The attempts are paced like every wait (see
// [pauseAfter]): etcd's "unhealthy cluster" window ends about five seconds
// after a member connected, and the change goes through within 100 ms of
// its end.
func retryWhile(ctx context.Context, env Env, what string, transient func(error) bool, gaveUp, hint string, f func() error) error {
	p := newPacer()
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || !transient(err) {
			return err
		}
		if p.elapsed()+pauseAfter(p.elapsed()) > refusalWindow {
			return fmt.Errorf("%s: %s after %d attempts within %s: %w\nhint: %s", what, gaveUp, attempt, refusalWindow, err, hint)
		}
		if msg := err.Error(); p.worthLogging(msg) {
			env.Logf("%s: %v; asking again every %s (attempt %d)", what, err, pauseAfter(p.elapsed()), attempt)
		}
		if perr := p.pause(ctx); perr != nil {
			return fmt.Errorf("%s: %w (last error: %w)", what, perr, err)
		}
	}
}

func findMember(list []Member, name, peerURL string) *Member {
	for i := range list {
		m := &list[i]
		if name != "" && m.Name == name {
			return m
		}
		for _, u := range m.PeerURLs {
			if peerURL != "" && u == peerURL {
				return m
			}
		}
	}
	return nil
}

// memberFact is the fact key holding a member's id.
func memberFact(name string) string { return "member." + name + ".id" }

// MemberAdd adds the member on the target host to the running cluster, as a
// learner by default (a voter that never starts raises the quorum, etcd #3505).
type MemberAdd struct {
	Learner *bool `yaml:"learner" doc:"add as a learner (default true); promote it with member-promote once it has caught up"`
}

func (*MemberAdd) DestroysData() bool { return true }
func (*MemberAdd) SafeToRepeat() bool { return true }
func (*MemberAdd) NeedsMember() bool  { return true }
func (*MemberAdd) AddsMember() bool   { return true }

// MustStartAfter: see [MustStart].
func (*MemberAdd) MustStartAfter() string {
	return "an added member that never starts raises the quorum (etcd #3505)"
}

func (s *MemberAdd) learner() bool { return s.Learner == nil || *s.Learner }

func (s *MemberAdd) Describe(c *Ctx, t Target) []Action {
	m := t.Member
	if m == nil {
		return nil
	}
	flag := ""
	if s.learner() {
		flag = " --learner"
	}
	return []Action{{Host: t.Name(), Kind: API, Cmd: fmt.Sprintf("member add %s --peer-urls=%s%s (Cluster.MemberAdd; retried while the cluster is unhealthy)", m.Name, m.PeerURL, flag),
		Run: func(ctx context.Context, env Env) error {
			api, err := env.Etcd(ctx)
			if err != nil {
				return err
			}
			// The list is read once; then only the refused add is sent
			// again (see retry).
			list, err := listMembers(ctx, api, env, false)
			if err != nil {
				return err
			}
			if got := findMember(list, "", m.PeerURL); got != nil {
				return env.SetFact(memberFact(m.Name), strconv.FormatUint(got.ID, 10))
			}
			return retry(ctx, api, env, "member add "+m.Name, func() error {
				added, err := api.MemberAdd(ctx, []string{m.PeerURL}, s.learner())
				if err != nil {
					return err
				}
				env.Logf("added %s as member %x", m.Name, added.ID)
				return env.SetFact(memberFact(m.Name), strconv.FormatUint(added.ID, 10))
			})
		}}}
}

func (s *MemberAdd) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	return apiCheck(ctx, env, func(list []Member) (bool, string) {
		if findMember(list, "", t.Member.PeerURL) != nil {
			return true, t.Member.PeerURL + " is in the member list"
		}
		return false, ""
	})
}

func apiCheck(ctx context.Context, env Env, f func([]Member) (bool, string)) (bool, string, error) {
	api, err := env.Etcd(ctx)
	if err != nil {
		return false, "", err
	}
	list, err := listMembers(ctx, api, env, true)
	if err != nil {
		return false, "", err
	}
	done, why := f(list)
	return done, why, nil
}

// MemberRemove removes a member that is gone for good. It is not in
// cluster.members (that is the cluster after recovery), so it is named here.
// Right before the remove it checks that the member is gone: it must not
// answer at its client URLs; when a quorum of voting members report no
// active raft link to it, it is removed as soon as its own URLs have been
// silent for 500 ms (see [mustBeGone]).
type MemberRemove struct {
	Name    string `yaml:"name" doc:"etcd name of the member to remove"`
	PeerURL string `yaml:"peerURL" doc:"its old peer URL (safer than the name when the replacement keeps the name)"`
	ID      string `yaml:"id" doc:"its member id in hex, as etcdctl member list prints it"`
}

func (*MemberRemove) DestroysData() bool { return true }
func (*MemberRemove) SafeToRepeat() bool { return true }

// RemovedMember: see [RemovesMember]. Whether the member it names is one
// that cluster.members keeps is the engine's rule: the plan may re-add it.
func (s *MemberRemove) RemovedMember() (name, peerURL, id string) { return s.Name, s.PeerURL, s.ID }

func (s *MemberRemove) ident() string {
	var parts []string
	if s.Name != "" {
		parts = append(parts, "name "+s.Name)
	}
	if s.PeerURL != "" {
		parts = append(parts, "peer URL "+s.PeerURL)
	}
	if s.ID != "" {
		parts = append(parts, "id "+s.ID)
	}
	return strings.Join(parts, ", ")
}

func (s *MemberRemove) match(list []Member) *Member {
	for i := range list {
		m := &list[i]
		ok := true
		if s.Name != "" && m.Name != s.Name {
			ok = false
		}
		if s.PeerURL != "" && !containsStr(m.PeerURLs, s.PeerURL) {
			ok = false
		}
		if s.ID != "" && strconv.FormatUint(m.ID, 16) != strings.TrimPrefix(strings.ToLower(s.ID), "0x") {
			ok = false
		}
		if ok {
			return m
		}
	}
	return nil
}

func (s *MemberRemove) Describe(c *Ctx, t Target) []Action {
	return []Action{{Kind: API, Destructive: true, Cmd: fmt.Sprintf("member remove <id of the member with %s> (Cluster.MemberRemove; absent already counts as done; right before: refused if it answers at its client URLs; removed after %s without an answer when a quorum of voting members report no active raft link to it (etcd_network_active_peers on /metrics))", s.ident(), goneGrace),
		Run: func(ctx context.Context, env Env) error {
			api, err := env.Etcd(ctx)
			if err != nil {
				return err
			}
			// The list is read once; then only the refused remove is
			// sent again (see retry).
			list, err := listMembers(ctx, api, env, false)
			if err != nil {
				return err
			}
			m := s.match(list)
			if m == nil {
				return nil
			}
			if err := mustBeGone(ctx, api, env, m, list); err != nil {
				return err
			}
			env.Logf("removing member %x (%s)", m.ID, m.Name)
			return retry(ctx, api, env, "member remove", func() error {
				return api.MemberRemove(ctx, m.ID)
			})
		}}}
}

// How long member-remove's peer-link rule waits (see [mustBeGone]).
var (
	// goneGrace is how long the member's own client URLs get to answer
	// when the surviving voters report no link to it: an etcd that is up
	// answers a status in milliseconds, even through an SSH tunnel.
	goneGrace = 500 * time.Millisecond
	// peerAskTimeout bounds one voter's /metrics.
	peerAskTimeout = 2 * time.Second
)

// mustBeGone is member-remove's live precondition: the member must not be
// alive. Two questions are asked at once:
//
//   - the member itself, at each of its client URLs (health and status,
//     [askGone]): an answer means it is alive;
//   - every other voting member, at its client URL: its raft peer links
//     ([PeerLinks], etcd's etcd_network_active_peers gauge on /metrics,
//     fetched through the same route and TLS as the API).
//
// The rule, from what the voters say ([peersVerdict]):
//
//   - not linked: a quorum of the voting members answered, each with an
//     active link to some other member (so its view is live), and none
//     has an active link to this member. It is not connected to the
//     cluster; unless it answers at its own URLs within goneGrace, it is
//     removed then, without waiting for the probe's timeout;
//   - linked: some voter reports an active link to it. Its own answers are
//     awaited, then the links asked once more (a link to a member that died
//     just now reads active for up to 5 s). Not linked any more: removed as
//     above. Still linked: no verdict (the gauge can stay at 1 for a member
//     that is gone), as for unknown;
//   - unknown (metrics unreadable, disabled or renamed, too few voters
//     answered): the member's own answers decide, as before the peer
//     links were asked: an answer refuses, an untrusted SSH hop refuses, and
//     a member that cannot be asked at all is not proven down: that is
//     said in the log, and it is removed because the plan says it is gone.
//
// An answer at its own URLs refuses in every case.
func mustBeGone(ctx context.Context, api Etcd, env Env, m *Member, list []Member) error {
	urls := sortedUnique(m.ClientURLs)
	if len(urls) == 0 {
		env.Logf("member %x (%s) lists no client URL: it never started, so nothing can answer for it", m.ID, m.Name)
		return nil
	}
	start := time.Now()
	ownCtx, cancelOwn := context.WithCancel(ctx)
	defer cancelOwn()
	ownc := make(chan []Answer, 1)
	go func() { ownc <- askAll(ownCtx, api, urls, askTimeout, askGone) }()

	peers := func() (int, []string) {
		plr, ok := api.(PeerLinkReader)
		if !ok {
			return peersUnknown, []string{"the etcd client cannot read peer links"}
		}
		return peersVerdict(m, list, askPeers(ctx, plr, m, list))
	}
	verdict, pev := peers()
	var answers []Answer
	cut := false // the member's own questions were cut short at goneGrace
	switch verdict {
	case peersNotLinked:
		t := time.NewTimer(max(0, goneGrace-time.Since(start)))
		select {
		case answers = <-ownc:
		case <-t.C:
			cancelOwn()
			answers, cut = <-ownc, true
		}
		t.Stop()
	default:
		answers = <-ownc
	}
	if err := ctx.Err(); err != nil {
		return err // interrupted: the questions say nothing
	}
	var ev, untrusted []string
	alive, down := false, 0
	for _, a := range answers {
		switch {
		case a.Alive():
			alive = true
			ev = append(ev, m.Name+" "+a.String())
		case cut:
			ev = append(ev, fmt.Sprintf("%s gave no answer at %s within %s", m.Name, a.URL, goneGrace))
		case a.State == LiveDown:
			down++
			ev = append(ev, m.Name+" "+a.String())
		default:
			ev = append(ev, m.Name+" "+a.String())
			if errors.Is(a.Err, ErrNotTrusted) {
				untrusted = append(untrusted, a.URL)
			}
		}
	}
	// The session-start view is of cluster.members: its entry of the
	// same name is the replacement when the plan re-adds the name (another
	// client URL), and says nothing of the member removed here.
	if lm := LiveOf(env).Member(m.Name); lm != nil && containsStr(urls, lm.ClientURL) {
		ev = append(ev, fmt.Sprintf("at session start %s was %s", m.Name, lm.API))
	}
	if alive {
		return &Refusal{
			Reason:   fmt.Sprintf("member %x (%s) is alive: it answers at its client URL, and member-remove is for members that are gone", m.ID, m.Name),
			Evidence: append(ev, pev...),
			Hint:     "if the plan names the wrong member, fix the plan and start a new run; if this member really must go, stop it first, then resume the run",
		}
	}
	// Linked: the member's own questions have ended (answered, refused or
	// timed out); a link that died meanwhile may read inactive now, so the
	// voters are asked once more. A link still read active does not refuse:
	// the gauge was seen reading 1 on one voter for a member whose host had
	// been gone for more than 10 s (a 5-member lab repaired several times
	// before), so it is no proof that the member is alive. The member's own
	// answers decide then, as when the links cannot tell.
	if verdict == peersLinked {
		verdict, pev = peers()
	}
	switch verdict {
	case peersLinked:
		pev = append(pev, "a voting member's etcd_network_active_peers reads an active link to "+m.Name+": not taken as proof (the gauge can stay at 1 for a member that is gone); its own answers decide")
	case peersNotLinked:
		for _, e := range append(pev, ev...) {
			env.Logf("before removing: %s", e)
		}
		if down == len(answers) {
			env.Logf("concluded: %s is down (asked, nothing listens at %s) and not connected to the cluster, after %s", m.Name, strings.Join(urls, ", "), time.Since(start).Round(time.Millisecond))
		} else {
			env.Logf("concluded: %s is not connected to the cluster (no voting member has a raft link to it) and does not answer at its client URLs, after %s", m.Name, time.Since(start).Round(time.Millisecond))
		}
		return nil
	}
	if len(untrusted) > 0 {
		// A host key or login failure says nothing about etcd: the member
		// may be serving behind it.
		return &Refusal{
			Reason:   fmt.Sprintf("member %x (%s) could not be asked at %s: the SSH hop was not trusted or refused the login, which is no proof that the member is gone", m.ID, m.Name, strings.Join(untrusted, ", ")),
			Evidence: append(ev, pev...),
			Hint:     "fix the host key or login of that host (etcd-rescue facts shows each host's reach), then resume the run",
		}
	}
	for _, e := range append(ev, pev...) {
		env.Logf("before removing: %s", e)
	}
	if down == len(answers) {
		env.Logf("concluded: %s is down (asked, nothing listens at %s)", m.Name, strings.Join(urls, ", "))
	} else {
		env.Logf("concluded: %s could not be asked at every client URL, so it is not proven down, and its peers' links could not tell; it is removed because the plan says it is gone and nothing answered", m.Name)
	}
	return nil
}

// What the voting members say of the member to remove ([peersVerdict]).
const (
	peersUnknown   = iota // too few usable views: the member's own answers decide
	peersNotLinked        // a quorum of voters, each linked to another member, none to it
	peersLinked           // some voter has an active link to it
)

// peerView is what one other voting member said of its raft peer links.
type peerView struct {
	Name  string
	ID    uint64
	URL   string
	Links PeerLinks
	Err   error
}

// askPeers asks every other voting member of list, at once, for its peer
// links, each bounded by peerAskTimeout.
func askPeers(ctx context.Context, plr PeerLinkReader, m *Member, list []Member) []peerView {
	var views []peerView
	for _, o := range list {
		if o.ID == m.ID || o.IsLearner {
			continue
		}
		v := peerView{Name: o.Name, ID: o.ID}
		if len(o.ClientURLs) > 0 {
			v.URL = o.ClientURLs[0]
		}
		views = append(views, v)
	}
	var wg sync.WaitGroup
	for i := range views {
		if views[i].URL == "" {
			views[i].Err = errors.New("it lists no client URL")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, peerAskTimeout)
			defer cancel()
			views[i].Links, views[i].Err = plr.PeerLinks(cctx, views[i].URL)
		}()
	}
	wg.Wait()
	return views
}

// peersVerdict applies member-remove's peer-link rule (see [mustBeGone])
// to what the other voting members of list said of member m, with one
// line of evidence per voter.
func peersVerdict(m *Member, list []Member, views []peerView) (int, []string) {
	voters := 0
	for _, o := range list {
		if !o.IsLearner {
			voters++
		}
	}
	quorum := voters/2 + 1
	var ev []string
	linked, notLinked := false, 0
	for _, v := range views {
		who := fmt.Sprintf("voting member %s (%x)", v.Name, v.ID)
		l := v.Links
		switch {
		case v.Err != nil:
			ev = append(ev, fmt.Sprintf("%s could not tell its peer links at %s: %s", who, v.URL, oneLineErr(v.Err)))
		case l.Local != v.ID:
			ev = append(ev, fmt.Sprintf("%s: the metrics at %s are those of member %x: not counted", who, v.URL, l.Local))
		case l.Active[m.ID]:
			linked = true
			ev = append(ev, fmt.Sprintf("%s reports an active raft link to %s (%x) (etcd_network_active_peers = 1)", who, m.Name, m.ID))
		default:
			var others []string
			for id, a := range l.Active {
				if a && id != m.ID {
					others = append(others, nameOf(list, id))
				}
			}
			if len(others) == 0 {
				ev = append(ev, fmt.Sprintf("%s has no active raft link to any member: it sees no one, so its view is not counted", who))
				continue
			}
			notLinked++
			was := "never linked to it since it started"
			if _, ok := l.Active[m.ID]; ok {
				was = "its link to it failed"
			}
			sort.Strings(others)
			ev = append(ev, fmt.Sprintf("%s, linked to %s, has no active raft link to %s (%x): %s", who, strings.Join(others, ", "), m.Name, m.ID, was))
		}
	}
	switch {
	case linked:
		return peersLinked, ev
	case notLinked >= quorum:
		return peersNotLinked, ev
	}
	return peersUnknown, append(ev, fmt.Sprintf("peer links: %d of %d voting members gave a usable view without a link to %s, %d needed (a quorum): its own answers decide", notLinked, voters, m.Name, quorum))
}

func nameOf(list []Member, id uint64) string {
	for _, o := range list {
		if o.ID == id && o.Name != "" {
			return o.Name
		}
	}
	return fmt.Sprintf("%x", id)
}

func (s *MemberRemove) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	return apiCheck(ctx, env, func(list []Member) (bool, string) {
		if s.match(list) == nil {
			return true, "no member with " + s.ident()
		}
		return false, ""
	})
}

func (s *MemberRemove) Validate(c *Ctx, at At, fs *plans.Findings) {
	if s.Name == "" && s.PeerURL == "" && s.ID == "" {
		fs.Add(at(""), "member-remove needs name, peerURL or id of the member to remove")
	}
	if s.ID != "" {
		if _, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s.ID), "0x"), 16, 64); err != nil {
			fs.Add(at("id"), "id %q is not a hex member id", s.ID)
		}
	}
}

// MemberUpdate sets the peer URL the cluster has for the member on the
// target host to the one in cluster.members (after an IP change).
type MemberUpdate struct {
	CertsChecked bool `yaml:"certsChecked" doc:"no longer read (a warning): apply checks the member's certificates on its host before the first change"`
}

func (*MemberUpdate) NeedsMember() bool { return true }

func (s *MemberUpdate) Describe(c *Ctx, t Target) []Action {
	m := t.Member
	if m == nil {
		return nil
	}
	return []Action{{Host: t.Name(), Kind: API, Cmd: fmt.Sprintf("member update <id of %s> --peer-urls=%s (Cluster.MemberUpdate)", m.Name, m.PeerURL),
		Run: func(ctx context.Context, env Env) error {
			api, err := env.Etcd(ctx)
			if err != nil {
				return err
			}
			// The list is read once; then only the refused update is
			// sent again (see retry).
			list, err := listMembers(ctx, api, env, false)
			if err != nil {
				return err
			}
			got := findMember(list, m.Name, "")
			if got == nil {
				return fmt.Errorf("no member named %s in the cluster", m.Name)
			}
			if len(got.PeerURLs) == 1 && got.PeerURLs[0] == m.PeerURL {
				return nil
			}
			return retry(ctx, api, env, "member update "+m.Name, func() error {
				return api.MemberUpdate(ctx, got.ID, []string{m.PeerURL})
			})
		}}}
}

func (s *MemberUpdate) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	return apiCheck(ctx, env, func(list []Member) (bool, string) {
		got := findMember(list, t.Member.Name, "")
		if got != nil && len(got.PeerURLs) == 1 && got.PeerURLs[0] == t.Member.PeerURL {
			return true, t.Member.Name + " has peer URL " + t.Member.PeerURL
		}
		return false, ""
	})
}

// MemberPromote promotes the learner on the target host to a voter, polling
// while it is still catching up.
type MemberPromote struct {
	Within plans.Duration `yaml:"within" default:"5m" rescue:"positive" doc:"how long to keep trying while the learner catches up"`
}

func (*MemberPromote) NeedsMember() bool     { return true }
func (*MemberPromote) PromotesLearner() bool { return true }

func (s *MemberPromote) Describe(c *Ctx, t Target) []Action {
	m := t.Member
	if m == nil {
		return nil
	}
	within := s.Within.D()
	// The learner's service is watched beside the poll: an etcd that
	// cannot start fails the step within seconds (see [Watched]).
	return Watched(c, []Action{{Host: t.Name(), Kind: Wait, Cmd: fmt.Sprintf("member promote <id of %s> (Cluster.MemberPromote), polled for up to %s while the learner catches up", m.Name, within),
		Run: func(ctx context.Context, env Env) error {
			api, err := env.Etcd(ctx)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, within)
			defer cancel()
			// The member list is read again after every refusal of the
			// promote: "not in sync yet", or "not a learner" once it is a
			// voter. Neither call reaches the learner itself (the etcd
			// client sends cluster calls to voting members only), so no
			// pause is spent on a learner's "rpc not supported".
			var id uint64
			pl := newPacer()
			return poll(ctx, env, "promote "+m.Name, func(ctx context.Context) (bool, error) {
				if id == 0 {
					list, err := api.MemberList(ctx, false)
					if err != nil {
						if pl.worthLogging(err.Error()) {
							env.Logf("promote %s: %v", m.Name, err)
						}
						return false, nil
					}
					got := findMember(list, "", m.PeerURL)
					if got == nil {
						return false, notAMember(m)
					}
					if !got.IsLearner {
						return true, nil
					}
					id = got.ID
				}
				if err := api.MemberPromote(ctx, id); err != nil {
					if pl.worthLogging(err.Error()) {
						env.Logf("promote %s: %v", m.Name, err)
					}
					if !api.IsRetryable(err) {
						id = 0
					}
					return false, nil
				}
				return true, nil
			})
		}}})
}

func notAMember(m *plans.Member) error {
	return fmt.Errorf("%s (peer URL %s) is not a member of the cluster: there is nothing to promote\n"+
		"hint: add it first (a member-add step before this one, or etcdctl member add %s --peer-urls=%s --learner), start it, then resume the run",
		m.Name, m.PeerURL, m.Name, m.PeerURL)
}

// Check asks the voting members (linearizable): a voter is done, a learner
// is not (the promote runs), a member that is not in the list at all or a
// list no voting member can give is an error that names it.
func (s *MemberPromote) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	m := t.Member
	api, err := env.Etcd(ctx)
	if err != nil {
		return false, "", err
	}
	list, err := listMembers(ctx, api, env, false)
	if err != nil {
		return false, "", fmt.Errorf("could not tell whether %s is a voting member: the voting members did not give the member list: %w", m.Name, err)
	}
	got := findMember(list, "", m.PeerURL)
	switch {
	case got == nil:
		return false, "", notAMember(m)
	case got.IsLearner:
		return false, m.Name + " is still a learner: the promote runs", nil
	}
	return true, m.Name + " is a voting member", nil
}

// poll calls f until it reports done, fails, or ctx ends, paced like
// every wait (see [pauseAfter]). Each attempt gets its own context of at
// most attemptTimeout, so that one call that hangs does not hold the wait.
func poll(ctx context.Context, env Env, what string, f func(ctx context.Context) (bool, error)) error {
	p := newPacer()
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		done, err := f(actx)
		cancel()
		if err != nil || done {
			return err
		}
		if perr := p.pause(ctx); perr != nil {
			return fmt.Errorf("%s: gave up: %w", what, perr)
		}
	}
}

// askGone is member-remove's question to the member it is about to
// remove: does anything answer at url right now? It asks the same two
// questions as [AskMember], health and status, but at once rather than one
// after the other, so that a member whose host is gone costs one probe
// timeout (the etcd client's, 3 s) instead of two in sequence (3 s of
// health, then the 2 s left for status).
//
// Why this proves no less than AskMember: the member counts as alive only
// if health or status answers, and health itself ends with a status call,
// so "alive" rests on a status answer either way. Here status gets the
// whole probe timeout (AskMember gave it what health left over), and
// health gets the same as before. The one early end is an answer that
// nothing listens at url (connection refused, on either question): that is
// what AskMember concludes from the same answer to health, and what the
// other question would hear too. A timeout, no route to the host or an
// untrusted SSH hop is never "down" (see [goneAnswer]); the refusal rules
// of [mustBeGone] are unchanged.
func askGone(ctx context.Context, api Etcd, url string) Answer {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type reply struct {
		health bool
		err    error
		st     EndpointStatus
	}
	ch := make(chan reply, 2)
	go func() { ch <- reply{health: true, err: api.Health(ctx, url)} }()
	go func() {
		st, err := api.Status(ctx, url)
		ch <- reply{err: err, st: st}
	}()
	var herr, serr error
	var st *EndpointStatus
	for range 2 {
		r := <-ch
		if r.health {
			herr = r.err
		} else {
			serr = r.err
			if r.err == nil {
				st = &r.st
			}
		}
		if errors.Is(r.err, ErrNotListening) {
			break // nothing listens: the other question would hear the same
		}
	}
	return goneAnswer(url, herr, serr, st)
}

// goneAnswer is the verdict of [askGone] from the two answers it has: an
// error left nil by a question that was not waited for counts as no answer
// only when the other one said that nothing listens.
func goneAnswer(url string, herr, serr error, st *EndpointStatus) Answer {
	a := Answer{URL: url, Status: st}
	switch {
	case errors.Is(herr, ErrNotListening):
		a.State, a.Err, a.Status = LiveDown, herr, nil
	case errors.Is(serr, ErrNotListening):
		a.State, a.Err, a.Status = LiveDown, serr, nil
	case herr == nil && serr == nil:
		a.State = AnswerHealthy
	case herr == nil:
		// Health answered (and it ends with a status of its own): alive.
		a.State, a.Err = AnswerHealthy, nil
	case serr == nil:
		a.State, a.Err = AnswerRunning, herr
	case errors.Is(herr, ErrNotTrusted):
		a.State, a.Err = LiveCouldNotAsk, herr
	case errors.Is(serr, ErrNotTrusted):
		a.State, a.Err = LiveCouldNotAsk, serr
	default:
		a.State, a.Err = LiveCouldNotAsk, herr
	}
	return a
}
