package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// goneEtcd answers Health and Status after the given delays with the given
// errors (a delay of -1: the call hangs until its context ends).
type goneEtcd struct {
	Etcd
	hDelay, sDelay time.Duration
	herr, serr     error

	mu                      sync.Mutex
	healthEnded             bool
	statusBeforeHealthEnded bool
}

func wait(ctx context.Context, d time.Duration) error {
	if d < 0 {
		<-ctx.Done()
		return fmt.Errorf("%w: %w", ErrCouldNotAsk, ctx.Err())
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrCouldNotAsk, ctx.Err())
	}
}

func (g *goneEtcd) Health(ctx context.Context, url string) error {
	defer func() { g.mu.Lock(); g.healthEnded = true; g.mu.Unlock() }()
	if err := wait(ctx, g.hDelay); err != nil {
		return err
	}
	return g.herr
}

func (g *goneEtcd) Status(ctx context.Context, url string) (EndpointStatus, error) {
	g.mu.Lock()
	g.statusBeforeHealthEnded = !g.healthEnded
	g.mu.Unlock()
	if err := wait(ctx, g.sDelay); err != nil {
		return EndpointStatus{}, err
	}
	if g.serr != nil {
		return EndpointStatus{}, g.serr
	}
	return EndpointStatus{MemberID: 7, Revision: 10}, nil
}

var (
	errConnRefused = fmt.Errorf("connect: connection refused: %w", ErrNotListening)
	errNoQuorum    = errors.New("etcdserver: request timed out")
	errUntrusted   = fmt.Errorf("host key mismatch: %w", fmt.Errorf("%w: %w", ErrNotTrusted, ErrCouldNotAsk))
	errNoRoute     = fmt.Errorf("no route to host: %w", fmt.Errorf("%w: %w", ErrHostUnreachable, ErrCouldNotAsk))
)

// TestGoneAnswer: the verdict of member-remove's probe. Alive whenever
// either question answered; down only on "nothing listens"; everything
// else (timeouts, no route, an untrusted hop) is "could not ask", with the
// untrusted error kept so that mustBeGone refuses.
func TestGoneAnswer(t *testing.T) {
	st := &EndpointStatus{MemberID: 1}
	for _, c := range []struct {
		name       string
		herr, serr error
		st         *EndpointStatus
		want       string
		untrusted  bool
	}{
		{"both answer", nil, nil, st, AnswerHealthy, false},
		{"status only (no quorum)", errNoQuorum, nil, st, AnswerRunning, false},
		{"health refused", errConnRefused, nil, nil, LiveDown, false},
		{"status refused, health not awaited", nil, errConnRefused, nil, LiveDown, false},
		{"both time out", errNoQuorum, errNoQuorum, nil, LiveCouldNotAsk, false},
		{"no route is not down", errNoRoute, errNoRoute, nil, LiveCouldNotAsk, false},
		{"untrusted health", errUntrusted, errNoQuorum, nil, LiveCouldNotAsk, true},
		{"untrusted status", errNoQuorum, errUntrusted, nil, LiveCouldNotAsk, true},
	} {
		a := goneAnswer("http://x:2379", c.herr, c.serr, c.st)
		if a.State != c.want {
			t.Errorf("%s: state %s, want %s", c.name, a.State, c.want)
		}
		if got := errors.Is(a.Err, ErrNotTrusted); got != c.untrusted {
			t.Errorf("%s: untrusted %v, want %v (err %v)", c.name, got, c.untrusted, a.Err)
		}
		if a.State == LiveDown && a.Status != nil {
			t.Errorf("%s: a down member carries a status", c.name)
		}
	}
}

// TestAskGoneParallel: the two questions run at once, so a silent host
// costs one timeout, not two; a live member whose health hangs (no quorum)
// is still alive through its status; a refusal ends the probe without
// waiting for the other question.
func TestAskGoneParallel(t *testing.T) {
	// Silent host: both hang until the probe's context ends. Status is
	// asked while health still hangs (AskMember asked it only after).
	g := &goneEtcd{hDelay: -1, sDelay: -1}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	a := askGone(ctx, g, "http://x:2379")
	cancel()
	if a.State != LiveCouldNotAsk || a.Alive() {
		t.Fatalf("silent host: %v", a)
	}
	if !g.statusBeforeHealthEnded {
		t.Error("status was asked only after health ended")
	}
	// Alive without quorum: health hangs, status answers: alive, and
	// never down.
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	a = askGone(ctx, &goneEtcd{hDelay: -1, sDelay: 10 * time.Millisecond}, "http://x:2379")
	cancel()
	if !a.Alive() || a.State != AnswerRunning || a.Status == nil {
		t.Fatalf("alive without quorum: %v", a)
	}
	// Nothing listens (status refused at once, health would hang until
	// its context ends): down, and the probe returns before that context
	// has ended.
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a = askGone(ctx, &goneEtcd{hDelay: -1, serr: errConnRefused}, "http://x:2379")
	if a.State != LiveDown {
		t.Fatalf("refused: %v", a)
	}
	if ctx.Err() != nil {
		t.Error("a refused status did not end the probe before the timeout")
	}
}

