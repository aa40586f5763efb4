package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/lab"
)

const labUsage = `usage: etcd-rescue lab COMMAND [flags]

A disposable etcd cluster on real SSH hosts on this machine (root, Linux),
for rehearsing recovery plans.

commands:
  up [--members N] [--etcd 3.5|3.6|3.7|x.y.z] [--keys K] [--mode auto|nspawn|light] [--tls [--tls-shared-cert]]
     [--layout systemd|static-pod] [--s3] [--state-store]
                      create hosts h1..hN, start a healthy N-member cluster, write K keys,
                      record their fingerprint and write the inventory; --tls: https client
                      and peer URLs with client certificates required, a CA and operator
                      certificate in STATE/pki, and on each host a member certificate valid
                      only for its own address, so that an IP change or a replacement host
                      needs a new one, as in production (the inventory gets cluster.tls and
                      vars.caCert, vars.caKey); --tls-shared-cert: one member certificate
                      valid for every lab address on all hosts instead; --layout static-pod:
                      kubeadm-style control-plane hosts (light mode, TLS): a real kubelet with
                      containerd runs etcd and kube-apiserver as static pods, and 200
                      ConfigMaps are created through the API server and fingerprinted;
                      --s3: also a real S3-compatible store (SeaweedFS, make s3-bins) on
                      https://127.0.0.1:PORT, certificate from the lab's CA, keys made for
                      the lab, bucket etcd-backups; the inventory gets s3: and its vars;
                      --state-store: also a management etcd (the lab's etcd binary) on
                      https://127.0.0.1:PORT, client certificates required, for run state
                      and run locks shared by a team; the inventory gets state:
  break SCENARIO      damage the lab; SCENARIO is one of:
%s  reboot HOST [--hard]  clean reboot of HOST (disk kept), or a power cut with --hard
  status              hosts, addresses, etcd state, members, revision, keys vs the fingerprint
  verify              exit 0 only if the cluster is healthy and every fingerprinted key is intact
  state-store stop|start
                      kill the state store (SIGKILL, data kept) or start it again on its
                      data and ports, for rehearsing a store outage
  down                kill what the lab started (the S3 and state stores too, with their data), remove
                      namespaces, mounts and state (idempotent)
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
	return fmt.Sprintf(labUsage, scenarioList("                        "), lab.DefaultStateDir)
}

// scenarioList is the break scenarios, one a line after indent.
func scenarioList(indent string) string {
	var b strings.Builder
	for _, s := range lab.Scenarios {
		fmt.Fprintf(&b, "%s%-12s %s\n", indent, s.Name, s.Does)
	}
	return b.String()
}

// labOpts are the flags of the lab commands.
type labOpts struct {
	stateDir string
	members  int
	version  string
	keys     int
	mode     string
	tls      bool
	shared   bool
	layout   string
	s3       bool
	store    bool
	hard     bool
	inv      lab.InventoryOptions
	invOut   string
	out      string
}

// newLabCmd is `etcd-rescue lab ...`: every error of a lab command is a
// labError, reported with the lab's details and hints.
func newLabCmd() *cobra.Command {
	o := &labOpts{}
	labCmd := &cobra.Command{
		Use:   "lab COMMAND",
		Short: "local rehearsal cluster: up, break, status, verify, down (root, Linux)",
		Long:  strings.TrimPrefix(labUsageText(), "usage: etcd-rescue lab COMMAND [flags]\n\n"),
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				fmt.Fprint(cmd.ErrOrStderr(), labUsageText())
				return reported(exitUsage, "no lab command")
			}
			return unknownCommand(cmd, args[0])
		},
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	defState := os.Getenv("ETCD_RESCUE_LAB_STATE")
	if defState == "" {
		defState = lab.DefaultStateDir
	}
	labCmd.PersistentFlags().StringVar(&o.stateDir, "state-dir", defState, "lab state `DIR`; $ETCD_RESCUE_LAB_STATE sets the default")
	_ = labCmd.RegisterFlagCompletionFunc("state-dir", completeDirs)

	sub := func(use, short string, args cobra.PositionalArgs, run func(ctx context.Context, cmd *cobra.Command, args []string) error) *cobra.Command {
		return &cobra.Command{
			Use:               use,
			Short:             short,
			Args:              args,
			ValidArgsFunction: cobra.NoFileCompletions,
			RunE: func(cmd *cobra.Command, args []string) error {
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				if err := run(ctx, cmd, args); err != nil {
					return labError{err}
				}
				return nil
			},
		}
	}

	up := sub("up", "create hosts h1..hN and start a healthy N-member cluster", labArgs(0, ""), func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		return labUp(ctx, o, cmd.OutOrStdout())
	})
	up.Long = `Create hosts h1..hN, start a healthy N-member cluster, write K keys, record
