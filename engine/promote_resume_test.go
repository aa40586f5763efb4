package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// killAtPromote is the adapter of one session whose process "dies" at the
// first member promote: the checkpoint is copied as it stands (promote
// running), and the promote is either sent (killed after it reached etcd)
// or not (killed before).
type killAtPromote struct {
	*etcdAdapter
	once      sync.Once
	statePath *string
	saved     *[]byte
	send      bool
	die       context.CancelFunc // ends the session, as the kill does
}

var errKilled = errors.New("killed")

func (k *killAtPromote) MemberPromote(ctx context.Context, id uint64) error {
	first := false
	k.once.Do(func() {
		first = true
		b, err := os.ReadFile(*k.statePath)
		if err == nil {
			*k.saved = b
		}
	})
	if first && !k.send {
		k.die()
		return errKilled
	}
	return k.etcdAdapter.MemberPromote(ctx, id)
}

// TestResumeAfterKillDuringPromote: with the learner listed first in
// cluster.members, a run killed during member-promote, before or after the
// promote reached etcd, is finished by a plain resume on every etcd
// version (killed after the promote reached etcd: on the first version
// only, to keep the test short): the Check asks the voting members and decides; no call of
// either session meets a learner's refusal.
func TestResumeAfterKillDuringPromote(t *testing.T) {
	bins := etcdtest.Binaries(t)
	var names []string
	for n := range bins {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, name := range names {
		for _, sent := range []bool{false, true} {
			if sent && i > 0 {
				continue // the promote that reached etcd: the first version is enough
			}
			t.Run(fmt.Sprintf("%s/promote-sent=%v", name, sent), func(t *testing.T) {
				resumeAfterKillDuringPromote(t, bins[name], sent)
			})
		}
	}
}

func resumeAfterKillDuringPromote(t *testing.T, bin string, sent bool) {
	ms := etcdtest.StartCluster(t, bin, "v1", "v2")
	setup, err := etcdapi.New(etcdapi.Config{Endpoints: []string{ms["v1"].ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close()
	peer3, client3 := etcdtest.FreeURL(t), etcdtest.FreeURL(t)
	// A new cluster refuses membership changes for its first seconds.
	for i := 0; ; i++ {
		_, _, err := setup.MemberAdd(testCtx(t), []string{peer3}, true)
		if err == nil {
			break
		}
		if !etcdapi.IsRetryable(err) || i > 120 {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	etcdtest.Start(t, etcdtest.Options{Binary: bin, Name: "l3", PeerURL: peer3, ClientURL: client3, Existing: true,
		InitialCluster: "v1=" + ms["v1"].PeerURL + ",v2=" + ms["v2"].PeerURL + ",l3=" + peer3})

	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.yaml")
	body := fmt.Sprintf(`version: 1
name: promote
cluster:
  name: test
  token: test-token
  etcdVersion: "3.5.17"
  members:
    - {name: l3, host: h1, peerURL: %q, clientURL: %q}
    - {name: v1, host: h2, peerURL: %q, clientURL: %q}
    - {name: v2, host: h3, peerURL: %q, clientURL: %q}
hosts:
  h1: {address: 127.0.0.1, port: 2201}
  h2: {address: 127.0.0.1, port: 2202}
  h3: {address: 127.0.0.1, port: 2203}
ssh: {user: root, knownHosts: /nonexistent}
steps:
  - {id: promote, type: member-promote, on: h1, with: {within: 1m}}
`, peer3, client3, ms["v1"].PeerURL, ms["v1"].ClientURL, ms["v2"].PeerURL, ms["v2"].ClientURL)
	if err := os.WriteFile(plan, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	w := &world{}
	var statePath string
	var saved []byte
	ctx, die := context.WithCancel(testCtx(t))
	defer die()
	backend := func(kill bool) func(*Compiled) (Backend, error) {
		return func(*Compiled) (Backend, error) {
			// A new process: a new client, the learner listed first.
			api, err := etcdapi.New(etcdapi.Config{Endpoints: []string{client3, ms["v1"].ClientURL, ms["v2"].ClientURL}})
			if err != nil {
				return nil, err
			}
			t.Cleanup(func() { _ = api.Close() })
			var a steps.Etcd = &etcdAdapter{c: api}
			if kill {
				a = &killAtPromote{etcdAdapter: &etcdAdapter{c: api}, statePath: &statePath, saved: &saved, send: sent, die: die}
			}
			return &realEtcdAPI{fakeBackend: fakeBackend{w: w}, api: a}, nil
		}
	}
	o := Options{StateDir: filepath.Join(dir, "state"), Backend: backend(true), Registry: testRegistry(), RetryDelay: -1,
		OnStart: func(r *runstate.Run) { statePath = filepath.Join(r.Dir(), "state.json") }}
	res, err := Apply(ctx, compileTest(t, plan), o)
	if sent != (err == nil) {
		t.Fatalf("apply (promote sent %v): %v", sent, err)
	}
	if saved == nil {
		t.Fatal("the promote was never called")
	}
	// The process died there: the checkpoint says promote is running.
	if err := runstate.WriteFileAtomic(statePath, saved, 0o600); err != nil {
		t.Fatal(err)
	}

	o.Backend = backend(false)
	start := time.Now()
	res, err = Resume(testCtx(t), res.RunID, o)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	t.Logf("resume took %s", time.Since(start).Round(time.Millisecond))
	wantStatuses(t, res.State, map[string]string{"promote@h1": "done"})
	l, err := setup.MemberList(testCtx(t), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range l {
		if m.IsLearner {
			t.Fatalf("after resume: %s is still a learner", m.Name)
		}
	}
	events := readFile(t, filepath.Join(filepath.Dir(statePath), "events.jsonl"))
	if strings.Contains(events, "not supported for learner") {
		t.Fatalf("a call met a learner's refusal:\n%s", events)
	}
	for _, line := range strings.Split(events, "\n") {
		if strings.Contains(line, `"check"`) && strings.Contains(line, "promote") {
			t.Logf("%s", line)
		}
	}
}

// realEtcdAPI runs commands in the fake world and etcd calls through api.
type realEtcdAPI struct {
	fakeBackend
	api steps.Etcd
}

func (b *realEtcdAPI) Etcd(context.Context) (steps.Etcd, error) { return b.api, nil }
