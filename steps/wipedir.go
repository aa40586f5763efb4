package steps

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// WipeDir empties a data directory by moving it aside to
// DIR.rescue-<run-id>; it deletes only when the plan says delete: true.
type WipeDir struct {
	Path   string `yaml:"path" doc:"directory to empty; default: cluster.layout.dataDir"`
	Delete bool   `yaml:"delete" doc:"DANGEROUS: delete instead of moving aside; the data cannot be recovered"`
	Force  bool   `yaml:"force" doc:"allow a path other than the member's data dir"`

	KeyPos map[string]plans.Pos `yaml:"-"`
}

func (*WipeDir) DestroysData() bool { return true }
func (*WipeDir) SafeToRepeat() bool { return true }

func (s *WipeDir) dir(c *Ctx) string {
	if s.Path == "" {
		return c.DataDir()
	}
	return s.Path
}

// AsideDir is where a moved-aside directory goes in run runID.
func AsideDir(dir, runID string) string {
	return strings.TrimSuffix(dir, "/") + ".rescue-" + runID
}

func (s *WipeDir) Describe(c *Ctx, t Target) []Action {
	d := s.dir(c)
	var acts []Action
	if m := t.Member; m != nil && path.Clean(d) == path.Clean(c.DataDir()) {
		acts = append(acts, Action{Host: t.Name(), Kind: API,
			Cmd: fmt.Sprintf("refuse if %s is a healthy voter at %s right now, or cannot be asked there", m.Name, m.ClientURL),
			Run: func(ctx context.Context, env Env) error { return notHealthyVoter(ctx, env, m, d) }})
	}
	if s.Delete {
		return append(acts, Action{Host: t.Name(), Kind: Shell, Destructive: true, Cmd: join("rm", "-rf", "--", d) + s.recreate(c)})
	}
	aside := AsideDir(d, c.RunID)
	return append(acts, Action{Host: t.Name(), Kind: Shell, Destructive: true,
		Cmd: "if [ -e " + q(d) + " ]; then " + join("mv", "-T", "--", d, aside) + "; fi" + s.recreate(c)})
}

// notHealthyVoter is wipe-dir's live precondition: the member on the host
// must not be a healthy voter right now; its data dir is part of the
// cluster's quorum. A member that cannot be asked is refused too: the host
// answers SSH (the wipe needs it), so an API that does not answer there is
// not a stopped etcd.
func notHealthyVoter(ctx context.Context, env Env, m *plans.Member, dir string) error {
	api, err := env.Etcd(ctx)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, askTimeout)
	a := AskMember(cctx, api, m.ClientURL)
	cancel()
	if err := ctx.Err(); err != nil {
		return err
	}
	ev := []string{m.Name + " " + a.String()}
	if lm := LiveOf(env).Member(m.Name); lm != nil {
		ev = append(ev, fmt.Sprintf("at session start %s was %s", m.Name, lm.API))
	}
	switch {
	case a.State == AnswerHealthy && (a.Status == nil || !a.Status.IsLearner):
		return &Refusal{
			Reason:   fmt.Sprintf("%s is a healthy voter right now: moving its data dir %s away takes a working member out of the cluster", m.Name, dir),
			Evidence: ev,
			Hint:     "wipe only members that are stopped or being replaced: stop it first (stop-service) and resume, or fix on: if the plan names the wrong host",
		}
	case a.State == LiveCouldNotAsk:
		return &Refusal{
			Reason:   fmt.Sprintf("%s could not be asked at %s, so it is not known whether its data dir %s belongs to a healthy voter", m.Name, m.ClientURL, dir),
			Evidence: ev,
			Hint:     "check the member (etcdctl endpoint health), stop it if it runs, then resume the run",
		}
	}
	for _, e := range ev {
		env.Logf("before wiping %s: %s", dir, e)
	}
	return nil
}

// recreate leaves an empty data dir owned by the etcd user behind: etcd
// runs as that user and cannot create its data dir in a root-owned parent
// (a member added next would fail "mkdir /var/lib/etcd: permission denied").
func (s *WipeDir) recreate(c *Ctx) string {
	d, o := s.dir(c), c.Cluster.Layout.Owner
	if o == "" || path.Clean(d) != path.Clean(c.DataDir()) {
		return ""
	}
	return " && " + join("mkdir", "-p", "-m", "0700", "--", d) + " && " + join("chown", "--", o, d)
}

func (s *WipeDir) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	d := q(s.dir(c))
	if s.recreate(c) != "" {
		return remoteTest(ctx, env, t, "[ -d "+d+" ] && [ -z \"$(ls -A "+d+")\" ]", s.dir(c)+" is empty")
	}
	return remoteTest(ctx, env, t, "! [ -e "+d+" ] || [ -z \"$(ls -A "+d+")\" ]", s.dir(c)+" is absent or empty")
}

// systemDirs are never a directory to empty, force or not.
var systemDirs = []string{"/", "/var/lib", "/var", "/etc", "/usr", "/home", "/root", "/opt", "/boot", "/srv", "/tmp",
	"/bin", "/sbin", "/lib", "/lib64", "/dev", "/proc", "/sys", "/run", "/mnt", "/media", "/usr/local", "/var/tmp", "/var/log"}