their fingerprint and write the inventory.

--tls: https client and peer URLs with client certificates required on both.
A CA (STATE/pki/ca.crt, ca.key) and the operator's client certificate are
made in STATE/pki, and every host gets a member certificate of its own in
/etc/etcd/pki (server.crt, server.key; for the client and the peer port),
valid only for that host's address, 127.0.0.1, ::1, localhost and its name:
as in production, a member whose address changes (lab break ip-change) or a
replacement host (lab break lost-host, which gets the CA but no member
certificate) needs a new certificate before its peers accept it. The
inventory gets cluster.tls and vars.caCert, vars.caKey (the CA, for a plan
that issues member certificates).

--tls-shared-cert (with --tls): one member certificate, valid for every address
a lab host can ever have, on every host instead: no new certificate is ever
needed.

--layout static-pod: every host is a kubeadm-style control-plane node (light
host mode, always TLS): a real kubelet (standalone, staticPodPath
/etc/kubernetes/manifests) on containerd and runc runs etcd and kube-apiserver
as static pods with hostNetwork, certificates in /etc/kubernetes/pki; 200
ConfigMaps are created through the API server and fingerprinted, and lab
verify checks them and /readyz on every API server. Needs make kube-bins.

--s3 (any layout): also a real S3-compatible object store on this machine:
SeaweedFS ` + lab.SeaweedFSVersion + ` (weed server -s3: master, volume server, filer and S3
gateway in one process; make s3-bins builds it), listening on 127.0.0.1 only
(a free port the lab picks; not reachable from the lab hosts). The S3 API is
https with a certificate for 127.0.0.1 signed by the lab's CA (STATE/pki/ca.crt,
made even without --tls), requests must be signed with the access key and
secret key made for this lab, and the bucket ` + lab.S3Bucket + ` is created. lab up
returns once a signed request answers, the bucket exists and a first object
was written to it (weed's first write waits out its start-up: ~12 s after it
starts). weed keeps running after lab up ends; its pid file, log and data are
in STATE/s3 (weed.pid, weed.log, data/); lab status shows it up or down; lab
down kills it and deletes STATE/s3 with every object. The
inventory (then mode 0600) gets an s3: section (endpoint, region ` + lab.S3Region + `,
pathStyle: true, ca: pki/ca.crt, accessKey/secretKey from vars) and
vars.s3AccessKey, s3SecretKey, s3Bucket.

