package engine

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
)

// The two phases of an interrupt, with real signals to this process.
func TestInterruptsTwoPhases(t *testing.T) {
	var phases []int
	ctx, stop, release := Interrupts(context.Background(), func(p int) { phases = append(phases, p) })
	defer release()
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-stop
	if ctx.Err() != nil {
		t.Fatal("first interrupt cancelled the context")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	if len(phases) != 2 || phases[0] != 1 || phases[1] != 2 {
		t.Errorf("phases %v", phases)
	}
}

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
	if re := runErrOf(t, err); re.Code() != 130 || !strings.Contains(err.Error(), "before the run started") {
		t.Errorf("code %d: %v", re.Code(), err)
	}
	if runs, _ := (&runstate.Store{Dir: h.stateDir}).Runs(); len(runs) != 0 || len(h.w.commands()) != 0 {
		t.Errorf("runs %v, commands %v", runs, h.w.commands())
	}
}
