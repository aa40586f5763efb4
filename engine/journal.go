package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/uploadtmp"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// journalRunner records every command of a step-host in events.jsonl
// (redacted) and adds its duration to the step-host's remote time.
type journalRunner struct {
	env  *stepEnv
	host string
	r    steps.Runner
}

func (j *journalRunner) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	if err := j.env.factsDurable(); err != nil {
		return nil, err
	}
	start := time.Now()
	ctx = context.WithValue(ctx, markKey{}, j.env.w.mark(j.env.n, j.env.host))
	out, err := j.r.Run(ctx, cmd, stdin)
	d := time.Since(start)
	j.env.addRemote(d, false)
	ev := runstate.Event{Type: "cmd", Step: j.env.n.ID(), Host: j.host, Cmd: cmd, DurationMs: ms(d), Error: errString(err)}
	var ee *steps.ExitError
	switch {
	case err == nil:
		ev.Exit = intp(0)
	case errors.As(err, &ee):
		ev.Exit = intp(ee.Code)
		ev.Error = "stderr: " + tail(ee.Stderr, 600)
	}
	if err != nil {
		j.env.noteFailed(cmd)
	}
	j.env.w.run.Event(ev)
	if err == nil {
		crashPoint(cmd)
	}
	return out, err
}

func (j *journalRunner) Upload(ctx context.Context, local, remote string, mode os.FileMode) (string, error) {
	if err := j.env.factsDurable(); err != nil {
		return "", err
	}
	start := time.Now()
	sum, err := j.r.Upload(ctx, local, remote, mode)
	d := time.Since(start)
	j.env.addRemote(d, false)
	cmd := fmt.Sprintf("upload %s to %s:%s (mode %04o)", local, j.host, remote, mode.Perm())
	j.env.w.run.Event(runstate.Event{Type: "upload", Step: j.env.n.ID(), Host: j.host, Cmd: cmd, DurationMs: ms(d), Error: errString(err), Msg: "sha256 " + sum})
	if err != nil {
		j.env.noteFailed(cmd)
	}
	return sum, err
}

// journalCheckedRunner is a journalRunner whose runner also uploads in
// one checked command (steps.UploadChecker).
type journalCheckedRunner struct{ *journalRunner }

func (j *journalCheckedRunner) UploadChecked(ctx context.Context, local, remote string, c uploadtmp.Checked) (string, error) {
	if err := j.env.factsDurable(); err != nil {
		return "", err
	}
	start := time.Now()
	placed, err := j.r.(steps.UploadChecker).UploadChecked(ctx, local, remote, c)
	d := time.Since(start)
	j.env.addRemote(d, false)
	cmd := fmt.Sprintf("upload %s to %s:%s (mode %04o, checked on arrival)", local, j.host, remote, c.Perm.Perm())
	j.env.w.run.Event(runstate.Event{Type: "upload", Step: j.env.n.ID(), Host: j.host, Cmd: cmd, DurationMs: ms(d), Error: errString(err), Msg: "sha256 " + c.SHA256})
	if err != nil {
		j.env.noteFailed(cmd)
	}
	return placed, err
}

func ms(d time.Duration) *int64 { v := d.Milliseconds(); return &v }

func intp(i int) *int { return &i }

// journalEtcd times and journals etcd API calls of a step-host.
type journalEtcd struct {
	env *stepEnv
	api steps.Etcd
}

func (j *journalEtcd) done(start time.Time, what string, err error) {
	d := time.Since(start)
	j.env.addRemote(d, true)
	j.env.w.run.Event(runstate.Event{Type: "etcd", Step: j.env.n.ID(), Host: j.env.host, Cmd: what, DurationMs: ms(d), Error: errString(err)})
	if err == nil {
		crashPoint(what)
	}
}

func (j *journalEtcd) MemberList(ctx context.Context, serializable bool) ([]steps.Member, error) {
	start := time.Now()
	l, err := j.api.MemberList(ctx, serializable)
	j.done(start, fmt.Sprintf("member list (serializable=%v)", serializable), err)
	return l, err
}

