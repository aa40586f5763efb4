package facts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/etcd-rescue/etcd-rescue/internal/access"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// DefaultTimeout bounds each host when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Options bound a collection.
type Options struct {
	// Timeout bounds each host (SSH connect, its commands and its member's
	// API calls together); hosts are asked in parallel, so the whole
	// collection takes about one Timeout. Zero means DefaultTimeout.
	Timeout time.Duration
	// Inventory is the inventory path, recorded in Facts.Inventory.
	Inventory string
	// Client, if set, gives the SSH client of a host: a connection the
	// caller keeps for what follows (an apply session's host locks and
	// steps), which the collection uses, connecting it if needed, and
	// leaves open. Nil: one connection per host of the collection's own,
	// closed at its end.
	Client func(host string) (*sshx.Client, error)
}

// Collect asks every host and member of inv (an inventory loaded with
// plans.LoadInventory), read-only, and returns what they said. An
// unreachable host or a silent member is a fact, not an error: the error is
// only for a collection that could not start (a missing identity file or
// TLS file: an *access.PrereqError; an inventory without cluster) or was
// interrupted (ctx).
func Collect(ctx context.Context, inv *plans.Plan, o Options) (*Facts, error) {
	if inv == nil || inv.Cluster == nil {
		return nil, errors.New("facts: the inventory has no cluster")
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if err := access.Preflight(inv); err != nil {
		return nil, err
	}
	start := time.Now()
	f := &Facts{
		Kind: Kind, Version: Version,
		CollectedAt: start.UTC().Truncate(time.Millisecond),
		Inventory:   o.Inventory,
		Timeout:     Duration(timeout),
		Cluster:     clusterOf(inv),
	}
	c := &collector{inv: inv, timeout: timeout, deadline: start.Add(timeout), token: randomToken(), client: o.Client}
	if inv.Cluster.TLS != nil {
		c.tls = access.TLSFiles(inv)
	}

	names := make([]string, 0, len(inv.Hosts))
	for n := range inv.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	members := map[string]*Member{}
	for _, m := range inv.Cluster.Members {
		mf := &Member{Name: m.Name, Host: m.Host, ClientURL: m.ClientURL}
		members[m.Name] = mf
		f.Members = append(f.Members, mf)
		if inv.Hosts[m.Host] == nil {
			mf.API, mf.Error = APICouldNotAsk, fmt.Sprintf("host %s is not in the inventory's hosts", m.Host)
		}
	}

	hctx, cancel := context.WithDeadline(ctx, c.deadline)
	defer cancel()
	var jobs []*job
	for _, n := range names {
		h := inv.Hosts[n]
		j := &job{host: &Host{Name: n, Address: h.Address}, start: start, done: make(chan struct{})}
		for _, m := range inv.Cluster.Members {
			if m.Host == n {
				j.members = append(j.members, m)
				j.out = append(j.out, members[m.Name])
			}
		}
		if len(j.members) > 0 {
			j.host.Member = j.members[0].Name
		}
		f.Hosts = append(f.Hosts, j.host)
		jobs = append(jobs, j)
		go func() {
			defer close(j.done)
			c.askHost(hctx, n, h, j)
		}()
	}

	// Every host is bounded by the deadline through its context; the hard
	// stop guards against a call that does not honour it (a remote kill
	// on a dead link), so one stuck host cannot hold the collection.
	hard := time.NewTimer(time.Until(c.deadline) + min(timeout/5, 2*time.Second) + 100*time.Millisecond)
	defer hard.Stop()
	stopped := false
	for _, j := range jobs {
		if stopped {
			j.abandon()
			continue
		}
		select {
		case <-j.done:
		case <-hard.C:
			stopped = true
			cancel()
			j.abandon()
		case <-ctx.Done():
			cancel()
			c.closeAll()
			return nil, ctx.Err()
		}
	}
	c.closeAll()
	f.Elapsed = Duration(time.Since(start).Truncate(time.Millisecond))
	return f, nil
}

// collector is one collection's shared state.
type collector struct {
	inv      *plans.Plan
	timeout  time.Duration
	deadline time.Time
	token    string
	tls      *etcdapi.TLSFiles
	client   func(host string) (*sshx.Client, error) // Options.Client

	mu      sync.Mutex
	closers []func()
	closed  bool
}

// onClose registers a connection to close at the end; after the end it is
// closed at once.
func (c *collector) onClose(fn func()) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		fn()
		return
	}
	c.closers = append(c.closers, fn)
	c.mu.Unlock()
}