// within reports whether p is dir or below it (both clean).
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// refused says why wiping clean is never right, or "" when it may be: a
// system directory, a path of fewer than two components, or an ancestor of
// the data dir or of the member's configuration.
func refused(c *Ctx, clean string) string {
	for _, d := range systemDirs {
		if clean == d {
			if d == "/" {
				return "the root directory"
			}
			return "a system directory"
		}
	}
	if strings.Count(clean, "/") < 2 {
		return "a top-level directory (fewer than 2 path components)"
	}
	l := c.Cluster.Layout
	for _, f := range []struct{ what, path string }{{"the data dir", l.DataDir}, {"the env file", l.EnvFile}, {"the etcd manifest", l.Manifest}, {"binDir", l.BinDir}} {
		if f.path == "" || !path.IsAbs(f.path) {
			continue
		}
		if p := path.Clean(f.path); p != clean && within(p, clean) {
			return "a parent of " + f.what + " " + f.path
		}
	}
	return ""
}

// etcdLike reports whether a path other than the data dir may be emptied
// with force: true: one inside the data dir (a member/wal) or one named for
// etcd (/var/lib/etcd-old, /data/etcd, /mnt/etcd-wal).
func etcdLike(c *Ctx, clean string) bool {
	if within(clean, path.Clean(c.DataDir())) {
		return true
	}
	for _, part := range strings.Split(clean, "/") {
		if strings.Contains(strings.ToLower(part), "etcd") {
			return true
		}
	}
	return false
}

// Validate rejects paths that would wipe something other than a data dir.
// Paths are compared cleaned (trailing slashes, //, ..); force: true lifts
// only the "not the member's data dir" rule, and only for etcd-like paths.
func (s *WipeDir) Validate(c *Ctx, at At, fs *plans.Findings) {
	d := s.dir(c)
	p := at("path")
	clean := path.Clean(d)
	_, given := s.KeyPos["path"]
	why := ""
	if path.IsAbs(d) && clean != path.Clean(c.DataDir()) {
		why = refused(c, clean)
	}
	shown := fmt.Sprintf("%q", d)
	if clean != d {
		shown += " (" + clean + ")"
	}
	switch {
	case strings.TrimSpace(d) == "" || given && strings.TrimSpace(s.Path) == "":
		fs.Add(p, "wipe-dir path is empty")
	case !path.IsAbs(d):
		fs.Add(p, "wipe-dir path %q is relative", d).WithHint("use an absolute path, normally the data dir %s", c.DataDir())
	case clean == "/":
		fs.Add(p, "wipe-dir path %s is the root directory", shown)
	case why != "":
		f := fs.Add(p, "wipe-dir path %s is %s", shown, why)
		if s.Force {
			f.WithHint("force: true only allows another etcd directory (inside the data dir or named for etcd), never this; wipe the data dir %s", c.DataDir())
		} else {
			f.WithHint("wipe the member's data dir %s (leave path: out)", c.DataDir())
		}
	case containsDotDot(d):
		fs.Add(p, "wipe-dir path %q contains ..", d).WithHint("write the path without ..: %s", clean)
	case clean != path.Clean(c.DataDir()) && !s.Force:
		fs.Add(p, "wipe-dir path %q is not the member data dir %s", d, c.DataDir()).
			WithHint("set force: true if this really is a directory to empty")
	case clean != path.Clean(c.DataDir()) && !etcdLike(c, clean):
		fs.Add(p, "wipe-dir path %q is not an etcd directory: force: true only allows a path inside the data dir %s or one named for etcd", d, c.DataDir()).
			WithHint("check the path; wipe-dir empties etcd data dirs, not other directories")
	}
	if s.Delete {
		fs.Warn(at("delete"), "wipe-dir deletes %s instead of moving it aside: the old data cannot be recovered", d).
			WithHint("drop delete: true to keep the old data as %s", AsideDir(d, "<run-id>"))
	}
}

func containsDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

// Chown gives a directory tree to the etcd user (restores run as root).
type Chown struct {
	Path  string `yaml:"path" doc:"directory; default: cluster.layout.dataDir"`
	Owner string `yaml:"owner" doc:"user:group; default: cluster.layout.owner"`
}

func (s *Chown) args(c *Ctx) (string, string) {
	d, o := s.Path, s.Owner
	if d == "" {
		d = c.DataDir()
	}
	if o == "" {
		o = c.Cluster.Layout.Owner
	}
	return d, o
}

func (s *Chown) Describe(c *Ctx, t Target) []Action {
	d, o := s.args(c)
	return []Action{{Host: t.Name(), Kind: Shell, Cmd: join("chown", "-R", o, "--", d)}}
}

func (s *Chown) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	d, o := s.args(c)
	if !strings.Contains(o, ":") {
		return remoteTest(ctx, env, t, "[ -z \"$(find "+q(d)+" ! -user "+q(o)+" -print -quit)\" ]", d+" is owned by "+o)
	}
	u, g, _ := strings.Cut(o, ":")
	return remoteTest(ctx, env, t, "[ -z \"$(find "+q(d)+" \\( ! -user "+q(u)+" -o ! -group "+q(g)+" \\) -print -quit)\" ]", d+" is owned by "+o)
}

func (s *Chown) Validate(c *Ctx, at At, fs *plans.Findings) {
	d, o := s.args(c)
	if o == "" {
		fs.Add(at("owner"), "chown needs an owner: set owner here or cluster.layout.owner")
	}
	if !path.IsAbs(d) || path.Clean(d) == "/" {
		fs.Add(at("path"), "chown path %q must be an absolute path below /", d)
	}
}
