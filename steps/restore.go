package steps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/internal/uploadtmp"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// Restore creates a member's data dir from a snapshot with the flags derived
// from cluster:: its own --name and --initial-advertise-peer-urls, the same
// --initial-cluster and --initial-cluster-token on every member.
//
// With bumpRevision: auto, margin is added to the revision so watchers never
// see it go backwards after a restore (etcd #16028).
type Restore struct {
	Snapshot      string `yaml:"snapshot" rescue:"required" doc:"snapshot file on the host (see snapshot-copy)"`
	BumpRevision  string `yaml:"bumpRevision" default:"auto" doc:"auto (the last revision seen before the disaster, or the snapshot's, plus margin), a number, or none"`
	Margin        int64  `yaml:"margin" default:"1000000000" doc:"revisions added on top with bumpRevision: auto"`
	SkipHashCheck bool   `yaml:"skipHashCheck" doc:"DANGEROUS: restore a raw db copy without the sha256 trailer (may miss WAL data)"`
	// APIServerRunning is the explicit switch for the one case where the
	// API servers cannot be stopped first (runbook 003: API servers down
	// first, or they serve and cache the old cluster's data meanwhile).
	APIServerRunning string `yaml:"apiServerRunning" enum:"refuse|allow" default:"refuse" doc:"static-pod layout or cluster.kubernetes set: refuse (default) a restore unless earlier steps stop kube-apiserver on every control-plane host; DANGEROUS allow: restore while it may still run"`
}

func (*Restore) DestroysData() bool    { return true }
func (*Restore) SafeToRepeat() bool    { return true }
func (*Restore) NeedsMember() bool     { return true }
func (*Restore) RebuildsCluster() bool { return true }

// RestoredFrom: see [RestoresFromSnapshot].
func (s *Restore) RestoredFrom() string { return s.Snapshot }

// MustStartAfter: see [MustStart].
func (*Restore) MustStartAfter() string {
	return "a restored member that never starts is missing from the new cluster, which then runs without it (or without quorum)"
}

// apiServerUnit is the static pod of the Kubernetes API server.
const apiServerUnit = "kube-apiserver"

// NeedsStoppedFirst: kube-apiserver on every control-plane host is stopped
// before a restore (by stop-service, kube-stop-control-plane or any step
// that stops it), unless the plan says apiServerRunning: allow. It applies
// in the static-pod layout (the control-plane hosts are the members' hosts,
// or cluster.kubernetes.hosts) and whenever cluster.kubernetes is set,
// whatever runs etcd (kubespray: etcd under systemd, the API server a
// static pod).
func (s *Restore) NeedsStoppedFirst(c *Ctx) []StoppedFirst {
	k := c.Cluster.Kubernetes
	if (c.Cluster.Layout.Service != "static-pod" && k == nil) || s.APIServerRunning == "allow" {
		return nil
	}
	var hosts []string
	if k != nil {
		hosts = k.Hosts
	} else {
		for _, m := range c.Cluster.Members {
			if m != nil {
				hosts = append(hosts, m.Host)
			}
		}
	}
	what := "restore in the static-pod layout"
	if k != nil {
		what = "restore of the etcd of a Kubernetes control plane"
	}
	return []StoppedFirst{{Unit: apiServerUnit, Hosts: hosts, What: what,
		Hint: "stop kube-apiserver on every control-plane host first (kube-stop-control-plane, or stop-service with unit: kube-apiserver, on: all) and list it in needs:; " +
			"an API server that keeps running serves and caches the old data while etcd is replaced. If it really cannot be stopped, set apiServerRunning: allow"}}
}

// BumpsRevision: see [BumpsRevision].
func (s *Restore) BumpsRevision() bool {
	return s.BumpRevision != "none" && s.BumpRevision != "0" && s.BumpRevision != ""
}

// FactPreRevision is the fact key of the highest revision seen before the run
// changed anything.
const FactPreRevision = "cluster.preRevision"

// tool is the restore command for the plan's etcd version.
func (s *Restore) tool(c *Ctx) string {
	if c.Version.Minor <= 4 {
		return "ETCDCTL_API=3 " + c.Bin("etcdctl")
	}
	return c.Bin("etcdutl")
}

