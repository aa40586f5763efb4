package plans

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExpandShellRunsLiteral runs exec-style templates through sh with
// values full of shell syntax: each value arrives as the literal text it
// is, in the word the template put it in, and nothing it holds runs.
func TestExpandShellRunsLiteral(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	mark := filepath.Join(dir, "pwned")
	values := []string{
		"x; touch " + mark,
		"it's $(touch " + mark + ") `touch " + mark + "` \"q\" \\ end",
		"a\nb && touch " + mark,
		"'\"'\"",
		"",
		"$HOME ${HOME} *",
	}
	// Each template prints its arguments as [arg]; V marks where the value
	// must appear, literally.
	templates := map[string]string{
		`printf '[%s]' ${vars.v}`:                                   "[V]",
		`printf '[%s]' --name=${vars.v}`:                            "[--name=V]",
		`printf '[%s]' '${vars.v}'`:                                 "[V]",
		`printf '[%s]' 'pre ${vars.v} post'`:                        "[pre V post]",
		`printf '[%s]' "${vars.v}"`:                                 "[V]",
		`printf '[%s]' "a $HOME-less ${vars.v} z"`:                  "[a " + os.Getenv("HOME") + "-less V z]",
		`printf '[%s]' "$(printf '%s' "${vars.v}")"`:                "[V]",
		`printf '[%s]' "$(printf '%s' '${vars.v}')"`:                "[V]",
		"printf '[%s]' x # it's a comment\nprintf '[%s]' ${vars.v}": "[x][V]",
	}
	for tpl, want := range templates {
		for _, v := range values {
			out, missing, bad := ExpandShell(tpl, func(string) (string, bool) { return v, true })
			if len(missing)+len(bad) > 0 {
				t.Fatalf("%q: missing %v bad %v", tpl, missing, bad)
			}
			got, err := exec.Command("sh", "-c", out).Output()
			w := strings.ReplaceAll(want, "V", v)
			if err != nil || string(got) != w {
				t.Errorf("template %q, value %q:\n ran  %s\n got  %q (%v)\n want %q", tpl, v, out, got, err, w)
			}
		}
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("a value ran as shell")
	}
}

// TestExpandShellRefuses: where no quoting is both safe and meant (a
// here-document, a comment, backquotes, after a backslash), a variable is
// refused, not inserted.
func TestExpandShellRefuses(t *testing.T) {
	for _, tpl := range []string{
		"cat <<EOF\n${vars.v}\nEOF",
		"true # ${vars.v}",
		"echo `echo ${vars.v}`",
		`echo \${vars.v}`,
		`echo "\${vars.v}"`,
	} {
		_, _, bad := ExpandShell(tpl, func(string) (string, bool) { return "x", true })
		if len(bad) != 1 {
			t.Errorf("%q: not refused", tpl)
		}
	}
	out, _, bad := ExpandShell("echo $${vars.v} a#${vars.v}", func(string) (string, bool) { return "x y", true })
	if len(bad) > 0 || out != "echo ${vars.v} a#'x y'" {
		t.Errorf("got %q %v", out, bad)
	}
}
