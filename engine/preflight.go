package engine

import (
	"fmt"
	"sort"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// PrereqError is a missing local prerequisite of a run (an SSH identity
// file, the ssh-agent, a known_hosts file that does not parse, the etcd TLS
// files). It is found before the run is created or resumed: nothing has
// been run and no checkpoint was written.
type PrereqError struct {
	Problems []string
}

func (e *PrereqError) Error() string {
	if len(e.Problems) == 1 {
		return "missing prerequisite: " + e.Problems[0]
	}
	s := fmt.Sprintf("%d missing prerequisites:", len(e.Problems))
	for _, p := range e.Problems {
		s += "\n  " + p
	}
	return s
}

// Preflight checks, on this machine and without any network traffic, what
// an SSH run of p needs: every host's SSH identity, agent and known_hosts,
// and the etcd client TLS files. Every problem is reported at once; the same
// problem shared by several hosts is reported once, naming them.
func Preflight(p *plans.Plan) error {
	byProblem := map[string][]string{}
	var order []string
	add := func(problem, host string) {
		if _, ok := byProblem[problem]; !ok {
			order = append(order, problem)
		}
		if host != "" {
			byProblem[problem] = append(byProblem[problem], host)
		}
	}
	names := make([]string, 0, len(p.Hosts))
	for n := range p.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		cfg, err := SSHConfig(p, p.Hosts[n])
		if err == nil {
			err = cfg.CheckLocal()
		}
		if err != nil {
			add(err.Error(), n)
		}
	}
	if f := tlsFiles(p); f != nil {
		if err := etcdapi.CheckTLS(*f); err != nil {
			add(err.Error(), "")
		}
	}
	if len(order) == 0 {
		return nil
	}
	e := &PrereqError{}
	for _, pr := range order {
		switch hs := byProblem[pr]; len(hs) {
		case 0:
		case 1:
			pr = "host " + hs[0] + ": " + pr
		default:
			pr = "hosts " + strings.Join(hs, ", ") + ": " + pr
		}
		e.Problems = append(e.Problems, pr)
	}
	return e
}
