// Package steps owns the catalog of step types: for each, its typed
// parameters, the exact actions it takes on each host (Describe, which is
// both the dry-run text and what apply runs), and a read-only Check that
// tells whether the work is already done. Steps see only the small Env below;
// they never import the engine, SSH or the etcd client.
package steps

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// Scope says whether a step fans out over hosts or runs once.
type Scope int

const (
	// PerHost steps run once for each host selected by on:.
	PerHost Scope = iota
	// Once steps run one time for the cluster; on: optionally narrows which
	// members they look at.
	Once
)

// Kind classifies an action for the reader of a dry-run.
type Kind string

const (
	Shell Kind = "ssh"   // a shell command on the host
	API   Kind = "etcd"  // a call to the etcd client API
	Local Kind = "local" // work on the operator machine
	Wait  Kind = "wait"  // polling until a condition holds
	Ask   Kind = "ask"   // an operator decision
)

// Action is one thing a step does. Cmd is the exact text a reviewer sees;
// for a Shell action without Run it is also exactly what runs on Host.
type Action struct {
	Host        string
	Kind        Kind
	Cmd         string
	Destructive bool
	// Run, when set, performs the action (API calls, polling, or a shell
	// command whose values are only known at run time).
	Run func(ctx context.Context, env Env) error `json:"-"`
}

// Target is one host a step runs on and the member on it, if any.
type Target struct {
	Host   *plans.Host
	Member *plans.Member
}

// Name is the host name, or "" for a Once step.
func (t Target) Name() string {
	if t.Host == nil {
		return ""
	}
	return t.Host.Name
}

// Ctx carries plan-wide facts to every step.
type Ctx struct {
	Plan    *plans.Plan
	Cluster *plans.Cluster
	Version plans.Version
	RunID   string // "<run-id>" in a dry-run
	// RunDir is the run's directory on the operator machine (in the
	// state dir); "" in a dry-run, where files in it show as <run-dir>/...
	RunDir string
	DryRun bool
	// Selected are the targets of the step being described (all of them,
	// also for a PerHost step, so a step can see its siblings).
	Selected []Target
	// Facts recorded earlier in the run (pre-disaster revision, member ids);
	// nil in a dry-run.
	Facts map[string]string
}

// Step is a step type's parameters, decoded strictly from with:.
type Step interface {
	Describe(c *Ctx, t Target) []Action
}

// Checker is implemented by steps that can tell, read-only, whether their
// work on t is already done. Resume uses it before re-applying anything.
type Checker interface {
	Check(ctx context.Context, c *Ctx, env Env, t Target) (done bool, why string, err error)
}

// The optional interfaces below tell the engine how to treat a step when
// something goes wrong; a step type implements those that apply to it, so
// the engine needs no list of types.

// Destructive is implemented by steps that change data or membership: a
// resumed or retried run never repeats them without a Check saying they are
// not done. DestroysData may depend on the parameters (exec's destructive:).
type Destructive interface {
	DestroysData() bool
}

// RepeatSafe is implemented by destructive steps written to run again after
// their Check said "not done": wipe-dir moves aside only an existing dir,
// restore writes into a run-specific temp dir and renames it into place
// last, member-add and member-remove read the member list first,
// force-new-cluster observes its survivor first and goes on from the phase
// it finds (flag written or not, one-member cluster or not).
type RepeatSafe interface {
	SafeToRepeat() bool
}

// CheckFirst is implemented by steps that consult Check before the first
// attempt too (exec's creates/unless mean "skip when this holds"). Other
// Checks only mean something once the step has begun: a restore's data dir
// "holds a member" before the old one is moved aside.
type CheckFirst interface {
	CheckFirst() bool
}

// OptionalCheck is implemented by a Checker whose Check means something
// only with some parameters: exec without creates: or unless: can never
// tell that it is done, so it counts as having no Check.
type OptionalCheck interface {
	HasCheck() bool
}

// SkipsUnreachable is implemented by steps that are skipped, not failed,
// when their host cannot be reached at all (stop-service with unreachable:
// skip: a dead host runs no service).
type SkipsUnreachable interface {
	SkipsUnreachable() bool
}

// AsksApproval is implemented by step types that stop until the operator
// approves them (approve): --approve STEP answers one in advance. It is
// asked of the type's zero value.
type AsksApproval interface {
	AsksApproval() bool
}

