package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/etcd-rescue/etcd-rescue/steps"
)

// fakeEtcd is an etcd API whose members are scripted per client URL: a
// URL not set answers like a stopped member (nothing listens).
type fakeEtcd struct {
	mu      sync.Mutex
	byURL   map[string]*fakeMember
	list    []steps.Member
	removed []uint64
	// snap, when set, is what SnapshotSave streams.
	snap []byte
}

type fakeMember struct {
	state string // healthy | running (no quorum) | down | unreachable | untrusted (host key of the tunnel's host)
	st    steps.EndpointStatus
}

func newFakeEtcd() *fakeEtcd { return &fakeEtcd{byURL: map[string]*fakeMember{}} }

// set scripts the member at url.
func (f *fakeEtcd) set(url, state string, st steps.EndpointStatus) *fakeEtcd {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byURL[url] = &fakeMember{state: state, st: st}
	return f
}

type fakeLiveErr struct {
	msg  string
	kind error
}

func (e *fakeLiveErr) Error() string { return e.msg }
func (e *fakeLiveErr) Unwrap() error { return e.kind }

func (f *fakeEtcd) member(url string) (*fakeMember, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.byURL[url]
	if m == nil {
		m = &fakeMember{state: "down"}
	}
	switch m.state {
	case "down":
		return m, &fakeLiveErr{"connecting to " + url + ": connection refused", steps.ErrNotListening}
	case "unreachable":
		return m, &fakeLiveErr{"connecting to " + url + ": i/o timeout", steps.ErrCouldNotAsk}
	case "untrusted":
		return m, &fakeLiveErr{"connecting to " + url + ": host h9: host key verification failed for 10.0.0.9: unknown host", errors.Join(steps.ErrNotTrusted, steps.ErrCouldNotAsk)}
	}
	return m, nil
}

func (f *fakeEtcd) Health(ctx context.Context, url string) error {
	m, err := f.member(url)
	if err != nil {
		return err
	}
	if m.state == "running" {
		return errors.New("etcd member " + url + " unhealthy: context deadline exceeded")
	}
	return nil
}

func (f *fakeEtcd) Status(ctx context.Context, url string) (steps.EndpointStatus, error) {
	m, err := f.member(url)
	if err != nil {
		return steps.EndpointStatus{}, err
	}
	return m.st, nil
}

func (f *fakeEtcd) MemberList(ctx context.Context, serializable bool) ([]steps.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]steps.Member(nil), f.list...), nil
}

func (f *fakeEtcd) MemberRemove(ctx context.Context, id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, id)
	for i, m := range f.list {
		if m.ID == id {
			f.list = append(f.list[:i], f.list[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("member %x not found", id)
}

func (f *fakeEtcd) MemberAdd(ctx context.Context, peerURLs []string, learner bool) (steps.Member, error) {
	return steps.Member{}, errors.New("fake: member add")
}
func (f *fakeEtcd) MemberUpdate(ctx context.Context, id uint64, peerURLs []string) error {
	return errors.New("fake: member update")
}
func (f *fakeEtcd) MemberPromote(ctx context.Context, id uint64) error {
	return errors.New("fake: member promote")
}
func (f *fakeEtcd) HashKV(ctx context.Context, url string, rev int64) (uint32, int64, error) {
	return 0, 0, errors.New("fake: hashkv")
}
func (f *fakeEtcd) SnapshotSave(ctx context.Context, url string, w io.Writer) (string, int64, error) {
	f.mu.Lock()
	snap := f.snap
	f.mu.Unlock()
	if snap == nil {
		return "", 0, errors.New("fake: snapshot save")
	}
	n, err := w.Write(snap)
	return "", int64(n), err
}
func (f *fakeEtcd) IsRetryable(err error) bool { return false }

func (f *fakeEtcd) removedIDs() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.removed...)
}
