package plans

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSourceLimits: input that would cost the machine (too big, not text,
// endless aliases, too deep) is one finding with a position, found fast.
func TestSourceLimits(t *testing.T) {
	bomb := "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
	for i, prev := 1, "a"; i < 12; i++ {
		name := string(rune('a' + i))
		bomb += name + ": &" + name + " [" + strings.Repeat("*"+prev+",", 9) + "*" + prev + "]\n"
		prev = name
	}
	deep := "x: &d0 [1]\n"
	for i := 1; i < 60; i++ {
		deep += "x" + string(rune('0'+i%10)) + string(rune('a'+i/10)) + ": &d" + strconv.Itoa(i) + " [[[[*d" + strconv.Itoa(i-1) + "]]]]\n"
	}
	cases := map[string]struct {
		src  string
		want string
	}{
		"billion laughs":    {bomb, "alias expansion exceeds"},
		"merge bomb":        {"a: &a {p: [x,x,x,x,x,x,x,x,x,x]}\n" + mergeBomb(), "alias expansion exceeds"},
		"deep aliases":      {deep, "nesting deeper than 200 levels"},
		"self alias":        {"a: &s {b: *s}\n", "1:11: alias *s refers to its own anchor"},
		"nul byte":          {"version: 1\nname: \x00x\n", "2:7: not a YAML text file: control character 0x00"},
		"invalid utf-8":     {"version: 1\n# \xff\n", "2:3: not a YAML text file: byte 0xff is not UTF-8"},
		"tab":               {"version: 1\nsteps:\n  - id: a\n\t  type: exec\n", "4:1: YAML syntax error: a tab in the indentation"},
		"tab in a scalar":   {"a: |\n  x\n  \ty\nb:\n  - c\n \t- d\n", "6:2: YAML syntax error: a tab in the indentation"},
		"too big":           {strings.Repeat("# x\n", MaxFileSize/4+1), "1:1: file is larger than 8 MiB"},
		"merge not mapping": {"a: {<<: [1]}\n", "1:10: merge key <<: each item must be a mapping"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, fs := parseSource("f.yaml", []byte(tc.src))
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v", d)
			}
			if len(fs) == 0 {
				t.Fatal("no finding")
			}
			got := strings.TrimPrefix(fs[0].Error(), "f.yaml:")
			if !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// mergeBomb nests merge keys whose merged values are aliases of lists.
func mergeBomb() string {
	s := ""
	prev := "a"
	for i := 1; i < 12; i++ {
		name := "m" + strconv.Itoa(i)
		s += name + ": &" + name + " {"
		for k := 0; k < 10; k++ {
			s += "k" + strconv.Itoa(k) + ": *" + prev + ", "
		}
		s += "<<: *" + prev + "}\n"
		prev = name
	}
	return s
}

// TestReadSourceBounded: Load reads at most MaxFileSize+1 bytes of a file,
// however large it is or claims to be.
func TestReadSourceBounded(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(10 << 30); err != nil { // sparse: 10 GiB, no disk used
		t.Skip(err)
	}
	f.Close()
	raw, err := readSource(big)
	if err != nil || len(raw) != MaxFileSize+1 {
		t.Fatalf("read %d bytes, %v", len(raw), err)
	}
	p, fs := Load(big, "")
	if p != nil || len(fs) != 1 || !strings.Contains(fs[0].Msg, "larger than 8 MiB") || fs[0].Pos.Line != 1 {
		t.Fatalf("got %v %v", p, fs)
	}
	_, fs = Load(t.TempDir(), "")
	if len(fs) != 1 || !strings.Contains(fs[0].Msg, "is a directory") {
		t.Fatalf("directory: %v", fs)
	}
}

// TestMergeKeys: << merges as YAML says, wherever a mapping is decoded:
// keys written in the mapping win, and earlier merged mappings win over
// later ones; merged values keep the anchor's positions.
func TestMergeKeys(t *testing.T) {
	src := `version: 1
name: m
hosts:
  a: &a {address: 10.0.0.1, port: 2222, user: alice}
  b: {<<: *a, address: 10.0.0.2}
  c:
    <<: [{user: carol}, *a]
    port: 22
  d: {user: dave, <<: *a}
vars: {<<: {x: merged, y: merged}, y: own}
steps:
  - &s {id: one, type: approve}
  - {<<: *s, id: two}
`
	p, fs := Parse("m.yaml", []byte(src))
	if len(fs) > 0 {
		t.Fatal(fs)
	}
	want := map[string][3]string{
		"a": {"10.0.0.1", "2222", "alice"},
		"b": {"10.0.0.2", "2222", "alice"},
		"c": {"10.0.0.1", "22", "carol"},
		"d": {"10.0.0.1", "2222", "dave"},
	}
	for name, w := range want {
		h := p.Hosts[name]
		if h == nil || h.Address != w[0] || strconv.Itoa(h.Port) != w[1] || h.User != w[2] {
			t.Errorf("host %s: %+v, want %v", name, h, w)
		}
	}
	if p.Vars["x"] != "merged" || p.Vars["y"] != "own" {
		t.Errorf("vars: %v", p.Vars)
	}
	if len(p.Steps) != 2 || p.Steps[1].ID != "two" || p.Steps[1].Type != "approve" {
		t.Fatalf("steps: %+v", p.Steps)
	}
	if got := p.Hosts["b"].KeyPos["port"]; got.Line != 4 {
		t.Errorf("merged port at %v, want the anchor's line 4", got)
	}
}
