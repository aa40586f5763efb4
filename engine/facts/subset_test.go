package facts

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fixture reads one of diagnose's facts fixtures (real collection shapes).
func fixture(t *testing.T, name string) *Facts {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "diagnose", "testdata", "facts", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f Facts
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

// drifts renders Compare's answer as "H msg" (hard) and "S msg" (shown).
func drifts(review, now *Subset) []string {
	var out []string
	for _, d := range Compare(review, now) {
		k := "S "
		if d.Hard {
			k = "H "
		}
		out = append(out, k+d.Msg)
	}
	return out
}

const (
	id1 = "8e9e05c52164694d"
	id2 = "91bc3c398fb3c146"
	id3 = "fd422379fda50e48"
	cid = "cdf818194e3a8c32"
)

// Real facts shapes, review against a later collection: each pair is a
// world that changed (or did not) between review and apply.
func TestCompareFixtures(t *testing.T) {
	tests := map[string]struct {
		review, now string
		want        []string
	}{
		"unchanged": {"healthy-3-v3.5", "healthy-3-v3.5", nil},
		"two members lost since review": {"healthy-3-v3.5", "quorum-loss-3", []string{
			"H h2: data dir /var/lib/etcd had member/ at review, now absent",
			"H h3: data dir /var/lib/etcd had member/ at review, now absent",
			"H etcd2 answered at review (03:12:07 UTC), does not now: down (dial tcp 10.77.0.12:2379: connect: connection refused)",
			"H etcd3 answered at review (03:12:07 UTC), does not now: down (dial tcp 10.77.0.13:2379: connect: connection refused)",
			"H no member knows a leader now; at review etcd1 (" + id1 + ") led (quorum lost since?)",
		}},
		"the cluster came back before the recovery ran": {"quorum-loss-3", "healthy-3-v3.5", []string{
			"H h2: data dir /var/lib/etcd was absent at review, now has member/",
			"H h3: data dir /var/lib/etcd was absent at review, now has member/",
			"H etcd2 did not answer at review (03:12:07 UTC): down (dial tcp 10.77.0.12:2379: connect: connection refused); it answers now",
			"H etcd3 did not answer at review (03:12:07 UTC): down (dial tcp 10.77.0.13:2379: connect: connection refused); it answers now",
			"H etcd1 (" + id1 + ") leads now; at review no member knew a leader (quorum came back?)",
		}},
		"split brain: one member in another cluster": {"healthy-3-v3.5", "split-brain", []string{
			"H cluster id changed " + cid + " → a41c3b5e07d2f913 (etcd1)",
			"S leader changed etcd1 (" + id1 + ") → etcd2 (" + id2 + ") (elections happen; not drift)",
		}},
		"alarm raised on every member": {"healthy-3-v3.5", "alarm-nospace", []string{
			"H etcd1: alarm NOSPACE raised since review",
			"H etcd2: alarm NOSPACE raised since review",
			"H etcd3: alarm NOSPACE raised since review",
		}},
		"alarm cleared is shown, not drift": {"alarm-nospace", "healthy-3-v3.5", []string{
			"S etcd1: alarm NOSPACE cleared since review",
			"S etcd2: alarm NOSPACE cleared since review",
			"S etcd3: alarm NOSPACE cleared since review",
		}},
		// Nobody answered either time: no member list, no leader to
		// compare; the data dirs are the same.
		"total loss stays total loss": {"total-loss-3", "total-loss-3", nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := drifts(SubsetOf(fixture(t, tc.review)), SubsetOf(fixture(t, tc.now)))
			if !reflect.DeepEqual(tc.want, got) {
				t.Errorf("drifts want:\n%s\ngot:\n%s", lines(tc.want), lines(got))
			}
		})
	}
}

