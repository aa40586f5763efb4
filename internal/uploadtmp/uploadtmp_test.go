package uploadtmp

import (
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
