package steps

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// How far force-new-cluster got on its survivor, as observed before it
// acts. The step looks first on every attempt, so that a run killed at any
// point inside it goes on from there with a plain resume.
type fncPhase int

const (
	// fncFresh: the flag is not written and the survivor is not a
	// one-member cluster: the whole step, fence and live checks first.
	fncFresh fncPhase = iota
	// fncFlagWritten: the flag is in the config, but the survivor does not
	// answer as a one-member cluster yet: fence and check again, (re)write
	// the flag, restart with it, then remove it.
	fncFlagWritten
	// fncForced: the flag is in the config and the survivor answers as a
	// one-member cluster: only removing the flag is left (and, for a
	// static pod, the restart that follows it). A static pod whose
	// manifest no longer has the flag while the container running was
	// started with it is here too: the kubelet is about to replace that
	// container, and until it has, the survivor will go down once more.
	fncForced
	// fncDone: no flag in the config, the survivor answers as a one-member
	// cluster with its data: nothing is left. The etcd running may still
	// be the one started with the flag: etcd reads it only at start, so
	// the next start reads the config without it (see [ForceNewCluster]).
	fncDone
)

// fncSeen is what force-new-cluster observed of its survivor.
type fncSeen struct {
	FlagSet bool // ETCD_FORCE_NEW_CLUSTER is in the env file (manifest)
	// RunsWithFlag: the etcd process running now was started with it.
	RunsWithFlag bool
	// Pod: etcd is a static pod, so the kubelet restarts it whenever its
	// manifest changes (systemd restarts it only when told).
	Pod      bool
	Answers  bool   // its status answered at its client URL
	NoAnswer string // why not, one line
	Members  int    // members it lists (0: the list did not answer)
	Self     bool   // the only member listed is the survivor
	Other    string // name of the only member listed when not the survivor
	Revision int64
}

// fncRevisionFact is the fact key of the survivor's revision, recorded by
// force-new-cluster right before it writes the flag.
func fncRevisionFact(name string) string { return "forceNewCluster." + name + ".revision" }

// single reports whether the survivor answers as a one-member cluster
// whose only member is itself.
func (s fncSeen) single() bool { return s.Answers && s.Members == 1 && s.Self }

func (s fncSeen) etcdState(name string) string {
	switch {
	case !s.Answers:
		return fmt.Sprintf("%s does not answer (%s)", name, s.NoAnswer)
	case s.single():
		return fmt.Sprintf("%s answers as a one-member cluster at revision %d", name, s.Revision)
	case s.Members == 0:
		return fmt.Sprintf("%s answers status (revision %d) but not the member list", name, s.Revision)
	}
	return fmt.Sprintf("%s answers as a member of a %d-member cluster", name, s.Members)
}

// fncRecorded is a revision the survivor's data must not be below, and
// where it comes from.
type fncRecorded struct {
	Rev  int64
	From string
}

// decideFNC is force-new-cluster's state machine: from what it observes of
// the survivor (and the revisions recorded earlier in the run) it decides
// where the step stands. An error means the observation contradicts the
// step: the tool cannot tell what happened, and must not guess.
func decideFNC(name string, seen fncSeen, recorded []fncRecorded, allowBehind bool) (fncPhase, string, error) {
	flag := "flag not written"
	if seen.FlagSet {
		flag = "flag written"
	}
	state := seen.etcdState(name)
	if seen.Answers && seen.Members == 1 && !seen.Self {
		return 0, "", fmt.Errorf("%s, %s answers as a one-member cluster whose member is %s, not %s: the data dir holds another cluster", flag, name, seen.Other, name)
	}
	if seen.single() {
		for _, r := range recorded {
			if r.Rev > seen.Revision && !allowBehind {
				return 0, "", fmt.Errorf("%s, %s answers as a one-member cluster at revision %d, below revision %d (%s): its data is not the data the step began with",
					flag, name, seen.Revision, r.Rev, r.From)
			}
		}
	}
	switch {
	case !seen.FlagSet && seen.single() && seen.RunsWithFlag && seen.Pod:
		// The manifest changed under a running pod: the kubelet replaces
		// the container shortly, taking the survivor down meanwhile. A
		// member added before that would find no peer to join.
		return fncForced, fmt.Sprintf("flag removed from the manifest, %s, but the container running was started with the flag → waiting until the kubelet has replaced it", state), nil
	case !seen.FlagSet && seen.single() && seen.RunsWithFlag:
		// Safe to build on: a restart of any kind reads the config, which
		// no longer has the flag, so members added from here on are not
		// forced out again.
		return fncDone, fmt.Sprintf("flag removed, %s; the etcd running was started with the flag, which etcd reads only at start: done", state), nil
	case !seen.FlagSet && seen.single():
		return fncDone, fmt.Sprintf("%s, %s: done", flag, state), nil
	case seen.FlagSet && seen.single():
		return fncForced, fmt.Sprintf("%s, %s → removing the flag", flag, state), nil
	case seen.FlagSet:
		return fncFlagWritten, fmt.Sprintf("%s, %s → checking the fence again, restarting with the flag, then removing it", flag, state), nil
	}
	return fncFresh, fmt.Sprintf("%s, %s → the whole step, fence and live checks first", flag, state), nil
}

