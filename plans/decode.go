package plans

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// NodeDecoder is implemented by types that read themselves from a YAML node
// (a scalar-or-list host selector, a duration). The decoder adds the position.
type NodeDecoder interface {
	DecodeYAMLNode(n *yaml.Node) error
}

// Decoder decodes YAML nodes into Go structs strictly: unknown keys, wrong
// types and missing required fields become findings with positions, and
// decoding goes on so every finding is reported in one pass.
//
// yaml.v3's KnownFields is ignored inside custom unmarshalers (go-yaml #460),
// so this walks the node tree itself. Struct tags:
//
//	yaml:"name"        the key
//	rescue:"required"  must be present and non-empty
//	rescue:"positive"  a number or duration that, when written, must be more than 0
//	enum:"a|b|c"       allowed scalar values
//	default:"..."      value of a key the mapping leaves out (see [SetDefaults])
//	vars:"shell"       a shell command: variables are expanded quoted (see [ExpandShell])
//	doc:"..."          documentation (steps catalog, JSON Schema)
//
// A field `Pos Pos` receives the node's position and a field
// `KeyPos map[string]Pos` the position of each key's value.
type Decoder struct {
	File     string
	Findings Findings
}

// PosOf returns the position of a node in the decoder's file.
func (d *Decoder) PosOf(n *yaml.Node) Pos {
	if n == nil {
		return Pos{File: d.File}
	}
	return Pos{File: d.File, Line: n.Line, Col: n.Column}
}

// Decode decodes n into out (a non-nil pointer). what names the value in
// messages ("step \"x\" parameter").
func (d *Decoder) Decode(n *yaml.Node, out any) {
	d.decode(n, reflect.ValueOf(out).Elem(), "")
}

var (
	posType    = reflect.TypeOf(Pos{})
	keyPosType = reflect.TypeOf(map[string]Pos{})
	nodeType   = reflect.TypeOf(yaml.Node{})
	nodeDecIf  = reflect.TypeOf((*NodeDecoder)(nil)).Elem()
)

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unexpected node"
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return resolve(n.Content[0])
	}
	return n
}