--state-store (any layout): also a management etcd on this machine, the
team's shared store of run state and run locks (--state etcd://...): one
etcd member (the lab's etcd binary) on 127.0.0.1 only, on two free ports the
lab picks, https with a certificate for 127.0.0.1 signed by the lab's CA and
client certificates required (STATE/state-store/client.crt, client.key). It
keeps running after lab up ends; store.json, etcd.pid, etcd.log and data/
are in STATE/state-store. The inventory gets a state: section (url
etcd://127.0.0.1:PORT/` + lab.StateStorePrefix + `, ca, cert, key as absolute paths),
so every plan run with it keeps its state there. lab state-store stop kills
it (SIGKILL, data kept), lab state-store start brings it back on the same
data and ports; lab status shows it up or down; lab down kills it and
deletes STATE/state-store.`
	up.Flags().IntVar(&o.members, "members", 3, "cluster size (1-9)")
	up.Flags().StringVar(&o.version, "etcd", "3.5", "etcd version: 3.5, 3.6, 3.7 or a full x.y.z")
	up.Flags().IntVar(&o.keys, "keys", lab.DefaultKeys, "keys to write and fingerprint (0: none)")
	up.Flags().StringVar(&o.mode, "mode", "auto", "host mode: auto, nspawn or light")
	up.Flags().BoolVar(&o.tls, "tls", false, "https client and peer URLs, client certificates required, a member certificate per host valid for its address only")
	up.Flags().BoolVar(&o.shared, "tls-shared-cert", false, "with --tls: one member certificate valid for every lab address on all hosts")
	up.Flags().StringVar(&o.layout, "layout", lab.LayoutSystemd, "how etcd runs on the hosts: systemd (a unit) or static-pod (kubelet static pods with kube-apiserver; light mode, TLS)")
	up.Flags().BoolVar(&o.s3, "s3", false, "also a real S3-compatible store (SeaweedFS) on https://127.0.0.1:PORT with bucket "+lab.S3Bucket+" (make s3-bins)")
	up.Flags().BoolVar(&o.store, "state-store", false, "also a management etcd on https://127.0.0.1:PORT for shared run state and run locks (the inventory gets state:)")
	completeValues(up, "layout", lab.LayoutSystemd, lab.LayoutStaticPod)
	completeValues(up, "etcd", "3.5", "3.6", "3.7")
	completeValues(up, "mode", "auto", string(lab.ModeNspawn), string(lab.ModeLight))

	brk := sub("break SCENARIO", "damage the lab with a scenario", labArgs(1, "lab break needs a SCENARIO"), func(ctx context.Context, cmd *cobra.Command, args []string) error {
		l, err := openLab(o, cmd.OutOrStdout())
		if err != nil {
			return err
		}
		return l.Break(ctx, args[0])
	})
	brk.Long = "Damage the lab; SCENARIO is one of:\n" + scenarioList("  ")
	brk.ValidArgsFunction = completeScenarios
	// An unknown scenario is a usage error, found before the lab is opened.
	brk.PreRunE = func(_ *cobra.Command, args []string) error {
		if !knownScenario(args[0]) {
			return withCode(exitUsage, fmt.Errorf("unknown scenario %q", args[0]), labHint)
		}
		return nil
	}

	reboot := sub("reboot HOST", "clean reboot of HOST (disk kept), or a power cut with --hard", labArgs(1, "lab reboot needs a HOST (h1, h2...)"), func(ctx context.Context, cmd *cobra.Command, args []string) error {
		l, err := openLab(o, cmd.OutOrStdout())
		if err != nil {
			return err
		}
		return l.Reboot(ctx, args[0], o.hard)
	})
	reboot.Flags().BoolVar(&o.hard, "hard", false, "power cut instead of a clean reboot")

	status := sub("status", "hosts, addresses, etcd state, members, revision, keys vs the fingerprint", labArgs(0, ""), func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		if err := checkOutput(o.out, "table", "json"); err != nil {
			return err
		}
		l, err := openLab(o, cmd.OutOrStdout())
		if err != nil {
			return err
		}
		if o.out == "json" {
			return writeJSON(cmd.OutOrStdout(), labStatusJSON(l.Status(ctx)))
		}
		printLabStatus(cmd.OutOrStdout(), l.Status(ctx))
		return nil
	})
	addOutputFlag(status, &o.out, "table", "table", "json")

	verify := sub("verify", "exit 0 only if the cluster is healthy and every fingerprinted key is intact", labArgs(0, ""), func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		return labVerify(ctx, o, cmd.OutOrStdout())
	})

	down := sub("down", "kill what the lab started, remove namespaces, mounts and state (idempotent)", labArgs(0, ""), func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		return lab.DownDir(ctx, o.stateDir, cmd.OutOrStdout())
	})

	inv := sub("inventory", "print the path of the lab's inventory, or write a variant", labArgs(0, ""), func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		return labInventory(o, cmd.OutOrStdout())
	})
	inv.Long = `Print the path of the lab's inventory (for a plan's --inventory); with flags,
write a variant first and print its path: ssh as U (the hosts have root and
rescue, a user with passwordless sudo), every command through sudo -n, every
connection through lab host HOST (ssh -J root@HOST's address); default FILE:
STATE/inventory-U[-sudo][-via-HOST].yaml; a later lab break rewrites it too.`
	inv.Flags().StringVar(&o.inv.User, "user", "", "ssh.user of the variant (root or "+lab.OperatorUser+")")
	inv.Flags().BoolVar(&o.inv.Sudo, "sudo", false, "ssh.sudo: true in the variant")
	inv.Flags().StringVar(&o.inv.Jump, "jump", "", "ssh.jump of the variant: a lab host (h1) or user@h1")
	inv.Flags().StringVar(&o.invOut, "out", "", "where to write the variant")
	completeValues(inv, "user", "root", lab.OperatorUser)
	_ = inv.RegisterFlagCompletionFunc("out", completeYAMLFiles)

	store := sub("state-store stop|start", "kill the lab's state store (data kept) or start it again on its data and ports", labArgs(1, "lab state-store needs stop or start"), func(ctx context.Context, cmd *cobra.Command, args []string) error {
		return labStateStoreCmd(o, args[0], cmd.OutOrStdout())
	})
	store.ValidArgs = []string{"stop", "start"}
	store.ValidArgsFunction = nil
	store.PreRunE = func(_ *cobra.Command, args []string) error {
		if args[0] != "stop" && args[0] != "start" {
			return withCode(exitUsage, fmt.Errorf("lab state-store %q: want stop or start", args[0]), labHint)
		}
		return nil
	}

	labCmd.AddCommand(up, brk, reboot, status, verify, down, inv, store)
	return labCmd
}

// labHint ends every usage error of the lab commands.
const labHint = "etcd-rescue lab --help lists the lab commands and their flags"

// labArgs checks that a lab command has n arguments; missing says what is
// missing when there is none.
func labArgs(n int, missing string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) == n:
			return nil
		case len(args) == 0:
			return withCode(exitUsage, errors.New(missing), labHint)
		}
		return withCode(exitUsage, fmt.Errorf("unexpected argument %q", args[len(args)-1]), labHint)
	}
}

func labUp(ctx context.Context, o *labOpts, stdout io.Writer) error {
	usage := func(msg string) error { return withCode(exitUsage, errors.New(msg), labHint) }
	switch {
	case o.members < 1 || o.members > 9:
		return usage(fmt.Sprintf("--members must be between 1 and 9, not %d", o.members))
	case !labVersionRE.MatchString(o.version):
		return usage(fmt.Sprintf("--etcd %q: want 3.5, 3.6, 3.7 or a full version like 3.5.35", o.version))
	case o.mode != "auto" && o.mode != string(lab.ModeNspawn) && o.mode != string(lab.ModeLight):
		return usage(fmt.Sprintf("--mode %q: want auto, nspawn or light", o.mode))
	case o.keys < 0:
		return usage("--keys must not be negative")
	case o.layout != lab.LayoutSystemd && o.layout != lab.LayoutStaticPod:
		return usage(fmt.Sprintf("--layout %q: want %s or %s", o.layout, lab.LayoutSystemd, lab.LayoutStaticPod))
	case o.layout == lab.LayoutStaticPod && o.mode == string(lab.ModeNspawn):
		return usage("--layout static-pod runs in the light host mode only (see lab/README.md)")
	case o.shared && !o.tls && o.layout != lab.LayoutStaticPod:
		return usage("--tls-shared-cert needs --tls")
	}
	m := lab.Mode(o.mode)
	if o.mode == "auto" {
		m = lab.ModeAuto
	}
	k := o.keys
	if k == 0 {
		k = -1
	}
	l, err := lab.Up(ctx, lab.Options{Members: o.members, Version: o.version, Keys: k, StateDir: o.stateDir, Log: stdout, Mode: m, TLS: o.tls, TLSSharedCert: o.shared, Layout: o.layout, S3: o.s3, StateStore: o.store})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ssh:       ssh -F %s h1\n", l.SSHConfigPath())
	tlsFlags := ""
	if l.TLS() {
		tlsFlags = fmt.Sprintf(" --cacert=%s --cert=%s --key=%s", l.CACertPath(), l.ClientCertPath(), l.ClientCertKeyPath())
	}
	fmt.Fprintf(stdout, "etcdctl:   %s/etcdctl --endpoints=%s%s member list -w table\n", l.BinDir(), strings.Join(l.Endpoints(), ","), tlsFlags)
	if l.StaticPod() {
		if hs := l.Hosts(); len(hs) > 0 {
			fmt.Fprintf(stdout, "api:       curl --cacert %s --cert %s --key %s %s/readyz\n", l.CACertPath(), l.AdminCertPath(), l.AdminKeyPath(), lab.APIServerURL(hs[0].Address))
		}
	}
	if s3 := l.S3(); s3 != nil {
		// the keys are in the inventory (vars.s3AccessKey, vars.s3SecretKey), never printed
		fmt.Fprintf(stdout, "s3:        %s, bucket %s, CA %s, keys in the inventory's vars; log %s\n", s3.Endpoint, s3.Bucket, s3.CAFile, s3.LogFile)
	}
	if st := l.StateStore(); st != nil {
		fmt.Fprintf(stdout, "state:     --state '%s?cacert=%s&cert=%s&key=%s' (the inventory's state:); log %s\n", st.URL, st.CAFile, st.CertFile, st.KeyFile, st.LogFile)
	}
	return nil
}

// labStateStoreCmd is lab state-store stop|start.
func labStateStoreCmd(o *labOpts, action string, stdout io.Writer) error {
	l, err := openLab(o, stdout)
	if err != nil {
		return err
	}
	if l.StateStore() == nil {
		return fmt.Errorf("%w in %s\nhint: bring the lab up with --state-store (lab down, then lab up --state-store)", lab.ErrNoStateStore, l.StateDir())
	}
	if action == "stop" {
		if err := lab.StopStateStore(l.StateDir()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "state store %s stopped (SIGKILL; data kept: lab state-store start brings it back)\n", l.StateStore().URL)
		return nil
	}
	if err := lab.StartStateStore(l.StateDir()); err != nil {
		return err
	}
	st := l.StateStore()
	fmt.Fprintf(stdout, "state store %s up (etcd pid %d)\n", st.URL, st.PID)
	return nil
}

// openLab opens the lab that is up in o.stateDir, logging to stdout.
func openLab(o *labOpts, stdout io.Writer) (*lab.Lab, error) {
	l, err := lab.Open(o.stateDir)
	if err != nil {
		return nil, err
	}
	l.SetLog(stdout)
	return l, nil
}

func labVerify(ctx context.Context, o *labOpts, stdout io.Writer) error {
	l, err := openLab(o, stdout)
	if err != nil {
		return err
	}
	if err := l.Verify(ctx); err != nil {
		return err
	}
	fp, _ := l.Fingerprint()
	if kfp, _ := l.KubeFingerprint(); kfp != nil {
		fmt.Fprintf(stdout, "lab verify: OK: every API server ready (/readyz 200), all %d ConfigMaps in %s intact through each of them\n", kfp.ConfigMaps, kfp.Namespace)
	}
	if fp != nil {
		fmt.Fprintf(stdout, "lab verify: OK: %d members healthy, one leader, member list matches the inventory, all %d keys intact\n", len(l.Members()), fp.Keys)
	} else {
		fmt.Fprintf(stdout, "lab verify: OK: %d members healthy, one leader, member list matches the inventory (no keys fingerprinted)\n", len(l.Members()))
	}
	return nil
}

func labInventory(o *labOpts, stdout io.Writer) error {
	l, err := openLab(o, stdout)
	if err != nil {
		return err
	}
	if o.inv == (lab.InventoryOptions{}) && o.invOut == "" {
		fmt.Fprintln(stdout, l.InventoryPath())
		return nil
	}
	path := o.invOut
	if path == "" {
		path = inventoryVariantPath(l.StateDir(), o.inv)
	}
	if err := l.WriteInventory(path, o.inv); err != nil {
		return err
	}
	fmt.Fprintln(stdout, path)
	return nil
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

func printLabStatus(w io.Writer, s *lab.Status) {
	tlsNote := ""
	if s.TLS {
		tlsNote = ", TLS (https, client certificates required; a member certificate per host, valid for its address only)"
		if s.TLSSharedCert {
			tlsNote = ", TLS (https, client certificates required; one shared member certificate for every lab address)"
		}
	}
	layout := s.Layout
	if layout == lab.LayoutStaticPod {
		layout = "static-pod layout (kubelet " + lab.KubeVersion + " static pods: etcd, kube-apiserver)"
	} else {
		layout = "systemd layout"
	}
	fmt.Fprintf(w, "lab %s: %s mode, %s, etcd %s%s\n\n", s.StateDir, s.Mode, layout, s.Version, tlsNote)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if s.Layout == lab.LayoutStaticPod {
		fmt.Fprintln(tw, "HOST\tADDRESS\tSSH\tETCD\tAPI SERVER\tDATA DIR\tMEMORY")
	} else {
		fmt.Fprintln(tw, "HOST\tADDRESS\tSSH\tETCD\tDATA DIR\tMEMORY")
	}
	for _, h := range s.Hosts {
		ssh, data := "down", "-"
		if h.SSH {
			ssh = "up"
			data = "empty/none"
			if h.DataDir {
				data = "member/"
			}
		}
		if s.Layout == lab.LayoutStaticPod {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.1f MiB\n", h.Name, h.Address, ssh, h.Etcd, h.APIServer, data, float64(h.Memory)/(1<<20))
			continue
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
	if s.S3 != nil {
		if s.S3.State == "up" {
			fmt.Fprintf(w, "s3: up at %s, bucket %s (weed pid %d, RSS %.0f MiB)\n", s.S3.Endpoint, s.S3.Bucket, s.S3.PID, float64(s.S3.RSS)/(1<<20))
		} else {
			fmt.Fprintf(w, "s3: %s (%s)\n", s.S3.State, s.S3.Endpoint)
		}
	}
	if s.StateStore != nil {
		if s.StateStore.State == "up" {
			fmt.Fprintf(w, "state store: up at %s (etcd pid %d)\n", s.StateStore.URL, s.StateStore.PID)
		} else {
			fmt.Fprintf(w, "state store: %s (%s)\n", s.StateStore.State, s.StateStore.URL)
		}
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

// labStatus is lab status -o json.
type labStatus struct {
	StateDir    string           `json:"stateDir"`
	Mode        string           `json:"mode"`
	Version     string           `json:"etcdVersion"`
	TLS         bool             `json:"tls"`
	SharedCert  bool             `json:"tlsSharedCert"`
	Hosts       []labHost        `json:"hosts"`
	Members     []labMember      `json:"members"`
	MemberList  []string         `json:"memberList"`
	Layout      string           `json:"layout"`
	Keys        int              `json:"keys"`
	Fingerprint *lab.Fingerprint `json:"fingerprint,omitempty"`
	Breaks      []string         `json:"breaks"`
	Healthy     bool             `json:"healthy"`
	Problems    []string         `json:"problems"`
	S3          *labS3           `json:"s3,omitempty"`
	StateStore  *labStateStore   `json:"stateStore,omitempty"`
}

// labStateStore is the state store in lab status -o json.
type labStateStore struct {
	URL   string `json:"url"`
	PID   int    `json:"pid"`
	Up    bool   `json:"up"`
	State string `json:"state"`
}

// labS3 is the S3 store in lab status -o json.
type labS3 struct {
	Endpoint string `json:"endpoint"`
	Bucket   string `json:"bucket"`
	PID      int    `json:"pid"`
	Up       bool   `json:"up"`
	State    string `json:"state"`
	RSSBytes uint64 `json:"rssBytes"`
}

type labHost struct {
	Name        string `json:"name"`
	Address     string `json:"address"`
	SSH         bool   `json:"ssh"`
	Etcd        string `json:"etcd"`
	DataDir     bool   `json:"dataDir"`
	MemoryBytes uint64 `json:"memoryBytes"`
	APIServer   string `json:"apiServer,omitempty"`
}

type labMember struct {
	Name      string `json:"name"`
	Host      string `json:"host"`
	ClientURL string `json:"clientURL"`
	ID        string `json:"id,omitempty"`
	Leader    string `json:"leader,omitempty"`
	Revision  int64  `json:"revision"`
	DBSize    int64  `json:"dbSizeBytes"`
	Version   string `json:"version,omitempty"`
	Error     string `json:"error,omitempty"`
}

// labStatusJSON is s in the shape of lab status -o json; member ids are
// hex strings, as etcdctl prints them.
func labStatusJSON(s *lab.Status) labStatus {
	nonNil := func(l []string) []string {
		if l == nil {
			return []string{}
		}
		return l
	}
	hexID := func(id uint64) string {
		if id == 0 {
			return ""
		}
		return fmt.Sprintf("%x", id)
	}
	j := labStatus{StateDir: s.StateDir, Mode: s.Mode, Layout: s.Layout, Version: s.Version, TLS: s.TLS, SharedCert: s.TLSSharedCert, Hosts: []labHost{}, Members: []labMember{},
		MemberList: nonNil(s.MemberList), Keys: s.Keys, Fingerprint: s.Fingerprint, Breaks: nonNil(s.Breaks),
		Healthy: len(s.Problems) == 0, Problems: nonNil(s.Problems)}
	for _, h := range s.Hosts {
		j.Hosts = append(j.Hosts, labHost{h.Name, h.Address, h.SSH, h.Etcd, h.DataDir, h.Memory, h.APIServer})
	}
	for _, m := range s.Members {
		j.Members = append(j.Members, labMember{m.Name, m.Host, m.ClientURL, hexID(m.ID), hexID(m.Leader), m.Revision, m.DBSize, m.Version, m.Err})
	}
	if s.S3 != nil {
		j.S3 = &labS3{Endpoint: s.S3.Endpoint, Bucket: s.S3.Bucket, PID: s.S3.PID, Up: s.S3.State == "up", State: s.S3.State, RSSBytes: s.S3.RSS}
	}
	if s.StateStore != nil {
		j.StateStore = &labStateStore{URL: s.StateStore.URL, PID: s.StateStore.PID, Up: s.StateStore.State == "up", State: s.StateStore.State}
	}
	return j
}
