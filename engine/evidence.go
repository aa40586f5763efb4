package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// The evidence of a run (runs/<id>/evidence/) is written at the end of
// every session, whatever its outcome: the facts of the live cluster at
// the start and end of each session, a copy of the (redacted) journal,
// evidence.json (this file's Evidence) and summary.md. `etcd-rescue report`
// prints the summary or packs the whole for a postmortem.

// EvidenceKind and EvidenceVersion identify evidence.json.
const (
	EvidenceKind    = "etcd-rescue/evidence"
	EvidenceVersion = 1
)

// Evidence is evidence.json.
type Evidence struct {
	Kind       string            `json:"kind"`
	Version    int               `json:"version"`
	RunID      string            `json:"runId"`
	Plan       string            `json:"plan"`
	PlanName   string            `json:"planName"`
	PlanSHA256 string            `json:"planSha256"`
	Outcome    string            `json:"outcome"` // of the latest session
	Sessions   []EvidenceSession `json:"sessions"`
	Steps      []StepTiming      `json:"steps"`
	// Recorded are the facts steps recorded that matter afterwards:
	// snapshot checksums and revisions, the pre-disaster revision, the
	// revision bump, member ids.
	Recorded map[string]string `json:"recorded,omitempty"`
	// Before is the cluster at the start of the first session whose facts
	// were collected; After at the end of the latest session.
	Before *ClusterView `json:"before,omitempty"`
	After  *ClusterView `json:"after,omitempty"`
	// Failures are the step-hosts that failed, with the first line of
	// their error (refusals included).
	Failures []string `json:"failures,omitempty"`
}

// EvidenceSession is one apply or resume.
type EvidenceSession struct {
	N       int       `json:"n"`
	Kind    string    `json:"kind"` // apply | resume
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	Outcome string    `json:"outcome"`
	// FactsBefore/FactsAfter name the facts file in the evidence dir, or
	// are "" with the reason in the Note.
	FactsBefore     string          `json:"factsBefore,omitempty"`
	FactsBeforeNote string          `json:"factsBeforeNote,omitempty"`
	FactsBeforeTook runstate.Millis `json:"factsBeforeMs"`
	FactsAfter      string          `json:"factsAfter,omitempty"`
	FactsAfterNote  string          `json:"factsAfterNote,omitempty"`
	FactsAfterTook  runstate.Millis `json:"factsAfterMs"`
}

// StepTiming is one step-host's record at the end of the latest session.
type StepTiming struct {
	Step     string          `json:"step"`
	Type     string          `json:"type"`
	Host     string          `json:"host,omitempty"`
	Status   string          `json:"status"`
	Attempts int             `json:"attempts"`
	Started  *time.Time      `json:"started,omitempty"`
	Finished *time.Time      `json:"finished,omitempty"`
	Elapsed  runstate.Millis `json:"elapsedMs"`
	Remote   runstate.Millis `json:"remoteMs"`
	API      runstate.Millis `json:"apiMs"`
	Cmds     int             `json:"commands"`
}

// ClusterView is what one facts collection says about the cluster.
type ClusterView struct {
	File        string    `json:"file"`
	CollectedAt time.Time `json:"collectedAt"`
	// Members is the cluster's member list: every member some answering
	// member listed (sorted by name).
	Members   []facts.ListedMember `json:"members"`
	Endpoints []EndpointView       `json:"endpoints"`
	// Revision is the highest revision seen (status, or read offline).
	Revision int64 `json:"revision"`
	// HashKV is equal, differ, not-comparable (members at different
	// revisions), or unknown (fewer than two answers).
	HashKV string `json:"hashKV"`
	// CouldNotAsk lists the hosts and members that could not be asked.
	CouldNotAsk []string `json:"couldNotAsk,omitempty"`
}

// EndpointView is one inventory member in a ClusterView.
type EndpointView struct {
	Name            string         `json:"name"`
	Host            string         `json:"host"`
	API             facts.APIState `json:"api"`
	Why             string         `json:"why,omitempty"`
	MemberID        string         `json:"memberID,omitempty"`
	Revision        int64          `json:"revision,omitempty"`
	RaftIndex       uint64         `json:"raftIndex,omitempty"`
	Learner         bool           `json:"learner,omitempty"`
	HashKV          *facts.HashKV  `json:"hashKV,omitempty"`
	OfflineRevision int64          `json:"offlineRevision,omitempty"`
}

