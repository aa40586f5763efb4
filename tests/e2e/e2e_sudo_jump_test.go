package e2e

// End-to-end: the ip-change plan as a non-root operator with sudo, through a
// jump host. The lab's hosts have the account rescue (passwordless sudo,
// every sudo command logged to lab.SudoLog); the inventory variant says
// ssh: {user: rescue, sudo: true, jump: root@<h1's address>}. The real
// binary repairs the cluster with it, and the hosts' own records prove how:
// every command of the run went through sudo as rescue (the sudo log holds
// sshx's `sudo -n setsid -w sh -c ...` wrapping of each command the run's
// events.jsonl lists), and sshd saw rescue come only from h1.
//
//	go test ./tests/e2e/ -run TestE2ESudoJump -v

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework"
)

// sudoLogRE matches one command in lab.SudoLog: sshx runs every command of
// a sudo host as `exec sudo -n setsid -w sh -c 'MARKER; CMD' sh`, which
// sudo logs as rescue running /usr/bin/setsid ... as root.
var sudoLogRE = regexp.MustCompile(`(?m)^.* : rescue : .*; USER=root ; COMMAND=/usr/bin/setsid -w sh -c (.*)$`)

func TestE2ESudoJump(t *testing.T) {
	e := newE2E(t)
	l := framework.UpLab(t, lab.Options{Members: 3, Version: "3.6"})
	ctx := context.Background()
	h1, _ := l.Host("h1")

	t0 := time.Now()
	if err := l.Break(ctx, "ip-change"); err != nil {
		t.Fatalf("lab break ip-change: %v", err)
	}
	if err := l.Verify(ctx); err == nil {
		t.Fatal("after lab break ip-change, lab verify still passes: the break did no damage")
	} else {
		t.Logf("lab break ip-change in %.1fs; as expected: %v", time.Since(t0).Seconds(), err)
	}
	// Nothing has logged in as rescue yet (the lab works as root): every
	// rescue login and sudo command on the hosts from here on is the run's.
	for _, h := range l.Hosts() {
		if out := framework.HostRun(t, l, h.Name, "cat "+lab.SudoLog+" 2>/dev/null | wc -l"); strings.TrimSpace(out) != "0" {
			t.Fatalf("%s: %s has %s lines before the run", h.Name, lab.SudoLog, out)
		}
	}

	// written after the break: h3's new address, the old URLs in vars
	inv := filepath.Join(t.TempDir(), "inventory-rescue-sudo-via-h1.yaml")
	if err := l.WriteInventory(inv, lab.InventoryOptions{User: lab.OperatorUser, Sudo: true, Jump: "h1"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(inv)
	if err != nil {
		t.Fatal(err)
	}
	wantSSH := fmt.Sprintf(`ssh: {user: rescue, sudo: true, jump: "root@%s", identity: %q, knownHosts: %q}`, h1.Address, l.ClientKeyPath(), l.KnownHostsPath())
	if !strings.Contains(string(b), wantSSH+"\n") || !strings.Contains(string(b), "h3: {address: 10.77.0.23, port: 22}") {
		t.Fatalf("the inventory variant has no line %s, or not h3's new address:\n%s", wantSSH, b)
	}

	stateDir, runID, r := e.applyPlan(t, planPath("ip-change"), inv, "as rescue with sudo through h1")
	t.Logf("apply ip-change (rescue, sudo, via h1): exit 0 in %.1fs; summary:\n%s", r.Wall.Seconds(), framework.SummaryOf(r.Stdout))
	st := e.StatusJSON(t, stateDir, runID)
	checkRunDone(t, st)
	verifyLab(t, l)
	checkNoForceNewCluster(t, l)

	// The run's commands, per host, as the engine journalled them (the
	// command itself: sshx adds the sudo wrapping below the journal).
	evs := framework.ReadEvents(t, stateDir, runID)
	cmds := map[string][]framework.RunEvent{}
	var rootOnly []string
	routes := map[string]string{}
	for _, ev := range evs {
		if ev.Type == "run" && strings.HasPrefix(ev.Msg, "ssh ") {
			routes[ev.Host] = ev.Msg
		}
		if ev.Type != "cmd" {
			continue
		}
		cmds[ev.Host] = append(cmds[ev.Host], ev)
		if regexp.MustCompile(`(^|[\s;&|(])sudo\s`).MatchString(ev.Cmd) {
			t.Errorf("%s: the plan's command calls sudo itself (the transport must add it): %q", ev.Host, ev.Cmd)
		}
		// what only root can do, done with exit 0 by a run logged in as rescue
		if ev.Exit != nil && *ev.Exit == 0 && regexp.MustCompile(`systemctl (stop|start|restart|reset-failed)|`+regexp.QuoteMeta(lab.EnvFile)).MatchString(ev.Cmd) {
			rootOnly = append(rootOnly, ev.Host+": "+cmdHead(ev.Cmd))
		}
	}
	// The journal records how each host was reached.
	for _, h := range []string{"h1", "h2", "h3"} {
		want := fmt.Sprintf("ssh rescue@%s:22 via root@%s:22, commands through sudo -n, host key known_hosts %s", hostAddr(l, h), h1.Address, l.KnownHostsPath())
		if routes[h] != want {
			t.Errorf("journal route of %s: %q, want %q", h, routes[h], want)
		}
	}
	if len(cmds["h3"]) == 0 {
		t.Fatalf("events.jsonl has no command on h3, the host the plan repairs:\n%s", eventsSummary(evs))
	}
	if len(rootOnly) == 0 {
		t.Errorf("events.jsonl has no successful systemctl stop/start or %s command: nothing shows root's work was done\n%s", lab.EnvFile, eventsSummary(evs))
	}
	t.Logf("events.jsonl: %d commands (h1 %d, h2 %d, h3 %d); root-only ones that succeeded: %s",
		len(cmds["h1"])+len(cmds["h2"])+len(cmds["h3"]), len(cmds["h1"]), len(cmds["h2"]), len(cmds["h3"]), strings.Join(rootOnly, "; "))

	// Each of them ran through sudo as rescue: the host's sudo log holds
	// sshx's wrapping of that very command, tagged by the engine with the
	// run and step-host (MarkEnv). sudo quotes the arguments it logs, so
	// the command is compared without quotes and backslashes.
	for _, h := range l.Hosts() {
		log := framework.HostRun(t, l, h.Name, "cat "+lab.SudoLog+" 2>/dev/null; true")
		ran := sudoLogRE.FindAllStringSubmatch(log, -1)
		if len(ran) < len(cmds[h.Name]) {
			t.Errorf("%s: %d commands in events.jsonl but %d sudo -n setsid runs of rescue in %s:\n%s", h.Name, len(cmds[h.Name]), len(ran), lab.SudoLog, log)
		}
		for _, ev := range cmds[h.Name] {
			mark := engine.MarkEnv + "=" + runID + "/" + runstate.Key(ev.Step, ev.Host) + " "
			want := unquoted(cmdHead(ev.Cmd))
			found := false
			for _, m := range ran {
				if strings.Contains(m[1], mark) && strings.Contains(unquoted(m[1]), want) {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("%s: the run's command %q (step %s) is not in %s as a sudo command of rescue tagged %s\n%s", h.Name, cmdHead(ev.Cmd), ev.Step, lab.SudoLog, mark, log)
			}
		}
		if len(cmds[h.Name]) > 0 {
			t.Logf("%s: %d sudo runs of rescue in %s cover the run's %d commands, e.g.\n  %.300s", h.Name, len(ran), lab.SudoLog, len(cmds[h.Name]), ran[0][0])
		}
	}

	// sshd on every host saw rescue log in, and only from h1 (the jump
	// host), never from this machine; h1 saw root come from this machine.
	acceptRE := regexp.MustCompile(`Accepted publickey for (\S+) from (\S+) port`)
	for _, h := range l.Hosts() {
		out := framework.HostRun(t, l, h.Name, "journalctl -u ssh --no-pager -o cat | grep 'Accepted publickey' || true")
		from := map[string]int{}
		for _, m := range acceptRE.FindAllStringSubmatch(out, -1) {
			if m[1] == lab.OperatorUser {
				from[m[2]]++
			}
		}
		if from[h1.Address] == 0 || len(from) != 1 {
			t.Errorf("%s: sshd logins of rescue by client address: %v; want them all from h1 (%s)\n%s", h.Name, from, h1.Address, out)
		} else {
			t.Logf("%s: sshd accepted rescue %d time(s), all from %s (h1)", h.Name, from[h1.Address], h1.Address)
		}
	}
	if out := framework.HostRun(t, l, "h1", "journalctl -u ssh --no-pager -o cat | grep -c 'Accepted publickey for root from "+lab.GatewayAddr+" ' || true"); strings.TrimSpace(out) == "0" {
		t.Errorf("h1: sshd shows no root login from %s: the jump connections did not end on h1", lab.GatewayAddr)
	}
}

// unquoted drops quotes and backslashes: sudo's log quotes arguments.
func unquoted(s string) string {
	return strings.NewReplacer(`'`, "", `"`, "", `\`, "").Replace(s)
}

func cmdHead(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

func eventsSummary(evs []framework.RunEvent) string {
	var b strings.Builder
	for _, ev := range evs {
		exit := "-"
		if ev.Exit != nil {
			exit = fmt.Sprint(*ev.Exit)
		}
		fmt.Fprintf(&b, "  %s %s %s exit %s: %s\n", ev.Type, ev.Step, ev.Host, exit, cmdHead(ev.Cmd))
	}
	return b.String()
}

// hostAddr is the current address of lab host name.
func hostAddr(l *lab.Lab, name string) string {
	for _, h := range l.Hosts() {
		if h.Name == name {
			return h.Address
		}
	}
	return "?"
}