// One change at a time on a healthy cluster: what is drift, what is only
// shown, what is noise.
func TestCompareRules(t *testing.T) {
	tests := map[string]struct {
		change func(f *Facts)
		want   []string
	}{
		"revision grew, raft moved, sizes changed: a live cluster, not drift": {func(f *Facts) {
			for _, m := range f.Members {
				m.Status.Revision += 500
				m.Status.RaftIndex += 900
				m.Status.RaftTerm++
				m.Status.DBSize *= 2
				m.HashKV = nil
			}
			f.Hosts[0].DataDir.SizeBytes++
			f.Hosts[1].Elapsed = Duration(time.Second)
		}, nil},
		"revision went down": {func(f *Facts) {
			f.Members[1].Status.Revision = 4000
		}, []string{"H etcd2: revision went down 5011 → 4000 since review (data rolled back: a restore?)"}},
		"leader changed alone": {func(f *Facts) {
			for _, m := range f.Members {
				m.Status.Leader = id3
			}
		}, []string{"S leader changed etcd1 (" + id1 + ") → etcd3 (" + id3 + ") (elections happen; not drift)"}},
		"a member stopped answering": {func(f *Facts) {
			m := f.Members[2]
			m.API, m.Error, m.Status, m.MemberList, m.HashKV = APIDown, "nothing listens on 10.77.0.13:2379", nil, nil, nil
		}, []string{"H etcd3 answered at review (03:12:07 UTC), does not now: down (nothing listens on 10.77.0.13:2379)"}},
		"a host cannot be asked any more": {func(f *Facts) {
			h := f.Hosts[2]
			*h = Host{Name: h.Name, Address: h.Address, Member: h.Member, Reach: ReachTimeout, Error: "no answer within 5s"}
			m := f.Members[2]
			m.API, m.Error, m.Status, m.MemberList = APICouldNotAsk, "host h3: timeout", nil, nil
		}, []string{
			"H h3 could be asked over SSH at review (03:12:07 UTC), not now: timeout (no answer within 5s)",
			"H etcd3 answered at review (03:12:07 UTC), does not now: could-not-ask (host h3: timeout)",
		}},
		"member/ gone from a data dir": {func(f *Facts) {
			f.Hosts[1].DataDir.HasMember = false
		}, []string{"H h2: data dir /var/lib/etcd had member/ at review, now present without member/"}},
		"a new member (added, not started)": {func(f *Facts) {
			for _, m := range f.Members {
				m.MemberList = append(m.MemberList, ListedMember{ID: "c7d9a1b2c3d4e5f6", PeerURLs: []string{"http://10.77.0.14:2380"}, IsLearner: true})
			}
		}, []string{"H member (unstarted) c7d9a1b2c3d4e5f6 is new in the member list (peer http://10.77.0.14:2380)"}},
		"a member removed, its peer URL changed on another": {func(f *Facts) {
			for _, m := range f.Members {
				m.MemberList = []ListedMember{m.MemberList[0], m.MemberList[1]}
				m.MemberList[1].PeerURLs = []string{"http://10.77.0.22:2380"}
			}
		}, []string{
			"H member etcd2 " + id2 + ": peer URLs changed http://10.77.0.12:2380 → http://10.77.0.22:2380",
			"H member etcd3 " + id3 + " is no longer in the member list",
		}},
		"the member id of a member changed": {func(f *Facts) {
			f.Members[2].Status.MemberID = "0123456789abcdef"
		}, []string{"H etcd3: member id changed " + id3 + " → 0123456789abcdef since review (removed and added again?)"}},
		"cluster id changed everywhere": {func(f *Facts) {
			for _, m := range f.Members {
				m.Status.ClusterID = "1c2f000000000001"
				m.Status.Revision = 3 // a new cluster: its revision is not compared
			}
		}, []string{"H cluster id changed " + cid + " → 1c2f000000000001 (etcd1, etcd2, etcd3)"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			review, now := fixture(t, "healthy-3-v3.5"), fixture(t, "healthy-3-v3.5")
			tc.change(now)
			got := drifts(SubsetOf(review), SubsetOf(now))
			if !reflect.DeepEqual(tc.want, got) {
				t.Errorf("drifts want:\n%s\ngot:\n%s", lines(tc.want), lines(got))
			}
		})
	}
}

