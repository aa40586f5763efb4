// Package facts is the read-only picture of a live etcd cluster: what each
// host of an inventory says over SSH (reachability, host key, addresses,
// etcd service, data dir, installed version, the settings etcd will start
// with) and what each member says through the client API (member list,
// endpoint status, HashKV). Collect builds it; diagnose reads it; `new
// --from-facts` fills plans from it.
//
// Two things are never confused here: "could not ask" (SSH refused our key,
// the host key is unknown, a timeout) and "asked, and the answer is no"
// (etcd not running, data dir absent). A Reach or an API state says which.
//
// The JSON form is versioned (Kind, Version); docs/cli.md documents it and a
// golden test pins it. Nothing in it is secret: settings that could hold a
// secret are shown as "(redacted)".
package facts

import "time"

// Kind and Version identify the JSON document.
const (
	Kind    = "etcd-rescue/facts"
	Version = 1
)

// Facts is one collection over an inventory.
type Facts struct {
	Kind        string    `json:"kind"`
	Version     int       `json:"version"`
	CollectedAt time.Time `json:"collectedAt"`
	Inventory   string    `json:"inventory"` // path as given
	Timeout     Duration  `json:"timeout"`   // per-host bound used
	Elapsed     Duration  `json:"elapsed"`   // wall time of the whole collection
	Cluster     Cluster   `json:"cluster"`   // what the inventory says
	Hosts       []*Host   `json:"hosts"`     // inventory hosts, sorted by name
	Members     []*Member `json:"members"`   // inventory members, in inventory order
}

// Cluster is the inventory's description of the cluster (as it must be
// after recovery), copied so that a facts file stands alone.
type Cluster struct {
	Name          string            `json:"name"`
	EtcdVersion   string            `json:"etcdVersion"`
	Layout        string            `json:"layout"` // systemd | static-pod
	Unit          string            `json:"unit,omitempty"`
	EnvFile       string            `json:"envFile,omitempty"`
	Manifest      string            `json:"manifest,omitempty"`
	DataDir       string            `json:"dataDir"`
	Members       []InventoryMember `json:"members"`
	HostAddresses map[string]string `json:"hostAddresses"` // inventory host name -> address
	// ControlPlane is the inventory's cluster.kubernetes.controlPlane
	// (static-pod | systemd), "" without that section; ControlPlaneHosts
	// are its hosts. Copied, not probed: diagnose says what a recovery
	// means for the Kubernetes control plane.
	ControlPlane      string   `json:"controlPlane,omitempty"`
	ControlPlaneHosts []string `json:"controlPlaneHosts,omitempty"`
}

// InventoryMember is one member as the inventory names it.
type InventoryMember struct {
	Name      string `json:"name"`
	Host      string `json:"host"`
	PeerURL   string `json:"peerURL"`
	ClientURL string `json:"clientURL"`
}

// Reach says whether a host could be asked over SSH.
type Reach string

const (
	ReachOK Reach = "ok" // connected and authenticated; commands ran
	// Could not ask: the host may well be alive.
	ReachTimeout        Reach = "timeout"          // no answer within the timeout (host down, link down, firewall)
	ReachRefused        Reach = "refused"          // TCP connection refused: the machine is up, sshd is not
	ReachNoRoute        Reach = "no-route"         // no route / host unreachable / DNS failure
	ReachHostKeyUnknown Reach = "host-key-unknown" // host not in known_hosts: never trusted, never asked
	ReachHostKeyChanged Reach = "host-key-changed" // known_hosts records another key: never trusted
	ReachAuthFailed     Reach = "auth-failed"      // our key was refused
	ReachSudoFailed     Reach = "sudo-failed"      // logged in, but sudo -n refused
	ReachError          Reach = "error"            // anything else; see Host.Error
)

// Asked reports whether the host answered our commands.
func (r Reach) Asked() bool { return r == ReachOK }

// Host is what one inventory host says about itself.
type Host struct {
	Name    string   `json:"name"`
	Address string   `json:"address"`          // inventory address
	Member  string   `json:"member,omitempty"` // inventory member on this host
	Reach   Reach    `json:"reach"`
	Error   string   `json:"error,omitempty"` // why Reach is not ok, one line
	Elapsed Duration `json:"elapsed"`

	// Below: only when Reach is ok.
	Addresses   []string  `json:"addresses,omitempty"`           // global IPs on the host's interfaces now
	Service     *Service  `json:"service,omitempty"`             // etcd service state
	DataDir     *DataDir  `json:"dataDir,omitempty"`             // the layout's data dir
	EtcdVersion string    `json:"etcdVersion,omitempty"`         // `etcd --version` of the installed binary, e.g. 3.5.35; "" if absent
	Settings    *Settings `json:"settings,omitempty"`            // what etcd will start with; nil if no env file / manifest
	PeerPort    *bool     `json:"peerPortListening,omitempty"`   // something listens on the member's peer port
	ClientPort  *bool     `json:"clientPortListening,omitempty"` // something listens on the member's client port
	// Certificates are the certificate files the settings name (server,
	// peer), as read on the host; nil when the settings name none.
	Certificates []Certificate `json:"certificates,omitempty"`
	Notes        []string      `json:"notes,omitempty"` // a probe that failed on the host, with its reason
}

