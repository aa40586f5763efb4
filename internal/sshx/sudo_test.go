package sshx_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
)

// TestNonRootUserWithSudo logs in as a throwaway unprivileged user (login shell
// /bin/sh) allowed passwordless sudo, and checks that Sudo runs commands as root,
// that a timed-out root process is killed (through sudo), and that uploads land in
// root-only directories. The user and its sudoers rule are removed afterwards.
func TestNonRootUserWithSudo(t *testing.T) {
	for _, tool := range []string{"sudo", "useradd", "userdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			sshxtest.Require(t, tool, "apt-get install -y --no-install-recommends sudo passwd")
		}
	}
	if os.Geteuid() != 0 {
		sshxtest.Require(t, "root (to create a test user)", "run the tests as root")
	}
	srv := sshxtest.Start(t, sshxtest.Options{HomeAuthorizedKeys: true})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sshd log:\n%s", srv.Log())
		}
	})
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "sshxt" + hex.EncodeToString(b)
	home, err := os.MkdirTemp("", "sshx-home-")
	if err != nil {
		t.Fatal(err)
	}
	// "-p *": no password, yet not locked (sshd refuses locked accounts).
	if out, err := exec.Command("useradd", "-M", "-p", "*", "-d", home, "-s", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v %s", err, out)
	}
	sudoers := filepath.Join("/etc/sudoers.d", name)
	t.Cleanup(func() {
		_ = os.Remove(sudoers)
		// userdel refuses while the user's last sshd process is still exiting.
		for i := 0; i < 100; i++ {
			if exec.Command("userdel", name).Run() == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = os.RemoveAll(home)
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	pub, err := os.ReadFile(srv.ClientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{home, filepath.Join(home, ".ssh"), filepath.Join(home, ".ssh", "authorized_keys")} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(sudoers, []byte(name+" ALL=(root) NOPASSWD: ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}

	cfg := config(srv)
	cfg.User = name
	plain := newClient(t, cfg)
	if res := run(t, plain, "id -u"); strings.TrimSpace(string(res.Stdout)) != u.Uid {
		t.Fatalf("without sudo: uid %q, want %s", res.Stdout, u.Uid)
	}
	cfg.Sudo = true
	c := newClient(t, cfg)
	if res := run(t, c, "id -u; printf %s "+sshx.Quote("'; id -u; '")); string(res.Stdout) != "0\n'; id -u; '" {
		t.Fatalf("with sudo: %q", res.Stdout)
	}

	marker := fmt.Sprintf("4000.%d", time.Now().UnixNano()%1000000)
	if _, err := c.Run(context.Background(), "sleep "+marker, sshx.RunOpts{Timeout: 500 * time.Millisecond}); !errors.Is(err, sshx.ErrTimeout) {
		t.Fatalf("want ErrTimeout, got %v", err)
	}
	eventually(t, "root sleep started through sudo gone", func() bool {
		return len(sshxtest.ProcessesMatching("sleep "+marker)) == 0
	})

	rootOnly := filepath.Join(srv.Dir, "root-only")
	if err := os.Mkdir(rootOnly, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(srv.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(rootOnly, "f")
	if _, err := plain.Upload(context.Background(), strings.NewReader("x"), dst, 0o600); err == nil {
		t.Fatal("upload into a root-only directory succeeded without sudo")
	}
	if _, err := c.Upload(context.Background(), strings.NewReader("secret data"), dst, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "secret data" {
		t.Fatalf("uploaded %q %v", b, err)
	}
}