func (j *journalEtcd) MemberAdd(ctx context.Context, peerURLs []string, learner bool) (steps.Member, error) {
	if err := j.env.factsDurable(); err != nil {
		return steps.Member{}, err
	}
	start := time.Now()
	m, err := j.api.MemberAdd(ctx, peerURLs, learner)
	j.done(start, fmt.Sprintf("member add %s (learner=%v) -> %x", strings.Join(peerURLs, ","), learner, m.ID), err)
	return m, err
}

func (j *journalEtcd) MemberRemove(ctx context.Context, id uint64) error {
	if err := j.env.factsDurable(); err != nil {
		return err
	}
	start := time.Now()
	err := j.api.MemberRemove(ctx, id)
	j.done(start, fmt.Sprintf("member remove %x", id), err)
	return err
}

func (j *journalEtcd) MemberUpdate(ctx context.Context, id uint64, peerURLs []string) error {
	if err := j.env.factsDurable(); err != nil {
		return err
	}
	start := time.Now()
	err := j.api.MemberUpdate(ctx, id, peerURLs)
	j.done(start, fmt.Sprintf("member update %x %s", id, strings.Join(peerURLs, ",")), err)
	return err
}

func (j *journalEtcd) MemberPromote(ctx context.Context, id uint64) error {
	if err := j.env.factsDurable(); err != nil {
		return err
	}
	start := time.Now()
	err := j.api.MemberPromote(ctx, id)
	j.done(start, fmt.Sprintf("member promote %x", id), err)
	return err
}

func (j *journalEtcd) Status(ctx context.Context, clientURL string) (steps.EndpointStatus, error) {
	start := time.Now()
	s, err := j.api.Status(ctx, clientURL)
	j.done(start, "status "+clientURL, err)
	return s, err
}

func (j *journalEtcd) Health(ctx context.Context, clientURL string) error {
	start := time.Now()
	err := j.api.Health(ctx, clientURL)
	j.done(start, "health "+clientURL, err)
	return err
}

func (j *journalEtcd) HashKV(ctx context.Context, clientURL string, rev int64) (uint32, int64, error) {
	start := time.Now()
	h, c, err := j.api.HashKV(ctx, clientURL, rev)
	j.done(start, fmt.Sprintf("hashkv %s at %d", clientURL, rev), err)
	return h, c, err
}

func (j *journalEtcd) SnapshotSave(ctx context.Context, clientURL string, w io.Writer) (string, int64, error) {
	start := time.Now()
	sum, n, err := j.api.SnapshotSave(ctx, clientURL, w)
	j.done(start, fmt.Sprintf("snapshot save %s (%d bytes, sha256 %s)", clientURL, n, sum), err)
	return sum, n, err
}

func (j *journalEtcd) IsRetryable(err error) bool { return j.api.IsRetryable(err) }

// IsTransientRead passes [steps.TransientReads] through when the wrapped
// client has it (else a read is only asked again after a refusal).
func (j *journalEtcd) IsTransientRead(err error) bool {
	if tr, ok := j.api.(steps.TransientReads); ok {
		return tr.IsTransientRead(err)
	}
	return j.api.IsRetryable(err)
}

// PeerLinks passes [steps.PeerLinkReader] through, journaled like every
// call; a wrapped client without it answers that it cannot.
func (j *journalEtcd) PeerLinks(ctx context.Context, clientURL string) (steps.PeerLinks, error) {
	plr, ok := j.api.(steps.PeerLinkReader)
	if !ok {
		return steps.PeerLinks{}, errors.New("this etcd client cannot read peer links")
	}
	start := time.Now()
	pl, err := plr.PeerLinks(ctx, clientURL)
	what := "peer links (metrics) " + clientURL
	if err == nil {
		var active []string
		for id, a := range pl.Active {
			if a {
				active = append(active, fmt.Sprintf("%x", id))
			}
		}
		sort.Strings(active)
		what += fmt.Sprintf(": member %x, active links to [%s]", pl.Local, strings.Join(active, " "))
	}
	j.done(start, what, err)
	return pl, err
}

// The steps ask for TransientReads and PeerLinkReader by a type
// assertion: keep both layers answering them.
var (
	_ steps.TransientReads = (*journalEtcd)(nil)
	_ steps.TransientReads = (*etcdAdapter)(nil)
	_ steps.PeerLinkReader = (*journalEtcd)(nil)
	_ steps.PeerLinkReader = (*etcdAdapter)(nil)
)