func (s *Restore) command(c *Ctx, t Target, bump string) string {
	m := t.Member
	args := []string{"snapshot", "restore", s.Snapshot,
		"--name", m.Name,
		"--initial-cluster", c.InitialCluster(nil),
		"--initial-cluster-token", c.Cluster.Token,
		"--initial-advertise-peer-urls", m.PeerURL,
		"--data-dir", s.tmpDir(c)}
	if s.SkipHashCheck {
		args = append(args, "--skip-hash-check")
	}
	cmd := s.tool(c) + " " + join(args...)
	if bump != "" {
		cmd += " --bump-revision " + bump + " --mark-compacted"
	}
	return cmd
}

// tmpDir is where the restore is written before it is renamed into place, so
// the data dir holds either nothing or a complete member, never half of one.
func (s *Restore) tmpDir(c *Ctx) string {
	return strings.TrimSuffix(c.DataDir(), "/") + ".restoring-" + c.RunID
}

// revisionCommand prints the snapshot's `snapshot status -w json`, or
// nothing when the file's identity is still the one snapshot-verify recorded
// (FactSnapStatus): the revision it recorded is used then, and the file is
// not read again.
func (s *Restore) revisionCommand(c *Ctx, recorded string) string {
	if recorded == "" {
		return s.statusCommand(c)
	}
	return "[ \"$(stat -c " + q(uploadtmp.StatFormat) + " -- " + q(s.Snapshot) + " 2>/dev/null)\" = " + q(recorded) + " ] || " + s.statusCommand(c)
}

// recordedStatus splits a FactSnapStatus value.
func recordedStatus(v string) (rev int64, id string) {
	f := strings.SplitN(v, " ", 3)
	if len(f) != 3 {
		return 0, ""
	}
	rev, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, ""
	}
	return rev, f[2]
}

// snapshotRevision is the revision of the snapshot on the host: the one
// snapshot-verify recorded when the file is unchanged, else read now.
func (s *Restore) snapshotRevision(ctx context.Context, c *Ctx, env Env, t Target, r Runner) (int64, error) {
	v, _ := env.Fact(FactSnapStatus(t.Name(), s.Snapshot))
	rec, id := recordedStatus(v)
	out, err := r.Run(ctx, s.revisionCommand(c, id), nil)
	if err != nil {
		return 0, fmt.Errorf("reading snapshot status: %w", err)
	}
	if len(bytes.TrimSpace(out)) == 0 && id != "" {
		env.Logf("%s: %s unchanged since snapshot-verify read its status: revision %d", t.Name(), s.Snapshot, rec)
		return rec, nil
	}
	st, err := parseSnapStatus(out)
	if err != nil {
		return 0, fmt.Errorf("reading snapshot status %q: %w", strings.TrimSpace(string(out)), err)
	}
	return st.Revision, nil
}

func (s *Restore) statusCommand(c *Ctx) string {
	if c.Version.Minor <= 4 {
		return "ETCDCTL_API=3 " + c.Bin("etcdctl") + " " + join("snapshot", "status", "-w", "json", s.Snapshot)
	}
	return c.Bin("etcdutl") + " " + join("snapshot", "status", "-w", "json", s.Snapshot)
}

