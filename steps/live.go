package steps

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Live is what the session knew of the live cluster when it started: one
// entry per member of cluster.members, from the facts collected before
// anything ran. Destructive steps compare the world right before they act
// with it. The engine fills it; it is nil when no facts were collected.
type Live struct {
	CollectedAt time.Time
	Members     []LiveMember
	// Listed is every member some answering member listed at session
	// start (the cluster's member list, union over who answered).
	Listed []Member
}

// Member states in a Live view. "Could not ask" and "down" are never the
// same thing.
const (
	LiveAnswered    = "answered"      // its client API answered
	LiveDown        = "down"          // asked: nothing listens on its client URL
	LiveCouldNotAsk = "could-not-ask" // SSH failed, timeout, TLS: it may be alive
)

// LiveMember is one member of cluster.members at session start.
type LiveMember struct {
	Name      string
	Host      string
	ClientURL string
	API       string // LiveAnswered, LiveDown or LiveCouldNotAsk
	Why       string // why not answered, one line
	// HostAsked: its host answered over SSH, so the data dir fields are
	// known.
	HostAsked bool
	HasData   bool // the data dir holds a member (member/)
	// From its status (when it answered).
	ID        uint64
	Revision  int64
	RaftIndex uint64
	Learner   bool
	// OfflineRevision is the revision read from the data dir while etcd
	// was not running (0: unknown).
	OfflineRevision int64
}

// Member returns the entry of member name, or nil.
func (l *Live) Member(name string) *LiveMember {
	if l == nil {
		return nil
	}
	for i := range l.Members {
		if l.Members[i].Name == name {
			return &l.Members[i]
		}
	}
	return nil
}

// Rev is the newest revision known of the member at session start: its
// status revision, else the one read offline; ok false when neither.
func (m *LiveMember) Rev() (rev int64, from string, ok bool) {
	switch {
	case m.API == LiveAnswered && m.Revision > 0:
		return m.Revision, "status at session start", true
	case m.HostAsked && m.HasData && m.OfflineRevision > 0:
		return m.OfflineRevision, "its data dir, read offline at session start", true
	}
	return 0, "", false
}

// LiveEnv is implemented by an Env that has the session-start view.
type LiveEnv interface {
	Live() *Live
}

// LiveOf returns the session-start view of env, or nil.
func LiveOf(env Env) *Live {
	if l, ok := env.(LiveEnv); ok {
		return l.Live()
	}
	return nil
}

// ErrNotListening matches an Etcd error of a member that was asked and
// nothing accepts connections on its client URL: etcd does not run there.
var ErrNotListening = errors.New("nothing listens on the client URL")

// ErrCouldNotAsk matches an Etcd error of a member that could not be
// asked at all (its host unreachable, a timeout, TLS): it may be alive.
var ErrCouldNotAsk = errors.New("could not ask")

// ErrHostUnreachable matches an Etcd error of a member whose host could
// not be reached over the network (the SSH connection of the tunnel timed
// out, found no route, or its SSH port refused; or, with clientAccess:
// direct, the client URL timed out or had no route). Such an error also
// matches ErrCouldNotAsk: nothing is known of the member. A host key, login
// or sudo failure never matches it: that host may be serving.
var ErrHostUnreachable = errors.New("host unreachable over the network")

// ErrNotTrusted matches an Etcd error of a member that could not be asked
// because the SSH hop to its host was not trusted or refused us (host key
// unknown or changed, login or sudo refused). It also matches
// ErrCouldNotAsk. It is never evidence that the member is gone.
var ErrNotTrusted = errors.New("host not trusted or login refused")

// What one probe of a member established (ProbeClass).
const (
	ProbeAnswered     = "answered"      // it answered
	ProbeNotListening = "not-listening" // asked: nothing listens on its client URL
	ProbeUnreachable  = "unreachable"   // its host is unreachable over the network
	ProbeCouldNotAsk  = "could-not-ask" // host key, login, sudo, TLS, a timeout, anything else
)

// ProbeClass sorts the error of a Status or Health call: "could not ask"
// is never "down". Only ProbeNotListening proves that etcd does not serve
// there; ProbeUnreachable proves it only together with a fence (see
// CheckQuorum).
func ProbeClass(err error) string {
	switch {
	case err == nil:
		return ProbeAnswered
	case errors.Is(err, ErrNotListening):
		return ProbeNotListening
	case errors.Is(err, ErrHostUnreachable):
		return ProbeUnreachable
	}
	return ProbeCouldNotAsk
}

