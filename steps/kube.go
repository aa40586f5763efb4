package steps

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// The Kubernetes side of a recovery (cluster.kubernetes): the control
// plane is stopped before etcd is replaced, so that no API server serves or
// caches the old data meanwhile, and no controller acts on it; it is started
// once etcd is healthy; its API servers must then be ready; and clients
// must relist, which a watch from a revision before the restore proves
// (410 Gone).

// kubeOf is cluster.kubernetes (nil when the plan has none).
func kubeOf(c *Ctx) *plans.Kubernetes {
	if c == nil || c.Cluster == nil {
		return nil
	}
	return c.Cluster.Kubernetes
}

// controlPlaneHosts are the hosts of cluster.kubernetes.hosts.
func controlPlaneHosts(p *plans.Plan) []string {
	if p == nil || p.Cluster == nil || p.Cluster.Kubernetes == nil {
		return nil
	}
	return p.Cluster.Kubernetes.Hosts
}

// componentManifest is where the kubelet reads a component's static pod.
func componentManifest(c *Ctx, name string) string {
	return staticManifest(c, name)
}

// containerPoll is how often a container wait asks crictl again. The
// kubelet stops or starts a static pod seconds after its manifest moves;
// a quarter second is well under that and costs one short command.
const containerPoll = 250 * time.Millisecond

// runningCmd asks the container runtime for the ids of the running
// containers named exactly name (crictl's --name is a regular expression
// on the container name; kubeadm names each static pod's container after
// the component).
func runningCmd(name string) string {
	return "crictl ps -q --state Running --name " + q("^"+regexp.QuoteMeta(name)+"$")
}

var containerIDRe = regexp.MustCompile(`^[0-9a-f]{6,64}$`)

// containerIDs reads the output of [runningCmd]: one container id a line.
// Anything else is an error, not "no container": a crictl that prints a
// warning or a table instead of ids has not said that nothing runs.
func containerIDs(out []byte) ([]string, error) {
	var ids []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if !containerIDRe.MatchString(l) {
			return nil, fmt.Errorf("crictl printed %q, not a container id", l)
		}
		ids = append(ids, l)
	}
	return ids, nil
}

// shortIDs shows container ids as crictl ps does (13 characters).
func shortIDs(ids []string) string {
	var out []string
	for _, id := range ids {
		if len(id) > 13 {
			id = id[:13]
		}
		out = append(out, id)
	}
	return strings.Join(out, ", ")
}

// waitContainers waits, up to within, until the container runtime on host
// has a running container of every one of names (running) or of none of
// them (!running). It asks crictl every [containerPoll]; the error at the
// bound names the host, each component still waited for and what crictl
// showed last. A host without crictl fails at once.
func waitContainers(ctx context.Context, env Env, host string, names []string, running bool, within time.Duration) error {
	if len(names) == 0 {
		return nil
	}
	r, err := env.Shell(host)
	if err != nil {
		return err
	}
	start := waitClock.Now()
	pending := append([]string(nil), names...)
	last := map[string]string{}
	for {
		var still []string
		for _, n := range pending {
			out, err := r.Run(ctx, runningCmd(n), nil)
			var ee *ExitError
			switch {
			case err != nil && ctx.Err() != nil:
				return ctx.Err()
			case errors.As(err, &ee) && ee.Code == 127:
				return fmt.Errorf("%s: crictl is not installed there (or not on PATH): the container runtime cannot be asked whether %s runs", host, n)
			case err != nil:
				last[n] = "crictl failed: " + oneLineErr(err)
				still = append(still, n)
				continue
			}
			ids, perr := containerIDs(out)
			switch {
			case perr != nil:
				last[n] = perr.Error()
			case len(ids) > 0 && !running:
				last[n] = "still running: container " + shortIDs(ids)
			case len(ids) == 0 && running:
				last[n] = "no running container"
			default:
				delete(last, n)
				continue
			}
			still = append(still, n)
		}
		pending = still
		if len(pending) == 0 {
			return nil
		}
		if waitClock.Now().Sub(start) >= within {
			return &ContainerWaitError{Host: host, Running: running, Within: within, Last: pickLast(pending, last)}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%s)", ctx.Err(), (&ContainerWaitError{Host: host, Running: running, Within: within, Last: pickLast(pending, last)}).detail())
		case <-waitClock.After(containerPoll):
		}
	}
}

