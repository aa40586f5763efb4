package sshx

import (
	"math/rand"
	"os/exec"
	"strings"
	"testing"
)

// shPrintf runs `sh -c "printf %s QUOTED"` locally and returns what it printed.
func shPrintf(t *testing.T, quoted string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", "printf %s "+quoted).Output()
	if err != nil {
		t.Fatalf("sh -c printf %%s %s: %v", quoted, err)
	}
	return string(out)
}

var quoteSeeds = []string{
	"", "plain", "two words", "'", "''", `'; touch /tmp/sshx-pwned; '`, `"; touch /tmp/sshx-pwned; "`,
	"$(touch /tmp/sshx-pwned)", "`touch /tmp/sshx-pwned`", "a\nb\n", "\\", `\'`, "*", "~", "~root", "$HOME",
	"${IFS}", "a=b", "--flag=value", "-n", "%s%d", "tab\there", "é€\xff\xfe", "!", "#comment", "&", "|", ";",
	"<>", "(x)", "{a,b}", "[ab]", "http://10.0.0.1:2380,http://[::1]:2380",
}

func TestQuoteRoundTripsThroughSh(t *testing.T) {
	for _, s := range quoteSeeds {
		if got := shPrintf(t, Quote(s)); got != s {
			t.Errorf("Quote(%q) = %s printed %q", s, Quote(s), got)
		}
	}
}

// TestQuoteRandom checks the property on random byte strings (NUL excluded: no
// shell word can hold it).
func TestQuoteRandom(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	alphabet := []byte("'\"\\$`!*?[]{}()<>|&;#~= \t\nabcXYZ019-./:%")
	for i := 0; i < 300; i++ {
		b := make([]byte, r.Intn(40))
		for j := range b {
			if r.Intn(4) == 0 {
				b[j] = byte(1 + r.Intn(255))
			} else {
				b[j] = alphabet[r.Intn(len(alphabet))]
			}
		}
		s := string(b)
		if got := shPrintf(t, Quote(s)); got != s {
			t.Fatalf("Quote(%q) = %s printed %q", s, Quote(s), got)
		}
	}
}

func FuzzQuote(f *testing.F) {
	for _, s := range quoteSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			t.Skip("a shell word cannot hold NUL")
		}
		if got := shPrintf(t, Quote(s)); got != s {
			t.Fatalf("Quote(%q) = %s printed %q", s, Quote(s), got)
		}
	})
}

func TestJoinSplitsBackIntoArgv(t *testing.T) {
	argv := []string{"printf", "[%s]", "a b", "", "'", "$(id)", "x=y", "\n"}
	out, err := exec.Command("sh", "-c", Join(argv...)).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "[a b][][']" + "[$(id)][x=y][\n]"
	if string(out) != want {
		t.Fatalf("Join(%q) = %s printed %q, want %q", argv, Join(argv...), out, want)
	}
}

func TestQuoteLeavesSafeWordsReadable(t *testing.T) {
	for in, want := range map[string]string{
		"/var/lib/etcd":                 "/var/lib/etcd",
		"http://10.0.0.1:2380":          "http://10.0.0.1:2380",
		"~/x":                           "'~/x'",
		"it's":                          `'it'\''s'`,
		"":                              "''",
		"--data-dir":                    "--data-dir",
		string([]byte{'a', 0xff}):       "'a\xff'",
		"é":                             "'é'",
		"h1.example.com,h2.example.com": "h1.example.com,h2.example.com",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %q, want %q", in, got, want)
		}
	}
}
