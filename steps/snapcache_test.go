package steps

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func writeSnap(t *testing.T, path, body string) {
	t.Helper()
	sum := sha256.Sum256([]byte(body))
	if err := os.WriteFile(path, append([]byte(body), sum[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Many hosts verifying the same file at once read it once; a file changed
// since (same size, new contents and mtime; or replaced) is read again, and
// a damaged one is refused even after a good version was remembered.
func TestVerifySnapshotFileOncePerFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.db")
	writeSnap(t, p, strings.Repeat("a", 1<<20))
	before := verifyReads.Load()
	var wg sync.WaitGroup
	sums := make([]string, 8)
	for i := range sums {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := VerifySnapshotFile(p)
			if err != nil {
				t.Error(err)
			}
			sums[i] = s
		}()
	}
	wg.Wait()
	if n := verifyReads.Load() - before; n != 1 {
		t.Fatalf("8 concurrent verifications read the file %d times, want 1", n)
	}
	for _, s := range sums[1:] {
		if s != sums[0] || len(s) != 64 {
			t.Fatalf("sums differ: %q", sums)
		}
	}

	// Same size, other contents, a later mtime: read again, new digest.
	writeSnap(t, p, strings.Repeat("b", 1<<20))
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	s2, err := VerifySnapshotFile(p)
	if err != nil || s2 == sums[0] {
		t.Fatalf("changed file: %s, %v (was %s)", s2, err, sums[0])
	}
	if n := verifyReads.Load() - before; n != 2 {
		t.Fatalf("a changed file was read %d times in all, want 2", n)
	}

	// Replaced by a damaged file (a new inode): refused.
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte(strings.Repeat("c", 1<<20)+strings.Repeat("x", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifySnapshotFile(p); err == nil || !strings.Contains(err.Error(), "no valid sha256 trailer") {
		t.Fatalf("a damaged replacement was accepted: %v", err)
	}
	// Failures are not remembered: each call reads.
	if _, err := VerifySnapshotFile(p); err == nil {
		t.Fatal("damaged file accepted the second time")
	}
	if n := verifyReads.Load() - before; n != 4 {
		t.Fatalf("reads %d, want 4", n)
	}
}
