package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Layout of etcd on every lab host (what the inventory's layout says).
const (
	EnvFile  = "/etc/etcd/etcd.env"
	DataDir  = "/var/lib/etcd"
	Unit     = "etcd"
	Owner    = "etcd:etcd"
	PeerPort = 2380
)

// envFile is /etc/etcd/etcd.env of member m on address addr (in a TLS lab
// with https URLs and the TLS settings, tlsEnv).
func (l *Lab) envFile(name, addr, initialCluster, clusterState, token string) string {
	env := fmt.Sprintf(`# %s: written by etcd-rescue lab
ETCD_NAME=%s
ETCD_DATA_DIR=%s
ETCD_LISTEN_PEER_URLS=%s
ETCD_LISTEN_CLIENT_URLS=%s,%s://127.0.0.1:2379
ETCD_ADVERTISE_CLIENT_URLS=%s
ETCD_INITIAL_ADVERTISE_PEER_URLS=%s
ETCD_INITIAL_CLUSTER=%s
ETCD_INITIAL_CLUSTER_STATE=%s
ETCD_INITIAL_CLUSTER_TOKEN=%s
`, EnvFile, name, DataDir, l.peerURL(addr), l.clientURL(addr), l.scheme(), l.clientURL(addr), l.peerURL(addr), initialCluster, clusterState, token)
	if l.st.TLS {
		env += tlsEnv()
	}
	return env
}

// WriteFile writes data to path on host name over ssh (atomically, via a
// temporary file in the same directory).
func (l *Lab) WriteFile(ctx context.Context, name, path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	cmd := fmt.Sprintf("set -e; mkdir -p %s; cat > %s.tmp; chmod %o %s.tmp; mv -f %s.tmp %s", dir, path, mode.Perm(), path, path, path)
	if out, err := l.Run(ctx, name, cmd, bytes.NewReader(data)); err != nil {
		return withOutput(fmt.Errorf("write %s on %s: %w", path, name, err), out)
	}
	return nil
}

// memberHosts pairs every member with its host (nil if the host is gone).
func (l *Lab) memberHosts() []struct {
	m *Member
	h *Host
} {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []struct {
		m *Member
		h *Host
	}
	for _, m := range l.st.Members {
		out = append(out, struct {
			m *Member
			h *Host
		}{m, l.hostLocked(m.Host)})
	}
	return out
}

// Endpoints are the client URLs of the inventory's members.
func (l *Lab) Endpoints() []string {
	var eps []string
	for _, mh := range l.memberHosts() {
		if mh.h != nil {
			eps = append(eps, l.clientURL(mh.h.Address))
		}
	}
	return eps
}

func (l *Lab) initialCluster() string {
	var parts []string
	for _, mh := range l.memberHosts() {
		parts = append(parts, mh.m.Name+"="+l.peerURL(mh.h.Address))
	}
	return strings.Join(parts, ",")
}

// startCluster writes every member's env file and starts all members at
// once (with Type=notify a member is ready only when the cluster has quorum).
func (l *Lab) startCluster(ctx context.Context) error {
	ic := l.initialCluster()
	var hosts []*Host
	for _, mh := range l.memberHosts() {
		env := l.envFile(mh.m.Name, mh.h.Address, ic, "new", l.st.SeedToken)
		if err := l.WriteFile(ctx, mh.h.Name, EnvFile, []byte(env), 0o644); err != nil {
			return err
		}
		hosts = append(hosts, mh.h)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := parallel(hosts, func(h *Host) error {
		out, err := l.Run(sctx, h.Name, "systemctl enable --quiet etcd && systemctl start etcd", nil)
		if err != nil {
			return withOutput(fmt.Errorf("start etcd on %s: %w", h.Name, err), out)
		}
		return nil
	})
	if err == nil {
		err = l.waitHealthy(ctx, time.Minute)
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w%s", err, l.etcdDiag(ctx, hosts))
	}
	return err
}

// etcdDiag is the tail of etcd's journal on hosts, for error messages.
func (l *Lab) etcdDiag(ctx context.Context, hosts []*Host) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	var b strings.Builder
	for _, h := range hosts {
		out, _ := l.Run(ctx, h.Name, "systemctl is-active etcd && exit; journalctl -u etcd -n 8 --no-pager -o cat 2>&1 | cut -c1-240", nil)
		fmt.Fprintf(&b, "\n--- etcd on %s (%s): %s", h.Name, h.Address, strings.TrimSpace(out))
	}
	return b.String()
}

// Client returns an etcd client for the inventory's members (from the
// operator side: the lab's addresses are reachable from the machine; in a
// TLS lab with the lab's CA and the operator's client certificate).
func (l *Lab) Client() (*clientv3.Client, error) {
	return l.newClient(l.Endpoints())
}

func (l *Lab) newClient(eps []string) (*clientv3.Client, error) {
	if len(eps) == 0 {
		return nil, errors.New("no member endpoints")
	}
	tc, err := l.ClientTLS()
	if err != nil {
		return nil, err
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:          eps,
		DialTimeout:        5 * time.Second,
		TLS:                tc,
		Logger:             zap.NewNop(),
		MaxCallRecvMsgSize: 256 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return c, nil
}

// waitHealthy waits until Verify's cluster checks (not the keys) pass.
func (l *Lab) waitHealthy(ctx context.Context, d time.Duration) error {
	if probs := untilNoProblems(ctx, d, 200*time.Millisecond, l.clusterProblems); len(probs) > 0 {
		return fmt.Errorf("cluster not healthy after %s: %s", d, strings.Join(probs, "; "))
	}
	return nil
}

// untilNoProblems asks check every interval, for up to d, until it reports
// no problem; it returns the last problems when d ran out (or ctx ended).
func untilNoProblems(ctx context.Context, d, interval time.Duration, check func(context.Context) []string) []string {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		probs := check(ctx)
		if len(probs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return probs
		case <-time.After(interval):
		}
	}
}

// WaitHealthy waits up to d for the cluster to be healthy (every inventory
// member answers, one leader, member list equals the inventory).
func (l *Lab) WaitHealthy(ctx context.Context, d time.Duration) error { return l.waitHealthy(ctx, d) }

// Key is the i-th lab key.
func Key(i int) string { return fmt.Sprintf("%s%09d", KeyPrefix, i) }

// Value is the deterministic value of the i-th lab key.
func Value(i int) []byte {
	b := make([]byte, ValueSize)
	x := uint64(i)*0x9E3779B97F4A7C15 + 1
	for j := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[j] = 'a' + byte(x%26)
	}
	return b
}

