package objstore

import (
	"compress/gzip"
	"compress/lzw"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
)

// progressEvery is the least number of bytes between two progress calls.
const progressEvery = 4 << 20

// copyBuffer is the buffer of a download or a verification read.
const copyBuffer = 1 << 20

// errStalled is the cause of a transfer cancelled because no byte moved
// for stallTimeout.
var errStalled = fmt.Errorf("no byte moved for %s", stallTimeout)

// stallGuard cancels a transfer's context when touch has not been called
// for d. Transfers have no overall timeout (1 GiB takes what it takes),
// but a connection that stops moving must not hang a restore forever.
type stallGuard struct {
	t *time.Timer
	d time.Duration
}

func withStall(ctx context.Context, d time.Duration) (context.Context, *stallGuard, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	g := &stallGuard{d: d}
	g.t = time.AfterFunc(d, func() { cancel(errStalled) })
	return ctx, g, func() { g.t.Stop(); cancel(nil) }
}

func (g *stallGuard) touch() { g.t.Reset(g.d) }

// stallErr replaces a cancellation caused by the guard with errStalled.
func stallErr(ctx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), errStalled) {
		return fmt.Errorf("%w (%v)", errStalled, err)
	}
	return err
}

// progressMeter calls a Progress at most every progressEvery bytes and
// once at the end; safe for the concurrent part uploads.
type progressMeter struct {
	mu       sync.Mutex
	fn       Progress
	total    int64
	done     int64
	reported int64
	guard    *stallGuard
}

func (p *progressMeter) add(n int) {
	if p.guard != nil {
		p.guard.touch()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += int64(n)
	if p.total >= 0 && p.done > p.total {
		// A retried part is read twice; progress never passes the total.
		p.done = p.total
	}
	if p.fn != nil && p.done-p.reported >= progressEvery && (p.total < 0 || p.done < p.total) {
		p.reported = p.done
		p.fn(p.done, p.total)
	}
}

func (p *progressMeter) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fn != nil {
		p.fn(p.done, p.total)
	}
}

// meteredReaderAt counts the bytes read from the file for progress.
// minio-go uploads the parts of a ReaderAt with io.SectionReader, one
// section per part in flight, straight from the file: no part buffer.
type meteredReaderAt struct {
	r io.ReaderAt
	m *progressMeter
}

func (r meteredReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.r.ReadAt(p, off)
	r.m.add(n)
	return n, err
}

