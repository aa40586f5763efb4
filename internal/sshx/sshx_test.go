package sshx_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
)

func config(srv *sshxtest.Server) sshx.Config {
	return sshx.Config{
		Address:       srv.Host,
		Port:          srv.Port,
		User:          srv.User,
		IdentityFiles: []string{srv.ClientKey},
		KnownHosts:    srv.KnownHosts,
	}
}

func newClient(t *testing.T, cfg sshx.Config, opts ...sshx.Option) *sshx.Client {
	t.Helper()
	c, err := sshx.New("h1", cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func run(t *testing.T, c *sshx.Client, cmd string) sshx.Result {
	t.Helper()
	res, err := c.Run(context.Background(), cmd, sshx.RunOpts{})
	if err != nil {
		t.Fatalf("run %q: %v", cmd, err)
	}
	return res
}

// eventually polls cond (bounded) for conditions that settle asynchronously, such as
// a killed process disappearing from /proc. It asserts no duration.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("never happened: %s", what)
}

func TestRunExitCodesAndOutput(t *testing.T) {
	srv := sshxtest.Start(t)
	c := newClient(t, config(srv))
	res := run(t, c, "echo out; echo err >&2; exit 3")
	if res.ExitCode != 3 || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
		t.Fatalf("got exit %d stdout %q stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
	if res := run(t, c, "true"); res.ExitCode != 0 || len(res.Stdout)+len(res.Stderr) != 0 {
		t.Fatalf("true: %+v", res)
	}
	// An unterminated stderr line is kept.
	if res := run(t, c, "printf partial >&2; exit 1"); res.ExitCode != 1 || string(res.Stderr) != "partial" {
		t.Fatalf("partial stderr: %+v", res)
	}
	if res := run(t, c, "kill -TERM $$"); res.ExitCode != 128+15 {
		t.Fatalf("killed by SIGTERM: exit %d", res.ExitCode)
	}
	if res := run(t, c, "no-such-command-xyz"); res.ExitCode != 127 {
		t.Fatalf("missing command: exit %d", res.ExitCode)
	}
	if c.Dials() != 1 {
		t.Fatalf("%d connections for 5 commands, want 1", c.Dials())
	}
	if c.HostKeyCheckDisabled() {
		t.Fatal("host key checking reported disabled")
	}
}

// The command runs as under `sh -c CMD`, although the wrapper's marker line
// runs in the same shell before it: $0 and the positional parameters, exit
// status, traps, here-documents, set -e and syntax errors are the command's
// own, and the marker never shows in its stderr.
func TestCommandRunsAsUnderShC(t *testing.T) {
	srv := sshxtest.Start(t)
	c := newClient(t, config(srv))
	for name, tc := range map[string]struct {
		cmd            string
		code           int
		stdout, stderr string
	}{
		"no arguments":  {cmd: `echo "$0 $# [$*]"`, stdout: "sh 0 []\n"},
		"exit trap":     {cmd: "trap 'echo trapped' EXIT; exit 4", code: 4, stdout: "trapped\n"},
		"here-document": {cmd: "cat <<'EOF'\na $x\nEOF\necho after", stdout: "a $x\nafter\n"},
		"set -e":        {cmd: "set -e; false; echo not reached", code: 1},
		"leading blank": {cmd: "\n\n  echo ok", stdout: "ok\n"},
		"comment first": {cmd: "# note\necho ok", stdout: "ok\n"},
		"own group":     {cmd: `[ "$(ps -o pgid= -p $$ | tr -d ' ')" = $$ ] && echo leader`, stdout: "leader\n"},
	} {
		res := run(t, c, tc.cmd)
		if res.ExitCode != tc.code || string(res.Stdout) != tc.stdout || string(res.Stderr) != tc.stderr {
			t.Errorf("%s: %q: exit %d stdout %q stderr %q, want exit %d stdout %q stderr %q",
				name, tc.cmd, res.ExitCode, res.Stdout, res.Stderr, tc.code, tc.stdout, tc.stderr)
		}
	}
	// A syntax error is the command's: exit 2, reported by sh, nothing run.
	res := run(t, c, "echo before; if")
	if res.ExitCode != 2 || len(res.Stdout) != 0 || !strings.Contains(strings.ToLower(string(res.Stderr)), "syntax error") || strings.Contains(string(res.Stderr), "sshx:") {
		t.Errorf("syntax error: exit %d stdout %q stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
}

func TestRunStdin(t *testing.T) {
	srv := sshxtest.Start(t)
	c := newClient(t, config(srv))
	in := "line one\nline 'two' $(three)\n"
	res, err := c.Run(context.Background(), "cat; echo; wc -c", sshx.RunOpts{Stdin: strings.NewReader(in)})
	if err != nil {
		t.Fatal(err)
	}
	if want := in + "\n0\n"; string(res.Stdout) != want {
		// wc reads what cat left: nothing.
		t.Fatalf("stdout %q, want %q", res.Stdout, want)
	}
	// A command that ignores its stdin still completes.
	res, err = c.Run(context.Background(), "echo ignored", sshx.RunOpts{Stdin: io.LimitReader(rand.Reader, 4<<20)})
	if err != nil || string(res.Stdout) != "ignored\n" {
		t.Fatalf("ignoring stdin: %v %+v", err, res)
	}
}

func TestUnknownHostRefused(t *testing.T) {
	srv := sshxtest.Start(t)
	for name, known := range map[string]string{
		"missing file": filepath.Join(t.TempDir(), "none"),
		"empty file":   writeFile(t, ""),
		// An entry for port 22 of the same address must not match port N.
		"port 22 entry": writeFile(t, "127.0.0.1 "+string(ssh.MarshalAuthorizedKey(srv.HostKey))),
	} {
		t.Run(name, func(t *testing.T) {
			cfg := config(srv)
			cfg.KnownHosts = known
			_, err := newClient(t, cfg).Run(context.Background(), "true", sshx.RunOpts{})
			var he *sshx.HostKeyError
			if !errors.As(err, &he) || he.Changed {
				t.Fatalf("want unknown-host HostKeyError, got %v", err)
			}
			fp := ssh.FingerprintSHA256(srv.HostKey)
			for _, want := range []string{fp, "[127.0.0.1]:", "hint:", fmt.Sprintf("ssh-keyscan -p %d -t ed25519 127.0.0.1 >> %s", srv.Port, known)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
		})
	}
}

func TestChangedHostKeyRefused(t *testing.T) {
	srv := sshxtest.Start(t)
	other := sshxtest.WriteKey(t, filepath.Join(t.TempDir(), "other"))
	known := filepath.Join(t.TempDir(), "known_hosts")
	sshxtest.WriteKnownHosts(t, known, srv.Addr(), other)
	cfg := config(srv)
	cfg.KnownHosts = known
	c := newClient(t, cfg)
	_, err := c.Run(context.Background(), "touch "+sshx.Quote(filepath.Join(srv.Dir, "must-not-exist")), sshx.RunOpts{})
	var he *sshx.HostKeyError
	if !errors.As(err, &he) || !he.Changed {
		t.Fatalf("want changed-key HostKeyError, got %v", err)
	}
	for _, want := range []string{ssh.FingerprintSHA256(srv.HostKey), ssh.FingerprintSHA256(other), "CHANGED", known + ":1", "ssh-keygen -R"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := os.Stat(filepath.Join(srv.Dir, "must-not-exist")); err == nil {
		t.Fatal("command ran despite the changed host key")
	}
	// The key file's contents never appear in errors.
	key, _ := os.ReadFile(srv.ClientKey)
	if strings.Contains(err.Error(), string(key[40:80])) {
		t.Fatal("private key material in the error")
	}
}

func TestInsecureIgnoreHostKeyIsVisible(t *testing.T) {
	srv := sshxtest.Start(t)
	cfg := config(srv)
	cfg.KnownHosts = writeFile(t, "")
	cfg.InsecureIgnoreHostKey = true
	c := newClient(t, cfg)
	if !c.HostKeyCheckDisabled() {
		t.Fatal("HostKeyCheckDisabled() = false")
	}
	if res := run(t, c, "echo ok"); string(res.Stdout) != "ok\n" {
		t.Fatalf("%+v", res)
	}
}

func TestBadIdentityFile(t *testing.T) {
	srv := sshxtest.Start(t)
	cfg := config(srv)
	cfg.IdentityFiles = []string{writeFile(t, "not a key SECRET-MATERIAL")}
	_, err := newClient(t, cfg).Run(context.Background(), "true", sshx.RunOpts{})
	if err == nil || strings.Contains(err.Error(), "SECRET-MATERIAL") || !strings.Contains(err.Error(), cfg.IdentityFiles[0]) {
		t.Fatalf("want an error naming the file without its contents, got %v", err)
	}
	// A key the server does not accept.
	cfg.IdentityFiles = []string{filepath.Join(t.TempDir(), "stranger")}
	sshxtest.WriteKey(t, cfg.IdentityFiles[0])
	if _, err := newClient(t, cfg).Run(context.Background(), "true", sshx.RunOpts{}); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("want an authentication error, got %v", err)
	}
}

func TestQuotedValuesNeverInject(t *testing.T) {
	srv := sshxtest.Start(t)
	c := newClient(t, config(srv))
	pwned := filepath.Join(srv.Dir, "pwned")
	for _, v := range []string{
		"'; touch " + pwned + "; '",
		`"; touch ` + pwned + `; "`,
		"$(touch " + pwned + ")",
		"`touch " + pwned + "`",
		"x\ntouch " + pwned,
		"x; touch " + pwned,
		"x && touch " + pwned,
		"x | touch " + pwned,
		"\\'; touch " + pwned + " #",
	} {
		res := run(t, c, sshx.Join("printf", "%s", v))
		if string(res.Stdout) != v {
			t.Errorf("value %q came back as %q", v, res.Stdout)
		}
		// Inside a pipeline too.
		if res := run(t, c, "printf %s "+sshx.Quote(v)+" | cat"); string(res.Stdout) != v {
			t.Errorf("piped value %q came back as %q", v, res.Stdout)
		}
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("an injected command ran")
	}
}

func TestTimeoutKillsRemoteProcessGroup(t *testing.T) {
	srv := sshxtest.Start(t)
	c := newClient(t, config(srv))
	marker := fmt.Sprintf("1000.%d", time.Now().UnixNano()%1000000)
	// A background child and a foreground child: the whole group must go.
	cmd := "sleep " + marker + "1 & sleep " + marker + "2; echo finished"
	started := time.Now()
	res, err := c.Run(context.Background(), cmd, sshx.RunOpts{Timeout: 700 * time.Millisecond})
	if !errors.Is(err, sshx.ErrTimeout) {
		t.Fatalf("want ErrTimeout, got %v (%+v)", err, res)
	}
	if strings.Contains(string(res.Stdout), "finished") {
		t.Fatal("command finished instead of being killed")
	}
	t.Logf("timed out and killed after %s", time.Since(started))
	eventually(t, "remote sleeps gone (seen locally in /proc)", func() bool {
		return len(sshxtest.ProcessesMatching("sleep "+marker)) == 0
	})
	// And as the host sees it, through a second command.
	pattern := "sleep " + strings.ReplaceAll(marker, ".", "[.]")
	if res := run(t, c, "pgrep -f "+sshx.Quote(pattern)+" || echo none"); strings.TrimSpace(string(res.Stdout)) != "none" {
		t.Fatalf("pgrep still finds %q: %s", pattern, res.Stdout)
	}
	if c.Dials() != 1 {
		t.Fatalf("timeout cost a reconnect (%d dials)", c.Dials())
	}
}

func TestCancelKillsRemoteProcess(t *testing.T) {
	srv := sshxtest.Start(t)
	c := newClient(t, config(srv))
	marker := fmt.Sprintf("2000.%d", time.Now().UnixNano()%1000000)
	flag := filepath.Join(srv.Dir, "started")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, "touch "+sshx.Quote(flag)+"; sleep "+marker, sshx.RunOpts{})
		done <- err
	}()
	eventually(t, "command started", func() bool { _, err := os.Stat(flag); return err == nil })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	eventually(t, "remote sleep gone", func() bool { return len(sshxtest.ProcessesMatching("sleep "+marker)) == 0 })
}

func TestConcurrentSessionsOnOneConnection(t *testing.T) {
	srv := sshxtest.Start(t)
	c := newClient(t, config(srv))
	// One session slot is kept for kills.
	const n = sshx.DefaultMaxSessions - 1
	dir := filepath.Join(srv.Dir, "rendezvous")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Each command waits until all n have arrived: they can only all finish if n
	// sessions were open at the same time.
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cmd := fmt.Sprintf(`touch %s/%d; i=0; while [ "$(ls %s | wc -l)" -lt %d ]; do i=$((i+1)); [ $i -gt 600 ] && exit 9; sleep 0.05; done; echo %d`,
				sshx.Quote(dir), i, sshx.Quote(dir), n, i)
			res, err := c.Run(context.Background(), cmd, sshx.RunOpts{})
			if err == nil && (res.ExitCode != 0 || string(res.Stdout) != fmt.Sprintf("%d\n", i)) {
				err = fmt.Errorf("session %d: %+v", i, res)
			}
			errs <- err
		}(i)
	}
	// More concurrent callers than the server's MaxSessions (10): they queue.
	for i := 0; i < 2*n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res, err := c.Run(context.Background(), fmt.Sprintf("echo %d", i), sshx.RunOpts{})
			if err == nil && string(res.Stdout) != fmt.Sprintf("%d\n", i) {
				err = fmt.Errorf("extra %d: %+v", i, res)
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if c.Dials() != 1 || len(srv.ConnectionPIDs()) != 1 {
		t.Fatalf("dials %d, server connections %d; want one of each", c.Dials(), len(srv.ConnectionPIDs()))
	}
}

// TestServerWithFewSessionSlots: a hardened sshd (MaxSessions 2) refuses sessions
// beyond its limit; the client waits for a slot instead of failing, also for the
// sessions that kill timed-out commands.
func TestServerWithFewSessionSlots(t *testing.T) {
	srv := sshxtest.Start(t, sshxtest.Options{ExtraConfig: "MaxSessions 2"})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sshd log:\n%s", srv.Log())
		}
	})
	c := newClient(t, config(srv))
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res, err := c.Run(context.Background(), fmt.Sprintf("sleep 0.2; echo %d", i), sshx.RunOpts{})
			if err == nil && string(res.Stdout) != fmt.Sprintf("%d\n", i) {
				err = fmt.Errorf("%d: %+v", i, res)
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	marker := fmt.Sprintf("5000.%d", time.Now().UnixNano()%1000000)
	timeouts := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func(i int) {
			_, err := c.Run(context.Background(), fmt.Sprintf("sleep %s%d", marker, i), sshx.RunOpts{Timeout: 500 * time.Millisecond})
			timeouts <- err
		}(i)
	}
	for i := 0; i < 3; i++ {
		if err := <-timeouts; !errors.Is(err, sshx.ErrTimeout) || strings.Contains(err.Error(), "could not be killed") {
			t.Errorf("want a clean timeout, got %v", err)
		}
	}
	eventually(t, "timed-out sleeps gone", func() bool { return len(sshxtest.ProcessesMatching("sleep "+marker)) == 0 })
}

