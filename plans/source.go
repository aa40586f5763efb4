package plans

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Limits on what a plan or inventory file may cost to read. A plan is a few
// kilobytes; these bounds only stop input that would exhaust the machine
// (a huge or endless file, an alias bomb) and turn it into a finding.
const (
	// MaxFileSize is the largest plan or inventory file read.
	MaxFileSize = 8 << 20
	// MaxDepth is the deepest nesting of a document, aliases expanded.
	MaxDepth = 200
	// aliasFloor and aliasRatio bound the nodes reached through aliases and
	// merge keys: aliasFloor plus aliasRatio per node written in the file,
	// and never more than aliasCap (like yaml.v3's own alias-ratio guard,
	// which a node-tree walk does not get).
	aliasFloor = 10_000
	aliasRatio = 100
	aliasCap   = 1_000_000
)

// readSource reads a plan or inventory file, at most MaxFileSize bytes of
// it: a larger file (or a device that never ends) is refused, not read.
func readSource(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPathErr(err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, errors.New("is a directory")
	}
	raw, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, unwrapPathErr(err)
	}
	return raw, nil
}

// parseSource turns file bytes into one YAML document node that every later
// walk can afford: a text file of bounded size, aliases whose expansion is
// bounded, no alias to its own anchor, and merge keys (<<) already merged
// into their mappings. A nil node comes with a finding, except for an empty
// file (nil node, no finding).
func parseSource(file string, raw []byte) (*yaml.Node, Findings) {
	var fs Findings
	if len(raw) > MaxFileSize {
		fs.Add(Pos{File: file, Line: 1, Col: 1}, "file is larger than %d MiB: not a plan or inventory", MaxFileSize>>20).
			WithHint("a plan is a few kilobytes of YAML; check the file name")
		return nil, fs
	}
	if at, what := notText(raw); at.Line > 0 {
		at.File = file
		fs.Add(at, "not a YAML text file: %s", what).
			WithHint("plans and inventories are UTF-8 text; check the file name")
		return nil, fs
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		fs = append(fs, yamlErrFinding(file, raw, err))
		return nil, fs
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, nil
	}
	b := &bounder{file: file, done: map[*yaml.Node]bool{}, size: map[*yaml.Node]int64{}, height: map[*yaml.Node]int{}}
	b.limit = min(aliasCap, aliasFloor+aliasRatio*countNodes(&root, 0))
	b.visit(&root, 0)
	if b.found != nil {
		return nil, Findings{*b.found}
	}
	return &root, b.soft
}

