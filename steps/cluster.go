package steps

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// ForceNewCluster turns the one surviving member into a single-member
// cluster: it checks that no other member answers on its peer port (a
// force-new-cluster beside live members splits the brain, etcd #14009),
// starts etcd once with --force-new-cluster, waits for it, and removes the
// flag from the config (left on, every later restart would force the
// membership back to this member alone, etcd #13848).
//
// With systemd the flag is removed without a second restart. etcd reads
// --force-new-cluster only while it bootstraps the server at start, to
// rewrite the membership in its WAL (3.5: NewServer in
// server/etcdserver/server.go, "if !cfg.ForceNewCluster { restartNode }
// else { restartAsStandaloneNode }"; 3.6 and 3.7: bootstrapWALFromSnapshot
// in server/etcdserver/bootstrap.go, "if cfg.ForceNewCluster"); nothing
// reads it afterwards. The running etcd is therefore a one-member cluster
// that stays one, and any later start (a crash, a reboot, an operator)
// reads the config without the flag and replays the one-member membership
// from the WAL. A static pod is restarted by the kubelet whenever its
// manifest changes, so there removing the flag is a second restart, and
// the step waits for it.
type ForceNewCluster struct {
	AllowMajorityAlive bool           `yaml:"allowMajorityAlive" doc:"DANGEROUS: skip the fencing check that no other member answers"`
	AllowBehind        bool           `yaml:"allowBehind" doc:"DANGEROUS: go on when another member had newer data at the start of the session; the revisions (and raft entries) it has beyond the survivor are lost"`
	Within             plans.Duration `yaml:"within" default:"2m" rescue:"positive" doc:"how long to wait for the member to come up"`
}

func (*ForceNewCluster) DestroysData() bool { return true }
func (*ForceNewCluster) NeedsMember() bool  { return true }

// SafeToRepeat: every attempt observes the survivor first and goes on from
// where an earlier one stopped; --force-new-cluster is only ever restarted
// after the fence held again (see decideFNC).
func (*ForceNewCluster) SafeToRepeat() bool { return true }

// RebuildsCluster: see [RebuildsCluster].
func (*ForceNewCluster) RebuildsCluster() bool { return true }

// fenceCommand fails if any other member's peer port accepts a connection.
func fenceCommand(c *Ctx, self *plans.Member) string {
	var checks []string
	for _, m := range c.Cluster.Members {
		if m == self {
			continue
		}
		u, err := url.Parse(m.PeerURL)
		if err != nil {
			continue
		}
		checks = append(checks, "! timeout 3 bash -c "+q("exec 3<>/dev/tcp/"+u.Hostname()+"/"+u.Port())+" 2>/dev/null")
	}
	if len(checks) == 0 {
		return "true"
	}
	return strings.Join(checks, " && ")
}