// linksEtcd is a goneEtcd for the member to remove whose other members
// answer PeerLinks from a function of (url, how many times asked).
type linksEtcd struct {
	*goneEtcd
	links func(url string, n int) (PeerLinks, error)
	mu    sync.Mutex
	asked map[string]int
	// ownErr is how the member's own questions ended.
	ownErr []error
}

func (l *linksEtcd) PeerLinks(ctx context.Context, url string) (PeerLinks, error) {
	l.mu.Lock()
	if l.asked == nil {
		l.asked = map[string]int{}
	}
	l.asked[url]++
	n := l.asked[url]
	l.mu.Unlock()
	return l.links(url, n)
}

func (l *linksEtcd) Health(ctx context.Context, url string) error {
	err := l.goneEtcd.Health(ctx, url)
	l.mu.Lock()
	l.ownErr = append(l.ownErr, ctx.Err())
	l.mu.Unlock()
	return err
}

// The three-member cluster of these tests: x (0xd) is the one removed.
var (
	goneX   = Member{ID: 0xd, Name: "x", ClientURLs: []string{"http://10.0.0.9:2379"}}
	memberA = Member{ID: 0xa, Name: "a", ClientURLs: []string{"http://10.0.0.1:2379"}}
	memberB = Member{ID: 0xb, Name: "b", ClientURLs: []string{"http://10.0.0.2:2379"}}
	three   = []Member{memberA, memberB, goneX}
)

func links(local uint64, active map[uint64]bool) PeerLinks {
	return PeerLinks{Local: local, Active: active}
}

// TestPeersVerdict: the rule on what the other voting members say.
func TestPeersVerdict(t *testing.T) {
	ok := func(local uint64, active map[uint64]bool) peerView {
		return peerView{Name: fmt.Sprintf("%x", local), ID: local, URL: "u", Links: links(local, active)}
	}
	c := Member{ID: 0xc, Name: "c"}
	e := Member{ID: 0xe, Name: "e"}
	l := Member{ID: 0xf, Name: "learner", IsLearner: true}
	for name, tc := range map[string]struct {
		list  []Member
		views []peerView
		want  int
		says  string
	}{
		"both voters linked to each other, not to it: not linked": {three, []peerView{
			ok(0xa, map[uint64]bool{0xb: true, 0xd: false}), ok(0xb, map[uint64]bool{0xa: true})}, peersNotLinked, "its link to it failed"},
		"one voter has an active link to it: linked": {three, []peerView{
			ok(0xa, map[uint64]bool{0xb: true, 0xd: false}), ok(0xb, map[uint64]bool{0xa: true, 0xd: true})}, peersLinked, "reports an active raft link to x"},
		"one voter's metrics unreadable: unknown (1 of 2 needed)": {three, []peerView{
			ok(0xa, map[uint64]bool{0xb: true}), {Name: "b", ID: 0xb, URL: "u", Err: errors.New("404 Not Found")}}, peersUnknown, "could not tell its peer links"},
		"a voter that sees no one is not counted": {three, []peerView{
			ok(0xa, map[uint64]bool{0xb: true}), ok(0xb, map[uint64]bool{0xa: false})}, peersUnknown, "it sees no one"},
		"metrics of another member are not counted": {three, []peerView{
			ok(0xa, map[uint64]bool{0xb: true}), {Name: "b", ID: 0xb, URL: "u", Links: links(0xa, map[uint64]bool{0xb: true})}}, peersUnknown, "are those of member a"},
		"five members, two lost, three voters say no link: not linked": {[]Member{memberA, memberB, c, goneX, e}, []peerView{
			ok(0xa, map[uint64]bool{0xb: true, 0xc: true}), ok(0xb, map[uint64]bool{0xa: true}), ok(0xc, map[uint64]bool{0xa: true}),
			{Name: "e", ID: 0xe, URL: "u", Err: errors.New("no route to host")}}, peersNotLinked, "never linked to it since it started"},
		"five members, only two voters answer: unknown": {[]Member{memberA, memberB, c, goneX, e}, []peerView{
			ok(0xa, map[uint64]bool{0xb: true}), ok(0xb, map[uint64]bool{0xa: true}),
			{Name: "c", ID: 0xc, URL: "u", Err: errors.New("timeout")}, {Name: "e", ID: 0xe, URL: "u", Err: errors.New("timeout")}}, peersUnknown, "3 needed"},
		"a learner does not count toward the quorum": {append(three[:3:3], l), []peerView{
			ok(0xa, map[uint64]bool{0xb: true}), ok(0xb, map[uint64]bool{0xa: true})}, peersNotLinked, ""},
	} {
		t.Run(name, func(t *testing.T) {
			got, ev := peersVerdict(&goneX, tc.list, tc.views)
			all := fmt.Sprint(ev)
			if got != tc.want || !strings.Contains(all, tc.says) {
				t.Errorf("verdict %d, want %d; evidence %q lacks %q", got, tc.want, all, tc.says)
			}
		})
	}
}

