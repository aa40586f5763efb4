package steps

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
)

var q = shellquote.Quote
var join = shellquote.Join

// unitOrDefault returns the unit named by a step or the cluster's etcd unit.
func unitOrDefault(c *Ctx, unit string) string {
	if unit == "" {
		return c.Cluster.Layout.Unit
	}
	return unit
}

// staticPod reports whether unit runs as a kubelet static pod: etcd's own
// unit as cluster.layout.service says; a component of cluster.kubernetes as
// its controlPlane says (kubespray: etcd under systemd, kube-apiserver a
// static pod); any other unit as etcd does.
func staticPod(c *Ctx, unit string) bool {
	if k := c.Cluster.Kubernetes; k != nil && unit != c.Cluster.Layout.Unit && containsStr(k.Components, unit) {
		return k.ControlPlane == "static-pod"
	}
	return c.Cluster.Layout.Service == "static-pod"
}

// staticManifest is where the kubelet reads the unit's static pod: etcd's
// is cluster.layout.manifest; any other unit's is NAME.yaml in
// cluster.kubernetes.manifests, or beside etcd's without that section.
func staticManifest(c *Ctx, unit string) string {
	if unit == c.Cluster.Layout.Unit {
		return c.Cluster.Layout.Manifest
	}
	if k := c.Cluster.Kubernetes; k != nil && k.Manifests != "" {
		return path.Join(k.Manifests, unit+".yaml")
	}
	return path.Join(path.Dir(c.Cluster.Layout.Manifest), unit+".yaml")
}

// parkedManifest is where a stopped static pod's manifest is kept: in
// etcd-rescue-parked beside the kubelet's directory (/etc/kubernetes/
// etcd-rescue-parked for kubeadm), so stop-service, start-service and the
// kube-* steps find each other's parked manifests.
func parkedManifest(c *Ctx, unit string) string {
	m := staticManifest(c, unit)
	return path.Join(path.Dir(path.Dir(m)), "etcd-rescue-parked", path.Base(m))
}

// containerWithin bounds the container waits of stop-service and
// start-service for a static pod: the kubelet stops a pod within its grace
// period (30 s by default) and starts one seconds after its manifest is
// back, once its image is there. A variable for the tests.
var containerWithin = 2 * time.Minute

// StopService stops a service: systemctl stop, or for a static pod, the
// manifest moved out of the kubelet's directory.
type StopService struct {
	Unit        string `yaml:"unit" doc:"systemd unit or static pod name; default: cluster.layout.unit (etcd)"`
	Disable     bool   `yaml:"disable" doc:"also disable the unit, so a reboot cannot start it (fencing): systemctl disable --no-reload, in the same command as the stop"`
	Unreachable string `yaml:"unreachable" enum:"fail|skip" default:"fail" doc:"what to do when the host does not answer: fail the step, or record it and go on (a dead host cannot run etcd)"`
}

// SkipsUnreachable: with unreachable: skip, a host that cannot be reached
// at all is skipped (a dead host runs no service).
func (s *StopService) SkipsUnreachable() bool { return s.Unreachable == "skip" }

// StopsUnit: see [StopsService].
func (s *StopService) StopsUnit(c *Ctx) string { return unitOrDefault(c, s.Unit) }

func (s *StopService) Describe(c *Ctx, t Target) []Action {
	unit := unitOrDefault(c, s.Unit)
	if staticPod(c, unit) {
		m, parked := staticManifest(c, unit), parkedManifest(c, unit)
		h := t.Name()
		return []Action{
			{Host: h, Kind: Shell, Cmd: join("mkdir", "-p", path.Dir(parked)) + " && if [ -e " + q(m) + " ]; then " + join("mv", m, parked) + "; fi"},
			{Host: h, Kind: Wait, Cmd: fmt.Sprintf("wait up to %s until %s prints nothing", fmtDuration(containerWithin), runningCmd(unit)),
				Run: func(ctx context.Context, env Env) error {
					return waitContainers(ctx, env, h, []string{unit}, false, containerWithin)
				}},
		}
	}
	// Exit 5 is systemctl's "unit not loaded": a unit that is not installed
	// is not running (kube-apiserver is absent on dedicated etcd hosts),
	// and cannot start at boot either, so there is nothing to disable.
	// Stop and disable are one remote command (one round trip); the Check
	// asks for both, so a run killed in between disables it on resume.
	cmd := join("systemctl", "stop", unit)
	missing := " || { [ $? = 5 ] && echo " + q(unit+" is not installed here: nothing to stop") + "; }"
	if s.Disable {
		cmd += " && " + disableCmd(unit)
		missing = " || { [ $? = 5 ] && echo " + q(unit+" is not installed here: nothing to stop or disable") + "; }"
	}
	return []Action{{Host: t.Name(), Kind: Shell, Cmd: cmd + missing}}
}

