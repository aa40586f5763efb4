package steps

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

var errRefused = errors.New("etcdserver: unhealthy cluster")

// votersEtcd answers as the etcd client does, from voting members only: e2
// is a learner until promoted; the promote says "not in sync yet" notReady
// times. listErr, when set, is every member list's answer.
type votersEtcd struct {
	Etcd
	notReady int
	promoted bool
	member   bool // e2 is in the list at all
	listErr  error
	calls    []string
}

func (r *votersEtcd) IsRetryable(err error) bool { return errors.Is(err, errRefused) }

func (r *votersEtcd) MemberList(context.Context, bool) ([]Member, error) {
	r.calls = append(r.calls, "list")
	if r.listErr != nil {
		return nil, r.listErr
	}
	l := []Member{{ID: 1, Name: "e1", PeerURLs: []string{"http://10.9.0.1:2380"}}}
	if r.member {
		l = append(l, Member{ID: 2, Name: "e2", PeerURLs: []string{"http://10.9.0.2:2380"}, IsLearner: !r.promoted})
	}
	return l, nil
}

func (r *votersEtcd) MemberPromote(_ context.Context, id uint64) error {
	r.calls = append(r.calls, "promote")
	if r.notReady > 0 {
		r.notReady--
		return errors.New("etcdserver: can only promote a learner member which is in sync with leader")
	}
	r.promoted = true
	return nil
}

// TestPromotePollsOnlyWhileCatchingUp: the promote is sent at once, and
// polled only while the learner is not in sync.
func TestPromotePollsOnlyWhileCatchingUp(t *testing.T) {
	c, ts := testCtx(t, t.TempDir(), "systemd")
	for _, notReady := range []int{0, 1} {
		api := &votersEtcd{member: true, notReady: notReady}
		env := &quorumEnv{api: api, facts: map[string]string{}}
		acts := (&MemberPromote{Within: plans.Duration(20 * time.Second)}).Describe(c, ts[1])
		start := time.Now()
		if err := acts[0].Run(context.Background(), env); err != nil {
			t.Fatalf("promote: %v\ncalls %v\nlogs %v", err, api.calls, env.logs)
		}
		took := time.Since(start)
		if !api.promoted || len(api.calls) != 2+2*notReady {
			t.Fatalf("not ready %d times: promoted %v, calls %v", notReady, api.promoted, api.calls)
		}
		if notReady == 0 && took > 100*time.Millisecond {
			t.Errorf("a learner in sync was promoted after %s", took)
		}
	}
}

// TestPromoteCheckIsDecisive: voter: done; learner: not done; not a
// member, or no list: an error that names the member and the cause.
func TestPromoteCheckIsDecisive(t *testing.T) {
	c, ts := testCtx(t, t.TempDir(), "systemd")
	noVoter := errors.New("etcd member list via http://10.9.0.2:2379: no voting member among the endpoints")
	tests := map[string]struct {
		api      *votersEtcd
		done     bool
		why, err string
	}{
		"voter":      {&votersEtcd{member: true, promoted: true}, true, "e2 is a voting member", ""},
		"learner":    {&votersEtcd{member: true}, false, "e2 is still a learner: the promote runs", ""},
		"not member": {&votersEtcd{}, false, "", "e2 (peer URL http://10.9.0.2:2380) is not a member of the cluster: there is nothing to promote\nhint: add it first"},
		"no list":    {&votersEtcd{listErr: noVoter}, false, "", "could not tell whether e2 is a voting member: the voting members did not give the member list: " + noVoter.Error()},
	}
	for name, tc := range tests {
		env := &quorumEnv{api: tc.api, facts: map[string]string{}}
		done, why, err := (&MemberPromote{}).Check(context.Background(), c, env, ts[1])
		if done != tc.done || why != tc.why || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: done=%v why=%q err=%v; want done=%v why=%q err containing %q", name, done, why, err, tc.done, tc.why, tc.err)
		}
	}
}

// refusingEtcd refuses every member add transiently.
type refusingEtcd struct {
	Etcd
	lists, adds int
}

