package plans

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Inventory holds the environment-specific part of a plan, so one scenario
// plan runs unchanged against production or the lab.
type Inventory struct {
	Cluster *Cluster          `yaml:"cluster" doc:"the etcd cluster"`
	Hosts   map[string]*Host  `yaml:"hosts" doc:"machines, by name"`
	SSH     *SSH              `yaml:"ssh" doc:"how to reach the hosts"`
	S3      *S3               `yaml:"s3" doc:"the S3-compatible object store of the snapshots"`
	State   *StateStore       `yaml:"state" doc:"the team's shared store of run state and run locks (a management etcd)"`
	Vars    map[string]string `yaml:"vars" doc:"variables; they override the plan's own vars of the same name"`
}

// Load reads a plan file and, if given or named by the plan, its inventory,
// applies defaults and runs the structural checks. A nil plan is returned
// only when the file could not be read or parsed at all.
func Load(path, inventory string) (*Plan, Findings) {
	var fs Findings
	raw, err := readSource(path)
	if err != nil {
		fs.Add(Pos{File: path}, "cannot read plan: %v", err)
		return nil, fs
	}
	return LoadBytes(path, raw, inventory)
}

// LoadBytes is Load for plan bytes already in memory (a plan being
// written, e.g. by `etcd-rescue new`): path names the file they are, or
// will be, read from; relative paths in the plan resolve against its
// directory.
func LoadBytes(path string, raw []byte, inventory string) (*Plan, Findings) {
	var fs Findings
	p, pfs := Parse(path, raw)
	fs = append(fs, pfs...)
	if p == nil {
		return nil, fs
	}
	p.SSHBase = filepath.Dir(path)
	p.ClusterBase = p.SSHBase
	p.S3Base = p.SSHBase
	p.StateBase = p.SSHBase
	invPath := inventory
	if invPath == "" && p.Inventory != "" {
		invPath = LocalFile(filepath.Dir(path), p.Inventory)
	}
	if invPath != "" {
		fs = append(fs, p.mergeInventory(invPath, inventory != "")...)
	}
	p.ApplyDefaults()
	fs = append(fs, p.Check()...)
	return p, fs.Sort()
}

// Parse decodes plan bytes without reading an inventory or applying checks.
func Parse(file string, raw []byte) (*Plan, Findings) {
	root, fs := parseSource(file, raw)
	if root == nil && len(fs) > 0 {
		return nil, fs
	}
	if root == nil {
		fs.Add(Pos{File: file, Line: 1, Col: 1}, "plan file is empty").
			WithHint("start from an example: etcd-rescue validate examples/restore-all-from-snapshot.yaml")
		return nil, fs
	}
	d := &Decoder{File: file, Findings: fs}
	p := &Plan{File: file, Raw: raw}
	d.Decode(root, p)
	if p.Pos.File == "" {
		// The document is not a mapping (a scalar, a list): the decoder said
		// so at its position, and there is no plan to check further.
		return nil, d.Findings
	}
	return p, d.Findings
}

var yamlLineRe = regexp.MustCompile(`line (\d+)(?:, column (\d+))?: (.*)`)

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// Source is a file a plan is made of: its path and its bytes.
type Source struct {
	Path string
	Raw  []byte
}

// LoadSources is Load for a plan and its inventory whose bytes are all in
// memory (a reviewed plan holds them: nothing is read from disk). plan.Path
// and inv.Path name the files the bytes were read from: relative local
// paths in them resolve against their directories, as in Load. inv is nil
// when the plan had no inventory; invFromFlag says whether it was given
// with --inventory (it replaces the plan's own sections) or named by the
// plan's inventory: key. A plan whose inventory: key names a file that inv
// does not hold is a finding, never a read.
func LoadSources(plan Source, inv *Source, invFromFlag bool) (*Plan, Findings) {
	var fs Findings
	p, pfs := Parse(plan.Path, plan.Raw)
	fs = append(fs, pfs...)
	if p == nil {
		return nil, fs
	}
	p.SSHBase = filepath.Dir(plan.Path)
	p.ClusterBase = p.SSHBase
	p.S3Base = p.SSHBase
	p.StateBase = p.SSHBase
	switch {
	case inv != nil:
		if !invFromFlag && p.Inventory != "" {
			if want := LocalFile(filepath.Dir(plan.Path), p.Inventory); want != inv.Path {
				fs.Add(p.KeyPos["inventory"], "inventory: names %s, but the inventory held is %s", want, inv.Path)
			}
		}
		fs = append(fs, p.mergeInventoryBytes(inv.Path, inv.Raw, invFromFlag)...)
	case p.Inventory != "":
		fs.Add(p.KeyPos["inventory"], "inventory: names %s, but no inventory bytes are held with the plan", LocalFile(filepath.Dir(plan.Path), p.Inventory))
	}
	p.ApplyDefaults()
	fs = append(fs, p.Check()...)
	return p, fs.Sort()
}

