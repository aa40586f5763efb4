package plans

import (
	"time"

	"gopkg.in/yaml.v3"
)

// Plan is one recovery scenario: the cluster it acts on, the hosts, and a DAG
// of typed steps.
type Plan struct {
	Version     int               `yaml:"version" rescue:"required" doc:"plan format version; must be 1"`
	Name        string            `yaml:"name" rescue:"required" doc:"short name of the scenario"`
	Description string            `yaml:"description" doc:"what happened and what this plan does"`
	Inventory   string            `yaml:"inventory" doc:"file with cluster:, hosts: and ssh: (relative to the plan); --inventory overrides it"`
	Cluster     *Cluster          `yaml:"cluster" doc:"the etcd cluster as it must be after recovery"`
	Hosts       map[string]*Host  `yaml:"hosts" doc:"machines the plan acts on, by name"`
	SSH         *SSH              `yaml:"ssh" doc:"how to reach the hosts"`
	S3          *S3               `yaml:"s3" doc:"the S3-compatible object store of snapshot-save to: s3://... and snapshot-fetch"`
	State       *StateStore       `yaml:"state" doc:"the team's shared store of run state and run locks (a management etcd), used when --state is not given"`
	Vars        map[string]string `yaml:"vars" doc:"plan variables, used as ${vars.NAME}"`
	Steps       []*Step           `yaml:"steps" rescue:"required" doc:"the steps; order comes from needs:, not from the list"`

	File   string         `yaml:"-"` // path of the plan file
	Raw    []byte         `yaml:"-"` // plan file bytes (hashed for resume)
	InvRaw []byte         `yaml:"-"` // inventory bytes, if any
	Pos    Pos            `yaml:"-"`
	KeyPos map[string]Pos `yaml:"-"`
	// SSHBase and ClusterBase are the directories of the files that
	// defined ssh: and cluster: (the plan's, or its inventory's): relative
	// local paths in them (ssh identity, knownHosts and config, cluster.tls)
	// are relative to that file, like every other path a plan names (see
	// [LocalFile]).
	SSHBase     string `yaml:"-"`
	ClusterBase string `yaml:"-"`
	// S3Base is the directory of the file that defined s3: (its ca:).
	S3Base string `yaml:"-"`
	// StateBase is the directory of the file that defined state: (its
	// TLS files).
	StateBase string `yaml:"-"`
}

// Cluster is the etcd cluster the plan produces. Every per-member etcd flag
// (--name, --initial-cluster, --initial-advertise-peer-urls,
// --initial-cluster-token, --data-dir) is derived from it.
type Cluster struct {
	Name         string      `yaml:"name" rescue:"required" doc:"cluster name (for messages)"`
	Token        string      `yaml:"token" doc:"--initial-cluster-token for a new cluster; one token for every member (required by restore and force-new-cluster)"`
	EtcdVersion  string      `yaml:"etcdVersion" rescue:"required" doc:"etcd version on the hosts: 3.4, 3.5, 3.6, 3.7 or a full x.y.z"`
	Layout       Layout      `yaml:"layout" doc:"how etcd runs on the hosts"`
	TLS          *TLS        `yaml:"tls" doc:"client TLS files on the operator machine, for the etcd API"`
	ClientAccess string      `yaml:"clientAccess" enum:"ssh-tunnel|direct" default:"ssh-tunnel" doc:"reach client URLs through the host's SSH connection, or directly"`
	Members      []*Member   `yaml:"members" rescue:"required" doc:"every member of the cluster after recovery"`
	Kubernetes   *Kubernetes `yaml:"kubernetes" doc:"the Kubernetes control plane that uses this etcd, for the kube-* steps"`

	Pos    Pos            `yaml:"-"`
	KeyPos map[string]Pos `yaml:"-"`
}