// Upload stores file at dst as a streamed multipart upload
// (DefaultPartSize parts, DefaultUploadStream of them in flight, each read
// from the file at its offset), with meta as the object's metadata, then
// reads the object back (Verify). A missing meta.Size or meta.SHA256 is
// taken from the file (the sha256 by reading it once before the upload).
// When the read-back does not match, the object is removed and the error
// wraps ErrCorrupt. A cancelled or failed upload is aborted by minio-go
// (its parts are removed); a killed process leaves an incomplete upload
// for AbortStaleUploads, never an object.
func (c *Client) Upload(ctx context.Context, dst Location, file string, meta Meta, progress Progress) (Object, error) {
	if dst.IsPrefix() {
		return Object{}, c.wrap("upload", dst, errors.New("the URL names a prefix, not an object: give the object's key"))
	}
	f, err := os.Open(file)
	if err != nil {
		return Object{}, c.wrap("upload", dst, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Object{}, c.wrap("upload", dst, err)
	}
	if !fi.Mode().IsRegular() {
		return Object{}, c.wrap("upload", dst, fmt.Errorf("%s is not a regular file", file))
	}
	size := fi.Size()
	if size == 0 {
		return Object{}, c.wrap("upload", dst, fmt.Errorf("%s is empty", file))
	}
	if meta.Size != 0 && meta.Size != size {
		return Object{}, c.wrap("upload", dst, fmt.Errorf("%s has %d bytes, the snapshot's record says %d", file, size, meta.Size))
	}
	meta.Size = size
	if meta.SHA256 == "" {
		h := sha256.New()
		if _, err := io.CopyBuffer(h, io.NewSectionReader(f, 0, size), make([]byte, copyBuffer)); err != nil {
			return Object{}, c.wrap("upload", dst, err)
		}
		meta.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	if err := checkMeta(meta); err != nil {
		return Object{}, c.wrap("upload", dst, err)
	}

	tctx, guard, stop := withStall(ctx, stallTimeout+responseHeaderTimeout)
	meter := &progressMeter{fn: progress, total: size, guard: guard}
	_, err = c.mc.PutObject(tctx, dst.Bucket, dst.Key,
		io.NewSectionReader(meteredReaderAt{f, meter}, 0, size), size,
		minio.PutObjectOptions{
			UserMetadata: userMetadata(meta),
			ContentType:  "application/octet-stream",
			PartSize:     DefaultPartSize,
			NumThreads:   DefaultUploadStream,
		})
	err = stallErr(tctx, err)
	stop()
	if err != nil {
		return Object{}, c.wrap("upload", dst, err)
	}
	meter.finish()

	o, verr := c.Verify(ctx, dst, meta)
	if verr == nil {
		return o, nil
	}
	// Whatever went wrong, an object that was not verified must not stay
	// where select: latest would find it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	rmErr := c.mc.RemoveObject(rctx, dst.Bucket, dst.Key, minio.RemoveObjectOptions{})
	e := &Error{Op: "upload", URL: dst.String(), Err: verr}
	if errors.Is(verr, ErrCorrupt) {
		e.Kind = ErrCorrupt
	}
	e.Msg = "the uploaded object did not verify and was removed: " + errMsg(verr)
	if rmErr != nil {
		e.Msg = "the uploaded object did not verify and could not be removed (" + errMsg(c.wrap("delete", dst, rmErr)) + "): " + errMsg(verr)
		e.Hint = "delete " + dst.String() + " by hand: select: latest would take it"
	}
	return Object{}, e
}

// errMsg is an error's text without its hint lines.
func errMsg(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Msg
	}
	return err.Error()
}

// checkMeta refuses metadata S3 cannot carry (header values are
// printable US-ASCII) and a malformed sha256.
func checkMeta(m Meta) error {
	if len(m.SHA256) != 64 {
		return fmt.Errorf("sha256 %q is not 64 hex digits", m.SHA256)
	}
	if _, err := hex.DecodeString(m.SHA256); err != nil {
		return fmt.Errorf("sha256 %q is not 64 hex digits", m.SHA256)
	}
	for what, v := range map[string]string{"cluster name": m.Cluster, "run id": m.RunID} {
		for _, r := range v {
			if r < 0x20 || r > 0x7e {
				return fmt.Errorf("the %s %q cannot be stored as S3 metadata: printable ASCII only", what, v)
			}
		}
	}
	return nil
}

// corrupt is an ErrCorrupt about l.
func corrupt(op string, l Location, format string, args ...any) error {
	return &Error{Op: op, URL: l.String(), Kind: ErrCorrupt, Err: ErrCorrupt, Msg: fmt.Sprintf(format, args...)}
}

// Verify reads the object's metadata, then the whole object (streamed),
// and checks that its size and sha256 match its metadata and want (the
// fields of want that are set). The error wraps ErrCorrupt on a mismatch.
func (c *Client) Verify(ctx context.Context, l Location, want Meta) (Object, error) {
	o, err := c.Stat(ctx, l)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Op = "verify"
		}
		return Object{}, err
	}
	if o.Layout != LayoutRescue {
		return Object{}, corrupt("verify", l, "the object carries no etcd-rescue metadata (sha256, size, revision): the store did not keep it")
	}
	switch {
	case want.SHA256 != "" && o.Meta.SHA256 != want.SHA256:
		return Object{}, corrupt("verify", l, "recorded sha256 %s, expected %s", o.Meta.SHA256, want.SHA256)
	case want.Size > 0 && o.Size != want.Size:
		return Object{}, corrupt("verify", l, "the store holds %d bytes, expected %d", o.Size, want.Size)
	case o.Meta.Size > 0 && o.Meta.Size != o.Size:
		return Object{}, corrupt("verify", l, "the store holds %d bytes, its metadata says %d", o.Size, o.Meta.Size)
	case want.Revision != 0 && o.Meta.Revision != want.Revision:
		return Object{}, corrupt("verify", l, "recorded revision %d, expected %d", o.Meta.Revision, want.Revision)
	}
	n, sum, err := c.readAll(ctx, o, nil)
	if err != nil {
		return Object{}, c.wrap("verify", l, err)
	}
	if n != o.Size {
		return Object{}, corrupt("verify", l, "read %d bytes, the store lists %d", n, o.Size)
	}
	if sum != o.Meta.SHA256 {
		return Object{}, corrupt("verify", l, "the bytes stored hash to sha256 %s, the metadata says %s", sum, o.Meta.SHA256)
	}
	return o, nil
}