func (p *Plan) mergeInventory(path string, fromFlag bool) Findings {
	var fs Findings
	raw, err := readSource(path)
	if err != nil {
		at := p.KeyPos["inventory"]
		if fromFlag {
			at = Pos{File: path}
		}
		fs.Add(at, "cannot read inventory %s: %v", path, err)
		return fs
	}
	return p.mergeInventoryBytes(path, raw, fromFlag)
}

// mergeInventoryBytes merges the inventory read from path.
func (p *Plan) mergeInventoryBytes(path string, raw []byte, fromFlag bool) Findings {
	var fs Findings
	if raw == nil {
		raw = []byte{}
	}
	p.InvRaw = raw
	root, pfs := parseSource(path, raw)
	if root == nil && len(pfs) > 0 {
		return pfs
	}
	d := &Decoder{File: path, Findings: pfs}
	var inv Inventory
	if root != nil {
		d.Decode(root, &inv)
	}
	fs = append(fs, d.Findings...)
	take := func(key string, has bool) bool {
		if !has {
			return false
		}
		if _, inPlan := p.KeyPos[key]; inPlan && !fromFlag {
			fs.Add(p.KeyPos[key], "%s: defined both here and in inventory %s", key, path).
				WithHint("keep %s: in one place; --inventory FILE replaces the plan's own sections", key)
			return false
		}
		return true
	}
	if take("cluster", inv.Cluster != nil) {
		p.Cluster = inv.Cluster
		p.ClusterBase = filepath.Dir(path)
	}
	if take("hosts", inv.Hosts != nil) {
		p.Hosts = inv.Hosts
	}
	if take("ssh", inv.SSH != nil) {
		p.SSH = inv.SSH
		p.SSHBase = filepath.Dir(path)
	}
	if take("s3", inv.S3 != nil) {
		p.S3 = inv.S3
		p.S3Base = filepath.Dir(path)
	}
	if take("state", inv.State != nil) {
		p.State = inv.State
		p.StateBase = filepath.Dir(path)
	}
	// The inventory describes the environment, so its vars override the
	// plan's, which are defaults (a snapshot path, a lost peer URL).
	for k, v := range inv.Vars {
		if p.Vars == nil {
			p.Vars = map[string]string{}
		}
		p.Vars[k] = v
	}
	return fs
}

// ApplyDefaults fills in what the decoder could not: the default tags of
// sections that are absent altogether (the decoder applies them to every
// key a present mapping leaves out), host names, and a host's user from
// ssh.user. Load calls it.
func (p *Plan) ApplyDefaults() {
	if p.SSH == nil {
		p.SSH = &SSH{}
		SetDefaults(p.SSH)
	}
	if p.Cluster != nil && p.Cluster.Kubernetes != nil {
		p.Cluster.Kubernetes.applyDefaults(p.Cluster)
	}
	for name, h := range p.Hosts {
		if h == nil {
			h = &Host{}
			SetDefaults(h)
			p.Hosts[name] = h
		}
		h.Name = name
		if h.User == "" {
			h.User = p.SSH.User
		}
	}
}

// Version is a parsed etcd version; Patch is -1 when only major.minor is known.
type Version struct{ Major, Minor, Patch int }

func (v Version) String() string {
	if v.Patch < 0 {
		return fmt.Sprintf("%d.%d", v.Major, v.Minor)
	}
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}

// AtLeast compares against major.minor.patch; an unknown patch counts as the
// newest patch of its minor, so features that arrived in a patch release are
// allowed but flagged by the validator.
func (v Version) AtLeast(major, minor, patch int) bool {
	if v.Major != major {
		return v.Major > major
	}
	if v.Minor != minor {
		return v.Minor > minor
	}
	return v.Patch < 0 || v.Patch >= patch
}

// ParseVersion reads "3.5" or "3.5.17" (a leading v is allowed).
func ParseVersion(s string) (Version, error) {
	parts := strings.Split(strings.TrimPrefix(s, "v"), ".")
	if len(parts) < 2 || len(parts) > 3 {
		return Version{}, fmt.Errorf("etcd version %q is not like 3.5 or 3.5.17", s)
	}
	nums := []int{0, 0, -1}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Version{}, fmt.Errorf("etcd version %q is not like 3.5 or 3.5.17", s)
		}
		nums[i] = n
	}
	v := Version{nums[0], nums[1], nums[2]}
	if v.Major != 3 || v.Minor < 4 || v.Minor > 7 {
		return v, fmt.Errorf("etcd version %s is not supported (3.4 to 3.7 are)", v)
	}
	return v, nil
}

// EtcdVersion is the plan's parsed etcd version (zero when invalid).
func (p *Plan) EtcdVersion() Version {
	if p.Cluster == nil {
		return Version{}
	}
	v, _ := ParseVersion(p.Cluster.EtcdVersion)
	return v
}
