package sshx

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"

	skknownhosts "github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// plainHostKeyAlgos are asked for when known_hosts knows nothing about a
// host: without them the server would present a host certificate first,
// refused with "no authorities" rather than with the fingerprint hint.
var plainHostKeyAlgos = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA,
}

// knownHostsFiles returns the known_hosts files of cfg that exist: a
// missing file is an empty one (the host is unknown and the error says how
// to add it).
func knownHostsFiles(cfg Config) ([]string, error) {
	var out []string
	for _, f := range append([]string{cfg.KnownHosts}, cfg.KnownHostsExtra...) {
		if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("reading known_hosts %s: %w", f, err)
		}
		out = append(out, f)
	}
	return out, nil
}

// hostKeyCheck returns the callback verifying the server's key for cfg and
// the host key algorithms to ask for. The algorithms come from the keys
// known_hosts records for the host (github.com/skeema/knownhosts), so a host
// with several keys is not refused for presenting one that is not recorded,
// and a host matched by a @cert-authority line is asked for its certificate.
// @revoked lines are honoured for plain keys, certificates and their CA.
func hostKeyCheck(cfg Config) (ssh.HostKeyCallback, []string, error) {
	if cfg.InsecureIgnoreHostKey {
		return ssh.InsecureIgnoreHostKey(), nil, nil //nolint:gosec // explicit, loud opt-out
	}
	files, err := knownHostsFiles(cfg)
	if err != nil {
		return nil, nil, err
	}
	db := func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }
	var algos []string
	if len(files) > 0 {
		kdb, err := skknownhosts.NewDB(files...)
		if err != nil {
			return nil, nil, fmt.Errorf("reading known_hosts %s: %w", cfg.KnownHosts, err)
		}
		db = kdb.HostKeyCallback()
		algos = kdb.HostKeyAlgorithms(cfg.HostPort())
	}
	if len(algos) == 0 {
		algos = plainHostKeyAlgos
	}
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := db(hostname, remote, key)
		if err == nil {
			return nil
		}
		host := knownhosts.Normalize(hostname)
		if cert, ok := key.(*ssh.Certificate); ok {
			return fmt.Errorf("host key verification failed for %s: it presented a certificate (key %s, serial %d, signed by CA %s) that %s does not accept: %w\n"+
				"hint: known_hosts needs a @cert-authority line for that CA matching %s, not marked @revoked; check the CA fingerprint out of band",
				host, ssh.FingerprintSHA256(cert.Key), cert.Serial, ssh.FingerprintSHA256(cert.SignatureKey), cfg.KnownHosts, err, host)
		}
		var re *knownhosts.RevokedError
		if errors.As(err, &re) {
			return fmt.Errorf("host key verification failed for %s: key %s is marked @revoked in %s:%d",
				host, ssh.FingerprintSHA256(key), re.Revoked.Filename, re.Revoked.Line)
		}
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			return fmt.Errorf("host key verification failed for %s: %w", host, err)
		}
		he := &HostKeyError{
			Host:           host,
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
