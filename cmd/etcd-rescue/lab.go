package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/etcd-rescue/etcd-rescue/lab"
)

// Exit codes of `etcd-rescue lab`.
const (
	labExitOK          = 0
	labExitFailure     = 1
	labExitUsage       = 2
	labExitPrereq      = 4
	labExitInterrupted = 130
)

const labUsage = `usage: etcd-rescue lab COMMAND [flags]

A disposable etcd cluster on real SSH hosts on this machine (root, Linux),
for rehearsing recovery plans.

commands:
  up [--members N] [--etcd 3.5|3.6|3.7|x.y.z] [--keys K] [--mode auto|nspawn|light] [--tls]
                      create hosts h1..hN, start a healthy N-member cluster, write K keys,
                      record their fingerprint and write the inventory; --tls: https client
                      and peer URLs with client certificates required, a CA, member and
                      operator certificates in STATE/pki (the inventory gets cluster.tls)
  break SCENARIO      damage the lab; SCENARIO is one of:
%s  reboot HOST [--hard]  clean reboot of HOST (disk kept), or a power cut with --hard
  status              hosts, addresses, etcd state, members, revision, keys vs the fingerprint
  verify              exit 0 only if the cluster is healthy and every fingerprinted key is intact
  down                kill what the lab started, remove namespaces, mounts and state (idempotent)
  inventory [--user U] [--sudo] [--jump HOST] [--out FILE]
                      print the path of the lab's inventory (for a plan's --inventory); with
                      flags, write a variant first and print its path: ssh as U (the hosts
                      have root and rescue, a user with passwordless sudo), every command
                      through sudo -n, every connection through lab host HOST (ssh -J
                      root@HOST's address); default FILE: STATE/inventory-U[-sudo][-via-HOST].yaml;
                      a later lab break rewrites it too

every command takes --state-dir DIR (default $ETCD_RESCUE_LAB_STATE or %s)
`

func labUsageText() string {
	var b strings.Builder
	for _, s := range lab.Scenarios {
		fmt.Fprintf(&b, "                        %-12s %s\n", s.Name, s.Does)
	}
	return fmt.Sprintf(labUsage, b.String(), lab.DefaultStateDir)
}

