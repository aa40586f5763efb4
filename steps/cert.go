package steps

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/etcdconf"
	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// TLSFiles are the certificate files etcd's service on a host uses.
type TLSFiles struct {
	Source                           string // where the paths came from: "/etc/etcd/etcd.env on h3", "layout.pki", "kubeadm defaults"
	ServerCert, ServerKey, TrustedCA string // --cert-file, --key-file, --trusted-ca-file
	PeerCert, PeerKey, PeerTrustedCA string // --peer-cert-file, --peer-key-file, --peer-trusted-ca-file
}

// kubeadmPKI is where kubeadm puts a stacked etcd's certificates.
const kubeadmPKI = "/etc/kubernetes/pki/etcd/"

// configOf names the file that says which certificates etcd uses, for
// messages: the env file or the manifest.
func configOf(c *Ctx) string {
	if c.Cluster.Layout.Service == "static-pod" {
		return "the manifest " + c.Cluster.Layout.Manifest
	}
	return "the env file " + c.Cluster.Layout.EnvFile
}

// ServiceTLS reads which certificate files etcd's service on t will use: the env file (systemd) or the
// manifest (static-pod) on the host (through r, with the session's sudo), then, for keys still empty,
// cluster.layout.pki, then for static-pod kubeadm's /etc/kubernetes/pki/etcd/{server,peer}.{crt,key},
// ca.crt. A missing env file/manifest is not an error (fields stay "").
func ServiceTLS(ctx context.Context, c *Ctx, r Runner, t Target) (TLSFiles, error) {
	var f TLSFiles
	host := t.Name()
	l := c.Cluster.Layout
	var cmd string
	if l.Service == "static-pod" {
		cmd = manifestVar(c)
	} else {
		cmd = "f=" + q(l.EnvFile)
	}
	// The first line names the file read (a stopped static pod's manifest
	// is the parked copy), empty when there is none.
	cmd += fmt.Sprintf(`; if [ -e "$f" ]; then printf '%%s\n' "$f"; head -c %d -- "$f"; else echo; fi`, pki.MaxPEM+1)
	out, err := r.Run(ctx, cmd, nil)
	if err != nil {
		return f, fmt.Errorf("host %s: reading %s: %w", host, configOf(c), err)
	}
	file, content, _ := strings.Cut(string(out), "\n")
	var kv map[string]string
	var sources []string
	if file != "" {
		if len(content) > pki.MaxPEM {
			return f, fmt.Errorf("host %s: %s is larger than %d bytes, not an etcd configuration", host, file, pki.MaxPEM)
		}
		if l.Service == "static-pod" {
			if kv, err = etcdconf.ParseManifest(file, content); err != nil {
				return f, fmt.Errorf("host %s: %w", host, err)
			}
		} else {
			kv = etcdconf.ParseEnvFile(content)
		}
	}
	fields := []struct {
		dst            *string
		key, pkiPath   string
		kubeadmDefault string
	}{
		{&f.ServerCert, "ETCD_CERT_FILE", "", "server.crt"},
		{&f.ServerKey, "ETCD_KEY_FILE", "", "server.key"},
		{&f.TrustedCA, "ETCD_TRUSTED_CA_FILE", "", "ca.crt"},
		{&f.PeerCert, "ETCD_PEER_CERT_FILE", "", "peer.crt"},
		{&f.PeerKey, "ETCD_PEER_KEY_FILE", "", "peer.key"},
		{&f.PeerTrustedCA, "ETCD_PEER_TRUSTED_CA_FILE", "", "ca.crt"},
	}
	if p := l.PKI; p != nil {
		for i, v := range []string{p.ServerCert, p.ServerKey, p.TrustedCA, p.PeerCert, p.PeerKey, p.PeerTrustedCA} {
			fields[i].pkiPath = v
		}
	}
	used := func(s string) {
		if !containsStr(sources, s) {
			sources = append(sources, s)
		}
	}
	for _, fd := range fields {
		switch {
		case kv[fd.key] != "":
			*fd.dst = kv[fd.key]
			used(file + " on " + host)
		case fd.pkiPath != "":
			*fd.dst = fd.pkiPath
			used("layout.pki")
		case l.Service == "static-pod":
			*fd.dst = kubeadmPKI + fd.kubeadmDefault
			used("kubeadm defaults")
		}
	}
	f.Source = strings.Join(sources, ", ")
	return f, nil
}

