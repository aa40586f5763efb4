package objstore

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	good := map[string]Location{
		"s3://etcd-backups/prod/etcd-1.db":                 {Bucket: "etcd-backups", Key: "prod/etcd-1.db"},
		"s3://etcd-backups/prod/":                          {Bucket: "etcd-backups", Key: "prod/"},
		"s3://etcd-backups/":                               {Bucket: "etcd-backups", Key: ""},
		"s3://etcd-backups":                                {Bucket: "etcd-backups", Key: ""},
		"s3://a.b-c/x":                                     {Bucket: "a.b-c", Key: "x"},
		"s3://abc/v2/Full-00000000-00000005-1518427675.gz": {Bucket: "abc", Key: "v2/Full-00000000-00000005-1518427675.gz"},
		"s3://abc/a b/c%20d":                               {Bucket: "abc", Key: "a b/c%20d"}, // keys are taken literally
		"s3://abc/...x/..y":                                {Bucket: "abc", Key: "...x/..y"},
	}
	for in, want := range good {
		got, err := ParseURL(in)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", in, err)
			continue
		}
		if got != want {
			t.Errorf("ParseURL(%q) = %+v, want %+v", in, got, want)
		}
		// String gives back a URL that parses to the same location.
		again, err := ParseURL(got.String())
		if err != nil || again != got {
			t.Errorf("ParseURL(%q).String() = %q does not round-trip: %+v, %v", in, got.String(), again, err)
		}
	}
	bad := map[string]string{
		"":                                       "not an s3:// URL",
		"https://b/k":                            "not an s3:// URL",
		"S3://bucket/k":                          "not an s3:// URL",
		"s3://":                                  "names no bucket",
		"s3:///key":                              "names no bucket",
		"s3://ab/k":                              "3 to 63 characters",
		"s3://" + strings.Repeat("a", 64) + "/k": "3 to 63 characters",
		"s3://Bucket/k":                          "only lower-case",
		"s3://buck_et/k":                         "only lower-case",
		"s3://-bucket/k":                         "only lower-case",
		"s3://bucket-/k":                         "only lower-case",
		"s3://bucket./k":                         "only lower-case",
		"s3://bucket//k":                         "empty path segment",
		"s3://bucket/a//b":                       "empty path segment",
		"s3://bucket/a/../b":                     `".." segments`,
		"s3://bucket/./b":                        `"." segments`,
		"s3://bucket/a/..":                       `".." segments`,
		"s3://bucket/" + strings.Repeat("k", 1025): "longer than 1024",
	}
	for in, frag := range bad {
		_, err := ParseURL(in)
		if err == nil {
			t.Errorf("ParseURL(%q) accepted", in)
			continue
		}
		if !strings.Contains(err.Error(), frag) {
			t.Errorf("ParseURL(%q) = %v, want it to say %q", in, err, frag)
		}
	}
	if !IsURL("s3://b/k") || IsURL("/var/backups/x.db") || IsURL("s3:/b") {
		t.Error("IsURL")
	}
	for in, want := range map[string]bool{"s3://abc": true, "s3://abc/": true, "s3://abc/p/": true, "s3://abc/p": false, "s3://abc/p/x.db": false} {
		l, err := ParseURL(in)
		if err != nil {
			t.Fatal(err)
		}
		if l.IsPrefix() != want {
			t.Errorf("%s: IsPrefix() = %v, want %v", in, l.IsPrefix(), want)
		}
	}
}

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// own is a valid etcd-rescue object uploaded at t0+h hours.
func own(key string, h int, rev int64) Object {
	return Object{
		Location: Location{Bucket: "bkt", Key: key},
		Size:     100,
		Modified: t0.Add(time.Duration(h) * time.Hour),
		Layout:   LayoutRescue,
		Meta:     Meta{SHA256: fmt.Sprintf("%064x", rev), Revision: rev, Size: 100},
		Revision: rev,
	}
}

