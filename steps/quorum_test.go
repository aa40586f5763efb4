package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/etcd-rescue/etcd-rescue/plans"
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
		return EndpointStatus{}, fmt.Errorf("connection refused: %w", ErrNotListening)
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
		{"lost", []int{1, 2}, "", "1 of 3 members answer, 2 not serving, 0 could not be asked (quorum 2)"},
		{"lost", []int{2}, "2 of 3 members answer, so quorum is not lost", ""},
		{"present", nil, "", "3 of 3 members answer, 0 not serving, 0 could not be asked (quorum 2)"},
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

// classEtcd answers Status per URL with a fixed error (nil: answers).
type classEtcd struct {
	Etcd
	errs map[string]error
}

func (c *classEtcd) Status(_ context.Context, url string) (EndpointStatus, error) {
	if err := c.errs[url]; err != nil {
		return EndpointStatus{}, err
	}
	return EndpointStatus{Revision: 42}, nil
}

// "Could not ask" is never "down": check-quorum tells answered, not
// listening, unreachable host and could not ask apart, and a quorum loss
// must be proven.
func TestCheckQuorumCouldNotAskIsNotDown(t *testing.T) {
	notListening := fmt.Errorf("connecting to 10.9.0.2:2379: connection refused: %w", ErrNotListening)
	hostKey := fmt.Errorf("connecting to 10.9.0.1:2379: host key verification failed for h1: unknown host, not in known_hosts: %w", ErrCouldNotAsk)
	unreachable := fmt.Errorf("ssh h3: i/o timeout: %w", errors.Join(ErrHostUnreachable, ErrCouldNotAsk))
	other := errors.New("tls: bad certificate")
	for name, tc := range map[string]struct {
		expect  string
		errs    [3]error // e1, e2, e3
		fenced  bool
		wantErr string // "" = passes
		wantLog string
	}{
		"lost: two not listening":                   {expect: "lost", errs: [3]error{nil, notListening, notListening}, wantLog: "e2: asked, nothing listens"},
		"lost: host key + one answer is a quorum":   {expect: "lost", errs: [3]error{hostKey, nil, notListening}, wantErr: "quorum loss is not proven: 1 of 3 members answer and 1 could not be asked (e1 could not be asked: connecting to 10.9.0.1:2379: host key verification failed"},
		"lost: host key alone is no quorum":         {expect: "lost", errs: [3]error{hostKey, notListening, notListening}, wantLog: "e1 could not be asked (never counted as down)"},
		"lost: other error counts as could not ask": {expect: "lost", errs: [3]error{nil, other, notListening}, wantErr: "e2 could not be asked: tls: bad certificate"},
		"lost: unreachable, fenced":                 {expect: "lost", errs: [3]error{nil, notListening, unreachable}, fenced: true, wantLog: "counted as not serving, because force-new-cluster's fence"},
		"lost: unreachable, not fenced":             {expect: "lost", errs: [3]error{nil, notListening, unreachable}, wantErr: "e3 could not be asked: ssh h3: i/o timeout", wantLog: "counted as could not ask, because this plan has no force-new-cluster fence"},
		"lost: quorum answers":                      {expect: "lost", errs: [3]error{nil, nil, hostKey}, wantErr: "2 of 3 members answer, so quorum is not lost"},
		"present: could not ask is not 'lost'":      {expect: "present", errs: [3]error{nil, hostKey, unreachable}, wantErr: "only 1 of 3 members answer and 2 could not be asked"},
		"present: two down is lost":                 {expect: "present", errs: [3]error{nil, notListening, notListening}, wantErr: "quorum 2 is lost"},
		"any: never fails":                          {expect: "any", errs: [3]error{hostKey, unreachable, other}},
	} {
		t.Run(name, func(t *testing.T) {
			c, ts := testCtx(t, t.TempDir(), "systemd")
			if tc.fenced {
				c.Plan.Steps = []*plans.Step{{ID: "survivor", Type: "force-new-cluster"}}
			}
			e := &classEtcd{errs: map[string]error{}}
			for i := range ts {
				e.errs[ts[i].Member.ClientURL] = tc.errs[i]
			}
			env := &quorumEnv{api: e, facts: map[string]string{}}
			err := (&CheckQuorum{Expect: tc.expect}).Describe(c, Target{})[0].Run(context.Background(), env)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("want pass, got %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "quorum 2 is lost") && tc.expect == "lost" {
				t.Errorf("could-not-ask read as a loss: %v", err)
			}
			if logs := strings.Join(env.logs, "\n"); tc.wantLog != "" && !strings.Contains(logs, tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, logs)
			}
		})
	}
}

