package facts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
)

func TestParseSections(t *testing.T) {
	out := "noise before\n@@facts-T begin\nok\n\n@@facts-T-rc 0\n" +
		"@@facts-T addrs\nline 1\n@@facts-X addrs\nline 2\n\n@@facts-T-rc 3\n" +
		"@@facts-T datadir\npresent\n" // stopped here: no rc
	got := parseSections(out, "T")
	want := map[string]section{
		"begin":   {Out: "ok", RC: 0},
		"addrs":   {Out: "line 1\n@@facts-X addrs\nline 2", RC: 3}, // another token is content
		"datadir": {Out: "present", RC: -1},
	}
	if d := diff(want, got); d != "" {
		t.Errorf("sections (-want +got):\n%s", d)
	}
}

func TestParseAddresses(t *testing.T) {
	ip := `2: eth0    inet 10.0.0.1/24 brd 10.0.0.255 scope global eth0\       valid_lft forever preferred_lft forever
2: eth0    inet 10.0.0.9/24 scope global secondary eth0\       valid_lft forever preferred_lft forever
3: eth1    inet6 fd00::2/64 scope global nodad \       valid_lft forever preferred_lft forever
garbage line`
	if d := diff([]string{"10.0.0.1", "10.0.0.9", "fd00::2"}, parseIPAddrs(ip)); d != "" {
		t.Errorf("ip -o addr (-want +got):\n%s", d)
	}
	if d := diff([]string{"10.0.0.1", "fd00::2"}, parseHostnameI("10.0.0.1 127.0.0.1 fe80::1 fd00::2 \n")); d != "" {
		t.Errorf("hostname -I (-want +got):\n%s", d)
	}
}

func TestParseUnit(t *testing.T) {
	cases := map[string]struct {
		unit         section
		wantA, wantE string
		note         bool
	}{
		"running":  {section{Out: "LoadState=loaded\nActiveState=active\nUnitFileState=enabled"}, "active", "enabled", false},
		"failed":   {section{Out: "LoadState=loaded\nActiveState=failed\nUnitFileState=disabled"}, "failed", "disabled", false},
		"no unit":  {section{Out: "LoadState=not-found\nActiveState=inactive\nUnitFileState="}, "inactive", "not-found", false},
		"masked":   {section{Out: "LoadState=masked\nActiveState=inactive\nUnitFileState=masked"}, "inactive", "masked", false},
		"static":   {section{Out: "ActiveState=activating\nUnitFileState=static\nLoadState=loaded"}, "activating", "static", false},
		"odd file": {section{Out: "LoadState=loaded\nActiveState=active\nUnitFileState=whatever"}, "active", "unknown", true},
		"no systemd": {section{Out: "System has not been booted with systemd as init system (PID 1). Can't operate.\nFailed to connect to bus: Host is down", RC: 1},
			"unknown", "unknown", true},
		"no systemctl": {section{Out: "sh: 1: systemctl: not found", RC: 127}, "unknown", "unknown", true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			a, e, n := parseUnit(c.unit)
			if a != c.wantA || e != c.wantE || (n != "") != c.note {
				t.Errorf("got %q %q note %q, want %q %q (note %v)", a, e, n, c.wantA, c.wantE, c.note)
			}
		})
	}
}

