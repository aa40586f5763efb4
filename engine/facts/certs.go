package facts

// The public certificates etcd will serve with: the files the settings
// name in ETCD_CERT_FILE and ETCD_PEER_CERT_FILE (the manifest's
// --cert-file and --peer-cert-file), read on the host with one more
// command after the probe. Keys are never read; no PEM is kept.

import (
	"context"
	"crypto/x509"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
	"github.com/etcd-rescue/etcd-rescue/internal/sshx"
)

// The settings that name the certificates read.
const (
	SettingCertFile     = "ETCD_CERT_FILE"
	SettingPeerCertFile = "ETCD_PEER_CERT_FILE"
)

// Certificate is one certificate file etcd will use on a host, as read
// there: what it says, never its PEM. An absent file or one that does not
// parse is a fact (Present, Error), not a failed collection.
type Certificate struct {
	// Setting names the settings that point at the file: ETCD_CERT_FILE,
	// ETCD_PEER_CERT_FILE, or "ETCD_CERT_FILE, ETCD_PEER_CERT_FILE" when one
	// file serves both (the etcdconf form, for the manifest's flags too).
	Setting string `json:"setting"`
	Path    string `json:"path"`    // on the host, as the settings name it
	Present bool   `json:"present"` // the file exists
	// Of the first certificate in the file (the one etcd serves), when it parses.
	Subject   string    `json:"subject,omitempty"` // e.g. CN=etcd3
	SANs      []string  `json:"sans,omitempty"`    // IP:10.0.0.3, DNS:node3 (pki.SANs)
	NotBefore time.Time `json:"notBefore,omitzero"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	Issuer    string    `json:"issuer,omitempty"`
	KeyType   string    `json:"keyType,omitempty"` // ecdsa-p256, rsa-2048, ed25519, ...
	// Error: why the present file could not be read or parsed.
	Error string `json:"error,omitempty"`
}

// Settings lists the settings of c, split.
func (c Certificate) Settings() []string { return strings.Split(c.Setting, ", ") }

// Serves reports whether setting is one of c's settings.
func (c Certificate) Serves(setting string) bool {
	for _, s := range c.Settings() {
		if s == setting {
			return true
		}
	}
	return false
}

// certFiles lists the certificate files s names, server first, one entry
// per path.
func certFiles(s *Settings) []Certificate {
	if s == nil {
		return nil
	}
	var out []Certificate
	add := func(setting, path string) {
		if path == "" {
			return
		}
		for i := range out {
			if out[i].Path == path {
				out[i].Setting += ", " + setting
				return
			}
		}
		out = append(out, Certificate{Setting: setting, Path: path})
	}
	add(SettingCertFile, s.CertFile)
	add(SettingPeerCertFile, s.PeerCertFile)
	return out
}

// certSection is the probe section of the i-th certificate file.
func certSection(i int) string { return "cert-" + strconv.Itoa(i) }

// certScript prints, for each file, a section with "present" and at most
// pki.MaxPEM+1 bytes of it, "absent", "unreadable" or "not-a-file". It
// only reads.
func certScript(token string, files []Certificate) string {
	q := shellquote.Quote
	mark := "@@facts-" + token
	var b strings.Builder
	fmt.Fprintf(&b, "sec() { printf '\\n%s %%s\\n' \"$1\"; }\n", mark)
	fmt.Fprintf(&b, "rc() { printf '\\n%s-rc %%s\\n' \"$1\"; }\n", mark)
	for i, f := range files {
		p := q(f.Path)
		fmt.Fprintf(&b, "sec %s; if [ -f %s ] && [ -r %s ]; then echo present; head -c %d -- %s 2>/dev/null; rc $?; "+
			"elif [ -f %s ]; then echo unreadable; rc 0; elif [ -e %s ]; then echo not-a-file; rc 0; else echo absent; rc 0; fi\n",
			certSection(i), p, p, pki.MaxPEM+1, p, p, p)
	}
	return b.String()
}

// readCertSections fills files from the script's sections.
func readCertSections(files []Certificate, secs map[string]section) []Certificate {
	out := make([]Certificate, len(files))
	for i, f := range files {
		s, ok := secs[certSection(i)]
		switch {
		case !ok:
			f.Error = "not read (the command stopped before it)"
		default:
			first, body, _ := strings.Cut(s.Out, "\n")
			switch strings.TrimSpace(first) {
			case "absent":
			case "unreadable":
				f.Present, f.Error = true, "permission denied (ssh.sudo: true reads it as root)"
			case "not-a-file":
				f.Present, f.Error = true, "not a regular file"
			case "present":
				f.Present = true
				if s.RC != 0 {
					f.Error = fmt.Sprintf("reading it failed (head exit %d)", s.RC)
					break
				}
				f = CertificateFromPEM(f.Setting, f.Path, []byte(body))
			default:
				f.Error = "unexpected output: " + firstLine(s)
			}
		}
		out[i] = f
	}
	return out
}

// CertificateFromPEM is the Certificate of a present file with content
// data (its first certificate); a file that does not parse gets Error.
func CertificateFromPEM(setting, path string, data []byte) Certificate {
	f := Certificate{Setting: setting, Path: path, Present: true}
	if len(data) > pki.MaxPEM {
		f.Error = fmt.Sprintf("larger than %d bytes: not a certificate file", pki.MaxPEM)
		return f
	}
	certs, err := pki.ParseCerts(data)
	if err != nil {
		f.Error = oneLine(err)
		return f
	}
	c := certs[0]
	f.Subject, f.Issuer, f.SANs = c.Subject.String(), c.Issuer.String(), pki.SANs(c)
	f.NotBefore, f.NotAfter = c.NotBefore.UTC(), c.NotAfter.UTC()
	f.KeyType = keyTypeOf(c)
	return f
}

func keyTypeOf(c *x509.Certificate) string {
	if kt, err := pki.KeyTypeOf(c); err == nil {
		return string(kt)
	}
	return strings.ToLower(c.PublicKeyAlgorithm.String())
}

// readCerts reads the certificate files s names over client, in one
// command (under the inventory's sudo, as the probe; sshx runs it with
// sh -c). note is set when the
// command itself failed; then no certificate is listed.
func (c *collector) readCerts(ctx context.Context, client *sshx.Client, s *Settings) (certs []Certificate, note string) {
	files := certFiles(s)
	if len(files) == 0 {
		return nil, ""
	}
	res, err := client.Run(ctx, certScript(c.token, files),
		sshx.RunOpts{Display: "etcd-rescue facts: read the certificates etcd serves (read-only)"})
	secs := parseSections(string(res.Stdout), c.token)
	if err != nil && len(secs) == 0 {
		return nil, "certificates not read: " + oneLine(err)
	}
	return readCertSections(files, secs), ""
}
