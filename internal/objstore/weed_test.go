package objstore

import (
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/weedserver/weedtest"
)

// The *S3Lab tests run against a real SeaweedFS (weed) that weedtest
// starts on 127.0.0.1 in a temp dir, with TLS from a CA of its own and a
// static identity, and testBucket in it.

const testBucket = "etcd-backups"

// weedServer is a running weed and how to reach it.
type weedServer struct {
	cfg Config // endpoint, CA, region, path style, the good keys
	srv *weedtest.Server
}

// weedSlot is one weed the S3Lab tests of a run share (each test works
// under a prefix of its own); TestMain stops it.
type weedSlot struct {
	once sync.Once
	w    *weedServer
	err  error
	stop func()
}

// shared serves S3 over TLS (as the lab does); plain serves http://.
var shared, plain weedSlot

func TestMain(m *testing.M) {
	code := m.Run()
	for _, s := range []*weedSlot{&shared, &plain} {
		if s.stop != nil {
			s.stop()
		}
	}
	os.Exit(code)
}

// startWeed returns the shared TLS weed with testBucket in it, starting
// it on first use.
func startWeed(t *testing.T) *weedServer { return startSlot(t, &shared, true) }

// startPlainWeed is startWeed for a weed serving plain http://.
func startPlainWeed(t *testing.T) *weedServer { return startSlot(t, &plain, false) }

func startSlot(t *testing.T, s *weedSlot, tls bool) *weedServer {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a SeaweedFS server")
	}
	bin := weedtest.Bin(t)
	s.once.Do(func() { s.w, s.stop, s.err = launchWeed(bin, tls) })
	if s.err != nil {
		t.Fatal(s.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("weed log (last lines):\n%s", s.w.srv.LogTail(30))
		}
	})
	return s.w
}

// launchWeed starts weed (with tls, TLS from a fresh CA) with testBucket.
func launchWeed(bin string, tls bool) (*weedServer, func(), error) {
	srv, stop, err := weedtest.Start(bin, weedtest.Options{Plain: !tls, Buckets: []string{testBucket}})
	if err != nil {
		return nil, nil, err
	}
	return &weedServer{srv: srv, cfg: Config{
		Endpoint:  srv.Endpoint,
		Region:    srv.Region,
		PathStyle: true,
		CAFile:    srv.CAFile,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
	}}, stop, nil
}

func (w *weedServer) client(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
