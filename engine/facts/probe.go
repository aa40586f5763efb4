package facts

// What one host is asked over SSH: one shell script, one session. Each probe
// prints a section between markers carrying a per-run token; the output is
// parsed here, in pure functions, into the Host's fields. The script only
// reads: it writes no file, takes no lock and starts nothing but readers
// (ip, systemctl is-*, pgrep, cat, du, ss, etcd --version, and on a stopped
// member etcdutl snapshot status, which opens the bbolt file O_RDONLY).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/internal/etcdconf"
	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
)

// probeSpec is what the script looks at on one host.
type probeSpec struct {
	Token    string // marks sections; random per run
	Layout   string // systemd | static-pod
	Unit     string
	EnvFile  string
	Manifest string
	DataDir  string
	BinDir   string // "" means PATH
	Process  string // etcd's process name, for pgrep -x (etcd)
	// Step bounds each probe that may be slow (du, etcd --version,
	// etcdutl), in whole seconds (at least 1).
	Step int
}

// Section names.
const (
	secBegin    = "begin"
	secAddrs    = "addrs"    // ip -o addr show scope global
	secHostname = "hostname" // hostname -I, when ip is missing
	secActive   = "active"
	secEnabled  = "enabled"
	secManifest = "manifest"
	secEnvFile  = "envfile"
	secRunning  = "running"
	secDataDir  = "datadir"
	secVersion  = "version"
	secListen   = "listen"
	secOffline  = "offline"
	secEnd      = "end"
)

// hostScript is the shell script run on the host (through `sh -c`, under
// sudo -n when the inventory says so).
func hostScript(s probeSpec) string {
	q := shellquote.Quote
	step := strconv.Itoa(max(1, s.Step))
	proc := s.Process
	if proc == "" {
		proc = "etcd"
	}
	mark := "@@facts-" + s.Token
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w(`sec() { printf '\n%s %%s\n' "$1"; }`, mark)
	w(`rc() { printf '\n%s-rc %%s\n' "$1"; }`, mark)
	w(`has() { command -v "$1" >/dev/null 2>&1; }`)
	w(`tmo() { if has timeout; then timeout -k 1 "$@"; else shift; "$@"; fi; }`)
	w(`sec %s; echo ok; rc 0`, secBegin)
	w(`if has ip; then sec %s; ip -o addr show scope global 2>&1; rc $?; else sec %s; hostname -I 2>&1; rc $?; fi`, secAddrs, secHostname)
	if s.Layout == "static-pod" {
		w(`sec %s; if [ -f %s ]; then echo present; cat %s 2>&1; else echo absent; fi; rc $?`, secManifest, q(s.Manifest), q(s.Manifest))
	} else {
		w(`sec %s; systemctl is-active %s 2>&1; rc $?`, secActive, q(s.Unit))
		w(`sec %s; systemctl is-enabled %s 2>&1; rc $?`, secEnabled, q(s.Unit))
		w(`sec %s; if [ -f %s ]; then echo present; cat %s 2>&1; else echo absent; fi; rc $?`, secEnvFile, q(s.EnvFile), q(s.EnvFile))
	}
	// pgrep, or the same from /proc where procps is missing.
	w(`if has pgrep; then pids=$(pgrep -x %s 2>/dev/null | tr '\n' ' '); else pids=; for f in /proc/[0-9]*/comm; do [ "$(cat "$f" 2>/dev/null)" = %s ] && p=${f#/proc/} && pids="$pids ${p%%/comm}"; done; fi`, q(proc), q(proc))
	w(`sec %s; echo "pids $pids"; rc 0`, secRunning)
	d := s.DataDir
	w(`sec %s; if [ -d %s ]; then echo present; [ -d %s/member ] && echo member; [ -f %s/member/snap/db ] && echo db; `+
		`n=$(tmo %s du -sb %s 2>/dev/null | cut -f1); if [ -n "$n" ]; then echo "bytes $n"; else n=$(tmo %s du -sk %s 2>/dev/null | cut -f1); [ -n "$n" ] && echo "kib $n"; fi; `+
		`else echo absent; fi; rc 0`, secDataDir, q(d), q(d), q(d), step, q(d), step, q(d))
	bin, utl := `$(command -v etcd)`, `$(command -v etcdutl)`
	if s.BinDir != "" {
		bin, utl = q(strings.TrimRight(s.BinDir, "/")+"/etcd"), q(strings.TrimRight(s.BinDir, "/")+"/etcdutl")
	}
	w(`b=%s; sec %s; if [ -n "$b" ] && [ -x "$b" ]; then echo "bin $b"; tmo %s "$b" --version 2>&1; rc $?; else echo absent; rc 0; fi`, bin, secVersion, step)
	w(`sec %s; if has ss; then ss -ltn 2>&1; else netstat -ltn 2>&1; fi; rc $?`, secListen)
	// Offline revision: only with no etcd process on the host (bbolt's
	// shared lock would wait for a running etcd's exclusive one).
	w(`u=%s; if [ -z "$pids" ] && [ -f %s/member/snap/db ] && [ -n "$u" ] && [ -x "$u" ]; then sec %s; tmo %s "$u" snapshot status %s/member/snap/db -w json 2>&1; rc $?; fi`,
		utl, q(d), secOffline, step, q(d))
	w(`sec %s; echo ok; rc 0`, secEnd)
	return b.String()
}

