package sshx

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrConnectionLost matches errors of commands whose SSH connection (or channel)
	// ended before an exit status arrived: the command may or may not have run, so it
	// must be probed, never blindly repeated. The next call reconnects.
	ErrConnectionLost = errors.New("ssh connection lost")
	// ErrTimeout matches errors of commands stopped by their [RunOpts.Timeout].
	ErrTimeout = errors.New("command timed out")
	// ErrClosed is returned by calls on a closed [Client] or [Pool].
	ErrClosed = errors.New("ssh client closed")
)

// ConnLostError is returned when the connection dropped while a command was running
// (or the channel closed without an exit status). errors.Is(err, ErrConnectionLost)
// holds.
type ConnLostError struct {
	Host string
	// Err is what the transport reported.
	Err error
}

func (e *ConnLostError) Error() string {
	return fmt.Sprintf("host %s: ssh connection lost while a command was running, its outcome is unknown: %v\n"+
		"hint: probe the remote state before repeating the command; the next call reconnects", e.Host, e.Err)
}

// Is makes errors.Is(err, ErrConnectionLost) true.
func (e *ConnLostError) Is(target error) bool { return target == ErrConnectionLost }

// Unwrap returns the transport error.
func (e *ConnLostError) Unwrap() error { return e.Err }

// KnownKey is a host key found in a known_hosts file.
type KnownKey struct {
	File        string
	Line        int
	Type        string
	Fingerprint string
}

// HostKeyError is returned when the host presented a key that known_hosts does not
// hold: either the host is unknown (Changed false) or its key differs from the one
// recorded (Changed true).
type HostKeyError struct {
	// Host is the name the key was checked for, in known_hosts form
	// ("host" or "[host]:port").
	Host string
	// Address and Port are those dialled.
	Address string
	Port    int
	// KeyType and Fingerprint (SHA256:...) describe the key the server presented.
	KeyType     string
	Fingerprint string
	// Changed is true when known_hosts holds other keys for this host.
	Changed bool
	// Known lists the keys recorded for the host (empty when unknown).
	Known []KnownKey
	// KnownHostsFile is the file consulted.
	KnownHostsFile string
}

func (e *HostKeyError) Error() string {
	var b strings.Builder
	keyscan := fmt.Sprintf("ssh-keyscan -p %d -t %s %s >> %s", e.Port, shortKeyType(e.KeyType), e.Address, e.KnownHostsFile)
	if e.Changed {
		fmt.Fprintf(&b, "host key verification failed for %s: HOST KEY CHANGED: it presented %s key %s but %s records",
			e.Host, e.KeyType, e.Fingerprint, e.KnownHostsFile)
		for i, k := range e.Known {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %s %s (%s:%d)", k.Type, k.Fingerprint, k.File, k.Line)
		}
		b.WriteString("; this is a reinstalled host or a man-in-the-middle attack\n")
		fmt.Fprintf(&b, "hint: if the change is expected, check the new fingerprint out of band "+
			"(on the host: ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub), remove the old entry with "+
			"ssh-keygen -R %s -f %s, then add the new one: %s",
			shortKeyType(e.KeyType), Quote(e.Host), e.KnownHostsFile, keyscan)
		return b.String()
	}
	fmt.Fprintf(&b, "host key verification failed for %s: unknown host, not in %s; it presented %s key %s\n",
		e.Host, e.KnownHostsFile, e.KeyType, e.Fingerprint)
	fmt.Fprintf(&b, "hint: check that fingerprint out of band (on the host: ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub), then: %s\n",
		shortKeyType(e.KeyType), keyscan)
	fmt.Fprintf(&b, "hint: if your hosts have certificates signed by an SSH CA, add instead a line to %s: @cert-authority HOST-PATTERN CA-PUBLIC-KEY",
		e.KnownHostsFile)
	return b.String()
}

// shortKeyType maps an SSH key type to ssh-keyscan's -t name.
func shortKeyType(t string) string {
	switch {
	case strings.Contains(t, "ed25519"):
		return "ed25519"
	case strings.HasPrefix(t, "ecdsa"):
		return "ecdsa"
	case strings.Contains(t, "rsa"):
		return "rsa"
	}
	return t
}
