package uploadtmp

import (
	"context"
	"path"
	"strings"
	"testing"
)

// Every temporary name matches the glob Prefix + "*" + Suffix, the one a
// step removes stale uploads with, and sits beside the target.
func TestNameMatchesPrefixGlob(t *testing.T) {
	for _, target := range []string{"/var/tmp/etcd-rescue/snapshot.db", "/a b/x.db", "rel.db"} {
		n := Name(target, "0123abcd")
		ok, err := path.Match(globEscape(Prefix(target))+"*"+Suffix, n)
		if err != nil || !ok {
			t.Errorf("%s: %s does not match %s*%s (%v)", target, n, Prefix(target), Suffix, err)
		}
		if path.Dir(n) != path.Dir(target) {
			t.Errorf("%s: temp %s is not in the target's directory", target, n)
		}
		if !strings.HasPrefix(path.Base(n), ".") {
			t.Errorf("%s: temp %s is not hidden", target, n)
		}
	}
}

func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}

// A run's temporary names carry its run id and match only its own glob:
// a run's cleanup never removes another run's upload in flight.
func TestRunNames(t *testing.T) {
	const target = "/var/tmp/etcd-rescue/snapshot.db"
	a := NameFor(WithRun(context.Background(), "20261202T030000Z-aaaa"), target, "tok1")
	b := NameFor(WithRun(context.Background(), "20261202T030001Z-bbbb"), target, "tok2")
	if !strings.Contains(a, "20261202T030000Z-aaaa") {
		t.Errorf("%s lacks the run id", a)
	}
	globA := globEscape(RunPrefix(target, "20261202T030000Z-aaaa")) + "*" + Suffix
	if ok, _ := path.Match(globA, a); !ok {
		t.Errorf("%s does not match its run's glob %s", a, globA)
	}
	if ok, _ := path.Match(globA, b); ok {
		t.Errorf("another run's %s matches %s", b, globA)
	}
	if n := NameFor(context.Background(), target, "tok"); n != Name(target, "tok") {
		t.Errorf("untagged name %s, want %s", n, Name(target, "tok"))
	}
}
