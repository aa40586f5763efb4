package plans

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A team's shared state store (a management etcd cluster, never the one
// being repaired) is named by a URL, on the command line (--state) or in
// the state: section of a plan or an inventory:
//
//	etcd://HOST:PORT[,HOST:PORT...]/PREFIX[?cacert=F&cert=F&key=F&user=U&lockTTL=15s]
//
// The password is never part of it: it comes from state.password (a
// ${vars.NAME}) or the environment (StatePasswordEnv).

// StatePasswordEnv is the environment variable that holds the password of
// the state store's user when no state.password names one.
const StatePasswordEnv = "ETCD_RESCUE_STATE_PASSWORD"

// The bounds of a state store's lock TTL: below MinStateLockTTL a
// keep-alive that is a little late loses the lock; above MaxStateLockTTL a
// crashed holder blocks the team for too long.
const (
	MinStateLockTTL = 3 * time.Second
	MaxStateLockTTL = 10 * time.Minute
)

// stateURLQuery are the query keys a state URL takes.
var stateURLQuery = []string{"cacert", "cert", "key", "user", "lockTTL"}

const stateURLForm = "etcd://HOST:PORT[,HOST:PORT]/PREFIX[?cacert=FILE&cert=FILE&key=FILE&user=USER&lockTTL=15s]"

// StateURL is a parsed state store URL: no credentials other than the
// user's name, which is not a secret.
type StateURL struct {
	Endpoints []string // host:port, at least one
	// Prefix is the key prefix of the store, the URL's path without its
	// leading and trailing "/": "etcd-rescue", "teams/a".
	Prefix string
	// TLS files (cacert=, cert=, key=), as written: the caller resolves
	// relative ones (see Plan.StateConfig).
	CA, Cert, Key string
	User          string
	LockTTL       time.Duration // 0: the store's default
}

// String is the URL without credentials or query, for messages:
// "etcd://h1:p1,h2:p2/prefix".
func (u StateURL) String() string {
	return "etcd://" + strings.Join(u.Endpoints, ",") + "/" + u.Prefix
}

// StateURLError is a state URL that does not parse. Its text never holds a
// password, even one the URL held.
type StateURLError struct {
	Msg  string
	Hint string
}

func (e *StateURLError) Error() string {
	if e.Hint == "" {
		return e.Msg
	}
	return e.Msg + "\nhint: " + e.Hint
}

// urlSecrets are the parts of raw that may be a password, longest first:
// whatever lies between the first ":" and the last "@" after the scheme
// (a password may hold "@", "/", "?" or "#" when it was not escaped), and
// the password of the authority as a URL parser reads it. Every message
// about raw has them replaced (over-masking a malformed URL is harmless).
func urlSecrets(raw string) []string {
	rest := raw
	if _, r, ok := strings.Cut(raw, "://"); ok {
		rest = r
	}
	var out []string
	add := func(s string) {
		if at := strings.LastIndex(s, "@"); at >= 0 {
			if c := strings.Index(s[:at], ":"); c >= 0 && at > c+1 {
				out = append(out, s[c+1:at])
			}
		}
	}
	add(rest)
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		add(rest[:i])
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// hasUserinfoPassword: raw's text after the scheme has user:password@, as
// opposed to an "@" further on after HOST:PORT (a prefix or a query value).
// The ":" that follows a host is followed by a port and then the end, ",",
// "/", "?" or "#"; the ":" of a password by anything else.
func hasUserinfoPassword(rest string) bool {
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return false
	}
	c := strings.Index(rest[:at], ":")
	if c < 0 {
		return false
	}
	return !portStartRe.MatchString(rest[c+1:])
}

var portStartRe = regexp.MustCompile(`^[0-9]+([,/?#]|$)`)

// redactURL replaces the possible passwords of raw (urlSecrets) in s.
func redactURL(raw, s string) string {
	for _, x := range urlSecrets(raw) {
		s = strings.ReplaceAll(s, x, "xxxxx")
	}
	return s
}

// safeStateURL is raw for messages: possible passwords replaced, the
// query and fragment left out.
func safeStateURL(raw string) string {
	s := redactURL(raw, raw)
	rest, scheme := s, ""
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, rest = s[:i+3], s[i+3:]
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	return scheme + rest
}

