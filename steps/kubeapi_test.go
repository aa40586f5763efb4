package steps

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// testPKI is a CA, a serving certificate for 127.0.0.1 and a client
// certificate, written as PEM files in dir.
type testPKI struct {
	caFile, certFile, keyFile string
	server                    tls.Certificate
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-kubernetes-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, []byte) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"kubeadm:cluster-admins"}},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	sc, sk := issue(2, "kube-apiserver", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	cc, ck := issue(3, "etcd-rescue", x509.ExtKeyUsageClientAuth, nil)
	p := &testPKI{caFile: filepath.Join(dir, "ca.crt"), certFile: filepath.Join(dir, "client.crt"), keyFile: filepath.Join(dir, "client.key")}
	os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(p.certFile, cc, 0o644)
	os.WriteFile(p.keyFile, ck, 0o600)
	p.server, err = tls.X509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	return p
}

// apiServerTest starts h as an API server on 127.0.0.1 with the test
// PKI's serving certificate; requireClient asks for a client certificate
// signed by the CA. It returns a context whose one control-plane host is
// that server.
func apiServerTest(t *testing.T, h http.Handler, requireClient bool) (*Ctx, *testPKI) {
	t.Helper()
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server}}
	if requireClient {
		srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		srv.TLS.ClientCAs = pki.pool
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(port)
	c, _ := kubeCtx(t, dir, "static-pod")
	c.Plan.ClusterBase = dir
	c.Cluster.Kubernetes.Hosts = []string{"h1"}
	c.Plan.Hosts["h1"].Address = "127.0.0.1"
	// Relative paths resolve against the file that defined cluster:.
	c.Cluster.Kubernetes.APIServer = &plans.APIServer{Port: n, CA: "ca.crt"}
	return c, pki
}

func withClientCert(c *Ctx) {
	c.Cluster.Kubernetes.APIServer.Cert = "client.crt"
	c.Cluster.Kubernetes.APIServer.Key = "client.key"
}

// TestKubeWaitReadyPolls: an API server that says 503 with its failed
// checks, then 200, is waited for; the answers are logged.
func TestKubeWaitReadyPolls(t *testing.T) {
	useFakeClock(t)
	var asked atomic.Int32
	c, _ := apiServerTest(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if asked.Add(1) < 4 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "[+]ping ok\n[-]etcd failed: reason withheld\n[+]informer-sync ok\nreadyz check failed\n")
			return
		}
		fmt.Fprint(w, "ok")
	}), false)
	env := &shEnv{}
	acts := (&KubeWaitReady{Within: plans.Duration(time.Minute)}).Describe(c, Target{})
	if err := acts[0].Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if asked.Load() != 4 {
		t.Errorf("asked %d times, want 4", asked.Load())
	}
	logs := strings.Join(env.logs, "\n")
	if !strings.Contains(logs, "h1 (127.0.0.1:") || !strings.Contains(logs, "HTTP 503: [-]etcd failed: reason withheld") || !strings.Contains(logs, "HTTP 200: ok") {
		t.Errorf("logs: %s", logs)
	}
	if n := strings.Count(logs, "HTTP 503"); n != 1 {
		t.Errorf("the same answer is logged %d times, want once", n)
	}
}

// TestKubeWaitReadyBound: never ready, the wait ends at within: with the
// host's last answer.
func TestKubeWaitReadyBound(t *testing.T) {
	f := useFakeClock(t)
	c, _ := apiServerTest(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "[-]poststarthook/start-apiextensions-informers failed: not finished\n")
	}), false)
	start := f.now
	err := (&KubeWaitReady{Within: plans.Duration(10 * time.Second)}).Describe(c, Target{})[0].Run(context.Background(), &shEnv{})
	if err == nil || !strings.Contains(err.Error(), "API servers not ready after 10s: h1 (127.0.0.1:") ||
		!strings.Contains(err.Error(), "HTTP 503: [-]poststarthook/start-apiextensions-informers failed: not finished") {
		t.Fatalf("got %v", err)
	}
	if waited := f.now.Sub(start); waited != 10*time.Second {
		t.Errorf("gave up after %s, want 10s", waited)
	}
}

// TestKubeWaitReadyVerifiesServer: a serving certificate not signed by
// apiServer.ca is never accepted; with a serverName it does not hold, neither.
func TestKubeWaitReadyVerifiesServer(t *testing.T) {
	useFakeClock(t)
	c, _ := apiServerTest(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }), false)
	other := newTestPKI(t, t.TempDir())
	c.Cluster.Kubernetes.APIServer.CA = other.caFile
	err := (&KubeWaitReady{Within: plans.Duration(time.Second)}).Describe(c, Target{})[0].Run(context.Background(), &shEnv{})
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("another CA: %v", err)
	}
	c.Cluster.Kubernetes.APIServer.CA = "ca.crt"
	c.Cluster.Kubernetes.APIServer.ServerName = "kubernetes.default.svc"
	err = (&KubeWaitReady{Within: plans.Duration(time.Second)}).Describe(c, Target{})[0].Run(context.Background(), &shEnv{})
	if err == nil || !strings.Contains(err.Error(), "kubernetes.default.svc") {
		t.Fatalf("another name: %v", err)
	}
}

