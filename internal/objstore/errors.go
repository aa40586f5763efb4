package objstore

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/minio/minio-go/v7"
)

// More errors the callers tell apart (besides ErrCorrupt, ErrNoSnapshot
// and ErrUnsupported in objstore.go).
var (
	// ErrNotFound: the bucket or the object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCredentials: the store refused the credentials or the request's
	// signature, or denied access.
	ErrCredentials = errors.New("credentials refused")
	// ErrTLS: the endpoint's certificate could not be verified.
	ErrTLS = errors.New("endpoint certificate not trusted")
)

// Error is a failed operation on the store: the operation, the s3:// URL
// it was about, what went wrong in words, and a hint when there is a next
// action. It never holds a credential: the S3 error's message is kept but
// not the request.
type Error struct {
	Op   string // upload, verify, stat, list, download, delete, abort-uploads
	URL  string
	Msg  string
	Hint string
	Kind error // ErrNotFound, ErrCredentials, ErrTLS, ErrCorrupt, ... or nil
	Err  error // the cause
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "s3 %s %s: %s", e.Op, e.URL, e.Msg)
	if e.Hint != "" {
		b.WriteString("\nhint: " + e.Hint)
	}
	return b.String()
}

// Unwrap lets errors.Is match both the kind and the cause.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// wrap turns an error of minio-go or of the transport into an *Error
// that says what happened in terms the operator can act on.
func (c *Client) wrap(op string, l Location, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	e := classifyErr(err)
	e.Op, e.URL = op, l.String()
	if errors.Is(e.Kind, ErrCredentials) && c != nil && c.anonymous {
		e.Hint = "no credentials were found: set s3.accessKey and s3.secretKey, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials (AWS_PROFILE)"
	}
	return e
}

// classifyErr maps S3 error codes and TLS failures to words. Op and URL
// are left for the caller.
func classifyErr(err error) *Error {
	e := &Error{Err: err, Msg: err.Error()}
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.Is(err, context.Canceled):
		e.Msg = "cancelled"
		return e
	case errors.Is(err, context.DeadlineExceeded):
		e.Msg = "timed out"
		return e
	case errors.As(err, &ua):
		e.Kind = ErrTLS
		e.Msg = "the endpoint's certificate is not signed by the configured CA"
		e.Hint = "set s3.ca to the PEM bundle of the CA that signs the endpoint's certificate"
		return e
	case errors.As(err, &hn):
		e.Kind = ErrTLS
		e.Msg = fmt.Sprintf("the endpoint's certificate is not valid for %s", hn.Host)
		e.Hint = "use the host name (or IP) the certificate was issued for in s3.endpoint"
		return e
	case errors.As(err, &ci):
		e.Kind = ErrTLS
		e.Msg = "the endpoint's certificate is invalid: " + ci.Error()
		return e
	}
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupported) || errors.Is(err, ErrNoSnapshot) {
		return e
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		e.Msg = "cannot connect to the endpoint: " + opErr.Err.Error()
		e.Hint = "check s3.endpoint (scheme://host:port) and that the store is reachable from this machine"
		return e
	}
	r := minio.ToErrorResponse(err)
	if r.Code == "" {
		var er minio.ErrorResponse
		if errors.As(err, &er) {
			r = er
		}
	}
	switch r.Code {
	case "":
		return e
	case "NoSuchBucket":
		e.Kind = ErrNotFound
		e.Msg = "the bucket does not exist"
		e.Hint = "create the bucket or correct the s3:// URL"
	case "NoSuchKey", "NotFound":
		e.Kind = ErrNotFound
		e.Msg = "no such object"
	case "NoSuchUpload":
		e.Kind = ErrNotFound
		e.Msg = "no such multipart upload (already completed or aborted)"
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed", "MissingSecurityHeader":
		e.Kind = ErrCredentials
		e.Msg = fmt.Sprintf("credentials refused (%s)", r.Code)
		e.Hint = "check s3.accessKey and s3.secretKey (or the AWS environment), and that they may read and write this bucket"
		if r.Code == "AuthorizationHeaderMalformed" {
			e.Hint = "check s3.region: the store expects another region"
		}
	case "PreconditionFailed":
		e.Kind = ErrCorrupt
		e.Msg = "the object changed since it was listed (its ETag no longer matches)"
		e.Hint = "list again and choose again"
	case "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout":
		e.Msg = fmt.Sprintf("the store failed the request after retries (%s: %s)", r.Code, r.Message)
	default:
		if r.Message != "" {
			e.Msg = fmt.Sprintf("%s: %s", r.Code, r.Message)
		} else {
			e.Msg = r.Code
		}
	}
	return e
}