// notText finds the first byte that cannot be in a YAML text file: a NUL or
// another control character, or invalid UTF-8.
func notText(raw []byte) (Pos, string) {
	line, col := 1, 1
	for i := 0; i < len(raw); {
		r, n := utf8.DecodeRune(raw[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			return Pos{Line: line, Col: col}, fmt.Sprintf("byte 0x%02x is not UTF-8", raw[i])
		case r == '\n':
			line, col = line+1, 0
		case r < 0x20 && r != '\t' && r != '\r', r == 0x7f:
			return Pos{Line: line, Col: col}, fmt.Sprintf("control character 0x%02x", r)
		}
		i += n
		col++
	}
	return Pos{}, ""
}

// bounder walks a document once, in document order, each node once: it
// counts the nodes written in the file, adds up the size of what every alias
// and merge key brings in (an anchor is complete before any alias to it, so
// its size is known by then), measures the depth with aliases expanded, and
// merges every << into its mapping. Its cost is linear in the file, whatever
// the aliases would expand to.
type bounder struct {
	file     string
	done     map[*yaml.Node]bool
	size     map[*yaml.Node]int64 // nodes, aliases expanded (saturating)
	height   map[*yaml.Node]int   // levels, aliases expanded
	viaAlias int64                // nodes reached through aliases and merge keys so far
	limit    int64                // most nodes viaAlias may reach
	found    *Finding             // the first problem; the walk stops there
	soft     Findings             // problems the walk goes on after (a bad merge key, dropped)
}

// countNodes counts the nodes written in the file (not through aliases),
// no deeper than the walk below goes.
func countNodes(n *yaml.Node, d int) int64 {
	c := int64(1)
	if d > MaxDepth {
		return c
	}
	for _, k := range n.Content {
		c += countNodes(k, d+1)
	}
	return c
}

const sizeSat = int64(1) << 50

func addSat(a, b int64) int64 {
	if a+b > sizeSat {
		return sizeSat
	}
	return a + b
}

func (b *bounder) pos(n *yaml.Node) Pos { return Pos{File: b.file, Line: n.Line, Col: n.Column} }

func (b *bounder) fail(n *yaml.Node, hint, format string, args ...any) {
	if b.found == nil {
		f := Finding{Pos: b.pos(n), Msg: fmt.Sprintf(format, args...), Hint: hint}
		b.found = &f
	}
}

// note counts n nodes reached through the alias (or merge key) at.
func (b *bounder) note(at *yaml.Node, n int64) {
	b.viaAlias = addSat(b.viaAlias, n)
	if b.viaAlias > b.limit {
		b.fail(at, "each alias (*name) and merge key (<<) copies its anchor; nested anchors multiply: write the values out, or use fewer levels of anchors",
			"alias expansion exceeds %d nodes: an alias bomb?", b.limit)
	}
}

// visit computes size and height of n (at depth d) and merges its << keys.
func (b *bounder) visit(n *yaml.Node, d int) {
	if b.found != nil || b.done[n] {
		return
	}
	if d > MaxDepth {
		b.fail(n, "plans are a few levels deep; look for nested anchors and aliases", "nesting deeper than %d levels", MaxDepth)
		return
	}
	if n.Kind == yaml.AliasNode {
		t := n.Alias
		if t == nil || !b.done[t] {
			b.fail(n, "an anchor cannot contain an alias to itself", "alias *%s refers to its own anchor", n.Value)
			return
		}
		if d+b.height[t] > MaxDepth {
			b.fail(n, "plans are a few levels deep; look for nested anchors and aliases", "alias *%s: nesting deeper than %d levels with it expanded", n.Value, MaxDepth)
			return
		}
		b.note(n, b.size[t])
		b.size[n], b.height[n] = b.size[t], b.height[t]
		b.done[n] = true
		return
	}
	for _, c := range n.Content {
		b.visit(c, d+1)
		if b.found != nil {
			return
		}
	}
	if n.Kind == yaml.MappingNode {
		b.merge(n, d)
		if b.found != nil {
			return
		}
	}
	size, height := int64(1), 0
	for _, c := range n.Content {
		size = addSat(size, b.size[c])
		height = max(height, b.height[c])
	}
	b.size[n], b.height[n] = size, height+1
	b.done[n] = true
}

func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Tag == "!!merge"
}

