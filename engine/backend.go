package engine

import (
	"context"
	"net"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// Backend is what a run needs from the world: a runner per host and the
// etcd API. NewSSHBackend is the real one; tests pass fakes.
type Backend interface {
	Shell(host string) (steps.Runner, error)
	Etcd(ctx context.Context) (steps.Etcd, error)
	Close() error
}

// markKey carries a step-host's process marker to the runner.
type markKey struct{}

// MarkEnv is the environment variable that tags every remote process a
// step-host starts, so a later session can find leftovers of an attempt
// whose engine died (kill -9 leaves a running etcdutl behind: its SSH
// session is gone but the process is not).
const MarkEnv = "ETCD_RESCUE_MARK"

// mark is the value of MarkEnv for a step-host of this run.
func (w *walker) mark(n *Node, host string) string {
	return w.runID + "/" + runstate.Key(n.ID(), host)
}

// Reaper is implemented by backends that can kill what an earlier attempt
// of a step-host left running on a host.
type Reaper interface {
	Reap(ctx context.Context, host, mark string) (killed int, err error)
}

// HostDialer is implemented by backends that reach services on a host's
// network (the Kubernetes API servers) as cluster.clientAccess says.
type HostDialer interface {
	DialHost(ctx context.Context, host, addr string) (net.Conn, error)
}
