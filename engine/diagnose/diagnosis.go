// Package diagnose turns facts (engine/facts) into findings a person can
// act on, each with its evidence, and a recommendation: which scenario, with
// which choices (the member that moved or was lost, the survivor and how far
// behind each other member is, the members to fence). `new --from-facts`
// fills a plan from that recommendation, so the choices made are the same
// ones diagnose printed.
//
// Diagnose is pure: it reads a *facts.Facts and asks nothing.
package diagnose

// Kind and Version identify the JSON document.
const (
	Kind    = "etcd-rescue/diagnosis"
	Version = 1
)

// Situation is what is wrong, as one word.
type Situation string

const (
	Healthy    Situation = "healthy"
	IPChange   Situation = "ip-change"   // a member's host answers at another address than its peer URL says
	LostHost   Situation = "lost-host"   // a member's host is gone or blank while the member is still listed, quorum kept
	QuorumLoss Situation = "quorum-loss" // fewer than a majority of voting members answer; some still have data
	TotalLoss  Situation = "total-loss"  // no member has a data dir any more
	Degraded   Situation = "degraded"    // something is wrong (alarms, learners left, zombies) but no recovery scenario fits
	Unknown    Situation = "unknown"     // too much could not be asked to tell
)

// Severity of a finding.
type Severity string

const (
	Error   Severity = "error"   // the cluster is broken or a recovery is needed
	Warning Severity = "warning" // needs attention, not an outage by itself
	Info    Severity = "info"    // context for the reader
)

// Diagnosis is the result of Diagnose.
type Diagnosis struct {
	Kind      string          `json:"kind"`
	Version   int             `json:"version"`
	Situation Situation       `json:"situation"`
	Healthy   bool            `json:"healthy"`
	Summary   string          `json:"summary"` // one line
	Findings  []Finding       `json:"findings"`
	Recommend *Recommendation `json:"recommendation,omitempty"` // nil when healthy, degraded or unknown
	// Next is the `etcd-rescue new ...` command line to run ("" when none).
	Next string `json:"next,omitempty"`
}

// Finding is one thing diagnose concluded, with the facts it rests on.
type Finding struct {
	Code     string   `json:"code"` // stable: e.g. "quorum-lost", "member-moved", "host-unreachable"
	Severity Severity `json:"severity"`
	Summary  string   `json:"summary"`
	Evidence []string `json:"evidence"` // facts, one per line, e.g. "etcd2: raft index 10234 (status)"
	Members  []string `json:"members,omitempty"`
	Hosts    []string `json:"hosts,omitempty"`
	Hint     string   `json:"hint,omitempty"`
}

// Recommendation is the scenario to scaffold and every choice in it.
type Recommendation struct {
	// Scenario is a name `etcd-rescue new` knows: ip-change, lost-host,
	// quorum-loss, restore-all-from-snapshot, single-node-restore.
	Scenario string `json:"scenario"`
	// Route, for quorum-loss: force-new-cluster (keep the survivor's data
	// and re-add the others) or snapshot (save a snapshot from the
	// survivor, restore every member from it).
	Route string `json:"route,omitempty"`
	// Members are the members the recovery is about: the one that moved
	// (ip-change), was lost (lost-host), or lost its data (quorum-loss).
	Members []MemberChoice `json:"members,omitempty"`
	// Survivor, for quorum-loss: the most advanced member that still has
	// data; Ranking is every member with data, most advanced first.
	Survivor string `json:"survivor,omitempty"`
	Ranking  []Rank `json:"ranking,omitempty"`
	// Fence are the members to stop and disable before the survivor acts
	// (quorum-loss): every member but the survivor.
	Fence []string `json:"fence,omitempty"`
	// Notes say each choice and why, one line each; `new` writes them as
	// comments in the plan.
	Notes []string `json:"notes"`
}

// MemberChoice is one member the recovery acts on.
type MemberChoice struct {
	Name       string `json:"name"`
	ID         string `json:"id,omitempty"`         // hex member id in the cluster's list, if listed
	Host       string `json:"host"`                 // inventory host it runs on after recovery
	OldPeerURL string `json:"oldPeerURL,omitempty"` // peer URL in the cluster's member list now
	NewPeerURL string `json:"newPeerURL,omitempty"` // peer URL in the inventory
	Reason     string `json:"reason"`
}

// Rank is one member with data, for the survivor choice.
type Rank struct {
	Name      string `json:"name"`
	RaftIndex uint64 `json:"raftIndex,omitempty"` // from status; 0 if unknown
	Revision  int64  `json:"revision,omitempty"`  // from status or read offline from the data dir
	Source    string `json:"source"`              // "status" (answered) or "offline" (data dir, etcd not running)
	Behind    uint64 `json:"behind"`              // raft entries (or revisions, for offline) behind the survivor
	// BehindIn is the unit of Behind: "raft entries" when both raft
	// indexes are known, else "revisions"; "" for the survivor or when
	// nothing can be compared.
	BehindIn string `json:"behindIn,omitempty"`
}