// Fingerprint of the lab's keys, recorded in <state>/fingerprint.json by
// Up.  After a snapshot-based restore the keys written before the snapshot
// must match it again (the revision may then differ: it is recorded, not
// compared).
type Fingerprint struct {
	Prefix    string    `json:"prefix"`
	Keys      int       `json:"keys"`      // number of keys under Prefix
	ValueSize int       `json:"valueSize"` // bytes per value
	Revision  int64     `json:"revision"`  // store revision when it was taken
	SHA256    string    `json:"sha256"`    // over key NUL value LF of every key, in key order
	Taken     time.Time `json:"taken"`
}

// FingerprintPath is where Up records the fingerprint.
func (l *Lab) FingerprintPath() string { return filepath.Join(l.dir, "fingerprint.json") }

// Fingerprint reads the recorded fingerprint (nil, nil if Up wrote no keys).
func (l *Lab) Fingerprint() (*Fingerprint, error) {
	return readRecord[Fingerprint](l.FingerprintPath(), "fingerprint")
}

// readRecord decodes the JSON record the lab wrote at path (nil, nil when
// there is none); what names it in errors.
func readRecord[T any](path, what string) (*T, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return &v, nil
}

// writeKeys puts n deterministic keys and records their fingerprint.
func (l *Lab) writeKeys(ctx context.Context, n int) (*Fingerprint, error) {
	cli, err := l.Client()
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	var next int64 = -1
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(atomic.AddInt64(&next, 1))
				if i >= n {
					return
				}
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cli.Put(pctx, Key(i), string(Value(i)))
				cancel()
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("put %s: %w", Key(i), err) })
					atomic.StoreInt64(&next, int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	sc, err := scanKeys(ctx, cli, 0)
	if err != nil {
		return nil, err
	}
	fp := &Fingerprint{Prefix: KeyPrefix, Keys: sc.count, ValueSize: ValueSize, Revision: sc.rev, SHA256: sc.sha, Taken: time.Now().UTC()}
	if fp.Keys != n {
		return nil, fmt.Errorf("wrote %d keys but read back %d", n, fp.Keys)
	}
	b, _ := json.MarshalIndent(fp, "", "  ")
	if err := writeFileAtomic(l.FingerprintPath(), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return fp, nil
}

type keyScan struct {
	count          int
	rev            int64
	sha            string
	missing, extra []string // examples (up to 3) and counts below
	nMissing       int
	nExtra, nBad   int
	bad            []string
}

// scanKeys reads every key under KeyPrefix at one revision (linearizable)
// and hashes them.  When want > 0 it also checks them against the
// deterministic keys 0..want-1.
func scanKeys(ctx context.Context, cli *clientv3.Client, want int) (*keyScan, error) {
	sc := &keyScan{}
	h := sha256.New()
	key, end := KeyPrefix, clientv3.GetPrefixRangeEnd(KeyPrefix)
	seen := make([]bool, want)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(2000)}
		if sc.rev != 0 {
			opts = append(opts, clientv3.WithRev(sc.rev))
		}
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := cli.Get(gctx, key, opts...)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read keys: %w", err)
		}
		if sc.rev == 0 {
			sc.rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			h.Write(kv.Key)
			h.Write([]byte{0})
			h.Write(kv.Value)
			h.Write([]byte{'\n'})
			sc.count++
			if want > 0 {
				i, err := strconv.Atoi(strings.TrimPrefix(string(kv.Key), KeyPrefix))
				switch {
				case err != nil || i < 0 || i >= want || Key(i) != string(kv.Key):
					sc.nExtra++
					if len(sc.extra) < 3 {
						sc.extra = append(sc.extra, string(kv.Key))
					}
				default:
					seen[i] = true
					if !bytes.Equal(kv.Value, Value(i)) {
						sc.nBad++
						if len(sc.bad) < 3 {
							sc.bad = append(sc.bad, string(kv.Key))
						}
					}
				}
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	for i, ok := range seen {
		if !ok {
			sc.nMissing++
			if len(sc.missing) < 3 {
				sc.missing = append(sc.missing, Key(i))
			}
		}
	}
	sc.sha = hex.EncodeToString(h.Sum(nil))
	return sc, nil
}

// CheckKeys compares the keys under KeyPrefix with fingerprint fp through
// cli; nil means every fingerprinted key is intact and nothing was added.
func CheckKeys(ctx context.Context, cli *clientv3.Client, fp *Fingerprint) error {
	sc, err := scanKeys(ctx, cli, fp.Keys)
	if err != nil {
		return err
	}
	if sc.sha == fp.SHA256 && sc.count == fp.Keys {
		return nil
	}
	var p []string
	if sc.nMissing > 0 {
		p = append(p, fmt.Sprintf("%d of %d keys missing (e.g. %s)", sc.nMissing, fp.Keys, strings.Join(sc.missing, ", ")))
	}
	if sc.nBad > 0 {
		p = append(p, fmt.Sprintf("%d keys have wrong values (e.g. %s)", sc.nBad, strings.Join(sc.bad, ", ")))
	}
	if sc.nExtra > 0 {
		p = append(p, fmt.Sprintf("%d unexpected keys under %s (e.g. %s)", sc.nExtra, KeyPrefix, strings.Join(sc.extra, ", ")))
	}
	if len(p) == 0 {
		p = append(p, fmt.Sprintf("hash of the %d keys differs from the fingerprint", sc.count))
	}
	return errors.New("keys: " + strings.Join(p, "; "))
}

// VerifyError lists what is wrong with the lab's cluster.
type VerifyError struct {
	Problems []string
}

func (e *VerifyError) Error() string {
	return "lab cluster is not healthy: " + strings.Join(e.Problems, "; ")
}

// Verify returns nil only if the cluster is healthy — every member of the
// inventory answers at its client URL, they agree on one leader, the
// member list equals the inventory's members — and every fingerprinted key
// is intact.  Otherwise it returns a *VerifyError saying what is wrong.
func (l *Lab) Verify(ctx context.Context) error {
	probs := l.clusterProblems(ctx)
	fp, err := l.Fingerprint()
	if err != nil {
		probs = append(probs, err.Error())
	}
	if fp != nil && len(probs) == 0 {
		cli, err := l.Client()
		if err == nil {
			err = CheckKeys(ctx, cli, fp)
			cli.Close()
		}
		if err != nil {
			probs = append(probs, err.Error())
		}
	} else if fp != nil {
		probs = append(probs, "keys not checked (the cluster is not healthy)")
	}
	if l.StaticPod() {
		probs = append(probs, l.kubeProblems(ctx)...)
	}
	if len(probs) > 0 {
		return &VerifyError{Problems: probs}
	}
	return nil
}

type memberStatus struct {
	name, host, url string
	id, leader      uint64
	revision        int64
	dbSize          int64
	version         string
	errs            []string
	err             error
}

func (l *Lab) memberStatuses(ctx context.Context, cli *clientv3.Client) []*memberStatus {
	var out []*memberStatus
	var wg sync.WaitGroup
	for _, mh := range l.memberHosts() {
		ms := &memberStatus{name: mh.m.Name, host: mh.m.Host}
		out = append(out, ms)
		if mh.h == nil {
			ms.err = fmt.Errorf("host %s does not exist", mh.m.Host)
			continue
		}
		ms.url = l.clientURL(mh.h.Address)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// a plain TCP dial first: it says "connection refused" at once
			// where the gRPC call would only time out
			d := net.Dialer{Timeout: 2 * time.Second}
			u, err := url.Parse(ms.url)
			if err != nil {
				ms.err = err
				return
			}
			conn, err := d.DialContext(ctx, "tcp", u.Host)
			if err != nil {
				ms.err = err
				return
			}
			conn.Close()
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			st, err := cli.Status(sctx, ms.url)
			if err != nil {
				ms.err = err
				return
			}
			ms.id, ms.leader, ms.revision, ms.dbSize, ms.version, ms.errs = st.Header.MemberId, st.Leader, st.Header.Revision, st.DbSize, st.Version, st.Errors
		}()
	}
	wg.Wait()
	return out
}