// readAll streams o (pinned to its ETag when known) into sha256 and w
// (when not nil) and returns the number of bytes and their hex sha256.
func (c *Client) readAll(ctx context.Context, o Object, progress Progress) (int64, string, error) {
	ctx, guard, stop := withStall(ctx, stallTimeout)
	defer stop()
	body, err := c.get(ctx, o)
	if err != nil {
		return 0, "", err
	}
	defer body.Close()
	h := sha256.New()
	meter := &progressMeter{fn: progress, total: o.Size, guard: guard}
	n, err := io.CopyBuffer(h, &meteredReader{r: body, m: meter}, make([]byte, copyBuffer))
	if err != nil {
		return n, "", stallErr(ctx, err)
	}
	meter.finish()
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// get opens o's body. With an ETag the store must serve exactly the
// object that was listed (If-Match): one replaced in between fails with
// "changed since it was listed" instead of being read unchecked.
func (c *Client) get(ctx context.Context, o Object) (io.ReadCloser, error) {
	opts := minio.GetObjectOptions{}
	if o.ETag != "" {
		if err := opts.SetMatchETag(o.ETag); err != nil {
			return nil, err
		}
	}
	body, _, _, err := c.core.GetObject(ctx, o.Bucket, o.Key, opts)
	return body, err
}

// meteredReader counts the bytes read for progress and the stall guard,
// and remembers the source's read error (to tell a broken connection
// from a corrupt compressed stream).
type meteredReader struct {
	r   io.Reader
	m   *progressMeter
	err error
}

func (r *meteredReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.m.add(n)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// Download reads src into file: streamed into file+".part" (mode 0600,
// same directory; a stale one is replaced), hashing the bytes as stored;
// an etcd-backup-restore object is decompressed on the way (gzip, zlib,
// lzw). Size and sha256 are checked against src.Size and src.Meta when
// set (ErrCorrupt otherwise). Then fsync, rename to file, fsync of the
// directory. It returns the sha256 of file as written (after
// decompression). On any error nothing is left under file and the
// .part is removed; a killed process leaves only the .part.
func (c *Client) Download(ctx context.Context, src Object, file string, progress Progress) (string, error) {
	switch {
	case src.Layout == LayoutBackupDelta:
		return "", &Error{Op: "download", URL: src.String(), Kind: ErrUnsupported, Err: ErrUnsupported,
			Msg: "an etcd-backup-restore delta (Incr-) snapshot: etcd-rescue restores full snapshots only and never applies deltas"}
	case src.Compression == CompressionLz4:
		return "", &Error{Op: "download", URL: src.String(), Kind: ErrUnsupported, Err: ErrUnsupported,
			Msg:  "an lz4-compressed snapshot: not supported",
			Hint: "download it, decompress it with lz4 -d and use the local file as the snapshot"}
	}
	part := file + ".part"
	if err := os.Remove(part); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", c.wrap("download", src.Location, err)
	}
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", c.wrap("download", src.Location, err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(part)
		}
	}()

	sum, err := c.fetch(ctx, src, f, progress)
	if err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", c.wrap("download", src.Location, err)
	}
	if err := f.Close(); err != nil {
		return "", c.wrap("download", src.Location, err)
	}
	if err := os.Rename(part, file); err != nil {
		return "", c.wrap("download", src.Location, err)
	}
	done = true
	if d, err := os.Open(filepath.Dir(file)); err == nil {
		serr := d.Sync()
		d.Close()
		if serr != nil {
			return "", c.wrap("download", src.Location, serr)
		}
	}
	return sum, nil
}