func (s *ForceNewCluster) Describe(c *Ctx, t Target) []Action {
	m := t.Member
	if m == nil {
		return nil
	}
	h, unit := t.Name(), c.Cluster.Layout.Unit
	r := &fncRun{}
	where := c.Cluster.Layout.EnvFile
	if c.Cluster.Layout.Service == "static-pod" {
		where = "the etcd manifest"
	}
	acts := []Action{{Host: h, Kind: API,
		Cmd: fmt.Sprintf("look first (read-only): is ETCD_FORCE_NEW_CLUSTER in %s, does %s answer as a one-member cluster (revision not below the recorded ones)? "+
			"After a kill the step goes on from there: once %s is a one-member cluster, only removing the flag is left", where, m.Name, m.Name),
		Run: func(ctx context.Context, env Env) error {
			p, why, err := s.decide(ctx, c, env, t)
			if err != nil {
				return fmt.Errorf("%w\nhint: look at %s on %s (etcdctl member list, endpoint status); if it is as it should be, resume with --mark-done for this step on %s, else repair it first", err, m.Name, h, h)
			}
			r.phase, r.seen = p, true
			if p == fncFresh {
				env.Logf("force-new-cluster on %s: nothing done yet: %s", m.Name, why)
			} else {
				env.Logf("resumed force-new-cluster on %s from: %s", m.Name, why)
			}
			return nil
		}}}
	wait := Action{Host: h, Kind: Wait, Cmd: fmt.Sprintf("wait up to %s until %s answers health as a one-member cluster", s.Within.D(), m.ClientURL),
		Run: func(ctx context.Context, env Env) error { return waitSingle(ctx, c, env, t, s.Within.D()) }}
	start := join("systemctl", "restart", unit)
	pod := c.Cluster.Layout.Service == "static-pod"
	if pod {
		start = "true # the kubelet restarts the static pod when its manifest changes"
	}
	behind := fmt.Sprintf("refuse if %s is behind another member that had data at session start (its revision and raft index now against theirs)", m.Name)
	if s.AllowBehind {
		behind = fmt.Sprintf("compare %s with the other members that had data at session start; allowBehind: a loss is logged, not refused", m.Name)
	}
	// Before the survivor is forced (fresh, or the flag written but not
	// yet in effect), the fence and the live check hold the run back; once
	// it is a one-member cluster only the flag is left to remove.
	before := []fncPhase{fncFresh, fncFlagWritten}
	after := []fncPhase{fncFresh, fncFlagWritten, fncForced}
	if !s.AllowMajorityAlive {
		acts = append(acts, r.only(Action{Host: h, Kind: Shell, Cmd: fenceCommand(c, m)}, before...))
	}
	acts = append(acts,
		r.only(Action{Host: h, Kind: API, Cmd: behind, Run: func(ctx context.Context, env Env) error { return s.notBehind(ctx, env, m) }}, before...),
		r.only(Action{Host: h, Kind: Shell, Destructive: true, Cmd: editConfig(c, []kv{{"ETCD_FORCE_NEW_CLUSTER", "true"}}, nil)}, before...),
		r.only(Action{Host: h, Kind: Shell, Destructive: true, Cmd: start}, before...),
		r.only(wait, before...),
	)
	unset := Action{Host: h, Kind: Shell, Cmd: editConfig(c, nil, []string{"ETCD_FORCE_NEW_CLUSTER"})}
	if !pod {
		// No restart: etcd reads the flag only at start (see
		// [ForceNewCluster]); the next start reads the config without it.
		unset.Cmd += " # no restart: etcd reads --force-new-cluster only when it starts"
		return append(acts, r.only(unset, after...))
	}
	// The kubelet replaces the container some seconds after the manifest
	// changed; the flagged container answers as a one-member cluster
	// until then. Done only once the container running was started
	// without the flag: a member added before would find no peer when
	// the survivor goes down for that replacement.
	replaced := Action{Host: h, Kind: Wait,
		Cmd: fmt.Sprintf("wait up to %s until the kubelet has replaced the etcd container started with --force-new-cluster (crictl inspect: the command line of every running %s container), then until %s answers health as a one-member cluster", s.Within.D(), unit, m.ClientURL),
		Run: func(ctx context.Context, env Env) error { return s.waitReplaced(ctx, c, env, t) }}
	return append(acts, r.only(unset, after...), r.only(replaced, after...))
}

// waitReplaced waits, up to Within, until no running etcd container of the
// survivor's static pod was started with --force-new-cluster and the
// survivor answers as a one-member cluster.
func (s *ForceNewCluster) waitReplaced(ctx context.Context, c *Ctx, env Env, t Target) error {
	within := s.Within.D()
	start := waitClock.Now()
	var last string
	for {
		seen, err := s.observe(ctx, c, env, t)
		switch {
		case err != nil:
			return err
		case seen.FlagSet:
			return fmt.Errorf("the etcd manifest on %s has --force-new-cluster again: something else wrote it", t.Name())
		case seen.RunsWithFlag:
			last = "the etcd container running was started with --force-new-cluster"
		case !seen.single():
			last = seen.etcdState(t.Member.Name)
		default:
			return nil
		}
		if waitClock.Now().Sub(start) >= within {
			return fmt.Errorf("%s: after the flag was removed from the manifest, waited %s: %s", t.Name(), fmtDuration(within), last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%s)", ctx.Err(), last)
		case <-waitClock.After(containerPoll):
		}
	}
}

