package steps

import (
	"sort"
	"strings"
	"testing"
)

// What the engine learns of each catalog type through the optional
// interfaces: the resume table and the on: check depend on it, so a type
// that loses or gains a trait must show up here.
func TestCatalogTraits(t *testing.T) {
	with := func(f func(Step) bool) string {
		var names []string
		for name, typ := range Registry() {
			if f(typ.New()) {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		return strings.Join(names, " ")
	}
	cases := map[string]struct {
		got, want string
	}{
		"destructive types": {with(func(s Step) bool { _, ok := s.(Destructive); return ok }),
			"exec force-new-cluster member-add member-remove restore wipe-dir"},
		"destructive zero values": {with(func(s Step) bool { d, ok := s.(Destructive); return ok && d.DestroysData() }),
			"force-new-cluster member-add member-remove restore wipe-dir"},
		"repeat-safe zero values": {with(func(s Step) bool { r, ok := s.(RepeatSafe); return ok && r.SafeToRepeat() }),
			"cert-issue force-new-cluster member-add member-remove restore wipe-dir"},
		"check first": {with(func(s Step) bool { c, ok := s.(CheckFirst); return ok && c.CheckFirst() }),
			"exec snapshot-fetch"},
		"prepare phase": {with(func(s Step) bool { p, ok := s.(Prepares); return ok && p.PreparesRun() }),
			"snapshot-fetch"},
		"ask approval": {with(func(s Step) bool { a, ok := s.(AsksApproval); return ok && a.AsksApproval() }),
			"approve"},
		"need a member": {with(func(s Step) bool { m, ok := s.(NeedsMember); return ok && m.NeedsMember() }),
			"cert-issue force-new-cluster member-add member-promote member-update restore set-config snapshot-save"},
		"start on the plan's URLs": {with(func(s Step) bool { u, ok := s.(StartsOnPlanURLs); return ok && u.StartsOnPlanURLs() }),
			"cert-issue member-add member-update restore set-config"},
	}
	var readOnly []string
	for name, typ := range Registry() {
		if typ.ReadOnly {
			readOnly = append(readOnly, name)
		}
	}
	sort.Strings(readOnly)
	// A fleet run (apply with several inventories) runs only these.
	cases["read-only types"] = struct{ got, want string }{strings.Join(readOnly, " "),
		"approve check-quorum kube-verify-relist kube-wait-ready snapshot-fetch snapshot-save verify-data wait-healthy"}
	for name, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: %s, want %s", name, c.got, c.want)
		}
	}

	// The traits that depend on parameters.
	if e := (&Exec{Destructive: true}); !e.DestroysData() || e.HasCheck() || e.SafeToRepeat() {
		t.Errorf("exec destructive: without creates/unless it has no check and is not safe to repeat")
	}
	if e := (&Exec{Creates: "/x"}); !e.HasCheck() || !e.SafeToRepeat() {
		t.Errorf("exec with creates: has a check and is safe to repeat")
	}
	if (&StopService{}).SkipsUnreachable() || !(&StopService{Unreachable: "skip"}).SkipsUnreachable() {
		t.Errorf("stop-service skips an unreachable host only with unreachable: skip")
	}
}