// readCmd prints "present" and at most pki.MaxPEM+1 bytes of p, or "absent".
func readCmd(p string) string {
	return "if [ -e " + q(p) + " ]; then echo present; head -c " + fmt.Sprint(pki.MaxPEM+1) + " -- " + q(p) + "; else echo absent; fi"
}

// ReadCerts reads a public PEM file (certificate or CA bundle, never a key) on the host: present=false
// when the file does not exist; a file that does not parse is an error naming host and path.
func ReadCerts(ctx context.Context, r Runner, host, p string) (certs []*x509.Certificate, present bool, err error) {
	out, err := r.Run(ctx, readCmd(p), nil)
	if err != nil {
		return nil, false, fmt.Errorf("host %s: reading %s: %w", host, p, err)
	}
	head, body, _ := bytes.Cut(out, []byte("\n"))
	switch string(head) {
	case "absent":
		return nil, false, nil
	case "present":
	default:
		return nil, false, fmt.Errorf("host %s: reading %s: unexpected output", host, p)
	}
	certs, err = pki.ParseCerts(body)
	if err != nil {
		return nil, true, fmt.Errorf("host %s: %s: %w", host, p, err)
	}
	return certs, true, nil
}

// CAFiles are an issuing CA's certificate and private key.
type CAFiles struct {
	Cert string `yaml:"cert" rescue:"required" doc:"the CA certificate (PEM)"`
	Key  string `yaml:"key" rescue:"required" doc:"the CA private key (PEM: PKCS#8, PKCS#1 or SEC1, not encrypted; never copied, logged or journalled)"`
}

// CertIssue makes new member certificates for the member on its host, valid
// for its URLs in cluster.members, signed by a CA the operator provides, and
// puts them where etcd's service reads them; the old files are kept aside.
type CertIssue struct {
	CA         CAFiles  `yaml:"ca" rescue:"required" doc:"{cert: PATH, key: PATH}: the issuing CA; paths on the operator machine (relative to the plan), or on caHost"`
	CAHost     string   `yaml:"caHost" doc:"host (key of hosts:) that holds the CA: the certificate is signed there by openssl and the CA key never leaves it"`
	KeyType    string   `yaml:"keyType" default:"same" enum:"same|ecdsa-p256|ecdsa-p384|ecdsa-p521|rsa-2048|rsa-3072|rsa-4096|ed25519" doc:"key of the new certificates; same: the old certificate's type (ecdsa-p256 when there is none)"`
	ValidDays  int      `yaml:"validDays" default:"365" doc:"days the new certificates are valid (1 to 3650; never beyond the CA's own expiry)"`
	ExtraNames []string `yaml:"extraNames" doc:"more DNS names or IPs for the certificates, besides the hosts of the member's URLs, 127.0.0.1, ::1 and localhost"`
}

func (*CertIssue) NeedsMember() bool      { return true }
func (*CertIssue) SafeToRepeat() bool     { return true }
func (*CertIssue) StartsOnPlanURLs() bool { return true }

var serverClient = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

// pair is one certificate to write: its file, its key file(s), and the
// URLs it serves.
type pair struct {
	what string // "server and peer", "server", "peer"
	cert string
	keys []string
	urls []string
}

func pairsOf(f TLSFiles, m *plans.Member) []pair {
	if f.ServerCert == f.PeerCert {
		keys := []string{f.ServerKey}
		if f.PeerKey != f.ServerKey {
			keys = append(keys, f.PeerKey)
		}
		return []pair{{what: "server and peer", cert: f.ServerCert, keys: keys, urls: []string{m.ClientURL, m.PeerURL}}}
	}
	return []pair{
		{what: "server", cert: f.ServerCert, keys: []string{f.ServerKey}, urls: []string{m.ClientURL}},
		{what: "peer", cert: f.PeerCert, keys: []string{f.PeerKey}, urls: []string{m.PeerURL}},
	}
}