// clusterProblems checks everything Verify checks except the keys.
func (l *Lab) clusterProblems(ctx context.Context) []string {
	eps := l.Endpoints()
	if len(eps) == 0 {
		return []string{"the inventory has no member with a host"}
	}
	cli, err := l.newClient(eps)
	if err != nil {
		return []string{err.Error()}
	}
	defer cli.Close()
	var probs []string
	sts := l.memberStatuses(ctx, cli)
	leaders := map[uint64]bool{}
	answering := 0
	for _, ms := range sts {
		switch {
		case ms.err != nil && ms.url == "":
			probs = append(probs, fmt.Sprintf("member %s: %v", ms.name, ms.err))
		case ms.err != nil:
			probs = append(probs, fmt.Sprintf("member %s does not answer at %s: %v", ms.name, ms.url, shortErr(ms.err)))
		case ms.leader == 0:
			answering++
			probs = append(probs, fmt.Sprintf("member %s (%s) has no leader (quorum lost?)", ms.name, ms.url))
		default:
			answering++
			leaders[ms.leader] = true
		}
		var errs []string
		for _, e := range ms.errs {
			if !(ms.leader == 0 && strings.Contains(e, "no leader")) { // said above
				errs = append(errs, e)
			}
		}
		if ms.err == nil && len(errs) > 0 {
			probs = append(probs, fmt.Sprintf("member %s reports: %s", ms.name, strings.Join(errs, ", ")))
		}
	}
	if len(leaders) > 1 {
		probs = append(probs, fmt.Sprintf("members disagree about the leader (%d different leaders)", len(leaders)))
	}
	if len(leaders) != 1 {
		return probs
	}
	mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ml, err := cli.MemberList(mctx)
	if err != nil {
		return append(probs, "member list: "+shortErr(err)+" (quorum lost?)")
	}
	want := map[string][2]string{}
	for _, mh := range l.memberHosts() {
		if mh.h != nil {
			want[mh.m.Name] = [2]string{l.peerURL(mh.h.Address), l.clientURL(mh.h.Address)}
		}
	}
	got := map[string]bool{}
	for _, m := range ml.Members {
		name := m.Name
		switch {
		case name == "":
			probs = append(probs, fmt.Sprintf("member %x (peer %s) was added but has not started", m.ID, strings.Join(m.PeerURLs, ",")))
			continue
		case m.IsLearner:
			probs = append(probs, fmt.Sprintf("member %s is a learner", name))
		}
		got[name] = true
		w, ok := want[name]
		if !ok {
			probs = append(probs, fmt.Sprintf("member list has %s (peer %s), which is not in the inventory", name, strings.Join(m.PeerURLs, ",")))
			continue
		}
		if strings.Join(m.PeerURLs, ",") != w[0] {
			probs = append(probs, fmt.Sprintf("member %s has peer URL %s, the inventory says %s", name, strings.Join(m.PeerURLs, ","), w[0]))
		}
		if strings.Join(m.ClientURLs, ",") != w[1] {
			probs = append(probs, fmt.Sprintf("member %s has client URL %s, the inventory says %s", name, strings.Join(m.ClientURLs, ","), w[1]))
		}
	}
	for _, name := range sortedKeys(want) {
		if !got[name] {
			probs = append(probs, fmt.Sprintf("member %s of the inventory is not in the member list", name))
		}
	}
	return probs
}