// Layout says how etcd is run on the hosts.
type Layout struct {
	Service  string `yaml:"service" enum:"systemd|static-pod" default:"systemd" doc:"systemd unit or kubelet static pod"`
	Unit     string `yaml:"unit" default:"etcd" doc:"systemd unit of etcd"`
	EnvFile  string `yaml:"envFile" default:"/etc/etcd/etcd.env" doc:"file with ETCD_* settings read by the unit"`
	Manifest string `yaml:"manifest" default:"/etc/kubernetes/manifests/etcd.yaml" doc:"static pod manifest of etcd"`
	DataDir  string `yaml:"dataDir" default:"/var/lib/etcd" doc:"etcd data directory on every member"`
	Owner    string `yaml:"owner" default:"etcd:etcd" doc:"user:group that owns the data dir; \"\" for none"`
	BinDir   string `yaml:"binDir" doc:"directory of etcd, etcdctl and etcdutl on the hosts; empty means PATH"`
	PKI      *PKI   `yaml:"pki" doc:"etcd's certificate files on the hosts, where the env file or manifest does not name them, and the expiry margin"`

	Pos    Pos            `yaml:"-"`
	KeyPos map[string]Pos `yaml:"-"`
}

// Kubernetes is the Kubernetes control plane whose API servers use the
// etcd cluster: how its components run on the control-plane hosts, and how
// etcd-rescue reaches the API servers (readiness, the relist proof).
type Kubernetes struct {
	ControlPlane string     `yaml:"controlPlane" enum:"static-pod|systemd" doc:"how kube-apiserver, kube-controller-manager and kube-scheduler run: kubelet static pods (kubeadm, kubespray) or systemd units (kubeasz, hard way); default: static-pod when cluster.layout.service is static-pod, else systemd"`
	Manifests    string     `yaml:"manifests" default:"/etc/kubernetes/manifests" doc:"the kubelet's static pod directory (controlPlane: static-pod)"`
	Components   []string   `yaml:"components" doc:"control-plane components stopped before a restore and started after it, in this order for the stop (reverse for the start); a host without one of them is fine; default: kube-apiserver, kube-controller-manager, kube-scheduler"`
	Hosts        []string   `yaml:"hosts" doc:"control-plane hosts (keys of hosts:); default: the hosts of the members"`
	APIServer    *APIServer `yaml:"apiServer" doc:"how to reach every API server (on each control-plane host's address)"`

	Pos    Pos            `yaml:"-"`
	KeyPos map[string]Pos `yaml:"-"`
}

// APIServer says how etcd-rescue talks to the Kubernetes API servers: over
// HTTPS to each control-plane host's address, through the host's SSH
// connection when cluster.clientAccess is ssh-tunnel.
type APIServer struct {
	Port int    `yaml:"port" default:"6443" doc:"secure port of kube-apiserver"`
	CA   string `yaml:"ca" doc:"CA bundle that signed the API servers' serving certificates, on the operator machine"`
	Cert string `yaml:"cert" doc:"client certificate for the relist proof (a watch needs an identity allowed to watch ConfigMaps), on the operator machine"`
	Key  string `yaml:"key" doc:"its key (its content is never logged)"`
	// ServerName is checked in the serving certificate instead of the host's address.
	ServerName string `yaml:"serverName" doc:"name to verify in the serving certificates instead of each host's address"`

	Pos    Pos            `yaml:"-"`
	KeyPos map[string]Pos `yaml:"-"`
}

// PKI says where etcd's certificate files are on the hosts when the env
// file or manifest does not name them, and how long a certificate must
// still be valid.
type PKI struct {
	ServerCert    string `yaml:"serverCert" doc:"server (client URL) certificate, as --cert-file"`
	ServerKey     string `yaml:"serverKey" doc:"its private key, as --key-file (never read by etcd-rescue)"`
	TrustedCA     string `yaml:"trustedCA" doc:"CA bundle for clients, as --trusted-ca-file"`
	PeerCert      string `yaml:"peerCert" doc:"peer certificate, as --peer-cert-file"`
	PeerKey       string `yaml:"peerKey" doc:"its private key, as --peer-key-file (never read by etcd-rescue)"`
	PeerTrustedCA string `yaml:"peerTrustedCA" doc:"CA bundle for peers, as --peer-trusted-ca-file"`
	MinValidDays  *int   `yaml:"minValidDays" doc:"a member certificate must stay valid this many more days (default 7; 0: no margin, an expired certificate is always refused)"`

	Pos    Pos            `yaml:"-"`
	KeyPos map[string]Pos `yaml:"-"`
}