func (s *Restore) Describe(c *Ctx, t Target) []Action {
	if t.Member == nil {
		return []Action{{Host: t.Name(), Kind: Shell, Cmd: "# no member of cluster.members runs on this host"}}
	}
	h, tmp, d := t.Name(), s.tmpDir(c), c.DataDir()
	var ms []string
	for _, m := range c.Cluster.Members {
		ms = append(ms, m.Name)
	}
	acts := []Action{
		{Host: h, Kind: API, Cmd: fmt.Sprintf("refuse if a member of the cluster being replaced still answers (%s, and any other member listed at session start); warn with the revisions lost when the snapshot is older than the newest revision seen", strings.Join(ms, ", ")),
			Run: func(ctx context.Context, env Env) error { return s.nothingAnswers(ctx, c, env, t) }},
	}
	switch mode := s.BumpRevision; mode {
	case "auto":
		shown := fmt.Sprintf("<auto: max(0, %s - snapshot revision) + %d>", FactPreRevision, s.Margin)
		recorded := "<identity snapshot-verify recorded of " + s.Snapshot + ", if any>"
		if !c.DryRun {
			_, recorded = recordedStatus(c.Facts[FactSnapStatus(h, s.Snapshot)])
		}
		var again bool // set by the first action when the second must read the status
		acts = append(acts,
			Action{Host: h, Kind: Shell, Cmd: s.prepareCommand(c, t, shown, recorded),
				Run: func(ctx context.Context, env Env) (err error) {
					again, err = s.prepareRecorded(ctx, c, env, t)
					return err
				}},
			Action{Host: h, Kind: Shell, Cmd: fmt.Sprintf("only when that exits %d (the snapshot is not the file snapshot-verify read) or nothing was recorded: %s, then the command above without the identity check, with the bump from the revision read",
				restoreExitChanged, s.statusCommand(c)),
				Run: func(ctx context.Context, env Env) error {
					if !again {
						return nil
					}
					return s.prepareReading(ctx, c, env, t)
				}})
	default:
		bump := mode
		if mode == "none" || mode == "0" {
			bump = ""
		}
		cmd := s.prepareCommand(c, t, bump, "")
		acts = append(acts, Action{Host: h, Kind: Shell, Cmd: cmd,
			Run: func(ctx context.Context, env Env) error {
				r, err := env.Shell(h)
				if err != nil {
					return err
				}
				_, err = r.Run(ctx, cmd, nil)
				return s.prepareErr(c, err)
			}})
	}
	acts = append(acts, Action{Host: h, Kind: Shell, Destructive: true,
		Cmd: "{ [ ! -e " + q(d) + " ] || rmdir -- " + q(d) + "; } && " + join("mv", "-T", "--", tmp, d)})
	return acts
}

// Exit codes of [Restore.prepareCommand], apart from 0 (the member is
// ready in the restoring dir).
const (
	restoreExitClean   = 80 // the restoring dir an earlier attempt left could not be removed
	restoreExitChanged = 81 // the snapshot is not the file snapshot-verify read: nothing restored
	restoreExitTool    = 82 // etcdutl (etcdctl) snapshot restore failed
	restoreExitChown   = 83 // chown -R of the restored dir failed
)

// prepareCommand is everything before the commit in one remote command:
// remove a restoring dir an earlier attempt left, confirm (when recorded is
// set) that the snapshot is still the file whose revision snapshot-verify
// recorded, which the bump was computed from, restore into the restoring
// dir and chown it. The exit code says which part failed. The rename into
// place (the commit) is a command of its own.
func (s *Restore) prepareCommand(c *Ctx, t Target, bump, recorded string) string {
	tmp := q(s.tmpDir(c))
	cmd := fmt.Sprintf("if [ -e %s ] || [ -L %s ]; then rm -rf -- %s || exit %d; fi; ", tmp, tmp, tmp, restoreExitClean)
	if recorded != "" {
		cmd += fmt.Sprintf("[ \"$(stat -c %s -- %s 2>/dev/null)\" = %s ] || exit %d; ", q(uploadtmp.StatFormat), q(s.Snapshot), q(recorded), restoreExitChanged)
	}
	cmd += fmt.Sprintf("%s || exit %d", s.command(c, t, bump), restoreExitTool)
	if o := c.Cluster.Layout.Owner; o != "" {
		cmd += fmt.Sprintf("; %s || exit %d", join("chown", "-R", o, "--", s.tmpDir(c)), restoreExitChown)
	}
	return cmd
}

// prepareErr says which part of prepareCommand failed.
func (s *Restore) prepareErr(c *Ctx, err error) error {
	var ee *ExitError
	if err == nil || !errors.As(err, &ee) {
		return err
	}
	tool := "etcdutl"
	if c.Version.Minor <= 4 {
		tool = "etcdctl"
	}
	switch ee.Code {
	case restoreExitClean:
		return fmt.Errorf("removing %s, left by an earlier attempt: %w", s.tmpDir(c), err)
	case restoreExitChanged:
		return fmt.Errorf("%s changed since snapshot-verify read it: %w", s.Snapshot, err)
	case restoreExitTool:
		return fmt.Errorf("%s snapshot restore of %s into %s: %w", tool, s.Snapshot, s.tmpDir(c), err)
	case restoreExitChown:
		return fmt.Errorf("chown -R %s of the restored %s: %w", c.Cluster.Layout.Owner, s.tmpDir(c), err)
	}
	return err
}

