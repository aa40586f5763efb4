package sshx

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/internal/uploadtmp"
)

// Transfer describes a verified copy.
type Transfer struct {
	// SHA256 is the hex digest computed while streaming; the remote sha256sum of the
	// file agreed with it.
	SHA256 string
	Size   int64
}

// Upload streams r to remotePath on the host over the existing connection: it is
// written to a temporary file beside remotePath (mode perm), its sha256 on the host
// is compared with the one computed while sending, and only then renamed over
// remotePath. On any failure the temporary file is removed and remotePath is left
// as it was.
func (c *Client) Upload(ctx context.Context, r io.Reader, remotePath string, perm fs.FileMode) (Transfer, error) {
	_, base := path.Split(remotePath)
	if base == "" || remotePath == "" {
		return Transfer{}, fmt.Errorf("host %s: upload: invalid remote path %q", c.name, remotePath)
	}
	tmp := uploadtmp.NameFor(ctx, remotePath, randomToken())
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(r, h)}
	script := "umask 077 && cat > " + Quote(tmp) + " && chmod " + fmt.Sprintf("%04o", perm.Perm()) + " " + Quote(tmp) +
		" && { sync -- " + Quote(tmp) + " 2>/dev/null || true; } && sha256sum < " + Quote(tmp)
	res, err := c.Run(ctx, script, RunOpts{Stdin: cr, Display: "upload " + remotePath + " (write " + tmp + ")"})
	sum := hex.EncodeToString(h.Sum(nil))
	fail := func(e error) (Transfer, error) {
		// Best effort: the temporary file must not linger; the target is untouched.
		_, _ = c.Run(context.WithoutCancel(ctx), "rm -f -- "+Quote(tmp), RunOpts{Timeout: killGrace, Display: "upload cleanup " + tmp})
		return Transfer{}, e
	}
	if err != nil {
		return fail(fmt.Errorf("upload to %s:%s: %w", c.name, remotePath, err))
	}
	if res.ExitCode != 0 {
		return fail(fmt.Errorf("upload to %s:%s: remote write exited %d: %s", c.name, remotePath, res.ExitCode, tail(res.Stderr)))
	}
	remote := firstField(res.Stdout)
	if remote != sum {
		return fail(fmt.Errorf("upload to %s:%s: checksum mismatch: sent sha256 %s (%d bytes), host has %s", c.name, remotePath, sum, cr.n, remote))
	}
	res, err = c.Run(ctx, "mv -f -- "+Quote(tmp)+" "+Quote(remotePath), RunOpts{Display: "upload " + remotePath + " (rename)"})
	if err != nil {
		return fail(fmt.Errorf("upload to %s:%s: rename: %w", c.name, remotePath, err))
	}
	if res.ExitCode != 0 {
		return fail(fmt.Errorf("upload to %s:%s: rename exited %d: %s", c.name, remotePath, res.ExitCode, tail(res.Stderr)))
	}
	return Transfer{SHA256: sum, Size: cr.n}, nil
}

// Checked is a [Client.UploadChecked] result.
type Checked struct {
	Transfer
	// Placed is the placed file's identity on the host ([uploadtmp.StatFormat]),
	// for later steps that trust it while it is unchanged.
	Placed string
}

// MismatchError is a checked upload whose bytes arrived with another sha256
// than the one expected; the target was left as it was.
type MismatchError struct {
	Host, Path string
	// Want is the expected digest, Arrived the host's, Sent the digest of the
	// bytes read locally while sending.
	Want, Arrived, Sent string
	Size                int64
}

func (e *MismatchError) Error() string {
	why := "changed on the way or on the host's disk"
	if e.Sent != e.Want {
		why = "the local file changed after it was verified (sent sha256 " + e.Sent + ")"
	}
	return fmt.Sprintf("upload to %s:%s: checksum mismatch: want sha256 %s, %d bytes arrived with %s: %s; the target was left as it was",
		e.Host, e.Path, e.Want, e.Size, e.Arrived, why)
}

