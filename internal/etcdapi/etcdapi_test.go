package etcdapi_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// forEachVersion runs f once per etcd binary found (3.5 and 3.6 in the lab).
func forEachVersion(t *testing.T, f func(t *testing.T, bin string)) {
	bins := etcdtest.Binaries(t)
	names := make([]string, 0, len(bins))
	for n := range bins {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		bin := bins[n]
		t.Run(n, func(t *testing.T) { f(t, bin) })
	}
}

func newClient(t *testing.T, cfg etcdapi.Config) *etcdapi.Client {
	t.Helper()
	c, err := etcdapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// poll calls f until it succeeds, fails with an error retry rejects, or
// within has passed; it returns the number of calls. The client itself makes
// one attempt per call.
func poll(t *testing.T, within time.Duration, retry func(error) bool, f func(context.Context) error) (int, error) {
	t.Helper()
	end := time.Now().Add(within)
	for attempt := 1; ; attempt++ {
		err := f(ctx(t))
		if err == nil || !retry(err) || time.Now().After(end) {
			return attempt, err
		}
		t.Logf("attempt %d: %v", attempt, err)
		time.Sleep(250 * time.Millisecond)
	}
}

func putKeys(t *testing.T, c *etcdapi.Client, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := c.Raw().Put(ctx(t), fmt.Sprintf("/test/key-%03d", i), strings.Repeat("v", i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSingleMember(t *testing.T) {
	forEachVersion(t, func(t *testing.T, bin string) {
		m := etcdtest.Start(t, etcdtest.Options{Binary: bin})
		m.WaitHealthy(t)
		c := newClient(t, etcdapi.Config{Endpoints: []string{m.ClientURL}})
		putKeys(t, c, 25)

		for _, serializable := range []bool{false, true} {
			ms, err := c.MemberList(ctx(t), serializable)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 1 || ms[0].Name != "m1" || ms[0].ID == 0 || ms[0].PeerURLs[0] != m.PeerURL || ms[0].IsLearner {
				t.Fatalf("member list (serializable=%v): %+v", serializable, ms)
			}
		}
		st, err := c.Status(ctx(t), m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		wantVersion := strings.TrimPrefix(filepath.Base(filepath.Dir(bin)), "v")
		if !st.IsLeader() || st.ClusterID == 0 || st.Revision < 26 || st.DBSize <= 0 || st.RaftTerm == 0 ||
			(strings.HasPrefix(wantVersion, "3.") && st.Version != wantVersion) {
			t.Fatalf("status %+v (want version %s)", st, wantVersion)
		}
		if _, err := c.Health(ctx(t), m.ClientURL); err != nil {
			t.Fatal(err)
		}
		ks, err := c.KeyCount(ctx(t), false)
		if err != nil || ks.Count != 25 || ks.Revision != st.Revision {
			t.Fatalf("key count %+v %v (status revision %d)", ks, err, st.Revision)
		}
		h1, err := c.HashKV(ctx(t), m.ClientURL, 0)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := c.HashKV(ctx(t), m.ClientURL, h1.HashRevision)
		if err != nil || h1.Hash != h2.Hash || h1.Hash == 0 || h1.HashRevision != st.Revision {
			t.Fatalf("hashkv %+v then %+v (%v)", h1, h2, err)
		}

		var buf bytes.Buffer
		info, err := c.SnapshotSave(ctx(t), m.ClientURL, &buf)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(buf.Bytes())
		if info.Size != int64(buf.Len()) || info.SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("snapshot info %+v for %d bytes", info, buf.Len())
		}
		if size, s, err := etcdapi.VerifySnapshot(bytes.NewReader(buf.Bytes())); err != nil || size != info.Size || s != info.SHA256 {
			t.Fatalf("VerifySnapshot: %d %s %v", size, s, err)
		}
		damaged := bytes.Clone(buf.Bytes())
		damaged[len(damaged)/2] ^= 0x40
		if _, _, err := etcdapi.VerifySnapshot(bytes.NewReader(damaged)); !errors.Is(err, etcdapi.ErrSnapshotCorrupt) {
			t.Fatalf("damaged snapshot: %v", err)
		}
		if _, _, err := etcdapi.VerifySnapshot(bytes.NewReader(buf.Bytes()[:buf.Len()-1000])); !errors.Is(err, etcdapi.ErrSnapshotCorrupt) {
			t.Fatalf("truncated snapshot: %v", err)
		}
		// etcd's own tool agrees that the file is a snapshot with our keys.
		etcdutl := filepath.Join(filepath.Dir(bin), "etcdutl")
		if _, err := os.Stat(etcdutl); err == nil {
			f := filepath.Join(t.TempDir(), "snap.db")
			if err := os.WriteFile(f, buf.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(etcdutl, "snapshot", "status", f, "-w", "json").CombinedOutput()
			if err != nil {
				t.Fatalf("etcdutl snapshot status: %v\n%s", err, out)
			}
			var ss struct{ Revision int64 }
			if err := json.Unmarshal(out[bytes.IndexByte(out, '{'):], &ss); err != nil || ss.Revision != st.Revision {
				t.Fatalf("etcdutl snapshot status: %s (%v), want revision %d", out, err, st.Revision)
			}
		}
	})
}

func TestMembershipChanges(t *testing.T) {
	forEachVersion(t, func(t *testing.T, bin string) {
		m1 := etcdtest.Start(t, etcdtest.Options{Binary: bin, Name: "m1"})
		m1.WaitHealthy(t)
		c := newClient(t, etcdapi.Config{Endpoints: []string{m1.ClientURL}})
		putKeys(t, c, 5)
		ms, err := c.MemberList(ctx(t), false)
		if err != nil {
			t.Fatal(err)
		}
		id1 := ms[0].ID

		peer2, client2 := etcdtest.FreeURL(t), etcdtest.FreeURL(t)
		added, all, err := c.MemberAdd(ctx(t), []string{peer2}, true)
		if err != nil {
			t.Fatal(err)
		}
		if added.ID == 0 || added.ID == id1 || !added.IsLearner || len(all) != 2 {
			t.Fatalf("added %+v, members %+v", added, all)
		}
		if _, _, err := c.MemberAdd(ctx(t), []string{peer2}, true); !errors.Is(err, etcdapi.ErrMemberExists) {
			t.Fatalf("second add of the same peer URL: %v", err)
		}
		// Not started yet: far behind the leader.
		if _, err := c.MemberPromote(ctx(t), added.ID); !errors.Is(err, etcdapi.ErrLearnerNotReady) {
			t.Fatalf("promote of a learner that never started: %v", err)
		}

		m2 := etcdtest.Start(t, etcdtest.Options{
			Binary: bin, Name: "m2", PeerURL: peer2, ClientURL: client2, Existing: true,
			InitialCluster: "m1=" + m1.PeerURL + ",m2=" + peer2,
		})
		_, err = poll(t, 90*time.Second, etcdapi.IsLearnerNotReady, func(ctx context.Context) error {
			_, err := c.MemberPromote(ctx, added.ID)
			return err
		})
		if err != nil {
			t.Fatalf("promote: %v\nm2 log:\n%s", err, m2.Log())
		}
		ms, err = c.MemberList(ctx(t), false)
		if err != nil || len(ms) != 2 || ms[1].Name != "m2" || ms[1].IsLearner || ms[1].ID != added.ID {
			t.Fatalf("after promote: %+v %v", ms, err)
		}
		if _, err := c.MemberPromote(ctx(t), added.ID); !errors.Is(err, etcdapi.ErrMemberNotLearner) {
			t.Fatalf("promote of a voter: %v", err)
		}
		// The new member answers for itself, with the same data.
		st2, err := c.Status(ctx(t), client2)
		if err != nil || st2.MemberID != added.ID || st2.IsLearner {
			t.Fatalf("status of m2: %+v %v", st2, err)
		}
		c2 := newClient(t, etcdapi.Config{Endpoints: []string{client2}})
		if ks, err := c2.KeyCount(ctx(t), true); err != nil || ks.Count != 5 {
			t.Fatalf("m2 key count %+v %v", ks, err)
		}

		newPeer := strings.Replace(peer2, "127.0.0.1", "localhost", 1)
		ms, err = c.MemberUpdate(ctx(t), added.ID, []string{newPeer})
		if err != nil || len(ms) != 2 || ms[1].PeerURLs[0] != newPeer {
			t.Fatalf("after update: %+v %v", ms, err)
		}

		// Right after a member joined, etcd answers "unhealthy cluster" for a
		// while: each call is one attempt, and the caller's poll rides it out.
		attempts, err := poll(t, time.Minute, etcdapi.IsRetryable, func(ctx context.Context) error {
			ms, err = c.MemberRemove(ctx, added.ID)
			return err
		})
		if err != nil || len(ms) != 1 || ms[0].ID != id1 {
			t.Fatalf("after remove: %+v %v", ms, err)
		}
		t.Logf("member remove took %d attempts", attempts)
		if _, err := c.MemberRemove(ctx(t), added.ID); !errors.Is(err, etcdapi.ErrMemberNotFound) {
			t.Fatalf("second remove: %v", err)
		}
		if _, err := c.Health(ctx(t), m1.ClientURL); err != nil {
			t.Fatal(err)
		}
	})
}

func TestUnreachableEndpoint(t *testing.T) {
	dead := etcdtest.FreeURL(t)
	c := newClient(t, etcdapi.Config{Endpoints: []string{dead}, ProbeTimeout: 500 * time.Millisecond})
	if _, err := c.Health(ctx(t), dead); err == nil || !strings.Contains(err.Error(), dead) {
		t.Fatalf("health of a dead endpoint: %v", err)
	}
	if _, err := c.Status(ctx(t), dead); err == nil {
		t.Fatal("status of a dead endpoint succeeded")
	}
	// With a long probe timeout, a refused connection is reported as
	// such, not as the timeout gRPC would reach retrying it.
	c = newClient(t, etcdapi.Config{Endpoints: []string{dead}, ProbeTimeout: time.Minute})
	for name, probe := range map[string]func() error{
		"status": func() error { _, err := c.Status(ctx(t), dead); return err },
		"health": func() error { _, err := c.Health(ctx(t), dead); return err },
	} {
		err := probe()
		if err == nil || !strings.Contains(err.Error(), "connection refused") || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s of a refusing endpoint: %v, want connection refused", name, err)
		}
		// Could not ask: not the same as a member that answered "down".
		if !etcdapi.IsUnreachable(err) || !errors.Is(err, etcdapi.ErrUnreachable) || etcdapi.IsRetryable(err) {
			t.Errorf("%s of a refusing endpoint: classified %s, want unreachable", name, etcdapi.Classify(err))
		}
	}
}

// TestRefusedMemberAdd: etcd refuses a member add for as long as a voting
// member is down ("unhealthy cluster"). The client makes one attempt and
// returns the refusal at once, classified retryable, for the caller to poll
// within its own deadline; it no longer retries inside for a minute.
func TestRefusedMemberAdd(t *testing.T) {
	forEachVersion(t, func(t *testing.T, bin string) {
		ms := etcdtest.StartCluster(t, bin, "m1", "m2", "m3")
		ms["m3"].Stop()
		c := newClient(t, etcdapi.Config{Endpoints: []string{ms["m1"].ClientURL}})
		// The leader notices the lost peer connection within moments; until
		// then an add may still pass. Each call is timed on its own.
		var err error
		var slowest time.Duration
		for i := 0; i < 40; i++ {
			start := time.Now()
			_, _, err = c.MemberAdd(ctx(t), []string{etcdtest.FreeURL(t)}, true)
			slowest = max(slowest, time.Since(start))
			if err != nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err == nil {
			t.Fatal("member add with a voting member down was never refused")
		}
		if !etcdapi.IsRetryable(err) || !strings.Contains(err.Error(), "unhealthy cluster") {
			t.Fatalf("member add with m3 down: %v (classified %s), want a retryable unhealthy cluster", err, etcdapi.Classify(err))
		}
		if strings.Contains(err.Error(), "attempts") {
			t.Errorf("the client retried on its own: %v", err)
		}
		if slowest > 5*time.Second {
			t.Errorf("a member add took %s: the refusal should come back at once", slowest)
		}
		t.Logf("refused at once (slowest call %s): %v", slowest, err)
	})
}

func TestClassify(t *testing.T) {
	tests := map[string]struct {
		err  error
		want etcdapi.Class
	}{
		"nil":                 {nil, etcdapi.Permanent},
		"unhealthy":           {rpctypes.ErrGRPCUnhealthy, etcdapi.Retryable},
		"no leader":           {rpctypes.ErrGRPCNoLeader, etcdapi.Retryable},
		"learner refusal":     {rpctypes.ErrGRPCNotSupportedForLearner, etcdapi.Permanent},
		"learner refusal 3.5": {status.Error(codes.Unavailable, "etcdserver: rpc not supported for learner"), etcdapi.Permanent},
		"not ready":           {rpctypes.ErrGRPCLearnerNotReady, etcdapi.Permanent},
		"not found":           {rpctypes.ErrGRPCMemberNotFound, etcdapi.Permanent},
		"unavailable":         {status.Error(codes.Unavailable, "connection error"), etcdapi.Unreachable},
		"deadline":            {context.DeadlineExceeded, etcdapi.Permanent},
		"wrapped":             {fmt.Errorf("etcd member add: %w", rpctypes.ErrGRPCUnhealthy), etcdapi.Retryable},
	}
	for name, tc := range tests {
		if got := etcdapi.Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify(%v) = %s, want %s", name, tc.err, got, tc.want)
		}
	}
	if !etcdapi.IsLearnerNotReady(fmt.Errorf("etcd member promote 1: %w: %w", etcdapi.ErrLearnerNotReady, rpctypes.ErrGRPCLearnerNotReady)) {
		t.Error("a learner not in sync yet is not polled")
	}
}

// TestIsTransientRead: a read may be asked again after a timeout or an
// unreachable endpoint (it changes nothing), never after a learner's refusal
// (the client routes that) or a permanent answer.
func TestIsTransientRead(t *testing.T) {
	tests := map[string]struct {
		err  error
		want bool
	}{
		"nil":               {nil, false},
		"unhealthy":         {rpctypes.ErrGRPCUnhealthy, true},
		"request timed out": {fmt.Errorf("etcd member list via a,b: %w", rpctypes.ErrGRPCTimeout), true},
		"leader fail":       {rpctypes.ErrGRPCTimeoutDueToLeaderFail, true},
		"call deadline":     {status.Error(codes.DeadlineExceeded, "context deadline exceeded"), true},
		"ctx deadline":      {fmt.Errorf("etcd member list: %w", context.DeadlineExceeded), true},
		"unavailable":       {status.Error(codes.Unavailable, "connection error"), true},
		"learner 3.5":       {status.Error(codes.Unavailable, "etcdserver: rpc not supported for learner"), false},
		"not found":         {rpctypes.ErrGRPCMemberNotFound, false},
	}
	for name, tc := range tests {
		if got := etcdapi.IsTransientRead(tc.err); got != tc.want {
			t.Errorf("%s: IsTransientRead(%v) = %v, want %v", name, tc.err, got, tc.want)
		}
	}
}

func TestIDs(t *testing.T) {
	for _, s := range []string{"8e9e05c52164694d", "0x8e9e05c52164694d", "ffffffffffffffff"} {
		id, err := etcdapi.ParseID(s)
		if err != nil {
			t.Fatal(err)
		}
		if back := etcdapi.FormatID(id); back != strings.TrimPrefix(s, "0x") {
			t.Fatalf("%s -> %d -> %s", s, id, back)
		}
	}
	if id, _ := etcdapi.ParseID("ffffffffffffffff"); id != ^uint64(0) {
		t.Fatalf("max id parsed as %d", id)
	}
	if _, err := etcdapi.ParseID("1e+19"); err == nil {
		t.Fatal("float accepted as id")
	}
}

// TestThroughSSHTunnel reaches etcd only through sshx.Client.DialContext of a real
// sshd, the path of clientAccess: ssh-tunnel, with TLS and a client certificate.
func TestThroughSSHTunnel(t *testing.T) {
	bin := etcdtest.Binary(t)
	srv := sshxtest.Start(t)
	pki := newPKI(t)
	clientURL := strings.Replace(etcdtest.FreeURL(t), "http://", "https://", 1)
	m := etcdtest.Start(t, etcdtest.Options{Binary: bin, ClientURL: clientURL, ExtraArgs: []string{
		"--cert-file", pki.serverCert, "--key-file", pki.serverKey,
		"--trusted-ca-file", pki.ca, "--client-cert-auth",
	}})
	sc, err := sshx.New("h1", sshx.Config{
		Address: srv.Host, Port: srv.Port, User: srv.User,
		IdentityFiles: []string{srv.ClientKey}, KnownHosts: srv.KnownHosts,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	var tunnels atomic.Int64
	c := newClient(t, etcdapi.Config{
		Endpoints: []string{m.ClientURL},
		TLS:       &etcdapi.TLSFiles{CA: pki.ca, Cert: pki.clientCert, Key: pki.clientKey},
		Dialer: func(ctx context.Context, addr string) (net.Conn, error) {
			tunnels.Add(1)
			return sc.DialContext(ctx, "tcp", addr)
		},
	})
	_, err = poll(t, 30*time.Second, func(error) bool { return true }, func(ctx context.Context) error {
		_, err := c.Health(ctx, m.ClientURL)
		return err
	})
	if err != nil {
		t.Fatalf("health through the tunnel: %v\netcd log:\n%s", err, m.Log())
	}
	putKeys(t, c, 3)
	ms, err := c.MemberList(ctx(t), false)
	if err != nil || len(ms) != 1 {
		t.Fatalf("%+v %v", ms, err)
	}
	if _, err := c.Status(ctx(t), m.ClientURL); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := c.SnapshotSave(ctx(t), m.ClientURL, &buf); err != nil {
		t.Fatal(err)
	}
	if tunnels.Load() == 0 || sc.Dials() != 1 {
		t.Fatalf("%d tunnels over %d ssh connections", tunnels.Load(), sc.Dials())
	}

	// Without the client certificate the member refuses us.
	bad := newClient(t, etcdapi.Config{
		Endpoints: []string{m.ClientURL}, TLS: &etcdapi.TLSFiles{CA: pki.ca}, ProbeTimeout: time.Second,
		Dialer: func(ctx context.Context, addr string) (net.Conn, error) { return sc.DialContext(ctx, "tcp", addr) },
	})
	if _, err := bad.Health(ctx(t), m.ClientURL); err == nil {
		t.Fatal("health without a client certificate succeeded")
	}
	// A key file that is not a key: named, contents not shown.
	junk := filepath.Join(t.TempDir(), "junk.key")
	_ = os.WriteFile(junk, []byte("SECRET-MATERIAL"), 0o600)
	_, err = etcdapi.New(etcdapi.Config{Endpoints: []string{m.ClientURL}, TLS: &etcdapi.TLSFiles{Cert: pki.clientCert, Key: junk}})
	if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), junk) {
		t.Fatalf("bad key: %v", err)
	}
}

type pki struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcdapi test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(k)
		return write(name+".crt", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kd)
	}
	p := pki{ca: write("ca.crt", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}
