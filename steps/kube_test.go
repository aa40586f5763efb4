package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// shEnv runs every command with sh on this machine, with bin first on
// PATH (a fake crictl there), and records the log lines.
type shEnv struct {
	bin   string
	facts map[string]string
	logs  []string
	cmds  []string
}

func (e *shEnv) Shell(host string) (Runner, error)  { return &shRunner{e: e, host: host}, nil }
func (e *shEnv) Etcd(context.Context) (Etcd, error) { return nil, errors.New("no etcd here") }
func (e *shEnv) Fact(k string) (string, bool) {
	v, ok := e.facts[k]
	return v, ok
}
func (e *shEnv) SetFact(k, v string) error {
	if e.facts == nil {
		e.facts = map[string]string{}
	}
	e.facts[k] = v
	return nil
}
func (e *shEnv) Logf(f string, a ...any) { e.logs = append(e.logs, fmt.Sprintf(f, a...)) }

type shRunner struct {
	e    *shEnv
	host string
}

func (r *shRunner) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	r.e.cmds = append(r.e.cmds, cmd)
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Env = append(os.Environ(), "PATH="+r.e.bin+":"+os.Getenv("PATH"))
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, &ExitError{Host: r.host, Cmd: cmd, Code: ee.ExitCode(), Stderr: stderr.String()}
	}
	return out, err
}

func (r *shRunner) Upload(context.Context, string, string, os.FileMode) (string, error) {
	return "", errors.New("no upload")
}

// fakeKubelet writes a crictl that answers `ps -q --state Running --name
// '^NAME$'` like a kubelet that runs exactly the static pods whose manifest
// is in manifests, at once; a file stuck-NAME in state keeps NAME's
// container running whatever the manifest, and a file broken makes crictl
// fail as when the runtime does not answer.
func fakeKubelet(t *testing.T, manifests, state string) string {
	t.Helper()
	bin := t.TempDir()
	script := `#!/bin/sh
[ -e ` + state + `/broken ] && { echo 'connect: connection refused' >&2; exit 1; }
name=""
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="$2"; shift;;
  esac
  shift
done
name=${name#^}; name=${name%$}
if [ -e "` + state + `/stuck-$name" ] || [ -e "` + manifests + `/$name.yaml" ]; then
  echo 0123456789abcdef0123456789abcdef
fi
`
	if err := os.WriteFile(filepath.Join(bin, "crictl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// kubeCtx is testCtx with a control plane of static pods in dir.
func kubeCtx(t *testing.T, dir, controlPlane string) (*Ctx, []Target) {
	t.Helper()
	c, ts := testCtx(t, dir, "static-pod")
	k := &plans.Kubernetes{ControlPlane: controlPlane, Manifests: filepath.Join(dir, "manifests"), APIServer: &plans.APIServer{Port: 6443}}
	c.Cluster.Kubernetes = k
	c.Cluster.Layout.Manifest = filepath.Join(dir, "manifests", "etcd.yaml")
	p := &plans.Plan{Cluster: c.Cluster, Hosts: map[string]*plans.Host{}}
	for _, tg := range ts {
		p.Hosts[tg.Host.Name] = tg.Host
	}
	c.Plan = p
	p.Cluster.Kubernetes.Components = append([]string(nil), plans.DefaultComponents...)
	return c, ts
}

func runActions(t *testing.T, env Env, acts []Action) error {
	t.Helper()
	for _, a := range acts {
		if a.Run == nil {
			r, _ := env.Shell(a.Host)
			if _, err := r.Run(context.Background(), a.Cmd, nil); err != nil {
				return err
			}
			continue
		}
		if err := a.Run(context.Background(), env); err != nil {
			return err
		}
	}
	return nil
}

func TestContainerIDs(t *testing.T) {
	for name, tc := range map[string]struct {
		out  string
		want []string
		err  string
	}{
		"none":      {out: "", want: nil},
		"blank":     {out: "\n  \n", want: nil},
		"one":       {out: "3f2a9c1e0b7d44aa\n", want: []string{"3f2a9c1e0b7d44aa"}},
		"two":       {out: "3f2a9c1e0b7d\n9e8d7c6b5a4f3e2d1c0b\n", want: []string{"3f2a9c1e0b7d", "9e8d7c6b5a4f3e2d1c0b"}},
		"a warning": {out: "WARN[0000] image connect using default endpoints\n", err: "not a container id"},
		"a table":   {out: "CONTAINER  IMAGE  CREATED\n", err: "not a container id"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := containerIDs([]byte(tc.out))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v %v, want %v", got, err, tc.want)
			}
		})
	}
}

// TestWaitContainersBound: a container that never goes away fails the wait
// at its bound, not before and not never, naming the host, the component
// and what crictl still shows.
func TestWaitContainersBound(t *testing.T) {
	f := useFakeClock(t)
	dir := t.TempDir()
	state := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "manifests"), 0o755)
	os.WriteFile(filepath.Join(state, "stuck-kube-apiserver"), nil, 0o644)
	env := &shEnv{bin: fakeKubelet(t, filepath.Join(dir, "manifests"), state)}
	start := f.now
	err := waitContainers(context.Background(), env, "cp1", []string{"kube-apiserver", "kube-scheduler"}, false, 2*time.Second)
	var we *ContainerWaitError
	if !errors.As(err, &we) {
		t.Fatalf("want a ContainerWaitError, got %v", err)
	}
	if waited := f.now.Sub(start); waited != 2*time.Second {
		t.Errorf("gave up after %s, want the bound, 2s", waited)
	}
	for _, want := range []string{"cp1 still has a running container of kube-apiserver", "waited 2s", "kube-apiserver: still running: container 0123456789abc"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "kube-scheduler") {
		t.Errorf("kube-scheduler has no container, yet the error names it: %v", err)
	}
	// kube-scheduler is asked once (no container: done); kube-apiserver at
	// every poll up to the bound.
	n := 0
	for _, c := range env.cmds {
		if strings.Contains(c, "kube-scheduler") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("kube-scheduler asked %d times, want 1", n)
	}
	if polls := len(env.cmds) - 1; polls != int(2*time.Second/containerPoll)+1 {
		t.Errorf("kube-apiserver asked %d times, want %d", polls, int(2*time.Second/containerPoll)+1)
	}
}

