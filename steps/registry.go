package steps

import "sort"

// Type describes one step type of the catalog.
type Type struct {
	Name    string
	Summary string
	Scope   Scope
	// On documents what on: means for a type that runs once, when it is
	// more than selecting the members it looks at, or, for a per-host
	// type, what on: left out selects.
	On string
	// New returns the zero value of the type's parameters. What the engine
	// needs to know of a type beyond Scope it learns from the optional
	// interfaces that value implements (Checker, Destructive, ...).
	New func() Step
	// ReadOnly says that steps of the type change nothing on the hosts or
	// in the cluster: they read (the API, the hosts), wait, ask, or write
	// only on the operator machine or to the object store (a snapshot-save
	// and its retention). Only plans made of such steps may run on a fleet
	// of clusters at once (apply --inventory A --inventory B). A type that
	// leaves it false is treated as changing the cluster, exec included
	// (its command may do anything), and snapshot-verify (it runs etcdutl
	// on a file on the hosts, the preparation of a restore).
	ReadOnly bool
}

// Destructive reports whether steps of the type may change data or
// membership (for exec, whether one does depends on its destructive:).
func (t *Type) Destructive() bool {
	_, ok := t.New().(Destructive)
	return ok
}

// Registry is the catalog, one line per type.
func Registry() map[string]*Type {
	return index(
		&Type{Name: "stop-service", Summary: "stop a systemd unit or park a static pod manifest", New: func() Step { return &StopService{} }},
		&Type{Name: "start-service", Summary: "start a systemd unit or put a static pod manifest back", New: func() Step { return &StartService{} }},
		&Type{Name: "wipe-dir", Summary: "move the data dir aside (or delete it, if the plan says so)", New: func() Step { return &WipeDir{} }},
		&Type{Name: "chown", Summary: "give a directory tree to the etcd user", New: func() Step { return &Chown{} }},
		&Type{Name: "snapshot-save", ReadOnly: true, Summary: "stream a snapshot from a member to the operator machine, with sha256, or to the object store (to: s3://...) with retention", New: func() Step { return &SnapshotSave{} }},
		&Type{Name: "snapshot-fetch", ReadOnly: true, Summary: "before any host is touched: download a snapshot from the object store (one key, or the newest under a prefix with select: latest), verified against its sha256 metadata and trailer", Scope: Once,
			On: "runs on the operator machine, before every other step; on: is not used", New: func() Step { return &SnapshotFetch{} }},
		&Type{Name: "snapshot-copy", Summary: "upload a snapshot to hosts and check its sha256 on arrival", New: func() Step { return &SnapshotCopy{} }},
		&Type{Name: "snapshot-verify", Summary: "check a snapshot on hosts: its sha256 trailer (unless this run's snapshot-copy placed it and it is unchanged) and etcdutl snapshot status, whose revision and key count are recorded", New: func() Step { return &SnapshotVerify{} }},
		&Type{Name: "restore", Summary: "restore a member's data dir from a snapshot with derived flags", New: func() Step { return &Restore{} }},
		&Type{Name: "set-config", Summary: "write the member's derived etcd settings to its env file or manifest", New: func() Step { return &SetConfig{} }},
		&Type{Name: "member-add", Summary: "add the member on a host to the cluster (learner by default)", New: func() Step { return &MemberAdd{} }},
		&Type{Name: "member-remove", Summary: "remove a member that is gone for good", Scope: Once, New: func() Step { return &MemberRemove{} }},
		&Type{Name: "member-update", Summary: "set a member's peer URL to the one in cluster.members", New: func() Step { return &MemberUpdate{} }},
		&Type{Name: "member-promote", Summary: "promote a learner once it has caught up", New: func() Step { return &MemberPromote{} }},
		&Type{Name: "force-new-cluster", Summary: "make the one survivor a single-member cluster, fenced", New: func() Step { return &ForceNewCluster{} }},
		&Type{Name: "wait-healthy", ReadOnly: true, Summary: "wait until every member is healthy with one leader", Scope: Once, New: func() Step { return &WaitHealthy{} }},
		&Type{Name: "check-quorum", ReadOnly: true, Summary: "record the pre-disaster revision; guard on quorum lost/present", Scope: Once,
			On:  "on: optionally names the members the plan counts on (they must answer with expect: present); quorum is always counted over every member",
			New: func() Step { return &CheckQuorum{} }},
		&Type{Name: "verify-data", ReadOnly: true, Summary: "check revision and HashKV agree on every member", Scope: Once, New: func() Step { return &VerifyData{} }},
		&Type{Name: "approve", ReadOnly: true, Summary: "stop until an operator approves", Scope: Once, New: func() Step { return &Approve{} }},
		&Type{Name: "kube-stop-control-plane", Summary: "stop the Kubernetes control plane on the control-plane hosts (park the static pod manifests and wait until crictl shows no container, or systemctl stop)",
			On: "left out, the control-plane hosts (cluster.kubernetes.hosts)", New: func() Step { return &KubeStopControlPlane{} }},
		&Type{Name: "kube-start-control-plane", Summary: "start the Kubernetes control plane again, in reverse order (manifests back and wait for running containers, or systemctl start)",
			On: "left out, the control-plane hosts (cluster.kubernetes.hosts)", New: func() Step { return &KubeStartControlPlane{} }},
		&Type{Name: "kube-wait-ready", ReadOnly: true, Summary: "wait until every API server answers GET /readyz with 200", Scope: Once,
			On: "on: optionally narrows the control-plane hosts whose API servers are asked (default: cluster.kubernetes.hosts)", New: func() Step { return &KubeWaitReady{} }},
		&Type{Name: "kube-verify-relist", ReadOnly: true, Summary: "prove that clients must relist: a watch from the pre-restore revision is answered 410 Gone by every API server", Scope: Once,
			On: "on: optionally narrows the control-plane hosts whose API servers are asked (default: cluster.kubernetes.hosts)", New: func() Step { return &KubeVerifyRelist{} }},
		&Type{Name: "cert-issue", Summary: "issue new member certificates for the plan's URLs from your CA; old files kept aside", New: func() Step { return &CertIssue{} }},
		&Type{Name: "exec", Summary: "escape hatch: a shell command with creates/unless", New: func() Step { return &Exec{} }},
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
