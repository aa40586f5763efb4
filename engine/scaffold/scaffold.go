// Package scaffold writes a recovery plan for one scenario (ip-change,
// lost-host, quorum-loss, restore-all-from-snapshot, single-node-restore,
// backup) from an inventory and the choices a person or a diagnosis made:
// the member that moved or was lost, the survivor, the snapshot. It owns
// the recovery logic of `etcd-rescue new`, generalised from examples/ to
// any number of members, any member names and either layout.
//
// Generate is pure: it reads nothing and asks nothing. Every plan it
// returns has passed the same checks as `etcd-rescue validate` (errors
// there are a bug of this package, reported as *BugError); every choice is
// a comment in the file, at the top and where it is used.
package scaffold

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/diagnose"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// Scenarios are the scenarios Generate knows, in the order help lists them.
var Scenarios = []string{"ip-change", "lost-host", "quorum-loss", "restore-all-from-snapshot", "single-node-restore", "backup"}

// Routes of quorum-loss; the first is the default.
var Routes = []string{"force-new-cluster", "snapshot"}

// Options are the scenario and every choice in it.
type Options struct {
	Scenario string
	// Route, for quorum-loss: force-new-cluster (default) or snapshot.
	Route string
	// Inventory is the path written as the plan's inventory: key, already
	// relative to the plan's directory.
	Inventory string
	// Output is the plan's file name, for messages and the header ("" for
	// stdout).
	Output string
	// Command is the command line that made the plan, for the header.
	Command string

	// Recommend, when set, is where the choices come from (--from-facts,
	// --facts); explicit choices below override it.
	Recommend *diagnose.Recommendation
	// FactsAt and FactsFile say which facts the recommendation rests on.
	FactsAt   time.Time
	FactsFile string

	// Explicit choices (flags).
	Member     string // ip-change, lost-host: the member; backup: the member to save from
	OldPeerURL string // lost-host: the lost member's peer URL in the cluster now
	Survivor   string // quorum-loss
	Snapshot   string // restores: snapshot file on the operator machine
	To         string // backup, quorum-loss snapshot route: where snapshot-save writes

	// ip-change, lost-host on TLS: the CA that issues the member's new
	// certificate (cert-issue). CACert and CAKey come together; they are
	// written into the plan's vars as given, like Snapshot (relative paths
	// are relative to the plan), or are paths on CAHost (a key of hosts:).
	CACert, CAKey, CAHost string
}

// ChoiceError is a choice Generate cannot make or a scenario the inventory
// does not allow: the user's to fix (exit 2), with hints.
type ChoiceError struct {
	Msg   string
	Hints []string
}

func (e *ChoiceError) Error() string { return e.Msg }

func choiceErr(hints []string, format string, args ...any) *ChoiceError {
	return &ChoiceError{Msg: fmt.Sprintf(format, args...), Hints: hints}
}

// BugError is a generated plan that does not validate: a bug here, never
// the user's input.
type BugError struct {
	Findings plans.Findings
	Plan     []byte
}

func (e *BugError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scaffold: the generated plan does not validate (%d error(s)); this is a bug in etcd-rescue new", e.Findings.Errors())
	for _, f := range e.Findings {
		if f.Severity != plans.Warning {
			b.WriteString("\n" + f.Error())
		}
	}
	return b.String()
}