// prepareRecorded restores with bumpRevision: auto in one command when the
// bump is known without reading the snapshot: chosen by an earlier attempt
// of this run (a resumed run restores with the same), or computed from the
// revision snapshot-verify recorded, the command confirming that the file is
// still the one it read. again reports that the snapshot's status must be
// read first (nothing recorded, or the file changed since).
func (s *Restore) prepareRecorded(ctx context.Context, c *Ctx, env Env, t Target) (again bool, err error) {
	r, err := env.Shell(t.Name())
	if err != nil {
		return false, err
	}
	if bump, ok := env.Fact(bumpFact); ok {
		_, err := r.Run(ctx, s.prepareCommand(c, t, bump, ""), nil)
		return false, s.prepareErr(c, err)
	}
	v, _ := env.Fact(FactSnapStatus(t.Name(), s.Snapshot))
	rev, id := recordedStatus(v)
	if id == "" {
		return true, nil
	}
	bump := s.bumpFor(c, env, rev)
	_, err = r.Run(ctx, s.prepareCommand(c, t, bump, id), nil)
	var ee *ExitError
	if errors.As(err, &ee) && ee.Code == restoreExitChanged {
		env.Logf("%s: %s changed since snapshot-verify read its status: reading it again", t.Name(), s.Snapshot)
		return true, nil
	}
	if err != nil {
		return false, s.prepareErr(c, err)
	}
	// Recorded before the commit (the rename): a resumed run computes the
	// same bump from the same facts anyway.
	env.Logf("%s: %s unchanged since snapshot-verify read its status: revision %d", t.Name(), s.Snapshot, rev)
	return false, s.recordBump(c, env, t, rev, bump)
}

// prepareReading reads the snapshot's status, chooses the bump, records it
// and restores.
func (s *Restore) prepareReading(ctx context.Context, c *Ctx, env Env, t Target) error {
	r, err := env.Shell(t.Name())
	if err != nil {
		return err
	}
	out, err := r.Run(ctx, s.statusCommand(c), nil)
	if err != nil {
		return fmt.Errorf("reading snapshot status: %w", err)
	}
	st, err := parseSnapStatus(out)
	if err != nil {
		return fmt.Errorf("reading snapshot status %q: %w", strings.TrimSpace(string(out)), err)
	}
	bump := s.bumpFor(c, env, st.Revision)
	if err := s.recordBump(c, env, t, st.Revision, bump); err != nil {
		return err
	}
	_, err = r.Run(ctx, s.prepareCommand(c, t, bump, ""), nil)
	return s.prepareErr(c, err)
}

// bumpFor is the --bump-revision of bumpRevision: auto for a snapshot at
// revision rev: margin, plus the revisions the snapshot lacks when a newer
// one was seen before the disaster.
func (s *Restore) bumpFor(c *Ctx, env Env, rev int64) string {
	pre, _, _ := newestSeen(c, env)
	b := s.Margin
	if pre > rev {
		b += pre - rev
	}
	return strconv.FormatInt(b, 10)
}

// bumpFact records the bump a restore chose, so a resumed run uses the same.
const bumpFact = "restore.bump"

