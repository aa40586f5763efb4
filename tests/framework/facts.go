package framework

// The JSON of `etcd-rescue facts -o json` and `etcd-rescue diagnose -o
// json` as docs/cli.md documents it, decoded here on its own (not with
// engine/facts and engine/diagnose): a renamed field fails these tests
// instead of following the rename silently.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/etcd-rescue/etcd-rescue/lab"
)

// FactsDoc is the part of `facts -o json` the tests read.
type FactsDoc struct {
	Kind    string `json:"kind"`
	Version int    `json:"version"`
	Timeout string `json:"timeout"`
	Elapsed string `json:"elapsed"`
	Hosts   []struct {
		Name    string `json:"name"`
		Address string `json:"address"`
		Member  string `json:"member"`
		Reach   string `json:"reach"`
		Error   string `json:"error"`
		Elapsed string `json:"elapsed"`
		Service *struct {
			Active  string `json:"active"`
			Running bool   `json:"running"`
		} `json:"service"`
		DataDir *struct {
			Present   bool `json:"present"`
			HasMember bool `json:"hasMember"`
		} `json:"dataDir"`
	} `json:"hosts"`
	Members []struct {
		Name   string `json:"name"`
		Host   string `json:"host"`
		API    string `json:"api"`
		Error  string `json:"error"`
		Status *struct {
			Leader    string `json:"leader"`
			Revision  int64  `json:"revision"`
			RaftIndex uint64 `json:"raftIndex"`
		} `json:"status"`
	} `json:"members"`
}

// DiagnosisDoc is the part of `diagnose -o json` the tests read.
type DiagnosisDoc struct {
	Kind      string `json:"kind"`
	Version   int    `json:"version"`
	Situation string `json:"situation"`
	Healthy   bool   `json:"healthy"`
	Summary   string `json:"summary"`
	Findings  []struct {
		Code     string   `json:"code"`
		Severity string   `json:"severity"`
		Summary  string   `json:"summary"`
		Evidence []string `json:"evidence"`
		Members  []string `json:"members"`
		Hosts    []string `json:"hosts"`
	} `json:"findings"`
	Recommend *struct {
		Scenario string `json:"scenario"`
		Route    string `json:"route"`
		Members  []struct {
			Name       string `json:"name"`
			ID         string `json:"id"`
			Host       string `json:"host"`
			OldPeerURL string `json:"oldPeerURL"`
			NewPeerURL string `json:"newPeerURL"`
		} `json:"members"`
		Survivor string `json:"survivor"`
		Ranking  []struct {
			Name      string `json:"name"`
			RaftIndex uint64 `json:"raftIndex"`
			Revision  int64  `json:"revision"`
			Source    string `json:"source"`
			Behind    uint64 `json:"behind"`
		} `json:"ranking"`
		Fence []string `json:"fence"`
		Notes []string `json:"notes"`
	} `json:"recommendation"`
	Next string `json:"next"`
}

// FactsJSON runs `facts ARGS -o json` and decodes its output; a document
// that does not decode, or has the wrong kind, fails the test.
func (e *E2E) FactsJSON(t *testing.T, args ...string) (*FactsDoc, Result) {
	t.Helper()
	r := e.CLI(t, append([]string{"facts"}, append(args, "-o", "json")...)...)
	var f FactsDoc
	decodeDoc(t, r, &f)
	if f.Kind != "etcd-rescue/facts" || f.Version != 1 {
		t.Fatalf("facts -o json: kind %q version %d, want etcd-rescue/facts version 1\n%s", f.Kind, f.Version, r)
	}
	return &f, r
}

// DiagnoseJSON runs `diagnose ARGS -o json` and decodes its output.
func (e *E2E) DiagnoseJSON(t *testing.T, args ...string) (*DiagnosisDoc, Result) {
	t.Helper()
	r := e.CLI(t, append([]string{"diagnose"}, append(args, "-o", "json")...)...)
	var d DiagnosisDoc
	decodeDoc(t, r, &d)
	if d.Kind != "etcd-rescue/diagnosis" || d.Version != 1 {
		t.Fatalf("diagnose -o json: kind %q version %d, want etcd-rescue/diagnosis version 1\n%s", d.Kind, d.Version, r)
	}
	return &d, r
}

func decodeDoc(t *testing.T, r Result, v any) {
	t.Helper()
	if r.Code != 0 && r.Code != 1 {
		t.Fatalf("%s", r)
	}
	if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
		t.Fatalf("decode the JSON output: %v\n%s", err, r)
	}
}

// FindingCodes lists d's findings as severity:code, for messages.
func (d *DiagnosisDoc) FindingCodes() []string {
	var out []string
	for _, f := range d.Findings {
		out = append(out, f.Severity+":"+f.Code)
	}
	return out
}

// PlanStep is one step of a plan file, as far as the tests read it.
type PlanStep struct {
	ID   string
	Type string
	On   []string
}

// PlanSteps reads the steps of a plan file (`on:` is a string or a list).
func PlanSteps(t *testing.T, data []byte) []PlanStep {
	t.Helper()
	var p struct {
		Steps []struct {
			ID   string    `yaml:"id"`
			Type string    `yaml:"type"`
			On   yaml.Node `yaml:"on"`
		} `yaml:"steps"`
	}
	if err := yaml.Unmarshal(data, &p); err != nil {
		t.Fatalf("decode the plan: %v", err)
	}
	var out []PlanStep
	for _, s := range p.Steps {
		st := PlanStep{ID: s.ID, Type: s.Type}
		switch s.On.Kind {
		case yaml.ScalarNode:
			st.On = []string{s.On.Value}
		case yaml.SequenceNode:
			for _, n := range s.On.Content {
				st.On = append(st.On, n.Value)
			}
		}
		out = append(out, st)
	}
	return out
}