func (c *collector) closeAll() {
	c.mu.Lock()
	c.closed = true
	fns := c.closers
	c.closers = nil
	c.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// job is one host's collection; its Host and Members are written only
// through set, which stops once the collector gave up waiting.
type job struct {
	host    *Host
	start   time.Time
	members []*plans.Member
	out     []*Member
	done    chan struct{}

	mu        sync.Mutex
	abandoned bool
}

func (j *job) set(fn func(h *Host, ms []*Member)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.abandoned {
		fn(j.host, j.out)
	}
}

// abandon freezes what the host said so far.
func (j *job) abandon() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.abandoned {
		return
	}
	select {
	case <-j.done:
		return
	default:
	}
	j.abandoned = true
	j.host.Elapsed = Duration(time.Since(j.start).Truncate(time.Millisecond))
	if j.host.Reach == "" {
		j.host.Reach, j.host.Error = ReachTimeout, "no answer within the timeout"
	} else {
		j.host.Notes = append(j.host.Notes, "collection stopped at the timeout; some probes did not finish")
	}
	for _, m := range j.out {
		if m.API == "" {
			m.API, m.Error = APICouldNotAsk, "no answer within the timeout"
		}
	}
}

// apiResult is what a member's client API said.
type apiResult struct {
	status  *Status
	list    []ListedMember
	hash    *HashKV
	err     error // Status's error
	refused bool  // nothing accepted the connection
	notes   []string
}

func (c *collector) askHost(ctx context.Context, name string, h *plans.Host, j *job) {
	start := time.Now()
	defer func() {
		j.set(func(hs *Host, _ []*Member) { hs.Elapsed = Duration(time.Since(start).Truncate(time.Millisecond)) })
	}()
	direct := c.inv.Cluster.ClientAccess == "direct"
	apis := make([]chan apiResult, len(j.members))
	// statuses get each member's Status as soon as it answers (nil: it
	// did not), before its member list and HashKV.
	statuses := make([]chan *Status, len(j.members))
	askAPIs := func(dial func(ctx context.Context, addr string) (net.Conn, error)) {
		for i, m := range j.members {
			apis[i], statuses[i] = make(chan apiResult, 1), make(chan *Status, 1)
			go func() { apis[i] <- c.askMember(ctx, m, dial, statuses[i]) }()
		}
	}
	if direct {
		askAPIs(nil)
	}

	client, err := c.sshClient(name, h)
	if err == nil {
		// Bounded by ctx (the collection's deadline) either way.
		err = client.Connect(ctx)
	}
	reach := ReachOf(err)
	j.set(func(hs *Host, _ []*Member) {
		hs.Reach, hs.Error = reach, oneLine(err)
		if client != nil && client.HostKeyCheckDisabled() {
			hs.Notes = append(hs.Notes, "host key NOT verified (ssh.insecureIgnoreHostKey)")
		}
	})
	if err == nil && !direct {
		askAPIs(func(ctx context.Context, addr string) (net.Conn, error) { return client.DialContext(ctx, "tcp", addr) })
	}

	var probed *Host
	var extra probeExtra
	if err == nil {
		probed, extra = c.probeHost(ctx, client, j)
		j.set(func(hs *Host, _ []*Member) {
			hs.Reach, hs.Error = probed.Reach, probed.Error
			hs.Addresses, hs.Service, hs.DataDir, hs.EtcdVersion = probed.Addresses, probed.Service, probed.DataDir, probed.EtcdVersion
			hs.Settings, hs.PeerPort, hs.ClientPort = probed.Settings, probed.PeerPort, probed.ClientPort
			hs.Notes = append(hs.Notes, probed.Notes...)
		})
		if probed.Reach.Asked() && probed.Settings != nil {
			certs, note := c.readCerts(ctx, client, probed.Settings)
			j.set(func(hs *Host, _ []*Member) {
				hs.Certificates = certs
				if note != "" {
					hs.Notes = append(hs.Notes, note)
				}
			})
		}
	}

	if probed != nil && probed.Reach.Asked() && extra.runningPIDs != "" {
		v, note := c.installedVersion(ctx, client, probed, extra, j.members, statuses)
		j.set(func(hs *Host, _ []*Member) {
			hs.EtcdVersion = v
			if note != "" {
				hs.Notes = append(hs.Notes, note)
			}
		})
	}
	for i, m := range j.members {
		var r apiResult
		if apis[i] == nil {
			r.err = fmt.Errorf("not asked: ssh to host %s failed (%s)", name, reach)
		} else {
			r = <-apis[i]
		}
		mf := memberFacts(m, r, probed, i == 0)
		j.set(func(_ *Host, ms []*Member) {
			out := ms[i]
			out.API, out.Error, out.Status, out.MemberList, out.HashKV = mf.API, mf.Error, mf.Status, mf.MemberList, mf.HashKV
		})
	}
}