// cmdLab implements `etcd-rescue lab ...`.
func cmdLab(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		w := stderr
		if len(args) > 0 {
			w = stdout
		}
		fmt.Fprint(w, labUsageText())
		if len(args) == 0 {
			return labExitUsage
		}
		return labExitOK
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("etcd-rescue lab "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	defState := os.Getenv("ETCD_RESCUE_LAB_STATE")
	if defState == "" {
		defState = lab.DefaultStateDir
	}
	stateDir := fs.String("state-dir", defState, "lab state directory")
	var (
		members  *int
		version  *string
		keys     *int
		mode     *string
		useTLS   *bool
		hard     *bool
		invUser  *string
		invSudo  *bool
		invJump  *string
		invOut   *string
		wantArgs int
	)
	switch sub {
	case "up":
		members = fs.Int("members", 3, "cluster size (1-9)")
		version = fs.String("etcd", "3.5", "etcd version: 3.5, 3.6, 3.7 or a full x.y.z")
		keys = fs.Int("keys", lab.DefaultKeys, "keys to write and fingerprint (0: none)")
		mode = fs.String("mode", "auto", "host mode: auto, nspawn or light")
		useTLS = fs.Bool("tls", false, "https client and peer URLs, client certificates required")
	case "break":
		wantArgs = 1
	case "reboot":
		wantArgs = 1
		hard = fs.Bool("hard", false, "power cut instead of a clean reboot")
	case "inventory":
		invUser = fs.String("user", "", "ssh.user of the variant (root or "+lab.OperatorUser+")")
		invSudo = fs.Bool("sudo", false, "ssh.sudo: true in the variant")
		invJump = fs.String("jump", "", "ssh.jump of the variant: a lab host (h1) or user@h1")
		invOut = fs.String("out", "", "where to write the variant")
	case "status", "verify", "down":
	default:
		return labUsageErr(stderr, fmt.Sprintf("unknown lab command %q", sub))
	}
	pos, err := parseInterleaved(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, labUsageText())
		return labExitOK
	}
	if err != nil {
		return labUsageErr(stderr, err.Error())
	}
	if len(pos) != wantArgs {
		switch {
		case sub == "break" && len(pos) == 0:
			return labUsageErr(stderr, "lab break needs a SCENARIO")
		case sub == "reboot" && len(pos) == 0:
			return labUsageErr(stderr, "lab reboot needs a HOST (h1, h2...)")
		default:
			return labUsageErr(stderr, fmt.Sprintf("unexpected argument %q", pos[len(pos)-1]))
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if sub == "up" {
		switch {
		case *members < 1 || *members > 9:
			return labUsageErr(stderr, fmt.Sprintf("--members must be between 1 and 9, not %d", *members))
		case !labVersionRE.MatchString(*version):
			return labUsageErr(stderr, fmt.Sprintf("--etcd %q: want 3.5, 3.6, 3.7 or a full version like 3.5.35", *version))
		case *mode != "auto" && *mode != string(lab.ModeNspawn) && *mode != string(lab.ModeLight):
			return labUsageErr(stderr, fmt.Sprintf("--mode %q: want auto, nspawn or light", *mode))
		case *keys < 0:
			return labUsageErr(stderr, "--keys must not be negative")
		}
	}
	if sub == "break" && !knownScenario(pos[0]) {
		return labUsageErr(stderr, fmt.Sprintf("unknown scenario %q", pos[0]))
	}

	switch sub {
	case "up":
		m := lab.Mode(*mode)
		if *mode == "auto" {
			m = lab.ModeAuto
		}
		k := *keys
		if k == 0 {
			k = -1
		}
		l, err := lab.Up(ctx, lab.Options{Members: *members, Version: *version, Keys: k, StateDir: *stateDir, Log: stdout, Mode: m, TLS: *useTLS})
		if err != nil {
			return labFail(stderr, err)
		}
		fmt.Fprintf(stdout, "ssh:       ssh -F %s h1\n", l.SSHConfigPath())
		tlsFlags := ""
		if l.TLS() {
			tlsFlags = fmt.Sprintf(" --cacert=%s --cert=%s --key=%s", l.CACertPath(), l.ClientCertPath(), l.ClientCertKeyPath())
		}
		fmt.Fprintf(stdout, "etcdctl:   %s/etcdctl --endpoints=%s%s member list -w table\n", l.BinDir(), strings.Join(l.Endpoints(), ","), tlsFlags)
		return labExitOK
	case "down":
		if err := lab.DownDir(ctx, *stateDir, stdout); err != nil {
			return labFail(stderr, err)
		}
		return labExitOK
	}

	l, err := lab.Open(*stateDir)
	if err != nil {
		return labFail(stderr, err)
	}
	l.SetLog(stdout)
	switch sub {
	case "inventory":
		o := lab.InventoryOptions{User: *invUser, Sudo: *invSudo, Jump: *invJump}
		if o == (lab.InventoryOptions{}) && *invOut == "" {
			fmt.Fprintln(stdout, l.InventoryPath())
			break
		}
		path := *invOut
		if path == "" {
			path = inventoryVariantPath(l.StateDir(), o)
		}
		if err := l.WriteInventory(path, o); err != nil {
			return labFail(stderr, err)
		}
		fmt.Fprintln(stdout, path)
	case "break":
		if err := l.Break(ctx, pos[0]); err != nil {
			return labFail(stderr, err)
		}
	case "reboot":
		if err := l.Reboot(ctx, pos[0], *hard); err != nil {
			return labFail(stderr, err)
		}
	case "verify":
		if err := l.Verify(ctx); err != nil {
			return labFail(stderr, err)
		}
		fp, _ := l.Fingerprint()
		if fp != nil {
			fmt.Fprintf(stdout, "lab verify: OK: %d members healthy, one leader, member list matches the inventory, all %d keys intact\n", len(l.Members()), fp.Keys)
		} else {
			fmt.Fprintf(stdout, "lab verify: OK: %d members healthy, one leader, member list matches the inventory (no keys fingerprinted)\n", len(l.Members()))
		}
	case "status":
		printLabStatus(stdout, l.Status(ctx))
	}
	return labExitOK
}

// inventoryVariantPath is where `lab inventory --user U --sudo --jump H`
// writes its variant by default: STATE/inventory-U[-sudo][-via-H].yaml.
func inventoryVariantPath(stateDir string, o lab.InventoryOptions) string {
	user := o.User
	if user == "" {
		user = "root"
	}
	name := "inventory-" + user
	if o.Sudo {
		name += "-sudo"
	}
	if o.Jump != "" {
		name += "-via-" + strings.ReplaceAll(o.Jump, "@", "-at-")
	}
	return filepath.Join(stateDir, name+".yaml")
}

var labVersionRE = regexp.MustCompile(`^v?3\.[0-9]+(\.[0-9]+)?$`)

func knownScenario(name string) bool {
	for _, s := range lab.Scenarios {
		if s.Name == name {
			return true
		}
	}
	return false
}

// parseInterleaved parses flags that may come before or after positional
// arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func labUsageErr(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "etcd-rescue: error: %s\n", msg)
	fmt.Fprintln(stderr, "hint: etcd-rescue lab --help lists the lab commands and their flags")
	return labExitUsage
}

func labFail(stderr io.Writer, err error) int {
	var pe *lab.PrereqError
	var ve *lab.VerifyError
	switch {
	case errors.As(err, &pe):
		fmt.Fprintf(stderr, "etcd-rescue: error: %v\n", err)
		for _, m := range pe.Missing {
			fmt.Fprintf(stderr, "  - %s\n", m.What)
		}
		for _, h := range pe.Hints() {
			fmt.Fprintf(stderr, "hint: %s\n", h)
		}
		return labExitPrereq
	case errors.As(err, &ve):
		fmt.Fprintln(stderr, "etcd-rescue: error: lab verify: the lab's cluster is not healthy:")
		for _, p := range ve.Problems {
			fmt.Fprintf(stderr, "  - %s\n", p)
		}
		fmt.Fprintln(stderr, "hint: `etcd-rescue lab status` shows every host and member")
		return labExitFailure
	case errors.Is(err, lab.ErrNotUp):
		fmt.Fprintf(stderr, "etcd-rescue: error: %v\n", err)
		fmt.Fprintln(stderr, "hint: start one with `etcd-rescue lab up` (or pass the --state-dir it was started with)")
		return labExitFailure
	case errors.Is(err, lab.ErrBusy):
		fmt.Fprintf(stderr, "etcd-rescue: error: %v\n", err)
		fmt.Fprintln(stderr, "hint: one lab at a time per machine: `etcd-rescue lab down` the other one first")
		return labExitFailure
	}
	msg := err.Error()
	first, more, _ := strings.Cut(msg, "\n")
	fmt.Fprintf(stderr, "etcd-rescue: error: %s\n", first)
	if more != "" {
		for _, line := range strings.Split(more, "\n") {
			fmt.Fprintf(stderr, "  %s\n", line)
		}
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "hint: interrupted; `etcd-rescue lab down` removes whatever is left")
		return labExitInterrupted
	}
	return labExitFailure
}

