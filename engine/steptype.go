package engine

import (
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// What the engine needs to know of a step-host's type it asks its
// parameters, through the optional interfaces of package steps: the engine
// has no list of step types.

// destructive reports whether repeating the step-host blindly could lose data.
func destructive(t *Target) bool {
	d, ok := t.Params.(steps.Destructive)
	return ok && d.DestroysData()
}

// checker returns the step-host's Check, if it has a meaningful one.
func checker(t *Target) steps.Checker {
	ck, ok := t.Params.(steps.Checker)
	if !ok {
		return nil
	}
	if o, ok := t.Params.(steps.OptionalCheck); ok && !o.HasCheck() {
		return nil // its Check always says "not done"
	}
	return ck
}

// isRepeatSafe reports whether the step-host's actions may run again after
// its Check said "not done".
func isRepeatSafe(t *Target) bool {
	r, ok := t.Params.(steps.RepeatSafe)
	return ok && r.SafeToRepeat()
}

// checkFirst reports whether the step-host's Check is consulted before its
// first attempt.
func checkFirst(t *Target) bool {
	c, ok := t.Params.(steps.CheckFirst)
	return ok && c.CheckFirst() && checker(t) != nil
}

// skipsUnreachable reports whether the step-host is skipped, not failed,
// when its host cannot be reached.
func skipsUnreachable(t *Target) bool {
	s, ok := t.Params.(steps.SkipsUnreachable)
	return ok && s.SkipsUnreachable()
}

// asksApproval reports whether steps of type typ wait for the operator's
// approval (--approve answers them).
func asksApproval(typ *steps.Type) bool {
	a, ok := typ.New().(steps.AsksApproval)
	return ok && a.AsksApproval()
}

// needsMember reports whether steps of type typ act on the member of their
// host.
func needsMember(typ *steps.Type) bool {
	m, ok := typ.New().(steps.NeedsMember)
	return ok && m.NeedsMember()
}
