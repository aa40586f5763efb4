package etcdapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// A cut of etcd 3.5's /metrics on a member (id 8211f1d0f64f3269) of a
// three-member cluster: one peer linked, one whose link failed.
const metrics35 = `# HELP etcd_network_active_peers The current number of active peer connections.
# TYPE etcd_network_active_peers gauge
etcd_network_active_peers{Local="8211f1d0f64f3269",Remote="91bc3c398fb3c146"} 1
etcd_network_active_peers{Local="8211f1d0f64f3269",Remote="fd422379fda50e48"} 0
# HELP etcd_network_disconnected_peers_total The total number of disconnected peers.
# TYPE etcd_network_disconnected_peers_total counter
etcd_network_disconnected_peers_total{Local="8211f1d0f64f3269",Remote="fd422379fda50e48"} 1
# HELP etcd_network_peer_received_bytes_total The total number of bytes received from peers.
etcd_network_peer_received_bytes_total{From="91bc3c398fb3c146"} 12345
`

func TestParsePeerLinks(t *testing.T) {
	for name, tc := range map[string]struct {
		text    string
		local   uint64
		active  map[uint64]bool
		wantErr string
		noGauge bool
	}{
		"one linked, one failed": {text: metrics35, local: 0x8211f1d0f64f3269,
			active: map[uint64]bool{0x91bc3c398fb3c146: true, 0xfd422379fda50e48: false}},
		"labels in the other order, with a timestamp": {
			text:   `etcd_network_active_peers{Remote="a",Local="b"} 1 1700000000000` + "\n",
			local:  0xb,
			active: map[uint64]bool{0xa: true}},
		"metrics without the gauge": {text: "# HELP go_goroutines x\ngo_goroutines 42\n", noGauge: true},
		"not a metrics page":        {text: "404 page not found\n", noGauge: true},
		"two local ids": {
			text:    "etcd_network_active_peers{Local=\"a\",Remote=\"b\"} 1\netcd_network_active_peers{Local=\"c\",Remote=\"b\"} 1\n",
			wantErr: "two local members"},
		"an id that is not hex": {text: `etcd_network_active_peers{Local="zz",Remote="b"} 1` + "\n", wantErr: "not a hex member id"},
		"no value":              {text: `etcd_network_active_peers{Local="a",Remote="b"}` + "\n", wantErr: "no value"},
	} {
		t.Run(name, func(t *testing.T) {
			pl, err := ParsePeerLinks(strings.NewReader(tc.text))
			switch {
			case tc.noGauge:
				if !errors.Is(err, ErrNoPeerMetrics) {
					t.Fatalf("err %v, want ErrNoPeerMetrics", err)
				}
				return
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one saying %q", err, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if pl.Local != tc.local || len(pl.Active) != len(tc.active) {
				t.Fatalf("got %x %v, want %x %v", pl.Local, pl.Active, tc.local, tc.active)
			}
			for id, a := range tc.active {
				if got, ok := pl.Active[id]; !ok || got != a {
					t.Errorf("peer %x: active %v (listed %v), want %v", id, got, ok, a)
				}
			}
		})
	}
}

// TestPeerLinksRoute: the metrics are fetched through the client's dialer
// (the SSH tunnel in a session), at the endpoint's own host:port, and over
// TLS with the client's TLS config when the endpoint is https.
func TestPeerLinksRoute(t *testing.T) {
	for _, secure := range []bool{false, true} {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/metrics" {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write([]byte(metrics35))
		})
		srv := httptest.NewUnstartedServer(h)
		scheme := "http"
		if secure {
			srv.StartTLS()
			scheme = "https"
		} else {
			srv.Start()
		}
		// member-a resolves nowhere: an answer proves the dialer was used
		// (the gRPC client of the same Client dials it too).
		var mu sync.Mutex
		var dialed []string
		cfg := Config{
			Endpoints: []string{scheme + "://member-a:2379"},
			Dialer: func(ctx context.Context, addr string) (net.Conn, error) {
				mu.Lock()
				dialed = append(dialed, addr)
				mu.Unlock()
				var d net.Dialer
				return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
			},
		}
		var tlsCfg *tls.Config
		if secure {
			pool := x509.NewCertPool()
			pool.AddCert(srv.Certificate())
			// httptest's certificate is for example.com.
			tlsCfg = &tls.Config{RootCAs: pool, ServerName: "example.com", MinVersion: tls.VersionTLS12}
		}
		c, err := newClient(withDefaults(cfg), tlsCfg, &learnerSet{m: map[string]bool{}})
		if err != nil {
			t.Fatal(err)
		}
		pl, err := c.PeerLinks(context.Background(), scheme+"://member-a:2379")
		_ = c.Close()
		srv.Close()
		if err != nil {
			t.Fatalf("%s: %v", scheme, err)
		}
		mu.Lock()
		for _, a := range dialed {
			if a != "member-a:2379" {
				t.Errorf("%s: dialled %q, want member-a:2379 only", scheme, dialed)
			}
		}
		mu.Unlock()
		if pl.Local != 0x8211f1d0f64f3269 || !pl.Active[0x91bc3c398fb3c146] {
			t.Errorf("%s: got %x %v", scheme, pl.Local, pl.Active)
		}
	}
}