func (r *refusingEtcd) IsRetryable(err error) bool { return errors.Is(err, errRefused) }
func (r *refusingEtcd) MemberList(context.Context, bool) ([]Member, error) {
	r.lists++
	return []Member{{ID: 1, Name: "e1", PeerURLs: []string{"http://10.9.0.1:2380"}}}, nil
}
func (r *refusingEtcd) MemberAdd(context.Context, []string, bool) (Member, error) {
	r.adds++
	return Member{}, errRefused
}

// TestMemberAddGivesUp: a member add that etcd keeps refusing fails once the
// refusal window has passed, with the refusal, the attempts and a hint; the
// list is read once and the add alone is repeated.
func TestMemberAddGivesUp(t *testing.T) {
	f := useFakeClock(t)
	start := f.now
	c, ts := testCtx(t, t.TempDir(), "systemd")
	api := &refusingEtcd{}
	env := &quorumEnv{api: api, facts: map[string]string{}}
	acts := (&MemberAdd{}).Describe(c, ts[1])
	err := acts[0].Run(context.Background(), env)
	took := f.now.Sub(start)
	if err == nil || !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "still refused it after") || !strings.Contains(err.Error(), "hint:") {
		t.Fatalf("err %v, want the refusal with the attempts and a hint", err)
	}
	if took > refusalWindow || took < refusalWindow-slowPause {
		t.Errorf("gave up after %s, window %s", took, refusalWindow)
	}
	// Asked every 50 ms for 2 s, then every 100 ms; the same refusal is
	// logged once a second.
	if api.lists != 1 || api.adds != 1+40+180 || len(env.logs) != 20 {
		t.Errorf("%d lists, %d adds, %d logged retries", api.lists, api.adds, len(env.logs))
	}
}

var errReadTimeout = errors.New("etcdserver: request timed out")

// slowListEtcd times out its first member lists (a member cut off: the
// linearizable read cannot be confirmed), then answers; adds are accepted.
type slowListEtcd struct {
	refusingEtcd
	timeouts int
}

func (s *slowListEtcd) IsTransientRead(err error) bool { return errors.Is(err, errReadTimeout) }
func (s *slowListEtcd) MemberList(ctx context.Context, ser bool) ([]Member, error) {
	if s.timeouts > 0 {
		s.timeouts--
		s.lists++
		return nil, errReadTimeout
	}
	return s.refusingEtcd.MemberList(ctx, ser)
}
func (s *slowListEtcd) MemberAdd(context.Context, []string, bool) (Member, error) {
	s.adds++
	return Member{ID: 9}, nil
}

// TestMemberListReadAgain: a member list that timed out is a read, asked
// again within the refusal window (a write that timed out is not: its
// outcome is unknown); the add is sent once.
func TestMemberListReadAgain(t *testing.T) {
	defer func(w time.Duration) { refusalWindow = w }(refusalWindow)
	refusalWindow = 5 * time.Second
	c, ts := testCtx(t, t.TempDir(), "systemd")
	api := &slowListEtcd{timeouts: 2}
	env := &quorumEnv{api: api, facts: map[string]string{}}
	if err := (&MemberAdd{}).Describe(c, ts[1])[0].Run(context.Background(), env); err != nil {
		t.Fatalf("member add after two timed-out lists: %v", err)
	}
	if api.lists != 3 || api.adds != 1 {
		t.Errorf("%d lists, %d adds: want 3 lists (2 timed out) and 1 add", api.lists, api.adds)
	}
	// Without the read test (an Etcd that only knows IsRetryable), the
	// timeout fails the step at once: nothing is retried blindly.
	api2 := &refusingEtcd{}
	plain := &timeoutOnce{refusingEtcd: api2}
	env2 := &quorumEnv{api: plain, facts: map[string]string{}}
	if err := (&MemberAdd{}).Describe(c, ts[1])[0].Run(context.Background(), env2); !errors.Is(err, errReadTimeout) {
		t.Errorf("err %v, want the read timeout at once", err)
	}
	if api2.lists != 1 {
		t.Errorf("%d lists, want 1", api2.lists)
	}
}

type timeoutOnce struct{ *refusingEtcd }

func (s *timeoutOnce) MemberList(context.Context, bool) ([]Member, error) {
	s.lists++
	return nil, errReadTimeout
}
