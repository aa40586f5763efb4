package engine

import (
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// The session-start facts name the learners once; later views do not
// overwrite what the client learned since (a promote in this session).
func TestSeedLearnersOnce(t *testing.T) {
	c, err := etcdapi.New(etcdapi.Config{Endpoints: []string{"http://10.9.0.1:2379", "http://10.9.0.2:2379", "http://10.9.0.3:2379"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := &etcdAdapter{c: c}
	live := &steps.Live{Members: []steps.LiveMember{
		{Name: "e1", ClientURL: "http://10.9.0.1:2379", API: steps.LiveAnswered},
		{Name: "e2", ClientURL: "http://10.9.0.2:2379", API: steps.LiveAnswered, Learner: true},
		{Name: "e3", ClientURL: "http://10.9.0.3:2379", API: steps.LiveDown, Learner: true},
	}}
	a.seedLearners(live)
	if got := c.KnownLearners(); len(got) != 1 || got[0] != "http://10.9.0.2:2379" {
		t.Fatalf("known learners %v, want e2's client URL", got)
	}
	c.NoteLearner("http://10.9.0.2:2379", false) // promoted since
	a.seedLearners(live)
	if got := c.KnownLearners(); len(got) != 0 {
		t.Fatalf("seeded twice: %v", got)
	}
}