// enableCmd and disableCmd change whether a unit starts at boot without
// the daemon-reload that systemctl enable/disable do by default (0.6 s
// alone on the lab's systemd 252, 1.5 s with three hosts at once; a reload
// re-reads every unit file and reruns the generators). Nothing here needs
// the reload:
//   - a boot reads the [Install] symlinks (multi-user.target.wants/) from
//     disk, and those are what enable/disable write, reload or not;
//   - systemctl is-enabled (the Checks below) asks systemd's
//     GetUnitFileState, which reads the unit files and symlinks from disk
//     on every call (systemd src/core/dbus-manager.c
//     method_get_unit_file_state -> unit_file_get_state), not the loaded
//     units; systemctl runs daemon_reload after enable/disable only when
//     --no-reload is not given (src/systemctl/systemctl-enable.c);
//   - the unit files themselves are unchanged, so the loaded unit needs no
//     reload to start or stop.
//
// What the reload would also have done: drop (or add) the in-memory
// Wants= of multi-user.target on etcd. Without it, starting or isolating
// multi-user.target again before the next reload or boot still pulls a
// disabled etcd in; nothing in a recovery does that, and a boot reads the
// symlinks afresh. Checked on the lab's systemd 252: enable --no-reload
// then is-enabled says enabled, disable --no-reload then is-enabled says
// disabled, and the symlink appears and goes.
func enableCmd(unit string) string {
	return join("systemctl", "enable", "--no-reload", "--quiet", unit)
}
func disableCmd(unit string) string {
	return join("systemctl", "disable", "--no-reload", "--quiet", unit)
}

func (s *StopService) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	unit := unitOrDefault(c, s.Unit)
	if staticPod(c, unit) {
		return remoteTest(ctx, env, t, "! [ -e "+q(staticManifest(c, unit))+" ] && out=$("+runningCmd(unit)+") && [ -z \"$out\" ]", unit+" manifest is parked and no container of it runs")
	}
	if s.Disable {
		// Stopped AND disabled: a run killed between the two, in the one
		// command that does both, disables it on resume.
		return remoteTest(ctx, env, t, "! systemctl is-active --quiet "+q(unit)+" && ! systemctl is-enabled --quiet "+q(unit), unit+" is not active, and not enabled")
	}
	return remoteTest(ctx, env, t, "! systemctl is-active --quiet "+q(unit), unit+" is not active")
}

// StartService starts a service again. A restored etcd with Type=notify
// blocks in systemctl start until it has quorum, so etcd is started with
// --no-block by default and a wait-healthy step waits for the cluster.
type StartService struct {
	Unit   string `yaml:"unit" doc:"systemd unit or static pod name; default: cluster.layout.unit (etcd)"`
	Enable bool   `yaml:"enable" doc:"also enable the unit (after a fencing stop with disable): systemctl enable --no-reload, in the same command as the start"`
	Block  *bool  `yaml:"block" doc:"wait for systemctl start to finish; default false for etcd (members of a new cluster must start together), true otherwise"`
	// MissingOK is for units that only some hosts have.
	MissingOK bool `yaml:"missingOK" doc:"a host without this unit is fine (kube-apiserver on dedicated etcd hosts); default: fail"`
}

// StartsUnit: see [StartsService].
func (s *StartService) StartsUnit(c *Ctx) string { return unitOrDefault(c, s.Unit) }