func (d *Decoder) decode(n *yaml.Node, v reflect.Value, field string) {
	n = resolve(n)
	if n == nil {
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecIf) {
		if err := v.Addr().Interface().(NodeDecoder).DecodeYAMLNode(n); err != nil {
			d.Findings.Add(d.PosOf(n), "%s%v", prefix(field), err)
		}
		return
	}
	if v.Type() == nodeType {
		v.Set(reflect.ValueOf(*n))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return
		}
		if v.IsNil() && v.Type().Elem().Kind() == reflect.Struct && n.Kind != yaml.MappingNode {
			// Not a section at all: say so here and leave it absent, so that
			// no later check reads an empty section with no position.
			d.Findings.Add(d.PosOf(n), "%sexpected a mapping, got %s", prefix(field), kindName(n))
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), field)
	case reflect.Struct:
		d.decodeStruct(n, v, field)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.Findings.Add(d.PosOf(n), "%sexpected a list, got %s", prefix(field), kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), 0, len(n.Content))
		for i, c := range n.Content {
			e := reflect.New(v.Type().Elem()).Elem()
			at := fmt.Sprintf("%s[%d]", field, i)
			d.decode(c, e, at)
			if d.absent(c, e, at) {
				continue
			}
			s = reflect.Append(s, e)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.Findings.Add(d.PosOf(n), "%sexpected a mapping, got %s", prefix(field), kindName(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := resolve(n.Content[i]), n.Content[i+1]
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				d.Findings.Add(d.PosOf(k), "duplicate key %q", k.Value)
				continue
			}
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, e, joinField(field, k.Value))
			if r := resolve(val); e.Kind() == reflect.Pointer && e.IsNil() && r != nil && r.Tag != "!!null" {
				continue // not a mapping: the decoder said so; "key:" alone is kept (a host with defaults)
			}
			m.SetMapIndex(reflect.ValueOf(k.Value), e)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.Findings.Add(d.PosOf(n), "%sexpected a string, got %s", prefix(field), kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil || n.Tag == "!!str" {
			d.Findings.Add(d.PosOf(n), "%sexpected true or false, got %s", prefix(field), kindName(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		i, err := strconv.ParseInt(n.Value, 10, 64)
		if n.Kind != yaml.ScalarNode || err != nil || n.Tag == "!!str" {
			d.Findings.Add(d.PosOf(n), "%sexpected a whole number, got %s", prefix(field), kindName(n))
			return
		}
		v.SetInt(i)
	case reflect.Uint64, reflect.Uint, reflect.Uint32:
		i, err := strconv.ParseUint(n.Value, 10, 64)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.Findings.Add(d.PosOf(n), "%sexpected a non-negative whole number, got %s", prefix(field), kindName(n))
			return
		}
		v.SetUint(i)
	default:
		panic(fmt.Sprintf("plans: cannot decode into %s", v.Type()))
	}
}

func prefix(field string) string {
	if field == "" {
		return ""
	}
	return field + ": "
}

func joinField(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// Fields describes the decodable fields of a struct type, in declaration order.
type Field struct {
	Key      string
	Index    int
	Required bool
	Positive bool
	Shell    bool // vars:"shell": a shell command; variables are expanded quoted (see ExpandShell)
	Enum     []string
	Doc      string
	Default  string
	Type     reflect.Type
}

// FieldsOf lists the YAML fields of a struct type.
func FieldsOf(t reflect.Type) []Field {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []Field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key := strings.Split(sf.Tag.Get("yaml"), ",")[0]
		if key == "" || key == "-" || !sf.IsExported() {
			continue
		}
		f := Field{Key: key, Index: i, Doc: sf.Tag.Get("doc"), Default: sf.Tag.Get("default"), Type: sf.Type}
		f.Required = strings.Contains(sf.Tag.Get("rescue"), "required")
		f.Positive = strings.Contains(sf.Tag.Get("rescue"), "positive")
		f.Shell = sf.Tag.Get("vars") == "shell"
		if e := sf.Tag.Get("enum"); e != "" {
			f.Enum = strings.Split(e, "|")
		}
		out = append(out, f)
	}
	return out
}

func (d *Decoder) decodeStruct(n *yaml.Node, v reflect.Value, field string) {
	if n.Kind != yaml.MappingNode {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			n = &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
		} else {
			d.Findings.Add(d.PosOf(n), "%sexpected a mapping, got %s", prefix(field), kindName(n))
			return
		}
	}
	t := v.Type()
	if f, ok := t.FieldByName("Pos"); ok && f.Type == posType {
		v.FieldByIndex(f.Index).Set(reflect.ValueOf(d.PosOf(n)))
	}
	var keyPos map[string]Pos
	if f, ok := t.FieldByName("KeyPos"); ok && f.Type == keyPosType {
		keyPos = map[string]Pos{}
		v.FieldByIndex(f.Index).Set(reflect.ValueOf(keyPos))
	}
	fields := FieldsOf(t)
	byKey := map[string]Field{}
	var keys []string
	for _, f := range fields {
		byKey[f.Key] = f
		keys = append(keys, f.Key)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		f, ok := byKey[k.Value]
		if !ok {
			fd := d.Findings.Add(d.PosOf(k), "%sunknown key %q%s", prefix(field), k.Value, Suggest(k.Value, keys))
			if Suggest(k.Value, keys) == "" {
				sorted := append([]string(nil), keys...)
				sort.Strings(sorted)
				fd.WithHint("allowed keys here: %s", strings.Join(sorted, ", "))
			}
			continue
		}
		if seen[k.Value] {
			d.Findings.Add(d.PosOf(k), "%sduplicate key %q", prefix(field), k.Value)
			continue
		}
		seen[k.Value] = true
		if keyPos != nil {
			keyPos[k.Value] = d.PosOf(resolve(val))
		}
		rv := resolve(val)
		if len(f.Enum) > 0 && rv != nil && rv.Kind == yaml.ScalarNode && !contains(f.Enum, rv.Value) {
			d.Findings.Add(d.PosOf(rv), "%s%s: %q is not one of %s%s", prefix(field), k.Value, rv.Value,
				strings.Join(f.Enum, ", "), Suggest(rv.Value, f.Enum))
			continue
		}
		before := len(d.Findings)
		d.decode(val, v.Field(f.Index), joinField(field, k.Value))
		if fv := v.Field(f.Index); f.Positive && len(d.Findings) == before && fv.IsZero() {
			fd := d.Findings.Add(d.PosOf(rv), "%s must be more than 0", joinField(field, k.Value))
			if f.Default != "" {
				fd.WithHint("leave %s out for the default, %s", k.Value, f.Default)
			}
		}
	}
	setDefaults(v, seen)
	for _, f := range fields {
		if f.Required && !seen[f.Key] {
			d.Findings.Add(d.PosOf(n), "%smissing required key %q", prefix(field), f.Key)
		} else if f.Required && v.Field(f.Index).Kind() == reflect.String && v.Field(f.Index).String() == "" && seen[f.Key] {
			p := d.PosOf(n)
			if keyPos != nil {
				p = keyPos[f.Key]
			}
			d.Findings.Add(p, "%s%s must not be empty", prefix(field), f.Key)
		}
	}
}

// absent reports whether e, decoded from list item n, is a nil pointer: an
// item written empty ("-" alone; a finding says so here) or one that was not
// a mapping (the decoder said so). Lists keep no nil item, so no check ever
// reads a member or step that is not there.
func (d *Decoder) absent(n *yaml.Node, e reflect.Value, field string) bool {
	if e.Kind() != reflect.Pointer || !e.IsNil() {
		return false
	}
	if r := resolve(n); r != nil && r.Kind == yaml.ScalarNode && r.Tag == "!!null" {
		d.Findings.Add(d.PosOf(r), "%s: empty list item", field)
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Duration is a Go duration written as "90s", "2m", "1h30m".
type Duration time.Duration

func (d *Duration) DecodeYAMLNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration like \"90s\" or \"2m\", got %s", kindName(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("bad duration %q: use a number with a unit, like \"90s\" or \"2m\"", n.Value)
	}
	if v < 0 {
		return fmt.Errorf("duration %q must not be negative", n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns the duration as time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// Strings is a list that may also be written as a single scalar.
type Strings []string

func (s *Strings) DecodeYAMLNode(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		*s = Strings{n.Value}
		return nil
	case yaml.SequenceNode:
		var out Strings
		for _, c := range n.Content {
			c = resolve(c)
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("expected a name or a list of names, got %s in the list", kindName(c))
			}
			out = append(out, c.Value)
		}
		*s = out
		return nil
	}
	return fmt.Errorf("expected a name or a list of names, got %s", kindName(n))
}