// fetch streams src into w, decompressing etcd-backup-restore objects,
// and checks what was stored against src. It returns the sha256 of what
// was written to w.
func (c *Client) fetch(ctx context.Context, src Object, w io.Writer, progress Progress) (string, error) {
	ctx, guard, stop := withStall(ctx, stallTimeout)
	defer stop()
	body, err := c.get(ctx, src)
	if err != nil {
		return "", c.wrap("download", src.Location, stallErr(ctx, err))
	}
	defer body.Close()
	total := src.Size
	if total <= 0 {
		total = -1
	}
	stored := sha256.New()
	var n int64
	counted := &meteredReader{r: body, m: &progressMeter{fn: progress, total: total, guard: guard}}
	tee := io.TeeReader(counted, writerFunc(func(p []byte) (int, error) {
		n += int64(len(p))
		return stored.Write(p)
	}))
	var r io.Reader = tee
	var dec io.Closer
	switch src.Compression {
	case CompressionGzip:
		zr, err := gzip.NewReader(tee)
		if err != nil {
			return "", c.decompressErr(ctx, src, counted, err)
		}
		r, dec = zr, zr
	case CompressionZlib:
		zr, err := zlib.NewReader(tee)
		if err != nil {
			return "", c.decompressErr(ctx, src, counted, err)
		}
		r, dec = zr, zr
	case CompressionLzw:
		zr := lzw.NewReader(tee, lzw.LSB, 8)
		r, dec = zr, zr
	}
	written := sha256.New()
	if _, err := io.CopyBuffer(io.MultiWriter(w, written), r, make([]byte, copyBuffer)); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", c.wrap("download", src.Location, err) // the local disk
		}
		return "", c.decompressErr(ctx, src, counted, err)
	}
	if dec != nil {
		if err := dec.Close(); err != nil {
			return "", c.decompressErr(ctx, src, counted, err)
		}
		// Hash whatever follows the compressed stream too: the sha256 is
		// over the object as stored.
		if _, err := io.Copy(io.Discard, tee); err != nil {
			return "", c.wrap("download", src.Location, stallErr(ctx, err))
		}
	}
	counted.m.finish()
	got := hex.EncodeToString(stored.Sum(nil))
	switch {
	case src.Size > 0 && n != src.Size:
		return "", corrupt("download", src.Location, "read %d bytes, the store listed %d", n, src.Size)
	case src.Meta.Size > 0 && n != src.Meta.Size:
		return "", corrupt("download", src.Location, "read %d bytes, the metadata says %d", n, src.Meta.Size)
	case src.Meta.SHA256 != "" && got != src.Meta.SHA256:
		return "", corrupt("download", src.Location, "the bytes read hash to sha256 %s, the metadata says %s", got, src.Meta.SHA256)
	}
	return hex.EncodeToString(written.Sum(nil)), nil
}

// decompressErr tells a broken connection (the body's read error) from a
// corrupt compressed stream (ErrCorrupt).
func (c *Client) decompressErr(ctx context.Context, src Object, body *meteredReader, err error) error {
	if body.err != nil {
		return c.wrap("download", src.Location, stallErr(ctx, body.err))
	}
	if src.Compression == CompressionNone {
		return c.wrap("download", src.Location, stallErr(ctx, err))
	}
	return &Error{Op: "download", URL: src.String(), Kind: ErrCorrupt, Err: err,
		Msg: fmt.Sprintf("the %s stream is corrupt: %v", src.Compression, err)}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
