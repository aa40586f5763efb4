package framework

// The evidence of a run (<state>/runs/RUN/evidence/) and the facts files
// in it, as docs/cli.md documents them ("The evidence of a run, and
// `report`", "facts -o json"), decoded here on their own, not with the
// engine's types: a renamed field fails the tests.

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// ListedMember is one entry of a member list in a facts file or in
// evidence.json.
type ListedMember struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

// HashKV is a member's HashKV as the facts record it.
type HashKV struct {
	Hash            uint32 `json:"hash"`
	Revision        int64  `json:"revision"`
	CompactRevision int64  `json:"compactRevision"`
}

// EvidenceFacts is the part of a facts file (facts-before.json,
// facts-after.json: `facts -o json`) the evidence tests read.
type EvidenceFacts struct {
	Kind        string `json:"kind"`
	Version     int    `json:"version"`
	CollectedAt string `json:"collectedAt"`
	Members     []struct {
		Name   string `json:"name"`
		Host   string `json:"host"`
		API    string `json:"api"`
		Error  string `json:"error"`
		Status *struct {
			MemberID  string `json:"memberID"`
			ClusterID string `json:"clusterID"`
			Leader    string `json:"leader"`
			IsLearner bool   `json:"isLearner"`
			Revision  int64  `json:"revision"`
			RaftIndex uint64 `json:"raftIndex"`
		} `json:"status"`
		MemberList []ListedMember `json:"memberList"`
		HashKV     *HashKV        `json:"hashKV"`
	} `json:"members"`
}

// EvidenceDoc is the part of evidence.json the tests read.
type EvidenceDoc struct {
	Kind     string `json:"kind"`
	Version  int    `json:"version"`
	RunID    string `json:"runId"`
	Outcome  string `json:"outcome"`
	Sessions []struct {
		N           int    `json:"n"`
		Kind        string `json:"kind"`
		Outcome     string `json:"outcome"`
		FactsBefore string `json:"factsBefore"`
		FactsAfter  string `json:"factsAfter"`
	} `json:"sessions"`
	Steps    []EvidenceStep    `json:"steps"`
	Recorded map[string]string `json:"recorded"`
	Before   *EvidenceView     `json:"before"`
	After    *EvidenceView     `json:"after"`
	Failures []string          `json:"failures"`
}

// EvidenceStep is one step-host of evidence.json's steps.
type EvidenceStep struct {
	Step   string `json:"step"`
	Type   string `json:"type"`
	Host   string `json:"host"`
	Status string `json:"status"`
}

// EvidenceView is evidence.json's before or after.
type EvidenceView struct {
	File      string         `json:"file"`
	Members   []ListedMember `json:"members"`
	Endpoints []struct {
		Name      string  `json:"name"`
		API       string  `json:"api"`
		MemberID  string  `json:"memberID"`
		Revision  int64   `json:"revision"`
		RaftIndex uint64  `json:"raftIndex"`
		HashKV    *HashKV `json:"hashKV"`
	} `json:"endpoints"`
	Revision    int64    `json:"revision"`
	HashKV      string   `json:"hashKV"`
	CouldNotAsk []string `json:"couldNotAsk"`
}

// EvidenceDir is <stateDir>/runs/<runID>/evidence.
func EvidenceDir(stateDir, runID string) string {
	return filepath.Join(stateDir, "runs", runID, "evidence")
}

// ReadEvidenceJSON decodes the evidence file name of the run into v; a
// missing or undecodable file fails the test.
func ReadEvidenceJSON(t *testing.T, stateDir, runID, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(EvidenceDir(stateDir, runID), name))
	if err != nil {
		t.Fatalf("evidence: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("evidence %s: %v", name, err)
	}
}

// TarGzFiles reads a tar.gz into name → content (regular files only; a
// link or device fails the test: a bundle holds plain files).
func TarGzFiles(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: not gzip: %v", path, err)
	}
	tr := tar.NewReader(gz)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			t.Errorf("%s: entry %s is not a regular file (type %c)", path, h.Name, h.Typeflag)
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, h.Name, err)
		}
		out[h.Name] = b
	}
	return out
}
