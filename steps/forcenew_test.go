package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// survivor simulates force-new-cluster's survivor: its env file is real
// (in a temp dir, edited by the step's own shell commands run with sh),
// its etcd is modelled: "old" (a member of the 3-member cluster, no
// quorum), "down", or "single" (a one-member cluster).
type survivor struct {
	t        *testing.T
	mu       sync.Mutex
	envFile  string
	etcd     string
	withFlag bool // the running process was started with the flag
	forced   bool // the data dir holds the one-member cluster
	fenceOK  bool
	revision int64
	ran      []string
	facts    map[string]string
	logs     []string
}

func (s *survivor) Shell(string) (Runner, error)       { return s, nil }
func (s *survivor) Etcd(context.Context) (Etcd, error) { return &survivorEtcd{s: s}, nil }
func (s *survivor) Fact(k string) (string, bool)       { v, ok := s.facts[k]; return v, ok }
func (s *survivor) SetFact(k, v string) error          { s.facts[k] = v; return nil }
func (s *survivor) Logf(format string, args ...any) {
	s.logs = append(s.logs, fmt.Sprintf(format, args...))
}
func (s *survivor) Upload(context.Context, string, string, os.FileMode) (string, error) {
	return "", errors.New("no upload")
}

func (s *survivor) flagInFile() bool {
	b, _ := os.ReadFile(s.envFile)
	return strings.Contains(string(b), "ETCD_FORCE_NEW_CLUSTER=true")
}

func (s *survivor) Run(ctx context.Context, cmd string, _ io.Reader) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case strings.Contains(cmd, "/dev/tcp/"):
		s.ran = append(s.ran, "fence")
		if !s.fenceOK {
			return nil, &ExitError{Host: "h1", Cmd: cmd, Code: 1}
		}
		return nil, nil
	case cmd == "systemctl restart etcd":
		s.ran = append(s.ran, "restart")
		s.withFlag = s.flagInFile()
		s.forced = s.forced || s.withFlag
		s.etcd = "old"
		if s.forced {
			s.etcd = "single"
		}
		return nil, nil
	}
	// The survivor's own commands run for real against the env file; the
	// process part of the observation is modelled.
	real, proc, _ := strings.Cut(cmd, "; pid=$(")
	switch {
	case strings.Contains(cmd, "ETCD_FORCE_NEW_CLUSTER=true") && strings.Contains(cmd, "mv "):
		s.ran = append(s.ran, "write flag")
	case strings.Contains(cmd, "mv ") && strings.Contains(cmd, "ETCD_FORCE_NEW_CLUSTER"):
		s.ran = append(s.ran, "remove flag")
	}
	out, err := exec.CommandContext(ctx, "sh", "-c", real).CombinedOutput()
	if err != nil {
		code := -1
		var xe *exec.ExitError
		if errors.As(err, &xe) {
			code = xe.ExitCode()
		}
		return out, &ExitError{Host: "h1", Cmd: cmd, Code: code, Stderr: string(out)}
	}
	if proc != "" && s.withFlag && s.etcd != "down" {
		out = append(out, "running-with-flag\n"...)
	}
	return out, nil
}

type survivorEtcd struct {
	Etcd
	s *survivor
}

func (e *survivorEtcd) Status(ctx context.Context, url string) (EndpointStatus, error) {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	if e.s.etcd == "down" {
		return EndpointStatus{}, fmt.Errorf("connecting to %s: connection refused: %w", url, ErrNotListening)
	}
	st := EndpointStatus{MemberID: 1, Revision: e.s.revision}
	if e.s.etcd == "single" {
		st.Leader = 1
	}
	return st, nil
}

func (e *survivorEtcd) Health(ctx context.Context, url string) error {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	if e.s.etcd != "single" {
		return errors.New("unhealthy")
	}
	return nil
}

func (e *survivorEtcd) MemberList(ctx context.Context, _ bool) ([]Member, error) {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	switch e.s.etcd {
	case "down":
		return nil, ErrNotListening
	case "single":
		return []Member{{ID: 1, Name: "e1"}}, nil
	}
	return []Member{{ID: 1, Name: "e1"}, {ID: 2, Name: "e2"}, {ID: 3, Name: "e3"}}, nil
}

// runAttempt runs the step's actions in order, as the engine does.
func runAttempt(ctx context.Context, c *Ctx, tg Target, s *ForceNewCluster, env Env) error {
	for _, a := range s.Describe(c, tg) {
		if a.Run == nil {
			return fmt.Errorf("action without Run: %s", a.Cmd)
		}
		if err := a.Run(ctx, env); err != nil {
			return err
		}
	}
	return nil
}

