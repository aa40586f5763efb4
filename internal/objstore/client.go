package objstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Transport timeouts. None of them bounds a whole request: a 1 GiB body
// may take minutes. A body that stops moving is caught by stallTimeout.
const (
	dialTimeout           = 10 * time.Second
	tlsHandshakeTimeout   = 10 * time.Second
	responseHeaderTimeout = 2 * time.Minute // after the request is written: CompleteMultipartUpload can take a while
	stallTimeout          = 2 * time.Minute // no byte moved for this long: the transfer is cancelled
	statConcurrency       = 8               // HEAD requests in flight while classifying a listing
)

// Client is a Store on an S3-compatible endpoint.
type Client struct {
	mc   *minio.Client
	core minio.Core
	// anonymous: no static keys and nothing found in the AWS environment or
	// shared credentials file; the store will refuse most requests and the
	// error says where credentials are looked for.
	anonymous bool
}

var _ Store = (*Client)(nil)

// New returns a client for cfg. It does not contact the store.
func New(cfg Config) (*Client, error) {
	host, secure, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	if cfg.AccessKey == "" && cfg.SecretKey != "" || cfg.AccessKey != "" && cfg.SecretKey == "" {
		return nil, fmt.Errorf("s3: accessKey and secretKey must be given together (or both left empty for the AWS environment and shared credentials file)")
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: responseHeaderTimeout,
		ExpectContinueTimeout: 10 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
		// Never let net/http decompress a body: the sha256 is over the
		// bytes as stored.
		DisableCompression: true,
	}
	if secure {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("s3: reading the CA bundle: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("s3: %s holds no PEM certificate", cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		tr.TLSClientConfig = tc
	} else if cfg.CAFile != "" {
		return nil, fmt.Errorf("s3: a CA bundle (%s) is set but the endpoint %s is plain http://", cfg.CAFile, cfg.Endpoint)
	}

	var creds *credentials.Credentials
	anonymous := false
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	} else {
		// The AWS chain, in this order:
		//   1. the environment: AWS_ACCESS_KEY_ID (or AWS_ACCESS_KEY),
		//      AWS_SECRET_ACCESS_KEY (or AWS_SECRET_KEY), AWS_SESSION_TOKEN;
		//   2. the shared credentials file: AWS_SHARED_CREDENTIALS_FILE or
		//      ~/.aws/credentials, section AWS_PROFILE or "default"
		//      (aws_access_key_id, aws_secret_access_key, aws_session_token;
		//      minio-go also honours credential_process and SSO there).
		// No instance-metadata (IMDS) or web-identity lookup: a rescue tool
		// should not wait on a metadata endpoint that is not there.
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{},
		})
		if v, err := creds.GetWithContext(&credentials.CredContext{Client: &http.Client{Transport: tr}}); err != nil || v.SignerType.IsAnonymous() {
			anonymous = true
		}
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	mc, err := minio.New(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Transport:    failFastTLS{tr},
		Region:       cfg.Region,
		BucketLookup: lookup,
		// Retries (5xx, throttling, connection resets) are minio-go's:
		// MaxRetry attempts with jittered exponential backoff; bodies are
		// rewound (uploads read the file with ReadAt, so every part can).
		MaxRetries: minio.MaxRetry,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: endpoint %s: %w", cfg.Endpoint, err)
	}
	mc.SetAppInfo("etcd-rescue", "1")
	return &Client{mc: mc, core: minio.Core{Client: mc}, anonymous: anonymous}, nil
}

// parseEndpoint reads scheme://host[:port] (https:// when the scheme is
// left out). Empty means AWS S3.
func parseEndpoint(ep string) (host string, secure bool, err error) {
	if ep == "" {
		return "s3.amazonaws.com", true, nil
	}
	raw := ep
	if !strings.Contains(ep, "://") {
		raw = "https://" + ep
	}
	u, perr := url.Parse(raw)
	if perr != nil {
		// url.Error quotes the whole input; user info in it would leak.
		return "", false, fmt.Errorf("s3: endpoint %q is not scheme://host[:port]", redactUserinfo(ep))
	}
	if u.User != nil {
		return "", false, fmt.Errorf("s3: endpoint %q must not carry credentials: use s3.accessKey/secretKey", redactUserinfo(ep))
	}
	switch u.Scheme {
	case "https":
		secure = true
	case "http":
	default:
		return "", false, fmt.Errorf("s3: endpoint %q: scheme must be https:// or http://", ep)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", false, fmt.Errorf("s3: endpoint %q names no host (scheme://host[:port])", ep)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", false, fmt.Errorf("s3: endpoint %q: port %q is not a number from 1 to 65535", ep, p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "", false, fmt.Errorf("s3: endpoint %q: empty port", ep)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false, fmt.Errorf("s3: endpoint %q must be scheme://host[:port] only: the bucket and key go in the s3:// URL", ep)
	}
	return u.Host, secure, nil
}

// redactUserinfo hides anything between "://" and "@".
func redactUserinfo(s string) string {
	i := strings.Index(s, "://")
	rest := s
	pre := ""
	if i >= 0 {
		pre, rest = s[:i+3], s[i+3:]
	}
	if j := strings.LastIndex(rest, "@"); j >= 0 {
		return pre + "REDACTED@" + rest[j+1:]
	}
	return s
}

// failFastTLS hands minio-go an unknown-authority certificate error
// unwrapped: minio-go recognises x509.UnknownAuthorityError as final, but
// net/http wraps it in *tls.CertificateVerificationError, which minio-go
// retries ten times (seconds lost on every misconfigured CA).
type failFastTLS struct{ rt http.RoundTripper }

func (t failFastTLS) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(r)
	var ua x509.UnknownAuthorityError
	if err != nil && errors.As(err, &ua) {
		return nil, ua
	}
	return resp, err
}
