package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// The adapter sorts a failed question by where it failed: the SSH hop of
// the tunnel (host key, login: not trusted; timeout, no route, SSH port
// refused: unreachable) or the member's client URL (refused: not
// listening). An SSH port refused is never "nothing listens on the client
// URL".
func TestClassifyLive(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for name, tc := range map[string]struct {
		err  error
		want string
	}{
		"hop: host key unknown":     {&hopError{host: "h1", err: &sshx.HostKeyError{Host: "h1", KnownHostsFile: "/k"}}, steps.ProbeCouldNotAsk},
		"hop: login refused":        {&hopError{host: "h1", err: errors.New("ssh: handshake failed: ssh: unable to authenticate")}, steps.ProbeCouldNotAsk},
		"hop: timeout":              {&hopError{host: "h1", err: fmt.Errorf("dial: %w", context.DeadlineExceeded)}, steps.ProbeUnreachable},
		"hop: SSH port refused":     {&hopError{host: "h1", err: refused}, steps.ProbeUnreachable},
		"client URL refused":        {fmt.Errorf("connecting to 10.0.0.1:2379: %w", refused), steps.ProbeNotListening},
		"tunnel: far side refused":  {&ssh.OpenChannelError{Reason: ssh.ConnectionFailed, Message: "Connection refused"}, steps.ProbeNotListening},
		"tunnel: far side no route": {&ssh.OpenChannelError{Reason: ssh.ConnectionFailed, Message: "No route to host"}, steps.ProbeUnreachable},
		"an answer: unhealthy":      {errors.New("etcdserver: unhealthy cluster"), steps.ProbeCouldNotAsk},
	} {
		got := classifyLive(tc.err)
		if c := steps.ProbeClass(got); c != tc.want {
			t.Errorf("%s: class %s, want %s (%v)", name, c, tc.want, got)
		}
		trusted := !errors.Is(got, steps.ErrNotTrusted)
		if wantUntrusted := name == "hop: host key unknown" || name == "hop: login refused"; wantUntrusted == trusted {
			t.Errorf("%s: ErrNotTrusted = %v", name, !trusted)
		}
		if got.Error() != tc.err.Error() && !errors.As(tc.err, new(*hopError)) {
			t.Errorf("%s: text changed: %q", name, got.Error())
		}
	}
}