// A force-new-cluster killed at any point goes on from what it observes.
func TestForceNewClusterResumesFromEveryKillPoint(t *testing.T) {
	for name, tc := range map[string]struct {
		flag, withFlag, forced bool
		etcd                   string
		fenceOK                bool
		want                   []string // the commands the attempt runs
		wantLog                string
		wantErr                string
	}{
		"nothing written yet, etcd without quorum": {etcd: "old", fenceOK: true,
			want: []string{"fence", "write flag", "restart", "remove flag"}, wantLog: "flag not written, e1 answers as a member of a 3-member cluster → the whole step"},
		"nothing written yet, another member answers on its peer port": {etcd: "old", fenceOK: false,
			want: []string{"fence"}, wantErr: "exited with status 1"},
		"flag written, etcd not restarted yet": {flag: true, etcd: "old", fenceOK: true,
			want: []string{"fence", "write flag", "restart", "remove flag"}, wantLog: "flag written, e1 answers as a member of a 3-member cluster → checking the fence again"},
		"flag written, killed inside the restart (etcd down)": {flag: true, etcd: "down", fenceOK: true,
			want: []string{"fence", "write flag", "restart", "remove flag"}, wantLog: "flag written, e1 does not answer"},
		"flag written, the fence no longer holds": {flag: true, etcd: "old", fenceOK: false,
			want: []string{"fence"}, wantErr: "exited with status 1"},
		"flag written, etcd a one-member cluster": {flag: true, withFlag: true, forced: true, etcd: "single", fenceOK: false,
			want: []string{"remove flag"}, wantLog: "flag written, e1 answers as a one-member cluster at revision 500 → removing the flag"},
		// The step's own end state: no second restart.
		"flag removed, etcd still runs with it": {withFlag: true, forced: true, etcd: "single", fenceOK: false,
			want: nil, wantLog: "flag removed, e1 answers as a one-member cluster at revision 500; the etcd running was started with the flag, which etcd reads only at start: done"},
		// etcd crashed after the flag was removed and is not back: the
		// step forces again; nothing was added to the cluster yet (every
		// member-add needs this step done).
		"flag removed, etcd down": {forced: true, etcd: "down", fenceOK: true,
			want: []string{"fence", "write flag", "restart", "remove flag"}, wantLog: "flag not written, e1 does not answer"},
		"done": {forced: true, etcd: "single", fenceOK: false,
			want: nil, wantLog: "flag not written, e1 answers as a one-member cluster at revision 500: done"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			c, ts := testCtx(t, dir, "systemd")
			envFile := c.Cluster.Layout.EnvFile
			body := "ETCD_NAME=e1\n"
			if tc.flag {
				body += "ETCD_FORCE_NEW_CLUSTER=true\n"
			}
			if err := os.WriteFile(envFile, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			s := &survivor{t: t, envFile: envFile, etcd: tc.etcd, withFlag: tc.withFlag, forced: tc.forced, fenceOK: tc.fenceOK,
				revision: 500, facts: map[string]string{fncRevisionFact("e1"): "480"}}
			step := &ForceNewCluster{Within: 2e9}
			ctx := context.Background()
			err := runAttempt(ctx, c, ts[0], step, s)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("attempt: %v\nlogs: %v", err, s.logs)
			}
			if strings.Join(s.ran, ",") != strings.Join(tc.want, ",") {
				t.Errorf("ran %v, want %v", s.ran, tc.want)
			}
			if tc.wantLog != "" && !strings.Contains(strings.Join(s.logs, "\n"), tc.wantLog) {
				t.Errorf("logs lack %q:\n%s", tc.wantLog, strings.Join(s.logs, "\n"))
			}
			if tc.wantErr != "" {
				return
			}
			// Whatever the kill point, the step ends with the survivor a
			// one-member cluster and the flag gone from its config, and
			// the Check agrees.
			if s.flagInFile() || s.etcd != "single" {
				t.Errorf("ended with flag in file %v, etcd %s", s.flagInFile(), s.etcd)
			}
			if done, why, err := step.Check(ctx, c, s, ts[0]); !done || err != nil {
				t.Errorf("check after the attempt: done %v (%s), %v", done, why, err)
			}
			// Any later restart (a crash, a reboot) starts etcd without
			// the flag, still a one-member cluster, and the step stays
			// done: nothing is forced again once members are added.
			if _, err := s.Run(ctx, "systemctl restart etcd", nil); err != nil {
				t.Fatal(err)
			}
			if s.withFlag || s.etcd != "single" {
				t.Errorf("after a later restart: runs with the flag %v, etcd %s", s.withFlag, s.etcd)
			}
			if done, why, err := step.Check(ctx, c, s, ts[0]); !done || err != nil {
				t.Errorf("check after a later restart: done %v (%s), %v", done, why, err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "etcd.env")); !strings.Contains(string(b), "ETCD_NAME=e1") {
				t.Errorf("env file lost its other settings: %q", b)
			}
		})
	}
}