// sshClient returns the client of host name: the caller's (Options.Client),
// or one of the collection's own, closed at its end, whose connect is
// bounded by the collection's timeout.
func (c *collector) sshClient(name string, h *plans.Host) (*sshx.Client, error) {
	if c.client != nil {
		return c.client(name)
	}
	cfg, err := access.SSHConfig(c.inv, h)
	if err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout <= 0 || cfg.ConnectTimeout > c.timeout {
		cfg.ConnectTimeout = c.timeout
	}
	client, err := sshx.New(name, cfg)
	if err != nil {
		return nil, err
	}
	c.onClose(func() { _ = client.Close() })
	return client, nil
}

// memberFacts decides a member's API state: answered; down when asked
// and nothing listens (the host answered and its client port is closed, or
// the connection was refused); could not ask otherwise.
func memberFacts(m *plans.Member, r apiResult, host *Host, onPortsMember bool) *Member {
	out := &Member{Name: m.Name, Host: m.Host, ClientURL: m.ClientURL, Status: r.status, MemberList: r.list, HashKV: r.hash}
	switch {
	case r.err == nil && r.status != nil:
		out.API = APIAnswered
		if len(r.notes) > 0 {
			out.Error = strings.Join(r.notes, "; ")
		}
	case r.refused:
		out.API, out.Error = APIDown, oneLine(r.err)
	case host != nil && host.Reach.Asked() && onPortsMember && host.ClientPort != nil && !*host.ClientPort:
		out.API, out.Error = APIDown, "nothing listens on the client port: "+oneLine(r.err)
	default:
		out.API, out.Error = APICouldNotAsk, oneLine(r.err)
	}
	return out
}

// askMember asks one member through the client API: Status (sent to
// status as soon as known, nil when it failed), then its serializable
// member list and HashKV at its current revision.
func (c *collector) askMember(ctx context.Context, m *plans.Member, dial func(ctx context.Context, addr string) (net.Conn, error), status chan<- *Status) apiResult {
	r := c.askMemberStatus(ctx, m, dial, status)
	select {
	case status <- r.status: // when Status was not reached
	default:
	}
	return r
}

func (c *collector) askMemberStatus(ctx context.Context, m *plans.Member, dial func(ctx context.Context, addr string) (net.Conn, error), status chan<- *Status) apiResult {
	left := time.Until(c.deadline)
	if left <= 0 {
		return apiResult{err: context.DeadlineExceeded}
	}
	cli, err := etcdapi.New(etcdapi.Config{
		Endpoints: []string{m.ClientURL}, TLS: c.tls, Dialer: dial,
		DialTimeout: left, RequestTimeout: left, ProbeTimeout: left,
	})
	if err != nil {
		return apiResult{err: err}
	}
	c.onClose(func() { _ = cli.Close() })
	st, err := cli.Status(ctx, m.ClientURL)
	if err != nil {
		return apiResult{err: err, refused: isRefused(err)}
	}
	// The member answered: its member list and HashKV at once (HashKV
	// hashes the whole key space; the list need not wait for it).
	r := apiResult{status: statusFacts(st)}
	status <- r.status
	var listErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var l []etcdapi.Member
		if l, listErr = cli.MemberList(ctx, true); listErr == nil {
			for _, lm := range l {
				r.list = append(r.list, ListedMember{ID: etcdapi.FormatID(lm.ID), Name: lm.Name, PeerURLs: lm.PeerURLs, ClientURLs: lm.ClientURLs, IsLearner: lm.IsLearner})
			}
		}
	}()
	hk, hashErr := cli.HashKV(ctx, m.ClientURL, 0)
	wg.Wait()
	if listErr != nil {
		r.notes = append(r.notes, "member list: "+oneLine(listErr))
	}
	if hashErr != nil {
		r.notes = append(r.notes, "hashkv: "+oneLine(hashErr))
	} else {
		r.hash = &HashKV{Hash: hk.Hash, Revision: hk.HashRevision, CompactRevision: hk.CompactRevision}
	}
	return r
}