// The files section: each file's lines back, a path that prefixes another
// (tcp, tcp6) kept apart, the host's addresses and listening ports read as
// ip and ss would say them.
func TestParseFiles(t *testing.T) {
	out := "/proc/net/fib_trie:Main:\n" +
		"/proc/net/fib_trie:  +-- 0.0.0.0/0 3 0 5\n" +
		"/proc/net/fib_trie:        |-- 10.0.0.0\n" +
		"/proc/net/fib_trie:           /24 link UNICAST\n" +
		"/proc/net/fib_trie:        |-- 10.0.0.1\n" +
		"/proc/net/fib_trie:           /32 host LOCAL\n" +
		"/proc/net/fib_trie:     |-- 10.0.0.255\n" +
		"/proc/net/fib_trie:        /32 link BROADCAST\n" +
		"/proc/net/fib_trie:           |-- 127.0.0.1\n" +
		"/proc/net/fib_trie:              /32 host LOCAL\n" +
		"/proc/net/fib_trie:Local:\n" +
		"/proc/net/fib_trie:        |-- 10.0.0.1\n" +
		"/proc/net/fib_trie:           /32 host LOCAL\n" +
		"/proc/net/if_inet6:fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n" +
		"/proc/net/if_inet6:00000000000000000000000000000001 01 80 10 80       lo\n" +
		"/proc/net/if_inet6:fd000000000000000000000000000002 04 40 00 82     eth0\n" +
		"/proc/net/tcp:  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"/proc/net/tcp:   0: 0B00000A:094C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 581 1 0 100 0 0 10 0\n" +
		"/proc/net/tcp:   1: 0B00000A:094C 0B00000A:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 582 1 0 100 0 0 10 0\n" +
		"/proc/net/tcp:   2: 0B00000A:C350 0B00000A:094B 01 00000000:00000000 00:00000000 00000000     0        0 583 1 0 100 0 0 10 0\n" +
		"/proc/net/tcp6:   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 584 1 0 100 0 0 10 0\n" +
		"/etc/etcd/etcd.env:ETCD_NAME=etcd1\n" +
		"/etc/etcd/etcd.env:\n" +
		"/etc/etcd/etcd.env:ETCD_DATA_DIR=/var/lib/etcd\n"
	files := parseFiles(out, procFibTrie, procIfInet6, procTCP, procTCP6, "/etc/etcd/etcd.env", "/absent")
	if _, ok := files["/absent"]; ok {
		t.Error("a file without lines is listed")
	}
	if d := diff("ETCD_NAME=etcd1\n\nETCD_DATA_DIR=/var/lib/etcd\n", files["/etc/etcd/etcd.env"]); d != "" {
		t.Errorf("env file (-want +got):\n%s", d)
	}
	if d := diff([]string{"10.0.0.1"}, parseFibTrie(files[procFibTrie])); d != "" {
		t.Errorf("fib_trie (-want +got):\n%s", d)
	}
	if d := diff([]string{"fd00::2"}, parseIfInet6(files[procIfInet6])); d != "" {
		t.Errorf("if_inet6 (-want +got):\n%s", d)
	}
	ports := map[int]bool{}
	parseProcTCP(files[procTCP], ports)
	parseProcTCP(files[procTCP6], ports)
	if d := diff(map[int]bool{2380: true, 22: true}, ports); d != "" {
		t.Errorf("listening ports (-want +got):\n%s", d)
	}
}