// notBehind is force-new-cluster's live precondition: the survivor must
// hold the newest data of every member that still had data when the
// session started (those are fenced by now, so their session-start facts
// are the last word on them).
func (s *ForceNewCluster) notBehind(ctx context.Context, env Env, m *plans.Member) error {
	live := LiveOf(env)
	if live == nil {
		env.Logf("no facts of the live cluster were collected at session start: %s is compared with no other member", m.Name)
		if api, err := env.Etcd(ctx); err == nil {
			cctx, cancel := context.WithTimeout(ctx, askTimeout)
			st, err := api.Status(cctx, m.ClientURL)
			cancel()
			if err == nil {
				return raiseRevisionFact(env, fncRevisionFact(m.Name), st.Revision)
			}
		}
		return nil
	}
	var rev int64
	var idx uint64
	from := ""
	if api, err := env.Etcd(ctx); err == nil {
		cctx, cancel := context.WithTimeout(ctx, askTimeout)
		st, err := api.Status(cctx, m.ClientURL)
		cancel()
		if err == nil {
			rev, idx, from = st.Revision, st.RaftIndex, "its status now"
		} else {
			env.Logf("%s does not answer status now (%v): using the session-start facts", m.Name, oneLineErr(err))
		}
	}
	if from == "" {
		if lm := live.Member(m.Name); lm != nil {
			if r, f, ok := lm.Rev(); ok {
				rev, from = r, f
				if lm.API == LiveAnswered {
					idx = lm.RaftIndex
				}
			}
		}
	}
	if v, ok := env.Fact(fncRevisionFact(m.Name)); ok && from == "" {
		// An earlier attempt of this step recorded the survivor's
		// revision before it wrote the flag: after a kill the survivor
		// may not answer (etcd between restarts) and its data dir may not
		// be readable offline, but its data did not shrink since.
		if r, err := strconv.ParseInt(v, 10, 64); err == nil && r > 0 {
			rev, idx, from = r, 0, "recorded by an earlier attempt of this step"
		}
	}
	if from != "" {
		if err := raiseRevisionFact(env, fncRevisionFact(m.Name), rev); err != nil {
			return err
		}
	}
	var ev, newer []string
	if from != "" {
		ev = append(ev, fmt.Sprintf("%s (survivor): revision %d, raft index %d (%s)", m.Name, rev, idx, from))
	} else {
		ev = append(ev, fmt.Sprintf("%s (survivor): revision unknown (it answers neither now nor at session start, and its data dir had no readable revision)", m.Name))
	}
	var lost int64
	for _, o := range live.Members {
		if o.Name == m.Name {
			continue
		}
		r, f, ok := o.Rev()
		if !ok {
			switch {
			case o.HostAsked && !o.HasData:
				ev = append(ev, fmt.Sprintf("%s: no data at session start", o.Name))
			case !o.HostAsked && o.API != LiveAnswered:
				ev = append(ev, fmt.Sprintf("%s: could not be asked at session start (%s): whether it holds newer data is unknown, not compared", o.Name, o.Why))
			default:
				ev = append(ev, fmt.Sprintf("%s: had data at session start but no readable revision: not compared", o.Name))
			}
			continue
		}
		line := fmt.Sprintf("%s: revision %d", o.Name, r)
		if o.API == LiveAnswered {
			line += fmt.Sprintf(", raft index %d", o.RaftIndex)
		}
		ev = append(ev, line+" ("+f+")")
		switch {
		case from == "":
			newer = append(newer, o.Name)
		case r > rev:
			newer = append(newer, o.Name)
			lost = max(lost, r-rev)
		case o.API == LiveAnswered && idx > 0 && o.RaftIndex > idx:
			newer = append(newer, o.Name)
		}
	}
	for _, e := range ev {
		env.Logf("before force-new-cluster: %s", e)
	}
	if len(newer) == 0 {
		env.Logf("concluded: %s is not behind any member that had data at session start", m.Name)
		return nil
	}
	what := fmt.Sprintf("%s is behind %s", m.Name, strings.Join(newer, ", "))
	if lost > 0 {
		what += fmt.Sprintf(": up to %d revisions would be lost", lost)
	} else if from == "" {
		what = fmt.Sprintf("%s's revision is unknown while %s had data", m.Name, strings.Join(newer, ", "))
	}
	if s.AllowBehind {
		env.Logf("WARNING: %s; going on because allowBehind: true", what)
		return nil
	}
	return &Refusal{
		Reason:   what + "; a force-new-cluster from it throws their newer data away",
		Evidence: ev,
		Hint:     "make the member with the newest data the survivor (etcd-rescue diagnose names it) in a new plan, or, to accept the loss, set allowBehind: true on this step (DANGEROUS)",
	}
}