// statusFacts converts etcdapi's status; alarms come from the status
// errors etcd fills with its alarm list ("memberID:... alarm:NOSPACE").
func statusFacts(st etcdapi.Status) *Status {
	s := &Status{
		MemberID: etcdapi.FormatID(st.MemberID), ClusterID: etcdapi.FormatID(st.ClusterID), Leader: etcdapi.FormatID(st.Leader),
		IsLearner: st.IsLearner, Version: st.Version, Revision: st.Revision,
		RaftTerm: st.RaftTerm, RaftIndex: st.RaftIndex, RaftAppliedIndex: st.RaftAppliedIndex,
		DBSize: st.DBSize, DBSizeInUse: st.DBSizeInUse, Errors: st.Errors,
	}
	s.Alarms = alarmsOf(st.Errors)
	return s
}

func alarmsOf(errs []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range errs {
		for _, f := range strings.Fields(e) {
			if a, ok := strings.CutPrefix(f, "alarm:"); ok && a != "" && a != "NONE" && !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// isRefused reports whether nothing accepted the connection to the client
// URL: refused directly, or refused on the host's side of the SSH tunnel.
func isRefused(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var oce *ssh.OpenChannelError
	return errors.As(err, &oce) && oce.Reason == ssh.ConnectionFailed && strings.Contains(strings.ToLower(oce.Message), "refused")
}

// probeHost runs the probe script and reads its output.
func (c *collector) probeHost(ctx context.Context, client *sshx.Client, j *job) (*Host, probeExtra) {
	lay := c.inv.Cluster.Layout
	spec := probeSpec{Token: c.token, Layout: lay.Service, Unit: lay.Unit, EnvFile: lay.EnvFile, Manifest: lay.Manifest,
		DataDir: lay.DataDir, BinDir: lay.BinDir}
	// The command's own timeout ends the script (it is killed on the
	// host) a second before the collection's deadline, so that what it
	// printed until then is still read.
	left := time.Until(c.deadline)
	res, err := client.Run(ctx, hostScript(spec), sshx.RunOpts{Display: "etcd-rescue facts probe (read-only)",
		Timeout: max(left-time.Second, left/2)})
	var peerPort, clientPort int
	if len(j.members) > 0 {
		peerPort, clientPort = portOf(j.members[0].PeerURL), portOf(j.members[0].ClientURL)
	}
	return readProbe(spec, parseSections(string(res.Stdout), c.token), string(res.Stderr), err, client.Config().Sudo, peerPort, clientPort)
}

// installedVersion is the version of the installed etcd binary when the
// probe found that every etcd process on the host runs that very file
// (x.runningPIDs): the version a member of this host reports in its
// status, when its client URL leads to this host; otherwise (no member
// answered, or its URL may lead elsewhere) `etcd --version`, asked now.
// A status is waited for at most a quarter of the time left (at most a
// second): a member that hangs must not leave no time for the version.
func (c *collector) installedVersion(ctx context.Context, client *sshx.Client, h *Host, x probeExtra, members []*plans.Member, statuses []chan *Status) (version, note string) {
	wait := time.NewTimer(min(time.Until(c.deadline)/4, time.Second))
	defer wait.Stop()
	expired := false
	for i, m := range members {
		if statuses[i] == nil || !c.leadsTo(m.ClientURL, h.Addresses) {
			continue
		}
		var st *Status
		if expired {
			select {
			case st = <-statuses[i]:
			default:
			}
		} else {
			select {
			case st = <-statuses[i]:
			case <-wait.C:
				expired = true
			}
		}
		if st != nil && st.Version != "" {
			return st.Version, ""
		}
	}
	res, err := client.Run(ctx, shellquote.Quote(x.bin)+" --version 2>&1", sshx.RunOpts{Display: "etcd-rescue facts: etcd --version (read-only)"})
	if v := parseVersion(string(res.Stdout)); v != "" {
		return v, ""
	}
	if err != nil {
		return "", "etcd --version: " + oneLine(err)
	}
	return "", "etcd --version: " + firstLine(section{Out: string(res.Stdout), RC: res.ExitCode})
}

// leadsTo reports whether the client API at u, as the collection dials
// it, reaches the host whose addresses are addrs: u names one of them, or
// (through the host's SSH tunnel) its loopback.
func (c *collector) leadsTo(u string, addrs []string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	name := pu.Hostname()
	if c.inv.Cluster.ClientAccess != "direct" {
		if ip := net.ParseIP(name); name == "localhost" || (ip != nil && ip.IsLoopback()) {
			return true
		}
	}
	ip := net.ParseIP(name)
	return ip != nil && !ip.IsLoopback() && containsIP(addrs, ip)
}

// readProbe turns the script's sections into a Host (Reach, Error and the
// probed fields). runErr is the transport's error, if any.
func readProbe(spec probeSpec, secs map[string]section, stderr string, runErr error, sudo bool, peerPort, clientPort int) (*Host, probeExtra) {
	h := &Host{Reach: ReachOK}
	if _, ok := secs[secBegin]; !ok {
		switch {
		case runErr != nil:
			h.Reach, h.Error = ReachOf(runErr), "probe script: "+oneLine(runErr)
			if h.Reach == ReachError && errors.Is(runErr, sshx.ErrTimeout) {
				h.Reach = ReachTimeout
			}
		case sudo && sudoFailed(stderr):
			h.Reach, h.Error = ReachSudoFailed, strings.TrimSpace(firstOf(stderr))
		default:
			h.Reach, h.Error = ReachError, "probe script did not run: "+strings.TrimSpace(firstOf(stderr))
		}
		return h, probeExtra{}
	}
	note := func(format string, a ...any) { h.Notes = append(h.Notes, fmt.Sprintf(format, a...)) }
	missing := func(name string) { note("%s: not collected (the probe script stopped before it)", name) }
	if _, ok := secs[secEnd]; !ok {
		if runErr != nil {
			note("probe script: %s", oneLine(runErr))
		} else {
			note("probe script stopped before its end (timeout on the host)")
		}
	}

	fileSec, haveFiles := secs[secFiles]
	files := parseFiles(fileSec.Out, procFibTrie, procIfInet6, procTCP, procTCP6, spec.settingsFile())

	if s, ok := secs[secAddrs]; ok {
		h.Addresses = parseIPAddrs(s.Out)
		if s.RC != 0 {
			note("ip -o addr: %s", firstLine(s))
		}
	} else if s, ok := secs[secHostname]; ok {
		h.Addresses = parseHostnameI(s.Out)
		if s.RC != 0 {
			note("hostname -I: %s", firstLine(s))
		}
	} else if c, ok := files[procFibTrie]; ok {
		h.Addresses = append(parseFibTrie(c), parseIfInet6(files[procIfInet6])...)
	} else if haveFiles {
		note("addresses unknown: %s printed nothing", procFibTrie)
	} else {
		missing("addresses")
	}

	// settingsOf reads the env file or manifest section: present (its
	// content in the files section), absent or unreadable.
	settingsFile := func(sec string) (present, ok bool, content string) {
		s, ok := secs[sec]
		if !ok {
			return false, false, ""
		}
		if strings.HasPrefix(s.Out, "present") && !haveFiles {
			return true, false, "" // the files section did not come
		}
		present = strings.HasPrefix(s.Out, "present")
		if present && strings.Contains(s.Out, "unreadable") {
			note("%s is not readable (ssh.sudo: true reads it as root)", spec.settingsFile())
		}
		return present, true, files[spec.settingsFile()]
	}

	svc := &Service{Kind: spec.Layout}
	if spec.Layout == "static-pod" {
		svc.Manifest = spec.Manifest
		if present, ok, content := settingsFile(secManifest); ok {
			svc.ManifestPresent = present
			if present {
				st, err := parseManifest(spec.Manifest, content)
				if err != nil {
					note("%s", oneLine(err))
				}
				h.Settings = st
			}
		} else {
			svc.ManifestPresent = present
			missing("manifest")
		}
	} else {
		svc.Unit = spec.Unit
		if s, ok := secs[secUnit]; ok {
			var n string
			if svc.Active, svc.Enabled, n = parseUnit(s); n != "" {
				note("%s", n)
			}
		} else {
			missing("service state")
		}
		if present, ok, content := settingsFile(secEnvFile); !ok {
			missing("env file")
		} else if present {
			h.Settings = parseEnvFile(spec.EnvFile, content)
		} else {
			note("env file %s is absent", spec.EnvFile)
		}
	}
	if s, ok := secs[secRunning]; ok {
		svc.Running = parseRunning(s)
	} else {
		missing("etcd process")
	}
	h.Service = svc

	if s, ok := secs[secDataDir]; ok {
		h.DataDir, _ = parseDataDir(spec.DataDir, s)
		if s, ok := secs[secOffline]; ok && h.DataDir.HasMember {
			if rev, err := parseOfflineRevision(s); err != nil {
				note("offline revision: %s", err)
			} else {
				h.DataDir.OfflineRevision = rev
			}
		}
	} else {
		missing("data dir")
	}

	var x probeExtra
	if s, ok := secs[secVersion]; ok {
		x.bin, x.runningPIDs = parseVersionSection(s.Out)
		if x.runningPIDs == "" {
			h.EtcdVersion = parseVersion(s.Out)
			switch out := strings.TrimPrefix(strings.TrimSpace(s.Out), "bin "+x.bin); {
			case h.EtcdVersion != "" || strings.HasPrefix(s.Out, "absent"):
			case s.RC == -1:
				note("etcd --version: did not finish before the probe script was stopped")
			default:
				note("etcd --version: %s", firstLine(section{Out: out, RC: s.RC}))
			}
		}
	} else {
		missing("etcd version")
	}

	ports := map[int]bool{}
	switch s, ok := secs[secListen]; {
	case ok && s.RC == 0:
		ports = parseListening(s.Out)
	case ok:
		note("listening ports unknown: %s", firstLine(s))
		ports = nil
	case files[procTCP] != "":
		parseProcTCP(files[procTCP], ports)
		parseProcTCP(files[procTCP6], ports)
	case haveFiles:
		note("listening ports unknown: %s printed nothing", procTCP)
		ports = nil
	default:
		missing("listening ports")
		ports = nil
	}
	if ports != nil && peerPort != 0 {
		p, cp := ports[peerPort], ports[clientPort]
		h.PeerPort, h.ClientPort = &p, &cp
	}
	return h, x
}

// probeExtra is what the probe says beyond the Host's fields.
type probeExtra struct {
	bin string // the installed etcd binary's path, "" when absent or not probed
	// runningPIDs: every etcd process on the host runs bin itself (same
	// file), so `etcd --version` was not run: the running member's status
	// says the version.
	runningPIDs string
}

func firstOf(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	if l == "" {
		return "no output"
	}
	return l
}

// clusterOf copies the inventory's cluster description.
func clusterOf(p *plans.Plan) Cluster {
	c := p.Cluster
	out := Cluster{Name: c.Name, EtcdVersion: c.EtcdVersion, Layout: c.Layout.Service, DataDir: c.Layout.DataDir,
		HostAddresses: map[string]string{}}
	if c.Layout.Service == "static-pod" {
		out.Manifest = c.Layout.Manifest
	} else {
		out.Unit, out.EnvFile = c.Layout.Unit, c.Layout.EnvFile
	}
	for _, m := range c.Members {
		out.Members = append(out.Members, InventoryMember{Name: m.Name, Host: m.Host, PeerURL: m.PeerURL, ClientURL: m.ClientURL})
	}
	if k := c.Kubernetes; k != nil {
		out.ControlPlane, out.ControlPlaneHosts = k.ControlPlane, append([]string(nil), k.Hosts...)
	}
	for n, h := range p.Hosts {
		out.HostAddresses[n] = h.Address
	}
	return out
}

func randomToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
