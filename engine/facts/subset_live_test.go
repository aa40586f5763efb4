package facts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
)

// The drift rules on facts collected for real, over a real sshd from a
// real etcd member: writes between review and apply are not drift; the
// member stopping is, with the time of the review in the message.
func TestCompareLive(t *testing.T) {
	bin := etcdtest.Binary(t)
	srv := sshxtest.Start(t)
	m1 := etcdtest.Start(t, etcdtest.Options{Binary: bin, Name: "m1"})
	m1.WaitHealthy(t)
	dir := t.TempDir()
	env := filepath.Join(dir, "etcd.env")
	if err := os.WriteFile(env, []byte("ETCD_NAME=m1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv := loadInventory(t, dir, fmt.Sprintf(`cluster:
  name: t
  etcdVersion: "3.6"
  layout: {dataDir: %s, envFile: %s, unit: etcd-rescue-test-none, binDir: %s}
  members:
    - {name: m1, host: local, peerURL: %q, clientURL: %q}
hosts:
  local: {address: 127.0.0.1, port: %d}
ssh: {user: %s, identity: %s, knownHosts: %s}
`, m1.DataDir, env, filepath.Dir(bin), m1.PeerURL, m1.ClientURL, srv.Port, srv.User, srv.ClientKey, srv.KnownHosts))
	collect := func() *Subset {
		t.Helper()
		f, err := Collect(context.Background(), inv, Options{Timeout: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return SubsetOf(f)
	}

	review := collect()
	if m := review.Members[0]; m.API != APIAnswered || m.ID == "" || m.ClusterID == "" || m.Revision == 0 || review.Leader() != m.ID {
		t.Fatalf("review: %+v leader %q", m, review.Leader())
	}
	if h := review.Hosts[0]; h.DataDir == nil || !h.DataDir.HasMember {
		t.Fatalf("review host: %+v", h)
	}

	cli, err := etcdapi.New(etcdapi.Config{Endpoints: []string{m1.ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		if _, err := cli.Raw().Put(ctx, fmt.Sprintf("/drift/%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	_ = cli.Close()
	later := collect()
	if later.Members[0].Revision <= review.Members[0].Revision {
		t.Fatalf("revision %d after writes, was %d", later.Members[0].Revision, review.Members[0].Revision)
	}
	if ds := Compare(review, later); len(ds) != 0 {
		t.Errorf("writes to a healthy cluster drift: %+v", ds)
	}

	m1.Stop()
	now := collect()
	ds := Compare(review, now)
	if HardDrifts(ds) != 1 || len(ds) != 1 {
		t.Fatalf("after the member stopped: %+v", ds)
	}
	want := "m1 answered at review (" + review.CollectedAt.UTC().Format("15:04:05") + " UTC), does not now: down"
	if !strings.HasPrefix(ds[0].Msg, want) || ds[0].What != "answers" {
		t.Errorf("drift %q, want it to start with %q", ds[0].Msg, want)
	}
}
