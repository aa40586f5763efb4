package engine

import (
	"github.com/etcd-rescue/etcd-rescue/internal/access"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// SSHConfig is the sshx configuration of one host of the plan (see
// [access.SSHConfig], shared with the facts collector).
func SSHConfig(p *plans.Plan, h *plans.Host) (sshx.Config, error) {
	return access.SSHConfig(p, h)
}
