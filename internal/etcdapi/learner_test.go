package etcdapi_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi/etcdtest"
)

// TestLearnerNeverAsked: with the learner listed first among a client's
// endpoints (2 voters + 1 learner), cluster calls succeed at the first call,
// and once the learner is known (from a member list, a Status or its one
// refusal) no call goes to it again; a promote is polled only while the
// learner catches up. A learner refuses every RPC but Status, serializable
// Range and Snapshot on 3.5, 3.6 and 3.7.
func TestLearnerNeverAsked(t *testing.T) {
	forEachVersion(t, func(t *testing.T, bin string) {
		ms := etcdtest.StartCluster(t, bin, "v1", "v2")
		setup := newClient(t, etcdapi.Config{Endpoints: []string{ms["v1"].ClientURL}})
		peer3, client3 := etcdtest.FreeURL(t), etcdtest.FreeURL(t)
		var added etcdapi.Member
		// A new cluster refuses membership changes for its first seconds.
		if _, err := poll(t, 30*time.Second, etcdapi.IsRetryable, func(ctx context.Context) (err error) {
			added, _, err = setup.MemberAdd(ctx, []string{peer3}, true)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		etcdtest.Start(t, etcdtest.Options{Binary: bin, Name: "l3", PeerURL: peer3, ClientURL: client3, Existing: true,
			InitialCluster: "v1=" + ms["v1"].PeerURL + ",v2=" + ms["v2"].PeerURL + ",l3=" + peer3})
		// Until the learner has started it lists no client URL; wait for
		// that, through the setup client.
		for i := 0; ; i++ {
			l, err := setup.MemberList(ctx(t), false)
			if err == nil && len(l) == 3 && len(l[0].ClientURLs) > 0 {
				break
			}
			if i > 200 {
				t.Fatalf("the learner never listed its client URL: %+v %v", l, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		learnerFirst := []string{client3, ms["v1"].ClientURL, ms["v2"].ClientURL}

		// Nothing known yet: the learner may be asked once, and the call
		// goes on to the voters; then never again.
		c := newClient(t, etcdapi.Config{Endpoints: learnerFirst})
		for i := 0; i < 6; i++ {
			l, err := c.MemberList(ctx(t), i%2 == 0)
			if err != nil {
				t.Fatalf("member list %d: %v", i+1, err)
			}
			if len(l) != 3 {
				t.Fatalf("member list %d: %+v", i+1, l)
			}
		}
		if ks, err := c.KeyCount(ctx(t), false); err != nil || ks.Revision == 0 {
			t.Fatalf("linearizable key count: %+v %v", ks, err)
		}
		if got := etcdapi.LearnerRefusals(c); got > 1 {
			t.Fatalf("the learner was asked %d times", got)
		}
		if kl := c.KnownLearners(); len(kl) != 1 || kl[0] != client3 {
			t.Fatalf("known learners %v, want [%s]", kl, client3)
		}

		// Known from its Status: never asked at all.
		c2 := newClient(t, etcdapi.Config{Endpoints: learnerFirst})
		if st, err := c2.Status(ctx(t), client3); err != nil || !st.IsLearner {
			t.Fatalf("status of the learner: %+v %v", st, err)
		}
		for i := 0; i < 4; i++ {
			if _, err := c2.MemberList(ctx(t), false); err != nil {
				t.Fatalf("member list %d: %v", i+1, err)
			}
		}
		if got := etcdapi.LearnerRefusals(c2); got != 0 {
			t.Fatalf("a learner known from its status was asked %d times", got)
		}

		// Through a dialer (as through an SSH tunnel) the refusing
		// endpoint is known by the address it was dialled at.
		var d net.Dialer
		c3 := newClient(t, etcdapi.Config{Endpoints: learnerFirst, Dialer: func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}})
		for i := 0; i < 4; i++ {
			if _, err := c3.MemberList(ctx(t), false); err != nil {
				t.Fatalf("member list %d through a dialer: %v", i+1, err)
			}
		}
		if kl := c3.KnownLearners(); etcdapi.LearnerRefusals(c3) > 1 || len(kl) != 1 || kl[0] != client3 {
			t.Fatalf("through a dialer: %d refusals, known learners %v", etcdapi.LearnerRefusals(c3), kl)
		}

		// A client of the learner alone says so instead of asking it.
		only := newClient(t, etcdapi.Config{Endpoints: []string{client3}})
		if _, err := only.MemberList(ctx(t), false); !errors.Is(err, etcdapi.ErrNoVoter) {
			t.Fatalf("member list from the learner alone: %v, want ErrNoVoter", err)
		}
		if _, err := only.MemberList(ctx(t), false); !errors.Is(err, etcdapi.ErrNoVoter) || etcdapi.LearnerRefusals(only) != 1 {
			t.Fatalf("second member list from the learner alone: %v after %d refusals", err, etcdapi.LearnerRefusals(only))
		}

		// Promote, polled the way member-promote does while the learner
		// catches up: no learner refusal ever reaches the caller.
		start := time.Now()
		calls := 0
		pause := 250 * time.Millisecond
		for {
			calls++
			_, err := c.MemberPromote(ctx(t), added.ID)
			if err == nil {
				break
			}
			if !errors.Is(err, etcdapi.ErrLearnerNotReady) || time.Since(start) > time.Minute {
				t.Fatalf("promote call %d: %v", calls, err)
			}
			time.Sleep(pause)
			pause = min(2*pause, 2*time.Second)
		}
		t.Logf("promote took %s in %d calls", time.Since(start).Round(time.Millisecond), calls)
		if etcdapi.LearnerRefusals(c) > 1 {
			t.Fatalf("the learner was asked %d times", etcdapi.LearnerRefusals(c))
		}
		// Promoted: the member is a voter now and may be asked.
		if kl := c.KnownLearners(); len(kl) != 0 {
			t.Fatalf("known learners after promote: %v", kl)
		}
		// Its own client learns it from its Status, once the member has
		// applied the promotion itself.
		if _, err := poll(t, 10*time.Second, func(err error) bool { return errors.Is(err, etcdapi.ErrNoVoter) }, func(ctx context.Context) error {
			_, err := only.MemberList(ctx, false)
			return err
		}); err != nil {
			t.Fatalf("member list from the promoted member: %v", err)
		}
	})
}
