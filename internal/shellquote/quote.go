// Package shellquote is the one place where values become shell words. Every
// value from a plan reaches a remote shell through Quote or Join, so a plan
// value can never inject shell syntax.
package shellquote

import (
	"regexp"
	"strings"
)

// assignment matches words a shell would read as NAME=value when they stand
// first in a command; they are quoted wherever they stand.
var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// Quote returns s as one POSIX shell word. Plain words are left as they are,
// so dry-run output stays readable.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if isPlain(s) && !assignment.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes each word and joins them with spaces.
func Join(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}

func isPlain(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("-_./:,=@%+", r):
		default:
			return false
		}
	}
	// a leading '=' or '~' or '-' alone is fine for sh; '=' inside is fine
	return !strings.HasPrefix(s, "~")
}
