package e2e

// The Kubernetes path for real: a lab whose hosts are kubeadm-style
// control-plane nodes (lab up --layout static-pod: a real kubelet with
// containerd and runc, etcd and kube-apiserver as static pods, 200
// ConfigMaps written through the API server), broken and repaired by the
// example plans. After every repair lab.Verify checks the etcd keys, every
// ConfigMap through the API servers and /readyz on each of them; after a
// restore the test asks the API servers itself that a watch from the
// resourceVersion before the disaster is answered 410 Gone (clients must
// relist), besides the plan's own kube-verify-relist step.
//
// One lab for all of it (its kube-apiservers take the longest to start):
// the scenarios run in an order where each leaves the cluster healthy for
// the next, and lost-host, which replaces a host, runs last.
//
//	go test ./tests/e2e/ -run TestE2EStaticPod -v
//
// `make test` runs it after the other lab tests, once `make kube-bins` has
// built kubelet, kube-apiserver, crictl and the images.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework"
)

func TestE2EStaticPod(t *testing.T) {
	e := newE2E(t)
	l := framework.UpLab(t, lab.Options{Members: 3, Version: "3.5", Layout: lab.LayoutStaticPod})
	if !t.Run("total-loss/static-pod-restore", func(t *testing.T) {
		preRev := framework.ClusterRevision(t, l)
		st, _ := e.recoverLab(t, l, scenario{plan: "static-pod-restore", brk: "total-loss", members: 3, restore: true})
		checkKubeSteps(t, st)
		watchGone(t, l, preRev)
	}) {
		return
	}
	if !t.Run("total-loss/kill-9-mid-restore", func(t *testing.T) {
		e.staticPodKilledMidRestore(t, l)
	}) {
		return
	}
	// Quorum loss and a lost host the way on-call would meet them on a
	// Kubernetes cluster: diagnose, a plan written from the live cluster
	// and the lab's inventory (which has cluster.kubernetes), apply.
	if !t.Run("quorum-loss/from-facts", func(t *testing.T) {
		e.rescueFromFacts(t, l, func(ctx context.Context) error { return l.Break(ctx, "quorum-loss") }, withKubeSteps(expectFor(t, l, "quorum-loss"),
			[]string{"kube-stop-control-plane", "kube-start-control-plane", "kube-wait-ready"}))
	}) {
		return
	}
	// The replacement host has the lab's CA but no member certificate
	// (kubeadm's /etc/kubernetes/pki/etcd/server.crt and peer.crt): the
	// plan issues one with the CA (--ca-cert/--ca-key, as diagnose's
	// finding says), then starts the new host's API server once its
	// member is a voter.
	t.Run("lost-host/from-facts", func(t *testing.T) {
		want := withKubeSteps(expectFor(t, l, "lost-host"), []string{"cert-issue", "kube-start-control-plane", "kube-wait-ready"})
		want.newExtra = []string{"--ca-cert", framework.InventoryVar(t, l, "caCert"), "--ca-key", framework.InventoryVar(t, l, "caKey")}
		e.rescueFromFacts(t, l, func(ctx context.Context) error { return l.Break(ctx, "lost-host") }, want)
	})
}

// withKubeSteps adds to want's plan check: the scaffolded plan has these
// step types (the lab's inventory has cluster.kubernetes).
func withKubeSteps(want expect, types []string) expect {
	inner := want.plan
	want.plan = func(t *testing.T, d *framework.DiagnosisDoc, steps []framework.PlanStep) {
		if inner != nil {
			inner(t, d, steps)
		}
		for _, typ := range types {
			if !slices.ContainsFunc(steps, func(s framework.PlanStep) bool { return s.Type == typ }) {
				t.Errorf("the plan written from the facts of a Kubernetes control plane has no %s step: %+v", typ, steps)
			}
		}
	}
	return want
}

// checkKubeSteps: the Kubernetes steps of the plan ran on every
// control-plane host and ended done (not skipped as already done).
func checkKubeSteps(t *testing.T, st *framework.RunState) {
	t.Helper()
	for _, id := range []string{"stop-control-plane", "start-control-plane", "ready", "relist"} {
		found := false
		for _, s := range st.Steps {
			if s.ID != id {
				continue
			}
			found = true
			for _, h := range s.Hosts {
				if h.Status != "done" || h.Attempts == 0 {
					t.Errorf("step %s@%s: status %s after %d attempt(s), want done by this run", id, h.Host, h.Status, h.Attempts)
				}
			}
		}
		if !found {
			t.Errorf("the run has no step %s: the example plan changed?", id)
		}
	}
}

