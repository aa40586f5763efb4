package objstore

import (
	"testing"
	"time"
)

// The names come from etcd-backup-restore's own tests
// (pkg/snapstore/snapshot_test.go, "Parse Snapshot path/name") and from
// what its GenerateSnapshotName writes.
func TestParseBackupName(t *testing.T) {
	ts := time.Unix(1518427675, 0).UTC()
	tests := map[string]struct {
		key  string
		ok   bool
		want BackupName
	}{
		"v1 with prefix": {
			key: "/abc/v1/Backup--00000000-00002088-2387428/Full-00000000-00002088-2387428", ok: true,
			want: BackupName{Kind: "Full", LastRevision: 2088, Created: time.Unix(2387428, 0).UTC(), Version: "v1"},
		},
		"v1 bare": {
			key: "v1/Backup--00000000-00002088-2387428/Full-00000000-00002088-2387428", ok: true,
			want: BackupName{Kind: "Full", LastRevision: 2088, Created: time.Unix(2387428, 0).UTC(), Version: "v1"},
		},
		"v1 real dir": {
			key: "etcd/v1/Backup-1518427600/Full-00000000-00030009-1518427675.gz", ok: true,
			want: BackupName{Kind: "Full", LastRevision: 30009, Created: ts, Compression: CompressionGzip, Version: "v1"},
		},
		"v1 delta": {
			key: "etcd/v1/Backup-1518427600/Incr-00030010-00030100-1518427700", ok: true,
			want: BackupName{Kind: "Incr", StartRevision: 30010, LastRevision: 30100, Created: time.Unix(1518427700, 0).UTC(), Version: "v1"},
		},
		"v2 with prefix": {
			key: "/abc/v2/Full-00000000-00002088-2387428", ok: true,
			want: BackupName{Kind: "Full", LastRevision: 2088, Created: time.Unix(2387428, 0).UTC(), Version: "v2"},
		},
		"v2 plain": {
			key: "v2/Full-00000000-00030009-1518427675", ok: true,
			want: BackupName{Kind: "Full", LastRevision: 30009, Created: ts, Version: "v2"},
		},
		"v2 gz": {
			key: "v2/Full-00000000-00030009-1518427675.gz", ok: true,
			want: BackupName{Kind: "Full", LastRevision: 30009, Created: ts, Compression: CompressionGzip, Version: "v2"},
		},
		"v2 final": {
			key: "v2/Full-00000000-00030009-1518427675.final", ok: true,
			want: BackupName{Kind: "Full", LastRevision: 30009, Created: ts, Final: true, Version: "v2"},
		},
		"v2 gz final": {
			key: "v2/Full-00000000-00030009-1518427675.gz.final", ok: true,
			want: BackupName{Kind: "Full", LastRevision: 30009, Created: ts, Compression: CompressionGzip, Final: true, Version: "v2"},
		},
		"v2 zlib": {
			key: "shoot--a--b/v2/Full-00000000-00030009-1518427675.zlib", ok: true,
			want: BackupName{Kind: "Full", LastRevision: 30009, Created: ts, Compression: CompressionZlib, Version: "v2"},
		},
		"v2 lzw": {
			key: "p/v2/Full-00000000-00030009-1518427675.Z", ok: true,
			want: BackupName{Kind: "Full", LastRevision: 30009, Created: ts, Compression: CompressionLzw, Version: "v2"},
		},
		"v2 lz4": {
			key: "p/v2/Full-00000000-00030009-1518427675.lz4", ok: true,
			want: BackupName{Kind: "Full", LastRevision: 30009, Created: ts, Compression: CompressionLz4, Version: "v2"},
		},
		"revision past 8 digits": {
			key: "v2/Full-00000000-123456789012-1518427675", ok: true,
			want: BackupName{Kind: "Full", LastRevision: 123456789012, Created: ts, Version: "v2"},
		},
		"v2 delta": {
			key: "v2/Incr-00030010-00030100-1518427700.gz", ok: true,
			want: BackupName{Kind: "Incr", StartRevision: 30010, LastRevision: 30100, Created: time.Unix(1518427700, 0).UTC(), Compression: CompressionGzip, Version: "v2"},
		},
		"no version":                {key: "/abc/Full-00000000-00002088-2387428"},
		"name only":                 {key: "Full-00000000-00002088-2387428"},
		"v1 without dir":            {key: "v1/Full-00000000-00002088-2387428"},
		"v1 chunk":                  {key: "v1/Backup-1/Full-00000000-00002088-2387428/1"},
		"v2 chunk":                  {key: "v2/Full-00000000-00002088-2387428/1"},
		"five tokens":               {key: "v2/Full-00000000-00002088-2387428-43"},
		"bad start":                 {key: "v2/Full-00h000000-00002088-2387428"},
		"bad last":                  {key: "v2/Full-00000000-00sdf002088-2387428"},
		"start after last":          {key: "v2/Full-00012345-00002088-2387428"},
		"bad time":                  {key: "v2/Full-00000000-00002088-23874sdf43"},
		"bad kind":                  {key: "v2/meta-00000000-00002088-2387428"},
		"backup dir in v2":          {key: "v2/Backup--00000000-00002088-2387428"},
		"chunk kind":                {key: "v2/Chunk-00000000-00002088-2387428"},
		"unknown suffix":            {key: "v2/Full-00000000-00002088-2387428.bz2"},
		"two suffixes":              {key: "v2/Full-00000000-00002088-2387428.gz.zlib"},
		"version inside a name":     {key: "xv2/Full-00000000-00002088-2387428"},
		"etcd-rescue style":         {key: "backups/prod/etcd-20261121T101010Z.db"},
		"negative revision":         {key: "v2/Full--0000001-00002088-2387428"},
		"signed time":               {key: "v2/Full-00000000-00002088-+2387428"},
		"empty":                     {key: ""},
		"version is the last thing": {key: "p/v2"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := ParseBackupName(tc.key)
			if ok != tc.ok {
				t.Fatalf("ParseBackupName(%q) ok = %v, want %v (%+v)", tc.key, ok, tc.ok, got)
			}
			if ok && got != tc.want {
				t.Errorf("ParseBackupName(%q)\n got %+v\nwant %+v", tc.key, got, tc.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	sha := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	tests := map[string]struct {
		key        string
		md         map[string]string
		layout     string
		comp       string
		rev        int64
		selectable bool
	}{
		"rescue object (stat form)": {
			key: "b/etcd-1.db", md: map[string]string{"Etcd-Rescue-Sha256": sha, "Etcd-Rescue-Revision": "4711", "Etcd-Rescue-Size": "10"},
			layout: LayoutRescue, rev: 4711, selectable: true,
		},
		"rescue object (listing form, lower case, prefixed)": {
			key: "b/etcd-1.db", md: map[string]string{"x-amz-meta-etcd-rescue-sha256": sha, "x-amz-meta-etcd-rescue-revision": "12"},
			layout: LayoutRescue, rev: 12, selectable: true,
		},
		"rescue metadata wins over an etcdbrctl name": {
			key: "p/v2/Full-00000000-00000005-1518427675.gz", md: map[string]string{"Etcd-Rescue-Sha256": sha, "Etcd-Rescue-Revision": "9"},
			layout: LayoutRescue, rev: 9, selectable: true,
		},
		"rescue size mismatch": {
			key: "b/etcd-1.db", md: map[string]string{"Etcd-Rescue-Sha256": sha, "Etcd-Rescue-Size": "11"},
			layout: LayoutRescue,
		},
		"etcdbrctl full": {
			key: "p/v2/Full-00000000-00000005-1518427675.gz", layout: LayoutBackupFull, comp: CompressionGzip, rev: 5, selectable: true,
		},
		"etcdbrctl lz4": {
			key: "p/v2/Full-00000000-00000005-1518427675.lz4", layout: LayoutBackupFull, comp: CompressionLz4, rev: 5,
		},
		"etcdbrctl delta": {
			key: "p/v2/Incr-00000006-00000009-1518427675", layout: LayoutBackupDelta, rev: 9,
		},
		"foreign": {
			key: "p/readme.txt", md: map[string]string{"Content-Type": "text/plain"}, layout: LayoutUnknown,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o := Object{Location: Location{Bucket: "bkt", Key: tc.key}, Size: 10}
			classify(&o, tc.md)
			if o.Layout != tc.layout || o.Compression != tc.comp || o.Revision != tc.rev {
				t.Errorf("layout %q compression %q revision %d, want %q %q %d", o.Layout, o.Compression, o.Revision, tc.layout, tc.comp, tc.rev)
			}
			if o.Selectable() != tc.selectable {
				t.Errorf("Selectable() = %v, want %v", o.Selectable(), tc.selectable)
			}
		})
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := Meta{SHA256: "ab" + "cd", Revision: 123456789, Size: 1 << 30, Cluster: "prod-etcd", RunID: "run-20261202-1"}
	md := userMetadata(m)
	// What minio-go hands back from a HEAD: canonical header keys.
	back := map[string]string{}
	for k, v := range md {
		back[canonical(k)] = v
	}
	got, ok := parseMeta(back)
	if !ok || got != m {
		t.Fatalf("parseMeta(userMetadata(m)) = %+v, %v; want %+v", got, ok, m)
	}
	if _, ok := parseMeta(map[string]string{"Etcd-Rescue-Revision": "1"}); ok {
		t.Error("metadata without a sha256 was taken as etcd-rescue's")
	}
}

func canonical(k string) string {
	b := []byte(k)
	up := true
	for i, c := range b {
		if up && c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
		up = c == '-'
	}
	return string(b)
}

func TestCheckMeta(t *testing.T) {
	good := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	for name, m := range map[string]Meta{
		"short sha":         {SHA256: "abc"},
		"non-hex sha":       {SHA256: "zz86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		"non-ascii cluster": {SHA256: good, Cluster: "prod-ätcd"},
		"newline in run":    {SHA256: good, RunID: "a\nb"},
	} {
		if err := checkMeta(m); err == nil {
			t.Errorf("%s: checkMeta accepted %+v", name, m)
		}
	}
	if err := checkMeta(Meta{SHA256: good, Cluster: "prod-etcd", RunID: "r1"}); err != nil {
		t.Errorf("checkMeta refused good metadata: %v", err)
	}
}