// sessionFacts are the facts a session starts from.
type sessionFacts struct {
	f    *facts.Facts
	note string // why f is nil
	took time.Duration
	gate string // what the host gate said (journalled at session start)
	// certGate is what the certificate gate said (journalled after gate).
	certGate string
	// answeredLater are the hosts the facts could not reach that answered
	// the gate's second try.
	answeredLater map[string]bool
}

// collectFacts gets the facts of the live cluster for the start or end of
// a session: Options.Before (start only), Options.CollectFacts, or, with
// the SSH backend, facts.Collect over the plan. A collection that cannot
// start is an error; hosts that cannot be asked are facts.
func collectFacts(ctx context.Context, c *Compiled, opts *Options, timeout time.Duration) (*sessionFacts, error) {
	start := time.Now()
	var f *facts.Facts
	var err error
	switch {
	case opts.CollectFacts != nil:
		f, err = opts.CollectFacts(ctx)
	case opts.Backend != nil:
		return &sessionFacts{note: "facts not collected (a backend other than SSH, without a facts collector)"}, nil
	default:
		fo := facts.Options{Timeout: timeout, Inventory: opts.Inventory}
		if opts.conns != nil {
			fo.Client = opts.conns.Get
		}
		f, err = facts.Collect(ctx, c.Plan, fo)
	}
	if err != nil {
		return nil, err
	}
	if f == nil {
		return &sessionFacts{note: "facts not collected", took: time.Since(start)}, nil
	}
	return &sessionFacts{f: f, took: time.Since(start)}, nil
}

// liveView is the steps' narrow view of session-start facts.
func liveView(f *facts.Facts) *steps.Live {
	if f == nil {
		return nil
	}
	l := &steps.Live{CollectedAt: f.CollectedAt}
	seen := map[uint64]bool{}
	for _, m := range f.Members {
		lm := steps.LiveMember{Name: m.Name, Host: m.Host, ClientURL: m.ClientURL, Why: m.Error}
		switch m.API {
		case facts.APIAnswered:
			lm.API, lm.HasData = steps.LiveAnswered, true
		case facts.APIDown:
			lm.API = steps.LiveDown
		default:
			lm.API = steps.LiveCouldNotAsk
		}
		if h := f.HostByName(m.Host); h != nil && h.Reach.Asked() && h.DataDir != nil {
			lm.HostAsked = true
			lm.HasData = lm.HasData || h.DataDir.HasMember
			lm.OfflineRevision = h.DataDir.OfflineRevision
		} else if h != nil && lm.Why == "" {
			lm.Why = "host " + string(h.Reach) + ": " + h.Error
		}
		if st := m.Status; st != nil {
			lm.ID, _ = strconv.ParseUint(st.MemberID, 16, 64)
			lm.Revision, lm.RaftIndex, lm.Learner = st.Revision, st.RaftIndex, st.IsLearner
		}
		l.Members = append(l.Members, lm)
		for _, x := range m.MemberList {
			id, err := strconv.ParseUint(x.ID, 16, 64)
			if err != nil || seen[id] {
				continue
			}
			seen[id] = true
			l.Listed = append(l.Listed, steps.Member{ID: id, Name: x.Name, PeerURLs: x.PeerURLs, ClientURLs: x.ClientURLs, IsLearner: x.IsLearner})
		}
	}
	return l
}

// clusterView summarises a facts collection for the evidence.
func clusterView(f *facts.Facts, file string) *ClusterView {
	if f == nil {
		return nil
	}
	v := &ClusterView{File: file, CollectedAt: f.CollectedAt, Members: []facts.ListedMember{}}
	seen := map[string]bool{}
	for _, h := range f.Hosts {
		if !h.Reach.Asked() {
			v.CouldNotAsk = append(v.CouldNotAsk, fmt.Sprintf("host %s: %s (%s)", h.Name, h.Reach, h.Error))
		}
	}
	type hk struct {
		name string
		h    *facts.HashKV
	}
	var hashes []hk
	for _, m := range f.Members {
		e := EndpointView{Name: m.Name, Host: m.Host, API: m.API}
		if m.API != facts.APIAnswered {
			e.Why = m.Error
		}
		if m.API == facts.APICouldNotAsk {
			v.CouldNotAsk = append(v.CouldNotAsk, fmt.Sprintf("member %s: %s", m.Name, m.Error))
		}
		if st := m.Status; st != nil {
			e.MemberID, e.Revision, e.RaftIndex, e.Learner = st.MemberID, st.Revision, st.RaftIndex, st.IsLearner
			v.Revision = max(v.Revision, st.Revision)
		}
		if h := f.HostByName(m.Host); h != nil && h.DataDir != nil && h.DataDir.OfflineRevision > 0 {
			e.OfflineRevision = h.DataDir.OfflineRevision
			v.Revision = max(v.Revision, e.OfflineRevision)
		}
		if m.HashKV != nil {
			e.HashKV = m.HashKV
			hashes = append(hashes, hk{m.Name, m.HashKV})
		}
		for _, x := range m.MemberList {
			if !seen[x.ID] {
				seen[x.ID] = true
				v.Members = append(v.Members, x)
			}
		}
		v.Endpoints = append(v.Endpoints, e)
	}
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].Name < v.Members[j].Name })
	switch {
	case len(hashes) < 2:
		v.HashKV = "unknown"
	default:
		v.HashKV = "equal"
		for _, x := range hashes[1:] {
			if x.h.Revision != hashes[0].h.Revision {
				v.HashKV = "not-comparable"
				break
			}
			if x.h.Hash != hashes[0].h.Hash {
				v.HashKV = "differ"
			}
		}
	}
	return v
}

