package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// barrierEtcd answers Status only once every member's probe is in flight at
// the same time; dead members then fail. A check-quorum that probed one
// member after the other would see every probe end at its timeout.
type barrierEtcd struct {
	Etcd // only Status is called
	n    int
	dead map[string]bool
	mu   sync.Mutex
	in   int
	all  chan struct{}
}

func (b *barrierEtcd) Status(ctx context.Context, url string) (EndpointStatus, error) {
	b.mu.Lock()
	b.in++
	if b.in == b.n {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
	case <-ctx.Done():
		return EndpointStatus{}, fmt.Errorf("probe of %s alone: %w", url, ctx.Err())
	}
	if b.dead[url] {
		return EndpointStatus{}, errors.New("connection refused")
	}
	return EndpointStatus{Revision: int64(100 + len(url))}, nil
}

type quorumEnv struct {
	api   Etcd
	mu    sync.Mutex
	facts map[string]string
	logs  []string
}

func (e *quorumEnv) Shell(string) (Runner, error)       { return nil, errors.New("no shell in this test") }
func (e *quorumEnv) Etcd(context.Context) (Etcd, error) { return e.api, nil }
func (e *quorumEnv) Fact(k string) (string, bool)       { v, ok := e.facts[k]; return v, ok }
func (e *quorumEnv) SetFact(k, v string) error          { e.facts[k] = v; return nil }
func (e *quorumEnv) Logf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs = append(e.logs, fmt.Sprintf(format, args...))
}

func TestCheckQuorumProbesMembersAtOnce(t *testing.T) {
	c, ts := testCtx(t, t.TempDir(), "systemd")
	cases := []struct {
		expect  string
		dead    []int
		wantErr string
		wantLog string
	}{
		{"lost", []int{1, 2}, "", "1 of 3 members answer (quorum 2)"},
		{"lost", []int{2}, "2 of 3 members answer, so quorum is not lost", ""},
		{"present", nil, "", "3 of 3 members answer (quorum 2)"},
		{"present", []int{0, 1}, "only 1 of 3 members answer", ""},
	}
	for _, tc := range cases {
		b := &barrierEtcd{n: 3, dead: map[string]bool{}, all: make(chan struct{})}
		for _, i := range tc.dead {
			b.dead[ts[i].Member.ClientURL] = true
		}
		env := &quorumEnv{api: b, facts: map[string]string{}}
		acts := (&CheckQuorum{Expect: tc.expect}).Describe(c, Target{})
		err := acts[0].Run(context.Background(), env)
		name := fmt.Sprintf("expect %s, dead %v", tc.expect, tc.dead)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want %q", name, err, tc.wantErr)
		}
		logs := strings.Join(env.logs, "\n")
		if tc.wantLog != "" && !strings.Contains(logs, tc.wantLog) {
			t.Errorf("%s: log lacks %q:\n%s", name, tc.wantLog, logs)
		}
		if strings.Contains(logs, "alone") {
			t.Errorf("%s: members were probed one at a time:\n%s", name, logs)
		}
		if got := env.facts[FactPreRevision]; len(tc.dead) < 3 && got != fmt.Sprint(100+len(ts[0].Member.ClientURL)) {
			t.Errorf("%s: recorded revision %q", name, got)
		}
	}
}

// A cancelled check-quorum must not read the failed probes as a quorum loss.
func TestCheckQuorumCancelledIsNotLost(t *testing.T) {
	c, _ := testCtx(t, t.TempDir(), "systemd")
	b := &barrierEtcd{n: 99, all: make(chan struct{})} // never all in flight
	env := &quorumEnv{api: b, facts: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := (&CheckQuorum{Expect: "lost"}).Describe(c, Target{})[0].Run(ctx, env)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// Quorum is counted over every member; on: names those that must answer.
// A lost-host plan's on: [etcd1, etcd3] works on 5 members as on 3.
func TestCheckQuorumCountsEveryMember(t *testing.T) {
	c, ts := testCtx(t, t.TempDir(), "systemd")
	c.Selected = []Target{ts[0], ts[2]} // on: [e1, e3]
	for _, tc := range []struct {
		dead    int
		wantErr string
	}{
		{1, ""}, // e2, the member being repaired, is down: 2 of 3 answer
		{2, "but e3, which this plan counts on (on:), does not answer"},
	} {
		b := &barrierEtcd{n: 3, dead: map[string]bool{ts[tc.dead].Member.ClientURL: true}, all: make(chan struct{})}
		env := &quorumEnv{api: b, facts: map[string]string{}}
		acts := (&CheckQuorum{Expect: "present"}).Describe(c, Target{})
		if !strings.Contains(acts[0].Cmd, "status of e1, e2, e3 at once") || !strings.Contains(acts[0].Cmd, "e1, e3 must answer") {
			t.Errorf("dry-run text: %s", acts[0].Cmd)
		}
		err := acts[0].Run(context.Background(), env)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("e%d dead: %v", tc.dead+1, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("e%d dead: error %v, want %q", tc.dead+1, err, tc.wantErr)
		}
	}
}
