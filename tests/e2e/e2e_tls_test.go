package e2e

// End-to-end over TLS: a lab whose etcd has https client and peer URLs,
// requires client certificates on both, and gives every member a
// certificate of its own, valid only for its host's address (lab.Options.TLS;
// the inventory's cluster.tls names the lab's CA and the operator's client
// certificate, its vars caCert and caKey the lab CA). One lab, three
// recoveries in a row:
//
//   - ip-change: diagnose says the certificate lacks the new address;
//     examples/ip-change.yaml (no new certificate) is refused
//     before any change, exit 1, naming the new address its certificate
//     lacks; examples/ip-change-new-certificate.yaml, killed with -9 right
//     after its certificate went in place and resumed, repairs it;
//   - lost-host: diagnose says the replacement has no certificate;
//     examples/lost-host.yaml is refused; lost-host-new-certificate.yaml, with the CA
//     key on another host (caHost:, signed there by openssl), repairs it;
//   - total-loss: restore-all-from-snapshot, unchanged, passes the check
//     (same addresses) and repairs it.
//
// Besides recoverLab's checks: `openssl x509 -ext subjectAltName` on the
// host lists the new address, the old certificate is kept aside, no PEM
// block is in the run's files, every etcd API call went to an https URL,
// and the members' env files still have https and client-cert-auth.
//
//	go test ./tests/e2e/ -run TestE2ETLS -v

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/tests/framework"
)

func TestE2ETLS(t *testing.T) {
	e := newE2E(t)
	l := framework.UpLab(t, lab.Options{Members: 3, Version: "3.6", TLS: true})
	if !l.TLS() {
		t.Fatal("the lab was asked for TLS but says it has none")
	}
	checkInventoryTLS(t, l)
	for _, h := range l.Hosts() {
		if san := hostSANs(t, l, h.Name); !strings.Contains(san, "IP Address:"+h.Address) {
			t.Fatalf("%s: its certificate does not list its address %s: %s", h.Name, h.Address, san)
		}
	}
	steps := []struct {
		brk, refused, plan, member string
		caHost, crash              bool
	}{
		{brk: "ip-change", refused: "ip-change", plan: "ip-change-new-certificate", member: "etcd3", crash: true},
		{brk: "lost-host", refused: "lost-host", plan: "lost-host-new-certificate", member: "etcd2", caHost: true},
	}
	for _, s := range steps {
		ok := t.Run(s.brk, func(t *testing.T) {
			e.newCertificate(t, l, s.brk, s.refused, s.plan, s.member, s.caHost, s.crash)
		})
		if !ok {
			t.Fatalf("%s failed: the lab is not in a state for the next recovery", s.brk)
		}
	}
	t.Run("total-loss", func(t *testing.T) {
		sc := scenario{plan: "restore-all-from-snapshot", brk: "total-loss", members: 3, restore: true}
		st, stateDir := e.recoverLab(t, l, sc)
		checkInventoryTLS(t, l)
		checkEnvTLS(t, l)
		checkRunTLS(t, l, framework.ReadEvents(t, stateDir, st.RunID), sc)
		noPEM(t, stateDir)
	})
}

