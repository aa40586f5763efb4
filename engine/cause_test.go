package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/steps"
)

// A step that fails with nothing but a deadline gets its cause named: the
// engine asks the members and their hosts right then.
func TestStallNamesItsCause(t *testing.T) {
	h := newHarness(t, "", `
  - {id: add, type: once, with: {cmd: stall}}
`)
	h.w.etcd = newFakeEtcd().
		set("http://10.0.0.1:2379", "healthy", steps.EndpointStatus{MemberID: 1, Leader: 1}).
		set("http://10.0.0.2:2379", "unreachable", steps.EndpointStatus{})
	h.w.handler = func(host, cmd string) (string, int, error) {
		switch {
		case cmd == "stall":
			return "", -1, fmt.Errorf("member add m4: %w", context.DeadlineExceeded)
		case host == "h2" && cmd == "true":
			return "", -1, fmt.Errorf("%w: dial tcp 10.0.0.2:22: connect: no route to host", ErrUnreachable)
		}
		return "", 0, nil
	}
	_, err := h.apply(h.opts())
	re := runErrOf(t, err)
	if len(re.Failed) != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want add failed, the deadline kept: %v", err)
	}
	msg := re.Failed[0].Err.Error()
	for _, want := range []string{
		"quorum is out of reach: 1 of 3 members answer, quorum is 2",
		"m2 on h2: host unreachable: dial tcp 10.0.0.2:22: connect: no route to host",
		"m3 on h3: etcd does not run",
		"the step's error: member add m4: context deadline exceeded",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	// the failed command is the step's, not one of the probes' ("true")
	if cmd := re.Failed[0].Cmd; cmd != "stall" {
		t.Errorf("failed command %q, want stall", cmd)
	}
}
