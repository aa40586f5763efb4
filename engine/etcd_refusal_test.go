package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// realEtcdBackend runs commands in the fake world and etcd API calls against
// a real cluster, through the same adapter as the SSH backend.
type realEtcdBackend struct {
	fakeBackend
	api *etcdapi.Client
}

func (b *realEtcdBackend) Etcd(context.Context) (steps.Etcd, error) {
	return &plannedMemberStopped{etcdAdapter: &etcdAdapter{c: b.api}, api: b.api}, nil
}

// plannedMemberStopped answers the live checks about the plan's own member
// (on h1, which the plan stops before wiping it and is not in the real
// cluster) as etcd would once stopped: nothing listens there.
type plannedMemberStopped struct {
	*etcdAdapter
	api *etcdapi.Client
}

func (a *plannedMemberStopped) real(url string) bool {
	for _, e := range a.api.Endpoints() {
		if e == url {
			return true
		}
	}
	return false
}

func (a *plannedMemberStopped) Health(ctx context.Context, url string) error {
	if !a.real(url) {
		return fmt.Errorf("%s: %w", url, steps.ErrNotListening)
	}
	return a.etcdAdapter.Health(ctx, url)
}

func (a *plannedMemberStopped) Status(ctx context.Context, url string) (steps.EndpointStatus, error) {
	if !a.real(url) {
		return steps.EndpointStatus{}, fmt.Errorf("%s: %w", url, steps.ErrNotListening)
	}
	return a.etcdAdapter.Status(ctx, url)
}

// TestRefusedMemberAddGivesUp: with a voting member down, etcd refuses every
// member add ("unhealthy cluster"). The step sends it again for a bounded
// window, then fails with the refusal and a hint, instead of spinning until
// an interrupt; every attempt is its own call in events.jsonl.
func TestRefusedMemberAddGivesUp(t *testing.T) {
	bin := etcdtest.Binary(t)
	members := etcdtest.StartCluster(t, bin, "m1", "m2", "m3")
	members["m3"].Stop()
	api, err := etcdapi.New(etcdapi.Config{Endpoints: []string{members["m1"].ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	// Until the leader has noticed the lost peer, an add may still pass:
	// wait for the refusal, and remove what got through meanwhile.
	for i := 0; ; i++ {
		m, _, err := api.MemberAdd(testCtx(t), []string{"http://10.0.0.1:2380"}, true)
		if etcdapi.IsRetryable(err) {
			break
		}
		if err != nil || i == 40 {
			t.Fatalf("member add with m3 down: %v, want a refusal", err)
		}
		if _, err := api.MemberRemove(testCtx(t), m.ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}

	// The steps around the add are only there for the plan to compile:
	// the add fails, so its dependents never run.
	h := newHarness(t, "", `  - id: stop
    type: stop-service
    on: h1
  - id: wipe
    type: wipe-dir
    on: h1
    needs: [stop]
  - id: add
    type: member-add
    on: h1
    needs: [wipe]
  - id: config
    type: set-config
    on: h1
    needs: [add]
    with: {clusterState: existing}
  - id: start
    type: start-service
    on: h1
    needs: [config]
`)
	o := h.opts()
	o.Backend = func(*Compiled) (Backend, error) {
		return &realEtcdBackend{fakeBackend: fakeBackend{w: h.w}, api: api}, nil
	}
	start := time.Now()
	res, err := h.apply(o)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("member add succeeded with m3 down\n%s", h.progress.String())
	}
	msg := err.Error()
	if !strings.Contains(msg, "unhealthy cluster") || !strings.Contains(msg, "still refused") || !strings.Contains(msg, "hint:") {
		t.Errorf("error %q, want the refusal, how long it was retried, and a hint", msg)
	}
	// The step's window is 20 s; before, the client retried for 60 s inside
	// each of the step's endless attempts.
	if took > 45*time.Second {
		t.Errorf("gave up after %s", took)
	}

	b, err := os.ReadFile(filepath.Join(res.StateDir, "runs", res.RunID, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	adds := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev struct{ Type, Step, Cmd, Error string }
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if ev.Type == "etcd" && strings.HasPrefix(ev.Cmd, "member add ") {
			adds++
			if ev.Step != "add" || !strings.Contains(ev.Error, "unhealthy cluster") {
				t.Errorf("journaled attempt %+v", ev)
			}
		}
	}
	// 20 s of attempts 0.5, 1, 2, 4, 5, 5 s apart.
	if adds < 4 {
		t.Errorf("%d member add attempts journaled, want one per attempt\n%s", adds, b)
	}
	t.Logf("gave up after %s and %d journaled attempts: %s", took, adds, msg)
}
