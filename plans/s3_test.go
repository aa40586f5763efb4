package plans

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// s3: in an inventory: merged like ssh:, its ca: relative to the
// inventory, its variables resolved from the merged vars; a secret key
// written in the file is a warning at its position.
func TestS3Section(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "env")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(sub, "inv.yaml")
	if err := os.WriteFile(inv, []byte(`s3:
  endpoint: https://127.0.0.1:8333
  pathStyle: true
  ca: pki/ca.crt
  accessKey: ${vars.s3AccessKey}
  secretKey: plain-text-secret
vars:
  s3AccessKey: AKID
`), 0o600); err != nil {
		t.Fatal(err)
	}
	plan := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(plan, []byte(`version: 1
name: p
inventory: env/inv.yaml
cluster:
  name: c
  etcdVersion: "3.5"
  members:
    - {name: etcd1, host: h1, peerURL: "http://10.0.0.1:2380", clientURL: "http://10.0.0.1:2379"}
hosts:
  h1: {address: 10.0.0.1}
steps:
  - {id: a, type: approve}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	p, fs := Load(plan, "")
	if p == nil || fs.Errors() > 0 {
		t.Fatalf("load: %v", fs)
	}
	if p.S3 == nil || p.S3Base != sub || p.S3.Region != "us-east-1" || !p.S3.PathStyle {
		t.Fatalf("s3 not merged with defaults: %+v base %q", p.S3, p.S3Base)
	}
	r, missing := p.S3.Resolved(p.Vars)
	if len(missing) > 0 || r.AccessKey != "AKID" {
		t.Errorf("resolved %+v, missing %v", r, missing)
	}
	if got := LocalFile(p.S3Base, r.CA); got != filepath.Join(sub, "pki/ca.crt") {
		t.Errorf("ca resolves to %s", got)
	}
	var warned bool
	for _, f := range fs {
		if f.Severity == Warning && strings.Contains(f.Msg, "s3.secretKey is written in the file") {
			warned = f.Pos.File == inv && f.Pos.Line == 6 && f.Pos.Col == 14
			if !warned {
				t.Errorf("warning at %v", f.Pos)
			}
		}
	}
	if !warned {
		t.Errorf("no warning for a literal secretKey: %v", fs)
	}

	// Defined in both the plan and the inventory: a finding, like ssh:.
	raw, _ := os.ReadFile(plan)
	if err := os.WriteFile(plan, append(raw, []byte("s3: {endpoint: \"http://x:1\"}\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	_, fs = Load(plan, "")
	if !strings.Contains(fs.Err().Error(), "s3: defined both here and in inventory") {
		t.Errorf("want a finding for s3: in both files: %v", fs)
	}
}

func TestS3Endpoint(t *testing.T) {
	for ep, want := range map[string]string{
		"https://127.0.0.1:8333":    "",
		"http://minio:9000":         "",
		"127.0.0.1:8333":            "must start with http:// or https://",
		"https://":                  "names no host",
		"https://store/bucket":      "must be scheme://host[:port] only",
		"https://${vars.s3Host}:99": "",
	} {
		p := &Plan{S3: &S3{Endpoint: ep, KeyPos: map[string]Pos{"endpoint": {File: "f", Line: 3, Col: 13}}}, Vars: map[string]string{"s3Host": "h"}}
		fs := p.checkS3()
		got := ""
		if len(fs) > 0 {
			got = fs[0].Msg
			if fs[0].Pos.Line != 3 {
				t.Errorf("%s: finding at %v", ep, fs[0].Pos)
			}
		}
		if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
			t.Errorf("endpoint %q: %q, want %q", ep, got, want)
		}
	}
}