// section is one probe's output.
type section struct {
	Out string
	RC  int // -1 when the section did not finish (the script was stopped)
}

// parseSections splits the script's output into sections by name.
func parseSections(out, token string) map[string]section {
	mark := "@@facts-" + token
	secs := map[string]section{}
	var name string
	var buf []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	flush := func(rc int) {
		if name != "" {
			secs[name] = section{Out: strings.Trim(strings.Join(buf, "\n"), "\n"), RC: rc}
		}
		name, buf = "", nil
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, mark+"-rc "):
			rc, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, mark+"-rc ")))
			if err != nil {
				rc = -1
			}
			flush(rc)
		case strings.HasPrefix(line, mark+" "):
			flush(-1)
			name = strings.TrimSpace(strings.TrimPrefix(line, mark+" "))
		case name != "":
			buf = append(buf, line)
		}
	}
	flush(-1)
	return secs
}

// parseIPAddrs reads `ip -o addr show scope global`: the addresses without
// their prefix length, in the order shown.
func parseIPAddrs(out string) []string {
	var addrs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" || f[i] == "inet6" {
				a, _, _ := strings.Cut(f[i+1], "/")
				if net.ParseIP(a) != nil {
					addrs = append(addrs, a)
				}
				break
			}
		}
	}
	return addrs
}

// parseHostnameI reads `hostname -I`.
func parseHostnameI(out string) []string {
	var addrs []string
	for _, a := range strings.Fields(out) {
		if ip := net.ParseIP(a); ip != nil && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

var activeStates = map[string]bool{"active": true, "inactive": true, "failed": true, "activating": true,
	"deactivating": true, "reloading": true, "maintenance": true, "refreshing": true}

var enabledStates = map[string]bool{"enabled": true, "enabled-runtime": true, "linked": true, "linked-runtime": true,
	"alias": true, "masked": true, "masked-runtime": true, "static": true, "indirect": true, "disabled": true,
	"generated": true, "transient": true, "bad": true, "not-found": true}

// parseActive reads `systemctl is-active`: the state, or "unknown" with
// the reason (e.g. no systemd on the host).
func parseActive(s section) (state, note string) {
	for _, line := range strings.Split(s.Out, "\n") {
		if l := strings.TrimSpace(line); activeStates[l] {
			return l, ""
		}
	}
	return "unknown", "systemctl is-active: " + firstLine(s)
}

// parseEnabled reads `systemctl is-enabled`.
func parseEnabled(s section) (state, note string) {
	for _, line := range strings.Split(s.Out, "\n") {
		if l := strings.TrimSpace(line); enabledStates[l] {
			return l, ""
		}
	}
	if strings.Contains(s.Out, "No such file or directory") || strings.Contains(s.Out, "not-found") {
		return "not-found", ""
	}
	return "unknown", "systemctl is-enabled: " + firstLine(s)
}

func firstLine(s section) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s.Out), "\n")
	if l == "" {
		l = fmt.Sprintf("no output (exit %d)", s.RC)
	}
	if s.RC == 127 {
		l += " (command not found)"
	}
	return l
}

// parseFile reads a section that prints "present" then the file, or
// "absent".
func parseFile(s section) (present bool, content string) {
	first, rest, _ := strings.Cut(s.Out, "\n")
	return strings.TrimSpace(first) == "present", rest
}

// parseRunning reads the pids of etcd processes.
func parseRunning(s section) bool {
	rest, _ := strings.CutPrefix(strings.TrimSpace(s.Out), "pids")
	return strings.TrimSpace(rest) != ""
}

// parseDataDir reads the datadir section.
func parseDataDir(path string, s section) (*DataDir, bool) {
	d := &DataDir{Path: path}
	hasDB := false
	for _, line := range strings.Split(s.Out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "present":
			d.Present = true
		case "member":
			d.HasMember = true
		case "db":
			hasDB = true
		case "bytes", "kib":
			if len(f) == 2 {
				if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					if f[0] == "kib" {
						n *= 1024
					}
					d.SizeBytes = n
				}
			}
		}
	}
	return d, hasDB
}

