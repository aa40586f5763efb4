package steps

import "sort"

// Type describes one step type of the catalog.
type Type struct {
	Name    string
	Summary string
	Scope   Scope
	// On documents what on: means for a type that runs once, when it is
	// more than selecting the members it looks at.
	On string
	// Destructive types change data or membership: a resumed run never
	// repeats them without a Check saying they are not done.
	Destructive bool
	// RepeatSafe destructive types are written to run again after their
	// Check said "not done": wipe-dir moves aside only an existing dir,
	// restore writes into a run-specific temp dir and renames it into place
	// last, member-add and member-remove read the member list first.
	// force-new-cluster is not: once its first actions ran, the member may
	// already be a one-member cluster whose Check still says "not done".
	RepeatSafe bool
	// CheckFirst types consult Check before the first attempt too (exec's
	// creates/unless mean "skip when this holds"). Other Checks only mean
	// something once the step has begun: a restore's data dir "holds a
	// member" before the old one is moved aside.
	CheckFirst bool
	New        func() Step
}

// Registry is the catalog, one line per type.
func Registry() map[string]*Type {
	return index(
		&Type{Name: "stop-service", Summary: "stop a systemd unit or park a static pod manifest", New: func() Step { return &StopService{} }},
		&Type{Name: "start-service", Summary: "start a systemd unit or put a static pod manifest back", New: func() Step { return &StartService{} }},
		&Type{Name: "wipe-dir", Summary: "move the data dir aside (or delete it, if the plan says so)", Destructive: true, RepeatSafe: true, New: func() Step { return &WipeDir{} }},
		&Type{Name: "chown", Summary: "give a directory tree to the etcd user", New: func() Step { return &Chown{} }},
		&Type{Name: "snapshot-save", Summary: "stream a snapshot from a member to the operator machine, with sha256", New: func() Step { return &SnapshotSave{} }},
		&Type{Name: "snapshot-copy", Summary: "upload a snapshot to hosts and check its sha256 on arrival", New: func() Step { return &SnapshotCopy{} }},
		&Type{Name: "snapshot-verify", Summary: "check a snapshot's sha256 trailer and etcdutl snapshot status on hosts", New: func() Step { return &SnapshotVerify{} }},
		&Type{Name: "restore", Summary: "restore a member's data dir from a snapshot with derived flags", Destructive: true, RepeatSafe: true, New: func() Step { return &Restore{} }},
		&Type{Name: "set-config", Summary: "write the member's derived etcd settings to its env file or manifest", New: func() Step { return &SetConfig{} }},
		&Type{Name: "member-add", Summary: "add the member on a host to the cluster (learner by default)", Destructive: true, RepeatSafe: true, New: func() Step { return &MemberAdd{} }},
		&Type{Name: "member-remove", Summary: "remove a member that is gone for good", Scope: Once, Destructive: true, RepeatSafe: true, New: func() Step { return &MemberRemove{} }},
		&Type{Name: "member-update", Summary: "set a member's peer URL to the one in cluster.members", New: func() Step { return &MemberUpdate{} }},
		&Type{Name: "member-promote", Summary: "promote a learner once it has caught up", New: func() Step { return &MemberPromote{} }},
		&Type{Name: "force-new-cluster", Summary: "make the one survivor a single-member cluster, fenced", Destructive: true, New: func() Step { return &ForceNewCluster{} }},
		&Type{Name: "wait-healthy", Summary: "wait until every member is healthy with one leader", Scope: Once, New: func() Step { return &WaitHealthy{} }},
		&Type{Name: "check-quorum", Summary: "record the pre-disaster revision; guard on quorum lost/present", Scope: Once,
			On:  "on: optionally names the members the plan counts on (they must answer with expect: present); quorum is always counted over every member",
			New: func() Step { return &CheckQuorum{} }},
		&Type{Name: "verify-data", Summary: "check revision and HashKV agree on every member", Scope: Once, New: func() Step { return &VerifyData{} }},
		&Type{Name: "approve", Summary: "stop until an operator approves", Scope: Once, New: func() Step { return &Approve{} }},
		&Type{Name: "exec", Summary: "escape hatch: a shell command with creates/unless", Destructive: true, CheckFirst: true, New: func() Step { return &Exec{} }},
	)
}

func index(types ...*Type) map[string]*Type {
	m := make(map[string]*Type, len(types))
	for _, t := range types {
		m[t.Name] = t
	}
	return m
}

// Names lists the registered type names, sorted.
func Names(reg map[string]*Type) []string {
	out := make([]string, 0, len(reg))
	for n := range reg {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
