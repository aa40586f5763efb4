package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// While a step waits on a member (a learner catching up, a member coming
// up), the service on that member's host is watched beside the poll: an
// etcd that cannot start (binary missing, data dir unwritable, a bad flag)
// ends the wait within seconds with its exit status and its last log lines,
// instead of a poll that runs into its deadline.

// watchEvery is the pause between two looks at a watched service; the
// first look comes after one pause, so a wait that ends sooner costs
// nothing.
var watchEvery = 3 * time.Second

// journalLines is how many of the service's log lines a failure shows;
// journalRead how many of the last ones are read to pick them from (see
// [PickLogLines]).
const (
	journalLines = 15
	journalRead  = 200
)

// ServiceError is a watched service that failed or keeps restarting while a
// step waited on it.
type ServiceError struct {
	Host string
	Unit string
	// State says what was seen: "failed", "restarting (auto-restart)",
	// "restarted 2 times while waiting", "container exited".
	State string
	// Status is the exit status as systemd or the container runtime gives
	// it ("exit status 203 (status=203/EXEC)"), or "".
	Status string
	// Lines are the service's last log lines (journal or container log).
	Lines []string
}

func (e *ServiceError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s on %s cannot run: %s", e.Unit, e.Host, e.State)
	if e.Status != "" {
		b.WriteString(", last " + e.Status)
	}
	if len(e.Lines) == 0 {
		b.WriteString(" (no log lines)")
	}
	for _, l := range e.Lines {
		b.WriteString("\n  log: " + l)
	}
	return b.String()
}

// UnitState is the part of `systemctl show` the watch reads.
type UnitState struct {
	LoadState      string
	ActiveState    string
	SubState       string
	Result         string
	ExecMainCode   int // CLD_EXITED 1, CLD_KILLED 2, CLD_DUMPED 3; 0: never ran
	ExecMainStatus int
	NRestarts      int
}

// unitShowCommand is the one cheap command the watch runs per look.
func unitShowCommand(unit string) string {
	return join("systemctl", "show", "-p", "LoadState,ActiveState,SubState,Result,ExecMainStatus,ExecMainCode,NRestarts", unit)
}

// ParseUnitState reads `systemctl show -p ...` output (KEY=VALUE lines);
// unknown keys and lines are ignored, so it never fails.
func ParseUnitState(out string) UnitState {
	var u UnitState
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(v)
		switch k {
		case "LoadState":
			u.LoadState = v
		case "ActiveState":
			u.ActiveState = v
		case "SubState":
			u.SubState = v
		case "Result":
			u.Result = v
		case "ExecMainCode":
			u.ExecMainCode = n
		case "ExecMainStatus":
			u.ExecMainStatus = n
		case "NRestarts":
			u.NRestarts = n
		}
	}
	return u
}

// systemd's own exit codes of a service that could not even be executed
// (systemd.exec(5), "Process Exit Codes"), and the common shell ones.
var exitNames = map[int]string{
	1: "FAILURE", 2: "INVALIDARGUMENT", 3: "NOTIMPLEMENTED", 4: "NOPERMISSION", 5: "NOTINSTALLED", 6: "NOTCONFIGURED",
	200: "CHDIR", 201: "NICE", 202: "FDS", 203: "EXEC", 204: "MEMORY", 205: "LIMITS", 206: "OOM_ADJUST",
	207: "SIGNAL_MASK", 208: "STDIN", 209: "STDOUT", 210: "CHROOT", 211: "IOPRIO", 212: "TIMERSLACK",
	213: "SECUREBITS", 214: "SETSCHEDULER", 215: "CPUAFFINITY", 216: "GROUP", 217: "USER", 218: "CAPABILITIES",
	219: "CGROUP", 220: "SETSID", 221: "CONFIRM", 222: "STDERR", 224: "PAM", 225: "NETWORK", 226: "NAMESPACE",
	227: "NO_NEW_PRIVILEGES", 228: "SECCOMP", 229: "SELINUX_CONTEXT", 230: "PERSONALITY", 231: "APPARMOR_PROFILE",
	232: "ADDRESS_FAMILIES", 233: "RUNTIME_DIRECTORY", 235: "CHOWN", 236: "SMACK_PROCESS_LABEL", 237: "KEYRING",
	238: "STATE_DIRECTORY", 239: "CACHE_DIRECTORY", 240: "LOGS_DIRECTORY", 241: "CONFIGURATION_DIRECTORY",
}

var signalNames = map[int]string{1: "HUP", 2: "INT", 6: "ABRT", 9: "KILL", 11: "SEGV", 15: "TERM"}