// TestKubeWaitReadySendsClientCert: with apiServer.cert/key the client
// certificate is sent (the server requires it here).
func TestKubeWaitReadySendsClientCert(t *testing.T) {
	useFakeClock(t)
	c, _ := apiServerTest(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "etcd-rescue" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "ok")
	}), true)
	withClientCert(c)
	if err := (&KubeWaitReady{Within: plans.Duration(time.Second)}).Describe(c, Target{})[0].Run(context.Background(), &shEnv{}); err != nil {
		t.Fatal(err)
	}
}

// TestRelistAnswer: only 410 Gone, as the HTTP status or as the first
// event of the stream, proves the relist.
func TestRelistAnswer(t *testing.T) {
	for name, tc := range map[string]struct {
		code    int
		body    string
		ok      bool
		want    string
		retried bool
	}{
		"HTTP 410": {code: 410, body: `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 5 (1000000123)","reason":"Expired","code":410}`,
			ok: true, want: "HTTP 410, Expired: too old resource version: 5 (1000000123)"},
		"ERROR event 410": {code: 200, body: `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"The resourceVersion for the provided watch is too old.","reason":"Expired","code":410}}` + "\n",
			ok: true, want: "watch event ERROR, code 410, Expired: The resourceVersion for the provided watch is too old."},
		"ADDED events": {code: 200, body: `{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"fp-001","namespace":"default","resourceVersion":"1207"}}}` + "\n" +
			`{"type":"MODIFIED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"fp-002","resourceVersion":"1208"}}}` + "\n",
			want: "streamed events from that revision (first: ADDED fp-001 at resourceVersion 1207): the old history is still served"},
		"BOOKMARK":     {code: 200, body: `{"type":"BOOKMARK","object":{"kind":"ConfigMap","metadata":{"resourceVersion":"1300"}}}` + "\n", want: "streamed events"},
		"silent watch": {code: 200, body: "", want: "accepted the watch from that revision and sent nothing"},
		"ERROR event 504": {code: 200, body: `{"type":"ERROR","object":{"kind":"Status","message":"Too large resource version: 1207, current: 900","reason":"Timeout","code":504}}`,
			want: "the watch ended with ERROR code 504, Timeout: Too large resource version"},
		"forbidden": {code: 403, body: `{"kind":"Status","message":"configmaps is forbidden: User \"x\" cannot watch resource","reason":"Forbidden","code":403}`,
			want: "refused the watch (HTTP 403, Forbidden: configmaps is forbidden"},
		"unavailable": {code: 503, body: "etcd unavailable", want: "HTTP 503: etcd unavailable", retried: true},
	} {
		t.Run(name, func(t *testing.T) {
			res := relistAnswer(tc.code, strings.NewReader(tc.body))
			if tc.ok {
				if res.err != nil || res.how != tc.want {
					t.Fatalf("got %q %v, want %q", res.how, res.err, tc.want)
				}
				return
			}
			if res.err == nil || !strings.Contains(res.err.Error(), tc.want) {
				t.Fatalf("got %q %v, want an error with %q", res.how, res.err, tc.want)
			}
			if errors.Is(res.err, errNotAsked) != tc.retried {
				t.Errorf("asked again: %v, want %v", errors.Is(res.err, errNotAsked), tc.retried)
			}
		})
	}
}

// TestKubeVerifyRelistEndToEnd: the watch request carries the recorded
// revision and the client certificate; a stream that starts with ERROR
// 410 passes, one that streams ADDED events fails with the relist message.
func TestKubeVerifyRelistEndToEnd(t *testing.T) {
	useFakeClock(t)
	var gone atomic.Bool
	var got atomic.Value
	c, _ := apiServerTest(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.URL.String())
		if len(r.TLS.PeerCertificates) == 0 {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if gone.Load() {
			fmt.Fprintln(w, `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1207 (1000001300)","reason":"Expired","code":410}}`)
			return
		}
		fmt.Fprintln(w, `{"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"fp-001","resourceVersion":"1208"}}}`)
	}), true)
	withClientCert(c)
	s := &KubeVerifyRelist{Namespace: "kube-system", Within: plans.Duration(time.Second)}
	env := &shEnv{facts: map[string]string{FactPreRevision: "1207"}}
	err := s.Describe(c, Target{})[0].Run(context.Background(), env)
	var re *RelistError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "clients and controllers would NOT relist and may act on stale caches") ||
		!strings.Contains(err.Error(), "h1 (127.0.0.1:") || !strings.Contains(err.Error(), "hint: restore with a revision bump") {
		t.Fatalf("served history: %v", err)
	}
	if u, _ := got.Load().(string); u != "/api/v1/namespaces/kube-system/configmaps?watch=1&resourceVersion=1207&timeoutSeconds=5" {
		t.Errorf("watch request %s", u)
	}
	gone.Store(true)
	if err := s.Describe(c, Target{})[0].Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(env.logs, "\n"), "h1: the watch from revision 1207 is answered 410 Gone (watch event ERROR, code 410, Expired") {
		t.Errorf("logs %v", env.logs)
	}
	// A resource path instead of the namespace's ConfigMaps.
	s.Resource = "/apis/apps/v1/deployments"
	if err := s.Describe(c, Target{})[0].Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if u, _ := got.Load().(string); !strings.HasPrefix(u, "/apis/apps/v1/deployments?watch=1&resourceVersion=1207") {
		t.Errorf("watch request %s", u)
	}
	// Nothing recorded: no revision to start from.
	err = s.Describe(c, Target{})[0].Run(context.Background(), &shEnv{})
	if err == nil || !strings.Contains(err.Error(), "no revision was recorded before the run changed anything") {
		t.Errorf("no fact: %v", err)
	}
}
