package sshx

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// probeKey is a key no server holds; checking it against known_hosts reveals which
// keys are recorded for a host (knownhosts.KeyError.Want).
var probeKey = func() ssh.PublicKey {
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, "etcd-rescue sshx known_hosts probe key")
	pk, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(seed).Public())
	if err != nil {
		panic(err)
	}
	return pk
}()

type staticAddr string

func (a staticAddr) Network() string { return "tcp" }
func (a staticAddr) String() string  { return string(a) }

// hostKeyCheck returns the callback verifying the server's key for cfg and the host
// key algorithms to ask for (those of the recorded keys, so that a host with several
// keys is not refused for presenting one that is not recorded).
func hostKeyCheck(cfg Config) (ssh.HostKeyCallback, []string, error) {
	if cfg.InsecureIgnoreHostKey {
		return ssh.InsecureIgnoreHostKey(), nil, nil //nolint:gosec // explicit, loud opt-out
	}
	var db ssh.HostKeyCallback
	if _, err := os.Stat(cfg.KnownHosts); errors.Is(err, fs.ErrNotExist) {
		// A missing file is an empty one: the host is unknown and the error says how
		// to add it.
		db = func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }
	} else {
		var err error
		db, err = knownhosts.New(cfg.KnownHosts)
		if err != nil {
			return nil, nil, fmt.Errorf("reading known_hosts %s: %w", cfg.KnownHosts, err)
		}
	}
	hostport := cfg.HostPort()
	var algos []string
	var ke *knownhosts.KeyError
	if err := db(hostport, staticAddr(hostport), probeKey); errors.As(err, &ke) {
		seen := map[string]bool{}
		for _, k := range ke.Want {
			for _, a := range algorithmsFor(k.Key.Type()) {
				if !seen[a] {
					seen[a] = true
					algos = append(algos, a)
				}
			}
		}
	}
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := db(hostname, remote, key)
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			var re *knownhosts.RevokedError
			if errors.As(err, &re) {
				return fmt.Errorf("host key verification failed for %s: key %s is marked @revoked in %s",
					knownhosts.Normalize(hostname), ssh.FingerprintSHA256(key), cfg.KnownHosts)
			}
			return fmt.Errorf("host key verification failed for %s: %w", knownhosts.Normalize(hostname), err)
		}
		he := &HostKeyError{
			Host:           knownhosts.Normalize(hostname),
			Address:        cfg.Address,
			Port:           cfg.Port,
			KeyType:        key.Type(),
			Fingerprint:    ssh.FingerprintSHA256(key),
			Changed:        len(ke.Want) > 0,
			KnownHostsFile: cfg.KnownHosts,
		}
		for _, w := range ke.Want {
			he.Known = append(he.Known, KnownKey{File: w.Filename, Line: w.Line, Type: w.Key.Type(), Fingerprint: ssh.FingerprintSHA256(w.Key)})
		}
		return he
	}
	return cb, algos, nil
}

// algorithmsFor maps a recorded key type to the host key algorithms that can
// present it.
func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}