// merge replaces the << keys of mapping m by the pairs they bring in, as
// YAML's merge key type says: a key written in m wins over a merged one,
// and of several merged mappings (<<: [*a, *b]) the earlier wins. Merged
// pairs are the anchor's own nodes, so they keep the anchor's positions.
func (b *bounder) merge(m *yaml.Node, d int) {
	has := false
	explicit := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := resolve(m.Content[i])
		if isMergeKey(k) {
			has = true
		} else if k != nil && k.Kind == yaml.ScalarNode {
			explicit[k.Value] = true
		}
	}
	if !has {
		return
	}
	taken := map[string]bool{}
	var out []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if !isMergeKey(resolve(k)) {
			out = append(out, k, v)
			continue
		}
		var sources []*yaml.Node
		switch rv := resolve(v); {
		case rv != nil && rv.Kind == yaml.MappingNode:
			sources = []*yaml.Node{v}
		case rv != nil && rv.Kind == yaml.SequenceNode:
			sources = rv.Content
		default:
			b.soft.Add(b.pos(v), "merge key << needs a mapping or a list of mappings, got %s", kindName(rv)).
				WithHint("write <<: *anchor or <<: [*a, *b], where each anchor names a mapping")
			continue
		}
		for _, s := range sources {
			rs := resolve(s)
			if rs == nil || rs.Kind != yaml.MappingNode {
				b.soft.Add(b.pos(s), "merge key <<: each item must be a mapping, got %s", kindName(rs)).
					WithHint("write <<: *anchor or <<: [*a, *b], where each anchor names a mapping")
				continue
			}
			var brought int64
			for j := 0; j+1 < len(rs.Content); j += 2 {
				mk := resolve(rs.Content[j])
				if mk != nil && mk.Kind == yaml.ScalarNode && (explicit[mk.Value] || taken[mk.Value]) {
					continue
				}
				if mk != nil && mk.Kind == yaml.ScalarNode {
					taken[mk.Value] = true
				}
				if d+1+b.height[rs.Content[j+1]] > MaxDepth {
					b.fail(s, "plans are a few levels deep; look for nested anchors and aliases", "merge key <<: nesting deeper than %d levels with it expanded", MaxDepth)
					return
				}
				out = append(out, rs.Content[j], rs.Content[j+1])
				brought = addSat(brought, addSat(b.size[rs.Content[j]], b.size[rs.Content[j+1]]))
			}
			if b.note(s, brought); b.found != nil {
				return
			}
		}
	}
	m.Content = out
}

// yamlErrFinding turns a yaml.v3 error into a finding. yaml.v3 reports where
// the enclosing block starts; a tab used as indentation is pointed at
// itself.
func yamlErrFinding(file string, raw []byte, err error) Finding {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		col := 1
		if m[2] != "" {
			col, _ = strconv.Atoi(m[2])
		}
		if tl, tc := indentTab(raw, line); tl > 0 {
			return Finding{Pos: Pos{File: file, Line: tl, Col: tc}, Msg: "YAML syntax error: a tab in the indentation",
				Hint: "indent with spaces: YAML does not allow tabs there"}
		}
		return Finding{Pos: Pos{File: file, Line: line, Col: col}, Msg: "YAML syntax error in the block starting here: " + m[3],
			Hint: "check the indentation and quoting of the lines in this block"}
	}
	return Finding{Pos: Pos{File: file, Line: 1, Col: 1}, Msg: "YAML syntax error: " + msg}
}

// indentTab finds the first tab used as indentation on or after line from
// (the block yaml.v3 names): a tab before the first other character of a
// line that holds more than a comment, outside a block scalar.
func indentTab(raw []byte, from int) (line, col int) {
	lines := bytes.Split(raw, []byte("\n"))
	blockIndent := -1 // indentation of the line that opened a block scalar (| or >) being read
	for i, l := range lines {
		lead := len(l) - len(bytes.TrimLeft(l, " \t"))
		rest := bytes.TrimRight(l[lead:], " \t\r")
		if blockIndent >= 0 {
			spaces := len(l) - len(bytes.TrimLeft(l, " "))
			if len(rest) == 0 || spaces > blockIndent {
				continue // text of the block scalar, where a tab is a tab
			}
			blockIndent = -1
		}
		if len(rest) == 0 || rest[0] == '#' {
			continue
		}
		if t := bytes.IndexByte(l[:lead], '\t'); t >= 0 && i+1 >= from {
			return i + 1, t + 1
		}
		if blockScalarStart(rest) {
			blockIndent = lead
		}
	}
	return 0, 0
}

// blockScalarStart reports whether a line ends in a block scalar indicator
// ("key: |", "- >-"), so the lines below it are text, where tabs are fine.
func blockScalarStart(l []byte) bool {
	if c := bytes.Index(l, []byte(" #")); c >= 0 {
		l = bytes.TrimRight(l[:c], " \t")
	}
	f := bytes.Fields(l)
	if len(f) == 0 {
		return false
	}
	last := f[len(f)-1]
	return len(last) > 0 && (last[0] == '|' || last[0] == '>') && len(f) > 1
}