// parseVersion reads `etcd --version` ("etcd Version: 3.5.35").
func parseVersion(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "etcd Version:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// parseListening reads `ss -ltn` or `netstat -ltn`: the TCP ports something
// listens on.
func parseListening(out string) map[int]bool {
	ports := map[int]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		var local string
		switch {
		case len(f) >= 4 && f[0] == "LISTEN": // ss
			local = f[3]
		case len(f) >= 6 && strings.HasPrefix(f[0], "tcp") && f[5] == "LISTEN": // netstat
			local = f[3]
		default:
			continue
		}
		i := strings.LastIndexAny(local, ":.")
		if i < 0 {
			continue
		}
		if p, err := strconv.Atoi(local[i+1:]); err == nil {
			ports[p] = true
		}
	}
	return ports
}

// parseOfflineRevision reads `etcdutl snapshot status -w json` (its log
// lines may surround the JSON object).
func parseOfflineRevision(s section) (int64, error) {
	for _, line := range strings.Split(s.Out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var st struct {
			Revision *int64 `json:"revision"`
		}
		if json.Unmarshal([]byte(line), &st) == nil && st.Revision != nil {
			return *st.Revision, nil
		}
	}
	return 0, fmt.Errorf("etcdutl snapshot status: %s", lastLine(s.Out))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "no output"
	}
	return s
}

// portOf is the port of a URL (its scheme's default when absent).
func portOf(u string) int {
	pu, err := url.Parse(u)
	if err != nil {
		return 0
	}
	p := pu.Port()
	if p == "" {
		if pu.Scheme == "https" {
			return 443
		}
		return 80
	}
	n, _ := strconv.Atoi(p)
	return n
}

// settingKeys maps ETCD_* settings (etcdconf's form of both the env file
// and the manifest's flags) to Settings fields.
var settingKeys = map[string]func(s *Settings, v string){
	"ETCD_NAME":                        func(s *Settings, v string) { s.Name = v },
	"ETCD_DATA_DIR":                    func(s *Settings, v string) { s.DataDir = v },
	"ETCD_LISTEN_PEER_URLS":            func(s *Settings, v string) { s.ListenPeerURLs = splitList(v) },
	"ETCD_LISTEN_CLIENT_URLS":          func(s *Settings, v string) { s.ListenClientURLs = splitList(v) },
	"ETCD_INITIAL_ADVERTISE_PEER_URLS": func(s *Settings, v string) { s.InitialAdvertisePeerURLs = splitList(v) },
	"ETCD_ADVERTISE_CLIENT_URLS":       func(s *Settings, v string) { s.AdvertiseClientURLs = splitList(v) },
	"ETCD_INITIAL_CLUSTER":             func(s *Settings, v string) { s.InitialCluster = v },
	"ETCD_INITIAL_CLUSTER_STATE":       func(s *Settings, v string) { s.InitialClusterState = v },
	"ETCD_INITIAL_CLUSTER_TOKEN":       func(s *Settings, v string) { s.InitialClusterToken = v },
	"ETCD_FORCE_NEW_CLUSTER":           func(s *Settings, v string) { s.ForceNewCluster = strings.EqualFold(v, "true") || v == "1" },
	"ETCD_CERT_FILE":                   func(s *Settings, v string) { s.CertFile = v },
	"ETCD_KEY_FILE":                    func(s *Settings, v string) { s.KeyFile = v },
	"ETCD_TRUSTED_CA_FILE":             func(s *Settings, v string) { s.TrustedCAFile = v },
	"ETCD_PEER_CERT_FILE":              func(s *Settings, v string) { s.PeerCertFile = v },
	"ETCD_PEER_KEY_FILE":               func(s *Settings, v string) { s.PeerKeyFile = v },
	"ETCD_PEER_TRUSTED_CA_FILE":        func(s *Settings, v string) { s.PeerTrustedCAFile = v },
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// settingsOf keeps the settings of Settings from etcdconf's ETCD_* map.
func settingsOf(source string, kv map[string]string) *Settings {
	s := &Settings{Source: source}
	for k, v := range kv {
		if set := settingKeys[k]; set != nil {
			set(s, v)
		}
	}
	return s
}

// parseEnvFile reads a systemd EnvironmentFile (see etcdconf.ParseEnvFile).
func parseEnvFile(source, content string) *Settings {
	return settingsOf(source, etcdconf.ParseEnvFile(content))
}

// parseManifest reads a static pod manifest's etcd flags (see
// etcdconf.ParseManifest).
func parseManifest(source, content string) (*Settings, error) {
	kv, err := etcdconf.ParseManifest(source, content)
	if err != nil {
		return nil, err
	}
	return settingsOf(source, kv), nil
}