func pickLast(pending []string, last map[string]string) []ComponentState {
	var out []ComponentState
	for _, n := range pending {
		out = append(out, ComponentState{Name: n, Shows: last[n]})
	}
	return out
}

// ComponentState is what crictl showed last for one component.
type ComponentState struct {
	Name  string
	Shows string
}

// ContainerWaitError is a container wait that reached its bound.
type ContainerWaitError struct {
	Host    string
	Running bool // waited for running containers (a start), else for none (a stop)
	Within  time.Duration
	Last    []ComponentState
}

func (e *ContainerWaitError) detail() string {
	var parts []string
	for _, s := range e.Last {
		parts = append(parts, s.Name+": "+s.Shows)
	}
	return "crictl ps --state Running on " + e.Host + ": " + strings.Join(parts, "; ")
}

func (e *ContainerWaitError) Error() string {
	var names []string
	for _, s := range e.Last {
		names = append(names, s.Name)
	}
	what := "still has a running container of " + strings.Join(names, ", ") + " after its manifest was moved out"
	if e.Running {
		what = "has no running container of " + strings.Join(names, ", ") + " after its manifest was put back"
	}
	return fmt.Sprintf("%s %s (waited %s): %s", e.Host, what, fmtDuration(e.Within), e.detail())
}

// KubeStopControlPlane stops the Kubernetes control plane on a host:
// every component of cluster.kubernetes.components that is there, in that
// order.
type KubeStopControlPlane struct {
	Within      plans.Duration `yaml:"within" default:"2m" rescue:"positive" doc:"static-pod: how long the container runtime may still run a component after its manifest is parked (the kubelet stops it within its grace period)"`
	Unreachable string         `yaml:"unreachable" enum:"fail|skip" default:"fail" doc:"what to do when a control-plane host does not answer: fail the step, or record it and go on (a dead host runs no API server; quorum loss with hosts gone for good)"`
}

// SkipsUnreachable: with unreachable: skip, a control-plane host that
// cannot be reached at all is skipped (a dead host runs no API server).
func (s *KubeStopControlPlane) SkipsUnreachable() bool { return s.Unreachable == "skip" }

func (*KubeStopControlPlane) UsesKubernetes() bool { return true }

// DefaultOn: the control-plane hosts (cluster.kubernetes.hosts).
func (*KubeStopControlPlane) DefaultOn(p *plans.Plan) []string { return controlPlaneHosts(p) }

// StopsUnits: see [StopsServices].
func (*KubeStopControlPlane) StopsUnits(c *Ctx) []string {
	if k := kubeOf(c); k != nil {
		return k.Components
	}
	return nil
}

func (*KubeStopControlPlane) NoLane() string {
	return "the control plane stops on every host before anything after it"
}

func (s *KubeStopControlPlane) DefaultTimeout() (time.Duration, string) {
	return withinPlus(s.Within.D(), 1, time.Minute)
}

// parkLine is one component of the static-pod park command: it prints
// what it found.
func parkLine(c *Ctx, name string) string {
	m, parked := componentManifest(c, name), parkedManifest(c, name)
	return "if [ -e " + q(m) + " ]; then " + join("mv", m, parked) + " && echo " + q("parked "+name) +
		"; elif [ -e " + q(parked) + " ]; then echo " + q("already-parked "+name) +
		"; else echo " + q("absent "+name) + "; fi"
}

// runReport runs cmd on host h and reads the "VERB NAME" lines it prints.
func runReport(ctx context.Context, env Env, h, cmd string) (map[string]string, error) {
	r, err := env.Shell(h)
	if err != nil {
		return nil, err
	}
	out, err := r.Run(ctx, cmd, nil)
	if err != nil {
		return nil, err
	}
	return reportLines(out), nil
}

// reportLines reads what the park and unpark commands printed: verb name
// a line.
func reportLines(out []byte) map[string]string {
	got := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if verb, name, ok := strings.Cut(strings.TrimSpace(l), " "); ok {
			got[name] = verb
		}
	}
	return got
}

