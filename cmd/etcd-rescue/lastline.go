package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/engine"
)

// lastLines are printed after the hints of a failed run: one line per
// failed step-host naming the step, the host and the cause, so that the
// last line of the output says what went wrong and where, however long the
// detail above it.
func lastLines(err error) []string {
	var re *engine.RunError
	if !errors.As(err, &re) {
		return nil
	}
	var out []string
	for _, f := range re.Failed {
		where := fmt.Sprintf("step %q", f.Step)
		if f.Host != "" {
			where += " on " + f.Host
		}
		cause := "failed"
		if f.Err != nil {
			first, _, _ := strings.Cut(strings.TrimSpace(f.Err.Error()), "\n")
			cause = first
		}
		out = append(out, fmt.Sprintf("etcd-rescue: failed: %s: %s", where, cause))
	}
	return out
}
