// Package testutil holds the test helpers that need no lab: deciding whether
// a test that needs real hosts runs, skips or fails; routing a lab's log into
// the test log; running a command on a host and polling for a condition. The
// e2e harness (tests/framework) builds on it, and package lab's own tests,
// which cannot import the harness (it imports package lab), use it directly.
package testutil

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// SafetyLimit bounds every wait of the lab-based tests so that a hang ends
// in a failure with the output so far; it is not a performance assertion.
const SafetyLimit = 15 * time.Minute

// Need decides whether a test that needs the lab runs: it skips in -short
// mode; when unavailable is not "" (why the lab cannot run here) it skips, or
// fails under CI=true, where a missing prerequisite is a failure, never a
// skip. what names the kind of test in the messages ("e2e", "lab test").
func Need(t testing.TB, what, unavailable string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("%s: needs the lab (root, network namespaces, real etcd); skipped in -short mode", what)
	}
	if unavailable == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s cannot run: %s (CI=true: a failure, not a skip)", what, unavailable)
	}
	t.Skipf("%s: %s; run as root on Linux: make test", what, unavailable)
}

// Log writes each line it is given to the test log, after Prefix.
type Log struct {
	T      testing.TB
	Prefix string
}

func (w Log) Write(p []byte) (int, error) {
	w.T.Helper()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.T.Log(w.Prefix + line)
	}
	return len(p), nil
}

// Runner runs a shell command on a named host (*lab.Lab does).
type Runner interface {
	Run(ctx context.Context, host, cmd string, stdin io.Reader) (string, error)
}

// HostRun runs cmd on host within two minutes and fails the test on error.
func HostRun(t testing.TB, r Runner, host, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := r.Run(ctx, host, cmd, nil)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", host, cmd, err, out)
	}
	return out
}

// Poll calls f every interval until it returns true; SafetyLimit ends a wait
// for something that never happens (no performance claim).
func Poll(t testing.TB, what string, interval time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(SafetyLimit)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: did not happen within the safety limit of %s", what, SafetyLimit)
		}
		time.Sleep(interval)
	}
}
