package engine

import (
	"fmt"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// Bind re-decodes every target's parameters with the real run id in place
// of the dry-run placeholder. Paths such as wipe-dir's DIR.rescue-<run-id>
// and restore's temp dir embed the run id, so apply must bind the id the
// run was created with, and resume the SAME id again: a resumed restore
// then finds its own temp dir, and a moved-aside dir is never moved twice
// under two names.
//
// Bind changes c in place; a bound Compiled is for one run only.
func (c *Compiled) Bind(runID string) error {
	if runID == "" || runID == DryRunID {
		return fmt.Errorf("bind: %q is not a run id", runID)
	}
	var fs plans.Findings
	for _, n := range c.Nodes {
		s := n.Step
		for _, t := range n.Targets {
			params := n.Type.New()
			if s.HasWith() {
				expanded, vfs := plans.ExpandParams(c.Plan.File, &s.With, c.Plan.Scope(t.Host, t.Member, runID), params)
				fs = append(fs, vfs...)
				d := &plans.Decoder{File: c.Plan.File}
				d.Decode(expanded, params)
				fs = append(fs, d.Findings...)
			} else {
				plans.SetDefaults(params)
			}
			t.Params = params
		}
	}
	if fs.Errors() > 0 {
		return fmt.Errorf("binding run id %s: %w", runID, NewRedactor(c.Plan).Findings(fs).Sort().Err())
	}
	return nil
}