// Generate writes the plan for o.Scenario over inv (from
// plans.LoadInventory). It returns a *ChoiceError for a missing or wrong
// choice, a *BugError if the result does not validate.
func Generate(inv *plans.Plan, o Options) ([]byte, error) {
	if inv == nil || inv.Cluster == nil || len(inv.Cluster.Members) == 0 {
		return nil, choiceErr([]string{"an inventory needs cluster: with members: and hosts: (see docs/plan-format.md)"}, "the inventory has no cluster members")
	}
	if !contains(Scenarios, o.Scenario) {
		return nil, choiceErr([]string{"scenarios: " + strings.Join(Scenarios, ", ")}, "unknown scenario %q%s", o.Scenario, plans.Suggest(o.Scenario, Scenarios))
	}
	if o.Route != "" && o.Scenario != "quorum-loss" {
		return nil, choiceErr([]string{"--route is for quorum-loss: " + strings.Join(Routes, " or ")}, "%s has no routes", o.Scenario)
	}
	if err := unusedChoices(o); err != nil {
		return nil, err
	}
	if err := caChoices(inv, o); err != nil {
		return nil, err
	}
	if r := o.Recommend; r != nil && r.Scenario != o.Scenario && o.Scenario != "backup" {
		return nil, choiceErr([]string{"etcd-rescue new " + r.Scenario + " --from-facts"}, "the facts recommend %s, not %s", r.Scenario, o.Scenario)
	}
	g := &gen{inv: inv, c: inv.Cluster, o: o}
	for _, m := range inv.Cluster.Members {
		g.names = append(g.names, m.Name)
	}
	var err error
	switch o.Scenario {
	case "ip-change":
		err = g.ipChange()
	case "lost-host":
		err = g.lostHost()
	case "quorum-loss":
		err = g.quorumLoss()
	case "restore-all-from-snapshot":
		err = g.restoreAll()
	case "single-node-restore":
		err = g.singleNode()
	case "backup":
		err = g.backup()
	}
	if err != nil {
		return nil, err
	}
	out := g.doc().bytes()
	if fs := Validate(inv, o.Output, out); fs.Errors() > 0 {
		return nil, &BugError{Findings: fs, Plan: out}
	}
	return out, nil
}

// unusedChoices refuses a choice flag the scenario does not use: it was
// meant for another scenario, and silently ignoring it would hide that.
func unusedChoices(o Options) error {
	uses := map[string][]string{
		"--member":       {"ip-change", "lost-host", "backup"},
		"--old-peer-url": {"lost-host"},
		"--survivor":     {"quorum-loss"},
		"--snapshot":     {"restore-all-from-snapshot", "single-node-restore"},
		"--to":           {"backup", "quorum-loss"},
		"--ca-cert":      {"ip-change", "lost-host"},
		"--ca-key":       {"ip-change", "lost-host"},
		"--ca-host":      {"ip-change", "lost-host"},
	}
	given := map[string]string{"--member": o.Member, "--old-peer-url": o.OldPeerURL, "--survivor": o.Survivor, "--snapshot": o.Snapshot, "--to": o.To,
		"--ca-cert": o.CACert, "--ca-key": o.CAKey, "--ca-host": o.CAHost}
	for _, f := range []string{"--member", "--old-peer-url", "--survivor", "--snapshot", "--to", "--ca-cert", "--ca-key", "--ca-host"} {
		if given[f] != "" && !contains(uses[f], o.Scenario) {
			return choiceErr([]string{f + " is for " + strings.Join(uses[f], ", ")}, "%s does not use %s", o.Scenario, f)
		}
	}
	if o.To != "" && o.Scenario == "quorum-loss" && o.Route != "snapshot" && (o.Recommend == nil || o.Recommend.Route != "snapshot") {
		return choiceErr([]string{"--to is where --route snapshot saves the survivor's snapshot"}, "quorum-loss --route force-new-cluster does not use --to")
	}
	return nil
}

// caChoices checks --ca-cert, --ca-key and --ca-host among themselves and
// against the inventory; the member's URLs are checked once it is known
// (certStep).
func caChoices(inv *plans.Plan, o Options) error {
	both := "cert-issue signs with the CA's certificate and its key: give --ca-cert PATH and --ca-key PATH together (or neither)"
	switch {
	case o.CACert == "" && o.CAKey == "" && o.CAHost != "":
		return choiceErr([]string{"--ca-host names the host that holds the CA of --ca-cert PATH --ca-key PATH; " + both},
			"--ca-host needs --ca-cert and --ca-key")
	case o.CACert != "" && o.CAKey == "":
		return choiceErr([]string{both}, "--ca-cert needs --ca-key")
	case o.CACert == "" && o.CAKey != "":
		return choiceErr([]string{both}, "--ca-key needs --ca-cert")
	}
	if o.CAHost != "" && inv.Hosts[o.CAHost] == nil {
		names := make([]string, 0, len(inv.Hosts))
		for n := range inv.Hosts {
			names = append(names, n)
		}
		sort.Strings(names)
		return choiceErr([]string{"the inventory's hosts: " + strings.Join(names, ", "),
			"leave out --ca-host when the CA's files are on this machine"},
			"--ca-host %q is not a host of the inventory%s", o.CAHost, plans.Suggest(o.CAHost, names))
	}
	return nil
}

