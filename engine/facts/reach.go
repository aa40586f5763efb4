package facts

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
)

// ReachOf sorts an SSH connect error into a Reach. Host key problems come
// first: such a host was never trusted, so nothing it said is used.
func ReachOf(err error) Reach {
	if err == nil {
		return ReachOK
	}
	var hk *sshx.HostKeyError
	if errors.As(err, &hk) {
		if hk.Changed {
			return ReachHostKeyChanged
		}
		return ReachHostKeyUnknown
	}
	msg := err.Error()
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReachRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.As(err, &dnsErr):
		return ReachNoRoute
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return ReachTimeout
	case strings.Contains(msg, "unable to authenticate"), strings.Contains(msg, "no supported methods remain"):
		return ReachAuthFailed
	case strings.Contains(msg, "host key verification failed"):
		// a certificate or @revoked key refused by hostKeyCheck: not trusted
		return ReachHostKeyUnknown
	}
	return ReachError
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// sudoFailed reports whether a command's failure is sudo refusing to run
// it (sudo -n with a password required, or no sudo at all).
func sudoFailed(stderr string) bool {
	return strings.Contains(stderr, "sudo:") || strings.Contains(stderr, "sudo: not found") ||
		strings.Contains(stderr, "a password is required")
}

// oneLine shortens an error to its first line (hints follow on later ones).
func oneLine(err error) string {
	if err == nil {
		return ""
	}
	l, _, _ := strings.Cut(err.Error(), "\n")
	return l
}

// Network reports whether r is a host that could not be reached over the
// network (timeout, no route, SSH port refused), as opposed to one that
// answered and was not trusted or refused us (host key, login, sudo).
func (r Reach) Network() bool {
	return r == ReachTimeout || r == ReachNoRoute || r == ReachRefused
}

// Trust reports whether r is a host that answered but could not be
// trusted or logged into: host key unknown or changed, login or sudo
// refused.
func (r Reach) Trust() bool {
	return r == ReachHostKeyUnknown || r == ReachHostKeyChanged || r == ReachAuthFailed || r == ReachSudoFailed
}
