package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
)

// The first interrupt during the confirmation question stops before a run
// exists: exit 130.
func TestInterruptDuringConfirm(t *testing.T) {
	h := newHarness(t, "", `
  - {id: a, type: run, on: h1, with: {cmd: a}}
`)
	stop := make(chan struct{})
	o := h.opts()
	o.Stop = stop
	o.Confirm = func(ctx context.Context, st *runstate.State) (bool, error) {
		close(stop)
		<-ctx.Done()
		return false, ctx.Err()
	}
	_, err := h.apply(o)
	if re := runErrOf(t, err); !re.Interrupted || !strings.Contains(err.Error(), "before the run started") {
		t.Errorf("want interrupted: %+v: %v", re, err)
	}
	if runs, _ := (&runstate.Store{Dir: h.stateDir}).Runs(); len(runs) != 0 || len(h.w.commands()) != 0 {
		t.Errorf("runs %v, commands %v", runs, h.w.commands())
	}
}
