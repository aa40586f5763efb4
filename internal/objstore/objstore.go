// Package objstore keeps etcd snapshots in S3-compatible object storage
// (AWS S3, MinIO, Ceph RGW, SeaweedFS): streamed multipart uploads with the
// snapshot's sha256 and revision in the object's metadata, a re-read that
// verifies what was stored, listing and selection of the newest valid
// snapshot under a prefix (etcd-rescue's own objects and etcd-backup-restore's
// Backup-<ts>/Full-... layout), retention, and verified downloads.
//
// The client is minio-go/v7. Nothing here reads a whole snapshot into
// memory: uploads and downloads stream through fixed-size buffers.
package objstore

import (
	"context"
	"errors"
	"time"
)

// Scheme is the URL scheme of an object location in a plan.
const Scheme = "s3://"

// Config says how to reach the store. It comes from the plan's or the
// inventory's s3: section.
type Config struct {
	// Endpoint is scheme://host[:port]: https:// unless http:// is given.
	// Empty: AWS S3 for Region.
	Endpoint string
	Region   string
	// PathStyle addresses buckets as endpoint/bucket/key (MinIO, SeaweedFS,
	// Ceph RGW); false lets the client choose (virtual-host style on AWS).
	PathStyle bool
	// CAFile is a PEM bundle of the CAs that sign the endpoint's
	// certificate; empty: the system roots.
	CAFile string
	// Static credentials. An empty AccessKey means the standard AWS chain:
	// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, then the
	// shared credentials file (AWS_SHARED_CREDENTIALS_FILE or
	// ~/.aws/credentials, profile AWS_PROFILE or "default").
	AccessKey, SecretKey, SessionToken string
}

// Location is a bucket and a key. A Key that is empty or ends in "/" is a
// prefix (a "directory" of snapshots).
type Location struct {
	Bucket string
	Key    string
}

// Meta is what etcd-rescue stores with a snapshot object (as
// x-amz-meta-etcd-rescue-* headers).
type Meta struct {
	SHA256   string // hex sha256 of the whole object as stored
	Revision int64  // the etcd revision the snapshot was taken at
	Size     int64  // bytes
	Cluster  string // cluster.name of the plan
	RunID    string // the run that wrote it
}

// Layouts an object can belong to.
const (
	LayoutRescue        = "etcd-rescue"     // has etcd-rescue's metadata
	LayoutBackupFull    = "etcdbrctl-full"  // etcd-backup-restore Backup-<ts>/Full-<start>-<last>-<ts>[.gz|.zlib|.lz4]
	LayoutBackupDelta   = "etcdbrctl-delta" // etcd-backup-restore Incr-...: never applied, never selected
	LayoutUnknown       = ""                // anything else: never selected, never pruned
	CompressionGzip     = "gzip"
	CompressionZlib     = "zlib"
	CompressionLz4      = "lz4"
	CompressionNone     = ""
	MetaPrefix          = "etcd-rescue-" // user metadata keys: etcd-rescue-sha256, -revision, -cluster, -run
	DefaultPartSize     = 16 << 20
	DefaultUploadStream = 2 // parts in flight; memory stays under PartSize*streams plus a little
)

// Object is one stored object as listed or stat'ed.
type Object struct {
	Location
	Size        int64
	Modified    time.Time
	ETag        string
	Meta        Meta   // zero unless Layout is LayoutRescue
	Layout      string // one of the Layout constants
	Compression string // one of the Compression constants (etcdbrctl suffixes)
	// Revision of an etcdbrctl full snapshot comes from its name
	// (Full-<start>-<last>-<ts>: last); for etcd-rescue objects it is
	// Meta.Revision.
	Revision int64
}

// Keep is a retention rule over a prefix. An object is deleted only when
// it is not among the Last newest valid ones AND (Days > 0) it is older
// than Days days; with Last 0 only age counts; with Days 0 only the count.
// The newest verified object is never deleted, nor anything that is not
// etcd-rescue's own layout.
type Keep struct {
	Last int
	Days int
}

// Errors the callers tell apart.
var (
	// ErrCorrupt: the bytes read do not match the sha256 or size recorded
	// in the object's metadata.
	ErrCorrupt = errors.New("object does not match its recorded sha256 or size")
	// ErrNoSnapshot: a prefix holds no selectable snapshot.
	ErrNoSnapshot = errors.New("no valid snapshot under the prefix")
	// ErrUnsupported: an object the tool cannot read (lz4, delta).
	ErrUnsupported = errors.New("unsupported snapshot object")
)

// Progress is called while bytes move (at most every few MiB and at the
// end); total is -1 when unknown.
type Progress func(done, total int64)

// Store is what the steps use; *Client implements it and unit tests use a
// fake.
type Store interface {
	Upload(ctx context.Context, dst Location, file string, meta Meta, progress Progress) (Object, error)
	Verify(ctx context.Context, l Location, want Meta) (Object, error)
	Stat(ctx context.Context, l Location) (Object, error)
	List(ctx context.Context, prefix Location) ([]Object, error)
	Download(ctx context.Context, src Object, file string, progress Progress) (sha256hex string, err error)
	Delete(ctx context.Context, objs []Object) error
	AbortStaleUploads(ctx context.Context, prefix Location, olderThan time.Duration) (int, error)
}
