package scaffold

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The plan is written by hand, not with yaml.Marshal, so that it keeps its
// comments and reads like the examples: one flow mapping per with:, names
// bare where YAML allows, the rest double-quoted.

// step is one step of the generated plan.
type step struct {
	comments []string // lines above the step, without "# "
	gap      bool     // a blank line before the step (groups of steps)
	id       string
	typ      string
	desc     string
	on       []string // one name: on: NAME; more: on: [A, B]
	needs    []string
	with     []kv
}

// kv is one with: parameter; v is already YAML (see str, list, flag).
type kv struct{ k, v string }

// doc is the whole plan file.
type doc struct {
	header      []string // comment lines at the top, without "# "
	name        string
	description string
	inventory   string
	inventoryC  string   // comment after inventory:
	vars        []kv     // vars: NAME: VALUE, in this order
	varsC       []string // comment lines above vars:
	steps       []*step
	tail        []string // comment lines after the last step (a step left out, and why)
}

func (d *doc) bytes() []byte {
	var b bytes.Buffer
	for _, l := range d.header {
		comment(&b, "", l)
	}
	b.WriteString("version: 1\n")
	fmt.Fprintf(&b, "name: %s\n", str(d.name))
	if d.description != "" {
		fmt.Fprintf(&b, "description: %s\n", text(d.description))
	}
	if d.inventoryC != "" {
		comment(&b, "", d.inventoryC)
	}
	fmt.Fprintf(&b, "inventory: %s\n", str(d.inventory))
	if len(d.vars) > 0 {
		for _, c := range d.varsC {
			comment(&b, "", c)
		}
		b.WriteString("vars:\n")
		for _, v := range d.vars {
			fmt.Fprintf(&b, "  %s: %s\n", v.k, v.v)
		}
	}
	b.WriteString("steps:\n")
	for i, s := range d.steps {
		if s.gap && i > 0 {
			b.WriteString("\n")
		}
		for _, c := range s.comments {
			comment(&b, "  ", c)
		}
		fmt.Fprintf(&b, "  - id: %s\n", str(s.id))
		fmt.Fprintf(&b, "    type: %s\n", s.typ)
		if s.desc != "" {
			fmt.Fprintf(&b, "    description: %s\n", text(s.desc))
		}
		switch len(s.on) {
		case 0:
		case 1:
			fmt.Fprintf(&b, "    on: %s\n", str(s.on[0]))
		default:
			fmt.Fprintf(&b, "    on: %s\n", list(s.on))
		}
		if len(s.needs) > 0 {
			fmt.Fprintf(&b, "    needs: %s\n", list(s.needs))
		}
		if len(s.with) > 0 {
			parts := make([]string, len(s.with))
			for i, p := range s.with {
				parts[i] = p.k + ": " + p.v
			}
			fmt.Fprintf(&b, "    with: {%s}\n", strings.Join(parts, ", "))
		}
	}
	for _, c := range d.tail {
		comment(&b, "  ", c)
	}
	return b.Bytes()
}

// comment writes text as comment lines; a line break in text (from a
// note) starts a new comment line, so it can never end the comment.
func comment(b *bytes.Buffer, indent, text string) {
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimRight(l, " \t\r")
		if l == "" {
			b.WriteString(indent + "#\n")
			continue
		}
		b.WriteString(indent + "# " + l + "\n")
	}
}

var bareRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_./-]*$`)

// str is s as a YAML scalar that reads back as the same string, in a block
// or inside a flow collection.
func str(s string) string {
	if bareRe.MatchString(s) {
		switch strings.ToLower(s) {
		case "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~":
		default:
			return s
		}
	}
	return strconv.Quote(s)
}

var textRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9 ,.;()'/_-]*[A-Za-z0-9.)]$`)

// text is a sentence as a YAML scalar in block context (a description):
// plain when that reads back the same, else quoted.
func text(s string) string {
	if textRe.MatchString(s) && !strings.Contains(s, "  ") {
		return s
	}
	return str(s)
}

// list is a flow sequence of strings.
func list(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = str(n)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// flag is a YAML boolean.
func flag(b bool) string { return strconv.FormatBool(b) }