func waitSingle(ctx context.Context, c *Ctx, env Env, t Target, within time.Duration) error {
	m := t.Member
	api, err := env.Etcd(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	return WaitWatching(ctx, env, c, []string{t.Name()}, func(ctx context.Context) error {
		return poll(ctx, env, "wait for "+m.Name, func(ctx context.Context) (bool, error) {
			if err := api.Health(ctx, m.ClientURL); err != nil {
				return false, untrusted(m.Name, err)
			}
			list, err := api.MemberList(ctx, true)
			if err != nil {
				return false, untrusted(m.Name, err)
			}
			if len(list) != 1 {
				return false, fmt.Errorf("%s answers but the cluster has %d members: force-new-cluster did not take effect", m.Name, len(list))
			}
			return true, nil
		})
	})
}

// Check observes the survivor as the step's first action does: done when
// the flag is gone and it answers as a one-member cluster with its data.
func (s *ForceNewCluster) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	p, why, err := s.decide(ctx, c, env, t)
	if err != nil || p != fncDone {
		return false, why, err
	}
	return true, why, nil
}

func (s *ForceNewCluster) Validate(c *Ctx, at At, fs *plans.Findings) {
	if s.AllowMajorityAlive {
		fs.Warn(at("allowMajorityAlive"), "force-new-cluster will not check that the other members are down").
			WithHint("a force-new-cluster beside live members splits the cluster (etcd #14009)")
	}
	if s.AllowBehind {
		fs.Warn(at("allowBehind"), "force-new-cluster will go on even when another member had newer data: those revisions are lost").
			WithHint("make the member with the newest data the survivor instead (etcd-rescue diagnose names it)")
	}
}

// WaitHealthy waits until every selected member answers health, one leader
// is seen by all, and none is a learner unless allowed.
type WaitHealthy struct {
	Within         plans.Duration `yaml:"within" default:"2m" rescue:"positive" doc:"how long to wait"`
	AllowLearners  bool           `yaml:"allowLearners" doc:"accept learners among the members"`
	RecordRevision bool           `yaml:"recordRevision" doc:"record the cluster revision as the pre-disaster revision"`
}

func memberTargets(c *Ctx) []*plans.Member {
	var out []*plans.Member
	for _, t := range c.Selected {
		if t.Member != nil {
			out = append(out, t.Member)
		}
	}
	if len(out) == 0 {
		out = c.Cluster.Members
	}
	return out
}

func names(ms []*plans.Member) string {
	var n []string
	for _, m := range ms {
		n = append(n, m.Name)
	}
	return strings.Join(n, ", ")
}