// Refusal is a destructive step that did not act because its precondition
// does not hold in the live cluster right now. The step changed nothing.
// It is never retried: the world or the plan must change first.
type Refusal struct {
	Reason   string
	Evidence []string
	Hint     string
}

func (e *Refusal) Error() string {
	var b strings.Builder
	b.WriteString("refused: " + e.Reason)
	for _, ev := range e.Evidence {
		b.WriteString("\n  evidence: " + ev)
	}
	if e.Hint != "" {
		b.WriteString("\nhint: " + e.Hint)
	}
	return b.String()
}

// Answer is what a member said when asked right now.
type Answer struct {
	URL    string
	State  string // AnswerHealthy, AnswerRunning, LiveDown or LiveCouldNotAsk
	Err    error  // why not healthy
	Status *EndpointStatus
}

// Answer states beyond LiveDown and LiveCouldNotAsk.
const (
	AnswerHealthy = "healthy" // health OK
	AnswerRunning = "running" // status answers, health does not (no quorum)
)

// Alive reports whether the member's etcd answered at all.
func (a Answer) Alive() bool { return a.State == AnswerHealthy || a.State == AnswerRunning }

func (a Answer) String() string {
	switch a.State {
	case AnswerHealthy:
		s := "answers health at " + a.URL
		if a.Status != nil {
			s += fmt.Sprintf(" (member %x, revision %d, raft index %d", a.Status.MemberID, a.Status.Revision, a.Status.RaftIndex)
			if a.Status.IsLearner {
				s += ", learner"
			}
			s += ")"
		}
		return s
	case AnswerRunning:
		return fmt.Sprintf("answers status at %s but not health: %v", a.URL, oneLineErr(a.Err))
	case LiveDown:
		return fmt.Sprintf("asked at %s: nothing listens (%v)", a.URL, oneLineErr(a.Err))
	}
	return fmt.Sprintf("could not be asked at %s: %v", a.URL, oneLineErr(a.Err))
}

// AskMember asks the member at url, right now, whether it is healthy, and if
// not, whether its etcd runs at all.
func AskMember(ctx context.Context, api Etcd, url string) Answer {
	a := Answer{URL: url}
	herr := api.Health(ctx, url)
	if errors.Is(herr, ErrNotListening) {
		a.State, a.Err = LiveDown, herr
		return a
	}
	st, serr := api.Status(ctx, url)
	if serr == nil {
		a.Status = &st
	}
	switch {
	case herr == nil:
		a.State = AnswerHealthy
	case serr == nil:
		a.State, a.Err = AnswerRunning, herr
	case errors.Is(serr, ErrNotListening):
		a.State, a.Err = LiveDown, serr
	default:
		a.State, a.Err = LiveCouldNotAsk, herr
	}
	return a
}

// askAll asks every url at once with ask ([AskMember], or member-remove's
// [askGone]), each bounded by per.
func askAll(ctx context.Context, api Etcd, urls []string, per time.Duration, ask func(context.Context, Etcd, string) Answer) []Answer {
	out := make([]Answer, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, per)
			defer cancel()
			out[i] = ask(cctx, api, u)
		}()
	}
	wg.Wait()
	return out
}

// PeerLinks is one member's view of its raft peer links right now, from
// etcd's etcd_network_active_peers gauge on its /metrics (see
// internal/etcdapi PeerLinksMetric).
type PeerLinks struct {
	Local uint64 // the member's own id
	// Active holds, by peer id, whether its link to that peer is active
	// now; a peer absent from it was never linked since it started.
	Active map[uint64]bool
}

// PeerLinkReader is the optional part of Etcd that reads a member's view of
// its raft peer links at clientURL, through the same route and TLS as its
// other calls. member-remove asks it of the surviving voters.
type PeerLinkReader interface {
	PeerLinks(ctx context.Context, clientURL string) (PeerLinks, error)
}

// askTimeout bounds one live question of a precondition.
const askTimeout = 5 * time.Second

func oneLineErr(err error) string {
	if err == nil {
		return "no error"
	}
	l, _, _ := strings.Cut(err.Error(), "\n")
	return l
}

func sortedUnique(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
