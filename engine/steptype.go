package engine

import (
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// destructive reports whether repeating the step-host blindly could lose data.
func destructive(n *Node, t *Target) bool {
	if e, ok := t.Params.(*steps.Exec); ok {
		return e.Destructive
	}
	return n.Type.Destructive
}

// checker returns the step-host's Check, if it has a meaningful one.
func checker(t *Target) steps.Checker {
	if e, ok := t.Params.(*steps.Exec); ok && e.Creates == "" && e.Unless == "" {
		return nil // its Check always says "not done"
	}
	ck, _ := t.Params.(steps.Checker)
	return ck
}

func isRepeatSafe(n *Node, t *Target) bool {
	if _, ok := t.Params.(*steps.Exec); ok {
		return checker(t) != nil // creates/unless are its idempotency
	}
	return n.Type.RepeatSafe
}

// skipsUnreachable reports whether the step-host may be skipped when its
// host cannot be reached (stop-service unreachable: skip: a dead host
// cannot run the service).
func skipsUnreachable(t *Target) bool {
	s, ok := t.Params.(*steps.StopService)
	return ok && s.Unreachable == "skip"
}
