package plans

import (
	"strings"
	"testing"
)

func TestParseFindings(t *testing.T) {
	cases := map[string]struct {
		src  string
		want []string
	}{
		"unknown top key with suggestion": {"version: 1\nname: x\nstep: []\n", []string{`3:1: unknown key "step" (did you mean "steps"?)`, `1:1: missing required key "steps"`}},
		"unknown key without suggestion":  {"version: 1\nname: x\nsteps: []\nzzz: 1\n", []string{`4:1: unknown key "zzz"`}},
		"wrong type":                      {"version: one\nname: x\nsteps: []\n", []string{`1:10: version: expected a whole number, got "one"`}},
		"list expected":                   {"version: 1\nname: x\nsteps: {a: 1}\n", []string{`3:8: steps: expected a list, got a mapping`}},
		"enum with suggestion":            {"version: 1\nname: x\nsteps: []\ncluster: {name: c, etcdVersion: '3.5', clientAccess: ssh-tunel, members: []}\n", []string{`4:54: cluster: clientAccess: "ssh-tunel" is not one of ssh-tunnel, direct (did you mean "ssh-tunnel"?)`}},
		"duplicate key":                   {"version: 1\nname: x\nname: y\nsteps: []\n", []string{`3:1: duplicate key "name"`}},
		"empty required":                  {"version: 1\nname: ''\nsteps: []\n", []string{`2:7: name must not be empty`}},
		"bad duration":                    {"version: 1\nname: x\nsteps:\n  - {id: a, type: exec, timeout: 5}\n", []string{`4:34: steps[0].timeout: bad duration "5"`}},
		"on scalar or list":               {"version: 1\nname: x\nsteps:\n  - {id: a, type: exec, on: {x: 1}}\n", []string{`4:29: steps[0].on: expected a name or a list of names, got a mapping`}},
		"every finding at once":           {"version: x\nnme: y\nsteps: 3\n", []string{`1:10: version:`, `2:1: unknown key "nme"`, `3:8: steps: expected a list`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, fs := Parse("p.yaml", []byte(tc.src))
			var got []string
			for _, f := range fs.Sort() {
				got = append(got, strings.TrimPrefix(strings.SplitN(f.Error(), "\n", 2)[0], "p.yaml:"))
			}
			for _, w := range tc.want {
				ok := false
				for _, g := range got {
					ok = ok || strings.HasPrefix(g, w)
				}
				if !ok {
					t.Errorf("missing %q in:\n  %s", w, strings.Join(got, "\n  "))
				}
			}
		})
	}
}

func TestStepPositions(t *testing.T) {
	src := "version: 1\nname: x\nsteps:\n  - id: a\n    type: exec\n    needs: [b]\n"
	p, fs := Parse("p.yaml", []byte(src))
	if len(fs) != 0 {
		t.Fatal(fs)
	}
	s := p.Steps[0]
	if s.Pos.Line != 4 || s.Pos.Col != 5 {
		t.Errorf("step at %v, want 4:5", s.Pos)
	}
	if at := s.At("needs"); at.Line != 6 || at.Col != 12 {
		t.Errorf("needs at %v, want 6:12", at)
	}
}

func TestExpand(t *testing.T) {
	p := &Plan{Vars: map[string]string{"snap": "/b/s.db"}, Cluster: &Cluster{Name: "c", Token: "tok"}}
	h := &Host{Name: "h1", Address: "10.0.0.1"}
	m := &Member{Name: "e1", Host: "h1", PeerURL: "http://10.0.0.1:2380"}
	look := p.Scope(h, m, "R1")
	got, missing := Expand("${vars.snap} ${member.name}@${host.address} ${run.id} $${literal} ${cluster.token} ${nope}", look)
	if got != "/b/s.db e1@10.0.0.1 R1 ${literal} tok ${nope}" {
		t.Errorf("Expand = %q", got)
	}
	if len(missing) != 1 || missing[0] != "nope" {
		t.Errorf("missing = %v", missing)
	}
	if _, missing := Expand("${member.name}", p.Scope(h, nil, "R1")); len(missing) != 1 {
		t.Errorf("member vars must be unknown on a host without a member")
	}
}

func TestResolveOn(t *testing.T) {
	p := &Plan{
		Hosts:   map[string]*Host{"h1": {}, "h2": {}, "h3": {}, "op": {}},
		Cluster: &Cluster{Members: []*Member{{Name: "e1", Host: "h1"}, {Name: "e2", Host: "h2"}, {Name: "e3", Host: "h3"}}},
	}
	for in, want := range map[string]string{"all": "h1,h2,h3,op", "members": "h1,h2,h3", "e2": "h2", "op": "op"} {
		got, err := p.ResolveOn(Strings{in})
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("ResolveOn(%s) = %v, %v; want %s", in, got, err, want)
		}
	}
	if _, err := p.ResolveOn(Strings{"e4"}); err == nil || !strings.Contains(err.Error(), `did you mean "e1"?`) {
		t.Errorf("ResolveOn(e4) error = %v", err)
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]string{"3.5": "3.5", "v3.6.16": "3.6.16", "3.4.27": "3.4.27"} {
		v, err := ParseVersion(in)
		if err != nil || v.String() != want {
			t.Errorf("ParseVersion(%s) = %v, %v", in, v, err)
		}
	}
	for _, bad := range []string{"3", "3.8", "2.3", "3.x", "3.5.1.2"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%s) accepted", bad)
		}
	}
	v, _ := ParseVersion("3.5.9")
	if v.AtLeast(3, 5, 10) || !v.AtLeast(3, 4, 27) {
		t.Errorf("AtLeast wrong for %v", v)
	}
}