func (s *WaitHealthy) Describe(c *Ctx, t Target) []Action {
	within := s.Within.D()
	ms := memberTargets(c)
	return []Action{{Kind: Wait, Cmd: fmt.Sprintf("wait up to %s until %s answer health with one leader (like etcdctl endpoint health and endpoint status)", within, names(ms)),
		Run: func(ctx context.Context, env Env) error {
			api, err := env.Etcd(ctx)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, within)
			defer cancel()
			var last string
			var hosts []string
			for _, m := range ms {
				hosts = append(hosts, m.Host)
			}
			err = WaitWatching(ctx, env, c, hosts, func(ctx context.Context) error {
				return poll(ctx, env, "wait-healthy", func(ctx context.Context) (bool, error) {
					why, err := healthy(ctx, api, ms, s.AllowLearners)
					if err != nil {
						return false, err
					}
					if why != "" && why != last {
						env.Logf("not healthy yet: %s", why)
						last = why
					}
					return why == "", nil
				})
			})
			var se *ServiceError
			if errors.As(err, &se) || errors.Is(err, ErrNotTrusted) {
				return err
			}
			if err != nil {
				return fmt.Errorf("%w: %s", err, last)
			}
			return nil
		}}}
}

// healthy returns "" when every member is healthy, else why not. Each
// member is asked its status first: it answers without a leader, so "no
// leader yet" costs one quick call; the health read (linearizable, which
// etcd holds while there is no leader and asks again only every 500 ms)
// is sent once the member names a leader.
func healthy(ctx context.Context, api Etcd, ms []*plans.Member, allowLearners bool) (string, error) {
	leaders := map[uint64]bool{}
	for _, m := range ms {
		st, err := api.Status(ctx, m.ClientURL)
		if err != nil {
			return fmt.Sprintf("%s: %v", m.Name, err), untrusted(m.Name, err)
		}
		if st.Leader == 0 {
			return m.Name + " sees no leader", nil
		}
		if st.IsLearner && !allowLearners {
			return m.Name + " is still a learner", nil
		}
		if err := api.Health(ctx, m.ClientURL); err != nil {
			return fmt.Sprintf("%s: %v", m.Name, err), untrusted(m.Name, err)
		}
		leaders[st.Leader] = true
	}
	if len(leaders) > 1 {
		return "members disagree about the leader", nil
	}
	return "", nil
}

// untrusted stops a wait that meets a member behind a host that is not
// trusted (host key, login): waiting will not change a host key, and the
// member may be running. Any other failure is for the wait to ride out.
func untrusted(name string, err error) error {
	if !errors.Is(err, ErrNotTrusted) {
		return nil
	}
	return fmt.Errorf("%s could not be asked, and waiting will not change that: %w\n"+
		"hint: a host key, login or sudo failure says nothing about etcd: fix the access to that host (etcd-rescue facts shows each host's reach), then resume the run", name, err)
}

// CheckQuorum looks at the cluster as it is and records the highest revision
// any member reports (used by restore's bumpRevision: auto). With expect it
// also guards the plan: a quorum-loss plan stops if quorum is actually there.
// Quorum is counted over every member of the cluster, whatever on: says;
// on: names the members the plan counts on, which must answer when quorum
// is expected present (the others may be the ones being repaired).
//
// Each member is answered, not serving (asked: nothing listens on its
// client URL), on an unreachable host (SSH to it timed out, no route, its
// SSH port refused), or could not be asked (host key, login, sudo, TLS, a
// timeout of etcd itself). "Could not ask" is never "down": expect: lost
// fails when the members that could not be asked could make a quorum with
// those that answered. An unreachable host counts as not serving only when
// the plan fences before it forces anything: a force-new-cluster step
// (without allowMajorityAlive) checks from the survivor that no other
// member's peer port answers, right before it acts, so a member that is
// alive but unreachable from this machine stops the plan there. Without
// such a fence it counts as could not ask.
type CheckQuorum struct {
	Expect string `yaml:"expect" enum:"lost|present|any" default:"any" doc:"stop the run unless quorum (a majority of all members answering) is lost / present; with present, the members in on: must answer too; members that could not be asked (host key, login, sudo) are never counted as down"`
}

// RebuildsCluster: a plan that expects quorum lost is a quorum-loss recovery.
func (s *CheckQuorum) RebuildsCluster() bool { return s.Expect == "lost" }

// QuorumCount is what check-quorum established about each member.
type QuorumCount struct {
	Quorum   int
	Answered []string
	// NotServing: asked, nothing listens; or an unreachable host the plan
	// fences.
	NotServing []string
	// CouldNotAsk: each "NAME could not be asked: CAUSE".
	CouldNotAsk []string
	// Unasked are the names in CouldNotAsk.
	Unasked []string
}

