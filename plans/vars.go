package plans

import (
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
)

// Variables are explicit, never a template language: ${vars.NAME},
// ${cluster.name|token|dataDir}, ${member.name|host|peerURL|clientURL},
// ${host.name|address}, ${run.id}. $${ writes a literal ${.
var varRe = regexp.MustCompile(`\$?\$\{([^}]*)\}`)

// KnownVars lists the variable names other than vars.*.
var KnownVars = []string{
	"cluster.name", "cluster.token", "cluster.dataDir",
	"member.name", "member.host", "member.peerURL", "member.clientURL",
	"host.name", "host.address", "run.id",
}

// Lookup resolves a variable name; ok is false for an unknown name.
type Lookup func(name string) (value string, ok bool)

// Expand replaces every ${name} in s; missing lists names lookup did not know.
func Expand(s string, lookup Lookup) (out string, missing []string) {
	out = varRe.ReplaceAllStringFunc(s, func(m string) string {
		if strings.HasPrefix(m, "$$") {
			return m[1:]
		}
		name := strings.TrimSpace(m[2 : len(m)-1])
		v, ok := lookup(name)
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	return out, missing
}

// ExpandShell is Expand for a shell command written in a plan (exec's
// command: and unless:): every value is written as literal text of the
// shell word it stands in, quoted for the quoting around it (none, '...',
// "..."), so no value (a secret, an address, a member name) can change
// the command's structure. A reference where no quoting is safe (a
// here-document, a comment, backquotes, after a backslash) is listed in
// bad with the reason.
func ExpandShell(s string, lookup Lookup) (out string, missing, bad []string) {
	var lx shellquote.Lexer
	var b strings.Builder
	last := 0
	for _, loc := range varRe.FindAllStringIndex(s, -1) {
		lit := s[last:loc[0]]
		lx.Feed(lit)
		b.WriteString(lit)
		last = loc[1]
		m := s[loc[0]:loc[1]]
		if strings.HasPrefix(m, "$$") {
			lx.Feed(m[1:])
			b.WriteString(m[1:])
			continue
		}
		name := strings.TrimSpace(m[2 : len(m)-1])
		v, ok := lookup(name)
		if !ok {
			missing = append(missing, name)
			lx.Feed(m)
			b.WriteString(m)
			continue
		}
		ctx := lx.Context()
		w, ok := shellquote.In(ctx, v)
		if !ok {
			bad = append(bad, name)
			b.WriteString(m)
			continue
		}
		b.WriteString(w)
	}
	lit := s[last:]
	b.WriteString(lit)
	return b.String(), missing, bad
}

// Refs lists the variable names referenced in s.
func Refs(s string) []string {
	var out []string
	for _, m := range varRe.FindAllStringSubmatch(s, -1) {
		if strings.HasPrefix(m[0], "$$") {
			continue
		}
		out = append(out, strings.TrimSpace(m[1]))
	}
	return out
}

// ExpandNode returns a deep copy of n with variables expanded in every scalar
// (positions kept), and findings for names lookup does not know.
func ExpandNode(file string, n *yaml.Node, lookup Lookup) (*yaml.Node, Findings) {
	return expandNode(file, n, lookup, nil)
}

// ExpandParams is ExpandNode for a step's with:, to be decoded into params
// (a pointer to its parameter struct): the values of keys whose field is
// tagged vars:"shell" are shell commands, expanded with [ExpandShell].
func ExpandParams(file string, n *yaml.Node, lookup Lookup, params any) (*yaml.Node, Findings) {
	shell := map[string]bool{}
	for _, f := range FieldsOf(reflect.TypeOf(params)) {
		if f.Shell {
			shell[f.Key] = true
		}
	}
	return expandNode(file, n, lookup, shell)
}

func expandNode(file string, n *yaml.Node, lookup Lookup, shellKeys map[string]bool) (*yaml.Node, Findings) {
	var fs Findings
	// shell is the set of shell keys for the mapping being walked: only
	// with:'s own keys name parameters.
	var walk func(n *yaml.Node, key string, shell map[string]bool) *yaml.Node
	walk = func(n *yaml.Node, key string, shell map[string]bool) *yaml.Node {
		if n == nil {
			return nil
		}
		c := *n
		if n.Kind == yaml.ScalarNode {
			at := Pos{File: file, Line: n.Line, Col: n.Column}
			var v string
			var missing, bad []string
			if key != "" {
				v, missing, bad = ExpandShell(n.Value, lookup)
			} else {
				v, missing = Expand(n.Value, lookup)
			}
			for _, name := range missing {
				f := fs.Add(at, "unresolved variable ${%s}", name)
				f.Hint = varHint(name, lookup)
			}
			for _, name := range bad {
				fs.Add(at, "%s: ${%s} stands in a here-document, a comment, backquotes or after a backslash, where its value cannot be quoted safely", key, name).
					WithHint("write ${%s} outside them, unquoted or in \"...\" or '...': its value is always inserted as literal text of one shell word", name)
			}
			c.Value = v
			return &c
		}
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, k := range n.Content {
			sub := key
			if n.Kind == yaml.MappingNode && i%2 == 1 {
				if kn := resolve(n.Content[i-1]); kn != nil && shell[kn.Value] {
					sub = kn.Value
				}
			}
			c.Content[i] = walk(k, sub, nil)
		}
		if n.Alias != nil {
			c.Alias = walk(n.Alias, key, shell)
		}
		return &c
	}
	out := walk(n, "", shellKeys)
	return out, fs
}

func varHint(name string, lookup Lookup) string {
	if strings.HasPrefix(name, "member.") {
		if _, ok := lookup("member.name"); !ok {
			return "member variables are only defined on hosts that run a member of cluster.members"
		}
	}
	var cands []string
	for _, k := range KnownVars {
		if _, ok := lookup(k); ok {
			cands = append(cands, k)
		}
	}
	sort.Strings(cands)
	if s := Suggest(name, cands); s != "" {
		return strings.TrimSpace(strings.Trim(s, "()"))
	}
	if strings.HasPrefix(name, "vars.") {
		return "define it under vars: in the plan or the inventory"
	}
	return "variables are ${vars.NAME}, " + strings.Join(prefixAll(KnownVars, "${", "}"), ", ")
}

func prefixAll(list []string, pre, post string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = pre + s + post
	}
	return out
}

// Scope builds the lookup for one host of one step. m may be nil (the host
// runs no member); runID is "<run-id>" in a dry-run.
func (p *Plan) Scope(host *Host, m *Member, runID string) Lookup {
	return func(name string) (string, bool) {
		if strings.HasPrefix(name, "vars.") {
			v, ok := p.Vars[strings.TrimPrefix(name, "vars.")]
			return v, ok
		}
		c := p.Cluster
		if c == nil && strings.HasPrefix(name, "cluster.") {
			return "", false
		}
		switch name {
		case "cluster.name":
			return c.Name, true
		case "cluster.token":
			return c.Token, true
		case "cluster.dataDir":
			return c.Layout.DataDir, true
		case "run.id":
			return runID, true
		}
		if host != nil {
			switch name {
			case "host.name":
				return host.Name, true
			case "host.address":
				return host.Address, true
			}
		}
		if m != nil {
			switch name {
			case "member.name":
				return m.Name, true
			case "member.host":
				return m.Host, true
			case "member.peerURL":
				return m.PeerURL, true
			case "member.clientURL":
				return m.ClientURL, true
			}
		}
		return "", false
	}
}

// sectionField is a string field of a plan section (s3:, state:) and its
// key.
type sectionField struct {
	key string
	v   *string
}

// resolveFields expands ${vars.NAME} in each field, in place, and returns
// the names of the variables vars lacks.
func resolveFields(fields []sectionField, vars map[string]string) (missing []string) {
	lookup := func(name string) (string, bool) {
		if !strings.HasPrefix(name, "vars.") {
			return "", false
		}
		v, ok := vars[strings.TrimPrefix(name, "vars.")]
		return v, ok
	}
	for _, f := range fields {
		v, m := Expand(*f.v, lookup)
		*f.v = v
		missing = append(missing, m...)
	}
	return missing
}

// checkFieldRefs adds to fs a finding at each reference in the fields of
// section that is not ${vars.NAME} of a variable of the plan, and returns
// the keys of the fields with one.
func (p *Plan) checkFieldRefs(fs *Findings, section string, fields []sectionField, at func(key string) Pos) map[string]bool {
	unresolved := map[string]bool{}
	for _, f := range fields {
		for _, ref := range Refs(*f.v) {
			name, isVar := strings.CutPrefix(ref, "vars.")
			if _, ok := p.Vars[name]; !isVar || !ok {
				unresolved[f.key] = true
				fs.Add(at(f.key), "%s.%s: unresolved variable ${%s}", section, f.key, ref).
					WithHint("%s: takes ${vars.NAME} only; define it under vars: in the plan or the inventory", section)
			}
		}
	}
	return unresolved
}
