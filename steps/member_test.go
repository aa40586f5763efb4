package steps

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

var errRefused = errors.New("etcdserver: rpc not supported for learner")

// roundRobinEtcd models the client's balancer over two members that answer:
// each call goes to the next one. The learner refuses everything
// (transiently); the voter says "not in sync yet" notReady times, then
// promotes.
type roundRobinEtcd struct {
	Etcd
	next     int
	notReady int
	calls    []string
	promoted bool
}

func (r *roundRobinEtcd) to(call string) (learner bool) {
	learner = r.next%2 == 1
	r.next++
	who := "voter"
	if learner {
		who = "learner"
	}
	r.calls = append(r.calls, call+"@"+who)
	return learner
}

func (r *roundRobinEtcd) IsRetryable(err error) bool { return errors.Is(err, errRefused) }

func (r *roundRobinEtcd) MemberList(context.Context, bool) ([]Member, error) {
	if r.to("list") {
		return nil, errRefused
	}
	return []Member{{ID: 1, Name: "e1", PeerURLs: []string{"http://10.9.0.1:2380"}},
		{ID: 2, Name: "e2", PeerURLs: []string{"http://10.9.0.2:2380"}, IsLearner: !r.promoted}}, nil
}

func (r *roundRobinEtcd) MemberPromote(_ context.Context, id uint64) error {
	if r.to("promote") {
		return errRefused
	}
	if r.notReady > 0 {
		r.notReady--
		return errors.New("etcdserver: can only promote a learner member which is in sync with leader")
	}
	r.promoted = true
	return nil
}

// TestPromoteReachesTheVoter: with the learner and one voter answering, a
// promote refused by the learner is sent again at once, so it reaches the
// voter; alternating list and promote would send every promote to the
// learner until within: ran out.
func TestPromoteReachesTheVoter(t *testing.T) {
	c, ts := testCtx(t, t.TempDir(), "systemd")
	api := &roundRobinEtcd{notReady: 1}
	env := &quorumEnv{api: api, facts: map[string]string{}}
	acts := (&MemberPromote{Within: plans.Duration(20 * time.Second)}).Describe(c, ts[1])
	if err := acts[0].Run(context.Background(), env); err != nil {
		t.Fatalf("promote: %v\ncalls %v\nlogs %v", err, api.calls, env.logs)
	}
	if !api.promoted {
		t.Fatalf("not promoted; calls %v", api.calls)
	}
	t.Logf("calls: %v", api.calls)
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
	defer func(w time.Duration) { refusalWindow = w }(refusalWindow)
	refusalWindow = 2 * time.Second
	c, ts := testCtx(t, t.TempDir(), "systemd")
	api := &refusingEtcd{}
	env := &quorumEnv{api: api, facts: map[string]string{}}
	acts := (&MemberAdd{}).Describe(c, ts[1])
	start := time.Now()
	err := acts[0].Run(context.Background(), env)
	took := time.Since(start)
	if err == nil || !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "still refused it after") || !strings.Contains(err.Error(), "hint:") {
		t.Fatalf("err %v, want the refusal with the attempts and a hint", err)
	}
	if took > 10*time.Second {
		t.Errorf("gave up after %s, window %s", took, refusalWindow)
	}
	if api.lists != 1 || api.adds < 2 || len(env.logs) != api.adds-1 {
		t.Errorf("%d lists, %d adds, %d logged retries", api.lists, api.adds, len(env.logs))
	}
}