// Status renders the main process's last exit the way systemctl status
// does ("exit status 203 (status=203/EXEC)", "killed by signal 9
// (status=9/KILL)"), or "" when it never ran.
func (u UnitState) Status() string {
	switch u.ExecMainCode {
	case 1:
		name := exitNames[u.ExecMainStatus]
		if u.ExecMainStatus == 0 {
			name = "SUCCESS"
		}
		if name == "" {
			return fmt.Sprintf("exit status %d (status=%d)", u.ExecMainStatus, u.ExecMainStatus)
		}
		return fmt.Sprintf("exit status %d (status=%d/%s)", u.ExecMainStatus, u.ExecMainStatus, name)
	case 2, 3:
		what := "killed"
		if u.ExecMainCode == 3 {
			what = "dumped core"
		}
		name := signalNames[u.ExecMainStatus]
		if name == "" {
			name = strconv.Itoa(u.ExecMainStatus)
		}
		return fmt.Sprintf("%s by signal %d (status=%d/%s)", what, u.ExecMainStatus, u.ExecMainStatus, name)
	}
	return ""
}

// failing says, from one look and the first one (base), why the unit
// cannot run, or "" while it may still come up.
func (u UnitState) failing(base UnitState) string {
	switch {
	case u.LoadState == "not-found":
		return "the unit is not installed"
	case u.ActiveState == "failed":
		r := u.Result
		if r == "" {
			r = "failed"
		}
		return "the unit failed (result " + r + ")"
	case u.SubState == "auto-restart":
		if u.NRestarts == 0 {
			return "the unit exited and systemd is about to start it again (auto-restart)"
		}
		return "the unit exits and is restarted again and again (auto-restart, " + strconv.Itoa(u.NRestarts) + " restarts so far)"
	case u.NRestarts > base.NRestarts:
		return fmt.Sprintf("the unit exited and was restarted %d time(s) while waiting", u.NRestarts-base.NRestarts)
	case u.ActiveState == "inactive" && u.Result != "" && u.Result != "success":
		return "the unit stopped (result " + u.Result + ")"
	}
	return ""
}

// Container is the part of `crictl inspect` the static-pod watch reads.
type Container struct {
	ID       string
	State    string // CONTAINER_RUNNING, CONTAINER_EXITED, ...
	ExitCode int
	Attempt  int
	Reason   string
}