// Service is the state of etcd's systemd unit or static pod manifest.
type Service struct {
	Kind            string `json:"kind"` // systemd | static-pod
	Unit            string `json:"unit,omitempty"`
	Active          string `json:"active,omitempty"`  // systemctl is-active: active, inactive, failed, activating, unknown
	Enabled         string `json:"enabled,omitempty"` // systemctl is-enabled: enabled, disabled, masked, not-found
	Manifest        string `json:"manifest,omitempty"`
	ManifestPresent bool   `json:"manifestPresent,omitempty"`
	Running         bool   `json:"running"` // an etcd process runs on the host
}

// DataDir is the state of the data dir.
type DataDir struct {
	Path      string `json:"path"`
	Present   bool   `json:"present"`
	HasMember bool   `json:"hasMember"` // member/ inside: etcd has data here
	SizeBytes int64  `json:"sizeBytes"`
	// Revision read offline from member/snap/db (etcdutl snapshot status),
	// only when etcd is not running; 0 when unknown.
	OfflineRevision int64 `json:"offlineRevision,omitempty"`
}

// Settings are the etcd settings the service will start with, from the env
// file (ETCD_* variables) or the manifest's command flags.
type Settings struct {
	Source                   string   `json:"source"` // file path
	Name                     string   `json:"name,omitempty"`
	DataDir                  string   `json:"dataDir,omitempty"`
	ListenPeerURLs           []string `json:"listenPeerURLs,omitempty"`
	ListenClientURLs         []string `json:"listenClientURLs,omitempty"`
	InitialAdvertisePeerURLs []string `json:"initialAdvertisePeerURLs,omitempty"`
	AdvertiseClientURLs      []string `json:"advertiseClientURLs,omitempty"`
	InitialCluster           string   `json:"initialCluster,omitempty"`
	InitialClusterState      string   `json:"initialClusterState,omitempty"`
	InitialClusterToken      string   `json:"initialClusterToken,omitempty"`
	ForceNewCluster          bool     `json:"forceNewCluster,omitempty"`
	// The TLS files etcd will use (paths on the host).
	CertFile          string `json:"certFile,omitempty"`
	KeyFile           string `json:"keyFile,omitempty"`
	TrustedCAFile     string `json:"trustedCAFile,omitempty"`
	PeerCertFile      string `json:"peerCertFile,omitempty"`
	PeerKeyFile       string `json:"peerKeyFile,omitempty"`
	PeerTrustedCAFile string `json:"peerTrustedCAFile,omitempty"`
}

// APIState says whether a member's client API could be asked.
type APIState string

const (
	APIAnswered APIState = "answered" // it answered Status
	// Asked, and the answer is no: the host answered over SSH and nothing
	// listens on the client port (etcd is not running there).
	APIDown APIState = "down"
	// Could not ask: the host's SSH failed (see its Reach), or the call
	// timed out or was refused by TLS/auth; the member may be alive.
	APICouldNotAsk APIState = "could-not-ask"
)

// Member is what one inventory member says through the client API, dialled
// at its inventory client URL through its host's SSH connection (or
// directly, as the inventory's clientAccess says).
type Member struct {
	Name      string   `json:"name"`
	Host      string   `json:"host"`
	ClientURL string   `json:"clientURL"`
	API       APIState `json:"api"`
	Error     string   `json:"error,omitempty"`

	Status *Status `json:"status,omitempty"`
	// MemberList is the cluster's member list as this member sees it
	// (serializable: answered without quorum).
	MemberList []ListedMember `json:"memberList,omitempty"`
	// HashKV at this member's current revision; nil when not asked or failed.
	HashKV *HashKV `json:"hashKV,omitempty"`
}

// Status is etcdctl endpoint status.
type Status struct {
	MemberID         string   `json:"memberID"` // hex, as etcdctl prints it
	ClusterID        string   `json:"clusterID"`
	Leader           string   `json:"leader"` // hex; "0" when the member knows no leader
	IsLearner        bool     `json:"isLearner"`
	Version          string   `json:"version"`
	Revision         int64    `json:"revision"`
	RaftTerm         uint64   `json:"raftTerm"`
	RaftIndex        uint64   `json:"raftIndex"`
	RaftAppliedIndex uint64   `json:"raftAppliedIndex"`
	DBSize           int64    `json:"dbSize"`
	DBSizeInUse      int64    `json:"dbSizeInUse"`
	Alarms           []string `json:"alarms,omitempty"` // NOSPACE, CORRUPT (from the member's own alarm list)
	Errors           []string `json:"errors,omitempty"` // status errors, as etcd reports them
}

// HasLeader reports whether the member knows a leader.
func (s *Status) HasLeader() bool { return s != nil && s.Leader != "" && s.Leader != "0" }

// ListedMember is one entry of a member list.
type ListedMember struct {
	ID         string   `json:"id"` // hex
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

// HashKV is one member's HashKV answer.
type HashKV struct {
	Hash            uint32 `json:"hash"`
	Revision        int64  `json:"revision"`
	CompactRevision int64  `json:"compactRevision"`
}

// Duration is a time.Duration that marshals as a Go duration string ("1.2s").
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// HostByName finds a host.
func (f *Facts) HostByName(name string) *Host {
	for _, h := range f.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// MemberByName finds an inventory member.
func (f *Facts) MemberByName(name string) *Member {
	for _, m := range f.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}