func TestPlanFences(t *testing.T) {
	allow := yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "allowMajorityAlive"}, {Kind: yaml.ScalarNode, Value: "true"}}}
	for name, tc := range map[string]struct {
		steps []*plans.Step
		want  bool
	}{
		"no force-new-cluster":     {steps: []*plans.Step{{Type: "stop-service"}}},
		"force-new-cluster":        {steps: []*plans.Step{{Type: "force-new-cluster"}}, want: true},
		"allowMajorityAlive: true": {steps: []*plans.Step{{Type: "force-new-cluster", With: allow}}},
	} {
		if got := PlanFences(&plans.Plan{Steps: tc.steps}); got != tc.want {
			t.Errorf("%s: PlanFences = %v, want %v", name, got, tc.want)
		}
	}
}

// healthEtcd answers Health and Status per URL with a fixed error (nil:
// healthy).
type healthEtcd struct{ classEtcd }

func (h *healthEtcd) Health(_ context.Context, url string) error { return h.errs[url] }

// Restore refuses when a member could not be asked because its host was
// not trusted (it may be running), and goes on when members are only not
// listening or unreachable.
func TestRestoreRefusesUntrustedHost(t *testing.T) {
	c, ts := testCtx(t, t.TempDir(), "systemd")
	notListening := fmt.Errorf("connection refused: %w", ErrNotListening)
	untrusted := fmt.Errorf("host h2: host key verification failed: %w", errors.Join(ErrNotTrusted, ErrCouldNotAsk))
	unreachable := fmt.Errorf("i/o timeout: %w", errors.Join(ErrHostUnreachable, ErrCouldNotAsk))
	for name, tc := range map[string]struct {
		e2      error
		wantErr string
	}{
		"untrusted: refused":     {e2: untrusted, wantErr: "e2 could not be asked: the SSH hop to its host was not trusted"},
		"unreachable: goes on":   {e2: unreachable},
		"not listening: goes on": {e2: notListening},
	} {
		t.Run(name, func(t *testing.T) {
			e := &healthEtcd{classEtcd{errs: map[string]error{ts[0].Member.ClientURL: notListening, ts[1].Member.ClientURL: tc.e2, ts[2].Member.ClientURL: notListening}}}
			env := &quorumEnv{api: e, facts: map[string]string{}}
			err := (&Restore{BumpRevision: "auto"}).nothingAnswers(context.Background(), c, env, ts[0])
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("want pass, got %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// A wait that meets a member behind an untrusted host stops at once
// (waiting will not change a host key; the member may be running); one
// that is only not listening is waited for until within: ends.
func TestWaitHealthyStopsOnUntrustedHost(t *testing.T) {
	c, ts := testCtx(t, t.TempDir(), "systemd")
	notListening := fmt.Errorf("connection refused: %w", ErrNotListening)
	untrusted := fmt.Errorf("host h2: host key verification failed: %w", errors.Join(ErrNotTrusted, ErrCouldNotAsk))
	for name, tc := range map[string]struct {
		e2      error
		wantErr string
		atLeast time.Duration
		atMost  time.Duration
	}{
		"untrusted: stops at once": {e2: untrusted, wantErr: "e2 could not be asked, and waiting will not change that", atMost: time.Second},
		"not listening: waits":     {e2: notListening, wantErr: "wait-healthy: gave up", atLeast: 1500 * time.Millisecond, atMost: 5 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			e := &ledEtcd{healthEtcd{classEtcd{errs: map[string]error{ts[1].Member.ClientURL: tc.e2}}}}
			env := &quorumEnv{api: e, facts: map[string]string{}}
			w := &WaitHealthy{Within: plans.Duration(2 * time.Second)}
			start := time.Now()
			err := w.Describe(c, Target{})[0].Run(context.Background(), env)
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if took < tc.atLeast || took > tc.atMost {
				t.Errorf("gave up after %s, want between %s and %s", took, tc.atLeast, tc.atMost)
			}
		})
	}
}

// ledEtcd is healthEtcd whose answering members see leader 1.
type ledEtcd struct{ healthEtcd }

func (l *ledEtcd) Status(ctx context.Context, url string) (EndpointStatus, error) {
	st, err := l.healthEtcd.Status(ctx, url)
	st.Leader = 1
	return st, err
}
