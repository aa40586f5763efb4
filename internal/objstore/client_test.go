package objstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestParseEndpoint(t *testing.T) {
	good := map[string]struct {
		host   string
		secure bool
	}{
		"":                         {"s3.amazonaws.com", true},
		"https://127.0.0.1:8333":   {"127.0.0.1:8333", true},
		"https://127.0.0.1:8333/":  {"127.0.0.1:8333", true},
		"http://minio.local:9000":  {"minio.local:9000", false},
		"minio.local:9000":         {"minio.local:9000", true},
		"s3.eu-west-1.example.com": {"s3.eu-west-1.example.com", true},
		"https://[::1]:8333":       {"[::1]:8333", true},
	}
	for in, want := range good {
		host, secure, err := parseEndpoint(in)
		if err != nil || host != want.host || secure != want.secure {
			t.Errorf("parseEndpoint(%q) = %q, %v, %v; want %q, %v", in, host, secure, err, want.host, want.secure)
		}
	}
	bad := map[string]string{
		"ftp://host:21":                 "scheme must be https:// or http://",
		"https://":                      "names no host",
		"https://:8333":                 "names no host",
		"https://host:99999":            "port",
		"https://host:port":             "not scheme://host[:port]",
		"https://host:":                 "empty port",
		"https://host:8333/bucket":      "bucket and key go in the s3:// URL",
		"https://host:8333?x=1":         "scheme://host[:port] only",
		"https://user:hunter2@host:443": "must not carry credentials",
		"https://host name":             "not scheme://host[:port]",
	}
	for in, frag := range bad {
		_, _, err := parseEndpoint(in)
		if err == nil {
			t.Errorf("parseEndpoint(%q) accepted", in)
			continue
		}
		if !strings.Contains(err.Error(), frag) {
			t.Errorf("parseEndpoint(%q) = %v, want it to say %q", in, err, frag)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("parseEndpoint(%q) error shows the password: %v", in, err)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		cfg  Config
		frag string
	}{
		"secret without access key": {Config{Endpoint: "https://h:1", SecretKey: "s3cr3t"}, "must be given together"},
		"access key without secret": {Config{Endpoint: "https://h:1", AccessKey: "AK"}, "must be given together"},
		"missing CA file":           {Config{Endpoint: "https://h:1", CAFile: filepath.Join(dir, "nope.crt")}, "reading the CA bundle"},
		"CA file without PEM":       {Config{Endpoint: "https://h:1", CAFile: notPEM}, "holds no PEM certificate"},
		"CA with plain http":        {Config{Endpoint: "http://h:1", CAFile: notPEM}, "plain http://"},
		"malformed endpoint":        {Config{Endpoint: "https://h:1/x"}, "bucket and key go in the s3:// URL"},
	}
	for name, tc := range tests {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.frag) {
			t.Errorf("%s: New = %v, want an error saying %q", name, err, tc.frag)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
}

func TestNewCredentialChain(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, "none"))
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} {
		t.Setenv(v, "")
	}
	c, err := New(Config{Endpoint: "https://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.anonymous {
		t.Error("no credentials anywhere, but the client is not marked anonymous")
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
	if c, err = New(Config{Endpoint: "https://127.0.0.1:1"}); err != nil || c.anonymous {
		t.Errorf("credentials in the environment not found: %v anonymous=%v", err, c != nil && c.anonymous)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	cf := filepath.Join(home, "credentials")
	if err := os.WriteFile(cf, []byte("[default]\naws_access_key_id = AKFILE\naws_secret_access_key = filesecret\n[other]\naws_access_key_id = AKO\naws_secret_access_key = o\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", cf)
	t.Setenv("AWS_PROFILE", "other")
	if c, err = New(Config{Endpoint: "https://127.0.0.1:1"}); err != nil || c.anonymous {
		t.Errorf("credentials in the shared file not found: %v anonymous=%v", err, c != nil && c.anonymous)
	}
	t.Setenv("AWS_PROFILE", "missing")
	if c, err = New(Config{Endpoint: "https://127.0.0.1:1"}); err != nil || !c.anonymous {
		t.Errorf("a missing profile gave credentials: %v anonymous=%v", err, c != nil && c.anonymous)
	}
}

func TestClassifyErr(t *testing.T) {
	tests := map[string]struct {
		err  error
		kind error
		frag string
	}{
		"no bucket":     {minio.ErrorResponse{Code: "NoSuchBucket", Message: "The specified bucket does not exist"}, ErrNotFound, "the bucket does not exist"},
		"no key":        {minio.ErrorResponse{Code: "NoSuchKey"}, ErrNotFound, "no such object"},
		"access denied": {minio.ErrorResponse{Code: "AccessDenied", Message: "Access Denied."}, ErrCredentials, "credentials refused (AccessDenied)"},
		"bad key id":    {minio.ErrorResponse{Code: "InvalidAccessKeyId"}, ErrCredentials, "credentials refused (InvalidAccessKeyId)"},
		"bad signature": {minio.ErrorResponse{Code: "SignatureDoesNotMatch"}, ErrCredentials, "credentials refused (SignatureDoesNotMatch)"},
		"wrong region":  {minio.ErrorResponse{Code: "AuthorizationHeaderMalformed"}, ErrCredentials, "credentials refused"},
		"changed":       {minio.ErrorResponse{Code: "PreconditionFailed"}, ErrCorrupt, "changed since it was listed"},
		"wrapped":       {fmt.Errorf("put: %w", minio.ErrorResponse{Code: "NoSuchBucket"}), ErrNotFound, "the bucket does not exist"},
		"unknown ca":    {fmt.Errorf("Get x: %w", x509.UnknownAuthorityError{}), ErrTLS, "not signed by the configured CA"},
		"wrong host":    {x509.HostnameError{Certificate: &x509.Certificate{}, Host: "10.0.0.9"}, ErrTLS, "not valid for 10.0.0.9"},
		"cancelled":     {fmt.Errorf("x: %w", context.Canceled), nil, "cancelled"},
		"other code":    {minio.ErrorResponse{Code: "EntityTooLarge", Message: "too big"}, nil, "EntityTooLarge: too big"},
	}
	for name, tc := range tests {
		e := (*Client)(nil).wrap("upload", Location{Bucket: "bkt", Key: "k"}, tc.err)
		if !strings.Contains(e.Error(), tc.frag) || !strings.HasPrefix(e.Error(), "s3 upload s3://bkt/k: ") {
			t.Errorf("%s: %q, want it to name the operation and URL and say %q", name, e.Error(), tc.frag)
		}
		if tc.kind != nil && !errors.Is(e, tc.kind) {
			t.Errorf("%s: errors.Is(%v, %v) is false", name, e, tc.kind)
		}
		if !errors.Is(e, tc.err) {
			t.Errorf("%s: the cause is not kept", name)
		}
	}
}

// A store behind TLS whose certificate the configured CA did not sign:
// the error says so, through the real client and transport.
func TestUnknownCAIsNamed(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound) // a HEAD of a missing object
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	// A CA of our own: valid PEM, not the signer of httptest's certificate.
	if err := os.WriteFile(ca, selfSignedCA(t), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Endpoint: srv.URL, CAFile: ca, PathStyle: true, Region: "us-east-1", AccessKey: "AK", SecretKey: "s3cr3t"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Stat(context.Background(), Location{Bucket: "bkt", Key: "x.db"})
	if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "the endpoint's certificate is not signed by the configured CA") {
		t.Fatalf("Stat = %v, want the CA named", err)
	}
	// With the right CA the request goes through: "no such object".
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = New(Config{Endpoint: srv.URL, CAFile: ca, PathStyle: true, Region: "us-east-1", AccessKey: "AK", SecretKey: "s3cr3t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = c.Stat(context.Background(), Location{Bucket: "bkt", Key: "x.db"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat with the right CA = %v, want not found", err)
	}
}

// A store that refuses the signature: "credentials refused", and the
// secret appears nowhere in the error.
func TestRefusedSignatureIsNamed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided. Check your key and signing method.</Message><Resource>/bkt</Resource></Error>`)
	}))
	defer srv.Close()
	c, err := New(Config{Endpoint: srv.URL, PathStyle: true, Region: "us-east-1", AccessKey: "AKIDEXAMPLE", SecretKey: "wJalrXUtnFEMI-s3cr3t"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.List(context.Background(), Location{Bucket: "bkt", Key: "p/"})
	if !errors.Is(err, ErrCredentials) || !strings.Contains(err.Error(), "credentials refused (SignatureDoesNotMatch)") {
		t.Fatalf("List = %v, want credentials refused", err)
	}
	if !strings.Contains(err.Error(), "s3 list s3://bkt/p/") {
		t.Errorf("the error does not name the operation and URL: %v", err)
	}
	if strings.Contains(err.Error(), "wJalrXUtnFEMI-s3cr3t") {
		t.Errorf("the error shows the secret: %v", err)
	}
}

// selfSignedCA returns the PEM of a fresh CA certificate.
func selfSignedCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "not the store's CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestProgressMeter(t *testing.T) {
	var calls [][2]int64
	m := &progressMeter{fn: func(d, tot int64) { calls = append(calls, [2]int64{d, tot}) }, total: 10 << 20}
	for i := 0; i < 10<<20; i += 32 << 10 {
		m.add(32 << 10)
	}
	m.add(64 << 10) // a retried read: never past the total
	m.finish()
	if len(calls) != 3 {
		t.Fatalf("%d progress calls for 10 MiB, want 3 (4 MiB, 8 MiB, end): %v", len(calls), calls)
	}
	if calls[0][0] != 4<<20 || calls[1][0] != 8<<20 || calls[2] != [2]int64{10 << 20, 10 << 20} {
		t.Errorf("progress calls %v", calls)
	}
}
