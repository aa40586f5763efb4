// Package sshxtest starts a real OpenSSH sshd on 127.0.0.1 for tests: fresh host
// and client keys, a known_hosts file holding the host key, and helpers to find
// and kill the server's per-connection processes (to simulate dropped links).
//
// A missing prerequisite (sshd binary, root) skips the test, or fails it when the
// environment variable CI is "true".
package sshxtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHD is the server binary used.
const SSHD = "/usr/sbin/sshd"

// Require fails (CI=true) or skips the test because a prerequisite is missing.
func Require(t testing.TB, missing, hint string) {
	t.Helper()
	msg := fmt.Sprintf("prerequisite missing: %s\nhint: %s", missing, hint)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Server is a running sshd.
type Server struct {
	Host string
	Port int
	User string
	Dir  string
	// ClientKey is the path of a private key accepted by the server.
	ClientKey string
	// KnownHosts is a known_hosts file recording the server's host key.
	KnownHosts string
	// HostKey is the server's public host key.
	HostKey ssh.PublicKey
	// HostCert is the host certificate file when Options.HostCA is set.
	HostCert string
	// LogFile receives sshd's log (-e).
	LogFile string

	cmd  *exec.Cmd
	done chan struct{}
}

// Options tunes Start.
type Options struct {
	// ExtraConfig is appended to sshd_config.
	ExtraConfig string
	// HomeAuthorizedKeys also accepts the keys in each user's
	// ~/.ssh/authorized_keys (for tests that log in as another user).
	HomeAuthorizedKeys bool
	// HostCA is an SSH CA private key file (see WriteKey): the host key is
	// certified with it by ssh-keygen -s -h for the principal 127.0.0.1, and
	// sshd presents that certificate (HostCertificate) to clients that ask
	// for a certificate algorithm.
	HostCA string
	// Env adds NAME=VALUE settings to the environment of every session
	// (sshd takes only the first SetEnv line, so they join its own).
	Env []string
}

// Start runs sshd -D on a free port of 127.0.0.1 and stops it when the test ends.
func Start(t testing.TB, opts ...Options) *Server {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if _, err := os.Stat(SSHD); err != nil {
		Require(t, SSHD+" not found", "apt-get install -y --no-install-recommends openssh-server")
	}
	if os.Geteuid() != 0 {
		Require(t, "root (sshd privilege separation and logins need it)", "run the tests as root")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("creating sshd's privilege separation directory: %v", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &Server{Host: "127.0.0.1", User: u.Username, Dir: dir, LogFile: filepath.Join(dir, "sshd.log")}

	hostKeyPath := filepath.Join(dir, "ssh_host_ed25519_key")
	s.HostKey = WriteKey(t, hostKeyPath)
	s.ClientKey = filepath.Join(dir, "id_ed25519")
	clientPub := WriteKey(t, s.ClientKey)
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatal(err)
	}

	if o.HostCA != "" {
		if _, err := exec.LookPath("ssh-keygen"); err != nil {
			Require(t, "ssh-keygen", "apt-get install -y --no-install-recommends openssh-client")
		}
		out, err := exec.Command("ssh-keygen", "-q", "-s", o.HostCA, "-I", "etcd-rescue-test-host", "-h",
			"-n", "127.0.0.1", "-V", "-5m:+1h", hostKeyPath+".pub").CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen -s: %v\n%s", err, out)
		}
		s.HostCert = hostKeyPath + "-cert.pub"
		o.ExtraConfig = "HostCertificate " + s.HostCert + "\n" + o.ExtraConfig
	}
	authFiles := authKeys
	if o.HomeAuthorizedKeys {
		authFiles += " .ssh/authorized_keys"
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s.Port = FreePort(t)
		cfg := fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
AuthorizedKeysFile %s
PidFile %s
StrictModes no
UsePAM no
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowTcpForwarding yes
MaxStartups 50:30:100
LogLevel VERBOSE
# bash sources ~/.bashrc for commands run by sshd only at shell level 1; this
# machine's root .bashrc runs pyenv init (~120 ms per command), which would
# measure the test host's rc files rather than the transport.
SetEnv SHLVL=1%s
%s
`, s.Port, hostKeyPath, authFiles, filepath.Join(dir, "sshd.pid"), setEnv(o.Env), o.ExtraConfig)
		cfgPath := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if lastErr = s.start(cfgPath); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("starting sshd: %v\nlog:\n%s", lastErr, s.Log())
	}
	t.Cleanup(s.Stop)

	s.KnownHosts = filepath.Join(dir, "known_hosts")
	WriteKnownHosts(t, s.KnownHosts, s.Addr(), s.HostKey)
	return s
}

func (s *Server) start(cfgPath string) error {
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(SSHD, "-D", "-e", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	// Readiness: the port accepts connections (bounded wait, not an assertion).
	for i := 0; i < 200; i++ {
		select {
		case <-done:
			return fmt.Errorf("sshd exited: %v", cmd.ProcessState)
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			_ = c.Close()
			s.cmd, s.done = cmd, done
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("sshd did not listen on %s", s.Addr())
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// PID is the listener's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Log returns what sshd logged so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogFile)
	return string(b)
}

// Stop terminates sshd and every connection process it started.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	for _, pid := range s.ConnectionPIDs() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// ConnectionPIDs returns the per-connection sshd processes (children of the
// listener), one per open client connection.
func (s *Server) ConnectionPIDs() []int {
	return ChildPIDs(s.PID())
}

// KillConnections SIGKILLs every per-connection sshd process: each client sees its
// connection drop without a goodbye. It returns how many were killed.
func (s *Server) KillConnections() int {
	n := 0
	for _, pid := range s.ConnectionPIDs() {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// ChildPIDs lists the live (non-zombie) children of ppid, read from /proc.
func ChildPIDs(ppid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		if p, _ := strconv.Atoi(f[1]); p == ppid {
			out = append(out, pid)
		}
	}
	return out
}

// ProcessesMatching returns the live (non-zombie) processes whose command line
// contains substr; a zombie's command line is empty, so it never matches.
func ProcessesMatching(substr string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if strings.Contains(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})), substr) {
			out = append(out, pid)
		}
	}
	return out
}

// WriteKey writes a new ed25519 private key (OpenSSH format, mode 0600) to path and
// returns its public key.
func WriteKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sp), 0o644); err != nil {
		t.Fatal(err)
	}
	return sp
}

// WriteKnownHosts writes a known_hosts file with one line for hostport
// ("[host]:port" unless the port is 22).
func WriteKnownHosts(t testing.TB, path, hostport string, key ssh.PublicKey) {
	t.Helper()
	line := knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key) + "\n"
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
}

// FreePort is a loopback TCP port nothing listens on (just now).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// setEnv renders Options.Env for the SetEnv line, each setting quoted.
func setEnv(env []string) string {
	var b strings.Builder
	for _, e := range env {
		b.WriteString(" \"" + e + "\"")
	}
	return b.String()
}
