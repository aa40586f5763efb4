package etcdstate

import (
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
)

// Evidence files are stored under the run, read back by name, and written
// only by the holder of the cluster's lock while the run exists.
func TestEvidence(t *testing.T) {
	p := startEtcd(t, etcdOpts{})
	s := open(t, p, Config{Prefix: "team-e"})
	l := mustLock(t, s, "prod", "r1")
	if err := s.PutEvidence(bg, l, "r1", "summary.md", []byte("# run r1\n")); err == nil {
		t.Error("evidence of a run not in the store was stored")
	}
	if _, err := s.Create(bg, l, "r1", []byte(`{"runId":"r1"}`), runstate.RunFiles{Plan: []byte("version: 1\n")}); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"summary.md": "# run r1\n", "evidence.json": `{"sessions":[]}`} {
		if err := s.PutEvidence(bg, l, "r1", name, []byte(data)); err != nil {
			t.Fatalf("PutEvidence %s: %v", name, err)
		}
	}
	for _, bad := range []string{"", "../state", "a/b"} {
		if err := s.PutEvidence(bg, l, "r1", bad, []byte("x")); err == nil {
			t.Errorf("evidence file name %q accepted", bad)
		}
	}
	got, err := s.Evidence(bg, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got["summary.md"]) != "# run r1\n" || string(got["evidence.json"]) != `{"sessions":[]}` {
		t.Errorf("Evidence = %q", got)
	}
	if _, err := s.Break(bg, "prod"); err != nil {
		t.Fatal(err)
	}
	wantFenced(t, s.PutEvidence(bg, unaware(l, s), "r1", "summary.md", []byte("late")), "no longer holds the lock")
	wantFenced(t, s.PutEvidence(bg, l, "r1", "summary.md", []byte("late")), "no longer holds the lock")
	if got, _ := s.Evidence(bg, "r1"); string(got["summary.md"]) != "# run r1\n" {
		t.Errorf("a broken lock's holder overwrote evidence: %q", got["summary.md"])
	}
}
