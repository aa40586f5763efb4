// Package plans owns the plan file: its data model, strict decoding with a
// source position on every value, variables, and the structural checks that
// need nothing but the file itself. It performs no I/O beyond reading plan and
// inventory files.
package plans

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/go-multierror"
)

// Pos is a place in a plan or inventory file.
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string {
	switch {
	case p.File == "" && p.Line == 0:
		return "-"
	case p.Line == 0:
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Severity of a finding: errors make a plan invalid, warnings do not.
type Severity int

const (
	Error Severity = iota
	Warning
)

// Finding is one problem found in a plan, with where it is and what to do.
type Finding struct {
	Pos      Pos
	Severity Severity
	Step     string // step id, when the finding is about one step
	Host     string // host, when the finding is about one host
	Msg      string
	Hint     string
}

// Error renders "file:line:col: [warning: ]step "x": msg" and, on the next
// line, "hint: ..." when there is one.
func (f Finding) Error() string {
	var b strings.Builder
	b.WriteString(f.Pos.String())
	b.WriteString(": ")
	if f.Severity == Warning {
		b.WriteString("warning: ")
	}
	if f.Step != "" {
		fmt.Fprintf(&b, "step %q: ", f.Step)
	}
	if f.Host != "" {
		fmt.Fprintf(&b, "host %q: ", f.Host)
	}
	b.WriteString(f.Msg)
	if f.Hint != "" {
		b.WriteString("\n  hint: ")
		b.WriteString(f.Hint)
	}
	return b.String()
}

// Findings is every finding of a check, in any order until sorted.
type Findings []Finding

// Add appends a finding built from a format.
func (fs *Findings) Add(pos Pos, format string, args ...any) *Finding {
	*fs = append(*fs, Finding{Pos: pos, Msg: fmt.Sprintf(format, args...)})
	return &(*fs)[len(*fs)-1]
}

// Warn appends a warning built from a format.
func (fs *Findings) Warn(pos Pos, format string, args ...any) *Finding {
	f := fs.Add(pos, format, args...)
	f.Severity = Warning
	return f
}

// WithHint sets the hint of a finding and returns it, for chaining after Add.
func (f *Finding) WithHint(format string, args ...any) *Finding {
	f.Hint = fmt.Sprintf(format, args...)
	return f
}

// ForStep sets the step id of a finding.
func (f *Finding) ForStep(id string) *Finding { f.Step = id; return f }

// ForHost sets the host of a finding.
func (f *Finding) ForHost(h string) *Finding { f.Host = h; return f }

// Sort orders findings by file, line, column, then message, and removes exact
// duplicates (a rule may reach the same node twice through fan-out).
func (fs Findings) Sort() Findings {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Pos.File != b.Pos.File {
			return a.Pos.File < b.Pos.File
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line < b.Pos.Line
		}
		if a.Pos.Col != b.Pos.Col {
			return a.Pos.Col < b.Pos.Col
		}
		return a.Error() < b.Error()
	})
	out := fs[:0]
	for i, f := range fs {
		if i > 0 && f == fs[i-1] {
			continue
		}
		out = append(out, f)
	}
	return out
}

// Errors counts the findings of severity Error.
func (fs Findings) Errors() int {
	n := 0
	for _, f := range fs {
		if f.Severity == Error {
			n++
		}
	}
	return n
}

// Err returns nil when there is no error-severity finding, else every error
// finding collected in a multierror, each still matchable with errors.As.
func (fs Findings) Err() error {
	var merr *multierror.Error
	for _, f := range fs.Sort() {
		if f.Severity == Error {
			merr = multierror.Append(merr, f)
		}
	}
	return merr.ErrorOrNil()
}

// AsFindings extracts findings from an error produced by Findings.Err.
func AsFindings(err error) Findings {
	var out Findings
	var merr *multierror.Error
	if errors.As(err, &merr) {
		for _, e := range merr.Errors {
			var f Finding
			if errors.As(e, &f) {
				out = append(out, f)
			}
		}
		return out
	}
	var f Finding
	if errors.As(err, &f) {
		out = append(out, f)
	}
	return out
}

// didYouMean returns the closest candidate to s, or "" when none is close.
func didYouMean(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := levenshtein(strings.ToLower(s), strings.ToLower(c))
		if d < bestD {
			best, bestD = c, d
		}
	}
	limit := len(s) / 3
	if limit < 2 {
		limit = 2
	}
	if bestD <= limit {
		return best
	}
	return ""
}

// Suggest renders ` (did you mean "x"?)` or "".
func Suggest(s string, candidates []string) string {
	if m := didYouMean(s, candidates); m != "" {
		return fmt.Sprintf(" (did you mean %q?)", m)
	}
	return ""
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
