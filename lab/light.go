package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lightDriver: host = network namespace + private mount and UTS namespace
// running this machine's sshd.  /etc, /var/lib and /var/log are overlays
// with per-host upper dirs (<state>/hosts/hN/*.upper), /root, /home, /tmp,
// /var/tmp/etcd-rescue (where plans ship snapshots by default: shared, three
// hosts would write the same file; /var/tmp itself holds the lab's state
// dir, so it cannot be per-host) and /usr/local/sbin are per-host bind
// mounts, /run is a per-host tmpfs.
// /usr/local/sbin holds the etcd binaries and the systemctl/journalctl
// shims, which run etcd.service the way its unit says (Type=notify,
// EnvironmentFile, User=etcd, Restart=on-failure).
type lightDriver struct{ l *Lab }

func (d *lightDriver) prepare(ctx context.Context) error {
	if _, err := os.Stat("/var/lib/etcd"); err == nil {
		return errors.New("light mode: this machine has its own /var/lib/etcd, which would be in every host's lower layer (renaming it would fail with EXDEV); use the nspawn mode")
	}
	return os.MkdirAll("/run/sshd", 0o755)
}

// hostInit runs in the host's fresh mount+UTS namespace: $1 = host dir,
// $2 = host name.
const hostInit = `set -e
H=$1
mount --make-rprivate /
for d in etc varlib varlog; do
  case $d in etc) t=/etc ;; varlib) t=/var/lib ;; varlog) t=/var/log ;; esac
  mount -t overlay "etcdlab-$2-$d" -o "lowerdir=$t,upperdir=$H/$d.upper,workdir=$H/$d.work" "$t"
done
mount --bind "$H/home" /root
mkdir -p /home
mount --bind "$H/homes" /home
mount --bind "$H/tmp" /tmp
mkdir -p /var/tmp/etcd-rescue
mount --bind "$H/vartmp-rescue" /var/tmp/etcd-rescue
mount --bind "$H/sbin" /usr/local/sbin
mount -t tmpfs -o mode=0755 "etcdlab-$2-run" /run
mkdir -p /run/sshd /run/etcd-shim
[ "$3" = static-pod ] && . "$H/init-kube.sh"
hostname "$2"
exec /usr/sbin/sshd -f "$H/sshd_config"
`

func (d *lightDriver) create(ctx context.Context, h *Host) error {
	hd := d.l.hostDir(h)
	for _, s := range []string{"etc.upper/systemd/system", "etc.work", "varlib.upper", "varlib.work", "varlog.upper/etcd", "varlog.work", "home/.ssh", "homes", "tmp", "vartmp-rescue", "sbin"} {
		if err := os.MkdirAll(filepath.Join(hd, s), 0o755); err != nil {
			return fmt.Errorf("disk of %s: %w", h.Name, err)
		}
	}
	_ = os.Chmod(filepath.Join(hd, "tmp"), 0o1777)
	_ = os.Chmod(filepath.Join(hd, "homes"), 0o755) // /home: the operator account lives there
	_ = os.Chmod(filepath.Join(hd, "home"), 0o700)
	_ = os.Chmod(filepath.Join(hd, "home/.ssh"), 0o700)
	pub, err := os.ReadFile(d.l.ClientKeyPath() + ".pub")
	if err != nil {
		return fmt.Errorf("disk of %s: %w", h.Name, err)
	}
	if d.l.StaticPod() {
		for _, s := range kubeDirs {
			if err := os.MkdirAll(filepath.Join(hd, s), 0o755); err != nil {
				return fmt.Errorf("disk of %s: %w", h.Name, err)
			}
		}
		cgm, err := cgroupMounts()
		if err != nil {
			return fmt.Errorf("disk of %s: %w", h.Name, err)
		}
		files := append(d.l.kubeFiles(h), []struct {
			path, data string
			mode       os.FileMode
		}{{"init-kube.sh", hostInitKube, 0o644}, {"cgroup-mounts", cgm, 0o644}}...)
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(hd, f.path), []byte(f.data), f.mode); err != nil {
				return fmt.Errorf("disk of %s: %w", h.Name, err)
			}
		}
		for _, b := range kubeBinaries {
			if err := linkOrCopy(filepath.Join(KubeBinDir(d.l.st.BinDir), b), filepath.Join(hd, "sbin", b)); err != nil {
				return fmt.Errorf("disk of %s: %w", h.Name, err)
			}
		}
	}
	unit := strings.Replace(etcdUnit, "ExecStart=/usr/local/bin/etcd", "ExecStart=/usr/local/sbin/etcd", 1)
	sshd := fmt.Sprintf(`# etcd-rescue lab host %s (light mode)
Port 22
ListenAddress 0.0.0.0
HostKey %s
PidFile %s
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 200:30:400
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server
`, h.Name, d.l.HostKeyPath(h.Name), filepath.Join(hd, "sshd.pid"))
	for _, f := range []struct {
		path, data string
		mode       os.FileMode
	}{
		{"etc.upper/hostname", h.Name + "\n", 0o644},
		{"etc.upper/hosts", string(d.l.etcHosts()), 0o644},
		{"home/.ssh/authorized_keys", string(pub), 0o600},
		{"home/.bashrc", "# lab host " + h.Name + "\n", 0o644},
		{"home/.profile", "[ -f ~/.bashrc ] && . ~/.bashrc\n", 0o644},
		{"sbin/systemctl", shimSystemctl, 0o755},
		{"sbin/journalctl", shimJournalctl, 0o755},
		{"sshd_config", sshd, 0o600},
	} {
		if err := os.WriteFile(filepath.Join(hd, f.path), []byte(f.data), f.mode); err != nil {
			return fmt.Errorf("disk of %s: %w", h.Name, err)
		}
	}
	if !d.l.StaticPod() {
		// etcd runs as a static pod there, not as a unit
		if err := os.WriteFile(filepath.Join(hd, "etc.upper/systemd/system/etcd.service"), []byte(unit), 0o644); err != nil {
			return fmt.Errorf("disk of %s: %w", h.Name, err)
		}
	}
	// A hard link (or a copy), not a symlink: the binaries may live under
	// /tmp (a checkout there), which each host's private /tmp would hide.
	for _, b := range []string{"etcd", "etcdctl", "etcdutl"} {
		if err := linkOrCopy(filepath.Join(d.l.st.BinDir, d.l.st.Version, b), filepath.Join(hd, "sbin", b)); err != nil {
			return fmt.Errorf("disk of %s: %w", h.Name, err)
		}
	}
	return d.boot(ctx, h)
}

