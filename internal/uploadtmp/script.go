package uploadtmp

import (
	"fmt"
	"io/fs"
	"path"

	"github.com/etcd-rescue/etcd-rescue/internal/shellquote"
)

// Exit codes of [Script], apart from 0 (placed).
const (
	ExitMkdir    = 90 // the target's directory could not be made
	ExitWrite    = 91 // writing the temporary file (or hashing it) failed
	ExitMismatch = 92 // the bytes that arrived do not have the expected sha256
	ExitRename   = 93 // the rename over the target failed
)

// Checked says what one checked upload does besides writing.
type Checked struct {
	// SHA256 is the hex digest the file must arrive with.
	SHA256 string
	// Perm is the mode of the placed file.
	Perm fs.FileMode
	// DirPerm, when not zero, makes the target's directory first (mkdir -p -m).
	DirPerm fs.FileMode
	// RemoveStale removes the temporary files earlier uploads of the same run
	// to the same target left behind (an interrupted attempt); another run's
	// are never touched (RunPrefix).
	RemoveStale bool
	// RunID is the run whose temporary names are used (RunOf of the upload's context).
	RunID string
}

// Script is the one remote command of a checked upload of its standard input
// to target through the temporary file tmp: it writes the file and syncs it
// (dd conv=fsync), hashes it (`openssl dgst -sha256`, or sha256sum where
// there is no openssl: coreutils' has no SHA extensions and is 3x slower),
// compares the digest with the expected one, and only then chmods and
// renames it over target and syncs the directory.
//
// The hash reads the file back from the page cache right after writing it
// rather than hashing the stream on its way in (tee FILE | openssl): tee
// moves the data in 8 KiB reads and writes, and with the hosts' CPU as the
// limit that pipeline cost twice the time of write-then-hash on the lab
// (docs/measurements.md). On a link slower than the host's hashing the
// streamed form would hide the hash behind the transfer instead; at
// ~1 GB/s for openssl the read-back adds about 1 s per GiB.
//
// Every process counts where a fork costs milliseconds: the directory is
// made only when missing, stale temporary files are removed only when the
// glob matches one, the digest is cut out of the hash tool's output by the
// shell, the file is synced by the process that writes it, and the size is
// read only to report a mismatch (on success it is the first field of the
// placed identity). It prints "sha256 DIGEST" after hashing ("sha256 DIGEST
// SIZE" on a mismatch) and, once placed, "placed " + [StatFormat] of the
// target. On every failure the temporary file is removed and target is left
// as it was; the exit code says which failure (ExitMkdir, ExitWrite,
// ExitMismatch, ExitRename). POSIX sh and GNU coreutils.
func Script(target, tmp string, c Checked) string {
	q := shellquote.Quote
	dir := path.Dir(target)
	s := "umask 077; t=" + q(tmp) + "; f=" + q(target) + "; "
	if c.DirPerm != 0 {
		s += fmt.Sprintf("[ -d %s ] || mkdir -p -m %04o -- %s || exit %d; ", q(dir), c.DirPerm.Perm(), q(dir), ExitMkdir)
	}
	if c.RemoveStale {
		s += "set -- " + q(RunPrefix(target, c.RunID)) + "*" + Suffix + "; { [ -e \"$1\" ] || [ -L \"$1\" ]; } && rm -f -- \"$@\"; "
	}
	s += "if command -v openssl >/dev/null 2>&1; then h='openssl dgst -sha256 -r'; else h=sha256sum; fi; " +
		fmt.Sprintf("dd of=\"$t\" bs=1M conv=fsync status=none || { rm -f -- \"$t\"; exit %d; }; ", ExitWrite) +
		"g=$($h < \"$t\"); g=${g%%[!0-9a-f]*}; " +
		fmt.Sprintf("[ ${#g} -eq 64 ] || { rm -f -- \"$t\"; echo \"no digest of $t\" >&2; exit %d; }; ", ExitWrite) +
		fmt.Sprintf("[ \"$g\" = %s ] || { echo \"sha256 $g $(stat -c %%s -- \"$t\")\"; rm -f -- \"$t\"; exit %d; }; ", q(c.SHA256), ExitMismatch) +
		"echo \"sha256 $g\"; " +
		fmt.Sprintf("chmod %04o -- \"$t\" || { rm -f -- \"$t\"; exit %d; }; ", c.Perm.Perm(), ExitWrite) +
		fmt.Sprintf("mv -f -- \"$t\" \"$f\" || { rm -f -- \"$t\"; exit %d; }; ", ExitRename) +
		"sync -- " + q(dir) + " 2>/dev/null; " +
		"echo \"placed $(stat -c " + q(StatFormat) + " -- \"$f\")\""
	return s
}

// StatFormat is the `stat -c` format of a placed file's identity: size,
// device, inode, and the modification and status-change times in
// nanoseconds. A later run step compares it to know that the file is still
// the one that arrived (any write changes the times; a replacement changes
// the inode).
const StatFormat = "%s %d %i %.9Y %.9Z"
