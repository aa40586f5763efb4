package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/sshx/sshxtest"
)

// certPEM makes a self-signed CA and a member certificate it signs for ips.
func certPEM(t *testing.T, ips ...string) (caPEM, leafPEM []byte) {
	t.Helper()
	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cli-ca"}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "m1"}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, ip := range ips {
		tpl.IPAddresses = append(tpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// apply of a plan that starts a member on an address its certificate does
// not list: exit 1 before the first change, the SAN named, no run.
func TestApplyCertGateExit1(t *testing.T) {
	noTTY(t)
	srv := sshxtest.Start(t)
	dir := t.TempDir()
	caPEM, leafPEM := certPEM(t, "10.0.0.9")
	for name, b := range map[string][]byte{"ca.crt": caPEM, "server.crt": leafPEM,
		"etcd.env": []byte(fmt.Sprintf("ETCD_CERT_FILE=%[1]s/server.crt\nETCD_TRUSTED_CA_FILE=%[1]s/ca.crt\nETCD_PEER_CERT_FILE=%[1]s/server.crt\nETCD_PEER_TRUSTED_CA_FILE=%[1]s/ca.crt\n", dir))} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	plan := filepath.Join(dir, "plan.yaml")
	body := fmt.Sprintf(`version: 1
name: cli-certs
cluster:
  name: smoke
  token: smoke-1
  etcdVersion: "3.5.17"
  layout: {dataDir: %[1]s/etcd-data, envFile: %[1]s/etcd.env}
  members:
    - {name: m1, host: local, peerURL: "https://127.0.0.1:2380", clientURL: "https://127.0.0.1:2379"}
hosts:
  local: {address: 127.0.0.1, port: %[2]d}
ssh: {user: %[3]s, identity: %[4]s, knownHosts: %[5]s}
steps:
  - {id: config, type: set-config, on: all, with: {clusterState: existing}}
`, dir, srv.Port, srv.User, srv.ClientKey, srv.KnownHosts)
	if err := os.WriteFile(plan, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI("apply", "--yes", plan)
	if code != exitFailed {
		t.Fatalf("apply: exit %d, want 1\nstdout: %s\nstderr: %s", code, out, errs)
	}
	for _, want := range []string{
		"etcd-rescue: error: apply stopped before the first change: the certificates of 1 member are not valid for the addresses the plan starts it on; nothing was changed on any host\n",
		"  - m1 on local: " + dir + "/server.crt (ETCD_PEER_CERT_FILE in " + dir + "/etcd.env): not valid for 127.0.0.1",
		"      hint: add a cert-issue step on m1 before it starts (docs/plan-format.md#certificates), or install a certificate that lists 127.0.0.1, and run again\n",
		"hint: nothing was changed on any host and no run was created",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if strings.Contains(out+errs, "BEGIN CERTIFICATE") {
		t.Error("PEM printed")
	}
	if runs, _ := filepath.Glob(filepath.Join(dir, ".etcd-rescue", "runs", "*")); len(runs) != 0 {
		t.Errorf("runs created: %v", runs)
	}
}
