package etcdconf

import (
	"reflect"
	"strings"
	"testing"
)

// Moved from engine/facts: the env file and manifest syntax.
func TestParseEnvFile(t *testing.T) {
	env := `# written by hand
ETCD_NAME=etcd1
ETCD_DATA_DIR="/var/lib/etcd"
ETCD_LISTEN_PEER_URLS='https://10.0.0.1:2380'
ETCD_LISTEN_CLIENT_URLS=https://10.0.0.1:2379,https://127.0.0.1:2379
ETCD_ADVERTISE_CLIENT_URLS="https://10.0.0.1:2379" # trailing comment
export ETCD_INITIAL_ADVERTISE_PEER_URLS=https://10.0.0.1:2380
ETCD_INITIAL_CLUSTER="etcd1=https://10.0.0.1:2380,\
etcd2=https://10.0.0.2:2380"
ETCD_INITIAL_CLUSTER_STATE=existing
ETCD_INITIAL_CLUSTER_TOKEN="tok \"quoted\" 1"
ETCD_FORCE_NEW_CLUSTER=true
; other comment
ETCD_CERT_FILE=/etc/etcd/pki/server.crt
ETCD_PEER_CERT_FILE=/etc/etcd/pki/old.crt
ETCD_PEER_CERT_FILE=/etc/etcd/pki/peer.crt
GOMAXPROCS=2
not a setting
`
	want := map[string]string{
		"ETCD_NAME": "etcd1", "ETCD_DATA_DIR": "/var/lib/etcd",
		"ETCD_LISTEN_PEER_URLS":            "https://10.0.0.1:2380",
		"ETCD_LISTEN_CLIENT_URLS":          "https://10.0.0.1:2379,https://127.0.0.1:2379",
		"ETCD_ADVERTISE_CLIENT_URLS":       "https://10.0.0.1:2379",
		"ETCD_INITIAL_ADVERTISE_PEER_URLS": "https://10.0.0.1:2380",
		"ETCD_INITIAL_CLUSTER":             "etcd1=https://10.0.0.1:2380,etcd2=https://10.0.0.2:2380",
		"ETCD_INITIAL_CLUSTER_STATE":       "existing",
		"ETCD_INITIAL_CLUSTER_TOKEN":       `tok "quoted" 1`,
		"ETCD_FORCE_NEW_CLUSTER":           "true",
		"ETCD_CERT_FILE":                   "/etc/etcd/pki/server.crt",
		"ETCD_PEER_CERT_FILE":              "/etc/etcd/pki/peer.crt",
	}
	if got := ParseEnvFile(env); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestUnquoteEnv(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:              "plain",
		`"a b"`:              "a b",
		`'a "b"'`:            `a "b"`,
		`"a\"b"`:             `a"b`,
		`a\ b`:               "a b",
		`x # comment`:        "x",
		`x#notcomment`:       "x#notcomment",
		`'unterminated`:      "unterminated",
		`"unterminated`:      "unterminated",
		`"/a b"/c 'd'`:       "/a b/c d",
		`https://h:1#frag`:   "https://h:1#frag",
		`"a" # "quoted" too`: "a",
	} {
		if got := unquoteEnv(in); got != want {
			t.Errorf("unquoteEnv(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestParseManifest(t *testing.T) {
	manifest := `apiVersion: v1
kind: Pod
metadata: {name: etcd, namespace: kube-system}
spec:
  containers:
  - name: sidecar
    command: ["sleep", "infinity"]
  - name: etcd
    image: registry.k8s.io/etcd:3.5.15-0
    command:
    - etcd
    - --name=cp1
    - --data-dir=/var/lib/etcd
    - --listen-peer-urls=https://10.0.0.1:2380
    - --listen-client-urls=https://127.0.0.1:2379,https://10.0.0.1:2379
    - --advertise-client-urls=https://10.0.0.1:2379
    - --initial-advertise-peer-urls
    - https://10.0.0.1:2380
    - --initial-cluster=cp1=https://10.0.0.1:2380
    - --initial-cluster-state=new
    - --force-new-cluster
    - --client-cert-auth
    - "true"
    - --peer-client-cert-auth
    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt
    - --snapshot-count=10000
    - --experimental-initial-corrupt-check
`
	got, err := ParseManifest("/etc/kubernetes/manifests/etcd.yaml", manifest)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ETCD_NAME": "cp1", "ETCD_DATA_DIR": "/var/lib/etcd",
		"ETCD_LISTEN_PEER_URLS":                   "https://10.0.0.1:2380",
		"ETCD_LISTEN_CLIENT_URLS":                 "https://127.0.0.1:2379,https://10.0.0.1:2379",
		"ETCD_ADVERTISE_CLIENT_URLS":              "https://10.0.0.1:2379",
		"ETCD_INITIAL_ADVERTISE_PEER_URLS":        "https://10.0.0.1:2380",
		"ETCD_INITIAL_CLUSTER":                    "cp1=https://10.0.0.1:2380",
		"ETCD_INITIAL_CLUSTER_STATE":              "new",
		"ETCD_FORCE_NEW_CLUSTER":                  "true",
		"ETCD_CLIENT_CERT_AUTH":                   "true",
		"ETCD_PEER_CLIENT_CERT_AUTH":              "true",
		"ETCD_PEER_CERT_FILE":                     "/etc/kubernetes/pki/etcd/peer.crt",
		"ETCD_SNAPSHOT_COUNT":                     "10000",
		"ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK": "true",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	args, err := ParseManifest("m.yaml", "spec: {containers: [{name: etcd, command: [/usr/local/bin/etcd], args: [--name, a, --force-new-cluster, false, --unknown-bool]}]}")
	if err != nil || !reflect.DeepEqual(args, map[string]string{"ETCD_NAME": "a", "ETCD_FORCE_NEW_CLUSTER": "false", "ETCD_UNKNOWN_BOOL": "true"}) {
		t.Errorf("args: %v %v", args, err)
	}
	for name, bad := range map[string]string{"not yaml": "spec: [", "no etcd": "spec: {containers: [{name: x, command: [sleep]}]}"} {
		if _, err := ParseManifest("m.yaml", bad); err == nil || !strings.Contains(err.Error(), "m.yaml") {
			t.Errorf("%s: error %v", name, err)
		}
	}
}

func TestFlagKey(t *testing.T) {
	for in, want := range map[string]string{"--peer-cert-file": "ETCD_PEER_CERT_FILE", "name": "ETCD_NAME", "--trusted-ca-file": "ETCD_TRUSTED_CA_FILE"} {
		if got := FlagKey(in); got != want {
			t.Errorf("FlagKey(%s) = %s", in, got)
		}
	}
}