// CountQuorum sorts the Status errors of members (nil: answered) into a
// QuorumCount. fenced says the plan fences before forcing anything (an
// unreachable host then counts as not serving, see CheckQuorum).
func CountQuorum(members []string, errs []error, fenced bool) QuorumCount {
	qc := QuorumCount{Quorum: len(members)/2 + 1}
	for i, name := range members {
		err := errs[i]
		switch ProbeClass(err) {
		case ProbeAnswered:
			qc.Answered = append(qc.Answered, name)
		case ProbeNotListening:
			qc.NotServing = append(qc.NotServing, name)
		case ProbeUnreachable:
			if fenced {
				qc.NotServing = append(qc.NotServing, name)
				continue
			}
			fallthrough
		default:
			qc.Unasked = append(qc.Unasked, name)
			qc.CouldNotAsk = append(qc.CouldNotAsk, name+" could not be asked: "+oneLineErr(err))
		}
	}
	return qc
}

// Verdict checks the count against expect ("lost", "present", "any");
// must are the members that must answer with present.
func (qc QuorumCount) Verdict(expect string, total int, must []string) error {
	alive := len(qc.Answered)
	var missing []string
	for _, m := range must {
		if !containsName(qc.Answered, m) {
			missing = append(missing, m)
		}
	}
	unasked := strings.Join(qc.CouldNotAsk, "; ")
	switch {
	case expect == "lost" && alive >= qc.Quorum:
		return fmt.Errorf("%d of %d members answer, so quorum is not lost: this plan is for a quorum loss", alive, total)
	case expect == "lost" && alive+len(qc.Unasked) >= qc.Quorum:
		return fmt.Errorf("quorum loss is not proven: %d of %d members answer and %d could not be asked (%s); together they could make quorum %d, so nothing is counted as down\n"+
			"hint: a host key, login or sudo failure says nothing about etcd: fix the access to those hosts (etcd-rescue facts shows each host's reach), then resume",
			alive, total, len(qc.Unasked), unasked, qc.Quorum)
	case expect == "present" && alive < qc.Quorum && len(qc.Unasked) > 0:
		return fmt.Errorf("only %d of %d members answer and %d could not be asked (%s): quorum %d is not proven present", alive, total, len(qc.Unasked), unasked, qc.Quorum)
	case expect == "present" && alive < qc.Quorum:
		return fmt.Errorf("only %d of %d members answer, quorum %d is lost: this plan needs a live quorum", alive, total, qc.Quorum)
	case expect == "present" && len(missing) > 0:
		msg := fmt.Sprintf("quorum is there (%d of %d members answer), but %s, which this plan counts on (on:), does not answer", alive, total, strings.Join(missing, ", "))
		if unasked != "" {
			msg += " (" + unasked + ")"
		}
		return errors.New(msg)
	}
	return nil
}

