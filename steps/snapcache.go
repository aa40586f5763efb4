package steps

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// The operator-side verification of a snapshot file (trailer + sha256, a
// whole read) is done once per file per session: every host's snapshot-copy
// and anything else calling VerifySnapshotFile on the same file share it.
// A result is kept under the file's path, size, device, inode and
// modification time (ns): a file written to or replaced since is read again.
// A write within one tick of the file system's clock that keeps the size
// escapes that key; the upload catches it anyway, because the host compares
// what arrives with the digest verified here. Concurrent callers for the same file wait for one read.
var verified = struct {
	sync.Mutex
	m map[fileID]*verifyCall
}{m: map[fileID]*verifyCall{}}

// verifyReads counts the whole-file reads done (for tests).
var verifyReads atomic.Int64

type fileID struct {
	path     string
	size     int64
	dev, ino uint64
	mtimeNs  int64
}

type verifyCall struct {
	done chan struct{}
	sum  string
	err  error
}

func statID(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{path: path, size: fi.Size(), mtimeNs: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id, nil
}

// VerifySnapshotFile checks the sha256 trailer etcd appends to a snapshot
// saved through the client API, and returns the sha256 of the whole file.
// A raw member/snap/db copy or a truncated .part file fails here
// (k3s #8824, etcd #18340). A success is remembered for the session while
// the file is unchanged (see verified).
func VerifySnapshotFile(path string) (fileSHA string, err error) {
	id, err := statID(path)
	if err != nil {
		return "", err
	}
	verified.Lock()
	if c, ok := verified.m[id]; ok {
		verified.Unlock()
		<-c.done
		return c.sum, c.err
	}
	c := &verifyCall{done: make(chan struct{})}
	verified.m[id] = c
	verified.Unlock()

	verifyReads.Add(1)
	c.sum, c.err = verifySnapshotFile(path)
	if c.err == nil {
		// Written to while it was read: the digest is of no file that exists.
		if now, err := statID(path); err != nil || now != id {
			c.err = fmt.Errorf("%s changed while it was verified: verify it again once it is complete", path)
		}
	}
	verified.Lock()
	if c.err != nil {
		// A failure is not remembered: a later call reads again.
		delete(verified.m, id)
	}
	verified.Unlock()
	close(c.done)
	return c.sum, c.err
}