func printLabStatus(w io.Writer, s *lab.Status) {
	tlsNote := ""
	if s.TLS {
		tlsNote = ", TLS (https, client certificates required)"
	}
	fmt.Fprintf(w, "lab %s: %s mode, etcd %s%s\n\n", s.StateDir, s.Mode, s.Version, tlsNote)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDRESS\tSSH\tETCD\tDATA DIR\tMEMORY")
	for _, h := range s.Hosts {
		ssh, data := "down", "-"
		if h.SSH {
			ssh = "up"
			data = "empty/none"
			if h.DataDir {
				data = "member/"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1f MiB\n", h.Name, h.Address, ssh, h.Etcd, data, float64(h.Memory)/(1<<20))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tHOST\tCLIENT URL\tSTATE")
	for _, m := range s.Members {
		st := ""
		switch {
		case m.Err != "":
			st = "down: " + m.Err
		case m.Leader == 0:
			st = fmt.Sprintf("up, NO LEADER, revision %d", m.Revision)
		case m.Leader == m.ID:
			st = fmt.Sprintf("leader, revision %d, db %.1f MB, etcd %s", m.Revision, float64(m.DBSize)/1e6, m.Version)
		default:
			st = fmt.Sprintf("follower, revision %d, db %.1f MB, etcd %s", m.Revision, float64(m.DBSize)/1e6, m.Version)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, m.Host, m.ClientURL, st)
	}
	tw.Flush()
	if len(s.MemberList) > 0 {
		fmt.Fprintln(w, "\nmember list (from the cluster):")
		for _, m := range s.MemberList {
			fmt.Fprintf(w, "  %s\n", m)
		}
	} else {
		fmt.Fprintln(w, "\nmember list: unavailable (no member with a leader answers)")
	}
	fmt.Fprintln(w)
	keys := "unreadable"
	if s.Keys >= 0 {
		keys = fmt.Sprint(s.Keys)
	}
	if s.Fingerprint != nil {
		fmt.Fprintf(w, "keys: %s under %s; fingerprint: %d keys at revision %d (sha256 %.16s)\n", keys, lab.KeyPrefix, s.Fingerprint.Keys, s.Fingerprint.Revision, s.Fingerprint.SHA256)
	} else {
		fmt.Fprintf(w, "keys: %s under %s; no fingerprint\n", keys, lab.KeyPrefix)
	}
	if len(s.Breaks) > 0 {
		fmt.Fprintf(w, "breaks: %s\n", strings.Join(s.Breaks, ", "))
	}
	if len(s.Problems) == 0 {
		fmt.Fprintln(w, "health: OK (lab verify would pass)")
		return
	}
	fmt.Fprintln(w, "health: NOT OK")
	for _, p := range s.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}