// On this machine, /proc/net says what ip says, and sees a port listened on.
func TestProcNetAgreesWithIPAndSS(t *testing.T) {
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Skipf("%s: %v", p, err)
		}
		return string(b)
	}
	fib, inet6, tcp6 := read(procFibTrie), read(procIfInet6), read(procTCP6)
	if ipOut, err := exec.Command("ip", "-o", "addr", "show", "scope", "global").Output(); err == nil {
		want := parseIPAddrs(string(ipOut))
		got := append(parseFibTrie(fib), parseIfInet6(inet6)...)
		sort.Strings(want)
		sort.Strings(got)
		if d := diff(want, got); d != "" {
			t.Errorf("addresses: ip (want) and /proc/net (got) differ:\n%s", d)
		}
	} else {
		t.Logf("no ip here: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	ports := map[int]bool{}
	parseProcTCP(read(procTCP), ports) // read after the listen
	parseProcTCP(tcp6, ports)
	if !ports[port] {
		t.Errorf("port %d listened on is not among %v", port, ports)
	}
}

func TestParseDataDirAndVersion(t *testing.T) {
	d, db := parseDataDir("/var/lib/etcd", section{Out: "present\nmember\ndb\nbytes 123456"})
	if d.Path != "/var/lib/etcd" || !d.Present || !d.HasMember || !db || d.SizeBytes != 123456 {
		t.Errorf("data dir: %+v db %v", d, db)
	}
	d, _ = parseDataDir("/d", section{Out: "present\nbytes 123456\t/d"})
	if d.SizeBytes != 123456 {
		t.Errorf("du -sb with its path: %+v", d)
	}
	d, _ = parseDataDir("/d", section{Out: "present\nkib 4"})
	if !d.Present || d.HasMember || d.SizeBytes != 4096 {
		t.Errorf("busybox du -sk: %+v", d)
	}
	d, _ = parseDataDir("/d", section{Out: "absent"})
	if d.Present || d.SizeBytes != 0 {
		t.Errorf("absent: %+v", d)
	}
	if v := parseVersion("bin /usr/local/bin/etcd\netcd Version: 3.5.35\nGit SHA: abc\nGo Version: go1.23\n"); v != "3.5.35" {
		t.Errorf("version %q", v)
	}
	if v := parseVersion("absent"); v != "" {
		t.Errorf("absent binary: version %q", v)
	}
	if bin, pids := parseVersionSection("bin /usr/local/bin/etcd\nrunning 12 34"); bin != "/usr/local/bin/etcd" || pids != "12 34" {
		t.Errorf("running binary: %q %q", bin, pids)
	}
}

func TestParseListening(t *testing.T) {
	ss := `State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess
LISTEN 0      4096       10.0.0.1:2380      0.0.0.0:*
LISTEN 0      4096      127.0.0.1:2379      0.0.0.0:*
LISTEN 0      128            [::]:22           [::]:*
LISTEN 0      128               *:8080            *:*`
	got := parseListening(ss)
	for _, p := range []int{2380, 2379, 22, 8080} {
		if !got[p] {
			t.Errorf("ss: port %d not seen in %v", p, got)
		}
	}
	if got[2381] {
		t.Error("ss: port 2381 seen")
	}
	netstat := `Active Internet connections (only servers)
Proto Recv-Q Send-Q Local Address           Foreign Address         State
tcp        0      0 0.0.0.0:2380            0.0.0.0:*               LISTEN
tcp6       0      0 :::2379                 :::*                    LISTEN`
	got = parseListening(netstat)
	if !got[2380] || !got[2379] || len(got) != 2 {
		t.Errorf("netstat: %v", got)
	}
}

func TestParseOfflineRevision(t *testing.T) {
	out := "2026-01-01T00:00:00Z\tinfo\tsome log line\n" + `{"hash":3453325113,"revision":42,"totalKey":7,"totalSize":20480,"version":"3.6.0"}`
	rev, err := parseOfflineRevision(section{Out: out})
	if err != nil || rev != 42 {
		t.Errorf("rev %d err %v", rev, err)
	}
	if _, err := parseOfflineRevision(section{Out: "Error: timeout", RC: 124}); err == nil || !strings.Contains(err.Error(), "Error: timeout") {
		t.Errorf("failure not reported: %v", err)
	}
}

// The env file and manifest are parsed by internal/etcdconf (its tests
// cover the syntax); facts keep the settings of Settings, the TLS paths
// among them, from either.
func TestSettingsFromEnvFileAndManifest(t *testing.T) {
	env := "ETCD_NAME=etcd1\nETCD_LISTEN_CLIENT_URLS=https://10.0.0.1:2379, https://127.0.0.1:2379\nETCD_FORCE_NEW_CLUSTER=1\n" +
		"ETCD_CERT_FILE=/etc/etcd/pki/server.crt\nETCD_KEY_FILE=/etc/etcd/pki/server.key\nETCD_TRUSTED_CA_FILE=/etc/etcd/pki/ca.crt\n" +
		"ETCD_PEER_CERT_FILE=/etc/etcd/pki/peer.crt\nETCD_PEER_KEY_FILE=/etc/etcd/pki/peer.key\nETCD_PEER_TRUSTED_CA_FILE=/etc/etcd/pki/ca.crt\n" +
		"ETCD_SNAPSHOT_COUNT=10000\n"
	want := &Settings{
		Source: "/etc/etcd/etcd.env", Name: "etcd1",
		ListenClientURLs: []string{"https://10.0.0.1:2379", "https://127.0.0.1:2379"},
		ForceNewCluster:  true,
		CertFile:         "/etc/etcd/pki/server.crt", KeyFile: "/etc/etcd/pki/server.key", TrustedCAFile: "/etc/etcd/pki/ca.crt",
		PeerCertFile: "/etc/etcd/pki/peer.crt", PeerKeyFile: "/etc/etcd/pki/peer.key", PeerTrustedCAFile: "/etc/etcd/pki/ca.crt",
	}
	if d := diff(want, parseEnvFile("/etc/etcd/etcd.env", env)); d != "" {
		t.Errorf("env file (-want +got):\n%s", d)
	}
	manifest := `spec:
  containers:
  - name: etcd
    command:
    - etcd
    - --name=cp1
    - --initial-cluster-state=new
    - --force-new-cluster
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --peer-key-file
    - /etc/kubernetes/pki/etcd/peer.key
    - --client-cert-auth
`
	got, err := parseManifest("/etc/kubernetes/manifests/etcd.yaml", manifest)
	if err != nil {
		t.Fatal(err)
	}
	want = &Settings{Source: "/etc/kubernetes/manifests/etcd.yaml", Name: "cp1", InitialClusterState: "new", ForceNewCluster: true,
		CertFile: "/etc/kubernetes/pki/etcd/server.crt", PeerKeyFile: "/etc/kubernetes/pki/etcd/peer.key"}
	if d := diff(want, got); d != "" {
		t.Errorf("manifest (-want +got):\n%s", d)
	}
	if _, err := parseManifest("m.yaml", "spec: ["); err == nil || !strings.Contains(err.Error(), "m.yaml") {
		t.Errorf("bad manifest: %v", err)
	}
}

// A script that did not start (sudo refused, or the transport failed)
// says why; a script stopped half-way keeps what it printed.
func TestReadProbeFailures(t *testing.T) {
	spec := probeSpec{Layout: "systemd", Unit: "etcd", EnvFile: "/etc/etcd/etcd.env", DataDir: "/var/lib/etcd"}
	h, _ := readProbe(spec, map[string]section{}, "sudo: a password is required\n", nil, true, 2380, 2379)
	if h.Reach != ReachSudoFailed || h.Error != "sudo: a password is required" {
		t.Errorf("sudo: %+v", h)
	}
	h, _ = readProbe(spec, map[string]section{}, "sh: 1: exec: bad\n", nil, false, 2380, 2379)
	if h.Reach != ReachError || !strings.Contains(h.Error, "exec: bad") {
		t.Errorf("no script: %+v", h)
	}
	partial := map[string]section{
		secBegin:   {Out: "ok"},
		secRunning: {Out: "pids 123"},
		secFiles: {Out: "/proc/net/fib_trie:  |-- 10.0.0.1\n/proc/net/fib_trie:     /32 host LOCAL\n" +
			"/etc/etcd/etcd.env:ETCD_NAME=etcd1"},
		secEnvFile: {Out: "present"},
		secUnit:    {Out: "ActiveState=active\nUnitFileState=enabled\nLoadState=loaded"},
		secDataDir: {Out: "present\nmember\ndb", RC: -1},
	}
	h, _ = readProbe(spec, partial, "", errors.New("host h: running command: command timed out after 1s"), false, 2380, 2379)
	if h.Reach != ReachOK || h.Settings == nil || h.Settings.Name != "etcd1" || !h.Service.Running || h.Service.Active != "active" ||
		!h.DataDir.HasMember || h.PeerPort != nil || h.EtcdVersion != "" {
		t.Errorf("partial: %+v service %+v", h, h.Service)
	}
	joined := strings.Join(h.Notes, "\n")
	if d := diff([]string{"10.0.0.1"}, h.Addresses); d != "" {
		t.Errorf("addresses (-want +got):\n%s", d)
	}
	for _, w := range []string{"command timed out", "etcd version: not collected", "listening ports unknown: /proc/net/tcp printed nothing"} {
		if !strings.Contains(joined, w) {
			t.Errorf("notes lack %q:\n%s", w, joined)
		}
	}
}

func TestAlarmsOf(t *testing.T) {
	got := alarmsOf([]string{"memberID:8e9e05c52164694d alarm:NOSPACE ", "memberID:91bc3c398fb3c146 alarm:NOSPACE", "memberID:1 alarm:CORRUPT", "some other error"})
	if d := diff([]string{"NOSPACE", "CORRUPT"}, got); d != "" {
		t.Errorf("alarms (-want +got):\n%s", d)
	}
}

func FuzzParseEnvFile(f *testing.F) {
	f.Add("ETCD_NAME=\"a\\\"b\" # c\nETCD_INITIAL_CLUSTER='x=y'\\\n")
	f.Add("ETCD_NAME=\"unterminated")
	f.Fuzz(func(t *testing.T, s string) {
		_ = parseEnvFile("f", s)
		_, _ = parseManifest("m", s)
		_ = parseSections(s, "T")
		_ = parseListening(s)
	})
}

// diff is "" when want and got are deeply equal, else both as JSON.
func diff(want, got any) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	w, _ := json.MarshalIndent(want, "", "  ")
	g, _ := json.MarshalIndent(got, "", "  ")
	return "want:\n" + string(w) + "\ngot:\n" + string(g)
}

