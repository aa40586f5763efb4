package steps

import (
	"context"
	"net/url"
	"sort"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// derivedKeys are etcd settings the engine derives from cluster:; a plan may
// not set them by hand (a per-node token or a peer URL that does not match
// --initial-cluster is exactly the mistake this prevents).
var derivedKeys = []string{
	"ETCD_NAME", "ETCD_DATA_DIR", "ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE",
	"ETCD_INITIAL_CLUSTER_TOKEN", "ETCD_INITIAL_ADVERTISE_PEER_URLS", "ETCD_ADVERTISE_CLIENT_URLS",
	"ETCD_LISTEN_PEER_URLS", "ETCD_LISTEN_CLIENT_URLS", "ETCD_FORCE_NEW_CLUSTER",
}

// kv is one setting in ETCD_* form.
type kv struct{ Key, Value string }

// flagName turns ETCD_INITIAL_CLUSTER into --initial-cluster.
func flagName(key string) string {
	return "--" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(key, "ETCD_")), "_", "-")
}

// editConfig renders the command that sets and unsets etcd settings in the
// member's configuration: the env file for systemd, the static pod manifest's
// command flags otherwise. The file is rewritten to a temp file and renamed.
func editConfig(c *Ctx, set []kv, unset []string) string {
	var drop []string
	for _, s := range set {
		drop = append(drop, s.Key)
	}
	drop = append(drop, unset...)
	if c.Cluster.Layout.Service == "static-pod" {
		var pat []string
		for _, k := range drop {
			pat = append(pat, strings.TrimPrefix(flagName(k), "--"))
		}
		// Drop the flags, then add each after the "- etcd" command line.
		awk := `BEGIN{for(j=1;j<ARGC;j++){a[j]=ARGV[j]; delete ARGV[j]}; na=ARGC-1; n=split(drop,d,",")}` +
			` {for(i=1;i<=n;i++) if ($0 ~ "^[ \t]*- --" d[i] "=") next} {print}` +
			` /^[ \t]*- etcd[ \t]*$/ && !done {match($0,/^[ \t]*/); ind=substr($0,1,RLENGTH); for(j=1;j<=na;j++) print ind "- " a[j]; done=1}`
		var args []string
		for _, s := range set {
			args = append(args, flagName(s.Key)+"="+s.Value)
		}
		// The temp file is hidden (a leading dot): the kubelet reads every
		// other file in its manifest dir as a pod. It carries the run id.
		return manifestVar(c) + ` && t="${f%/*}/.${f##*/}.rescue-tmp-"` + q(c.RunID) + " && awk -v drop=" + q(strings.Join(pat, ",")) + " " + q(awk) +
			" " + join(args...) + ` < "$f" > "$t" && mv "$t" "$f"`
	}
	f := c.Cluster.Layout.EnvFile
	sort.Strings(drop)
	var lines []string
	for _, s := range set {
		lines = append(lines, s.Key+"="+s.Value)
	}
	tmp := f + ".rescue-tmp-" + c.RunID // never shared by two runs
	// cp -p keeps the file's mode and owner for the rewritten copy.
	cmd := "{ [ ! -e " + q(f) + " ] || " + join("cp", "-p", f, tmp) + "; } && { grep -v -E " + q("^("+strings.Join(drop, "|")+")=") + " " + q(f) + " 2>/dev/null || true"
	if len(lines) > 0 {
		cmd += "; printf '%s\\n' " + join(lines...)
	}
	return cmd + "; } > " + q(tmp) + " && " + join("mv", tmp, f)
}

// configTest renders a read-only test that the settings are in place.
func configTest(c *Ctx, set []kv, unset []string) string {
	var parts []string
	if c.Cluster.Layout.Service == "static-pod" {
		parts = append(parts, manifestVar(c))
		f := `"$f"`
		for _, s := range set {
			parts = append(parts, "grep -qE -- "+q(`^[[:space:]]*- `+regexpQuote(flagName(s.Key)+"="+s.Value)+`[[:space:]]*$`)+" "+f)
		}
		for _, k := range unset {
			parts = append(parts, "! grep -qE -- "+q(`^[[:space:]]*- `+flagName(k)+`=`)+" "+f)
		}
	} else {
		f := q(c.Cluster.Layout.EnvFile)
		for _, s := range set {
			parts = append(parts, "grep -qxF -- "+q(s.Key+"="+s.Value)+" "+f)
		}
		for _, k := range unset {
			parts = append(parts, "! grep -q -- "+q("^"+k+"=")+" "+f)
		}
	}
	return strings.Join(parts, " && ")
}

// manifestVar sets $f to the etcd manifest: the parked copy while
// stop-service has moved it out of the kubelet's directory, else the live one.
func manifestVar(c *Ctx) string {
	unit := c.Cluster.Layout.Unit
	return "f=" + q(parkedManifest(c, unit)) + "; [ -e \"$f\" ] || f=" + q(staticManifest(c, unit))
}

func regexpQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteRune('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// SetConfig writes the member's etcd settings, derived from cluster:, into
// its env file or static pod manifest. Note that etcd ignores --initial-*
// once the data dir exists (etcd #7570): membership changes need
// member-update, member-add or force-new-cluster, not only this step.
type SetConfig struct {
	ClusterState   string            `yaml:"clusterState" rescue:"required" enum:"new|existing" doc:"ETCD_INITIAL_CLUSTER_STATE: new for a restored or new cluster, existing for a member joining a running one"`
	InitialCluster []string          `yaml:"initialCluster" doc:"member names in ETCD_INITIAL_CLUSTER; default: every member of cluster.members. A joining member lists the members already in the cluster plus itself"`
	Set            map[string]string `yaml:"set" doc:"other ETCD_* settings to write (not the derived ones)"`
	Unset          []string          `yaml:"unset" doc:"ETCD_* settings to remove"`
}

func (*SetConfig) NeedsMember() bool { return true }

// Bootstrap: see [BootstrapsMember].
func (s *SetConfig) Bootstrap() (string, []string) { return s.ClusterState, s.InitialCluster }

func (s *SetConfig) settings(c *Ctx, t Target) ([]kv, []string) {
	m := t.Member
	if m == nil {
		return nil, nil
	}
	set := []kv{
		{"ETCD_NAME", m.Name},
		{"ETCD_DATA_DIR", c.DataDir()},
		{"ETCD_LISTEN_PEER_URLS", m.PeerURL},
		{"ETCD_LISTEN_CLIENT_URLS", listenClientURLs(m.ClientURL)},
		{"ETCD_INITIAL_ADVERTISE_PEER_URLS", m.PeerURL},
		{"ETCD_ADVERTISE_CLIENT_URLS", m.ClientURL},
		{"ETCD_INITIAL_CLUSTER", c.InitialCluster(s.InitialCluster)},
		{"ETCD_INITIAL_CLUSTER_STATE", s.ClusterState},
	}
	if s.ClusterState == "new" {
		set = append(set, kv{"ETCD_INITIAL_CLUSTER_TOKEN", c.Cluster.Token})
	}
	keys := make([]string, 0, len(s.Set))
	for k := range s.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set = append(set, kv{k, s.Set[k]})
	}
	unset := append([]string{"ETCD_FORCE_NEW_CLUSTER"}, s.Unset...)
	if s.ClusterState != "new" {
		unset = append(unset, "ETCD_INITIAL_CLUSTER_TOKEN")
	}
	return set, unset
}

func (s *SetConfig) Describe(c *Ctx, t Target) []Action {
	set, unset := s.settings(c, t)
	return []Action{{Host: t.Name(), Kind: Shell, Cmd: editConfig(c, set, unset)}}
}

func (s *SetConfig) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	set, unset := s.settings(c, t)
	return remoteTest(ctx, env, t, configTest(c, set, unset), "settings are in place")
}

func (s *SetConfig) Validate(c *Ctx, at At, fs *plans.Findings) {
	for _, n := range s.InitialCluster {
		if c.Cluster.MemberByName(n) == nil {
			fs.Add(at("initialCluster"), "initialCluster names %q, which is not in cluster.members", n)
		}
	}
	if s.ClusterState == "new" && len(s.InitialCluster) > 0 {
		var left []string
		for _, m := range c.Cluster.Members {
			if m != nil && !containsStr(s.InitialCluster, m.Name) {
				left = append(left, m.Name)
			}
		}
		if len(left) > 0 {
			fs.Add(at("initialCluster"), "initialCluster of a new cluster leaves out %s of cluster.members", strings.Join(left, ", ")).
				WithHint("a new cluster (clusterState: new) starts with every member: drop initialCluster: (its default is every member of cluster.members); etcd ignores it after a restore, so the mistake would show only at the next bootstrap")
		}
	}
	keys := make([]string, 0, len(s.Set))
	for k := range s.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch {
		case containsStr(derivedKeys, k):
			fs.Add(at("set"), "set: %s is derived from cluster: and cannot be set by hand", k).
				WithHint("every member must get the same token and cluster list; edit cluster: instead")
		case !validEnvKey(k):
			fs.Add(at("set"), "set: %q is not an ETCD_* setting name", k)
		case strings.ContainsAny(s.Set[k], "\n\r"):
			fs.Add(at("set"), "set: %s has a line break in its value", k)
		}
	}
	for _, k := range s.Unset {
		if !validEnvKey(k) {
			fs.Add(at("unset"), "unset: %q is not an ETCD_* setting name", k)
		}
	}
}

func validEnvKey(k string) bool {
	if !strings.HasPrefix(k, "ETCD_") || len(k) == len("ETCD_") {
		return false
	}
	for _, r := range k {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// listenClientURLs listens on the client URL and on loopback, so local
// clients (kubeadm's kube-apiserver uses https://127.0.0.1:2379) keep working.
func listenClientURLs(clientURL string) string {
	u, err := url.Parse(clientURL)
	if err != nil || u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost" {
		return clientURL
	}
	return clientURL + "," + u.Scheme + "://127.0.0.1:" + u.Port()
}
