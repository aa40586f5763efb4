package engine

import (
	"github.com/etcd-rescue/etcd-rescue/internal/access"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// PrereqError is a missing local prerequisite of a run (an SSH identity
// file, the ssh-agent, a known_hosts file that does not parse, the etcd TLS
// files). It is found before the run is created or resumed: nothing has
// been run and no checkpoint was written.
type PrereqError = access.PrereqError

// Preflight checks, on this machine and without any network traffic, what
// an SSH run of p needs (see [access.Preflight]).
func Preflight(p *plans.Plan) error { return access.Preflight(p) }
