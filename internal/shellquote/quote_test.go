package shellquote

import (
	"os/exec"
	"testing"
)

func TestQuoteRoundTrip(t *testing.T) {
	cases := map[string]string{
		"plain":     "/var/lib/etcd",
		"space":     "a b",
		"quote":     "it's",
		"injection": "'; touch /tmp/pwned; '",
		"subst":     "$(id) `id` ${HOME}",
		"empty":     "",
		"newline":   "a\nb",
		"tilde":     "~root",
		"glob":      "*",
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := exec.Command("sh", "-c", "printf %s "+Quote(s)).Output()
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != s {
				t.Fatalf("Quote(%q) round-tripped to %q", s, out)
			}
		})
	}
}

func TestAssignmentWordsQuoted(t *testing.T) {
	if got := Quote("X=1"); got != "'X=1'" {
		t.Errorf("Quote(X=1) = %s; a leading NAME= would be an assignment", got)
	}
	if got := Quote("--initial-cluster=a"); got != "--initial-cluster=a" {
		t.Errorf("Quote(--initial-cluster=a) = %s", got)
	}
}

func TestJoin(t *testing.T) {
	got := Join("mv", "/var/lib/etcd", "/var/lib/etcd old")
	want := "mv /var/lib/etcd '/var/lib/etcd old'"
	if got != want {
		t.Fatalf("Join = %q, want %q", got, want)
	}
}

func FuzzQuote(f *testing.F) {
	for _, s := range []string{"a", "it's", "$(x)", "", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, r := range s {
			if r == 0 {
				return // a C string cannot carry NUL; the shell never sees it
			}
		}
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != s {
			t.Fatalf("Quote(%q) round-tripped to %q", s, out)
		}
	})
}
