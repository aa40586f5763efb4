package shellquote

import "strings"

// Context is the quoting in force at a point of a shell command being
// written: where a value is inserted into a command template, it says how
// the value must be written to stay one literal piece of a word.
type Context int

const (
	// Unquoted: plain shell text (also inside $(...)).
	Unquoted Context = iota
	// InSingle: inside '...'.
	InSingle
	// InDouble: inside "...".
	InDouble
	// Unsupported: a here-document, a comment, backquotes, or right after
	// a backslash: no quoting is both safe and what the writer meant.
	Unsupported
)

func (c Context) String() string {
	return [...]string{"unquoted", "inside single quotes", "inside double quotes", "unsupported"}[c]
}

// Lexer follows the quoting of a POSIX sh command fed to it piece by
// piece, enough to place values safely: single and double quotes,
// backslashes, $(...) nested in either, comments; backquotes and
// here-documents are recognised, not followed (Unsupported from there on).
type Lexer struct {
	stack   []frame
	single  bool
	escape  bool
	comment bool
	sticky  bool // a here-document or backquote began: no safe context after it
	prev    byte
	fedOnce bool
}

type frame struct {
	double bool // "..." (else $(...))
	depth  int  // open ( inside a $(...)
}

// Feed advances the lexer over literal command text.
func (l *Lexer) Feed(s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		l.step(c)
		l.prev = c
		l.fedOnce = true
	}
}

func (l *Lexer) inDouble() bool { return len(l.stack) > 0 && l.stack[len(l.stack)-1].double }

func (l *Lexer) step(c byte) {
	switch {
	case l.escape:
		l.escape = false
		return
	case l.single:
		if c == '\'' {
			l.single = false
		}
		return
	case l.comment:
		if c == '\n' {
			l.comment = false
		}
		return
	}
	if l.inDouble() {
		switch c {
		case '\\':
			l.escape = true
		case '"':
			l.stack = l.stack[:len(l.stack)-1]
		case '(':
			if l.prev == '$' {
				l.stack = append(l.stack, frame{})
			}
		case '`':
			l.sticky = true
		}
		return
	}
	atWordStart := !l.fedOnce || strings.IndexByte(" \t\n;&|()<>", l.prev) >= 0
	switch c {
	case '\\':
		l.escape = true
	case '\'':
		l.single = true
	case '"':
		l.stack = append(l.stack, frame{double: true})
	case '#':
		if atWordStart {
			l.comment = true
		}
	case '`':
		l.sticky = true
	case '<':
		if l.prev == '<' {
			l.sticky = true // a here-document
		}
	case '(':
		if l.prev == '$' {
			l.stack = append(l.stack, frame{})
		} else if len(l.stack) > 0 {
			l.stack[len(l.stack)-1].depth++
		}
	case ')':
		if len(l.stack) > 0 {
			if top := &l.stack[len(l.stack)-1]; top.depth > 0 {
				top.depth--
			} else {
				l.stack = l.stack[:len(l.stack)-1]
			}
		}
	}
}

// Context is the quoting in force after the text fed so far.
func (l *Lexer) Context() Context {
	switch {
	case l.sticky, l.comment, l.escape:
		return Unsupported
	case l.single:
		return InSingle
	case l.inDouble():
		return InDouble
	}
	return Unquoted
}

// In writes v so that, inserted where ctx holds, the shell reads it as
// literal text that stays within one word; ok is false for Unsupported.
func In(ctx Context, v string) (string, bool) {
	switch ctx {
	case Unquoted:
		return Quote(v), true
	case InSingle:
		return strings.ReplaceAll(v, "'", `'\''`), true
	case InDouble:
		r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`")
		return r.Replace(v), true
	}
	return "", false
}

// Forms lists every way In may write v (and each of them written again
// inside single quotes, as a command passed to sh -c is): a redactor must
// find a secret in all of them.
func Forms(v string) []string {
	var out []string
	for _, c := range []Context{Unquoted, InSingle, InDouble} {
		w, _ := In(c, v)
		out = append(out, w)
		w2, _ := In(InSingle, w)
		out = append(out, w2)
	}
	return out
}