// UploadChecked streams r to remotePath in ONE remote command
// ([uploadtmp.Script]): the host makes the directory and removes this run's
// stale temporary files when c says so, writes a temporary file beside
// remotePath while hashing the same bytes, compares the digest with c.SHA256
// and only then renames it into place. r is hashed here too while it is sent,
// so that a mismatch says whether the local file changed. On any failure the
// temporary file is removed and remotePath is left as it was. c.RunID is
// taken from ctx ([uploadtmp.WithRun]).
func (c *Client) UploadChecked(ctx context.Context, r io.Reader, remotePath string, ck uploadtmp.Checked) (Checked, error) {
	_, base := path.Split(remotePath)
	if base == "" || remotePath == "" {
		return Checked{}, fmt.Errorf("host %s: upload: invalid remote path %q", c.name, remotePath)
	}
	if len(ck.SHA256) != 64 {
		return Checked{}, fmt.Errorf("host %s: upload to %s: expected sha256 %q is not a hex digest", c.name, remotePath, ck.SHA256)
	}
	ck.RunID = uploadtmp.RunOf(ctx)
	tmp := uploadtmp.NameFor(ctx, remotePath, randomToken())
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(r, h)}
	res, err := c.Run(ctx, uploadtmp.Script(remotePath, tmp, ck), RunOpts{Stdin: bufio.NewReaderSize(cr, uploadBuf), Display: "upload " + remotePath + " (write " + tmp + ", check sha256 " + ck.SHA256 + ", rename)"})
	sent := hex.EncodeToString(h.Sum(nil))
	fail := func(e error) (Checked, error) {
		// Best effort: the script removes its temporary file itself, unless it
		// was killed (a timeout, a lost connection).
		_, _ = c.Run(context.WithoutCancel(ctx), "rm -f -- "+Quote(tmp), RunOpts{Timeout: killGrace, Display: "upload cleanup " + tmp})
		return Checked{}, e
	}
	if err != nil {
		return fail(fmt.Errorf("upload to %s:%s: %w", c.name, remotePath, err))
	}
	var arrived, placed string
	var size int64 = -1
	for _, l := range strings.Split(string(res.Stdout), "\n") {
		// "sha256 DIGEST", with the size on a mismatch
		if f := strings.Fields(l); (len(f) == 2 || len(f) == 3) && f[0] == "sha256" {
			arrived = f[1]
			if len(f) == 3 {
				size, _ = strconv.ParseInt(f[2], 10, 64)
			}
		} else if rest, ok := strings.CutPrefix(l, "placed "); ok {
			placed = strings.TrimSpace(rest)
		}
	}
	switch res.ExitCode {
	case 0:
	case uploadtmp.ExitMismatch:
		return fail(&MismatchError{Host: c.name, Path: remotePath, Want: ck.SHA256, Arrived: arrived, Sent: sent, Size: size})
	case uploadtmp.ExitMkdir:
		return fail(fmt.Errorf("upload to %s:%s: making its directory failed: %s", c.name, remotePath, tail(res.Stderr)))
	case uploadtmp.ExitRename:
		return fail(fmt.Errorf("upload to %s:%s: rename failed: %s", c.name, remotePath, tail(res.Stderr)))
	default:
		return fail(fmt.Errorf("upload to %s:%s: remote write exited %d: %s", c.name, remotePath, res.ExitCode, tail(res.Stderr)))
	}
	if arrived != ck.SHA256 || sent != ck.SHA256 || placed == "" {
		// Cannot happen with the script above; refuse rather than trust it.
		return Checked{}, fmt.Errorf("upload to %s:%s: placed, but the host reported sha256 %q (sent %s, want %s) and identity %q", c.name, remotePath, arrived, sent, ck.SHA256, placed)
	}
	return Checked{Transfer: Transfer{SHA256: sent, Size: cr.n}, Placed: placed}, nil
}

// uploadBuf is the size of the reads that feed an upload's channel: bigger
// than x/crypto/ssh's 32 KiB packets, so a write fills several of them.
const uploadBuf = 1 << 20

// UploadFile is [Client.Upload] of a local file.
func (c *Client) UploadFile(ctx context.Context, localPath, remotePath string, perm fs.FileMode) (Transfer, error) {
	f, err := os.Open(localPath)
	if err != nil {
		return Transfer{}, fmt.Errorf("upload to %s:%s: %w", c.name, remotePath, err)
	}
	defer f.Close()
	return c.Upload(ctx, f, remotePath, perm)
}

// Download streams remotePath into w and then checks that the host's sha256sum of
// the file equals the digest of the bytes received. On a mismatch w has received
// bytes that must be discarded (write to a temporary file and rename on success).
func (c *Client) Download(ctx context.Context, remotePath string, w io.Writer) (Transfer, error) {
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(w, h)}
	res, err := c.Run(ctx, "cat -- "+Quote(remotePath), RunOpts{Stdout: cw, Display: "download " + remotePath})
	if err != nil {
		return Transfer{}, fmt.Errorf("download %s:%s: %w", c.name, remotePath, err)
	}
	if res.ExitCode != 0 {
		return Transfer{}, fmt.Errorf("download %s:%s: remote read exited %d: %s", c.name, remotePath, res.ExitCode, tail(res.Stderr))
	}
	if cw.err != nil {
		return Transfer{}, fmt.Errorf("download %s:%s: writing locally: %w", c.name, remotePath, cw.err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	remote, err := c.SHA256(ctx, remotePath)
	if err != nil {
		return Transfer{}, fmt.Errorf("download %s:%s: %w", c.name, remotePath, err)
	}
	if remote != sum {
		return Transfer{}, fmt.Errorf("download %s:%s: checksum mismatch: received sha256 %s (%d bytes), host has %s", c.name, remotePath, sum, cw.n, remote)
	}
	return Transfer{SHA256: sum, Size: cw.n}, nil
}

// DownloadFile is [Client.Download] into localPath, written to a temporary file
// beside it and renamed only once verified.
func (c *Client) DownloadFile(ctx context.Context, remotePath, localPath string, perm fs.FileMode) (Transfer, error) {
	f, err := os.CreateTemp(filepath.Dir(localPath), ".sshx-download-*")
	if err != nil {
		return Transfer{}, fmt.Errorf("download %s:%s: %w", c.name, remotePath, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	t, err := c.Download(ctx, remotePath, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, perm.Perm())
	}
	if err == nil {
		err = os.Rename(tmp, localPath)
	}
	if err != nil {
		return Transfer{}, fmt.Errorf("download %s:%s to %s: %w", c.name, remotePath, localPath, err)
	}
	return t, nil
}

// SHA256 returns the hex sha256 of remotePath as computed on the host.
func (c *Client) SHA256(ctx context.Context, remotePath string) (string, error) {
	res, err := c.Run(ctx, "sha256sum < "+Quote(remotePath), RunOpts{})
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("sha256sum of %s:%s exited %d: %s", c.name, remotePath, res.ExitCode, tail(res.Stderr))
	}
	s := firstField(res.Stdout)
	if len(s) != 64 {
		return "", fmt.Errorf("sha256sum of %s:%s: unexpected output %q", c.name, remotePath, tail(res.Stdout))
	}
	return s, nil
}

func firstField(b []byte) string {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// tail returns the last few hundred bytes of out, trimmed, for error messages.
func tail(out []byte) string {
	const keep = 512
	out = bytes.TrimSpace(out)
	if len(out) > keep {
		out = append([]byte("..."), out[len(out)-keep:]...)
	}
	return string(out)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}