func containsName(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// PlanFences reports whether p holds a force-new-cluster step that fences
// (no allowMajorityAlive: true): it checks, from the survivor and right
// before it acts, that no other member's peer port answers.
func PlanFences(p *plans.Plan) bool {
	if p == nil {
		return false
	}
	for _, st := range p.Steps {
		if st.Type != "force-new-cluster" {
			continue
		}
		w := &st.With
		allow := false
		for i := 0; i+1 < len(w.Content); i += 2 {
			if w.Content[i].Value == "allowMajorityAlive" && w.Content[i+1].Value == "true" {
				allow = true
			}
		}
		if !allow {
			return true
		}
	}
	return false
}

func (s *CheckQuorum) Describe(c *Ctx, t Target) []Action {
	ms := c.Cluster.Members
	var mustNames []string // the members in on:, if any
	if len(c.Selected) > 0 {
		for _, m := range memberTargets(c) {
			mustNames = append(mustNames, m.Name)
		}
	}
	expect := s.Expect
	fenced := PlanFences(c.Plan)
	cmd := fmt.Sprintf("status of %s at once with short timeouts; record the highest revision as %s; quorum is %d of %d; expect quorum %s", names(ms), FactPreRevision, len(ms)/2+1, len(ms), expect)
	if expect == "present" && len(mustNames) > 0 {
		cmd += "; " + strings.Join(mustNames, ", ") + " must answer"
	}
	return []Action{{Kind: API, Cmd: cmd,
		Run: func(ctx context.Context, env Env) error {
			api, err := env.Etcd(ctx)
			if err != nil {
				return err
			}
			// Every member at once: the dead ones each cost the whole
			// probe timeout, and in a quorum loss most of them are dead.
			sts := make([]EndpointStatus, len(ms))
			errs := make([]error, len(ms))
			var wg sync.WaitGroup
			for i, m := range ms {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					defer cancel()
					sts[i], errs[i] = api.Status(cctx, m.ClientURL)
				}()
			}
			wg.Wait()
			if err := ctx.Err(); err != nil {
				return err // cancelled: the failed probes say nothing about quorum
			}
			memberNames := make([]string, len(ms))
			maxRev := int64(0)
			for i, m := range ms {
				memberNames[i] = m.Name
				switch ProbeClass(errs[i]) {
				case ProbeAnswered:
					if sts[i].Revision > maxRev {
						maxRev = sts[i].Revision
					}
				case ProbeNotListening:
					env.Logf("%s: asked, nothing listens: not serving (%v)", m.Name, oneLineErr(errs[i]))
				case ProbeUnreachable:
					if fenced {
						env.Logf("%s: host %s unreachable over the network: counted as not serving, because force-new-cluster's fence checks from the survivor that its peer port is silent before anything is forced (%v)", m.Name, m.Host, oneLineErr(errs[i]))
					} else {
						env.Logf("%s: host %s unreachable over the network: counted as could not ask, because this plan has no force-new-cluster fence (%v)", m.Name, m.Host, oneLineErr(errs[i]))
					}
				default:
					env.Logf("%s could not be asked (never counted as down): %v", m.Name, oneLineErr(errs[i]))
				}
			}
			// Only ever raise it: a re-run after the damage was repaired (a
			// resume) must not replace the pre-disaster revision.
			prev := int64(0)
			if v, ok := env.Fact(FactPreRevision); ok {
				prev, _ = strconv.ParseInt(v, 10, 64)
			}
			if maxRev > prev {
				if err := env.SetFact(FactPreRevision, strconv.FormatInt(maxRev, 10)); err != nil {
					return err
				}
			}
			qc := CountQuorum(memberNames, errs, fenced)
			env.Logf("%d of %d members answer, %d not serving, %d could not be asked (quorum %d); highest revision %d",
				len(qc.Answered), len(ms), len(qc.NotServing), len(qc.Unasked), qc.Quorum, maxRev)
			return qc.Verdict(expect, len(ms), mustNames)
		}}}
}

// VerifyData checks that every member has the same data: the same revision
// and the same hash of the key space (HashKV), and, after a restore with a
// bumped revision, a revision above the one seen before the disaster.
type VerifyData struct {
	AboveRecorded bool `yaml:"aboveRecorded" doc:"require a revision above the recorded pre-disaster revision"`
}

