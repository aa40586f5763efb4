package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// A new step type is one file and one registry line. This file defines
// fence-member the way steps/ defines its types: parameters, Describe,
// Check, and the optional interfaces that tell the engine how to treat it.
// TestNewStepTypeNeedsNoEngineChange registers it with one line, then
// compiles, dry-runs, applies and resumes a plan that uses it.

// fenceMember writes a fence file naming the member of its host.
type fenceMember struct {
	Dir string `yaml:"dir" rescue:"required" doc:"directory of the fence file on the host"`
}

func (s *fenceMember) file(t steps.Target) string {
	return filepath.Join(s.Dir, "fence-"+t.Member.Name)
}

func (s *fenceMember) Describe(c *steps.Ctx, t steps.Target) []steps.Action {
	return []steps.Action{{Host: t.Name(), Kind: steps.Shell, Destructive: true,
		Cmd: "echo " + shellquote.Quote(c.RunID) + " > " + shellquote.Quote(s.file(t))}}
}

func (s *fenceMember) Check(ctx context.Context, c *steps.Ctx, env steps.Env, t steps.Target) (bool, string, error) {
	r, err := env.Shell(t.Name())
	if err != nil {
		return false, "", err
	}
	_, err = r.Run(ctx, "test -e "+shellquote.Quote(s.file(t)), nil)
	var ee *steps.ExitError
	switch {
	case err == nil:
		return true, s.file(t) + " exists", nil
	case errors.As(err, &ee):
		return false, "", nil
	}
	return false, "", err
}

func (*fenceMember) DestroysData() bool { return true }
func (*fenceMember) SafeToRepeat() bool { return true }
func (*fenceMember) NeedsMember() bool  { return true }

func TestNewStepTypeNeedsNoEngineChange(t *testing.T) {
	reg := steps.Registry()
	reg["fence-member"] = &steps.Type{Name: "fence-member", Summary: "write a fence file for the member", New: func() steps.Step { return &fenceMember{} }}

	// Compile: parameters are decoded and checked from the struct alone.
	dir := t.TempDir()
	bad := writePlan(t, dir, "", "  - {id: fence, type: fence-member, on: all, with: {dri: /run/fence}}\n")
	p, fs := plans.Load(bad, "")
	if fs.Errors() > 0 {
		t.Fatal(fs.Err())
	}
	if _, cfs := Compile(p, reg); !strings.Contains(cfs.Err().Error(), `unknown key "dri"`) || !strings.Contains(cfs.Err().Error(), "dir") {
		t.Errorf("compile of a misspelt parameter: %v", cfs.Err())
	}
	// NeedsMember: on: may not select a host without a member.
	memberless := filepath.Join(dir, "memberless.yaml")
	head := strings.Replace(planHead, "  h3: {address: 10.0.0.3}\n", "  h3: {address: 10.0.0.3}\n  h4: {address: 10.0.0.4}\n", 1)
	if err := os.WriteFile(memberless, []byte(head+"steps:\n  - {id: fence, type: fence-member, on: h4, with: {dir: /run/fence}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, fs = plans.Load(memberless, ""); fs.Errors() > 0 {
		t.Fatal(fs.Err())
	}
	if _, cfs := Compile(p, reg); !strings.Contains(cfs.Err().Error(), `fence-member on host "h4": no member of cluster.members runs there`) {
		t.Errorf("compile on a host without a member: %v", cfs.Err())
	}
	good := writePlan(t, dir, "", "  - {id: fence, type: fence-member, on: all, with: {dir: /run/fence}}\n")
	p, fs = plans.Load(good, "")
	c, cfs := Compile(p, reg)
	if c == nil || fs.Errors() > 0 {
		t.Fatalf("compile: %v %v", fs.Err(), cfs.Err())
	}

	// Dry-run: the text shows each host's exact command and the step as
	// destructive.
	var b strings.Builder
	if err := BuildDryRun(c).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1. fence (fence-member) on h1, h2, h3 [DESTRUCTIVE]",
		"! h2       ssh   echo '<run-id>' > /run/fence/fence-m2"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("dry-run lacks %q:\n%s", want, b.String())
		}
	}

	// Apply with the fake backend: h2 fails the first time.
	h := newHarness(t, "", "")
	h.plan = good
	failed := false
	h.w.handler = func(host, cmd string) (string, int, error) {
		switch {
		case host == "h2" && strings.HasPrefix(cmd, "echo") && !failed:
			failed = true
			return "", 1, nil
		case strings.HasPrefix(cmd, "test -e"):
			return "", 1, nil // not fenced yet
		}
		return "", 0, nil
	}
	o := h.opts()
	o.Registry = reg
	res, err := Apply(testCtx(t), c, o)
	if re := runErrOf(t, err); len(re.Failed) != 1 || re.Failed[0].Host != "h2" {
		t.Fatalf("apply: %v", err)
	}
	wantStatuses(t, res.State, map[string]string{"fence@h1": "done", "fence@h2": "failed", "fence@h3": "done"})
	if cmd := "echo " + res.RunID + " > /run/fence/fence-m1"; h.w.ran("h1", cmd) != 1 {
		t.Errorf("want %q once on h1 in %v", cmd, h.w.commands())
	}

	// Resume: the engine asks the type's Check before repeating the
	// destructive step, and repeats it because the type is safe to repeat.
	res, err = h.resume(res.RunID, o)
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, h.progress.String())
	}
	wantStatuses(t, res.State, map[string]string{"fence@h2": "done"})
	var h2 []string
	for _, c := range h.w.commands() {
		if strings.HasPrefix(c, "h2: ") {
			h2 = append(h2, strings.Fields(c)[1])
		}
	}
	if strings.Join(h2, ",") != "echo,test,echo" {
		t.Errorf("h2 ran %v, want echo, then the check, then echo again", h2)
	}
}
