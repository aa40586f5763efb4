package etcdstate

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi/etcdtest"
)

// etcdVersion is the lab build the tests run: lab/bin/<etcdVersion>/etcd.
const etcdVersion = "v3.6.16"

// etcdOpts: TLS files make the client URL https (with client certificate
// auth when clientCA is set).
type etcdOpts struct {
	cert, key, clientCA string
	probeTLS            *tls.Config
}

// startEtcd starts a one-member etcd on 127.0.0.1, its data in a temp dir,
// and stops it when the test ends. It returns once the member reports
// itself healthy.
func startEtcd(t testing.TB, o etcdOpts) *etcdtest.Member {
	t.Helper()
	client := etcdtest.FreeURL(t)
	if o.cert != "" {
		client = "https://" + strings.TrimPrefix(client, "http://")
	}
	// A member that becomes leader fast, and short lease TTLs.
	extra := []string{"--heartbeat-interval", "50", "--election-timeout", "250"}
	if o.cert != "" {
		extra = append(extra, "--cert-file", o.cert, "--key-file", o.key)
		if o.clientCA != "" {
			extra = append(extra, "--trusted-ca-file", o.clientCA, "--client-cert-auth")
		}
	}
	m := etcdtest.Start(t, etcdtest.Options{Binary: etcdtest.VersionBinary(t, etcdVersion), Name: "store",
		ClientURL: client, ExtraArgs: extra, ProbeTLS: o.probeTLS})
	m.WaitHealthy(t)
	return m
}

// open opens a store on p with the test's defaults (a 2 s lock TTL) and
// closes it when the test ends.
func open(t testing.TB, p *etcdtest.Member, cfg Config) *Store {
	t.Helper()
	cfg.Endpoints = []string{p.Endpoint()}
	if cfg.LockTTL == 0 {
		cfg.LockTTL = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v\netcd log:\n%s", err, p.Log())
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func contains(t testing.TB, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not contain %q", err, w)
		}
	}
}
