package objstore

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// IsURL reports whether s names an object location (s3://...).
func IsURL(s string) bool { return strings.HasPrefix(s, Scheme) }

// ParseURL reads s3://BUCKET/KEY (KEY may be empty or end in "/": a
// prefix). The error says what is wrong with it.
func ParseURL(s string) (Location, error) {
	if !IsURL(s) {
		return Location{}, fmt.Errorf("%q is not an s3:// URL", s)
	}
	rest := strings.TrimPrefix(s, Scheme)
	bucket, key, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return Location{}, fmt.Errorf("%q names no bucket (s3://BUCKET/KEY)", s)
	}
	if err := checkBucket(bucket); err != nil {
		return Location{}, fmt.Errorf("%q: %v", s, err)
	}
	if strings.Contains(key, "//") || strings.HasPrefix(key, "/") {
		return Location{}, fmt.Errorf("%q: empty path segment in the key", s)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "." || seg == ".." {
			return Location{}, fmt.Errorf("%q: %q segments are not allowed in a key", s, seg)
		}
	}
	if len(key) > 1024 {
		return Location{}, fmt.Errorf("%q: key longer than 1024 bytes", s)
	}
	return Location{Bucket: bucket, Key: key}, nil
}

// checkBucket applies S3's bucket naming rules (3-63 characters, lower
// case letters, digits, dots and hyphens, starting and ending with a letter
// or digit).
func checkBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must be 3 to 63 characters long", b)
	}
	if strings.Contains(b, "..") {
		return fmt.Errorf("bucket name %q must not contain two dots in a row", b)
	}
	for i, r := range b {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (r == '-' || r == '.') && i > 0 && i < len(b)-1
		if !ok {
			return fmt.Errorf("bucket name %q: only lower-case letters, digits, '.' and '-' (not first or last)", b)
		}
	}
	return nil
}

// String is the s3:// URL of l.
func (l Location) String() string { return Scheme + l.Bucket + "/" + l.Key }

// IsPrefix reports whether l names a prefix rather than one object.
func (l Location) IsPrefix() bool { return l.Key == "" || strings.HasSuffix(l.Key, "/") }

// Selectable reports whether o may be chosen by select: latest: an
// etcd-rescue object with a recorded sha256 and size that match what the
// store lists, or an etcd-backup-restore full snapshot. Delta snapshots,
// unknown objects and lz4-compressed ones are never chosen.
func (o Object) Selectable() bool {
	switch o.Layout {
	case LayoutRescue:
		return o.Meta.SHA256 != "" && (o.Meta.Size == 0 || o.Meta.Size == o.Size) && o.Size > 0
	case LayoutBackupFull:
		return o.Compression != CompressionLz4 && o.Size > 0
	}
	return false
}

// newestFirst orders objects by upload time, then revision, then key, the
// newest first.
func newestFirst(objs []Object) {
	sort.SliceStable(objs, func(i, j int) bool {
		a, b := objs[i], objs[j]
		if !a.Modified.Equal(b.Modified) {
			return a.Modified.After(b.Modified)
		}
		if a.Revision != b.Revision {
			return a.Revision > b.Revision
		}
		return a.Key > b.Key
	})
}

// SelectLatest picks the newest selectable snapshot of objs (see
// [Object.Selectable]). The error, wrapping ErrNoSnapshot, says what was
// there instead.
func SelectLatest(objs []Object) (Object, error) {
	cands := make([]Object, 0, len(objs))
	skipped := map[string]int{}
	for _, o := range objs {
		if o.Selectable() {
			cands = append(cands, o)
			continue
		}
		why := "not a snapshot etcd-rescue or etcd-backup-restore wrote"
		switch {
		case o.Layout == LayoutBackupDelta:
			why = "etcd-backup-restore delta snapshots (never applied)"
		case o.Compression == CompressionLz4:
			why = "lz4-compressed full snapshots (not supported)"
		case o.Layout == LayoutRescue:
			why = "etcd-rescue objects whose size or sha256 metadata does not match"
		}
		skipped[why]++
	}
	if len(cands) == 0 {
		if len(skipped) == 0 {
			return Object{}, fmt.Errorf("%w: the prefix is empty", ErrNoSnapshot)
		}
		var parts []string
		for why, n := range skipped {
			parts = append(parts, fmt.Sprintf("%d %s", n, why))
		}
		sort.Strings(parts)
		return Object{}, fmt.Errorf("%w: only %s", ErrNoSnapshot, strings.Join(parts, ", "))
	}
	newestFirst(cands)
	return cands[0], nil
}

// PlanRetention returns the objects of objs that keep allows to delete
// (see [Keep]), given that protect (the object just written and
// verified) stays whatever the rule says. Only etcd-rescue's own
// selectable objects are ever returned; the newest of them is never.
func PlanRetention(objs []Object, keep Keep, now time.Time, protect Location) []Object {
	if keep.Last <= 0 && keep.Days <= 0 {
		return nil
	}
	own := make([]Object, 0, len(objs))
	for _, o := range objs {
		if o.Layout == LayoutRescue && o.Selectable() {
			own = append(own, o)
		}
	}
	newestFirst(own)
	var del []Object
	for i, o := range own {
		if i == 0 || o.Location == protect {
			continue
		}
		if keep.Last > 0 && i < keep.Last {
			continue
		}
		if keep.Days > 0 && now.Sub(o.Modified) < time.Duration(keep.Days)*24*time.Hour {
			continue
		}
		del = append(del, o)
	}
	return del
}