func TestWaitContainersRuntimeErrors(t *testing.T) {
	useFakeClock(t)
	state := t.TempDir()
	os.WriteFile(filepath.Join(state, "broken"), nil, 0o644)
	env := &shEnv{bin: fakeKubelet(t, t.TempDir(), state)}
	err := waitContainers(context.Background(), env, "cp1", []string{"etcd"}, false, time.Second)
	if err == nil || !strings.Contains(err.Error(), "etcd: crictl failed") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("a runtime that does not answer has not proven the container gone: %v", err)
	}
	// No crictl at all: at once, not at the bound.
	if _, err := exec.LookPath("crictl"); err == nil {
		t.Skip("crictl is installed on this machine")
	}
	err = waitContainers(context.Background(), &shEnv{bin: t.TempDir()}, "cp1", []string{"etcd"}, false, time.Hour)
	if err == nil || !strings.Contains(err.Error(), "crictl is not installed there") {
		t.Fatalf("want crictl not installed, got %v", err)
	}
}

// TestKubeStopStartStaticPodsForReal runs the rendered commands with sh on
// real files: the manifests are parked beside the kubelet's directory, the
// wait sees the (fake) runtime stop them, Check agrees, and the start puts
// them back in reverse order and waits for them to run.
func TestKubeStopStartStaticPodsForReal(t *testing.T) {
	useFakeClock(t)
	dir := t.TempDir()
	c, ts := kubeCtx(t, dir, "static-pod")
	man := filepath.Join(dir, "manifests")
	os.MkdirAll(man, 0o755)
	// kube-scheduler does not run on this host.
	for _, n := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		os.WriteFile(filepath.Join(man, n+".yaml"), []byte("kind: Pod\n"), 0o600)
	}
	env := &shEnv{bin: fakeKubelet(t, man, t.TempDir())}
	stop := &KubeStopControlPlane{Within: plans.Duration(time.Minute)}
	if done, _, err := stop.Check(context.Background(), c, env, ts[0]); done || err != nil {
		t.Fatalf("check before the stop: %v %v", done, err)
	}
	if err := runActions(t, env, stop.Describe(c, ts[0])); err != nil {
		t.Fatal(err)
	}
	parked := filepath.Join(dir, "etcd-rescue-parked")
	for _, n := range []string{"kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(parked, n+".yaml")); err != nil {
			t.Errorf("%s not parked: %v", n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(man, "etcd.yaml")); err != nil {
		t.Errorf("etcd's manifest moved by the control-plane stop: %v", err)
	}
	if done, why, err := stop.Check(context.Background(), c, env, ts[0]); !done || err != nil {
		t.Fatalf("check after the stop: %v %v", done, err)
	} else if !strings.Contains(why, "parked") {
		t.Errorf("why %q", why)
	}
	if !strings.Contains(strings.Join(env.logs, "\n"), "no manifest of kube-scheduler here") {
		t.Errorf("logs do not say kube-scheduler is absent: %v", env.logs)
	}
	// start-service of kube-apiserver finds the same parked manifest.
	if got := parkedManifest(c, "kube-apiserver"); got != filepath.Join(parked, "kube-apiserver.yaml") {
		t.Errorf("stop-service would park kube-apiserver at %s", got)
	}

	start := &KubeStartControlPlane{Within: plans.Duration(time.Minute)}
	if done, _, _ := start.Check(context.Background(), c, env, ts[0]); done {
		t.Fatal("start check says done while parked")
	}
	env.cmds = nil
	if err := runActions(t, env, start.Describe(c, ts[0])); err != nil {
		t.Fatal(err)
	}
	first := env.cmds[0]
	if i, j := strings.Index(first, "started kube-controller-manager"), strings.Index(first, "started kube-apiserver"); i < 0 || j < i {
		t.Errorf("start is not in reverse order: %s", first)
	}
	for _, n := range []string{"kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(man, n+".yaml")); err != nil {
			t.Errorf("%s not back: %v", n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(man, "kube-scheduler.yaml")); err == nil {
		t.Error("kube-scheduler appeared")
	}
	if done, _, err := start.Check(context.Background(), c, env, ts[0]); !done || err != nil {
		t.Fatalf("start check after the start: %v %v", done, err)
	}
}

func TestKubeStartNoComponentOnHost(t *testing.T) {
	useFakeClock(t)
	dir := t.TempDir()
	c, ts := kubeCtx(t, dir, "static-pod")
	man := filepath.Join(dir, "manifests")
	os.MkdirAll(man, 0o755)
	env := &shEnv{bin: fakeKubelet(t, man, t.TempDir())}
	start := &KubeStartControlPlane{Within: plans.Duration(time.Minute)}
	err := runActions(t, env, start.Describe(c, ts[1]))
	if err == nil || !strings.Contains(err.Error(), "h2: none of kube-scheduler, kube-controller-manager, kube-apiserver is on this host") {
		t.Fatalf("want wrong-host error, got %v", err)
	}
	if done, _, _ := start.Check(context.Background(), c, env, ts[1]); done {
		t.Error("check says done on a host with no component")
	}
}

// TestKubeStartWaitsForContainer: a manifest back but a container that
// never runs fails at the bound, naming it.
func TestKubeStartWaitsForContainer(t *testing.T) {
	useFakeClock(t)
	dir := t.TempDir()
	c, ts := kubeCtx(t, dir, "static-pod")
	c.Cluster.Kubernetes.Components = []string{"kube-apiserver"}
	man := filepath.Join(dir, "manifests")
	os.MkdirAll(man, 0o755)
	os.MkdirAll(filepath.Join(dir, "etcd-rescue-parked"), 0o755)
	os.WriteFile(filepath.Join(dir, "etcd-rescue-parked", "kube-apiserver.yaml"), nil, 0o600)
	// The runtime looks at another directory: it never runs the pod.
	env := &shEnv{bin: fakeKubelet(t, t.TempDir(), t.TempDir())}
	err := runActions(t, env, (&KubeStartControlPlane{Within: plans.Duration(3 * time.Second)}).Describe(c, ts[0]))
	if err == nil || !strings.Contains(err.Error(), "h1 has no running container of kube-apiserver after its manifest was put back (waited 3s)") {
		t.Fatalf("got %v", err)
	}
	if _, serr := os.Stat(filepath.Join(man, "kube-apiserver.yaml")); serr != nil {
		t.Errorf("manifest not back: %v", serr)
	}
}

func TestKubeSystemdCommands(t *testing.T) {
	dir := t.TempDir()
	c, ts := kubeCtx(t, dir, "systemd")
	stop := (&KubeStopControlPlane{}).Describe(c, ts[0])
	if len(stop) != 1 || stop[0].Cmd != "{ systemctl stop kube-apiserver || { [ $? = 5 ] && echo 'kube-apiserver is not installed here: nothing to stop'; }; } && "+
		"{ systemctl stop kube-controller-manager || { [ $? = 5 ] && echo 'kube-controller-manager is not installed here: nothing to stop'; }; } && "+
		"{ systemctl stop kube-scheduler || { [ $? = 5 ] && echo 'kube-scheduler is not installed here: nothing to stop'; }; }" {
		t.Errorf("stop: %+v", stop)
	}
	start := (&KubeStartControlPlane{}).Describe(c, ts[0])
	if len(start) != 1 || !strings.HasPrefix(start[0].Cmd, "if [ \"$(systemctl show -p LoadState --value kube-scheduler)\" = not-found ]; then echo 'absent kube-scheduler'; else systemctl start kube-scheduler") {
		t.Errorf("start: %+v", start)
	}
}

// TestStartServiceStaticPodWaits: start-service of the etcd static pod
// waits until the etcd container runs.
func TestStartServiceStaticPodWaits(t *testing.T) {
	useFakeClock(t)
	old := containerWithin
	containerWithin = 2 * time.Second
	t.Cleanup(func() { containerWithin = old })
	dir := t.TempDir()
	c, ts := testCtx(t, dir, "static-pod")
	os.MkdirAll(filepath.Join(dir, "manifests"), 0o755)
	os.MkdirAll(filepath.Join(dir, "etcd-rescue-parked"), 0o755)
	os.WriteFile(filepath.Join(dir, "etcd-rescue-parked", "etcd.yaml"), nil, 0o600)
	env := &shEnv{bin: fakeKubelet(t, t.TempDir(), t.TempDir())} // never runs it
	err := runActions(t, env, (&StartService{}).Describe(c, ts[0]))
	if err == nil || !strings.Contains(err.Error(), "has no running container of etcd") {
		t.Fatalf("got %v", err)
	}
	env = &shEnv{bin: fakeKubelet(t, filepath.Join(dir, "manifests"), t.TempDir())}
	if err := runActions(t, env, (&StartService{}).Describe(c, ts[0])); err != nil {
		t.Fatal(err)
	}
	if done, _, err := (&StartService{}).Check(context.Background(), c, env, ts[0]); !done || err != nil {
		t.Errorf("check: %v %v", done, err)
	}
	// missingOK on a host without the manifest: nothing to wait for.
	env = &shEnv{bin: fakeKubelet(t, t.TempDir(), t.TempDir())}
	if err := runActions(t, env, (&StartService{Unit: "kube-apiserver", MissingOK: true}).Describe(c, ts[0])); err != nil {
		t.Fatal(err)
	}
}

// TestStopServiceFollowsControlPlane: with etcd under systemd and the
// control plane as static pods (kubespray), stop-service of kube-apiserver
// parks its manifest; etcd's own unit is still a systemd unit.
func TestStopServiceFollowsControlPlane(t *testing.T) {
	dir := t.TempDir()
	c, ts := kubeCtx(t, dir, "static-pod")
	c.Cluster.Layout.Service = "systemd"
	api := (&StopService{Unit: "kube-apiserver"}).Describe(c, ts[0])
	if len(api) != 2 || !strings.Contains(api[0].Cmd, "mv "+filepath.Join(dir, "manifests", "kube-apiserver.yaml")) {
		t.Errorf("kube-apiserver: %+v", api)
	}
	etcd := (&StopService{}).Describe(c, ts[0])
	if len(etcd) != 1 || !strings.HasPrefix(etcd[0].Cmd, "systemctl stop etcd") {
		t.Errorf("etcd: %+v", etcd)
	}
	c.Cluster.Kubernetes.ControlPlane = "systemd"
	if api := (&StopService{Unit: "kube-apiserver"}).Describe(c, ts[0]); !strings.HasPrefix(api[0].Cmd, "systemctl stop kube-apiserver") {
		t.Errorf("systemd control plane: %+v", api)
	}
}
