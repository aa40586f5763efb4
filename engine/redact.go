package engine

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// Redacted replaces a secret value in everything the engine writes.
const Redacted = "<redacted>"

// secretWords mark a plan variable as secret when its name contains one of
// them (case-insensitive). The rule is about vars: only, on purpose:
// cluster.token is etcd's --initial-cluster-token, an identifier written in
// clear into every member's env file, not a credential. TLS key files are
// only ever referred to by path; their contents are never read into a
// command, the state or the journal.
var secretWords = []string{"password", "passwd", "secret", "token", "key", "credential"}

// IsSecretVar reports whether the plan variable name holds a secret.
func IsSecretVar(name string) bool {
	n := strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// Redactor removes secret values from text before it reaches the state, the
// events journal or the progress output.
type Redactor struct {
	// secrets, longest first, so a secret that contains another is replaced
	// whole.
	secrets []string
}

// NewRedactor collects the values of the secret variables of p, the
// credentials of its s3: section and the password of its state: section. Every
// non-empty value counts: over-redacting a log line is harmless, leaking a
// password is not.
func NewRedactor(p *plans.Plan) *Redactor {
	r := &Redactor{}
	if p == nil {
		return r
	}
	seen := map[string]bool{}
	var values []string
	for name, v := range p.Vars {
		if IsSecretVar(name) {
			values = append(values, v)
		}
	}
	// The object store's credentials, whatever the variables that hold
	// them are called, or written in the file (a warning finding).
	if p.S3 != nil {
		r, _ := p.S3.Resolved(p.Vars)
		for _, v := range []string{r.AccessKey, r.SecretKey, r.SessionToken} {
			if len(plans.Refs(v)) == 0 { // an unresolved ${vars.X} is a finding, not a secret
				values = append(values, v)
			}
		}
	}
	// The state store's password, likewise.
	if p.State != nil {
		r, _ := p.State.Resolved(p.Vars)
		if len(plans.Refs(r.Password)) == 0 {
			values = append(values, r.Password)
		}
	}
	for _, v := range values {
		if v == "" || seen[v] {
			continue
		}
		// The value as it is, as a finding's %q writes it, as a shell command holds it (exec quotes every
		// variable it inserts, see plans.ExpandShell), and each form as
		// encoding/json writes it, with and without HTML escaping, for the
		// final pass over serialized bytes (quotes, backslashes, control
		// characters, maybe <>& are escaped there).
		// %q in a finding's message writes the value Go-quoted.
		goq := strconv.Quote(v)
		for _, form := range append([]string{v, goq[1 : len(goq)-1]}, shellquote.Forms(v)...) {
			for _, esc := range append([]string{form}, jsonForms(form)...) {
				if !seen[esc] {
					seen[esc] = true
					r.secrets = append(r.secrets, esc)
				}
			}
		}
	}
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
	return r
}

func jsonForms(v string) []string {
	var out []string
	for _, html := range []bool{true, false} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(html)
		if enc.Encode(v) == nil {
			b := bytes.TrimSpace(buf.Bytes())
			out = append(out, string(b[1:len(b)-1]))
		}
	}
	return out
}

// String returns s with every secret value replaced by <redacted>.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	for _, v := range r.secrets {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, Redacted)
		}
	}
	return s
}

// Bytes is String for serialized output.
func (r *Redactor) Bytes(b []byte) []byte {
	if r == nil || len(r.secrets) == 0 {
		return b
	}
	return []byte(r.String(string(b)))
}

// Empty reports whether there is nothing to redact.
func (r *Redactor) Empty() bool { return r == nil || len(r.secrets) == 0 }

// Findings returns fs with every secret value replaced in each finding's
// text (message, hint, step, host). Every finding about a plan leaves the
// engine through it (Load, LoadBytes, resume's reload, Bind): a value that
// came from a secret variable (a bad duration, an enum, a URL, a path)
// never reaches validate's output, its JSON or an error.
func (r *Redactor) Findings(fs plans.Findings) plans.Findings {
	if r.Empty() {
		return fs
	}
	out := make(plans.Findings, len(fs))
	for i, f := range fs {
		f.Msg, f.Hint, f.Step, f.Host = r.String(f.Msg), r.String(f.Hint), r.String(f.Step), r.String(f.Host)
		out[i] = f
	}
	return out
}