func TestReachOf(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	unreach := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.EHOSTUNREACH}}
	cases := map[string]struct {
		err  error
		want Reach
	}{
		"nil":          {nil, ReachOK},
		"unknown key":  {fmt.Errorf("host h: %w", &sshx.HostKeyError{Host: "h"}), ReachHostKeyUnknown},
		"changed key":  {fmt.Errorf("host h: %w", &sshx.HostKeyError{Host: "h", Changed: true}), ReachHostKeyChanged},
		"refused":      {fmt.Errorf("host h: connecting to h:22: %w", refused), ReachRefused},
		"no route":     {fmt.Errorf("host h: connecting to h:22: %w", unreach), ReachNoRoute},
		"dns":          {fmt.Errorf("host h: %w", &net.DNSError{Err: "no such host", Name: "h", IsNotFound: true}), ReachNoRoute},
		"deadline":     {fmt.Errorf("host h: ssh handshake with h:22: %w", context.DeadlineExceeded), ReachTimeout},
		"i/o timeout":  {fmt.Errorf("host h: %w", &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}), ReachTimeout},
		"auth":         {errors.New("host h: ssh handshake with h:22 as root: ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain"), ReachAuthFailed},
		"cert refused": {errors.New("host h: host key verification failed for h: it presented a certificate"), ReachHostKeyUnknown},
		"other":        {errors.New("host h: something else"), ReachError},
	}
	for name, c := range cases {
		if got := ReachOf(c.err); got != c.want {
			t.Errorf("%s: ReachOf(%v) = %s, want %s", name, c.err, got, c.want)
		}
	}
}
