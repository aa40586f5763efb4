package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestScripts runs the txtar scripts of testdata/script against the real
// command line (the test binary runs as etcd-rescue, see TestMain): exit
// codes, usage errors, findings, -o json shapes, completion. They need no
// lab and no network. $EXAMPLES is the repository's examples directory.
func TestScripts(t *testing.T) {
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			e.Setenv("EXAMPLES", examples)
			e.Setenv("HOME", filepath.Join(e.WorkDir, "home"))
			e.Setenv("XDG_STATE_HOME", filepath.Join(e.WorkDir, "xdg-state"))
			e.Setenv("NO_COLOR", "1")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": cmdExits,
			"index": cmdIndex,
		},
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
	})
}

// cmdExits is "exits CODE COMMAND [ARGS...]": COMMAND runs like exec and
// must exit with CODE; stdout and stderr are then checked as after exec.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE COMMAND [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad code %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

// cmdIndex is "index RUN STATEDIR PLAN": it records the run in the run index
// as apply does, so that status, resume, unlock and completion find it from
// any directory. STATEDIR and PLAN are relative to $WORK. The line is the
// index's documented format (engine/runstate/index.go), written to the
// script's own $XDG_STATE_HOME: runstate.IndexFile reads this process's
// environment, not the script's.
func cmdIndex(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: index RUN STATEDIR PLAN")
	}
	path := filepath.Join(ts.Getenv("XDG_STATE_HOME"), "etcd-rescue", "runs")
	ts.Check(os.MkdirAll(filepath.Dir(path), 0o700))
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	ts.Check(err)
	_, err = fmt.Fprintf(f, "%s\t%s\t%s\n", args[0], ts.MkAbs(args[1]), ts.MkAbs(args[2]))
	ts.Check(err)
	ts.Check(f.Close())
}