func (s *StartService) Describe(c *Ctx, t Target) []Action {
	unit := unitOrDefault(c, s.Unit)
	if staticPod(c, unit) {
		m, parked := staticManifest(c, unit), parkedManifest(c, unit)
		cmd := "if [ -e " + q(parked) + " ]; then " + join("mv", parked, m) + "; fi"
		if !s.MissingOK {
			cmd += " && test -e " + q(m)
		}
		h := t.Name()
		var present bool // the manifest is in place: wait for its container
		return []Action{
			{Host: h, Kind: Shell, Cmd: cmd, Run: func(ctx context.Context, env Env) error {
				r, err := env.Shell(h)
				if err != nil {
					return err
				}
				if _, err := r.Run(ctx, cmd, nil); err != nil {
					return err
				}
				present = true
				if s.MissingOK {
					var ee *ExitError
					_, err := r.Run(ctx, "test -e "+q(m), nil)
					if errors.As(err, &ee) {
						present = false
						env.Logf("%s: no manifest of %s here: nothing to start", h, unit)
						return nil
					}
					return err
				}
				return nil
			}},
			{Host: h, Kind: Wait, Cmd: fmt.Sprintf("wait up to %s until %s prints a container id", fmtDuration(containerWithin), runningCmd(unit)),
				Run: func(ctx context.Context, env Env) error {
					if !present {
						return nil
					}
					return waitContainers(ctx, env, h, []string{unit}, true, containerWithin)
				}},
		}
	}
	block := unit != c.Cluster.Layout.Unit
	if s.Block != nil {
		block = *s.Block
	}
	cmd := join("systemctl", "start", unit)
	if !block {
		cmd = join("systemctl", "start", "--no-block", unit)
	}
	if s.Enable {
		// Enabled after the start, in the same remote command (one round
		// trip, and no daemon-reload: see [enableCmd]); the Check asks for
		// both, so a run killed in between enables it on resume.
		cmd += " && " + enableCmd(unit)
	}
	if s.MissingOK {
		if s.Enable {
			cmd = "{ " + cmd + "; }"
		}
		cmd += " || { [ $? = 5 ] && echo " + q(unit+" is not installed here: nothing to start") + "; }"
	}
	h := t.Name()
	acts := []Action{{Host: h, Kind: Shell, Cmd: cmd, Run: func(ctx context.Context, env Env) error {
		r, err := env.Shell(h)
		if err != nil {
			return err
		}
		_, err = r.Run(ctx, cmd, nil)
		var ee *ExitError
		if errors.As(err, &ee) && ctx.Err() == nil {
			// A blocking start that failed: say why, from the unit.
			if se := UnitFailure(ctx, env, h, unit); se != nil {
				return fmt.Errorf("%w\n  (%w)", se, err)
			}
		}
		return err
	}}}
	return acts
}

func (s *StartService) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	unit := unitOrDefault(c, s.Unit)
	if staticPod(c, unit) {
		m := q(staticManifest(c, unit))
		test := "[ -e " + m + " ] && out=$(" + runningCmd(unit) + ") && [ -n \"$out\" ]"
		if s.MissingOK {
			test = "{ " + test + "; } || { ! [ -e " + m + " ] && ! [ -e " + q(parkedManifest(c, unit)) + " ]; }"
		}
		return remoteTest(ctx, env, t, test, unit+" manifest is in place and its container runs")
	}
	test := "systemctl is-active --quiet " + q(unit) + " || [ \"$(systemctl show -p ActiveState --value " + q(unit) + ")\" = activating ]"
	why := unit + " is active or activating"
	if s.Enable {
		test = "{ " + test + "; } && systemctl is-enabled --quiet " + q(unit)
		why += ", and enabled"
	}
	if s.MissingOK {
		test = "{ " + test + "; } || [ \"$(systemctl show -p LoadState --value " + q(unit) + ")\" = not-found ]"
	}
	return remoteTest(ctx, env, t, test, why)
}

// remoteTest runs a read-only test on t's host: exit 0 means done.
func remoteTest(ctx context.Context, env Env, t Target, cmd, why string) (bool, string, error) {
	r, err := env.Shell(t.Name())
	if err != nil {
		return false, "", err
	}
	_, err = r.Run(ctx, cmd, nil)
	if err == nil {
		return true, why, nil
	}
	if _, ok := err.(*ExitError); ok {
		return false, "", nil
	}
	return false, "", err
}