// newCertificate breaks the lab (brk), applies the example refused (whose
// member has no certificate for its new address) and expects exit 1 with
// nothing changed, then repairs the lab with plan, which issues member's
// certificate: with the CA key on h1 (caHost), and killed with -9 right
// after the new certificate went in place, then resumed (crash).
func (e *e2e) newCertificate(t *testing.T, l *lab.Lab, brk, refused, plan, member string, caHost, crash bool) {
	ctx := context.Background()
	if err := l.Break(ctx, brk); err != nil {
		t.Fatalf("lab break %s: %v", brk, err)
	}
	host := memberHost(t, l, member)
	h, _ := l.Host(host)
	inv := l.InventoryPath()

	// 0. diagnose says, besides the situation, that the certificate must
	// be made anew
	d := e.diagnoseBroken(t, inv, brk)
	code, want := "cert-missing-san", "but not "+h.Address
	if brk == "lost-host" {
		code, want = "cert-absent", "no certificate at "+lab.HostServerCert+" on "+host
	}
	found := false
	for _, f := range d.Findings {
		if f.Code == code && strings.Contains(f.Summary, want) {
			found = true
			t.Logf("diagnose: %s (%s): %s", f.Code, f.Severity, f.Summary)
		}
	}
	if !found {
		t.Errorf("diagnose after %s on the TLS lab has no %s finding saying %q: %v", brk, code, want, d.Findings)
	}

	// 1. without a new certificate: refused before any change
	before, beforeCerts := hostsState(t, l), certFiles(t, l)
	stateDir := filepath.Join(t.TempDir(), "state")
	r := e.CLI(t, "apply", planPath(refused), "--inventory", inv, "--yes", "--state-dir", stateDir)
	if r.Code != 1 {
		t.Fatalf("apply %s on the %s lab (no certificate for %s's new address): exit %d, want 1:\n%s", refused, brk, member, r.Code, r)
	}
	for _, want := range []string{"nothing was changed on any host", member + " on " + host, "cert-issue"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, r.Stderr)
		}
	}
	if brk == "ip-change" && !strings.Contains(r.Stderr, "not valid for "+h.Address) {
		t.Errorf("the refusal does not name the missing address %s:\n%s", h.Address, r.Stderr)
	}
	if brk == "lost-host" && !strings.Contains(r.Stderr, "no certificate at "+lab.HostServerCert) {
		t.Errorf("the refusal does not say that %s has no certificate at %s:\n%s", host, lab.HostServerCert, r.Stderr)
	}
	t.Logf("apply %s refused, exit 1 in %.1fs:\n%s", refused, r.Wall.Seconds(), r.Stderr)
	sameState(t, "by the refused apply", before, hostsState(t, l))
	if after := certFiles(t, l); !reflect.DeepEqual(after, beforeCerts) {
		t.Errorf("the refused apply changed certificate files:\n  before: %q\n  after:  %q", beforeCerts, after)
	} else {
		t.Logf("unchanged by the refused apply: every file in %s on the %d hosts", lab.HostPKIDir, len(after))
	}
	noStepRan(t, stateDir)

	// 2. with a new certificate
	modesBefore := pkiModes(t, l, host)
	planFile := planPath(plan)
	if caHost {
		planFile = e.caOnHost(t, l, planFile, "h1")
	}
	stateDir = filepath.Join(t.TempDir(), "state")
	var runID string
	if crash {
		// kill -9 right after the certificate and key went in place on the
		// host (the one command that installs them splits its stdin at
		// "@@etcd-rescue-file N" lines), before the checkpoint says so
		pr := e.StartProc(t, nil, []string{engine.CrashAfterEnv + "=@@etcd-rescue-file"},
			"apply", planFile, "--inventory", inv, "--yes", "--state-dir", stateDir).Wait(t)
		if runID = framework.RunIDOf(pr.Stdout); runID == "" {
			t.Fatalf("no run id in apply's output:\n%s", pr)
		}
		st := e.afterKill(t, pr, stateDir, runID)
		if hs := st.Find("new-cert", host); hs == nil || hs.Status != "running" {
			t.Fatalf("after the kill during the reissue, new-cert@%s is %+v, want running", host, hs)
		}
		aside := strings.TrimSpace(framework.HostRun(t, l, host, "ls "+lab.HostPKIDir+"/*.rescue-"+runID+" 2>/dev/null; true"))
		if !strings.Contains(aside, lab.HostServerCert+".rescue-"+runID) {
			t.Errorf("after the kill during the reissue, the old certificate is not kept aside on %s: %q", host, aside)
		}
		noPEM(t, stateDir)
		r = e.CLI(t, "resume", runID, "--yes", "--state-dir", stateDir)
		if r.Code != 0 {
			t.Fatalf("resume after the kill during the reissue:\n%s", r)
		}
		t.Logf("killed -9 during the reissue (right after the new key and certificate went in place), resumed: exit 0; kept aside: %s", aside)
	} else {
		stateDir, runID, r = e.applyPlan(t, planFile, inv, "to issue "+member+" a new certificate")
		t.Logf("apply %s: exit 0 in %.1fs", plan, r.Wall.Seconds())
	}
	st := e.StatusJSON(t, stateDir, runID)
	checkRunDone(t, st)
	if crash {
		// the resumed session found the certificate in place: not issued again
		if hs := st.Find("new-cert", host); hs == nil || hs.Attempts != 1 {
			t.Errorf("new-cert@%s after the resume: %+v, want 1 attempt (found done by its check)", host, hs)
		} else {
			t.Logf("new-cert@%s: found done by its check after the kill, not issued again: %s", host, hs.Why)
		}
	}
	verifyLab(t, l)
	san := hostSANs(t, l, host)
	if !strings.Contains(san, "IP Address:"+h.Address) {
		t.Errorf("openssl x509 -ext subjectAltName on %s does not list its address %s:\n%s", host, h.Address, san)
	}
	t.Logf("%s: %s", host, san)
	if brk == "ip-change" {
		old := framework.HostRun(t, l, host, "openssl x509 -noout -ext subjectAltName -in "+lab.HostServerCert+".rescue-"+runID)
		if strings.Contains(old, "IP Address:"+h.Address) || !strings.Contains(old, "IP Address:") {
			t.Errorf("the certificate kept aside on %s is not the old one:\n%s", host, old)
		}
	}
	noPEM(t, stateDir)
	checkEnvTLS(t, l)
	// owner and mode as before; a file that was not there gets the
	// defaults (certificate root:root 0644, key the layout's owner 0600)
	modes := pkiModes(t, l, host)
	for _, f := range []string{lab.HostServerCert, lab.HostServerKey, lab.HostCACert} {
		want := modesBefore[f]
		if want == "" {
			want = map[string]string{lab.HostServerCert: "root:root 644", lab.HostServerKey: "etcd:etcd 600"}[f]
		}
		if modes[f] != want {
			t.Errorf("%s on %s after the reissue: owner and mode %q, want %q", f, host, modes[f], want)
		}
	}
	t.Logf("owner and mode on %s: before %v, after %v", host, modesBefore, modes)
}

