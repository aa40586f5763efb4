package steps

import (
	"fmt"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// The interfaces below tell the engine's cross-step rules what a step does
// to the cluster, so that the rules (engine/rules*.go) need no list of step
// types: a new type that stops a service, reads a snapshot or adds a member
// implements the matching interface and is checked like the built-in ones.
// Each is asked of a step-host's decoded parameters.

// StopsService is implemented by steps that stop a service on their host.
type StopsService interface {
	// StopsUnit is the unit (systemd unit or static pod) the step stops.
	StopsUnit(c *Ctx) string
}

// StartsService is implemented by steps that start a service on their host.
type StartsService interface {
	// StartsUnit is the unit the step starts.
	StartsUnit(c *Ctx) string
}

// MustStart is implemented by steps after which the member of their host
// must be started by a later step (member-add, restore).
type MustStart interface {
	// MustStartAfter says why, as the hint of the finding when no later
	// step starts the member.
	MustStartAfter() string
}

// RemovesMember is implemented by steps that remove a member from the
// cluster by name, peer URL or id (any may be empty).
type RemovesMember interface {
	RemovedMember() (name, peerURL, id string)
}

// AddsMember is implemented by steps that add the member of their host to
// the running cluster.
type AddsMember interface {
	AddsMember() bool
}

// PromotesLearner is implemented by steps that promote the learner of their
// host; the learner must be running by then.
type PromotesLearner interface {
	PromotesLearner() bool
}

// RebuildsCluster is implemented by steps that only belong in a plan for a
// cluster that lost its quorum: restore and force-new-cluster rebuild it,
// check-quorum with expect: lost guards it. In such a plan, stopping a
// majority of the members is the point, not an outage.
type RebuildsCluster interface {
	RebuildsCluster() bool
}

// PlacesSnapshot is implemented by steps that put a snapshot file on their
// host (snapshot-copy).
type PlacesSnapshot interface {
	PlacedSnapshot() string
}

// ChecksSnapshot is implemented by steps that check a snapshot file on their
// host and fail when it is missing or damaged (snapshot-verify): a plan that
// restores a file already on the host says it exists this way.
type ChecksSnapshot interface {
	CheckedSnapshot() string
}

// RestoresFromSnapshot is implemented by steps that rebuild the member of
// their host from a snapshot file on that host (restore).
type RestoresFromSnapshot interface {
	RestoredFrom() string
}

// BootstrapsMember is implemented by steps that write the initial cluster
// settings a member starts with (set-config): the cluster state (new or
// existing) and the members of --initial-cluster (nil: every member).
type BootstrapsMember interface {
	Bootstrap() (state string, initialCluster []string)
}

// StoppedFirst is a service that must be stopped on each of Hosts by an
// earlier step before a step may run.
type StoppedFirst struct {
	Unit  string
	Hosts []string
	What  string // what the step is, for the finding ("restore in the static-pod layout")
	Hint  string
}

// NeedsStoppedFirst is implemented by steps that may only run once other
// services are stopped, possibly on other hosts (a static-pod restore needs
// every kube-apiserver down first).
type NeedsStoppedFirst interface {
	NeedsStoppedFirst(c *Ctx) []StoppedFirst
}

// DefaultDeadline is the time limit of a step-host whose step sets no
// timeout: and whose type has no default of its own ([DefaultTimeout]).
// Every step ends: a call that hangs, or a refusal that never clears, fails
// the step by then with the limit it hit.
const DefaultDeadline = 10 * time.Minute

// DefaultTimeout is implemented by step types whose work may take longer
// than [DefaultDeadline]: those that wait up to their within: (the default
// is within: plus a margin for the rest of their work) and those that move
// or rewrite a whole database. Basis says how the limit is made, for the
// dry-run ("within: 5m + 1m").
type DefaultTimeout interface {
	DefaultTimeout() (limit time.Duration, basis string)
}

// Deadline returns the default time limit of a step-host with parameters s
// and how it is made ("" for DefaultDeadline).
func Deadline(s Step) (time.Duration, string) {
	if d, ok := s.(DefaultTimeout); ok {
		if limit, basis := d.DefaultTimeout(); limit > 0 {
			return limit, basis
		}
	}
	return DefaultDeadline, ""
}

// withinPlus is the default deadline of a step that waits up to within
// n times, with margin for the rest of its work.
func withinPlus(within time.Duration, n int, margin time.Duration) (time.Duration, string) {
	basis := fmt.Sprintf("within: %s + %s", fmtDuration(within), fmtDuration(margin))
	if n > 1 {
		basis = fmt.Sprintf("%d waits of within: %s + %s", n, fmtDuration(within), fmtDuration(margin))
	}
	return time.Duration(n)*within + margin, basis
}

// fmtDuration prints 10m rather than 10m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// FormatDuration prints a deadline as the dry-run and errors show it (10m,
// 1h, 2m30s).
func FormatDuration(d time.Duration) string { return fmtDuration(d) }

// Long transfers and rewrites: a snapshot of etcd's largest database (8 GiB)
// over a slow link, a restore of it on a slow disk.
const (
	transferDeadline = time.Hour
	restoreDeadline  = 30 * time.Minute
)

func (s *WaitHealthy) DefaultTimeout() (time.Duration, string) {
	return withinPlus(s.Within.D(), 1, time.Minute)
}

func (s *MemberPromote) DefaultTimeout() (time.Duration, string) {
	return withinPlus(s.Within.D(), 1, time.Minute)
}

// DefaultTimeout: force-new-cluster waits up to within: once with systemd
// (after the start with the flag) and twice for a static pod (also after
// the kubelet restarts it without the flag); the default covers both.
func (s *ForceNewCluster) DefaultTimeout() (time.Duration, string) {
	return withinPlus(s.Within.D(), 2, 5*time.Minute)
}

func (*SnapshotSave) DefaultTimeout() (time.Duration, string) {
	return transferDeadline, "a snapshot transfer"
}

func (*SnapshotCopy) DefaultTimeout() (time.Duration, string) {
	return transferDeadline, "a snapshot transfer"
}

func (*SnapshotVerify) DefaultTimeout() (time.Duration, string) {
	return restoreDeadline, "reads a whole snapshot"
}

func (*Restore) DefaultTimeout() (time.Duration, string) {
	return restoreDeadline, "rewrites a whole database"
}

// DefaultTimeout: an approve step waits for a person at the terminal.
func (*Approve) DefaultTimeout() (time.Duration, string) {
	return 24 * time.Hour, "waits for an operator"
}

// StartsOnPlanURLs: see [StartsOnPlanURLs]. The member of the host serves
// on its URLs of cluster.members after these steps.
func (*MemberAdd) StartsOnPlanURLs() bool    { return true }
func (*MemberUpdate) StartsOnPlanURLs() bool { return true }
func (*Restore) StartsOnPlanURLs() bool      { return true }
func (*SetConfig) StartsOnPlanURLs() bool    { return true }

// LaneSafe is implemented by step types whose work on a host reads and
// changes only that host: the step on host h may go on as soon as its needs
// are done on h, without waiting for the other hosts (a lane; see
// engine/lanes.go). The engine draws a lane between two steps only when
// both are per host and neither is cluster-level; any other need is a
// barrier (every host of the need first), which is also what a type that
// does not implement LaneSafe gets. Not per host, on purpose: membership
// changes, force-new-cluster, start-service (restored members start
// together: a Type=notify etcd blocks until it has a quorum), exec (its
// command may do anything), and every step that runs once.
type LaneSafe interface {
	LaneSafe() bool
}

// LaneSafe: stopping a unit on a host is host-local. The engine still makes
// the need a barrier when the unit stopped is not the cluster's etcd unit
// (stopping kube-apiserver everywhere before anything else is the
// runbooks' order).
func (*StopService) LaneSafe() bool    { return true }
func (*WipeDir) LaneSafe() bool        { return true }
func (*Chown) LaneSafe() bool          { return true }
func (*SnapshotCopy) LaneSafe() bool   { return true }
func (*SnapshotVerify) LaneSafe() bool { return true }
func (*Restore) LaneSafe() bool        { return true }
func (*SetConfig) LaneSafe() bool      { return true }
func (*CertIssue) LaneSafe() bool      { return true }

// NoLane is implemented by per-host step types that are never in a
// lane, to say why in the dry-run.
type NoLane interface {
	NoLane() string
}

func (*StartService) NoLane() string    { return "members start together" }
func (*Exec) NoLane() string            { return "its command may reach other hosts" }
func (*MemberAdd) NoLane() string       { return "it changes the membership" }
func (*MemberUpdate) NoLane() string    { return "it changes the membership" }
func (*MemberPromote) NoLane() string   { return "it changes the membership" }
func (*ForceNewCluster) NoLane() string { return "it rebuilds the cluster" }

// StopsServices is implemented by steps that stop several services on
// their host (kube-stop-control-plane: the control-plane components). The
// rules treat each unit as [StopsService] would.
type StopsServices interface {
	StopsUnits(c *Ctx) []string
}

// UnitsStopped lists the units a step stops on its host, whichever of
// [StopsService] and [StopsServices] it implements: every step that stops
// a component counts, however the plan writes it.
func UnitsStopped(s Step, c *Ctx) []string {
	var out []string
	if one, ok := s.(StopsService); ok {
		out = append(out, one.StopsUnit(c))
	}
	if many, ok := s.(StopsServices); ok {
		out = append(out, many.StopsUnits(c)...)
	}
	return out
}

// UsesKubernetes is implemented by step types that act on the Kubernetes
// control plane and need cluster.kubernetes. It is asked of the type's
// zero value.
type UsesKubernetes interface {
	UsesKubernetes() bool
}

// DefaultHosts is implemented by per-host step types whose on: may be left
// out: they then run on the hosts it returns (the control-plane hosts). It
// is asked of the type's zero value.
type DefaultHosts interface {
	DefaultOn(p *plans.Plan) []string
}

// BumpsRevision is implemented by steps that may restore with a revision
// bump and compaction (restore): a watch from a revision before it is then
// answered with 410 Gone.
type BumpsRevision interface {
	BumpsRevision() bool
}

// NeedsBumpedRestore is implemented by steps that only mean something after
// a restore with a revision bump (kube-verify-relist); the string is the
// hint of the finding when the plan has none before the step.
type NeedsBumpedRestore interface {
	NeedsBumpedRestore() string
}