// writeEvidence records the session in the evidence dir. Failures are
// journalled, never fatal: the run's outcome is already on disk.
func writeEvidence(run *runstate.Run, opts *Options, kind string, started time.Time, before, after *sessionFacts) {
	st := run.Snapshot()
	var ev Evidence
	if b, err := run.ReadEvidence(runstate.EvidenceDoc); err == nil && len(b) > 0 {
		_ = json.Unmarshal(b, &ev)
	}
	ev.Kind, ev.Version = EvidenceKind, EvidenceVersion
	ev.RunID, ev.Plan, ev.PlanName, ev.PlanSHA256, ev.Outcome = st.RunID, st.Plan, st.PlanName, st.PlanSHA256, st.Outcome
	s := EvidenceSession{N: st.Sessions, Kind: kind, Started: started.UTC(), Ended: opts.now().UTC(), Outcome: st.Outcome}
	var errs []string
	save := func(name string, sf *sessionFacts) (string, string, runstate.Millis) {
		if sf == nil {
			return "", "", 0
		}
		if sf.f == nil {
			return "", sf.note, runstate.Millis(sf.took / time.Millisecond)
		}
		if err := run.WriteEvidenceJSON(name, sf.f); err != nil {
			errs = append(errs, name+": "+err.Error())
			return "", "not written: " + err.Error(), 0
		}
		return name, sf.note, runstate.Millis(sf.took / time.Millisecond)
	}
	s.FactsBefore, s.FactsBeforeNote, s.FactsBeforeTook = save(runstate.EvidenceFactsSession(st.Sessions), before)
	s.FactsAfter, s.FactsAfterNote, s.FactsAfterTook = save(runstate.EvidenceFactsAfter, after)
	ev.Sessions = append(ev.Sessions, s)
	if ev.Before == nil && before != nil && before.f != nil {
		ev.Before = clusterView(before.f, s.FactsBefore)
	}
	ev.After = nil
	if after != nil && after.f != nil {
		ev.After = clusterView(after.f, s.FactsAfter)
	}
	ev.Steps = nil
	ev.Failures = nil
	for _, x := range st.Steps {
		for _, h := range x.Hosts {
			ev.Steps = append(ev.Steps, StepTiming{Step: x.ID, Type: x.Type, Host: h.Host, Status: h.Status, Attempts: h.Attempts,
				Started: h.Started, Finished: h.Finished, Elapsed: h.Elapsed, Remote: h.Remote, API: h.API, Cmds: h.Cmds})
			if h.Status == runstate.StatusFailed && h.Error != "" {
				ev.Failures = append(ev.Failures, runstate.Key(x.ID, h.Host)+": "+oneLine(h.Error))
			}
		}
	}
	ev.Recorded = map[string]string{}
	for k, v := range st.Facts {
		if strings.HasPrefix(k, "snapshot.") || strings.HasPrefix(k, "restore.") || strings.HasPrefix(k, "cluster.") || strings.HasPrefix(k, "member.") {
			ev.Recorded[k] = v
		}
	}
	if err := run.WriteEvidenceJSON(runstate.EvidenceDoc, &ev); err != nil {
		errs = append(errs, runstate.EvidenceDoc+": "+err.Error())
	}
	if err := run.WriteEvidence(runstate.EvidenceSummary, []byte(Summary(&ev))); err != nil {
		errs = append(errs, runstate.EvidenceSummary+": "+err.Error())
	}
	if len(errs) > 0 {
		run.Event(runstate.Event{Type: "run", Msg: "evidence not complete: " + strings.Join(errs, "; ")})
	}
	// The journal last, so that it holds the lines above.
	if err := run.CopyJournal(); err != nil {
		run.Event(runstate.Event{Type: "run", Msg: "evidence: journal not copied: " + err.Error()})
	}
	if err := run.SyncEvidence(); err != nil {
		run.Event(runstate.Event{Type: "run", Msg: "evidence: not synced to disk: " + err.Error()})
	}
}

