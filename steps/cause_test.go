package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

func TestIsStall(t *testing.T) {
	for err, want := range map[error]bool{
		nil:                      false,
		context.DeadlineExceeded: true,
		fmt.Errorf("promote e4: gave up: %w", context.DeadlineExceeded):     true,
		errors.New("rpc error: code = Unavailable desc = connection error"): true,
		errors.New("etcdserver: request timed out"):                         true,
		&ServiceError{Host: "h4", Unit: "etcd", State: "failed"}:            false,
		&Refusal{Reason: "context deadline exceeded"}:                       false,
		&CauseError{Cause: "x", Err: context.DeadlineExceeded}:              false,
		errors.New("member e4 not found"):                                   false,
	} {
		if got := IsStall(err); got != want {
			t.Errorf("IsStall(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestDescribeCause(t *testing.T) {
	healthy := Answer{URL: "u", State: AnswerHealthy}
	down := Answer{URL: "http://10.0.0.3:2379", State: LiveDown, Err: errors.New("connection refused")}
	notAsked := Answer{URL: "http://10.0.0.2:2379", State: LiveCouldNotAsk, Err: errors.New("ssh tunnel: no route to host")}
	for name, tc := range map[string]struct {
		voters []MemberSeen
		hosts  []HostReach
		want   []string
	}{
		"one host unreachable, one etcd down: out of reach, not lost": {
			voters: []MemberSeen{{Name: "etcd1", Host: "h1", Answer: healthy}, {Name: "etcd2", Host: "h2", Answer: notAsked, Reach: &HostReach{Host: "h2", Why: "dial tcp 10.0.0.2:22: connect: no route to host"}}, {Name: "etcd3", Host: "h3", Answer: down, Reach: &HostReach{Host: "h3", OK: true}}},
			hosts:  []HostReach{{Host: "h1", OK: true}, {Host: "h2", Why: "dial tcp 10.0.0.2:22: connect: no route to host"}, {Host: "h3", OK: true}},
			want:   []string{"quorum is out of reach: 1 of 3 members answer, quorum is 2", "etcd2 on h2: host unreachable: dial tcp 10.0.0.2:22: connect: no route to host", "etcd3 on h3: etcd does not run (nothing listens at http://10.0.0.3:2379)"}},
		"quorum lost: two etcds down": {
			voters: []MemberSeen{{Name: "etcd1", Host: "h1", Answer: healthy}, {Name: "etcd2", Host: "h2", Answer: down, Reach: &HostReach{Host: "h2", OK: true}}, {Name: "etcd3", Host: "h3", Answer: down}},
			hosts:  []HostReach{{Host: "h1", OK: true}, {Host: "h2", OK: true}, {Host: "h4", Why: "no route to host"}},
			want:   []string{"the cluster lost quorum: 1 of 3 members answer, quorum is 2 (etcd2 on h2: etcd does not run", "; host h4 became unreachable: no route to host"}},
		"a new host unreachable, quorum holds": {
			voters: []MemberSeen{{Name: "etcd1", Answer: healthy}, {Name: "etcd2", Answer: healthy}},
			hosts:  []HostReach{{Host: "h4", Why: "i/o timeout"}},
			want:   []string{"host h4 became unreachable: i/o timeout", "(2 of 2 members answer, quorum 2 holds)"}},
		"host key, never quorum": {
			voters: []MemberSeen{{Name: "etcd1", Host: "h1", Answer: healthy}, {Name: "etcd2", Host: "h2", Answer: healthy}, {Name: "etcd3", Host: "h3", Answer: healthy}},
			hosts:  []HostReach{{Host: "h1", Why: "host key verification failed for h1: HOST KEY CHANGED"}},
			want:   []string{"host h1: its SSH host key is refused: host key verification failed"}},
		"host keys refused on two of three, tunnelled: not lost, out of reach": {
			voters: []MemberSeen{{Name: "etcd1", Host: "h1", Answer: healthy}, {Name: "etcd2", Host: "h2", Answer: notAsked, Reach: &HostReach{Host: "h2", Why: "host key verification failed for h2: unknown host"}}, {Name: "etcd3", Host: "h3", Answer: notAsked, Reach: &HostReach{Host: "h3", Why: "host key verification failed for h3: unknown host"}}},
			hosts:  []HostReach{{Host: "h1", OK: true}, {Host: "h2", Why: "host key verification failed for h2: unknown host"}, {Host: "h3", Why: "host key verification failed for h3: unknown host"}},
			want:   []string{"host h2: its SSH host key is refused", "host h3: its SSH host key is refused", "quorum is out of reach: 1 of 3 members answer, quorum is 2 (etcd2 on h2: host key refused"}},
		"everything answers": {
			voters: []MemberSeen{{Name: "etcd1", Answer: healthy}},
			hosts:  []HostReach{{Host: "h1", OK: true}},
			want:   nil},
	} {
		got := DescribeCause(tc.voters, tc.hosts)
		if tc.want == nil && got != "" {
			t.Errorf("%s: %q, want none", name, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", name, got, w)
			}
		}
		if strings.Contains(name, "host key") && strings.Contains(got, "lost") {
			t.Errorf("%s: a host-key failure talks of quorum: %q", name, got)
		}
	}
}

// causeWorld: h2's link is down; etcd3's etcd stopped.
type causeWorld struct {
	unreachable map[string]bool
}

func (w *causeWorld) Shell(host string) (Runner, error) {
	if w.unreachable[host] {
		return nil, fmt.Errorf("host unreachable: dial tcp: connect: no route to host")
	}
	return w, nil
}
func (w *causeWorld) Run(ctx context.Context, cmd string, _ io.Reader) ([]byte, error) {
	return nil, nil
}
func (w *causeWorld) Upload(context.Context, string, string, os.FileMode) (string, error) {
	return "", nil
}
func (w *causeWorld) Etcd(context.Context) (Etcd, error) { return &causeEtcd{w: w}, nil }
func (w *causeWorld) Fact(string) (string, bool)         { return "", false }
func (w *causeWorld) SetFact(string, string) error       { return nil }
func (w *causeWorld) Logf(string, ...any)                {}

type causeEtcd struct {
	Etcd
	w *causeWorld
}

func (e *causeEtcd) MemberList(context.Context, bool) ([]Member, error) {
	return []Member{
		{ID: 1, Name: "e1", PeerURLs: []string{"http://10.9.0.1:2380"}, ClientURLs: []string{"http://10.9.0.1:2379"}},
		{ID: 2, Name: "e2", PeerURLs: []string{"http://10.9.0.2:2380"}, ClientURLs: []string{"http://10.9.0.2:2379"}},
		{ID: 3, Name: "e3", PeerURLs: []string{"http://10.9.0.3:2380"}, ClientURLs: []string{"http://10.9.0.3:2379"}},
		{ID: 4, PeerURLs: []string{"http://10.9.0.4:2380"}, IsLearner: true},
	}, nil
}
func (e *causeEtcd) Health(ctx context.Context, url string) error {
	switch url {
	case "http://10.9.0.2:2379":
		return fmt.Errorf("%s: %w: i/o timeout", url, ErrCouldNotAsk)
	case "http://10.9.0.3:2379":
		return fmt.Errorf("%s: %w", url, ErrNotListening)
	}
	return errors.New("etcdserver: no leader")
}
func (e *causeEtcd) Status(ctx context.Context, url string) (EndpointStatus, error) {
	if url == "http://10.9.0.2:2379" {
		return EndpointStatus{}, fmt.Errorf("%w: i/o timeout", ErrCouldNotAsk)
	}
	return EndpointStatus{MemberID: 1, Revision: 10}, nil
}

func TestFindCauseOfALinkDroppedDuringMemberAdd(t *testing.T) {
	c, _ := testCtx(t, t.TempDir(), "systemd")
	w := &causeWorld{unreachable: map[string]bool{"h2": true}}
	orig := fmt.Errorf("member add e4: %w", context.DeadlineExceeded)
	err := FindCause(context.Background(), c, w, orig)
	var ce *CauseError
	if !errors.As(err, &ce) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"quorum is out of reach: 1 of 3 members answer", "e2 on h2: host unreachable: dial tcp: connect: no route to host", "e3 on h3: etcd does not run", "the step's error: member add e4: context deadline exceeded"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	// Not a stall: left alone, nothing asked.
	other := errors.New("no member named e9 in the cluster")
	if got := FindCause(context.Background(), c, w, other); got != other {
		t.Errorf("changed %v into %v", other, got)
	}
}