// EtcdStates is, for every lab host, etcd's unit state and a listing of
// its data dir (every file with its size and mtime), read through the
// host's console: it works on isolated hosts too, and asks nothing of
// etcd or of the network.
func EtcdStates(t *testing.T, l *lab.Lab) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[string]string{}
	for _, h := range l.Hosts() {
		s, err := l.RunConsole(ctx, h.Name, fmt.Sprintf(`echo "etcd: $(systemctl is-active etcd)"; find %s -printf '%%y %%p %%s %%T@\n' 2>&1 | sort`, lab.DataDir))
		if err != nil {
			t.Fatalf("state of %s: %v", h.Name, err)
		}
		out[h.Name] = s
	}
	return out
}

// QuietEtcdStates is EtcdStates once it has not changed for a second and
// a half: etcd writes on its own for a while after a start or an election
// (3.6 updates its storage version in the backend of every member, a
// follower applies late), and a test that proves a command changes
// nothing must not take that for the command's doing.
func QuietEtcdStates(t *testing.T, l *lab.Lab) map[string]string {
	t.Helper()
	const quiet = 1500 * time.Millisecond
	t0 := time.Now()
	prev := EtcdStates(t, l)
	for {
		time.Sleep(quiet)
		cur := EtcdStates(t, l)
		if fmt.Sprint(cur) == fmt.Sprint(prev) {
			t.Logf("the lab's data dirs: unchanged for %s after %.1fs", quiet, time.Since(t0).Seconds())
			return cur
		}
		if time.Since(t0) > SafetyLimit {
			t.Fatalf("the lab's data dirs still change after the safety limit of %s", SafetyLimit)
		}
		prev = cur
	}
}

// UntouchedStates is, for every lab host, what a read-only command of the
// tool must leave as it was, read through the host's console (it works on
// isolated hosts too): etcd's unit state (active, enabled), the env file's
// content (sha256), and every file and directory under the data dir with
// its type, owner and mode; with its size and mtime too, except in
// member/ while etcd runs. A running etcd writes its own files at any time
// (the backend member/snap/db after an election or a lease revoke, the raft
// log member/wal on a leader change, the WAL's preallocated *.tmp), and that
// is not the tool's change: a test that compared their sizes and mtimes
// failed when etcd wrote in the middle of a facts collection. What the tool
// could do to a host — write the env file, create, remove, chown or chmod a
// file, stop, start or disable etcd — still shows; and with etcd stopped
// nothing writes the data dir, so then every file's size and mtime are
// compared as well. Whether etcd's data changed is for the caller to ask
// etcd (the cluster revision, the member list).
func UntouchedStates(t *testing.T, l *lab.Lab) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[string]string{}
	for _, h := range l.Hosts() {
		s, err := l.RunConsole(ctx, h.Name, fmt.Sprintf(`echo "etcd: $(systemctl is-active etcd) $(systemctl is-enabled etcd 2>&1)"; echo "env: $(sha256sum %s 2>&1 | cut -d' ' -f1)"; find %s -printf '%%y %%p %%u:%%g %%m %%s %%T@\n' 2>&1 | sort`, lab.EnvFile, lab.DataDir))
		if err != nil {
			t.Fatalf("state of %s: %v", h.Name, err)
		}
		out[h.Name] = maskEtcdWrites(s)
	}
	return out
}

// maskEtcdWrites drops the size and mtime of the files under the data
// dir's member/ from an UntouchedStates listing when its first line says
// etcd is active or activating, and the WAL's preallocated *.tmp files.
func maskEtcdWrites(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "etcd: active") && !strings.HasPrefix(lines[0], "etcd: activating") {
		return s
	}
	var out []string
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) == 6 && f[0] == "f" && strings.HasPrefix(f[1], lab.DataDir+"/member/") {
			if strings.HasPrefix(f[1], lab.DataDir+"/member/wal/") && strings.HasSuffix(f[1], ".tmp") {
				continue
			}
			line = strings.Join(f[:4], " ") + " (size, mtime: etcd runs)"
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// CompareEtcdStates reports every host whose state changed.
func CompareEtcdStates(t *testing.T, before, after map[string]string) {
	t.Helper()
	names := make([]string, 0, len(before))
	for n := range before {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if before[n] != after[n] {
			t.Errorf("host %s changed:\n--- before\n%s--- after\n%s", n, before[n], after[n])
		}
	}
	if len(after) != len(before) {
		t.Errorf("hosts before %d, after %d", len(before), len(after))
	}
}

// MemberLeader is the leader member id member name knows (0: none), from
// its own status (serializable: it answers without quorum).
func MemberLeader(t *testing.T, l *lab.Lab, name string) (uint64, error) {
	t.Helper()
	cli := client(t, l)
	defer cli.Close()
	_, url, err := l.MemberURLs(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, url)
	if err != nil {
		return 0, err
	}
	return st.Leader, nil
}

// InventoryVar is vars.NAME of the lab's inventory ("" if not set).
func InventoryVar(t *testing.T, l *lab.Lab, name string) string {
	t.Helper()
	b, err := os.ReadFile(l.InventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	var inv struct {
		Vars map[string]string `yaml:"vars"`
	}
	if err := yaml.Unmarshal(b, &inv); err != nil {
		t.Fatalf("decode the lab inventory: %v", err)
	}
	return inv.Vars[name]
}

// CommandArgs splits a command line printed for a person (`etcd-rescue new
// ip-change --inventory '/x y/inv.yaml' ...`) into arguments: words
// separated by blanks, single or double quotes around a word with blanks.
func CommandArgs(line string) []string {
	var out []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}
