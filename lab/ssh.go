package lab

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ClientKeyPath is the lab's ssh client key (root on every host accepts it).
func (l *Lab) ClientKeyPath() string { return filepath.Join(l.SSHDir(), "id_ed25519") }

// KnownHostsPath is the known_hosts file with every lab host's key under its
// name and current address.
func (l *Lab) KnownHostsPath() string { return filepath.Join(l.SSHDir(), "known_hosts") }

// SSHConfigPath is an OpenSSH client config with Host entries h1..hN:
// ssh -F <path> h1.
func (l *Lab) SSHConfigPath() string { return filepath.Join(l.SSHDir(), "config") }

// HostKeyPath is host name's private host key on the operator side.
func (l *Lab) HostKeyPath(name string) string {
	return filepath.Join(l.SSHDir(), "hostkeys", name+"_ed25519")
}

// genKey writes an OpenSSH ed25519 key pair to path and path.pub.
func genKey(path, comment string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	spub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("key dir: %w", err)
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spub))) + " " + comment + "\n"
	return writeFileAtomic(path+".pub", []byte(line), 0o644)
}

func (l *Lab) ensureClientKey() error {
	if _, err := os.Stat(l.ClientKeyPath()); err == nil {
		return nil
	}
	return genKey(l.ClientKeyPath(), "etcd-rescue-lab")
}

func (l *Lab) ensureHostKey(h *Host) error {
	if _, err := os.Stat(l.HostKeyPath(h.Name)); err == nil {
		return nil
	}
	return genKey(l.HostKeyPath(h.Name), "root@"+h.Name)
}

func readPublicKey(path string) (ssh.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return k, nil
}

// writeSSHFiles (re)writes known_hosts and the OpenSSH config from the
// current hosts.
func (l *Lab) writeSSHFiles() error {
	hosts := l.hostPtrs()
	var kh, cfg bytes.Buffer
	for _, h := range hosts {
		k, err := readPublicKey(l.HostKeyPath(h.Name) + ".pub")
		if errors.Is(err, os.ErrNotExist) {
			if err = l.ensureHostKey(h); err == nil {
				k, err = readPublicKey(l.HostKeyPath(h.Name) + ".pub")
			}
		}
		if err != nil {
			return err
		}
		kh.WriteString(knownhosts.Line([]string{h.Name, h.Address}, k) + "\n")
		fmt.Fprintf(&cfg, "Host %s\n  HostName %s\n", h.Name, h.Address)
	}
	fmt.Fprintf(&cfg, `Host *
  User root
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 5
  LogLevel ERROR
`, l.ClientKeyPath(), l.KnownHostsPath())
	if err := writeFileAtomic(l.KnownHostsPath(), kh.Bytes(), 0o644); err != nil {
		return err
	}
	return writeFileAtomic(l.SSHConfigPath(), cfg.Bytes(), 0o644)
}

// SSHClientConfig is the lab's ssh client configuration: user root, the lab
// key, host keys checked against the lab's known_hosts.
func (l *Lab) SSHClientConfig() (*ssh.ClientConfig, error) {
	b, err := os.ReadFile(l.ClientKeyPath())
	if err != nil {
		return nil, fmt.Errorf("read client key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse client key: %w", err)
	}
	cb, err := knownhosts.New(l.KnownHostsPath())
	if err != nil {
		return nil, fmt.Errorf("read known_hosts: %w", err)
	}
	return &ssh.ClientConfig{
		User:              "root",
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   cb,
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           5 * time.Second,
	}, nil
}

// Dial opens an ssh connection to host name as root.
func (l *Lab) Dial(ctx context.Context, name string) (*ssh.Client, error) {
	h, ok := l.Host(name)
	if !ok {
		return nil, fmt.Errorf("no host %s", name)
	}
	cfg, err := l.SSHClientConfig()
	if err != nil {
		return nil, err
	}
	return dialSSH(ctx, net.JoinHostPort(h.Address, "22"), cfg)
}

func dialSSH(ctx context.Context, addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	d := net.Dialer{Timeout: cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_ = conn.SetDeadline(time.Now().Add(cfg.Timeout + 5*time.Second))
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// Run runs a shell command on host name as root over ssh (stdin may be nil)
// and returns its combined output.  A non-zero exit is an error.
func (l *Lab) Run(ctx context.Context, name, command string, stdin io.Reader) (string, error) {
	c, err := l.Dial(ctx, name)
	if err != nil {
		return "", fmt.Errorf("ssh %s: %w", name, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	s, err := c.NewSession()
	if err != nil {
		return "", fmt.Errorf("ssh %s: %w", name, err)
	}
	defer s.Close()
	// one writer for both streams, locked: with a bare *bytes.Buffer the two
	// copy goroutines' ReadFrom calls would truncate each other's output
	var out lockedBuffer
	s.Stdout, s.Stderr, s.Stdin = &out, &out, stdin
	if err := s.Run(command); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return out.String(), fmt.Errorf("ssh %s: %w", name, err)
	}
	return out.String(), nil
}

// waitSSH waits until host h runs commands over ssh.
func (l *Lab) waitSSH(ctx context.Context, h *Host, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var last error
	for {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := l.Run(rctx, h.Name, "true", nil)
		rcancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s (%s) not reachable over ssh after %s: %w", h.Name, h.Address, d, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
