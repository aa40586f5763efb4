package steps

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