// ParseStateURL reads a state store URL (see StateURL). Its errors are
// *StateURLError, with a hint, and never hold a password the URL held.
func ParseStateURL(raw string) (StateURL, error) {
	u, err := parseStateURL(raw)
	if err == nil && (u.Cert == "") != (u.Key == "") {
		return StateURL{}, &StateURLError{Msg: fmt.Sprintf("state URL %q: cert= and key= go together", safeStateURL(raw)),
			Hint: "a client certificate needs its key: give both cert= and key=, or neither"}
	}
	return u, err
}

// parseStateURL is ParseStateURL without the check that cert= and key= go
// together: a state: section may give one of them in its own keys.
func parseStateURL(raw string) (StateURL, error) {
	var u StateURL
	bad := func(hint, format string, args ...any) (StateURL, error) {
		return StateURL{}, &StateURLError{Msg: redactURL(raw, fmt.Sprintf(format, args...)), Hint: redactURL(raw, hint)}
	}
	passwordHint := "the password comes from " + StatePasswordEnv + " or state.password (a ${vars.NAME}), never from the URL"
	shown := safeStateURL(raw)
	if strings.TrimSpace(raw) == "" {
		return bad("write "+stateURLForm, "state URL is empty")
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return bad("write "+stateURLForm, "state URL %q is not etcd://HOST:PORT/PREFIX", shown)
	}
	switch strings.ToLower(scheme) {
	case "etcd":
	case "etcds", "https":
		return bad("write etcd://HOST:PORT/PREFIX?cacert=FILE (and cert=, key= for a client certificate): TLS is on when a CA or a certificate is named",
			"state URL %q: scheme %s is not supported", shown, scheme)
	default:
		return bad("write "+stateURLForm, "state URL %q: scheme must be etcd, not %q", shown, scheme)
	}
	if hasUserinfoPassword(rest) {
		return bad(passwordHint, "state URL %q holds a password", shown)
	}
	if i := strings.Index(rest, "#"); i >= 0 {
		return bad("write "+stateURLForm, "state URL %q has a fragment (#...)", shown)
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	auth, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndex(auth, "@"); i >= 0 {
		info := auth[:i]
		auth = auth[i+1:]
		if strings.Contains(info, ":") {
			return bad(passwordHint, "state URL %q holds a password", shown)
		}
		name, err := url.PathUnescape(info)
		if err == nil && strings.Contains(name, ":") {
			// an escaped user:password
			return bad(passwordHint, "state URL %q holds a password", strings.Replace(shown, info+"@", "xxxxx@", 1))
		}
		if err != nil || name == "" {
			return bad("write etcd://USER@HOST:PORT/PREFIX, or user=USER in the query", "state URL %q: bad user name before @", shown)
		}
		u.User = name
	}
	if auth == "" {
		return bad("write "+stateURLForm, "state URL %q names no host", shown)
	}
	for _, ep := range strings.Split(auth, ",") {
		host, port, err := splitHostPort(ep)
		if err != nil {
			return bad("every endpoint is HOST:PORT, e.g. 127.0.0.1:2379 or [::1]:2379; several are separated by commas",
				"state URL %q: endpoint %q: %v", shown, ep, err)
		}
		u.Endpoints = append(u.Endpoints, joinHostPort(host, port))
	}
	prefix := strings.Trim(path, "/")
	if prefix == "" {
		return bad("name the key prefix of this tool's keys in the store, e.g. etcd://127.0.0.1:2379/etcd-rescue",
			"state URL %q has no key prefix", shown)
	}
	prefix, err := url.PathUnescape(prefix)
	if err != nil {
		return bad("escape special characters of the prefix as %XX", "state URL %q: bad prefix: %v", shown, err)
	}
	if strings.Contains(prefix, "@") {
		return bad("write the prefix without @ (an @ there is taken for the end of a user:password)", "state URL %q: the prefix holds an @", shown)
	}
	if strings.Contains(prefix, "//") {
		return bad("write the prefix without empty segments, e.g. teams/a", "state URL %q: prefix %q has an empty segment", shown, prefix)
	}
	u.Prefix = prefix
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return bad("write the query as key=value pairs separated by &: "+strings.Join(stateURLQuery, ", "), "state URL %q: bad query", shown)
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vs := q[k]
		switch k {
		case "cacert", "cert", "key", "user", "lockTTL":
		case "password", "pass", "passwd":
			return bad(passwordHint, "state URL %q: query key %s is not allowed", shown, k)
		default:
			return bad("the query takes "+strings.Join(stateURLQuery, ", ")+Suggest(k, stateURLQuery),
				"state URL %q: unknown query key %q", shown, k)
		}
		if len(vs) != 1 || vs[0] == "" {
			return bad("give "+k+"= once, with a value", "state URL %q: query key %s must have one value", shown, k)
		}
		v := vs[0]
		switch k {
		case "cacert":
			u.CA = v
		case "cert":
			u.Cert = v
		case "key":
			u.Key = v
		case "user":
			if u.User != "" && u.User != v {
				return bad("name the user once, before @ or as user=", "state URL %q names two users", shown)
			}
			u.User = v
		case "lockTTL":
			d, err := ParseStateLockTTL(v)
			if err != nil {
				return bad(err.(*StateURLError).Hint, "state URL %q: %s", shown, err.(*StateURLError).Msg)
			}
			u.LockTTL = d
		}
	}
	return u, nil
}