// ParseContainer reads `crictl inspect` JSON output.
func ParseContainer(out []byte) (Container, error) {
	var v struct {
		Status struct {
			ID       string `json:"id"`
			State    string `json:"state"`
			ExitCode int    `json:"exitCode"`
			Reason   string `json:"reason"`
			Metadata struct {
				Attempt int `json:"attempt"`
			} `json:"metadata"`
		} `json:"status"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return Container{}, fmt.Errorf("reading crictl inspect: %w", err)
	}
	return Container{ID: v.Status.ID, State: v.Status.State, ExitCode: v.Status.ExitCode, Attempt: v.Status.Metadata.Attempt, Reason: v.Status.Reason}, nil
}

// failing says why the container cannot run, from one look and the first
// one (base): the first look may still show the container the kubelet
// stopped before (exited, status 0), so an exit counts only for a newer
// container or with a failure status.
func (k Container) failing(base Container) string {
	switch {
	case k.State == "CONTAINER_EXITED" && (k.ExitCode != 0 || k.ID != base.ID):
		return "the container exited"
	case k.ID != base.ID && k.Attempt > base.Attempt:
		return fmt.Sprintf("the container was restarted %d time(s) while waiting", k.Attempt-base.Attempt)
	}
	return ""
}

// SplitLogLines keeps the last n non-empty lines of a log, trimmed.
func SplitLogLines(out string, n int) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimRight(l, " \t\r"); strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// errorLine matches a log line that says what went wrong.
var errorLine = regexp.MustCompile(`(?i)\b(error|fatal|panic|unknown|not defined|invalid|denied|no such file|cannot|failed to|mismatch|refused)\b`)

// PickLogLines keeps n lines of a log: its last lines, and before them up
// to a third of n of the latest lines that say what went wrong, when those
// are further up. A process that prints its usage after the error (etcd
// given an unknown flag) would otherwise bury the one line that matters.
func PickLogLines(out string, n int) []string {
	all := SplitLogLines(out, len(out)+1)
	if len(all) <= n {
		return all
	}
	// k error lines leave n-1-k lines of tail (one line marks the gap); a
	// shorter k lengthens the tail, which may swallow some of them.
	for k := n / 3; k > 0; {
		tailFrom := len(all) - (n - 1 - k)
		var picked []string
		for i := tailFrom - 1; i >= 0 && len(picked) < k; i-- {
			if errorLine.MatchString(all[i]) {
				picked = append([]string{all[i]}, picked...)
			}
		}
		if len(picked) == k {
			return append(append(picked, "..."), all[tailFrom:]...)
		}
		k = len(picked)
	}
	return all[len(all)-n:]
}

// crictlCommand prints "absent", "none", or the newest container of the
// static pod's etcd as `crictl inspect` JSON.
func crictlCommand(unit string) string {
	return "command -v crictl >/dev/null 2>&1 || { echo absent; exit 0; }; id=$(crictl ps -a -q --name " + q("^"+unit+"$") +
		" 2>/dev/null | head -n 1); [ -n \"$id\" ] || { echo none; exit 0; }; echo \"$id\"; crictl inspect \"$id\""
}

// serviceWatch watches one host's service.
type serviceWatch struct {
	c    *Ctx
	env  Env
	host string
	unit string

	looked  bool
	base    UnitState
	cbase   Container
	noWatch bool
}

// look returns a *ServiceError when the service cannot run, nil otherwise
// (also when it cannot be looked at: the poll and its own error decide).
func (w *serviceWatch) look(ctx context.Context) error {
	if w.noWatch {
		return nil
	}
	r, err := w.env.Shell(w.host)
	if err != nil {
		return nil
	}
	if w.c.Cluster.Layout.Service == "static-pod" {
		return w.lookPod(ctx, r)
	}
	out, err := r.Run(ctx, unitShowCommand(w.unit), nil)
	if err != nil {
		return nil
	}
	u := ParseUnitState(string(out))
	if !w.looked {
		w.looked, w.base = true, u
	}
	why := u.failing(w.base)
	if why == "" {
		return nil
	}
	e := &ServiceError{Host: w.host, Unit: w.unit, State: why, Status: u.Status()}
	if lo, err := r.Run(ctx, join("journalctl", "-u", w.unit, "-n", strconv.Itoa(journalRead), "--no-pager", "-o", "cat"), nil); err == nil {
		e.Lines = PickLogLines(string(lo), journalLines)
	}
	return e
}

func (w *serviceWatch) lookPod(ctx context.Context, r Runner) error {
	out, err := r.Run(ctx, crictlCommand(w.unit), nil)
	if err != nil {
		return nil
	}
	s := strings.TrimSpace(string(out))
	switch s {
	case "absent":
		w.noWatch = true
		w.env.Logf("watching %s on %s is not available: crictl is not installed there", w.unit, w.host)
		return nil
	case "none":
		return nil
	}
	id, js, _ := strings.Cut(s, "\n")
	k, err := ParseContainer([]byte(js))
	if err != nil {
		return nil
	}
	if !w.looked {
		w.looked, w.cbase = true, k
	}
	why := k.failing(w.cbase)
	if why == "" {
		return nil
	}
	e := &ServiceError{Host: w.host, Unit: w.unit + " (static pod)", State: why}
	if k.State == "CONTAINER_EXITED" {
		e.Status = fmt.Sprintf("exit status %d (status=%d", k.ExitCode, k.ExitCode)
		if k.Reason != "" {
			e.Status += "/" + k.Reason
		}
		e.Status += ")"
	}
	if lo, err := r.Run(ctx, "crictl logs --tail "+strconv.Itoa(journalRead)+" "+q(strings.TrimSpace(id))+" 2>&1", nil); err == nil {
		e.Lines = PickLogLines(string(lo), journalLines)
	}
	return e
}

// WaitWatching runs wait while watching the etcd service on each of hosts,
// one cheap command per host every few seconds beside it (never in series
// with the wait's own polls). The first service that fails or keeps
// restarting ends the wait with its *ServiceError. A host that cannot be
// looked at is left to the wait.
func WaitWatching(ctx context.Context, env Env, c *Ctx, hosts []string, wait func(ctx context.Context) error) error {
	if len(hosts) == 0 || c == nil || c.Cluster == nil {
		return wait(ctx)
	}
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, h := range sortedUnique(hosts) {
		w := &serviceWatch{c: c, env: env, host: h, unit: c.Cluster.Layout.Unit}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-wctx.Done():
					return
				case <-time.After(watchEvery):
				}
				if err := w.look(wctx); err != nil && wctx.Err() == nil {
					cancel(err)
					return
				}
			}
		}()
	}
	err := wait(wctx)
	close(stop)
	wg.Wait()
	var se *ServiceError
	if cause := context.Cause(wctx); errors.As(cause, &se) && ctx.Err() == nil {
		return se
	}
	return err
}

// UnitFailure looks once at unit on host after a command on it failed (a
// blocking systemctl start): a *ServiceError with the unit's state, exit
// status and last journal lines, or nil when the unit cannot be looked at.
func UnitFailure(ctx context.Context, env Env, host, unit string) *ServiceError {
	r, err := env.Shell(host)
	if err != nil {
		return nil
	}
	out, err := r.Run(ctx, unitShowCommand(unit), nil)
	if err != nil {
		return nil
	}
	u := ParseUnitState(string(out))
	why := u.failing(u)
	if why == "" {
		why = fmt.Sprintf("systemctl start failed (the unit is %s/%s)", u.ActiveState, u.SubState)
	}
	e := &ServiceError{Host: host, Unit: unit, State: why, Status: u.Status()}
	if lo, err := r.Run(ctx, join("journalctl", "-u", unit, "-n", strconv.Itoa(journalRead), "--no-pager", "-o", "cat"), nil); err == nil {
		e.Lines = PickLogLines(string(lo), journalLines)
	}
	return e
}

// Watched makes every Wait action among acts watch the service on its own
// host while it runs (see [WaitWatching]).
func Watched(c *Ctx, acts []Action) []Action {
	for i := range acts {
		a := &acts[i]
		if a.Kind != Wait || a.Run == nil || a.Host == "" {
			continue
		}
		run, host := a.Run, a.Host
		a.Run = func(ctx context.Context, env Env) error {
			return WaitWatching(ctx, env, c, []string{host}, func(ctx context.Context) error { return run(ctx, env) })
		}
	}
	return acts
}
