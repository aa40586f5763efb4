package lab

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestIsolateAndChosenQuorumLoss: an isolated host does not answer (ssh
// times out: no "connection refused", no "no route to host"), its console
// still works and etcd there runs on; after Rejoin it answers and the
// cluster is healthy again.  Then a quorum loss with chosen victims keeps
// the middle member as the survivor.
func TestIsolateAndChosenQuorumLoss(t *testing.T) {
	l := upLab(t, Options{Members: 3, Version: "3.6", Keys: 100})
	ctx := context.Background()
	mustVerify(t, l)

	t.Run("isolate", func(t *testing.T) {
		if err := l.Isolate(ctx, "h3"); err != nil {
			t.Fatal(err)
		}
		if got := l.Isolated(); len(got) != 1 || got[0] != "h3" {
			t.Errorf("Isolated() = %v, want [h3]", got)
		}
		// longer than ARP's ~3 s: a failed neighbour resolution would end
		// the dial early with EHOSTUNREACH
		h3, _ := l.Host("h3")
		for _, port := range []string{"22"} {
			t0 := time.Now()
			d := net.Dialer{Timeout: 4 * time.Second}
			c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(h3.Address, port))
			el := time.Since(t0)
			if err == nil {
				c.Close()
				t.Fatalf("dial %s:%s of an isolated host succeeded", h3.Address, port)
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) {
				t.Errorf("dial %s:%s of an isolated host: %v after %.1fs, want a timeout", h3.Address, port, err, el.Seconds())
			}
			if el < 3500*time.Millisecond {
				t.Errorf("dial %s:%s of an isolated host ended after %.1fs, before its 4s timeout: %v", h3.Address, port, el.Seconds(), err)
			}
			t.Logf("dial %s:%s while isolated: %v after %.1fs", h3.Address, port, err, el.Seconds())
		}
		out, err := l.RunConsole(ctx, "h3", "hostname; systemctl is-active etcd; test -d /var/lib/etcd/member && echo data")
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(out); len(f) != 3 || f[0] != "h3" || f[1] != "active" || f[2] != "data" {
			t.Errorf("console of the isolated h3: %q, want h3, active, data", out)
		}
		// 2 of 3 keep quorum; etcd3 does not answer
		verifyFails(t, l, "etcd3")
		if err := l.Rejoin(ctx, "h3"); err != nil {
			t.Fatal(err)
		}
		if got := l.Isolated(); len(got) != 0 {
			t.Errorf("Isolated() after Rejoin = %v", got)
		}
		if out := sshOut(t, l, "h3", "hostname"); out != "h3" {
			t.Errorf("ssh h3 after Rejoin: %q", out)
		}
		mustVerify(t, l)
	})

	t.Run("quorum-loss-of", func(t *testing.T) {
		for _, bad := range [][]string{{"etcd1"}, {"etcd1", "etcd2", "etcd3"}, {"etcd1", "etcd9"}} {
			if err := l.BreakQuorumLossOf(ctx, bad); err == nil {
				t.Fatalf("BreakQuorumLossOf(%v) did not fail", bad)
			} else {
				t.Logf("BreakQuorumLossOf(%v): %v", bad, err)
			}
		}
		if err := l.BreakQuorumLossOf(ctx, []string{"etcd1", "etcd3"}); err != nil {
			t.Fatal(err)
		}
		checkQuorumLoss(t, l, []string{"h2"}, []string{"h1", "h3"})
		if b := l.st.Breaks; len(b) != 1 || b[0] != "quorum-loss" {
			t.Errorf("breaks recorded: %v", b)
		}
		if b, err := os.ReadFile(l.InventoryPath()); err != nil || !strings.Contains(string(b), "# breaks so far: [quorum-loss]") {
			t.Errorf("inventory not rewritten after the break (%v):\n%s", err, b)
		}
	})
}