// DefaultMinValidDays is the expiry margin when layout.pki.minValidDays is
// not set.
const DefaultMinValidDays = 7

// MinValid is how long a member certificate must still be valid: 7 days
// unless layout.pki.minValidDays says otherwise.
func (l *Layout) MinValid() time.Duration {
	d := DefaultMinValidDays
	if l.PKI != nil && l.PKI.MinValidDays != nil {
		d = *l.PKI.MinValidDays
	}
	return time.Duration(d) * 24 * time.Hour
}

// TLS files for the etcd client API, on the operator machine.
type TLS struct {
	CA         string `yaml:"ca" doc:"CA bundle"`
	Cert       string `yaml:"cert" doc:"client certificate"`
	Key        string `yaml:"key" doc:"client key (its content is never logged)"`
	ServerName string `yaml:"serverName" doc:"name to verify in server certificates"`

	Pos Pos `yaml:"-"`
}

// Member is one etcd member after recovery.
type Member struct {
	Name      string `yaml:"name" rescue:"required" doc:"etcd --name"`
	Host      string `yaml:"host" rescue:"required" doc:"host (key of hosts:) the member runs on"`
	PeerURL   string `yaml:"peerURL" rescue:"required" doc:"peer URL, e.g. https://10.0.0.1:2380"`
	ClientURL string `yaml:"clientURL" rescue:"required" doc:"client URL, e.g. https://10.0.0.1:2379"`

	Pos    Pos            `yaml:"-"`
	KeyPos map[string]Pos `yaml:"-"`
}

// Host is a machine reached over SSH.
type Host struct {
	Address string `yaml:"address" rescue:"required" doc:"IP address or DNS name; with ssh.config, also a Host alias of that file"`
	Port    int    `yaml:"port" default:"22" doc:"SSH port"`
	User    string `yaml:"user" doc:"SSH user; defaults to ssh.user"`

	Name   string         `yaml:"-"`
	Pos    Pos            `yaml:"-"`
	KeyPos map[string]Pos `yaml:"-"`
}

// SSH settings shared by every host.
type SSH struct {
	User                  string   `yaml:"user" default:"root" doc:"login user"`
	Identity              string   `yaml:"identity" doc:"private key file"`
	KnownHosts            string   `yaml:"knownHosts" default:"~/.ssh/known_hosts" doc:"known_hosts file; host keys are always verified unless insecureIgnoreHostKey"`
	Agent                 bool     `yaml:"agent" doc:"also use keys from $SSH_AUTH_SOCK"`
	Sudo                  bool     `yaml:"sudo" doc:"run commands with sudo -n (for a non-root user)"`
	Jump                  string   `yaml:"jump" doc:"jump host, user@host:port"`
	Config                string   `yaml:"config" doc:"OpenSSH client config file (e.g. ~/.ssh/config) read for each host address as a Host alias: HostName, User, Port, IdentityFile, ProxyJump, UserKnownHostsFile fill what the plan leaves unset; host keys stay verified"`
	Timeout               Duration `yaml:"timeout" default:"10s" rescue:"positive" doc:"connect timeout"`
	InsecureIgnoreHostKey bool     `yaml:"insecureIgnoreHostKey" doc:"DANGEROUS: accept any host key (lab only); loudly reported"`

	Pos    Pos            `yaml:"-"`
	KeyPos map[string]Pos `yaml:"-"`
}