func (s *VerifyData) Describe(c *Ctx, t Target) []Action {
	ms := memberTargets(c)
	cmd := fmt.Sprintf("HashKV and revision of %s must agree (like etcdctl endpoint hashkv --cluster)", names(ms))
	if s.AboveRecorded {
		cmd += "; revision must exceed " + FactPreRevision
	}
	return []Action{{Kind: API, Cmd: cmd, Run: func(ctx context.Context, env Env) error {
		api, err := env.Etcd(ctx)
		if err != nil {
			return err
		}
		var rev int64
		for _, m := range ms {
			st, err := api.Status(ctx, m.ClientURL)
			if err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
			if rev == 0 || st.Revision < rev {
				rev = st.Revision
			}
		}
		hashes := map[uint32][]string{}
		for _, m := range ms {
			h, _, err := api.HashKV(ctx, m.ClientURL, rev)
			if err != nil {
				return fmt.Errorf("%s: hashkv at revision %d: %w", m.Name, rev, err)
			}
			hashes[h] = append(hashes[h], m.Name)
		}
		if len(hashes) > 1 {
			var parts []string
			for h, n := range hashes {
				parts = append(parts, fmt.Sprintf("%08x: %s", h, strings.Join(n, ",")))
			}
			sort.Strings(parts)
			return fmt.Errorf("members disagree at revision %d: %s", rev, strings.Join(parts, "; "))
		}
		if s.AboveRecorded {
			pre, ok := env.Fact(FactPreRevision)
			if !ok {
				return fmt.Errorf("no pre-disaster revision was recorded (add a check-quorum step before the damage is undone)")
			}
			p, _ := strconv.ParseInt(pre, 10, 64)
			if rev <= p {
				return fmt.Errorf("revision %d is not above the pre-disaster revision %d: watchers would miss changes", rev, p)
			}
		}
		env.Logf("%d members agree at revision %d", len(ms), rev)
		return nil
	}}}
}

// Approve stops the run until an operator says yes (interactively, or with
// --approve STEP on the command line). The approval is checkpointed.
type Approve struct {
	Message string `yaml:"message" rescue:"required" doc:"what the operator must confirm"`
}

func (*Approve) AsksApproval() bool { return true }

// Approver is the part of Env that asks the operator.
type Approver interface {
	Approve(ctx context.Context, message string) error
}

func (s *Approve) Describe(c *Ctx, t Target) []Action {
	return []Action{{Kind: Ask, Cmd: "ask the operator: " + s.Message, Run: func(ctx context.Context, env Env) error {
		a, ok := env.(Approver)
		if !ok {
			return fmt.Errorf("no way to ask for approval here")
		}
		return a.Approve(ctx, s.Message)
	}}}
}

// Exec is the escape hatch: a shell command, idempotent through creates or
// unless. It is marked in the dry-run.
type Exec struct {
	Command     string `yaml:"command" rescue:"required" vars:"shell" doc:"shell command run with sh -c on the host; each ${...} is inserted as literal text of one shell word"`
	Creates     string `yaml:"creates" doc:"a path; if it exists the step is already done"`
	Unless      string `yaml:"unless" vars:"shell" doc:"a shell test; if it exits 0 the step is already done; each ${...} is inserted as literal text of one shell word"`
	Destructive bool   `yaml:"destructive" doc:"the command changes or deletes data; resume never repeats it without --rerun"`
}

func (s *Exec) DestroysData() bool { return s.Destructive }

// HasCheck: without creates: or unless:, Check can never say done.
func (s *Exec) HasCheck() bool { return s.Creates != "" || s.Unless != "" }

// SafeToRepeat: creates: and unless: are exec's idempotency.
func (s *Exec) SafeToRepeat() bool { return s.HasCheck() }

// CheckFirst: creates: and unless: mean "skip when this holds".
func (*Exec) CheckFirst() bool { return true }

func (s *Exec) Describe(c *Ctx, t Target) []Action {
	return []Action{{Host: t.Name(), Kind: Shell, Destructive: s.Destructive, Cmd: s.Command}}
}

func (s *Exec) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	switch {
	case s.Creates != "":
		return remoteTest(ctx, env, t, "[ -e "+q(s.Creates)+" ]", s.Creates+" exists")
	case s.Unless != "":
		return remoteTest(ctx, env, t, s.Unless, "unless: "+s.Unless)
	}
	return false, "", nil
}

func (s *Exec) Validate(c *Ctx, at At, fs *plans.Findings) {
	fs.Warn(at("command"), "exec runs a free-form shell command; review it closely").
		WithHint("prefer a typed step when one exists (etcd-rescue steps)")
	if s.Creates == "" && s.Unless == "" {
		fs.Warn(at("command"), "exec has neither creates nor unless: a resumed run cannot tell whether it already ran")
	}
}