func TestDecideFNC(t *testing.T) {
	single := fncSeen{Answers: true, Members: 1, Self: true, Revision: 100}
	rec := []fncRecorded{{90, "recorded"}}
	for name, tc := range map[string]struct {
		seen        fncSeen
		recorded    []fncRecorded
		allowBehind bool
		want        fncPhase
		wantErr     string
	}{
		"fresh, not answering":            {seen: fncSeen{NoAnswer: "refused"}, want: fncFresh},
		"fresh, member of three":          {seen: fncSeen{Answers: true, Members: 3}, want: fncFresh},
		"fresh, list not answered":        {seen: fncSeen{Answers: true}, want: fncFresh},
		"flag, member of three":           {seen: fncSeen{FlagSet: true, Answers: true, Members: 3}, want: fncFlagWritten},
		"flag, not answering":             {seen: fncSeen{FlagSet: true}, want: fncFlagWritten},
		"flag, one-member":                {seen: fncSeen{FlagSet: true, Answers: true, Members: 1, Self: true, Revision: 100}, recorded: rec, want: fncForced},
		"no flag, one-member, runs with":  {seen: fncSeen{RunsWithFlag: true, Answers: true, Members: 1, Self: true, Revision: 100}, want: fncDone},
		"no flag, runs with, not single":  {seen: fncSeen{RunsWithFlag: true, NoAnswer: "refused"}, want: fncFresh},
		"pod: no flag, runs with, single": {seen: fncSeen{Pod: true, RunsWithFlag: true, Answers: true, Members: 1, Self: true, Revision: 100}, want: fncForced},
		"pod: no flag, replaced, single":  {seen: fncSeen{Pod: true, Answers: true, Members: 1, Self: true, Revision: 100}, want: fncDone},
		"done":                            {seen: single, recorded: rec, want: fncDone},
		"done at the recorded revision":   {seen: single, recorded: []fncRecorded{{100, "recorded"}}, want: fncDone},
		"one-member below the recorded":   {seen: single, recorded: []fncRecorded{{90, "a"}, {120, "pre-disaster"}}, wantErr: "below revision 120 (pre-disaster)"},
		"below the recorded, allowBehind": {seen: single, recorded: []fncRecorded{{120, "pre"}}, allowBehind: true, want: fncDone},
		"one-member of another member":    {seen: fncSeen{Answers: true, Members: 1, Other: "x9"}, wantErr: "whose member is x9, not e1"},
	} {
		t.Run(name, func(t *testing.T) {
			got, why, err := decideFNC("e1", tc.seen, tc.recorded, tc.allowBehind)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v (%s), %v; want error %q", got, why, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want || why == "" {
				t.Errorf("got %v (%q), %v; want %v", got, why, err, tc.want)
			}
		})
	}
}

// TestForceNewClusterRestartsOnce: with systemd the survivor is restarted
// once (with the flag), and the flag is then removed without a restart; a
// static pod's manifest edit restarts it, so there the step waits again,
// until the kubelet has replaced the container started with the flag.
func TestForceNewClusterRestartsOnce(t *testing.T) {
	for layout, want := range map[string][2]int{"systemd": {1, 1}, "static-pod": {1, 2}} {
		c, ts := testCtx(t, t.TempDir(), layout)
		restarts, waits := 0, 0
		for _, a := range (&ForceNewCluster{Within: 2e9}).Describe(c, ts[0]) {
			if a.Cmd == "systemctl restart etcd" || strings.HasPrefix(a.Cmd, "true # the kubelet restarts") {
				restarts++
			}
			if a.Kind == Wait {
				waits++
			}
		}
		if restarts != want[0] || waits != want[1] {
			t.Errorf("%s: %d restarts and %d waits, want %v", layout, restarts, waits, want)
		}
	}
}