// NeedsMember is implemented by per-host step types that act on the member
// of their host: on: may only select hosts that run a member of
// cluster.members. It is asked of the type's zero value.
type NeedsMember interface {
	NeedsMember() bool
}

// StartsOnPlanURLs is implemented by step types after which the member on their host serves on the
// URLs of cluster.members (member-add, member-update, restore, set-config, cert-issue): the certificate
// gate checks, before the first change, that the member's certificates are valid for those URLs.
type StartsOnPlanURLs interface{ StartsOnPlanURLs() bool }

// Env is what a running step may use.
type Env interface {
	Shell(host string) (Runner, error)
	Etcd(ctx context.Context) (Etcd, error)
	Fact(key string) (string, bool)
	SetFact(key, value string) error
	Logf(format string, args ...any)
}

// Runner runs commands on one host. A non-zero exit is an *ExitError.
type Runner interface {
	Run(ctx context.Context, cmd string, stdin io.Reader) (stdout []byte, err error)
	Upload(ctx context.Context, local, remote string, mode os.FileMode) (sha256hex string, err error)
}

// ExitError is a remote command that ran and failed.
type ExitError struct {
	Host   string
	Cmd    string
	Code   int
	Stderr string
}

func (e *ExitError) Error() string {
	tail := strings.TrimSpace(e.Stderr)
	if len(tail) > 600 {
		tail = "..." + tail[len(tail)-600:]
	}
	if tail == "" {
		return fmt.Sprintf("%s: command exited with status %d", e.Host, e.Code)
	}
	return fmt.Sprintf("%s: command exited with status %d: %s", e.Host, e.Code, tail)
}

// Member is a member as the etcd API reports it. IDs are uint64, never
// floats (kubespray #8126).
type Member struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
	IsLearner  bool
}

// EndpointStatus is one member's own view.
type EndpointStatus struct {
	MemberID  uint64
	Leader    uint64
	Revision  int64
	RaftIndex uint64
	IsLearner bool
	Version   string
}

// Etcd is the slice of the etcd client API steps use; the engine adapts the
// real client to it.
type Etcd interface {
	MemberList(ctx context.Context, serializable bool) ([]Member, error)
	MemberAdd(ctx context.Context, peerURLs []string, learner bool) (Member, error)
	MemberRemove(ctx context.Context, id uint64) error
	MemberUpdate(ctx context.Context, id uint64, peerURLs []string) error
	MemberPromote(ctx context.Context, id uint64) error
	Status(ctx context.Context, clientURL string) (EndpointStatus, error)
	Health(ctx context.Context, clientURL string) error
	HashKV(ctx context.Context, clientURL string, rev int64) (hash uint32, compactRev int64, err error)
	SnapshotSave(ctx context.Context, clientURL string, w io.Writer) (sha256hex string, size int64, err error)
	IsRetryable(err error) bool
}

// LocalPath resolves a path on the operator machine named in a step's
// with: (see [plans.LocalFile]): ~/ is the home directory, a relative path
// is relative to the plan file's directory, so a plan works from any cwd.
func (c *Ctx) LocalPath(p string) string {
	base := ""
	if c.Plan != nil && c.Plan.File != "" {
		base = filepath.Dir(c.Plan.File)
	}
	return plans.LocalFile(base, p)
}

// DataDir is the data directory of the member on t.
func (c *Ctx) DataDir() string { return c.Cluster.Layout.DataDir }

// Bin returns the path of an etcd tool on the hosts.
func (c *Ctx) Bin(tool string) string {
	if d := c.Cluster.Layout.BinDir; d != "" {
		return strings.TrimSuffix(d, "/") + "/" + tool
	}
	return tool
}

// InitialCluster renders name=peerURL,... for the given members, in the
// order of cluster.members.
func (c *Ctx) InitialCluster(names []string) string {
	var parts []string
	for _, m := range c.Cluster.Members {
		if names == nil || containsStr(names, m.Name) {
			parts = append(parts, m.Name+"="+m.PeerURL)
		}
	}
	return strings.Join(parts, ",")
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// At returns the position of a parameter key (or of with:, when absent).
type At func(key string) plans.Pos

// Validator is implemented by steps with rules beyond their parameter types.
type Validator interface {
	Validate(c *Ctx, at At, fs *plans.Findings)
}