// recordBump records the bump chosen for a snapshot at revision rev (and,
// after a total loss, rev as the newest revision known), warns about the
// revisions lost and logs the choice.
func (s *Restore) recordBump(c *Ctx, env Env, t Target, rev int64, bump string) error {
	// The newest revision seen: recorded by check-quorum, or in the
	// session-start facts (a stopped member's data dir, read offline).
	pre, _, _ := newestSeen(c, env)
	if _, ok := env.Fact(FactPreRevision); !ok || pre > 0 {
		// Nothing answered before the restore (a total loss): the
		// newest revision known is the snapshot's or a data dir's,
		// and verify-data aboveRecorded checks the bump against it.
		if err := env.SetFact(FactPreRevision, strconv.FormatInt(max(pre, rev), 10)); err != nil {
			return err
		}
	}
	warnLoss(env, c, t, rev)
	if err := env.SetFact(bumpFact, bump); err != nil {
		return err
	}
	env.Logf("%s: snapshot revision %d, revision before the disaster %d: --bump-revision %s", t.Name(), rev, pre, bump)
	return nil
}

// nothingAnswers is restore's live precondition: no member of the cluster
// being replaced may still run (a restored member beside a live old one
// is two clusters claiming the same name and URLs). With bumpRevision
// other than auto it also warns about the revisions lost (auto warns when
// it reads the snapshot's revision).
func (s *Restore) nothingAnswers(ctx context.Context, c *Ctx, env Env, t Target) error {
	live := LiveOf(env)
	var urls []string
	who := map[string]string{}
	for _, m := range c.Cluster.Members {
		urls = append(urls, m.ClientURL)
		who[m.ClientURL] = m.Name
	}
	if live != nil {
		for _, m := range live.Listed {
			for _, u := range m.ClientURLs {
				urls = append(urls, u)
				if who[u] == "" {
					who[u] = m.Name
				}
			}
		}
	}
	urls = sortedUnique(urls)
	api, err := env.Etcd(ctx)
	if err != nil {
		return err
	}
	answers := askAll(ctx, api, urls, askTimeout, AskMember)
	if err := ctx.Err(); err != nil {
		return err
	}
	var ev, alive, unknown, untrusted []string
	for _, a := range answers {
		ev = append(ev, who[a.URL]+" "+a.String())
		switch {
		case a.Alive():
			alive = append(alive, who[a.URL])
		case a.State == LiveCouldNotAsk:
			unknown = append(unknown, who[a.URL])
			if errors.Is(a.Err, ErrNotTrusted) {
				untrusted = append(untrusted, who[a.URL])
			}
		}
	}
	if len(untrusted) > 0 && len(alive) == 0 {
		return &Refusal{
			Reason:   fmt.Sprintf("%s could not be asked: the SSH hop to its host was not trusted or refused the login, so it is not known to be stopped", strings.Join(untrusted, ", ")),
			Evidence: ev,
			Hint:     "fix the host key or login of that host (etcd-rescue facts shows each host's reach), then resume the run",
		}
	}
	if len(alive) > 0 {
		return &Refusal{
			Reason:   fmt.Sprintf("%s of the cluster being replaced still answer(s): restoring beside a running member makes two clusters", strings.Join(alive, ", ")),
			Evidence: ev,
			Hint:     "stop every member first (a stop-service step on all of them, before this restore), then resume the run",
		}
	}
	for _, e := range ev {
		env.Logf("before restore: %s", e)
	}
	if len(unknown) > 0 {
		env.Logf("concluded: no member answers; %s could not be asked, so it is not proven stopped", strings.Join(unknown, ", "))
	} else {
		env.Logf("concluded: no member of the cluster being replaced answers")
	}
	mode := s.BumpRevision
	if mode == "auto" {
		return nil
	}
	if _, _, ok := newestSeen(c, env); !ok {
		return nil
	}
	r, err := env.Shell(t.Name())
	if err != nil {
		return err
	}
	rev, err := s.snapshotRevision(ctx, c, env, t, r)
	if err != nil {
		env.Logf("could not read the snapshot's revision (%v): the revisions lost are not known", oneLineErr(err))
		return nil
	}
	warnLoss(env, c, t, rev)
	return nil
}

// newestSeen is the highest revision known before the restore: recorded by
// check-quorum (FactPreRevision) or in the session-start facts.
func newestSeen(c *Ctx, env Env) (int64, string, bool) {
	var best int64
	from := ""
	if v, ok := env.Fact(FactPreRevision); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			best, from = n, "recorded by check-quorum ("+FactPreRevision+")"
		}
	}
	if live := LiveOf(env); live != nil {
		for i := range live.Members {
			m := &live.Members[i]
			if r, f, ok := m.Rev(); ok && r > best {
				best, from = r, m.Name+": "+f
			}
		}
	}
	return best, from, best > 0
}