func (s *KubeStopControlPlane) Describe(c *Ctx, t Target) []Action {
	k := kubeOf(c)
	if k == nil || len(k.Components) == 0 {
		return []Action{{Host: t.Name(), Kind: Shell, Cmd: "# cluster.kubernetes names no component"}}
	}
	h := t.Name()
	if k.ControlPlane == "systemd" {
		var parts []string
		for _, n := range k.Components {
			parts = append(parts, "{ "+join("systemctl", "stop", n)+" || { [ $? = 5 ] && echo "+q(n+" is not installed here: nothing to stop")+"; }; }")
		}
		return []Action{{Host: h, Kind: Shell, Cmd: strings.Join(parts, " && ")}}
	}
	parts := []string{join("mkdir", "-p", path.Dir(parkedManifest(c, k.Components[0])))}
	for _, n := range k.Components {
		parts = append(parts, "{ "+parkLine(c, n)+"; }")
	}
	cmd := strings.Join(parts, " && ")
	var waits []string
	for _, n := range k.Components {
		waits = append(waits, runningCmd(n))
	}
	within := s.Within.D()
	return []Action{
		{Host: h, Kind: Shell, Cmd: cmd, Run: func(ctx context.Context, env Env) error {
			got, err := runReport(ctx, env, h, cmd)
			if err != nil {
				return err
			}
			var absent []string
			for _, n := range k.Components {
				switch got[n] {
				case "parked":
					env.Logf("%s: parked %s (the kubelet stops it)", h, componentManifest(c, n))
				case "already-parked":
					env.Logf("%s: %s was parked already", h, n)
				default:
					absent = append(absent, n)
				}
			}
			if len(absent) == len(k.Components) {
				env.Logf("%s: none of %s has a manifest in %s: nothing to stop here (is it a control-plane host?)", h, strings.Join(k.Components, ", "), k.Manifests)
			} else if len(absent) > 0 {
				env.Logf("%s: no manifest of %s here: not run on this host", h, strings.Join(absent, ", "))
			}
			return nil
		}},
		{Host: h, Kind: Wait, Cmd: fmt.Sprintf("wait up to %s until each of these prints nothing: %s", fmtDuration(within), strings.Join(waits, "; ")),
			Run: func(ctx context.Context, env Env) error {
				return waitContainers(ctx, env, h, k.Components, false, within)
			}},
	}
}

// Check: every component's manifest is out of the kubelet's directory (or
// its unit is not active), and no container of any is running.
func (s *KubeStopControlPlane) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	k := kubeOf(c)
	if k == nil {
		return false, "", nil
	}
	var tests []string
	for _, n := range k.Components {
		if k.ControlPlane == "systemd" {
			tests = append(tests, "! systemctl is-active --quiet "+q(n))
			continue
		}
		tests = append(tests, "! [ -e "+q(componentManifest(c, n))+" ]", "out=$("+runningCmd(n)+") && [ -z \"$out\" ]")
	}
	why := strings.Join(k.Components, ", ") + " not active"
	if k.ControlPlane != "systemd" {
		why = "manifests of " + strings.Join(k.Components, ", ") + " parked and no container of them running"
	}
	return remoteTest(ctx, env, t, strings.Join(tests, " && "), why)
}

// KubeStartControlPlane starts the control plane on a host again, in the
// reverse order of components:.
type KubeStartControlPlane struct {
	Within plans.Duration `yaml:"within" default:"2m" rescue:"positive" doc:"static-pod: how long the kubelet may take to run a component's container after its manifest is back"`
}

func (*KubeStartControlPlane) UsesKubernetes() bool { return true }

// DefaultOn: the control-plane hosts (cluster.kubernetes.hosts).
func (*KubeStartControlPlane) DefaultOn(p *plans.Plan) []string { return controlPlaneHosts(p) }

func (*KubeStartControlPlane) NoLane() string {
	return "the control plane starts once etcd is back on every member"
}

func (s *KubeStartControlPlane) DefaultTimeout() (time.Duration, string) {
	return withinPlus(s.Within.D(), 1, time.Minute)
}

func reversed(in []string) []string {
	out := append([]string(nil), in...)
	slices.Reverse(out)
	return out
}