// TestMustBeGonePeerLinks: member-remove's live precondition with the
// voters' peer links.
func TestMustBeGonePeerLinks(t *testing.T) {
	notLinked := func(url string, _ int) (PeerLinks, error) {
		if url == memberA.ClientURLs[0] {
			return links(0xa, map[uint64]bool{0xb: true, 0xd: false}), nil
		}
		return links(0xb, map[uint64]bool{0xa: true, 0xd: false}), nil
	}
	linkedFor := func(n int) func(string, int) (PeerLinks, error) {
		return func(url string, k int) (PeerLinks, error) {
			pl, _ := notLinked(url, k)
			if url == memberB.ClientURLs[0] && k <= n {
				pl.Active[0xd] = true
			}
			return pl, nil
		}
	}
	for name, tc := range map[string]struct {
		own       *goneEtcd
		links     func(string, int) (PeerLinks, error)
		refused   string
		log       string
		ownCutOff bool
	}{
		// The lab's lost host: its address is gone, the questions to it
		// hang; the voters say no link: removed without waiting for them.
		"silent, not linked: removed, its questions cut short": {own: &goneEtcd{hDelay: -1, sDelay: -1}, links: notLinked,
			log: "not connected to the cluster", ownCutOff: true},
		"nothing listens, not linked: removed": {own: &goneEtcd{herr: errConnRefused, sDelay: -1}, links: notLinked,
			log: "is down (asked, nothing listens"},
		"answers, not linked: refused": {own: &goneEtcd{}, links: notLinked, refused: "is alive"},
		// A voter's gauge can stay at 1 for a member that is gone (seen on
		// a 5-member lab): no refusal, its own answers decide.
		"silent, a voter reads linked for good: removed as before, not proven down": {own: &goneEtcd{herr: errNoRoute, serr: errNoRoute}, links: linkedFor(1 << 30),
			log: "not taken as proof"},
		"answers, linked: refused": {own: &goneEtcd{}, links: linkedFor(1 << 30), refused: "is alive"},
		"silent, a link that died just now: removed once it reads inactive": {own: &goneEtcd{herr: errNoRoute, serr: errNoRoute}, links: linkedFor(1),
			log: "not connected to the cluster"},
		"metrics unreadable, silent: removed as before, not proven down": {own: &goneEtcd{herr: errNoRoute, serr: errNoRoute},
			links: func(string, int) (PeerLinks, error) { return PeerLinks{}, errors.New("404 Not Found") }, log: "not proven down"},
		"metrics unreadable, untrusted hop: refused as before": {own: &goneEtcd{herr: errUntrusted, serr: errUntrusted},
			links: func(string, int) (PeerLinks, error) { return PeerLinks{}, errors.New("404 Not Found") }, refused: "SSH hop was not trusted"},
	} {
		t.Run(name, func(t *testing.T) {
			api := &linksEtcd{goneEtcd: tc.own, links: tc.links}
			env := &quorumEnv{api: api, facts: map[string]string{}}
			m := goneX
			err := mustBeGone(context.Background(), api, env, &m, three)
			logs := strings.Join(env.logs, "\n")
			if tc.refused != "" {
				var ref *Refusal
				if !errors.As(err, &ref) || !strings.Contains(ref.Reason, tc.refused) {
					t.Fatalf("want a refusal saying %q, got %v\n%s", tc.refused, err, logs)
				}
				return
			}
			if err != nil {
				t.Fatalf("want the member removed, got %v\n%s", err, logs)
			}
			if !strings.Contains(logs, tc.log) {
				t.Errorf("logs lack %q:\n%s", tc.log, logs)
			}
			if tc.ownCutOff {
				api.mu.Lock()
				defer api.mu.Unlock()
				for _, e := range api.ownErr {
					if !errors.Is(e, context.Canceled) {
						t.Errorf("its own question ended by %v, want cut short (canceled) at the grace", e)
					}
				}
				if !strings.Contains(logs, "gave no answer at http://10.0.0.9:2379 within") {
					t.Errorf("logs do not say its questions were cut short:\n%s", logs)
				}
			}
		})
	}
}