// Validate checks plan bytes against inv as `etcd-rescue validate` checks
// a plan file with its inventory: decode, merge the inventory's sections,
// structural checks, step parameters, DAG and cross-step rules.
func Validate(inv *plans.Plan, file string, raw []byte) plans.Findings {
	if file == "" {
		file = "scaffold.yaml"
	}
	_, fs := engine.LoadBytes(file, raw, inv.File)
	return fs
}

// gen holds one generation.
type gen struct {
	inv   *plans.Plan
	c     *plans.Cluster
	o     Options
	names []string // members in inventory order

	name, description string
	story             []string // what happened and what the plan does
	choices           []string // one line per choice, for the header
	vars              []kv     // the plan's own vars: (defaults the inventory's override)
	varsC             []string // comment above vars:
	steps             []*step
	tail              []string // comment lines after the last step
}

func (g *gen) add(s *step) *step { g.steps = append(g.steps, s); return s }

func (g *gen) choose(format string, args ...any) {
	g.choices = append(g.choices, fmt.Sprintf(format, args...))
}

func (g *gen) staticPod() bool { return g.c.Layout.Service == "static-pod" }

// others are the members but the named ones, in inventory order.
func (g *gen) others(but ...string) []string {
	var out []string
	for _, n := range g.names {
		if !contains(but, n) {
			out = append(out, n)
		}
	}
	return out
}

// member finds an inventory member named by a flag or the facts.
func (g *gen) member(name, what string) (*plans.Member, error) {
	if m := g.c.MemberByName(name); m != nil {
		return m, nil
	}
	return nil, choiceErr([]string{"the inventory's members: " + strings.Join(g.names, ", ")},
		"%s %q is not a member of the inventory%s", what, name, plans.Suggest(name, g.names))
}

// needQuorumWithout refuses a scenario that stops one member and needs the
// others to keep quorum.
func (g *gen) needQuorumWithout(m string) error {
	n := len(g.names)
	if n-1 >= n/2+1 {
		return nil
	}
	if n == 1 {
		return choiceErr([]string{"with one member there is no quorum to change its membership; restore it: etcd-rescue new single-node-restore"},
			"%s needs a cluster of at least 3 members; the inventory has one", g.o.Scenario)
	}
	return choiceErr([]string{fmt.Sprintf("without %s, %d of %d members cannot keep quorum: etcd-rescue new quorum-loss --survivor NAME", m, n-1, n)},
		"%s needs a cluster of at least 3 members; the inventory has %d", g.o.Scenario, n)
}

func (g *gen) needToken() error {
	if g.c.Token != "" {
		return nil
	}
	return choiceErr([]string{"add token: " + g.c.Name + "-" + "YYYY-MM-DD under cluster: in the inventory (one --initial-cluster-token for every restored member)"},
		"%s restores every member from a snapshot and needs cluster.token in the inventory", g.o.Scenario)
}

// snapshot is the snapshot to restore: --snapshot, else ${vars.snapshot}.
func (g *gen) snapshot() (string, string, error) {
	if g.o.Snapshot != "" {
		return g.o.Snapshot, fmt.Sprintf("snapshot %s (--snapshot)", g.o.Snapshot), nil
	}
	if v, ok := g.inv.Vars["snapshot"]; ok && v != "" {
		return "${vars.snapshot}", fmt.Sprintf("snapshot ${vars.snapshot} = %s (the inventory's vars.snapshot)", v), nil
	}
	return "", "", choiceErr([]string{"--snapshot FILE names the snapshot on this machine (relative to the plan), or set vars.snapshot in the inventory"},
		"%s needs the snapshot to restore", g.o.Scenario)
}

// bump is restore's bumpRevision for the inventory's etcd version: auto,
// or none (with the reason) when the version has no --bump-revision.
func (g *gen) bump() (string, string) {
	v := g.inv.EtcdVersion()
	minPatch := map[int]int{4: 27, 5: 10}[v.Minor]
	if v.Major == 3 && v.Minor <= 5 && v.Patch >= 0 && v.Patch < minPatch {
		return "none", fmt.Sprintf("etcd %s has no --bump-revision (3.%d.%d+): the revision goes back; restart every Kubernetes client after the restore, or upgrade etcdutl and set bumpRevision: auto", v, v.Minor, minPatch)
	}
	return "auto", ""
}