// Step is one node of the plan's DAG.
type Step struct {
	ID          string    `yaml:"id" rescue:"required" doc:"unique step id"`
	Type        string    `yaml:"type" rescue:"required" doc:"step type (etcd-rescue steps)"`
	Description string    `yaml:"description" doc:"why this step is here"`
	On          Strings   `yaml:"on" doc:"hosts: all, members, a host name, a member name, or a list"`
	Needs       Strings   `yaml:"needs" doc:"ids of steps that must be done first"`
	With        yaml.Node `yaml:"with" doc:"parameters of the step type, decoded strictly"`
	Timeout     Duration  `yaml:"timeout" rescue:"positive" doc:"time limit per host; when left out, the step type's default deadline (10m; longer for types that wait or transfer: see the dry-run)"`
	Retries     int       `yaml:"retries" doc:"extra attempts after a failure (only for steps safe to repeat)"`
	Barrier     bool      `yaml:"barrier" doc:"true: on every host, wait until each need is done on ALL its hosts, even where the engine would let this step go on per host (see the dry-run's runs per host line)"`

	Pos    Pos            `yaml:"-"`
	KeyPos map[string]Pos `yaml:"-"`
}

// HasWith reports whether the step has a with: mapping.
func (s *Step) HasWith() bool { return s.With.Kind != 0 }

// WithPos is the position of the with: value, or of the step when absent.
func (s *Step) WithPos() Pos {
	if p, ok := s.KeyPos["with"]; ok {
		return p
	}
	return s.Pos
}

// At returns the position of a step key, falling back to the step.
func (s *Step) At(key string) Pos {
	if p, ok := s.KeyPos[key]; ok {
		return p
	}
	return s.Pos
}

// MemberByName finds a member.
func (c *Cluster) MemberByName(name string) *Member {
	for _, m := range c.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// MemberOnHost finds the member that runs on host.
func (c *Cluster) MemberOnHost(host string) *Member {
	for _, m := range c.Members {
		if m.Host == host {
			return m
		}
	}
	return nil
}

// IsSet reports whether key was written in the host's mapping, as opposed
// to filled in by a default.
func (h *Host) IsSet(key string) bool {
	_, ok := h.KeyPos[key]
	return ok
}

// IsSet reports whether key was written in the ssh: mapping (of the plan or
// the inventory), as opposed to filled in by a default: an OpenSSH config
// file (ssh.config) fills only what the plan leaves unset.
func (s *SSH) IsSet(key string) bool {
	_, ok := s.KeyPos[key]
	return ok
}

// DefaultComponents are the control-plane components of cluster.kubernetes
// when components: is left out, in the order they are stopped.
var DefaultComponents = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// applyDefaults fills what the defaults of the tags cannot: controlPlane
// follows cluster.layout.service, components and hosts have list
// defaults, and apiServer: left out still has its port.
func (k *Kubernetes) applyDefaults(c *Cluster) {
	if k.ControlPlane == "" {
		k.ControlPlane = "systemd"
		if c.Layout.Service == "static-pod" {
			k.ControlPlane = "static-pod"
		}
	}
	if k.Manifests == "" {
		k.Manifests = "/etc/kubernetes/manifests"
	}
	if _, set := k.KeyPos["components"]; !set && len(k.Components) == 0 {
		k.Components = append([]string(nil), DefaultComponents...)
	}
	if _, set := k.KeyPos["hosts"]; !set && len(k.Hosts) == 0 {
		seen := map[string]bool{}
		for _, m := range c.Members {
			if m != nil && m.Host != "" && !seen[m.Host] {
				seen[m.Host] = true
				k.Hosts = append(k.Hosts, m.Host)
			}
		}
	}
	if k.APIServer == nil {
		k.APIServer = &APIServer{}
		SetDefaults(k.APIServer)
	}
}

// At is the position of a key of cluster.kubernetes, or of the section.
func (k *Kubernetes) At(key string) Pos {
	if p, ok := k.KeyPos[key]; ok {
		return p
	}
	return k.Pos
}

// At is the position of a key of cluster.kubernetes.apiServer, or of the
// section (of cluster.kubernetes when apiServer: is left out).
func (a *APIServer) At(k *Kubernetes, key string) Pos {
	if p, ok := a.KeyPos[key]; ok {
		return p
	}
	if a.Pos.Line > 0 {
		return a.Pos
	}
	return k.At("apiServer")
}
