package sshx

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// defaultIdentities are tried, like OpenSSH does, when no identity file is given.
var defaultIdentities = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// authMethods builds the public key authentication for cfg. The returned closer
// releases the agent connection once the handshake is over. Errors name files, never
// their contents.
func authMethods(cfg Config) ([]ssh.AuthMethod, io.Closer, error) {
	var signers []ssh.Signer
	var skipped []string
	files := cfg.IdentityFiles
	explicit := len(files) > 0
	if !explicit && !cfg.UseAgent {
		if home, err := os.UserHomeDir(); err == nil {
			for _, n := range defaultIdentities {
				files = append(files, filepath.Join(home, ".ssh", n))
			}
		}
	}
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			if !explicit && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is already in the message
			}
			return nil, nil, fmt.Errorf("identity file %s: %w", f, err)
		}
		s, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			var pm *ssh.PassphraseMissingError
			if errors.As(err, &pm) {
				skipped = append(skipped, f)
				continue
			}
			return nil, nil, fmt.Errorf("identity file %s: not a usable private key: %w", f, err)
		}
		signers = append(signers, s)
	}
	var closer io.Closer = nopCloser{}
	if cfg.UseAgent {
		sock := os.Getenv("SSH_AUTH_SOCK")
		if sock == "" {
			return nil, nil, errors.New("ssh-agent requested but SSH_AUTH_SOCK is not set\nhint: start ssh-agent and ssh-add the key, or give an identity file")
		}
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return nil, nil, fmt.Errorf("connecting to ssh-agent at $SSH_AUTH_SOCK: %w", err)
		}
		as, err := agent.NewClient(conn).Signers()
		if err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("listing ssh-agent keys: %w", err)
		}
		signers = append(signers, as...)
		closer = conn
	}
	if len(signers) == 0 {
		msg := "no usable SSH key: no identity file could be loaded and no ssh-agent key is available"
		if len(skipped) > 0 {
			msg += fmt.Sprintf(" (passphrase-protected keys skipped: %v)", skipped)
		}
		_ = closer.Close()
		return nil, nil, errors.New(msg + "\nhint: set the plan's ssh identity, or load the key into ssh-agent and enable agent use")
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, closer, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// CheckLocal checks, without any network traffic, what this machine must
// provide before cfg can connect: the identity files (readable, a usable key),
// the ssh-agent when it is asked for, and a known_hosts file that parses. The
// same for the jump host. A host that is simply not in known_hosts is not an
// error here: it is refused at connect time, with its fingerprint.
func (c Config) CheckLocal() error {
	cfg, err := c.withDefaults()
	if err != nil {
		return err
	}
	return cfg.checkLocal()
}

func (cfg Config) checkLocal() error {
	_, closer, err := authMethods(cfg)
	if err != nil {
		return err
	}
	_ = closer.Close()
	if _, _, err := hostKeyCheck(cfg); err != nil {
		return err
	}
	if cfg.Jump != nil {
		if err := cfg.Jump.checkLocal(); err != nil {
			return fmt.Errorf("jump host %s: %w", cfg.Jump.Address, err)
		}
	}
	return nil
}