// unparkLine is one component of the static-pod start command.
func unparkLine(c *Ctx, name string) string {
	m, parked := componentManifest(c, name), parkedManifest(c, name)
	return "if [ -e " + q(parked) + " ]; then " + join("mv", parked, m) + " && echo " + q("started "+name) +
		"; elif [ -e " + q(m) + " ]; then echo " + q("in-place "+name) +
		"; else echo " + q("absent "+name) + "; fi"
}

func (s *KubeStartControlPlane) Describe(c *Ctx, t Target) []Action {
	k := kubeOf(c)
	if k == nil || len(k.Components) == 0 {
		return []Action{{Host: t.Name(), Kind: Shell, Cmd: "# cluster.kubernetes names no component"}}
	}
	h := t.Name()
	order := reversed(k.Components)
	var cmd string
	if k.ControlPlane == "systemd" {
		var parts []string
		for _, n := range order {
			parts = append(parts, "if [ \"$("+join("systemctl", "show", "-p", "LoadState", "--value", n)+")\" = not-found ]; then echo "+q("absent "+n)+
				"; else "+join("systemctl", "start", n)+" && echo "+q("started "+n)+"; fi")
		}
		cmd = strings.Join(parts, " && ")
	} else {
		var parts []string
		for _, n := range order {
			parts = append(parts, "{ "+unparkLine(c, n)+"; }")
		}
		cmd = strings.Join(parts, " && ")
	}
	var present []string // set by the first action for the wait
	acts := []Action{{Host: h, Kind: Shell, Cmd: cmd, Run: func(ctx context.Context, env Env) error {
		got, err := runReport(ctx, env, h, cmd)
		if err != nil {
			return err
		}
		present = present[:0]
		var absent []string
		for _, n := range order {
			if v := got[n]; v == "started" || v == "in-place" {
				present = append(present, n)
			} else {
				absent = append(absent, n)
			}
		}
		if len(present) == 0 {
			where := "no unit of any is installed"
			if k.ControlPlane != "systemd" {
				where = "no manifest of any is in " + k.Manifests + " or parked in " + path.Dir(parkedManifest(c, order[0]))
			}
			return fmt.Errorf("%s: none of %s is on this host (%s): it is not a control-plane host of this cluster, or the manifests were moved by hand",
				h, strings.Join(order, ", "), where)
		}
		if len(absent) > 0 {
			env.Logf("%s: %s not on this host (it was not there before): not started", h, strings.Join(absent, ", "))
		}
		return nil
	}}}
	if k.ControlPlane == "systemd" {
		return acts
	}
	var waits []string
	for _, n := range order {
		waits = append(waits, runningCmd(n))
	}
	within := s.Within.D()
	return append(acts, Action{Host: h, Kind: Wait,
		Cmd: fmt.Sprintf("wait up to %s until each of these prints a container id, for the components whose manifest is back: %s", fmtDuration(within), strings.Join(waits, "; ")),
		Run: func(ctx context.Context, env Env) error {
			return waitContainers(ctx, env, h, present, true, within)
		}})
}

// Check: every component that is on the host runs (static pod: manifest in
// place and a running container), and at least one is on the host.
func (s *KubeStartControlPlane) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	k := kubeOf(c)
	if k == nil {
		return false, "", nil
	}
	var tests, any []string
	for _, n := range k.Components {
		if k.ControlPlane == "systemd" {
			missing := "[ \"$(systemctl show -p LoadState --value " + q(n) + ")\" = not-found ]"
			tests = append(tests, "{ systemctl is-active --quiet "+q(n)+" || "+missing+"; }")
			any = append(any, "! "+missing)
			continue
		}
		m, parked := q(componentManifest(c, n)), q(parkedManifest(c, n))
		tests = append(tests, "{ { [ -e "+m+" ] && out=$("+runningCmd(n)+") && [ -n \"$out\" ]; } || { ! [ -e "+m+" ] && ! [ -e "+parked+" ]; }; }")
		any = append(any, "[ -e "+m+" ]")
	}
	test := strings.Join(tests, " && ") + " && { " + strings.Join(any, " || ") + "; }"
	return remoteTest(ctx, env, t, test, "the components on this host run")
}