func TestCompareLearnerAndOfflineRevision(t *testing.T) {
	review, now := fixture(t, "healthy-3-v3.5"), fixture(t, "healthy-3-v3.5")
	for _, m := range review.Members {
		m.MemberList[2].IsLearner = true
	}
	got := drifts(SubsetOf(review), SubsetOf(now))
	want := []string{"H member etcd3 " + id3 + " was a learner at review, is a voter now"}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("learner want:\n%s\ngot:\n%s", lines(want), lines(got))
	}

	// A stopped member's data: its offline revision must not move.
	review, now = fixture(t, "total-loss-3"), fixture(t, "total-loss-3")
	for _, f := range []*Facts{review, now} {
		f.Hosts[0].DataDir.Present, f.Hosts[0].DataDir.HasMember = true, true
		f.Hosts[1].DataDir.Present, f.Hosts[1].DataDir.HasMember = true, true
	}
	review.Hosts[0].DataDir.OfflineRevision, now.Hosts[0].DataDir.OfflineRevision = 900, 700
	review.Hosts[1].DataDir.OfflineRevision, now.Hosts[1].DataDir.OfflineRevision = 900, 1200
	got = drifts(SubsetOf(review), SubsetOf(now))
	want = []string{
		"H h1: the revision in data dir /var/lib/etcd went down 900 → 700 since review (restored from an older copy?)",
		"H h2: the revision in data dir /var/lib/etcd grew 900 → 1200 while etcd was stopped at both looks: it ran since review",
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("offline revisions want:\n%s\ngot:\n%s", lines(want), lines(got))
	}
}

// A host that could not be asked at review and still cannot: another
// reason is shown, not drift; its member's silence is not drift either.
func TestCompareStillUnreachable(t *testing.T) {
	review, now := fixture(t, "healthy-3-v3.5"), fixture(t, "healthy-3-v3.5")
	for i, f := range []*Facts{review, now} {
		h := f.Hosts[2]
		reach := []Reach{ReachTimeout, ReachRefused}[i]
		*h = Host{Name: h.Name, Address: h.Address, Reach: reach, Error: string(reach)}
		m := f.Members[2]
		m.API, m.Status, m.MemberList = []APIState{APICouldNotAsk, APIDown}[i], nil, nil
	}
	got := drifts(SubsetOf(review), SubsetOf(now))
	want := []string{
		"S h3 could not be asked at review (timeout) nor now (refused)",
		"S etcd3 did not answer at review (could-not-ask) nor now (down)",
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("want:\n%s\ngot:\n%s", lines(want), lines(got))
	}
	if n := HardDrifts(Compare(SubsetOf(review), SubsetOf(now))); n != 0 {
		t.Errorf("%d hard drifts, want 0", n)
	}
}

// The subset survives JSON (it is stored in the reviewed plan) and holds
// nothing of the settings (where a secret could be).
func TestSubsetJSON(t *testing.T) {
	f := fixture(t, "healthy-3-v3.5")
	s := SubsetOf(f)
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "initialClusterToken") || strings.Contains(string(b), f.Hosts[0].Settings.InitialClusterToken) {
		t.Errorf("subset holds settings: %s", b)
	}
	var back Subset
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, &back) {
		t.Errorf("round trip want:\n%s\ngot:\n%s", lines(s), lines(&back))
	}
	if got := drifts(s, &back); got != nil {
		t.Errorf("a subset drifts from itself: %v", got)
	}
	if s.Leader() != id1 || len(s.MemberList) != 3 || s.Members[0].ClusterID != cid {
		t.Errorf("subset: leader %s, list %v", s.Leader(), s.MemberList)
	}
	var sum strings.Builder
	s.WriteSummary(&sum)
	for _, want := range []string{"cluster id " + cid, "leader etcd1 (" + id1 + ")", "answering: etcd1 (revision 5011), etcd2 (revision 5011), etcd3 (revision 5011)", "could not ask: none"} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum.String())
		}
	}
}

func lines(v any) string {
	if l, ok := v.([]string); ok {
		return "  " + strings.Join(l, "\n  ")
	}
	b, _ := json.MarshalIndent(v, "  ", "  ")
	return string(b)
}