func TestReconnectAfterDroppedConnection(t *testing.T) {
	srv := sshxtest.Start(t)
	cfg := config(srv)
	cfg.KeepAlive = 200 * time.Millisecond
	var mu sync.Mutex
	var events []sshx.Event
	c := newClient(t, cfg, sshx.WithEventHook(func(e sshx.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }))
	run(t, c, "true")
	flag := filepath.Join(srv.Dir, "inflight")
	marker := fmt.Sprintf("20.%d", time.Now().UnixNano()%1000000)
	// The dropped connection leaves the command running on the host (as it would
	// on a real one); the test cleans it up.
	t.Cleanup(func() {
		for _, pid := range sshxtest.ProcessesMatching("sleep " + marker) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(context.Background(), "touch "+sshx.Quote(flag)+"; sleep "+marker, sshx.RunOpts{})
		done <- err
	}()
	eventually(t, "in-flight command started", func() bool { _, err := os.Stat(flag); return err == nil })
	if n := srv.KillConnections(); n != 1 {
		t.Fatalf("killed %d server connection processes, want 1", n)
	}
	err := <-done
	var cl *sshx.ConnLostError
	if !errors.Is(err, sshx.ErrConnectionLost) || !errors.As(err, &cl) || cl.Host != "h1" {
		t.Fatalf("in-flight command: want a connection-lost error, got %v", err)
	}
	if !strings.Contains(err.Error(), "outcome is unknown") {
		t.Errorf("error does not say the outcome is unknown: %v", err)
	}
	if res := run(t, c, "echo again"); string(res.Stdout) != "again\n" {
		t.Fatalf("after reconnect: %+v", res)
	}
	if c.Dials() != 2 {
		t.Fatalf("dials = %d, want 2", c.Dials())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 3 || !errors.Is(events[1].Err, sshx.ErrConnectionLost) || events[1].ExitCode != -1 {
		t.Fatalf("events: %+v", events)
	}
}

func TestKeepAliveDetectsDeadConnection(t *testing.T) {
	srv := sshxtest.Start(t)
	cfg := config(srv)
	cfg.KeepAlive = 100 * time.Millisecond
	cfg.KeepAliveTimeout = 300 * time.Millisecond
	c := newClient(t, cfg)
	run(t, c, "true")
	// Idle for a few keepalive rounds: OpenSSH answers them (with a refusal, which
	// still proves the link), so the connection survives.
	time.Sleep(600 * time.Millisecond)
	run(t, c, "true")
	if c.Dials() != 1 {
		t.Fatalf("keepalives on a healthy connection caused %d dials", c.Dials())
	}
	// Freeze the server side: the TCP connection stays open but nothing answers.
	pids := srv.ConnectionPIDs()
	for _, p := range pids {
		_ = exec.Command("kill", "-STOP", fmt.Sprint(p)).Run()
	}
	// Once the keepalive gives up, the next call dials a fresh connection instead of
	// hanging on the frozen one.
	res, err := c.Run(context.Background(), "echo fresh", sshx.RunOpts{Timeout: time.Minute})
	for _, p := range pids {
		_ = exec.Command("kill", "-KILL", fmt.Sprint(p)).Run()
	}
	if err != nil {
		// The first attempt may have been caught on the frozen connection.
		if !errors.Is(err, sshx.ErrConnectionLost) {
			t.Fatal(err)
		}
		res = run(t, c, "echo fresh")
	}
	if string(res.Stdout) != "fresh\n" || c.Dials() != 2 {
		t.Fatalf("%+v, dials %d", res, c.Dials())
	}
}

func TestUploadDownloadVerified(t *testing.T) {
	srv := sshxtest.Start(t)
	c := newClient(t, config(srv))
	data := make([]byte, 3<<20+17)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	dst := filepath.Join(srv.Dir, "dir with space", "snap'shot.db")
	if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	up, err := c.Upload(context.Background(), bytes.NewReader(data), dst, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if up.SHA256 != want || up.Size != int64(len(data)) {
		t.Fatalf("upload %+v, want %s/%d", up, want, len(data))
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("remote file differs (%v)", err)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	var buf bytes.Buffer
	down, err := c.Download(context.Background(), dst, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if down.SHA256 != want || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("download %+v", down)
	}
	local := filepath.Join(t.TempDir(), "copy")
	if _, err := c.DownloadFile(context.Background(), dst, local, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(local); !bytes.Equal(got, data) {
		t.Fatal("DownloadFile content differs")
	}
	if s, err := c.SHA256(context.Background(), dst); err != nil || s != want {
		t.Fatalf("SHA256 = %s, %v", s, err)
	}
	if c.Dials() != 1 {
		t.Fatalf("transfers used %d connections", c.Dials())
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	if len(p) > r.n {
		p = p[:r.n]
	}
	r.n -= len(p)
	return len(p), nil
}

func TestUploadFailureLeavesTargetAlone(t *testing.T) {
	srv := sshxtest.Start(t)
	c := newClient(t, config(srv))
	dir := filepath.Join(srv.Dir, "up")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "target")
	if err := os.WriteFile(dst, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := c.Upload(context.Background(), &failingReader{n: 100000}, dst, 0o600)
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("want the read error, got %v", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "old" {
		t.Fatalf("target changed to %d bytes", len(b))
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	if _, err := c.Upload(context.Background(), strings.NewReader("x"), filepath.Join(dir, "no", "such", "dir"), 0o600); err == nil {
		t.Fatal("upload into a missing directory succeeded")
	}
	if _, err := c.Download(context.Background(), filepath.Join(dir, "missing"), io.Discard); err == nil || !strings.Contains(err.Error(), "No such file") {
		t.Fatalf("download of a missing file: %v", err)
	}
}

func TestDialContextThroughConnection(t *testing.T) {
	srv := sshxtest.Start(t)
	c := newClient(t, config(srv))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(conn, conn); _ = conn.Close() }()
		}
	}()
	for i := 0; i < 3; i++ {
		conn, err := c.DialContext(context.Background(), "tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		msg := fmt.Sprintf("ping %d", i)
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo: %q %v", buf, err)
		}
		_ = conn.Close()
	}
	if _, err := c.DialContext(context.Background(), "tcp", "127.0.0.1:1"); err == nil {
		t.Fatal("dial of a closed port succeeded")
	}
	if c.Dials() != 1 {
		t.Fatalf("tunnels used %d connections", c.Dials())
	}
}

func TestJumpHost(t *testing.T) {
	jump := sshxtest.Start(t)
	target := sshxtest.Start(t)
	cfg := config(target)
	jcfg := config(jump)
	cfg.Jump = &jcfg
	// The target's known_hosts must not be consulted for the jump host and vice versa.
	c := newClient(t, cfg)
	res := run(t, c, "echo through")
	if string(res.Stdout) != "through\n" {
		t.Fatalf("%+v", res)
	}
	if len(jump.ConnectionPIDs()) != 1 || len(target.ConnectionPIDs()) != 1 {
		t.Fatalf("jump has %d connections, target %d; want 1 and 1", len(jump.ConnectionPIDs()), len(target.ConnectionPIDs()))
	}
	if !strings.Contains(jump.Log(), "direct-tcpip") && !strings.Contains(jump.Log(), "port forwarding") {
		t.Logf("jump log:\n%s", jump.Log())
	}
	// Losing the jump connection is losing the target connection; the next call
	// rebuilds both.
	jump.KillConnections()
	eventually(t, "reconnect through the jump host", func() bool {
		res, err := c.Run(context.Background(), "echo back", sshx.RunOpts{})
		return err == nil && string(res.Stdout) == "back\n"
	})
}

func TestPool(t *testing.T) {
	srv := sshxtest.Start(t)
	var mu sync.Mutex
	var events []sshx.Event
	p := sshx.NewPool(sshx.WithEventHook(func(e sshx.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }))
	insecure := config(srv)
	insecure.InsecureIgnoreHostKey = true
	for name, cfg := range map[string]sshx.Config{"a": config(srv), "b": insecure} {
		if _, err := p.Add(name, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Add("a", config(srv)); err == nil {
		t.Fatal("adding a host twice succeeded")
	}
	for _, n := range []string{"a", "b", "a"} {
		c, err := p.Get(n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Run(context.Background(), "echo SECRET=x", sshx.RunOpts{Display: "echo SECRET=***"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.HostKeyCheckDisabled(); len(got) != 1 || got[0] != "b" {
		t.Fatalf("HostKeyCheckDisabled = %v", got)
	}
	if len(srv.ConnectionPIDs()) != 2 {
		t.Fatalf("%d server connections for 2 hosts", len(srv.ConnectionPIDs()))
	}
	if _, err := p.Get("zz"); err == nil {
		t.Fatal("unknown host found")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get("a"); !errors.Is(err, sshx.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	eventually(t, "server connections closed", func() bool { return len(srv.ConnectionPIDs()) == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 3 || events[0].Cmd != "echo SECRET=***" || events[2].Host != "a" || events[0].ExitCode != 0 {
		t.Fatalf("events %+v", events)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func BenchmarkRunOnOpenConn(b *testing.B) {
	srv := sshxtest.Start(b)
	c, err := sshx.New("h1", config(srv))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Connect(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Run(context.Background(), "true", sshx.RunOpts{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDialAndRun(b *testing.B) {
	srv := sshxtest.Start(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := sshx.New("h1", config(srv))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Run(context.Background(), "true", sshx.RunOpts{}); err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
	}
}