func (d *lightDriver) boot(ctx context.Context, h *Host) error {
	if pids := netnsPids(h.Netns()); len(pids) > 0 {
		return fmt.Errorf("boot %s: processes %v still run in %s", h.Name, pids, h.Netns())
	}
	hd := d.l.hostDir(h)
	pidf := filepath.Join(hd, "sshd.pid")
	_ = os.Remove(pidf)
	if _, err := run(ctx, "ip", "netns", "exec", h.Netns(), "unshare", "--mount", "--uts", "--propagation", "private", "--",
		"/bin/sh", "-c", hostInit, "sh", hd, h.Name, d.l.Layout()); err != nil {
		return fmt.Errorf("boot %s: %w", h.Name, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(pidf)
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			d.l.mu.Lock()
			h.PID = pid
			d.l.mu.Unlock()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("boot %s: sshd wrote no pid file", h.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// like systemd at boot: start the enabled units (containerd before the
	// kubelet, which then starts the static pods of its manifests)
	for _, u := range []string{"containerd", "kubelet", "etcd"} {
		if !lightEnabled(hd, u) {
			continue
		}
		if err := d.l.waitSSH(ctx, h, 30*time.Second); err != nil {
			return err
		}
		if out, err := d.l.Run(ctx, h.Name, "systemctl start --no-block "+u, nil); err != nil {
			return withOutput(fmt.Errorf("boot %s: start %s: %w", h.Name, u, err), out)
		}
	}
	return nil
}

// lightEnabled: unit u of the light host with disk hd is one the shim runs
// (its unit file is the host's own) and is enabled.  The enablement symlink
// may be this machine's, in the lower layer of /etc: Debian's containerd
// package enables containerd.service there; a whiteout in the upper layer
// (a character device) means the host disabled it.
func lightEnabled(hd, u string) bool {
	if _, err := os.Stat(filepath.Join(hd, "etc.upper/systemd/system", u+".service")); err != nil {
		return false
	}
	want := "systemd/system/multi-user.target.wants/" + u + ".service"
	if fi, err := os.Lstat(filepath.Join(hd, "etc.upper", want)); err == nil {
		return fi.Mode()&os.ModeSymlink != 0
	}
	_, err := os.Lstat(filepath.Join("/etc", want))
	return err == nil
}

// halt: a clean poweroff sends SIGTERM to every process of the host (etcd
// shuts down cleanly) and SIGKILLs what is left after 30 s; hard SIGKILLs
// at once.
func (d *lightDriver) halt(ctx context.Context, h *Host, hard bool) error {
	if !hard {
		for _, p := range netnsPids(h.Netns()) {
			_ = syscall.Kill(p, syscall.SIGTERM)
		}
		deadline := time.Now().Add(30 * time.Second)
		for len(netnsPids(h.Netns())) > 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := killNetns(h.Netns()); err != nil {
		return fmt.Errorf("halt %s: %w", h.Name, err)
	}
	d.l.mu.Lock()
	h.PID = 0
	d.l.mu.Unlock()
	return nil
}

func (d *lightDriver) destroy(ctx context.Context, h *Host) error {
	var errs []error
	if err := d.halt(ctx, h, true); err != nil {
		errs = append(errs, err)
	}
	if err := netDown(ctx, h); err != nil {
		errs = append(errs, err)
	}
	// a static-pod host's kubelet made cgroups (a lost host's are not
	// removed by Down, which no longer knows the host)
	if err := removeHostCgroups(h); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(d.l.hostDir(h)); err != nil {
		errs = append(errs, fmt.Errorf("remove disk of %s: %w", h.Name, err))
	}
	return errors.Join(errs...)
}

func (d *lightDriver) diag(h *Host) string { return "" }

func (d *lightDriver) unusable(h *Host) bool { return false }

func (d *lightDriver) mounted(h *Host) []string { return nil }

func (d *lightDriver) releaseAll(ctx context.Context, hosts []*Host) error { return nil }

// shimJournalctl shows the shim's etcd log: journalctl -u etcd [-n N] [-f].
const shimJournalctl = `#!/bin/bash
# journalctl shim of an etcd-rescue lab host (light mode): one unit's log
# (etcd's by default; containerd's and the kubelet's on static-pod hosts).
n=50 follow= log=/var/log/etcd/etcd.log
while [ $# -gt 0 ]; do
  case "$1" in
    -u|--unit) u=${2%.service}; [ "$u" = etcd ] || log=/var/log/$u.log; shift ;;
    -n) n=$2; shift ;;
    -n*) n=${1#-n} ;;
    --lines=*) n=${1#--lines=} ;;
    -f|--follow) follow=-f ;;
  esac
  shift
done
[ "$n" = all ] && n=+1
exec tail -n "$n" $follow "$log" 2>/dev/null
`

// shimSystemctl emulates systemctl for etcd.service on light hosts.
const shimSystemctl = `#!/bin/bash
# systemctl shim of an etcd-rescue lab host (light mode).  Knows one unit,
# etcd.service, and runs it the way the unit says: Type=notify (READY=1 over
# $NOTIFY_SOCKET, received with socat), EnvironmentFile=/etc/etcd/etcd.env,
# User=etcd, Restart=on-failure (RestartSec=5s), TimeoutStartSec=90,
# TimeoutStopSec=30.  Enablement is the usual symlink in
# /etc/systemd/system/multi-user.target.wants (the lab starts enabled units
# when it boots the host).  Exit codes follow systemctl.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
S=/run/etcd-shim
ENVF=/etc/etcd/etcd.env
UNITF=/etc/systemd/system/etcd.service
WANTS=/etc/systemd/system/multi-user.target.wants/etcd.service
LOG=/var/log/etcd/etcd.log
noblock=0 quiet=0 now=0 sig=TERM prop= value=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-block) noblock=1 ;;
    -q|--quiet) quiet=1 ;;
    --now) now=1 ;;
    -s) sig=${2#SIG}; shift ;;
    --signal=*) sig=${1#--signal=}; sig=${sig#SIG} ;;
    -p) prop=$2; shift ;;
    --property=*) prop=${1#--property=} ;;
    --value) value=1 ;;
    -*) ;;
    *) args+=("$1") ;;
  esac
  shift
done
verb=${args[0]:-}
unit=${args[1]:-}
unit=${unit%.service}
mkdir -p $S

alive() { [ -n "$1" ] && [ -r /proc/$1/stat ] && [ "$(cut -d' ' -f3 /proc/$1/stat 2>/dev/null)" != Z ]; }
mainpid() { local p; p=$(cat $S/main.pid 2>/dev/null); alive "$p" && echo "$p"; }
suppid() { local p; p=$(cat $S/sup.pid 2>/dev/null); alive "$p" && echo "$p"; }
state() {
  if [ -n "$(mainpid)" ] && [ -e $S/ready ]; then echo active
  elif [ -n "$(suppid)" ]; then echo activating
  elif [ "$(cat $S/result 2>/dev/null)" = failed ]; then echo failed
  else echo inactive; fi
}

supervise() {
  echo $$ > $S/sup.pid
  while :; do
    rm -f $S/ready $S/notify.log $S/notify.sock
    if [ ! -r $ENVF ]; then
      echo "etcd.service: Failed to load environment files: $ENVF" >>$LOG
      echo failed > $S/result; touch $S/startfail; break
    fi
    envs=()
    while IFS= read -r line || [ -n "$line" ]; do
      line=${line#"${line%%[![:space:]]*}"}
      case "$line" in ''|'#'*|';'*) continue ;; esac
      k=${line%%=*} v=${line#*=}
      case "$v" in \"*\") v=${v:1:${#v}-2} ;; \'*\') v=${v:1:${#v}-2} ;; esac
      envs+=("$k=$v")
    done < $ENVF
    : > $S/notify.log
    socat -u UNIX-RECV:$S/notify.sock OPEN:$S/notify.log,append </dev/null >/dev/null 2>&1 &
    sp=$!
    for _ in $(seq 100); do [ -S $S/notify.sock ] && break; sleep 0.02; done
    chmod 666 $S/notify.sock 2>/dev/null
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NOTIFY_SOCKET=$S/notify.sock "${envs[@]}" \
      setpriv --reuid=etcd --regid=etcd --init-groups /usr/local/sbin/etcd >>$LOG 2>&1 </dev/null &
    mp=$!
    echo $mp > $S/main.pid
    ( while alive $mp; do grep -q READY=1 $S/notify.log 2>/dev/null && { touch $S/ready; exit 0; }; sleep 0.1; done ) &
    wp=$!
    wait $mp; rc=$?
    kill $wp $sp 2>/dev/null; wait $wp $sp 2>/dev/null
    rm -f $S/main.pid $S/ready
    echo $rc > $S/rc
    echo "etcd.service: main process exited, status=$rc" >>$LOG
    [ -e $S/stopping ] && break
    [ $rc = 0 ] && { rm -f $S/result; break; }
    echo failed > $S/result
    [ -e $S/everready ] || touch $S/startfail
    touch $S/autorestart
    for _ in $(seq 50); do [ -e $S/stopping ] && break; sleep 0.1; done
    rm -f $S/autorestart
    [ -e $S/stopping ] && break
    echo $(( $(cat $S/nrestarts 2>/dev/null || echo 0) + 1 )) > $S/nrestarts
    echo "etcd.service: scheduled restart" >>$LOG
  done
  rm -f $S/sup.pid
}

do_start() {
  [ -f $UNITF ] || { echo "Failed to start $unit.service: Unit $unit.service not found." >&2; return 5; }
  if [ -z "$(suppid)" ]; then
    mkdir -p /var/log/etcd
    rm -f $S/ready $S/result $S/stopping $S/startfail $S/everready $S/nrestarts $S/rc $S/autorestart
    setsid "$0" __supervise </dev/null >/dev/null 2>&1 &
    for _ in $(seq 100); do [ -n "$(suppid)" ] && break; sleep 0.02; done
  fi
  [ $noblock = 1 ] && return 0
  for _ in $(seq 900); do
    if [ -e $S/ready ]; then touch $S/everready; return 0; fi
    if [ -e $S/startfail ]; then
      echo "Job for etcd.service failed because the control process exited with error code." >&2
      echo "See \"systemctl status etcd.service\" and \"journalctl -xeu etcd.service\" for details." >&2
      return 1
    fi
    sleep 0.1
  done
  echo "Job for etcd.service failed because a timeout was exceeded." >&2
  do_stop; echo failed > $S/result; return 1
}

do_stop() {
  touch $S/stopping
  local p; p=$(mainpid)
  if [ -n "$p" ]; then
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 300); do alive "$p" || break; sleep 0.1; done
    alive "$p" && kill -KILL "$p" 2>/dev/null
  fi
  for _ in $(seq 100); do [ -z "$(suppid)" ] && break; sleep 0.1; done
  rm -f $S/result $S/ready
  return 0
}

# Other units (containerd, kubelet on static-pod hosts): Type=simple,
# Restart=always (RestartSec=2s), ExecStart= from the unit file, the log in
# /var/log/UNIT.log, state in /run/etcd-shim/UNIT.
G=$S/$unit
GUNITF=/etc/systemd/system/$unit.service
GWANTS=/etc/systemd/system/multi-user.target.wants/$unit.service
GLOG=/var/log/$unit.log
g_main() { local p; p=$(cat $G/main.pid 2>/dev/null); alive "$p" && echo "$p"; }
g_sup() { local p; p=$(cat $G/sup.pid 2>/dev/null); alive "$p" && echo "$p"; }
g_state() {
  if [ -n "$(g_main)" ]; then echo active
  elif [ -n "$(g_sup)" ]; then echo activating
  else echo inactive; fi
}
g_supervise() {
  mkdir -p $G; echo $$ > $G/sup.pid
  cmd=$(sed -n 's/^ExecStart=//p' $GUNITF | head -1)
  while :; do
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root sh -c "exec $cmd" >>$GLOG 2>&1 </dev/null &
    mp=$!
    echo $mp > $G/main.pid
    wait $mp; rc=$?
    rm -f $G/main.pid
    echo "$unit.service: main process exited, status=$rc" >>$GLOG
    [ -e $G/stopping ] && break
    for _ in $(seq 20); do [ -e $G/stopping ] && break; sleep 0.1; done
    [ -e $G/stopping ] && break
    echo $(( $(cat $G/nrestarts 2>/dev/null || echo 0) + 1 )) > $G/nrestarts
  done
  rm -f $G/sup.pid
}
g_start() {
  mkdir -p $G
  if [ -z "$(g_sup)" ]; then
    rm -f $G/stopping $G/nrestarts
    setsid "$0" __gsupervise "$unit" </dev/null >/dev/null 2>&1 &
    for _ in $(seq 100); do [ -n "$(g_main)" ] && break; sleep 0.02; done
  fi
  return 0
}
g_stop() {
  mkdir -p $G; touch $G/stopping
  local p; p=$(g_main)
  if [ -n "$p" ]; then
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 300); do alive "$p" || break; sleep 0.1; done
    alive "$p" && kill -KILL "$p" 2>/dev/null
  fi
  for _ in $(seq 100); do [ -z "$(g_sup)" ] && break; sleep 0.1; done
  return 0
}
generic() {
  case "$verb" in
    start) g_start; exit $? ;;
    stop) g_stop; exit 0 ;;
    restart) g_stop; g_start; exit $? ;;
    try-restart|condrestart) [ "$(g_state)" = active ] && { g_stop; g_start; }; exit 0 ;;
    kill) p=$(g_main); [ -n "$p" ] && kill -s "$sig" "$p"; exit 0 ;;
    is-active) s=$(g_state); [ $quiet = 1 ] || echo "$s"; [ "$s" = active ] && exit 0; exit 3 ;;
    is-failed) [ $quiet = 1 ] || echo "$(g_state)"; exit 1 ;;
    enable)
      mkdir -p "$(dirname $GWANTS)"; [ -L $GWANTS ] || ln -s $GUNITF $GWANTS
      [ $now = 1 ] && { g_start; exit $?; }; exit 0 ;;
    disable) rm -f $GWANTS; [ $now = 1 ] && g_stop; exit 0 ;;
    is-enabled) if [ -L $GWANTS ]; then echo enabled; exit 0; else echo disabled; exit 1; fi ;;
    reset-failed) exit 0 ;;
    show)
      s=$(g_state)
      for k in ${prop//,/ }; do
        case "$k" in
          MainPID) v=$(g_main || echo 0) ;;
          ActiveState) v=$s ;;
          SubState) v=dead; [ "$s" = active ] && v=running ;;
          LoadState) v=loaded ;;
          NRestarts) v=$(cat $G/nrestarts 2>/dev/null || echo 0) ;;
          *) continue ;;
        esac
        if [ $value = 1 ]; then echo "$v"; else echo "$k=$v"; fi
      done
      [ -n "$prop" ] || { echo "MainPID=$(g_main || echo 0)"; echo "ActiveState=$s"; }
      exit 0 ;;
    status)
      s=$(g_state); en=disabled; [ -L $GWANTS ] && en=enabled; p=$(g_main)
      echo "● $unit.service - $(sed -n 's/^Description=//p' $GUNITF | head -1)"
      echo "     Loaded: loaded ($GUNITF; $en)"
      case $s in active) echo "     Active: active (running)" ;; activating) echo "     Active: activating (auto-restart)" ;; *) echo "     Active: inactive (dead)" ;; esac
      [ -n "$p" ] && echo "   Main PID: $p ($unit)"
      echo; tail -n 10 $GLOG 2>/dev/null
      [ "$s" = active ] && exit 0; exit 3 ;;
    *) echo "systemctl shim: unsupported command: $verb" >&2; exit 1 ;;
  esac
}

[ "$verb" = __supervise ] && { supervise; exit 0; }
[ "$verb" = __gsupervise ] && { g_supervise; exit 0; }
case "$verb" in
  daemon-reload|daemon-reexec) exit 0 ;;
  ""|list-units) echo "etcd.service $(state)"; exit 0 ;;
esac
[ "$unit" != etcd ] && [ -f "$GUNITF" ] && generic
if [ "$unit" != etcd ]; then
  case "$verb" in
    is-active) echo inactive; exit 3 ;;
    is-enabled) echo "Failed to get unit file state for $unit.service: No such file or directory" >&2; exit 1 ;;
    *) echo "Unit $unit.service could not be found." >&2; exit 5 ;;
  esac
fi
case "$verb" in
  start) do_start; exit $? ;;
  stop) do_stop; exit 0 ;;
  restart) do_stop; do_start; exit $? ;;
  try-restart|condrestart) [ "$(state)" = active ] && { do_stop; do_start; exit $?; }; exit 0 ;;
  kill) p=$(mainpid); [ -n "$p" ] && kill -s "$sig" "$p"; exit 0 ;;
  is-active) s=$(state); [ $quiet = 1 ] || echo "$s"; [ "$s" = active ] && exit 0; exit 3 ;;
  is-failed) s=$(state); [ $quiet = 1 ] || echo "$s"; [ "$s" = failed ] && exit 0; exit 1 ;;
  enable)
    mkdir -p "$(dirname $WANTS)"; [ -L $WANTS ] || { ln -s $UNITF $WANTS; [ $quiet = 1 ] || echo "Created symlink $WANTS → $UNITF."; }
    [ $now = 1 ] && { do_start; exit $?; }; exit 0 ;;
  disable)
    [ -L $WANTS ] && { rm -f $WANTS; [ $quiet = 1 ] || echo "Removed \"$WANTS\"."; }
    [ $now = 1 ] && do_stop; exit 0 ;;
  is-enabled) if [ -L $WANTS ]; then echo enabled; exit 0; else echo disabled; exit 1; fi ;;
  reset-failed) rm -f $S/result; exit 0 ;;
  show)
    # The properties the tool reads, as systemd names them (one per line,
    # KEY=VALUE, or the value alone with --value).
    s=$(state); rc=$(cat $S/rc 2>/dev/null)
    case $s in active) sub=running ;; failed) sub=failed ;; inactive) sub=dead ;; *) sub=start ;; esac
    [ -e $S/autorestart ] && sub=auto-restart
    res=success; [ -n "$rc" ] && [ "$rc" != 0 ] && res=exit-code
    for k in ${prop//,/ }; do
      case "$k" in
        MainPID) v=$(mainpid || echo 0) ;;
        ActiveState) v=$s ;;
        SubState) v=$sub ;;
        Result) v=$res ;;
        LoadState) v=loaded; [ -f $UNITF ] || v=not-found ;;
        NRestarts) v=$(cat $S/nrestarts 2>/dev/null || echo 0) ;;
        ExecMainStatus) v=${rc:-0} ;;
        ExecMainCode) v=0; [ -n "$rc" ] && v=1 ;;
        *) continue ;;
      esac
      if [ $value = 1 ]; then echo "$v"; else echo "$k=$v"; fi
    done
    [ -n "$prop" ] || { echo "MainPID=$(mainpid || echo 0)"; echo "ActiveState=$s"; }
    exit 0 ;;
  status)
    s=$(state); en=disabled; [ -L $WANTS ] && en=enabled; p=$(mainpid)
    echo "● etcd.service - etcd key-value store (etcd-rescue lab)"
    echo "     Loaded: loaded ($UNITF; $en)"
    case $s in
      active) echo "     Active: active (running)" ;;
      activating) echo "     Active: activating (start)" ;;
      failed) echo "     Active: failed (Result: exit-code)" ;;
      *) echo "     Active: inactive (dead)" ;;
    esac
    [ -n "$p" ] && echo "   Main PID: $p (etcd)"
    echo; tail -n 10 $LOG 2>/dev/null
    [ "$s" = active ] && exit 0; exit 3 ;;
  *) echo "systemctl shim: unsupported command: $verb" >&2; exit 1 ;;
esac
`

// linkOrCopy hard-links src to dst, or copies it across file systems.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