// observeCommand prints "flag" when ETCD_FORCE_NEW_CLUSTER is in the
// survivor's config, and "running-with-flag" when the etcd process running
// now was started with it: for systemd its environment or command line, for
// a static pod the command line of each running container of it (crictl
// inspect gives the process id; the kubelet restarts the pod when its
// manifest changes, but not at once).
func observeCommand(c *Ctx) string {
	cmd := "if " + configTest(c, nil, []string{"ETCD_FORCE_NEW_CLUSTER"}) + "; then :; else echo flag; fi"
	hasFlag := "grep -q -x -e 'ETCD_FORCE_NEW_CLUSTER=true' -e '--force-new-cluster' -e '--force-new-cluster=true'; then echo running-with-flag; fi"
	if c.Cluster.Layout.Service == "static-pod" {
		return cmd + "; for id in $(" + runningCmd(c.Cluster.Layout.Unit) + " 2>/dev/null); do " +
			`pid=$(crictl inspect -o go-template --template '{{.info.pid}}' "$id" 2>/dev/null); ` +
			`if [ -n "$pid" ] && [ "$pid" != 0 ] && tr '\000' '\n' < "/proc/$pid/cmdline" 2>/dev/null | ` + hasFlag + "; done"
	}
	return cmd + "; pid=$(systemctl show -p MainPID " + q(c.Cluster.Layout.Unit) + " 2>/dev/null); pid=${pid#MainPID=}; " +
		`if [ -n "$pid" ] && [ "$pid" != 0 ] && { tr '\000' '\n' < "/proc/$pid/environ"; tr '\000' '\n' < "/proc/$pid/cmdline"; } 2>/dev/null | ` + hasFlag
}

// observe looks at the survivor, read-only: the flag in its config and in
// the running process, and what it answers at its client URL.
func (s *ForceNewCluster) observe(ctx context.Context, c *Ctx, env Env, t Target) (fncSeen, error) {
	seen := fncSeen{Pod: c.Cluster.Layout.Service == "static-pod"}
	m := t.Member
	r, err := env.Shell(t.Name())
	if err != nil {
		return seen, err
	}
	out, err := r.Run(ctx, observeCommand(c), nil)
	if err != nil {
		return seen, fmt.Errorf("reading the config of %s on %s: %w", m.Name, t.Name(), err)
	}
	for _, l := range strings.Fields(string(out)) {
		switch l {
		case "flag":
			seen.FlagSet = true
		case "running-with-flag":
			seen.RunsWithFlag = true
		}
	}
	api, err := env.Etcd(ctx)
	if err != nil {
		seen.NoAnswer = oneLineErr(err)
		return seen, nil
	}
	cctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	st, err := api.Status(cctx, m.ClientURL)
	if err != nil {
		seen.NoAnswer = oneLineErr(err)
		return seen, nil
	}
	seen.Answers, seen.Revision = true, st.Revision
	// The other members are fenced, so only the survivor can answer the
	// list; if another answers, it lists more than one member and the
	// fence refuses before anything is forced.
	list, err := api.MemberList(cctx, true)
	if err != nil {
		return seen, nil
	}
	seen.Members = len(list)
	if len(list) == 1 {
		seen.Self = list[0].ID == st.MemberID || (list[0].Name == m.Name && list[0].Name != "")
		seen.Other = list[0].Name
		if seen.Other == "" {
			seen.Other = fmt.Sprintf("member %x", list[0].ID)
		}
	}
	return seen, nil
}

// recorded returns the revisions recorded earlier in the run that the
// survivor's data must reach.
func (s *ForceNewCluster) recorded(env Env, m *plans.Member) []fncRecorded {
	var out []fncRecorded
	if v, ok := env.Fact(fncRevisionFact(m.Name)); ok {
		if r, err := strconv.ParseInt(v, 10, 64); err == nil && r > 0 {
			out = append(out, fncRecorded{r, "recorded by this step before it wrote the flag"})
		}
	}
	if v, ok := env.Fact(FactPreRevision); ok {
		if r, err := strconv.ParseInt(v, 10, 64); err == nil && r > 0 {
			out = append(out, fncRecorded{r, "the pre-disaster revision recorded by check-quorum"})
		}
	}
	return out
}

// decide observes the survivor and decides where the step stands.
func (s *ForceNewCluster) decide(ctx context.Context, c *Ctx, env Env, t Target) (fncPhase, string, error) {
	seen, err := s.observe(ctx, c, env, t)
	if err != nil {
		return 0, "", err
	}
	return decideFNC(t.Member.Name, seen, s.recorded(env, t.Member), s.AllowBehind)
}

// fncRun is one attempt of force-new-cluster: the phase its first action
// observed decides which of the later actions run.
type fncRun struct {
	phase fncPhase
	seen  bool
}

// only wraps a action so that it runs only in the given phases.
func (r *fncRun) only(a Action, phases ...fncPhase) Action {
	inner := a
	a.Run = func(ctx context.Context, env Env) error {
		if !r.seen {
			return errors.New("force-new-cluster: the survivor was not observed first")
		}
		run := false
		for _, p := range phases {
			run = run || p == r.phase
		}
		if !run {
			return nil
		}
		if inner.Run != nil {
			return inner.Run(ctx, env)
		}
		sh, err := env.Shell(inner.Host)
		if err != nil {
			return err
		}
		_, err = sh.Run(ctx, inner.Cmd, nil)
		return err
	}
	return a
}

// raiseRevisionFact records rev under key unless a higher one is recorded:
// the survivor's data never goes back, so neither does the record.
func raiseRevisionFact(env Env, key string, rev int64) error {
	if v, ok := env.Fact(key); ok {
		if r, err := strconv.ParseInt(v, 10, 64); err == nil && r >= rev {
			return nil
		}
	}
	if rev <= 0 {
		return nil
	}
	return env.SetFact(key, strconv.FormatInt(rev, 10))
}
