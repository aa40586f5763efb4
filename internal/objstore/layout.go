package objstore

import (
	"strconv"
	"strings"
	"time"
)

// CompressionLzw is etcd-backup-restore's "lzw" policy (suffix .Z,
// compress/lzw LSB order, literal width 8).
const CompressionLzw = "lzw"

// BackupName is what the name of an etcd-backup-restore object says.
type BackupName struct {
	Kind          string // "Full" or "Incr"
	StartRevision int64
	LastRevision  int64
	Created       time.Time
	Compression   string // CompressionGzip, CompressionZlib, CompressionLzw, CompressionLz4 or CompressionNone
	Final         bool   // the ".final" snapshot taken when the sidecar stopped
	Version       string // "v1" (<prefix>/v1/Backup-<ts>/...) or "v2" (<prefix>/v2/...)
}

// ParseBackupName reads an etcd-backup-restore (etcdbrctl) object key the
// way its snapstore.ParseSnapshot does (gardener/etcd-backup-restore,
// pkg/snapstore/snapshot.go; names written by pkg/types/snapstore.go
// GenerateSnapshotName as "%s-%08d-%08d-%d%s%s"):
//
//	<prefix>/v2/Full-<start>-<last>-<unix ts>[.gz|.zlib|.Z][.final]   current layout
//	<prefix>/v2/Incr-<start>-<last>-<unix ts>[...]                      delta snapshot
//	<prefix>/v1/Backup-<unix ts>/Full-<start>-<last>-<unix ts>[...]     layout before v2
//
// Revisions are decimal (zero-padded to 8 digits, longer when larger);
// a full snapshot's start revision is 0 and its last revision is the
// revision it was taken at. Chunk objects (a further path segment below
// the snapshot name: pieces of an upload on stores without multipart) and
// anything else return ok false. Unlike ParseSnapshot, "v1"/"v2" must be
// a whole path segment (it matches "xv1/" too).
func ParseBackupName(key string) (BackupName, bool) {
	segs := strings.Split(key, "/")
	// The version segment: the last "v1" or "v2" segment, as ParseSnapshot
	// takes the last occurrence.
	vi := -1
	for i := len(segs) - 2; i >= 0; i-- {
		if segs[i] == "v1" || segs[i] == "v2" {
			vi = i
			break
		}
	}
	if vi < 0 {
		return BackupName{}, false
	}
	b := BackupName{Version: segs[vi]}
	rest := segs[vi+1:]
	var name string
	switch b.Version {
	case "v1":
		if len(rest) != 2 || rest[0] == "" {
			return BackupName{}, false // 3 segments: a chunk
		}
		name = rest[1]
	case "v2":
		if len(rest) != 1 {
			return BackupName{}, false // 2 segments: a chunk
		}
		name = rest[0]
	}
	tok := strings.Split(name, "-")
	if len(tok) != 4 {
		return BackupName{}, false
	}
	switch tok[0] {
	case "Full", "Incr":
		b.Kind = tok[0]
	default:
		return BackupName{}, false
	}
	var err error
	if b.StartRevision, err = parseRev(tok[1]); err != nil {
		return BackupName{}, false
	}
	if b.LastRevision, err = parseRev(tok[2]); err != nil {
		return BackupName{}, false
	}
	if b.StartRevision > b.LastRevision {
		return BackupName{}, false
	}
	parts := strings.Split(tok[3], ".")
	ts, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || parts[0] == "" || parts[0][0] == '+' || parts[0][0] == '-' {
		return BackupName{}, false
	}
	b.Created = time.Unix(ts, 0).UTC()
	sfx := parts[1:]
	if n := len(sfx); n > 0 && sfx[n-1] == "final" {
		b.Final = true
		sfx = sfx[:n-1]
	}
	switch len(sfx) {
	case 0:
		b.Compression = CompressionNone
	case 1:
		switch sfx[0] {
		case "gz":
			b.Compression = CompressionGzip
		case "zlib":
			b.Compression = CompressionZlib
		case "Z":
			b.Compression = CompressionLzw
		case "lz4":
			b.Compression = CompressionLz4
		default:
			return BackupName{}, false
		}
	default:
		return BackupName{}, false
	}
	return b, true
}

// parseRev reads a non-negative decimal revision.
func parseRev(s string) (int64, error) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseInt(s, 10, 64)
}

// classifyName fills Layout, Compression and Revision of an object that
// carries no etcd-rescue metadata, from its name.
func classifyName(o *Object) {
	b, ok := ParseBackupName(o.Key)
	if !ok {
		o.Layout, o.Compression, o.Revision = LayoutUnknown, CompressionNone, 0
		return
	}
	o.Compression = b.Compression
	o.Revision = b.LastRevision
	if b.Kind == "Full" {
		o.Layout = LayoutBackupFull
	} else {
		o.Layout = LayoutBackupDelta
	}
}

// Metadata keys, as minio-go hands them back (canonical header form,
// without "X-Amz-Meta-"); compared case-insensitively.
const (
	metaSHA256   = MetaPrefix + "sha256"
	metaRevision = MetaPrefix + "revision"
	metaCluster  = MetaPrefix + "cluster"
	metaRun      = MetaPrefix + "run"
	metaSize     = MetaPrefix + "size"
)

// userMetadata is what Upload stores with an object.
func userMetadata(m Meta) map[string]string {
	md := map[string]string{
		metaSHA256:   m.SHA256,
		metaRevision: strconv.FormatInt(m.Revision, 10),
		metaSize:     strconv.FormatInt(m.Size, 10),
	}
	if m.Cluster != "" {
		md[metaCluster] = m.Cluster
	}
	if m.RunID != "" {
		md[metaRun] = m.RunID
	}
	return md
}

// parseMeta reads etcd-rescue's metadata from an object's user metadata;
// ok is false when there is no sha256 entry (not our object).
func parseMeta(md map[string]string) (Meta, bool) {
	get := func(k string) string {
		for mk, v := range md {
			mk = strings.TrimPrefix(strings.ToLower(mk), "x-amz-meta-")
			if mk == k {
				return v
			}
		}
		return ""
	}
	m := Meta{
		SHA256:  strings.ToLower(get(metaSHA256)),
		Cluster: get(metaCluster),
		RunID:   get(metaRun),
	}
	if m.SHA256 == "" {
		return Meta{}, false
	}
	m.Revision, _ = strconv.ParseInt(get(metaRevision), 10, 64)
	m.Size, _ = strconv.ParseInt(get(metaSize), 10, 64)
	return m, true
}

// classify fills Layout, Compression, Revision and Meta of o from its
// user metadata (etcd-rescue's) or else from its name.
func classify(o *Object, md map[string]string) {
	if m, ok := parseMeta(md); ok {
		o.Meta = m
		o.Layout = LayoutRescue
		o.Compression = CompressionNone
		o.Revision = m.Revision
		return
	}
	o.Meta = Meta{}
	classifyName(o)
}