// bundles are the distinct CA bundle paths of f.
func (f TLSFiles) bundles() []string {
	var out []string
	for _, p := range []string{f.TrustedCA, f.PeerTrustedCA} {
		if p != "" && !containsStr(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func (s *CertIssue) caWhere(c *Ctx) string {
	if s.CAHost != "" {
		return fmt.Sprintf("%s on host %s", s.CA.Cert, s.CAHost)
	}
	if strings.HasPrefix(s.CA.Cert, "~") {
		return s.CA.Cert // as written: the same for every reader of the dry-run
	}
	return c.LocalPath(s.CA.Cert)
}

func sanList(ips []net.IP, dns []string) string {
	var out []string
	for _, ip := range ips {
		out = append(out, "IP:"+ip.String())
	}
	for _, d := range dns {
		out = append(out, "DNS:"+d)
	}
	return strings.Join(out, ", ")
}

func (s *CertIssue) Describe(c *Ctx, t Target) []Action {
	m := t.Member
	if m == nil {
		return nil
	}
	kt := "new " + s.KeyType + " key"
	if s.KeyType == "same" || s.KeyType == "" {
		kt = "new key (of the old certificate's type; ecdsa-p256 when there is none)"
	}
	ips, dns := pki.NamesFor([]string{m.ClientURL, m.PeerURL}, s.ExtraNames)
	sans := "SANs " + sanList(ips, dns)
	if ch, ph := pki.HostOf(m.ClientURL), pki.HostOf(m.PeerURL); ch != ph {
		sans += fmt.Sprintf(" (one certificate when the server and peer files are the same; else a server certificate for %s and a peer certificate for %s, each with the loopback names and extraNames)", ch, ph)
	}
	signer := "its key stays on this machine"
	if s.CAHost != "" {
		signer = fmt.Sprintf("by openssl on host %s: its key stays there; the new key is made on this machine and goes to %s only", s.CAHost, t.Name())
	}
	local := fmt.Sprintf("issue a %s and certificate CN=%s, %s, server+client auth, %d days, signed by the CA %s (%s)",
		kt, m.Name, sans, s.ValidDays, s.caWhere(c), signer)
	var files, bundles string
	l := c.Cluster.Layout
	if l.Service == "static-pod" {
		files = "the files named by --cert-file/--key-file/--peer-cert-file/--peer-key-file in " + l.Manifest
		bundles = "--trusted-ca-file, --peer-trusted-ca-file"
	} else {
		files = "the files named by ETCD_CERT_FILE/ETCD_KEY_FILE/ETCD_PEER_CERT_FILE/ETCD_PEER_KEY_FILE in " + l.EnvFile
		bundles = "ETCD_TRUSTED_CA_FILE, ETCD_PEER_TRUSTED_CA_FILE"
	}
	if p := l.PKI; p != nil && (p.ServerCert != "" || p.PeerCert != "") {
		files += fmt.Sprintf("; where it names none, layout.pki's: server %s, %s; peer %s, %s", orDash(p.ServerCert), orDash(p.ServerKey), orDash(p.PeerCert), orDash(p.PeerKey))
	}
	if l.Service == "static-pod" {
		files += "; else kubeadm's " + kubeadmPKI + "{server,peer}.{crt,key}"
	}
	keyOwner := keyOwnerOf(c)
	shell := fmt.Sprintf("write the new key and certificate into %s: each old file kept as FILE.rescue-%s, owner and mode as before "+
		"(new files: certificate root:root 0644, key %s 0600), each key before its certificate; "+
		"append the CA certificate to the trusted CA bundle(s) (%s) if missing; key bytes come on stdin, never in a command",
		files, c.RunID, keyOwner, bundles)
	h := t.Name()
	return []Action{
		{Kind: Local, Cmd: local},
		{Host: h, Kind: Shell, Cmd: shell, Run: func(ctx context.Context, env Env) error { return s.run(ctx, c, env, t) }},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// keyOwnerOf is the owner of a new key file: the layout's owner (etcd
// reads it as that user), root for a static pod (etcd runs as root there).
func keyOwnerOf(c *Ctx) string {
	l := c.Cluster.Layout
	if l.Service == "static-pod" || l.Owner == "" {
		return "root:root"
	}
	if !strings.Contains(l.Owner, ":") {
		return l.Owner + ":" + l.Owner
	}
	return l.Owner
}

// needFiles returns the files of f, or an error naming what is missing.
func needFiles(c *Ctx, t Target, f TLSFiles) error {
	var missing []string
	for _, x := range []struct{ v, key string }{{f.ServerCert, "ETCD_CERT_FILE"}, {f.ServerKey, "ETCD_KEY_FILE"}, {f.PeerCert, "ETCD_PEER_CERT_FILE"}, {f.PeerKey, "ETCD_PEER_KEY_FILE"}} {
		if x.v == "" {
			missing = append(missing, x.key)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("host %s: member %s: %s names no %s, so there is no certificate file to replace\n"+
		"hint: set cluster.layout.pki (serverCert, serverKey, peerCert, peerKey) to the paths etcd uses on the hosts",
		t.Name(), t.Member.Name, configOf(c), strings.Join(missing, ", "))
}

// readLocal reads at most pki.MaxPEM bytes of a file on the operator machine.
func readLocal(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, pki.MaxPEM+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if len(b) > pki.MaxPEM {
		return nil, fmt.Errorf("%s is larger than %d bytes, not a PEM file", p, pki.MaxPEM)
	}
	return b, nil
}

// Issuer returns the certificate of the CA this step signs with (loaded from the operator file, or read
// from the CA host through env), so the gate can check that the other members trust it.
func (s *CertIssue) Issuer(ctx context.Context, c *Ctx, env Env) (*x509.Certificate, error) {
	if s.CAHost == "" {
		// the whole CA, key included (read into memory only, and
		// dropped): a missing or mismatched key stops the session at the
		// certificate check, before the first change, not at this step
		ca, err := s.loadCA(c)
		if err != nil {
			return nil, err
		}
		return ca.Cert, nil
	}
	r, err := env.Shell(s.CAHost)
	if err != nil {
		return nil, err
	}
	certs, present, err := ReadCerts(ctx, r, s.CAHost, s.CA.Cert)
	if err != nil {
		return nil, fmt.Errorf("the CA certificate: %w", err)
	}
	if !present {
		return nil, fmt.Errorf("the CA certificate %s is not on host %s\nhint: ca.cert and ca.key are paths on caHost", s.CA.Cert, s.CAHost)
	}
	if err := pki.IsCA(certs[0]); err != nil {
		return nil, fmt.Errorf("the CA certificate %s on host %s: %w", s.CA.Cert, s.CAHost, err)
	}
	// what signing there needs, asked before the first change: the key
	// readable (never read by us) and openssl
	out, err := r.Run(ctx, "if [ ! -r "+q(s.CA.Key)+" ]; then echo no-key; elif ! command -v openssl >/dev/null 2>&1; then echo no-openssl; else echo ok; fi", nil)
	if err != nil {
		return nil, fmt.Errorf("host %s: checking the CA key and openssl: %w", s.CAHost, err)
	}
	switch strings.TrimSpace(string(out)) {
	case "no-key":
		return nil, fmt.Errorf("the CA key %s is not readable on host %s\nhint: ca.key is a path on caHost (read there by openssl, as the plan's SSH user or sudo)", s.CA.Key, s.CAHost)
	case "no-openssl":
		return nil, fmt.Errorf("host %s has no openssl to sign with\nhint: install openssl (1.1.1 or later) on %s, or keep the CA on this machine (no caHost)", s.CAHost, s.CAHost)
	}
	return certs[0], nil
}

// loadCA loads the CA of an operator-machine issuer (key included).
func (s *CertIssue) loadCA(c *Ctx) (*pki.CA, error) {
	cp, kp := c.LocalPath(s.CA.Cert), c.LocalPath(s.CA.Key)
	cb, err := readLocal(cp)
	if err != nil {
		return nil, fmt.Errorf("the CA certificate: %w", err)
	}
	kb, err := readLocal(kp)
	if err != nil {
		return nil, fmt.Errorf("the CA key: %w", err)
	}
	ca, err := pki.LoadCA(cb, kb)
	if err != nil {
		return nil, fmt.Errorf("the CA %s, %s: %w", cp, kp, err)
	}
	return ca, nil
}

// statFiles returns "uid:gid mode" of each path that exists.
func statFiles(ctx context.Context, r Runner, host string, paths []string) (map[string][2]string, error) {
	cmd := "for p in " + join(paths...) + `; do if [ -e "$p" ]; then stat -c '%u:%g %a' -- "$p"; else echo -; fi; done`
	out, err := r.Run(ctx, cmd, nil)
	if err != nil {
		return nil, fmt.Errorf("host %s: reading the owner and mode of the certificate files: %w", host, err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	st := map[string][2]string{}
	for i, p := range paths {
		if i >= len(lines) {
			break
		}
		if own, mode, ok := strings.Cut(lines[i], " "); ok {
			st[p] = [2]string{own, mode}
		}
	}
	return st, nil
}

func tmpOf(p, runID string) string {
	return path.Join(path.Dir(p), "."+path.Base(p)+".rescue-tmp-"+runID)
}

func asideOf(p, runID string) string { return p + ".rescue-" + runID }

// newFile is one file the install writes.
type newFile struct {
	path, owner, mode string
	data              []byte
	appendTo          bool // a CA bundle: the old content, then data
}

// installScript renders the one command that puts files in place: their
// bytes come on stdin (see installInput), never in the command text.
func installScript(runID string, files []newFile) string {
	var dirs, tmps []string
	for _, f := range files {
		if d := path.Dir(f.path); !containsStr(dirs, d) {
			dirs = append(dirs, d)
		}
		tmps = append(tmps, tmpOf(f.path, runID)+".in")
	}
	awk := `BEGIN{for(i=1;i<ARGC;i++){t[i-1]=ARGV[i]; delete ARGV[i]}} /^@@etcd-rescue-file [0-9]+$/{f=t[$2]; next} f!=""{print > f}`
	lines := []string{
		"set -e",
		"umask 022",
		"mkdir -p -- " + join(dirs...),
		"umask 077",
		"awk " + q(awk) + " " + join(tmps...),
	}
	for i, f := range files {
		p, t, a, in := q(f.path), q(tmpOf(f.path, runID)), q(asideOf(f.path, runID)), q(tmps[i])
		lines = append(lines, "if [ -e "+p+" ] && [ ! -e "+a+" ]; then cp -p -- "+p+" "+a+"; fi")
		if f.appendTo {
			lines = append(lines, "{ if [ -e "+p+" ]; then cat -- "+p+`; [ -z "$(tail -c 1 -- `+p+`)" ] || echo; fi; cat -- `+in+"; } > "+t, "rm -f -- "+in)
		} else {
			lines = append(lines, "mv -f -- "+in+" "+t)
		}
		lines = append(lines, "chown "+q(f.owner)+" "+t, "chmod "+q(f.mode)+" "+t, "mv -f -- "+t+" "+p)
	}
	return strings.Join(lines, "\n") + "\n"
}

func installInput(files []newFile) io.Reader {
	var b bytes.Buffer
	for i, f := range files {
		fmt.Fprintf(&b, "@@etcd-rescue-file %d\n", i)
		b.Write(f.data)
		if len(f.data) > 0 && f.data[len(f.data)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	return &b
}

func (s *CertIssue) run(ctx context.Context, c *Ctx, env Env, t Target) error {
	h, m := t.Name(), t.Member
	r, err := env.Shell(h)
	if err != nil {
		return err
	}
	files, err := ServiceTLS(ctx, c, r, t)
	if err != nil {
		return err
	}
	if err := needFiles(c, t, files); err != nil {
		return err
	}
	var ca *pki.CA
	var issuer *x509.Certificate
	var caRunner Runner
	if s.CAHost == "" {
		if ca, err = s.loadCA(c); err != nil {
			return err
		}
		issuer = ca.Cert
	} else {
		if issuer, err = s.Issuer(ctx, c, env); err != nil {
			return err
		}
		if caRunner, err = env.Shell(s.CAHost); err != nil {
			return err
		}
	}
	kt, err := s.keyType(ctx, r, h, files)
	if err != nil {
		return err
	}
	pairs := pairsOf(files, m)
	var all []string
	for _, p := range pairs {
		all = append(all, p.keys...)
		all = append(all, p.cert)
	}
	all = append(all, files.bundles()...)
	st, err := statFiles(ctx, r, h, all)
	if err != nil {
		return err
	}
	ownerMode := func(p, owner, mode string) (string, string) {
		if x, ok := st[p]; ok {
			return x[0], x[1]
		}
		return owner, mode
	}
	var out []newFile
	var logs []string
	for _, p := range pairs {
		ips, dns := pki.NamesFor(p.urls, s.ExtraNames)
		req := pki.Request{CommonName: m.Name, IPs: ips, DNSNames: dns, Usages: serverClient, KeyType: kt,
			Valid: time.Duration(s.ValidDays) * 24 * time.Hour, Now: time.Now()}
		certPEM, keyPEM, err := s.sign(ctx, c, ca, caRunner, issuer, req, p.urls)
		if err != nil {
			return fmt.Errorf("host %s: member %s: %w", h, m.Name, err)
		}
		for _, k := range p.keys {
			o, md := ownerMode(k, keyOwnerOf(c), "600")
			out = append(out, newFile{path: k, owner: o, mode: md, data: keyPEM})
		}
		o, md := ownerMode(p.cert, "root:root", "644")
		out = append(out, newFile{path: p.cert, owner: o, mode: md, data: certPEM})
		cs, _ := pki.ParseCerts(certPEM)
		kept := "no old file"
		if _, ok := st[p.cert]; ok {
			kept = "the old one kept as " + asideOf(p.cert, c.RunID)
		}
		logs = append(logs, fmt.Sprintf("host %s: new %s certificate %s: %s (%s)", h, p.what, p.cert, pki.Describe(cs[0]), kept))
	}
	caPEM := pemOf(issuer)
	for _, b := range files.bundles() {
		certs, present, err := ReadCerts(ctx, r, h, b)
		if err != nil {
			return fmt.Errorf("%w\nhint: the CA bundle must be PEM certificates; fix or remove it, then resume", err)
		}
		if present && pki.Contains(certs, issuer) {
			continue
		}
		o, md := ownerMode(b, "root:root", "644")
		out = append(out, newFile{path: b, owner: o, mode: md, data: caPEM, appendTo: true})
		what := "a new file"
		if present {
			what = "appended; the old one kept as " + asideOf(b, c.RunID)
		}
		logs = append(logs, fmt.Sprintf("host %s: the CA certificate CN=%s is in the CA bundle %s (%s)", h, issuer.Subject.CommonName, b, what))
	}
	if _, err := r.Run(ctx, installScript(c.RunID, out), installInput(out)); err != nil {
		return fmt.Errorf("host %s: installing the new certificate files: %w", h, err)
	}
	for _, l := range logs {
		env.Logf("%s", l)
	}
	return nil
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// keyType is the key type of the new certificates.
func (s *CertIssue) keyType(ctx context.Context, r Runner, host string, f TLSFiles) (pki.KeyType, error) {
	if s.KeyType != "same" && s.KeyType != "" {
		return pki.ParseKeyType(s.KeyType)
	}
	certs, present, err := ReadCerts(ctx, r, host, f.ServerCert)
	if err != nil {
		return "", fmt.Errorf("%w\nhint: keyType: same reads the old certificate's key type; name one instead (keyType: ecdsa-p256)", err)
	}
	if !present {
		return pki.ECDSAP256, nil
	}
	kt, err := pki.KeyTypeOf(certs[0])
	if err != nil {
		return "", fmt.Errorf("host %s: %s: %w\nhint: name the key type of the new certificates (keyType: ecdsa-p256)", host, f.ServerCert, err)
	}
	return kt, nil
}

// sign returns a new certificate and its key for req: issued here with
// the CA's key, or a CSR signed by openssl on the CA host.
func (s *CertIssue) sign(ctx context.Context, c *Ctx, ca *pki.CA, caRunner Runner, issuer *x509.Certificate, req pki.Request, urls []string) (certPEM, keyPEM []byte, err error) {
	if ca != nil {
		return pki.Issue(ca, req)
	}
	keyPEM, csr, err := pki.NewKeyAndCSR(req)
	if err != nil {
		return nil, nil, err
	}
	out, err := caRunner.Run(ctx, pki.OpenSSLSignScript(s.CA.Cert, s.CA.Key, req), bytes.NewReader(csr))
	if err != nil {
		return nil, nil, fmt.Errorf("signing on host %s with openssl (needs openssl 1.1.1 or later there): %w", s.CAHost, err)
	}
	certs, err := pki.ParseCerts(out)
	if err != nil {
		return nil, nil, fmt.Errorf("the certificate signed on host %s: %w", s.CAHost, err)
	}
	cert := certs[0]
	// What came back must be for our key, from the CA named, for the URLs.
	key, err := publicOf(keyPEM)
	if err != nil {
		return nil, nil, err
	}
	if eq, ok := key.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("the certificate signed on host %s is not for the new key", s.CAHost)
	}
	if ps := pki.Check(cert, pki.Want{Names: urls, Usages: serverClient, Roots: pki.Pool([]*x509.Certificate{issuer}),
		RootsFrom: "the CA " + s.caWhere(c)}); len(ps) > 0 {
		return nil, nil, fmt.Errorf("the certificate signed on host %s: %s", s.CAHost, ps[0].Text)
	}
	return out, keyPEM, nil
}

func (s *CertIssue) Check(ctx context.Context, c *Ctx, env Env, t Target) (bool, string, error) {
	h, m := t.Name(), t.Member
	r, err := env.Shell(h)
	if err != nil {
		return false, "", err
	}
	files, err := ServiceTLS(ctx, c, r, t)
	if err != nil {
		return false, "", err
	}
	if err := needFiles(c, t, files); err != nil {
		return false, "", err
	}
	issuer, err := s.Issuer(ctx, c, env)
	if err != nil {
		return false, "", err
	}
	// A temp file of this run left in place: the install was cut short
	// (a new key may be in place before its certificate).
	var tmps []string
	for _, p := range pairsOf(files, m) {
		for _, k := range p.keys {
			tmps = append(tmps, tmpOf(k, c.RunID), tmpOf(k, c.RunID)+".in")
		}
		tmps = append(tmps, tmpOf(p.cert, c.RunID), tmpOf(p.cert, c.RunID)+".in")
	}
	st, err := statFiles(ctx, r, h, tmps)
	if err != nil {
		return false, "", err
	}
	if len(st) > 0 {
		return false, "", nil
	}
	for _, p := range pairsOf(files, m) {
		certs, present, err := ReadCerts(ctx, r, h, p.cert)
		if err != nil || !present {
			return false, "", nil
		}
		if ps := pki.Check(certs[0], pki.Want{Names: p.urls, Usages: serverClient, Roots: pki.Pool([]*x509.Certificate{issuer}),
			Intermediates: certs[1:], MinValid: c.Cluster.Layout.MinValid()}); len(ps) > 0 {
			return false, "", nil
		}
	}
	for _, b := range files.bundles() {
		certs, present, err := ReadCerts(ctx, r, h, b)
		if err != nil || !present || !pki.Contains(certs, issuer) {
			return false, "", nil
		}
	}
	return true, fmt.Sprintf("%s's certificates are valid for its URLs and signed by CN=%s", m.Name, issuer.Subject.CommonName), nil
}

func (s *CertIssue) Validate(c *Ctx, at At, fs *plans.Findings) {
	if s.CAHost != "" && c.Plan != nil {
		if _, ok := c.Plan.Hosts[s.CAHost]; !ok {
			var names []string
			for n := range c.Plan.Hosts {
				names = append(names, n)
			}
			fs.Add(at("caHost"), "caHost %q is not in hosts%s", s.CAHost, plans.Suggest(s.CAHost, names)).
				WithHint("caHost names the host (a key of hosts:) that holds the CA certificate and key; leave it out when they are on this machine")
		}
	}
	if s.ValidDays < 1 || s.ValidDays > 3650 {
		fs.Add(at("validDays"), "validDays %d is not between 1 and 3650", s.ValidDays)
	}
	for _, n := range s.ExtraNames {
		if net.ParseIP(n) == nil && !pki.ValidDNSName(n) {
			fs.Add(at("extraNames"), "extraNames: %q is neither an IP address nor a DNS name", n).
				WithHint("list host names (node3.example, *.etcd.example) or IP addresses, one per item")
		}
	}
}

// publicOf is the public half of a new PKCS#8 key made by pki.
func publicOf(keyPEM []byte) (crypto.PublicKey, error) {
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return nil, errors.New("the new key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, errors.New("the new key does not parse")
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("the new key cannot sign")
	}
	return s.Public(), nil
}
