package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine"
)

// The last line of a failed run's error output names the step, the host
// and the cause, below the detail and the hints.
func TestFailedRunLastLineNamesStepHostCause(t *testing.T) {
	err := &engine.RunError{RunID: "R1", Failed: []*engine.StepError{{
		Step: "promote-etcd4", Host: "h4", ExitCode: -1,
		Err: errors.New("etcd on h4 cannot run: the unit exits and is restarted again and again (auto-restart, 3 restarts so far), last exit status 203 (status=203/EXEC)\n  log: Failed at step EXEC"),
	}}}
	var stderr bytes.Buffer
	if code := report(err, &stderr); code != exitFailed {
		t.Errorf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	last := lines[len(lines)-1]
	want := `etcd-rescue: failed: step "promote-etcd4" on h4: etcd on h4 cannot run: the unit exits and is restarted again and again (auto-restart, 3 restarts so far), last exit status 203 (status=203/EXEC)`
	if last != want {
		t.Errorf("last line\n %q\nwant\n %q\nall:\n%s", last, want, stderr.String())
	}
	if !strings.Contains(stderr.String(), "hint: fix the cause, then continue") {
		t.Errorf("hint lost:\n%s", stderr.String())
	}
}