// Summary renders summary.md from an evidence document.
func Summary(ev *Evidence) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("# etcd-rescue run %s", ev.RunID)
	p("")
	p("- plan: %s (%s), sha256 %.12s", ev.PlanName, ev.Plan, ev.PlanSHA256)
	p("- outcome: **%s** after %d session(s)", ev.Outcome, len(ev.Sessions))
	p("")
	p("## Sessions")
	p("")
	p("| # | kind | started (UTC) | took | outcome | facts at start | facts at end |")
	p("|---|---|---|---|---|---|---|")
	for _, s := range ev.Sessions {
		p("| %d | %s | %s | %s | %s | %s | %s |", s.N, s.Kind, s.Started.Format("2006-01-02 15:04:05"), s.Ended.Sub(s.Started).Round(100*time.Millisecond),
			s.Outcome, factsCell(s.FactsBefore, s.FactsBeforeNote, s.FactsBeforeTook), factsCell(s.FactsAfter, s.FactsAfterNote, s.FactsAfterTook))
	}
	p("")
	p("## Steps")
	p("")
	p("| step | host | status | attempts | elapsed | remote | api | commands |")
	p("|---|---|---|---|---|---|---|---|")
	for _, s := range ev.Steps {
		host := s.Host
		if host == "" {
			host = "-"
		}
		p("| %s | %s | %s | %d | %s | %s | %s | %d |", s.Step, host, s.Status, s.Attempts, s.Elapsed.D(), s.Remote.D(), s.API.D(), s.Cmds)
	}
	if len(ev.Failures) > 0 {
		p("")
		p("## Failures")
		p("")
		for _, f := range ev.Failures {
			p("- %s", f)
		}
	}
	p("")
	p("## Cluster before → after")
	p("")
	p("- members before: %s", membersLine(ev.Before))
	p("- members after:  %s", membersLine(ev.After))
	p("- revision: %s → %s", revLine(ev.Before), revLine(ev.After))
	p("- HashKV before: %s", hashLine(ev.Before))
	p("- HashKV after:  %s", hashLine(ev.After))
	for _, x := range []struct {
		when string
		v    *ClusterView
	}{{"before", ev.Before}, {"after", ev.After}} {
		if x.v != nil && len(x.v.CouldNotAsk) > 0 {
			p("- could not ask (%s): %s", x.when, strings.Join(x.v.CouldNotAsk, "; "))
		}
	}
	if len(ev.Recorded) > 0 {
		p("")
		p("## Recorded by the steps")
		p("")
		keys := make([]string, 0, len(ev.Recorded))
		for k := range ev.Recorded {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p("- %s = %s", k, ev.Recorded[k])
		}
	}
	return b.String()
}

func factsCell(file, note string, took runstate.Millis) string {
	if file == "" {
		if note == "" {
			return "-"
		}
		return note
	}
	s := fmt.Sprintf("%s (%s)", file, took.D())
	if note != "" {
		s += "; " + note
	}
	return s
}

func membersLine(v *ClusterView) string {
	if v == nil {
		return "not collected"
	}
	if len(v.Members) == 0 {
		return "none listed (no member answered)"
	}
	var parts []string
	for _, m := range v.Members {
		s := m.Name + " " + m.ID
		if m.Name == "" {
			s = "(unstarted) " + m.ID
		}
		if m.IsLearner {
			s += " learner"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func revLine(v *ClusterView) string {
	if v == nil {
		return "not collected"
	}
	if v.Revision == 0 {
		return "unknown"
	}
	return strconv.FormatInt(v.Revision, 10)
}

func hashLine(v *ClusterView) string {
	if v == nil {
		return "not collected"
	}
	var parts []string
	for _, e := range v.Endpoints {
		if e.HashKV != nil {
			parts = append(parts, fmt.Sprintf("%s %08x@%d", e.Name, e.HashKV.Hash, e.HashKV.Revision))
		} else {
			parts = append(parts, e.Name+" "+string(e.API))
		}
	}
	return v.HashKV + " (" + strings.Join(parts, ", ") + ")"
}
