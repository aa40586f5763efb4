package e2e

// End-to-end over TLS: a lab whose etcd has https client and peer URLs and
// requires client certificates on both (lab.Options.TLS; the inventory's
// cluster.tls names the lab's CA and the operator's client certificate).
// The real binary repairs it with the example plans, unchanged: the
// restore of every member from the snapshot after total-loss, and the
// replacement of a lost host (which the lab provisions with the
// certificates). Besides recoverLab's checks, the run must really have
// spoken TLS: every etcd API call in its events.jsonl names an https URL
// (none plain http), calls to every member succeeded, and the members'
// env files still have https and client-cert-auth afterwards.
//
//	go test ./tests/e2e/ -run TestE2ETLS -v

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework"
)

func TestE2ETLS(t *testing.T) {
	e := newE2E(t)
	for _, sc := range []scenario{
		{plan: "restore-all-from-snapshot", brk: "total-loss", members: 3, restore: true},
		{plan: "lost-host", brk: "lost-host", members: 3},
	} {
		t.Run(sc.plan, func(t *testing.T) {
			l := framework.UpLab(t, lab.Options{Members: sc.members, Version: "3.6", TLS: true})
			if !l.TLS() {
				t.Fatal("the lab was asked for TLS but says it has none")
			}
			checkInventoryTLS(t, l)
			st, stateDir := e.recoverLab(t, l, sc)
			checkInventoryTLS(t, l) // as the break rewrote it
			checkEnvTLS(t, l)
			checkRunTLS(t, l, framework.ReadEvents(t, stateDir, st.RunID), sc)
		})
	}
}

// checkInventoryTLS: the inventory the run used has https member URLs and
// cluster.tls with the lab's files.
func checkInventoryTLS(t *testing.T, l *lab.Lab) {
	t.Helper()
	b, err := os.ReadFile(l.InventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	var inv struct {
		Cluster struct {
			TLS     map[string]string   `yaml:"tls"`
			Members []map[string]string `yaml:"members"`
		} `yaml:"cluster"`
	}
	if err := yaml.Unmarshal(b, &inv); err != nil {
		t.Fatalf("inventory: %v", err)
	}
	c := inv.Cluster
	if c.TLS["ca"] != l.CACertPath() || c.TLS["cert"] != l.ClientCertPath() || c.TLS["key"] != l.ClientCertKeyPath() {
		t.Errorf("inventory cluster.tls = %v, want the lab's CA %s and client certificate %s, %s", c.TLS, l.CACertPath(), l.ClientCertPath(), l.ClientCertKeyPath())
	}
	if len(c.Members) == 0 {
		t.Error("inventory has no members")
	}
	for _, m := range c.Members {
		if !strings.HasPrefix(m["peerURL"], "https://") || !strings.HasPrefix(m["clientURL"], "https://") {
			t.Errorf("inventory member %v: want https URLs", m)
		}
	}
}

// checkEnvTLS: after the recovery every member's env file still serves
// https only, with client certificates required on both ports (set-config
// rewrote the URLs and kept the TLS lines).
func checkEnvTLS(t *testing.T, l *lab.Lab) {
	t.Helper()
	for _, m := range l.Members() {
		h, _ := l.Host(m.Host)
		env := framework.HostRun(t, l, m.Host, "cat "+lab.EnvFile)
		for _, want := range []string{
			"ETCD_NAME=" + m.Name,
			"ETCD_LISTEN_CLIENT_URLS=https://" + h.Address + ":2379,https://127.0.0.1:2379",
			"ETCD_ADVERTISE_CLIENT_URLS=https://" + h.Address + ":2379",
			"ETCD_LISTEN_PEER_URLS=https://" + h.Address + ":2380",
			"ETCD_INITIAL_ADVERTISE_PEER_URLS=https://" + h.Address + ":2380",
			"ETCD_CERT_FILE=" + lab.HostServerCert, "ETCD_KEY_FILE=" + lab.HostServerKey, "ETCD_TRUSTED_CA_FILE=" + lab.HostCACert,
			"ETCD_CLIENT_CERT_AUTH=true",
			"ETCD_PEER_CERT_FILE=" + lab.HostServerCert, "ETCD_PEER_KEY_FILE=" + lab.HostServerKey, "ETCD_PEER_TRUSTED_CA_FILE=" + lab.HostCACert,
			"ETCD_PEER_CLIENT_CERT_AUTH=true",
		} {
			if !strings.Contains(env, want+"\n") {
				t.Errorf("%s (%s): %s has no line %s after the recovery:\n%s", m.Host, m.Name, lab.EnvFile, want, env)
			}
		}
		if strings.Contains(env, "http://") {
			t.Errorf("%s: %s has a plain http URL after the recovery:\n%s", m.Host, lab.EnvFile, env)
		}
	}
}

// checkRunTLS: the run's etcd API calls went to https URLs only, and calls
// naming each member's https client URL succeeded, among them every call
// of the final verify-data step (and, for lost-host, the member add of the
// replacement's https peer URL).
func checkRunTLS(t *testing.T, l *lab.Lab, evs []framework.RunEvent, sc scenario) {
	t.Helper()
	okByURL := map[string]int{}
	var api, sameData int
	for _, ev := range evs {
		if ev.Type != "etcd" {
			continue
		}
		api++
		if strings.Contains(ev.Cmd, "http://") {
			t.Errorf("etcd API call over plain http: step %s: %s", ev.Step, ev.Cmd)
		}
		if ev.Step == "same-data" {
			sameData++
			if ev.Error != "" {
				t.Errorf("verify-data's API call failed: %s: %s", ev.Cmd, ev.Error)
			}
		}
		if ev.Error != "" {
			continue
		}
		for _, f := range strings.Fields(ev.Cmd) {
			if strings.HasPrefix(f, "https://") {
				okByURL[strings.TrimRight(f, ",")]++
			}
		}
	}
	if api == 0 || sameData == 0 {
		t.Fatalf("the run journalled %d etcd API calls, %d of them in same-data: nothing to check", api, sameData)
	}
	for _, m := range l.Members() {
		peer, client, err := l.MemberURLs(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		if okByURL[client] == 0 {
			t.Errorf("no successful etcd API call to %s (%s) in the run", client, m.Name)
		}
		if sc.brk == "lost-host" && m.Name == "etcd2" && okByURL[peer] == 0 {
			t.Errorf("no successful member add of %s in the run", peer)
		}
	}
	t.Logf("the run made %d etcd API calls, all to https URLs; successful ones by URL: %v", api, okByURL)
}