// header is the comment block at the top.
func (g *gen) header() []string {
	h := wrap(strings.Join(g.story, " "), 76)
	h = append(h, "")
	if g.o.Command != "" {
		h = append(h, "Scaffolded by: "+g.o.Command)
	} else {
		h = append(h, "Scaffolded by etcd-rescue new "+g.o.Scenario)
	}
	h = append(h, fmt.Sprintf("For inventory %s: cluster %s, etcd %s, %s, members %s.",
		g.o.Inventory, g.c.Name, g.c.EtcdVersion, g.c.Layout.Service, strings.Join(g.names, ", ")))
	if g.o.Recommend != nil {
		src := "facts"
		if g.o.FactsFile != "" {
			src = "facts file " + g.o.FactsFile
		}
		if !g.o.FactsAt.IsZero() {
			src += " collected " + g.o.FactsAt.UTC().Format(time.RFC3339)
		}
		if len(g.o.Recommend.Notes) == 0 {
			h = append(h, "From "+src+".")
		} else {
			h = append(h, "From "+src+":")
		}
		for _, n := range g.o.Recommend.Notes {
			h = append(h, "  "+n)
		}
	}
	if len(g.choices) > 0 {
		h = append(h, "Choices (each is repeated where it is used):")
		for _, c := range g.choices {
			h = append(h, "  - "+c)
		}
	}
	file := g.o.Output
	if file == "" {
		file = "PLAN.yaml"
	}
	h = append(h, "", "Review: etcd-rescue plan "+file, "Run:    etcd-rescue apply "+file)
	return h
}

func (g *gen) doc() *doc {
	return &doc{
		header:      g.header(),
		name:        g.name,
		description: g.description,
		inventory:   g.o.Inventory,
		inventoryC:  "cluster:, hosts:, ssh: and vars: come from the inventory; --inventory FILE replaces it",
		vars:        g.vars,
		varsC:       g.varsC,
		steps:       g.steps,
		tail:        g.tail,
	}
}

// recMember is the recommendation's member choice, if any.
func (g *gen) recMember() *diagnose.MemberChoice {
	if g.o.Recommend == nil || len(g.o.Recommend.Members) == 0 {
		return nil
	}
	return &g.o.Recommend.Members[0]
}

// rankNote says how far each other ranked member is behind the survivor:
// by raft index when both answered, else by revision.
func rankNote(r *diagnose.Recommendation, survivor string) string {
	if r == nil || len(r.Ranking) == 0 {
		return ""
	}
	var self *diagnose.Rank
	for i := range r.Ranking {
		if r.Ranking[i].Name == survivor {
			self = &r.Ranking[i]
		}
	}
	if self == nil {
		return ""
	}
	out := "survivor " + survivor
	switch {
	case self.RaftIndex > 0:
		out += fmt.Sprintf(": raft index %d", self.RaftIndex)
	case self.Revision > 0:
		out += fmt.Sprintf(": revision %d (read from its data dir)", self.Revision)
	}
	for _, k := range r.Ranking {
		if k.Name == survivor {
			continue
		}
		var d int64
		unit := "entries"
		switch {
		case self.RaftIndex > 0 && k.RaftIndex > 0:
			d = int64(self.RaftIndex) - int64(k.RaftIndex)
		case self.Revision > 0 && k.Revision > 0:
			d, unit = self.Revision-k.Revision, "revisions"
		default:
			out += fmt.Sprintf(", %s not comparable (%s)", k.Name, k.Source)
			continue
		}
		if d >= 0 {
			out += fmt.Sprintf(", %s is %d %s behind", k.Name, d, unit)
		} else {
			out += fmt.Sprintf(", %s is %d %s AHEAD", k.Name, -d, unit)
		}
	}
	return out
}

// wrap breaks text into lines of at most width characters (longer words
// stay whole).
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// RelInventory is the inventory path to write in a plan saved as out: the
// inventory relative to out's directory when both resolve, else inv as
// given. out == "" (stdout) keeps inv.
func RelInventory(inv, out string) string {
	if out == "" {
		return inv
	}
	ai, err1 := filepath.Abs(inv)
	ao, err2 := filepath.Abs(filepath.Dir(out))
	if err1 != nil || err2 != nil {
		return inv
	}
	r, err := filepath.Rel(ao, ai)
	if err != nil {
		return ai
	}
	return filepath.ToSlash(r)
}