func brFull(key string, h int, rev int64, comp string) Object {
	return Object{
		Location:    Location{Bucket: "bkt", Key: key},
		Size:        100,
		Modified:    t0.Add(time.Duration(h) * time.Hour),
		Layout:      LayoutBackupFull,
		Compression: comp,
		Revision:    rev,
	}
}

func keys(objs []Object) []string {
	var k []string
	for _, o := range objs {
		k = append(k, o.Key)
	}
	sort.Strings(k)
	return k
}

func TestSelectLatest(t *testing.T) {
	delta := Object{Location: Location{"bkt", "p/v2/Incr-1-9-1"}, Size: 10, Modified: t0.Add(99 * time.Hour), Layout: LayoutBackupDelta, Revision: 9}
	foreign := Object{Location: Location{"bkt", "p/notes.txt"}, Size: 10, Modified: t0.Add(100 * time.Hour)}
	badSize := own("p/bad.db", 98, 50)
	badSize.Meta.Size = 99
	noSha := own("p/nosha.db", 97, 51)
	noSha.Meta.SHA256 = ""
	empty := own("p/empty.db", 96, 52)
	empty.Size, empty.Meta.Size = 0, 0
	lz4 := brFull("p/v2/Full-0-60-1.lz4", 95, 60, CompressionLz4)

	tests := map[string]struct {
		objs    []Object
		want    string
		errFrag string
	}{
		"newest by upload time, not by revision": {
			objs: []Object{own("p/a.db", 1, 900), own("p/b.db", 3, 100), own("p/c.db", 2, 500)},
			want: "p/b.db",
		},
		"same time: higher revision": {
			objs: []Object{own("p/a.db", 1, 5), own("p/b.db", 1, 7)},
			want: "p/b.db",
		},
		"same time and revision: deterministic by key": {
			objs: []Object{own("p/a.db", 1, 5), own("p/b.db", 1, 5)},
			want: "p/b.db",
		},
		"invalid newer objects are passed over": {
			objs: []Object{own("p/ok.db", 1, 5), delta, foreign, badSize, noSha, empty, lz4},
			want: "p/ok.db",
		},
		"etcdbrctl full newer than ours": {
			objs: []Object{own("p/ok.db", 1, 5), brFull("p/v2/Full-0-70-1.gz", 2, 70, CompressionGzip)},
			want: "p/v2/Full-0-70-1.gz",
		},
		"empty prefix": {
			errFrag: "the prefix is empty",
		},
		"nothing selectable says what was there": {
			objs:    []Object{delta, foreign, foreign, badSize, lz4},
			errFrag: "only 1 etcd-backup-restore delta snapshots (never applied), 1 etcd-rescue objects whose size or sha256 metadata does not match, 1 lz4-compressed full snapshots (not supported), 2 not a snapshot",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := append([]Object(nil), tc.objs...)
			got, err := SelectLatest(in)
			if tc.errFrag != "" {
				if !errors.Is(err, ErrNoSnapshot) || !strings.Contains(err.Error(), tc.errFrag) {
					t.Fatalf("err = %v, want ErrNoSnapshot saying %q", err, tc.errFrag)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Key != tc.want {
				t.Errorf("selected %s, want %s", got.Key, tc.want)
			}
			for i := range in {
				if in[i].Key != tc.objs[i].Key {
					t.Fatal("SelectLatest reordered its input")
				}
			}
		})
	}
}

func TestPlanRetention(t *testing.T) {
	now := t0.Add(30*24*time.Hour + time.Hour) // o1 is 29 days and an hour old, o5 25 days and an hour
	day := func(d int) int { return d * 24 }   // hours after t0
	// Five of ours, one a day, newest last (o5).
	five := []Object{
		own("p/o1.db", day(1), 1), own("p/o2.db", day(2), 2), own("p/o3.db", day(3), 3),
		own("p/o4.db", day(4), 4), own("p/o5.db", day(5), 5),
	}
	foreign := []Object{
		brFull("p/v2/Full-00000000-00000001-1.gz", 0, 1, CompressionGzip),
		{Location: Location{"bkt", "p/v2/Incr-00000002-00000003-1"}, Size: 5, Modified: t0, Layout: LayoutBackupDelta},
		{Location: Location{"bkt", "p/README"}, Size: 5, Modified: t0},
	}
	badMeta := own("p/bad.db", 0, 9)
	badMeta.Meta.Size = 1

	tests := map[string]struct {
		objs    []Object
		keep    Keep
		now     time.Time
		protect string
		want    []string
	}{
		"last 3 over 5 leaves 3": {
			objs: five, keep: Keep{Last: 3}, now: now,
			want: []string{"p/o1.db", "p/o2.db"},
		},
		"last 3 over 5 with foreign objects: foreign untouched": {
			objs: append(append([]Object{}, five...), append(foreign, badMeta)...), keep: Keep{Last: 3}, now: now,
			want: []string{"p/o1.db", "p/o2.db"},
		},
		"last 1 keeps only the newest": {
			objs: five, keep: Keep{Last: 1}, now: now,
			want: []string{"p/o1.db", "p/o2.db", "p/o3.db", "p/o4.db"},
		},
		"last larger than the count deletes nothing": {
			objs: five, keep: Keep{Last: 10}, now: now,
		},
		"no rule deletes nothing": {
			objs: five, keep: Keep{}, now: now,
		},
		"negative rule deletes nothing": {
			objs: five, keep: Keep{Last: -1, Days: -1}, now: now,
		},
		"days only: older than 27 days go": {
			objs: five, keep: Keep{Days: 27}, now: now,
			want: []string{"p/o1.db", "p/o2.db", "p/o3.db"},
		},
		"days only, all too old: the newest stays": {
			objs: five, keep: Keep{Days: 1}, now: now,
			want: []string{"p/o1.db", "p/o2.db", "p/o3.db", "p/o4.db"},
		},
		"last and days: both must allow": {
			// Last 2 alone would delete o1..o3; Days 28 alone o1 and o2.
			objs: five, keep: Keep{Last: 2, Days: 28}, now: now,
			want: []string{"p/o1.db", "p/o2.db"},
		},
		"protected object stays even beyond last": {
			objs: five, keep: Keep{Last: 1}, now: now, protect: "p/o2.db",
			want: []string{"p/o1.db", "p/o3.db", "p/o4.db"},
		},
		"a single object is never deleted": {
			objs: five[:1], keep: Keep{Last: 1, Days: 1}, now: now,
		},
		"order of the input does not matter": {
			objs: []Object{five[3], five[0], five[4], five[2], five[1]}, keep: Keep{Last: 3}, now: now,
			want: []string{"p/o1.db", "p/o2.db"},
		},
		"only foreign objects: nothing": {
			objs: foreign, keep: Keep{Last: 1}, now: now,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			protect := Location{}
			if tc.protect != "" {
				protect = Location{Bucket: "bkt", Key: tc.protect}
			}
			del := PlanRetention(tc.objs, tc.keep, tc.now, protect)
			got := keys(del)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("deleted %v, want %v", got, tc.want)
			}
			newest, err := SelectLatest(onlyOwn(tc.objs))
			for _, d := range del {
				if d.Layout != LayoutRescue || !d.Selectable() {
					t.Errorf("would delete %s (layout %q): not one of ours", d.Key, d.Layout)
				}
				if err == nil && d.Location == newest.Location {
					t.Errorf("would delete the newest object %s", d.Key)
				}
				if d.Location == protect {
					t.Errorf("would delete the protected object %s", d.Key)
				}
			}
			// What stays: at least min(Last, own count) of ours when Last is set.
			if tc.keep.Last > 0 {
				stay := len(onlyOwn(tc.objs)) - len(del)
				if least := min(tc.keep.Last, len(onlyOwn(tc.objs))); stay < least {
					t.Errorf("%d of ours stay, want at least %d", stay, least)
				}
			}
		})
	}
}

func onlyOwn(objs []Object) []Object {
	var r []Object
	for _, o := range objs {
		if o.Layout == LayoutRescue && o.Selectable() {
			r = append(r, o)
		}
	}
	return r
}