// pkiModes: owner:group and mode of each file in the PKI dir of host.
func pkiModes(t *testing.T, l *lab.Lab, host string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(framework.HostRun(t, l, host, "stat -c '%n %U:%G %a' "+lab.HostPKIDir+"/* 2>/dev/null; true"), "\n") {
		if f, rest, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			out[f] = rest
		}
	}
	return out
}

// hostSANs is what openssl on host says of the member certificate's SANs.
func hostSANs(t *testing.T, l *lab.Lab, host string) string {
	t.Helper()
	return strings.TrimSpace(framework.HostRun(t, l, host, "openssl x509 -noout -ext subjectAltName -in "+lab.HostServerCert))
}

// certFiles: per host, the sha256 of every file in the PKI dir.
func certFiles(t *testing.T, l *lab.Lab) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range l.Hosts() {
		out[h.Name] = strings.TrimSpace(framework.HostRun(t, l, h.Name, "cd "+lab.HostPKIDir+" 2>/dev/null && sha256sum * 2>/dev/null; true"))
	}
	return out
}

// noPEM: no PEM block (certificate or key) in any file of the state dir:
// checkpoints, journal, evidence.
func noPEM(t *testing.T, stateDir string) {
	t.Helper()
	n := 0
	err := filepath.Walk(stateDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		for _, hdr := range []string{"-----BEGIN", "PRIVATE KEY"} {
			if strings.Contains(string(b), hdr) {
				t.Errorf("%s holds %q", p, hdr)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no file under %s to look into", stateDir)
	}
}

// caOnHost copies the lab CA's certificate and key to /root/etcd-ca on
// host (as a kubeadm control-plane node keeps its etcd CA) and writes a
// copy of plan whose cert-issue steps sign there: caHost: host.
func (e *e2e) caOnHost(t *testing.T, l *lab.Lab, plan, host string) string {
	t.Helper()
	ctx := context.Background()
	for _, f := range []struct {
		local, remote string
		mode          os.FileMode
	}{{l.CACertPath(), "/root/etcd-ca/ca.crt", 0o644}, {filepath.Join(l.PKIDir(), "ca.key"), "/root/etcd-ca/ca.key", 0o600}} {
		b, err := os.ReadFile(f.local)
		if err != nil {
			t.Fatal(err)
		}
		framework.HostRun(t, l, host, "install -d -m 0700 /root/etcd-ca")
		if err := l.WriteFile(ctx, host, f.remote, b, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(e.Repo, plan))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range doc["steps"].([]any) {
		st := s.(map[string]any)
		if st["type"] == "cert-issue" {
			w := st["with"].(map[string]any)
			w["caHost"] = host
			w["ca"] = map[string]any{"cert": "/root/etcd-ca/ca.crt", "key": "/root/etcd-ca/ca.key"}
			n++
		}
	}
	if n == 0 {
		t.Fatalf("%s has no cert-issue step", plan)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), filepath.Base(plan))
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
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
