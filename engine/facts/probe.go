package facts

// What one host is asked over SSH: one shell script, one session. Each probe
// prints a section between markers carrying a per-run token; the output is
// parsed here, in pure functions, into the Host's fields. The script only
// reads: it writes no file, takes no lock and starts nothing but readers.
//
// It starts as few processes as it can, because every process costs (a
// fork and exec is 8-80 ms on a loaded host, and a recovery asks every host
// at once): one grep reads the files that say which etcd processes run
// (/proc/PID/comm), one grep reads the host's addresses (/proc/net/fib_trie,
// if_inet6), its listening TCP ports (/proc/net/tcp, tcp6) and the env file
// or manifest, one `systemctl show` gives the unit's states, one du sizes the
// data dir. `etcd --version` runs only when no running etcd is the installed
// binary itself (then the running member's status says its version, see
// collect.go), and `etcdutl snapshot status` only on a stopped member's db.
// ip, hostname -I, ss and netstat are the fallbacks where /proc/net cannot
// be read. Nothing is bounded per probe: the slow ones (du, etcd --version,
// etcdutl on a db another process locks) come last, and the whole script
// is bounded by the command's timeout, which kills it and keeps what it
// printed before.

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"sort"
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
	Process  string // etcd's process name, as /proc/PID/comm shows it (etcd)
}

// Section names.
const (
	secBegin    = "begin"
	secRunning  = "running"  // pids of the etcd processes
	secFiles    = "files"    // grep -H '' of the files below: "path:line"
	secAddrs    = "addrs"    // ip -o addr show scope global, when /proc/net/fib_trie is unreadable
	secHostname = "hostname" // hostname -I, when ip is missing too
	secUnit     = "unit"     // systemctl show -p LoadState -p ActiveState -p UnitFileState
	secManifest = "manifest" // present | absent (the content is in secFiles)
	secEnvFile  = "envfile"  // present | absent (the content is in secFiles)
	secDataDir  = "datadir"
	secVersion  = "version" // "bin PATH", then `etcd --version` or "running PIDS" (the same file runs)
	secListen   = "listen"  // ss -ltn or netstat -ltn, when /proc/net/tcp is unreadable
	secOffline  = "offline"
	secEnd      = "end"
)

// The /proc files the script reads through one grep.
const (
	procFibTrie = "/proc/net/fib_trie"
	procIfInet6 = "/proc/net/if_inet6"
	procTCP     = "/proc/net/tcp"
	procTCP6    = "/proc/net/tcp6"
)

// settingsFile is the env file or manifest the layout names.
func (s probeSpec) settingsFile() string {
	if s.Layout == "static-pod" {
		return s.Manifest
	}
	return s.EnvFile
}

