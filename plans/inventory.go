package plans

import (
	"path/filepath"
)

// LoadInventory reads an inventory file alone (cluster:, hosts:, ssh:,
// s3:, state:, vars:) as a plan without steps, for the commands that look at a live
// cluster (facts, diagnose, new). Defaults are applied and the cluster,
// hosts and ssh sections get the same structural checks as in a plan. A
// nil plan is returned only when the file could not be read or parsed.
func LoadInventory(path string) (*Plan, Findings) {
	p := &Plan{Version: 1, Name: "inventory " + filepath.Base(path), File: path}
	p.SSHBase = filepath.Dir(path)
	p.ClusterBase = p.SSHBase
	p.S3Base = p.SSHBase
	p.StateBase = p.SSHBase
	fs := p.mergeInventory(path, true)
	if p.InvRaw == nil {
		return nil, fs.Sort()
	}
	if p.Cluster == nil && p.Hosts == nil && p.SSH == nil && p.S3 == nil && p.State == nil && p.Vars == nil && fs.Errors() > 0 {
		// not a mapping at all: the decoder said where
		return nil, fs.Sort()
	}
	p.ApplyDefaults()
	checks := p.Check()
	for _, f := range checks {
		// Check's "missing required key" findings point at the (empty)
		// plan: say the inventory instead.
		if f.Pos.File == "" {
			f.Pos = Pos{File: path, Line: 1, Col: 1}
		}
		fs = append(fs, f)
	}
	return p, fs.Sort()
}