// watchGone asks every API server, independently of etcd-rescue's own
// kube-verify-relist step, for a watch of the lab's ConfigMaps from
// resourceVersion rv (taken before the disaster): after a restore with a
// revision bump it must be refused with 410 Gone, as an HTTP status or as
// the first event of the stream. Anything else means informers would
// resume from history that no longer exists.
func watchGone(t *testing.T, l *lab.Lab, rv int64) {
	t.Helper()
	c, err := l.APIClient()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Hosts() {
		url := fmt.Sprintf("%s/api/v1/namespaces/%s/configmaps?watch=1&resourceVersion=%d&timeoutSeconds=5", lab.APIServerURL(h.Address), lab.ConfigMapNamespace, rv)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		got := watchAnswer(ctx, c, url)
		cancel()
		if !strings.HasPrefix(got, "410") {
			t.Errorf("%s: watch from resourceVersion %d (before the disaster): %s; want 410 Gone", h.Name, rv, got)
			continue
		}
		t.Logf("%s: watch from resourceVersion %d: %s", h.Name, rv, got)
	}
}

// watchAnswer is "410 ..." when the watch was refused as too old, else a
// description of what came back.
func watchAnswer(ctx context.Context, c *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := c.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusGone {
		return "410 (HTTP status)"
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() {
		return "the watch was accepted and sent nothing"
	}
	var ev struct {
		Type   string `json:"type"`
		Object struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"object"`
	}
	if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
		return "undecodable event: " + err.Error()
	}
	if ev.Type == "ERROR" && ev.Object.Code == http.StatusGone {
		return "410 (ERROR event: " + ev.Object.Message + ")"
	}
	return fmt.Sprintf("first event %s (code %d): the old history is still served", ev.Type, ev.Object.Code)
}

// staticPodKilledMidRestore breaks the static-pod lab (total loss) and
// applies static-pod-restore, killing etcd-rescue with SIGKILL once the
// restore step runs on the second host (the first may be done, the
// manifests are parked, the data dirs set aside); resume must finish the
// run without repeating a done step-host, and the lab must verify.
func (e *e2e) staticPodKilledMidRestore(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	preRev := framework.ClusterRevision(t, l)
	if err := l.Break(ctx, "total-loss"); err != nil {
		t.Fatalf("lab break total-loss: %v", err)
	}
	if err := l.Verify(ctx); err == nil {
		t.Fatal("after lab break total-loss, lab verify still passes")
	}
	plan := planPath("static-pod-restore")
	stateDir := filepath.Join(t.TempDir(), "state")
	r, line := e.killAt(t, regexp.MustCompile(`^\S+ restore@h2 running$`), "apply", plan, "--inventory", l.InventoryPath(), "--yes", "--state-dir", stateDir)
	t.Logf("killed with SIGKILL at %q", line)
	runID := framework.RunIDOf(r.Stdout)
	if runID == "" {
		t.Fatalf("no run id in the killed apply's output:\n%s", r)
	}
	st := e.afterKill(t, r, stateDir, runID)
	doneAt := map[string]int{}
	for _, s := range st.Steps {
		for _, h := range s.Hosts {
			if h.Status == "done" {
				doneAt[s.ID+"@"+h.Host] = h.Attempts
			}
		}
	}
	if h := st.Find("stop-control-plane", "h1"); h == nil || h.Status != "done" {
		t.Errorf("killed in the restore, but stop-control-plane@h1 is %+v: the API servers were not stopped first", h)
	}
	res := e.CLI(t, "resume", runID, "--yes", "--state-dir", stateDir)
	if res.Code != 0 {
		t.Fatalf("resume after kill -9: %s", res)
	}
	t.Logf("resume: exit 0 in %.1fs", res.Wall.Seconds())
	e.checkResumed(t, l, stateDir, runID, doneAt)
	checkRevisionAbove(t, l, preRev)
	watchGone(t, l, preRev)
}