// ParseStateLockTTL reads a lock TTL (a Go duration between
// MinStateLockTTL and MaxStateLockTTL).
func ParseStateLockTTL(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, &StateURLError{Msg: fmt.Sprintf("lockTTL %q is not a duration", s), Hint: "write a Go duration, e.g. 15s or 1m"}
	}
	if d < MinStateLockTTL || d > MaxStateLockTTL {
		return 0, &StateURLError{Msg: fmt.Sprintf("lockTTL %s is out of range", d),
			Hint: fmt.Sprintf("between %s (a late keep-alive would lose the lock) and %s (a crashed holder blocks the cluster's runs that long)", MinStateLockTTL, MaxStateLockTTL)}
	}
	return d, nil
}

// splitHostPort splits HOST:PORT; the port is required and numeric.
func splitHostPort(ep string) (host string, port int, err error) {
	if ep == "" {
		return "", 0, fmt.Errorf("empty")
	}
	var p string
	if strings.HasPrefix(ep, "[") {
		end := strings.Index(ep, "]")
		if end < 0 {
			return "", 0, fmt.Errorf("missing ]")
		}
		host, rest := ep[1:end], ep[end+1:]
		if !strings.HasPrefix(rest, ":") {
			return "", 0, fmt.Errorf("no port")
		}
		p = rest[1:]
		ep = host
	} else {
		i := strings.LastIndex(ep, ":")
		if i < 0 {
			return "", 0, fmt.Errorf("no port")
		}
		p = ep[i+1:]
		ep = ep[:i]
		if strings.Contains(ep, ":") {
			return "", 0, fmt.Errorf("an IPv6 address goes in brackets")
		}
	}
	if ep == "" {
		return "", 0, fmt.Errorf("no host")
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 1 to 65535", p)
	}
	return ep, n, nil
}

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// StateStore is the state: section of a plan or an inventory: the team's
// shared store of run state and run locks, used when no --state is given.
// TLS files are relative to the file that defines state: (Plan.StateBase).
type StateStore struct {
	URL      string `yaml:"url" rescue:"required" doc:"etcd://HOST:PORT[,HOST:PORT]/PREFIX of the management etcd (never the cluster being repaired); its query may name cacert=, cert=, key=, user=, lockTTL=, which the keys below override"`
	CA       string `yaml:"ca" doc:"PEM bundle of the CAs that sign the store's certificate, on the operator machine (relative to the file that defines state:); TLS is on with ca or cert"`
	Cert     string `yaml:"cert" doc:"client certificate for the store (relative to the file that defines state:)"`
	Key      string `yaml:"key" doc:"key of cert (relative to the file that defines state:)"`
	User     string `yaml:"user" doc:"etcd user of the store (etcd auth)"`
	Password string `yaml:"password" doc:"password of user: write ${vars.NAME} (redacted everywhere), never the password itself; empty: the ETCD_RESCUE_STATE_PASSWORD environment variable"`
	LockTTL  string `yaml:"lockTTL" doc:"TTL of the run lock's lease: a holder that dies loses the lock after it (3s to 10m; default: the store's, 15s)"`

	Pos    Pos            `yaml:"-"`
	KeyPos map[string]Pos `yaml:"-"`
}

// At is the position of a key of state:, or of the section.
func (s *StateStore) At(key string) Pos {
	if p, ok := s.KeyPos[key]; ok {
		return p
	}
	return s.Pos
}

// Resolved returns the state: section with ${vars.NAME} expanded in every
// field, and the names of variables that are not defined.
func (s *StateStore) Resolved(vars map[string]string) (StateStore, []string) {
	out := *s
	return out, resolveFields(out.fields(), vars)
}

func (s *StateStore) fields() []sectionField {
	return []sectionField{{"url", &s.URL}, {"ca", &s.CA}, {"cert", &s.Cert}, {"key", &s.Key},
		{"user", &s.User}, {"password", &s.Password}, {"lockTTL", &s.LockTTL}}
}