func shortErr(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer within the timeout"
	}
	s := err.Error()
	for _, e := range []string{"connection refused", "no route to host", "i/o timeout"} {
		if strings.Contains(s, e) {
			return e
		}
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// HostStatus is one host in Status.
type HostStatus struct {
	Name    string
	Address string
	SSH     bool   // sshd answers
	Etcd    string // systemctl is-active etcd: active, inactive, failed, activating...; static-pod: pod-running, manifest-parked, pod-not-running, no-manifest
	DataDir bool   // /var/lib/etcd/member exists
	// APIServer (static-pod layout): "ready" when /readyz answers 200, else why not
	APIServer string
	Memory    uint64 // PSS of all processes of the host, bytes
}

// MemberStatus is one inventory member in Status.
type MemberStatus struct {
	Name, Host, ClientURL string
	ID, Leader            uint64
	Revision, DBSize      int64
	Version               string
	Err                   string
}

// Status is what `lab status` shows.
type Status struct {
	StateDir, Mode, Version string
	Layout                  string // systemd or static-pod
	TLS                     bool   // https URLs, client certificates required
	TLSSharedCert           bool   // one member certificate for every address (Options.TLSSharedCert)
	Hosts                   []HostStatus
	Members                 []MemberStatus
	MemberList              []string // from the cluster: "name peerURL" (empty without a leader)
	Keys                    int      // under KeyPrefix, -1 if unreadable
	Fingerprint             *Fingerprint
	Breaks                  []string
	Problems                []string          // from Verify; empty when healthy
	S3                      *S3Status         // the object store of Options.S3; nil without one
	StateStore              *StateStoreStatus // the management etcd of Options.StateStore; nil without one
}

// Status collects the state of every host and member (never fails: what
// cannot be read is reported as such).
func (l *Lab) Status(ctx context.Context) *Status {
	s := &Status{StateDir: l.dir, Mode: string(l.st.Mode), Layout: l.Layout(), Version: l.Version(), TLS: l.st.TLS, TLSSharedCert: l.TLSSharedCert(), Keys: -1, Breaks: append([]string(nil), l.st.Breaks...)}
	hosts := l.hostPtrs()
	s.Hosts = make([]HostStatus, len(hosts))
	_ = parallel(hosts, func(h *Host) error {
		i := 0
		for hosts[i] != h {
			i++
		}
		hs := HostStatus{Name: h.Name, Address: h.Address, Memory: netnsMemory(h.Netns())}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		state := "systemctl is-active etcd"
		if l.StaticPod() {
			state = etcdPodStateCmd
		}
		out, err := l.Run(rctx, h.Name, state+"; test -d /var/lib/etcd/member && echo data", nil)
		lines := strings.Fields(out)
		if err == nil || len(lines) > 0 {
			hs.SSH = true
		}
		if len(lines) > 0 {
			hs.Etcd = lines[0]
		}
		hs.DataDir = len(lines) > 1 && lines[1] == "data"
		if !hs.SSH {
			hs.Etcd = "?"
		}
		if l.StaticPod() {
			hs.APIServer = l.apiServerState(ctx, h)
		}
		s.Hosts[i] = hs
		return nil
	})
	if cli, err := l.Client(); err == nil {
		for _, ms := range l.memberStatuses(ctx, cli) {
			m := MemberStatus{Name: ms.name, Host: ms.host, ClientURL: ms.url, ID: ms.id, Leader: ms.leader, Revision: ms.revision, DBSize: ms.dbSize, Version: ms.version}
			if ms.err != nil {
				m.Err = shortErr(ms.err)
			}
			s.Members = append(s.Members, m)
		}
		lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if ml, err := cli.MemberList(lctx); err == nil {
			for _, m := range ml.Members {
				n := m.Name
				if n == "" {
					n = fmt.Sprintf("(unstarted %x)", m.ID)
				}
				if m.IsLearner {
					n += " (learner)"
				}
				s.MemberList = append(s.MemberList, n+" "+strings.Join(m.PeerURLs, ","))
			}
			sort.Strings(s.MemberList)
		}
		cancel()
		gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if r, err := cli.Get(gctx, KeyPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err == nil {
			s.Keys = int(r.Count)
		}
		cancel()
		cli.Close()
	}
	s.Fingerprint, _ = l.Fingerprint()
	s.S3 = l.s3Status(ctx)
	s.StateStore = l.stateStoreStatus(ctx)
	if err := l.Verify(ctx); err != nil {
		var ve *VerifyError
		if errors.As(err, &ve) {
			s.Problems = ve.Problems
		} else {
			s.Problems = []string{err.Error()}
		}
	}
	return s
}

// Snapshot saves a snapshot of the cluster through the client API of a
// healthy member to path (plus path.sha256, as sha256sum writes it).
func (l *Lab) Snapshot(ctx context.Context, path string) (*SnapshotInfo, error) {
	cli, err := l.Client()
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	var from *memberStatus
	for _, ms := range l.memberStatuses(ctx, cli) {
		if ms.err == nil && ms.leader != 0 && (from == nil || ms.id == ms.leader) {
			from = ms
		}
	}
	if from == nil {
		return nil, errors.New("snapshot: no member with a leader answers")
	}
	one, err := l.newClient([]string{from.url})
	if err != nil {
		return nil, err
	}
	defer one.Close()
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	r, err := one.Get(gctx, KeyPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	rc, err := one.Snapshot(sctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot from %s: %w", from.name, err)
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	f, err := os.OpenFile(path+".part", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), rc); err != nil {
		f.Close()
		return nil, fmt.Errorf("snapshot from %s: %w", from.name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := os.Rename(path+".part", path); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err := writeFileAtomic(path+".sha256", []byte(sum+"  "+filepath.Base(path)+"\n"), 0o644); err != nil {
		return nil, err
	}
	return &SnapshotInfo{Path: path, SHA256: sum, Revision: r.Header.Revision, Member: from.name, Taken: time.Now().UTC()}, nil
}