// warnLoss logs how many revisions a restore from a snapshot at snapRev
// loses, and records the snapshot's revision as evidence.
func warnLoss(env Env, c *Ctx, t Target, snapRev int64) {
	_ = env.SetFact("restore."+t.Name()+".snapshotRevision", strconv.FormatInt(snapRev, 10))
	best, from, ok := newestSeen(c, env)
	switch {
	case !ok:
		env.Logf("snapshot at revision %d; no newer revision was seen before the restore", snapRev)
	case best > snapRev:
		env.Logf("WARNING: the snapshot is at revision %d, the newest revision seen is %d (%s): %d revisions written after the snapshot will be lost", snapRev, best, from, best-snapRev)
	default:
		env.Logf("snapshot at revision %d; the newest revision seen is %d (%s): nothing newer is lost", snapRev, best, from)
	}
}

func (s *Restore) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	// A restored member dir has member/snap/db and member/wal; a half-done
	// restore leaves neither in place (etcdutl renames into place last).
	d := c.DataDir()
	return remoteTest(ctx, env, t, "[ -s "+q(d+"/member/snap/db")+" ] && [ -d "+q(d+"/member/wal")+" ]", d+" holds a restored member")
}

func (s *Restore) Validate(c *Ctx, at At, fs *plans.Findings) {
	if s.Snapshot != "" && !path.IsAbs(s.Snapshot) {
		fs.Add(at("snapshot"), "restore snapshot %q is a relative path: on the host it would depend on the login directory", s.Snapshot).
			WithHint("use the absolute path snapshot-copy puts the file at (its to:, default /var/tmp/etcd-rescue/snapshot.db)")
	}
	if s.APIServerRunning == "allow" && (c.Cluster.Layout.Service == "static-pod" || c.Cluster.Kubernetes != nil) {
		fs.Warn(at("apiServerRunning"), "restore runs while kube-apiserver may still serve the old data on the control-plane hosts").
			WithHint("stop kube-apiserver on every control-plane host first and drop apiServerRunning: allow")
	}
	if c.Cluster.Token == "" {
		fs.Add(c.Plan.KeyPos["cluster"], "cluster.token is required by restore: every member must restore with the same --initial-cluster-token").
			WithHint("add token: <name>-<date> under cluster:")
	}
	mode := s.BumpRevision
	if mode != "auto" && mode != "none" {
		if n, err := strconv.ParseInt(mode, 10, 64); err != nil || n < 0 {
			fs.Add(at("bumpRevision"), "bumpRevision %q is not auto, none or a whole number", mode)
			return
		}
	}
	v := c.Version
	if mode != "none" && mode != "0" {
		minPatch := map[int]int{4: 27, 5: 10}[v.Minor]
		if v.Minor <= 5 && v.Patch >= 0 && v.Patch < minPatch {
			fs.Add(at("bumpRevision"), "etcd %s has no --bump-revision/--mark-compacted (needs 3.%d.%d or later)", v, v.Minor, minPatch).
				WithHint("upgrade etcdutl/etcdctl on the hosts, or set bumpRevision: none and restart every Kubernetes client after the restore")
		} else if v.Minor <= 5 && v.Patch < 0 {
			fs.Warn(c.Cluster.KeyPos["etcdVersion"], "etcdVersion %s: --bump-revision needs 3.%d.%d or later; the patch level is not known", v, v.Minor, minPatch).
				WithHint("write the full version, like %d.%d.%d", v.Major, v.Minor, minPatch)
		}
	} else {
		fs.Warn(at("bumpRevision"), "restore without --bump-revision: the revision goes backwards and Kubernetes watch caches keep stale data (etcd #16028)").
			WithHint("use bumpRevision: auto")
	}
	if s.SkipHashCheck {
		fs.Warn(at("skipHashCheck"), "skipHashCheck restores a file without its sha256 trailer; it may miss data from the WAL").
			WithHint("restore a snapshot saved through the client API (snapshot-save) instead")
	}
}