// checkState checks the state: section: a URL that parses, TLS files and
// credentials that go together, a usable lock TTL, variables that exist,
// and no password written in the file.
func (p *Plan) checkState() Findings {
	var fs Findings
	s := p.State
	if s == nil {
		return fs
	}
	unresolved := p.checkFieldRefs(&fs, "state", s.fields(), s.At)
	r, _ := s.Resolved(p.Vars)
	var u StateURL
	urlOK := false
	if r.URL != "" && !unresolved["url"] {
		var err error
		u, err = parseStateURL(r.URL)
		if e, ok := err.(*StateURLError); ok {
			f := fs.Add(s.At("url"), "state.url: %s", e.Msg)
			f.Hint = e.Hint
		} else {
			urlOK = true
		}
	}
	if s.Password != "" && len(Refs(s.Password)) == 0 {
		fs.Add(s.At("password"), "state.password is written in the file").
			WithHint("write ${vars.NAME} with a variable whose name contains \"password\" (redacted everywhere), set in the inventory, or leave it out and set %s", StatePasswordEnv)
	}
	user := r.User
	if user == "" && urlOK {
		user = u.User
	}
	if s.Password != "" && user == "" && !unresolved["user"] {
		fs.Add(s.At("password"), "state.password without state.user").
			WithHint("name the store's etcd user in state.user (or user= in the URL), or leave the password out for a store without auth")
	}
	cert, key := r.Cert, r.Key
	if urlOK {
		if cert == "" {
			cert = u.Cert
		}
		if key == "" {
			key = u.Key
		}
	}
	if (cert == "") != (key == "") {
		k, other := "cert", "key"
		if cert == "" {
			k, other = other, k
		}
		at, what := s.At(k), "state."+k
		if _, inSection := s.KeyPos[k]; !inSection {
			at, what = s.At("url"), "state.url's "+k+"="
		}
		fs.Add(at, "%s without state.%s", what, other).
			WithHint("a client certificate needs its key: set both, or neither (ca only, or no TLS)")
	}
	if r.LockTTL != "" && !unresolved["lockTTL"] {
		if _, err := ParseStateLockTTL(r.LockTTL); err != nil {
			e := err.(*StateURLError)
			fs.Add(s.At("lockTTL"), "state.%s", e.Msg).WithHint("%s", e.Hint)
		}
	}
	return fs
}

// StateConfig is the state store the plan's state: section names: the URL
// with the section's keys over its query, the variables resolved, the TLS
// files made absolute (relative to the file that defines state:, see
// LocalFile; the URL's cacert=, cert=, key= too), and the password
// (state.password's value, "" when it names none: the caller falls back
// to StatePasswordEnv). Its errors never hold the password.
func (p *Plan) StateConfig() (u StateURL, password string, err error) {
	if p.State == nil {
		return StateURL{}, "", &StateURLError{Msg: "no state: section", Hint: "add state: with url: etcd://HOST:PORT/PREFIX to the plan or the inventory, or give --state"}
	}
	r, missing := p.State.Resolved(p.Vars)
	if len(missing) > 0 {
		return StateURL{}, "", &StateURLError{Msg: fmt.Sprintf("state: unresolved variable ${%s}", missing[0]),
			Hint: "define it under vars: in the plan or the inventory"}
	}
	u, err = parseStateURL(r.URL)
	if err != nil {
		return StateURL{}, "", err
	}
	for _, f := range []struct{ dst, v *string }{{&u.CA, &r.CA}, {&u.Cert, &r.Cert}, {&u.Key, &r.Key}, {&u.User, &r.User}} {
		if *f.v != "" {
			*f.dst = *f.v
		}
	}
	if r.LockTTL != "" {
		if u.LockTTL, err = ParseStateLockTTL(r.LockTTL); err != nil {
			return StateURL{}, "", err
		}
	}
	if (u.Cert == "") != (u.Key == "") {
		return StateURL{}, "", &StateURLError{Msg: "state: cert and key go together", Hint: "set both, or neither"}
	}
	if r.Password != "" && u.User == "" {
		return StateURL{}, "", &StateURLError{Msg: "state.password without state.user", Hint: "name the store's etcd user in state.user"}
	}
	u.CA, u.Cert, u.Key = LocalFile(p.StateBase, u.CA), LocalFile(p.StateBase, u.Cert), LocalFile(p.StateBase, u.Key)
	return u, r.Password, nil
}
