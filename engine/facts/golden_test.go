package facts

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/golden"
)

func ptr[T any](v T) *T { return &v }

// sample is a fixed collection over three hosts: one healthy, one whose
// etcd is stopped with its data offline, one that timed out.
func sample() *Facts {
	return &Facts{
		Kind: Kind, Version: Version,
		CollectedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Inventory:   "inventory.yaml",
		Timeout:     Duration(5 * time.Second),
		Elapsed:     Duration(5100 * time.Millisecond),
		Cluster: Cluster{
			Name: "prod", EtcdVersion: "3.5", Layout: "systemd", Unit: "etcd", EnvFile: "/etc/etcd/etcd.env", DataDir: "/var/lib/etcd",
			Members: []InventoryMember{
				{Name: "etcd1", Host: "node1", PeerURL: "https://10.0.0.1:2380", ClientURL: "https://10.0.0.1:2379"},
				{Name: "etcd2", Host: "node2", PeerURL: "https://10.0.0.2:2380", ClientURL: "https://10.0.0.2:2379"},
				{Name: "etcd3", Host: "node3", PeerURL: "https://10.0.0.3:2380", ClientURL: "https://10.0.0.3:2379"},
			},
			HostAddresses: map[string]string{"node1": "10.0.0.1", "node2": "10.0.0.2", "node3": "10.0.0.3"},
		},
		Hosts: []*Host{
			{Name: "node1", Address: "10.0.0.1", Member: "etcd1", Reach: ReachOK, Elapsed: Duration(310 * time.Millisecond),
				Addresses:   []string{"10.0.0.1"},
				Service:     &Service{Kind: "systemd", Unit: "etcd", Active: "active", Enabled: "enabled", Running: true},
				DataDir:     &DataDir{Path: "/var/lib/etcd", Present: true, HasMember: true, SizeBytes: 25165824},
				EtcdVersion: "3.5.35",
				Settings: &Settings{Source: "/etc/etcd/etcd.env", Name: "etcd1", DataDir: "/var/lib/etcd",
					ListenPeerURLs: []string{"https://10.0.0.1:2380"}, ListenClientURLs: []string{"https://10.0.0.1:2379", "https://127.0.0.1:2379"},
					InitialAdvertisePeerURLs: []string{"https://10.0.0.1:2380"}, AdvertiseClientURLs: []string{"https://10.0.0.1:2379"},
					InitialCluster:      "etcd1=https://10.0.0.1:2380,etcd2=https://10.0.0.2:2380,etcd3=https://10.0.0.3:2380",
					InitialClusterState: "new", InitialClusterToken: "prod-1",
					CertFile: "/etc/etcd/pki/etcd1.crt", KeyFile: "/etc/etcd/pki/etcd1.key", TrustedCAFile: "/etc/etcd/pki/ca.crt",
					PeerCertFile: "/etc/etcd/pki/etcd1.crt", PeerKeyFile: "/etc/etcd/pki/etcd1.key", PeerTrustedCAFile: "/etc/etcd/pki/ca.crt"},
				PeerPort: ptr(true), ClientPort: ptr(true),
				Certificates: []Certificate{{Setting: "ETCD_CERT_FILE, ETCD_PEER_CERT_FILE", Path: "/etc/etcd/pki/etcd1.crt", Present: true,
					Subject: "CN=etcd1", SANs: []string{"IP:10.0.0.1", "IP:127.0.0.1", "DNS:localhost"},
					NotBefore: time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
					Issuer: "CN=prod etcd CA", KeyType: "ecdsa-p256"}}},
			{Name: "node2", Address: "10.0.0.2", Member: "etcd2", Reach: ReachOK, Elapsed: Duration(1200 * time.Millisecond),
				Addresses:   []string{"10.0.0.12"},
				Service:     &Service{Kind: "systemd", Unit: "etcd", Active: "failed", Enabled: "enabled"},
				DataDir:     &DataDir{Path: "/var/lib/etcd", Present: true, HasMember: true, SizeBytes: 20971520, OfflineRevision: 10234},
				EtcdVersion: "3.5.35",
				Settings: &Settings{Source: "/etc/etcd/etcd.env", Name: "etcd2",
					CertFile: "/etc/etcd/pki/server.crt", PeerCertFile: "/etc/etcd/pki/peer.crt"},
				PeerPort: ptr(false), ClientPort: ptr(false),
				Certificates: []Certificate{
					{Setting: "ETCD_CERT_FILE", Path: "/etc/etcd/pki/server.crt", Present: true,
						Subject: "CN=etcd2", SANs: []string{"IP:10.0.0.2", "IP:127.0.0.1", "DNS:localhost"},
						NotBefore: time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
						Issuer: "CN=prod etcd CA", KeyType: "rsa-2048"},
					{Setting: "ETCD_PEER_CERT_FILE", Path: "/etc/etcd/pki/peer.crt"},
				},
				Notes: []string{"systemctl is-active: exit 3"}},
			{Name: "node3", Address: "10.0.0.3", Member: "etcd3", Reach: ReachTimeout, Error: "no answer within the timeout", Elapsed: Duration(5 * time.Second)},
		},
		Members: []*Member{
			{Name: "etcd1", Host: "node1", ClientURL: "https://10.0.0.1:2379", API: APIAnswered,
				Status: &Status{MemberID: "8e9e05c52164694d", ClusterID: "cdf818194e3a8c32", Leader: "0", Version: "3.5.35",
					Revision: 10271, RaftTerm: 4, RaftIndex: 10311, RaftAppliedIndex: 10311, DBSize: 25165824, DBSizeInUse: 16384000,
					Alarms: []string{"NOSPACE"}, Errors: []string{"memberID:8e9e05c52164694d alarm:NOSPACE "}},
				MemberList: []ListedMember{
					{ID: "8e9e05c52164694d", Name: "etcd1", PeerURLs: []string{"https://10.0.0.1:2380"}, ClientURLs: []string{"https://10.0.0.1:2379"}},
					{ID: "91bc3c398fb3c146", Name: "etcd2", PeerURLs: []string{"https://10.0.0.2:2380"}, ClientURLs: []string{"https://10.0.0.2:2379"}},
					{ID: "fd422379fda50e48", Name: "etcd3", PeerURLs: []string{"https://10.0.0.3:2380"}, ClientURLs: []string{"https://10.0.0.3:2379"}},
				},
				HashKV: &HashKV{Hash: 1084519789, Revision: 10271, CompactRevision: 9000}},
			{Name: "etcd2", Host: "node2", ClientURL: "https://10.0.0.2:2379", API: APIDown,
				Error: "nothing listens on the client port: etcd status of https://10.0.0.2:2379: connecting to 10.0.0.2:2379: ssh: rejected: connect failed (Connection refused)"},
			{Name: "etcd3", Host: "node3", ClientURL: "https://10.0.0.3:2379", API: APICouldNotAsk, Error: "not asked: ssh to host node3 failed (timeout)"},
		},
	}
}

// The JSON shape (kind/version) is pinned, and it reads back unchanged
// (diagnose --facts reads these files).
func TestJSONGolden(t *testing.T) {
	f := sample()
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/facts.golden.json", append(b, '\n'))
	var back Facts
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f, &back) {
		t.Errorf("round trip differs:\n%s", diff(f, &back))
	}
}

func TestTableGolden(t *testing.T) {
	var b bytes.Buffer
	if err := sample().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/facts.golden.txt", b.Bytes())
}