// hostScript is the shell script run on the host (as the command of an
// sshx session, which runs it with `sh -c`, under sudo -n when the
// inventory says so).
func hostScript(s probeSpec) string {
	q := shellquote.Quote
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
	// where NAME: its path on $PATH (command -v, without the subshell).
	w(`where() { r=; o=$IFS; IFS=:; for d in $PATH; do [ -z "$r" ] && [ -n "$d" ] && [ -f "$d/$1" ] && [ -x "$d/$1" ] && r=$d/$1; done; IFS=$o; }`)
	w(`LC_ALL=C; export LC_ALL`)
	w(`sec %s; echo ok; rc 0`, secBegin)
	// The etcd processes: the /proc/PID/comm files that name it (what
	// pgrep -x reads), by grep, or by the shell where grep is missing.
	w(`pids=; if has grep; then for f in $(grep -lsxF -- %s /proc/[0-9]*/comm 2>/dev/null); do p=${f#/proc/}; pids="$pids ${p%%/comm}"; done; `+
		`else for f in /proc/[0-9]*/comm; do c=; { read -r c < "$f"; } 2>/dev/null; [ "$c" = %s ] && p=${f#/proc/} && pids="$pids ${p%%/comm}"; done; fi`, q(proc), q(proc))
	w(`sec %s; echo "pids$pids"; rc 0`, secRunning)
	files := q(procFibTrie) + " " + q(procIfInet6) + " " + q(procTCP) + " " + q(procTCP6) + " " + q(s.settingsFile())
	w(`sec %s; if has grep; then grep -aHs '' %s; else for f in %s; do [ -r "$f" ] && while IFS= read -r l || [ -n "$l" ]; do printf '%%s:%%s\n' "$f" "$l"; done < "$f"; done; fi; rc 0`,
		secFiles, files, files)
	w(`if [ ! -r %s ]; then if has ip; then sec %s; ip -o addr show scope global 2>&1; rc $?; else sec %s; hostname -I 2>&1; rc $?; fi; fi`,
		procFibTrie, secAddrs, secHostname)
	w(`if [ ! -r %s ]; then sec %s; if has ss; then ss -ltn 2>&1; else netstat -ltn 2>&1; fi; rc $?; fi`, procTCP, secListen)
	if s.Layout == "static-pod" {
		w(`sec %s; %s; rc 0`, secManifest, presence(s.Manifest))
	} else {
		w(`sec %s; %s; rc 0`, secEnvFile, presence(s.EnvFile))
		w(`sec %s; systemctl show -p LoadState -p ActiveState -p UnitFileState %s 2>&1; rc $?`, secUnit, q(s.Unit))
	}
	d := s.DataDir
	w(`sec %s; if [ -d %s ]; then echo present; [ -d %s/member ] && echo member; [ -f %s/member/snap/db ] && echo db; `+
		`if n=$(du -sb %s 2>/dev/null); then echo "bytes $n"; elif n=$(du -sk %s 2>/dev/null); then echo "kib $n"; fi; `+
		`else echo absent; fi; rc 0`, secDataDir, q(d), q(d), q(d), q(d), q(d))
	if s.BinDir != "" {
		dir := strings.TrimRight(s.BinDir, "/")
		w(`bin=%s; utl=%s`, q(dir+"/etcd"), q(dir+"/etcdutl"))
	} else {
		w(`where etcd; bin=$r; where etcdutl; utl=$r`)
	}
	// The installed binary's version: when every etcd process runs that
	// very file, the running member's status says it (collect.go), and
	// the binary is not started.
	w(`sec %s; if [ -n "$bin" ] && [ -x "$bin" ]; then echo "bin $bin"; same=; `+
		`if [ -n "$pids" ]; then same=1; for p in $pids; do [ /proc/$p/exe -ef "$bin" ] || same=; done; fi; `+
		`if [ -n "$same" ]; then echo "running$pids"; rc 0; else "$bin" --version 2>&1; rc $?; fi; `+
		`else echo absent; rc 0; fi`, secVersion)
	// Offline revision: only with no etcd process on the host (bbolt's
	// shared lock would wait for a running etcd's exclusive one).
	w(`if [ -z "$pids" ] && [ -f %s/member/snap/db ] && [ -n "$utl" ] && [ -x "$utl" ]; then sec %s; "$utl" snapshot status %s/member/snap/db -w json 2>&1; rc $?; fi`,
		q(d), secOffline, q(d))
	w(`sec %s; echo ok; rc 0`, secEnd)
	return b.String()
}

// presence is the shell that prints whether file is there for the grep of
// the files section to read: "present" (and "unreadable" when it cannot
// be read) or "absent".
func presence(file string) string {
	f := shellquote.Quote(file)
	return fmt.Sprintf(`if [ -f %s ]; then echo present; [ -r %s ] || echo unreadable; else echo absent; fi`, f, f)
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

// parseFiles reads the files section (grep -H of each FILE: "path:line"):
// each file's content, for the paths asked; a file with no line (absent,
// unreadable or empty) is not in the map.
func parseFiles(out string, paths ...string) map[string]string {
	byLen := append([]string(nil), paths...)
	sort.Slice(byLen, func(i, j int) bool { return len(byLen[i]) > len(byLen[j]) })
	lines := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		for _, p := range byLen {
			if rest, ok := strings.CutPrefix(line, p+":"); ok && p != "" {
				lines[p] = append(lines[p], rest)
				break
			}
		}
	}
	files := map[string]string{}
	for p, l := range lines {
		files[p] = strings.Join(l, "\n") + "\n"
	}
	return files
}