// HostDialer is implemented by an Env that opens TCP connections to
// services on a plan host's network the way cluster.clientAccess says:
// through that host's SSH connection (ssh-tunnel) or directly.
type HostDialer interface {
	DialHost(ctx context.Context, host, addr string) (net.Conn, error)
}

// apiServerFiles are cluster.kubernetes.apiServer's local files, resolved
// against the file that defined cluster: (as cluster.tls).
func apiServerFiles(c *Ctx) (ca, cert, key string) {
	a := kubeOf(c).APIServer
	base := ""
	if c.Plan != nil {
		base = c.Plan.ClusterBase
	}
	return plans.LocalFile(base, a.CA), plans.LocalFile(base, a.Cert), plans.LocalFile(base, a.Key)
}

// apiServer is how to reach one API server.
type apiServer struct {
	host   string // plan host
	addr   string // address:port
	client *http.Client
}

// url is the https URL of p on the API server.
func (a *apiServer) url(p string) string { return "https://" + a.addr + p }

// apiServers builds a client per control-plane host. withCert sends the
// client certificate (when apiServer.cert/key are set).
func apiServers(c *Ctx, env Env, hosts []string) ([]*apiServer, error) {
	k := kubeOf(c)
	if k == nil || k.APIServer == nil {
		return nil, errors.New("cluster.kubernetes.apiServer is not set")
	}
	caFile, certFile, keyFile := apiServerFiles(c)
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("kubernetes.apiServer.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kubernetes.apiServer.ca %s holds no PEM certificate", caFile)
		}
		base.RootCAs = pool
	}
	if certFile != "" && keyFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			// The error names the files, never their content.
			return nil, fmt.Errorf("kubernetes.apiServer.cert/key: %w", err)
		}
		base.Certificates = []tls.Certificate{pair}
	}
	var out []*apiServer
	for _, h := range hosts {
		ph := c.Plan.Hosts[h]
		if ph == nil {
			return nil, fmt.Errorf("control-plane host %q is not in hosts", h)
		}
		tc := base.Clone()
		tc.ServerName = ph.Address
		if k.APIServer.ServerName != "" {
			tc.ServerName = k.APIServer.ServerName
		}
		host := h
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			if d, ok := env.(HostDialer); ok {
				return d.DialHost(ctx, host, addr)
			}
			var nd net.Dialer
			return nd.DialContext(ctx, network, addr)
		}
		tr := &http.Transport{DialContext: dial, TLSClientConfig: tc, DisableKeepAlives: true,
			TLSHandshakeTimeout: 5 * time.Second, ResponseHeaderTimeout: 10 * time.Second}
		out = append(out, &apiServer{host: h, addr: net.JoinHostPort(ph.Address, strconv.Itoa(k.APIServer.Port)), client: &http.Client{Transport: tr}})
	}
	return out, nil
}

// kubeHosts are the API servers a once-step asks: the hosts on: selects,
// else the control-plane hosts.
func kubeHosts(c *Ctx) []string {
	var out []string
	for _, t := range c.Selected {
		if t.Host != nil {
			out = append(out, t.Host.Name)
		}
	}
	if len(out) == 0 {
		out = controlPlaneHosts(c.Plan)
	}
	return out
}

// validateAPIServer reports what a step that talks to the API servers
// needs from cluster.kubernetes.apiServer.
func validateAPIServer(c *Ctx, typ string, needCert bool, at At, fs *plans.Findings) {
	k := kubeOf(c)
	if k == nil || k.APIServer == nil {
		return // the engine reports the missing section (UsesKubernetes)
	}
	a := k.APIServer
	if a.CA == "" {
		fs.Add(a.At(k, "ca"), "%s needs cluster.kubernetes.apiServer.ca: the API servers' serving certificates are verified, never trusted blindly", typ).
			WithHint("kubeadm: a copy of /etc/kubernetes/pki/ca.crt on this machine")
	}
	if needCert && (a.Cert == "" || a.Key == "") {
		fs.Add(a.At(k, "cert"), "%s needs cluster.kubernetes.apiServer.cert and key: a watch is not allowed anonymously", typ).
			WithHint("an identity allowed to list and watch configmaps, e.g. kubeadm's /etc/kubernetes/pki/apiserver-kubelet-client.crt and .key, or a client certificate of the admin.conf user")
	}
}