// parseFibTrie reads /proc/net/fib_trie: the host's own IPv4 addresses
// (a "|-- ADDR" line followed by "/32 host LOCAL"), loopback left out, in
// the order shown, each once.
func parseFibTrie(content string) []string {
	var addrs []string
	seen := map[string]bool{}
	last := ""
	for _, line := range strings.Split(content, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "|--":
			last = f[1]
		case len(f) >= 3 && strings.HasPrefix(f[0], "/") && f[1] == "host" && f[2] == "LOCAL":
			if ip := net.ParseIP(last); ip != nil && ip.To4() != nil && !ip.IsLoopback() && !seen[last] {
				seen[last] = true
				addrs = append(addrs, last)
			}
		}
	}
	return addrs
}

// parseIfInet6 reads /proc/net/if_inet6: the IPv6 addresses of global
// scope (scope 00), as `ip -o addr show scope global` lists them.
func parseIfInet6(content string) []string {
	var addrs []string
	for _, line := range strings.Split(content, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || len(f[0]) != 32 || f[3] != "00" {
			continue
		}
		b, err := hex.DecodeString(f[0])
		if err != nil {
			continue
		}
		addrs = append(addrs, net.IP(b).String())
	}
	return addrs
}

// parseProcTCP reads /proc/net/tcp or tcp6: the local ports of the
// sockets in state LISTEN (0A).
func parseProcTCP(content string, ports map[int]bool) {
	for _, line := range strings.Split(content, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		if i < 0 {
			continue
		}
		if p, err := strconv.ParseUint(f[1][i+1:], 16, 16); err == nil {
			ports[int(p)] = true
		}
	}
}

// parseUnit reads `systemctl show -p LoadState -p ActiveState -p
// UnitFileState UNIT`: the states systemctl is-active and is-enabled
// print, or "unknown" with the reason (e.g. no systemd on the host).
func parseUnit(s section) (active, enabled, note string) {
	kv := map[string]string{}
	for _, line := range strings.Split(s.Out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			kv[k] = v
		}
	}
	a, ok := kv["ActiveState"]
	if s.RC != 0 || !ok {
		return "unknown", "unknown", "systemctl show: " + firstLine(s)
	}
	active = "unknown"
	if activeStates[a] {
		active = a
	}
	switch e, load := kv["UnitFileState"], kv["LoadState"]; {
	case load == "not-found":
		enabled = "not-found"
	case enabledStates[e]:
		enabled = e
	case load == "masked":
		enabled = "masked"
	default:
		enabled = "unknown"
	}
	if active == "unknown" || enabled == "unknown" {
		note = fmt.Sprintf("systemctl show: LoadState=%s ActiveState=%s UnitFileState=%s", kv["LoadState"], a, kv["UnitFileState"])
	}
	return active, enabled, note
}

var activeStates = map[string]bool{"active": true, "inactive": true, "failed": true, "activating": true,
	"deactivating": true, "reloading": true, "maintenance": true, "refreshing": true}

var enabledStates = map[string]bool{"enabled": true, "enabled-runtime": true, "linked": true, "linked-runtime": true,
	"alias": true, "masked": true, "masked-runtime": true, "static": true, "indirect": true, "disabled": true,
	"generated": true, "transient": true, "bad": true, "not-found": true}

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
		case "bytes", "kib": // du's "SIZE<tab>PATH" follows
			if len(f) >= 2 {
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

// parseVersionSection reads the version section's "bin PATH" and
// "running PIDS" lines (the version itself: parseVersion).
func parseVersionSection(out string) (bin, runningPIDs string) {
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "bin "); ok {
			bin = v
		} else if v, ok := strings.CutPrefix(line, "running "); ok {
			runningPIDs = strings.TrimSpace(v)
		}
	}
	return bin, runningPIDs
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
