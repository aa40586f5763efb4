package objstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
)

// objectFromInfo turns a stat or listing entry into an Object (layout not
// yet classified).
func objectFromInfo(bucket string, oi minio.ObjectInfo) Object {
	return Object{
		Location: Location{Bucket: bucket, Key: oi.Key},
		Size:     oi.Size,
		Modified: oi.LastModified,
		ETag:     strings.Trim(oi.ETag, `"`),
	}
}

// Stat reads an object's size, time and metadata and classifies it.
func (c *Client) Stat(ctx context.Context, l Location) (Object, error) {
	if l.IsPrefix() {
		return Object{}, c.wrap("stat", l, errors.New("the URL names a prefix, not an object"))
	}
	oi, err := c.mc.StatObject(ctx, l.Bucket, l.Key, minio.StatObjectOptions{})
	if err != nil {
		return Object{}, c.wrap("stat", l, err)
	}
	o := objectFromInfo(l.Bucket, oi)
	o.Key = l.Key
	classify(&o, oi.UserMetadata)
	return o, nil
}

// List returns every object under prefix (recursively), classified. It
// asks for the objects' metadata with the listing (a MinIO extension);
// where the store does not return it (AWS S3, SeaweedFS, Ceph RGW) each
// object whose name does not already say what it is gets a HEAD, a few
// at a time. prefix.Key is matched as a string: "prod" also lists
// "prod-old/..."; a trailing "/" keeps to one "directory".
func (c *Client) List(ctx context.Context, prefix Location) ([]Object, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var objs []Object
	var mds []map[string]string
	var listedMD []bool // the listing carried the object's metadata (MinIO)
	for oi := range c.mc.ListObjects(ctx, prefix.Bucket, minio.ListObjectsOptions{
		Prefix:       prefix.Key,
		Recursive:    true,
		WithMetadata: true,
	}) {
		if oi.Err != nil {
			return nil, c.wrap("list", prefix, oi.Err)
		}
		if strings.HasSuffix(oi.Key, "/") && oi.Size == 0 {
			continue // a "directory" marker
		}
		objs = append(objs, objectFromInfo(prefix.Bucket, oi))
		mds = append(mds, oi.UserMetadataStripped)
		listedMD = append(listedMD, oi.UserMetadata != nil)
	}
	var need []int
	for i := range objs {
		classify(&objs[i], mds[i])
		if objs[i].Layout == LayoutUnknown && !listedMD[i] {
			need = append(need, i)
		}
	}
	if len(need) == 0 {
		return objs, nil
	}
	// Stat the rest, a few at a time.
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		firstEr error
		sem     = make(chan struct{}, statConcurrency)
	)
	for _, i := range need {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			oi, err := c.mc.StatObject(ctx, prefix.Bucket, objs[i].Key, minio.StatObjectOptions{})
			if err != nil {
				if errors.Is(classifyErr(err).Kind, ErrNotFound) {
					return // deleted since the listing: stays unknown, never selected
				}
				mu.Lock()
				if firstEr == nil {
					firstEr = c.wrap("list", objs[i].Location, err)
					cancel()
				}
				mu.Unlock()
				return
			}
			classify(&objs[i], oi.UserMetadata)
		}(i)
	}
	wg.Wait()
	if firstEr != nil {
		return nil, firstEr
	}
	return objs, nil
}

// Delete removes objs, all of them attempted; the error lists each one
// that could not be removed.
func (c *Client) Delete(ctx context.Context, objs []Object) error {
	var errs []error
	for _, o := range objs {
		if err := c.mc.RemoveObject(ctx, o.Bucket, o.Key, minio.RemoveObjectOptions{}); err != nil {
			errs = append(errs, c.wrap("delete", o.Location, err))
		}
	}
	return errors.Join(errs...)
}

// AbortStaleUploads aborts the multipart uploads under prefix that were
// started more than olderThan ago (what a killed upload leaves: parts
// that take space and never become an object). Uploads younger than that
// may belong to a backup running right now and are left alone. It returns
// how many were aborted.
func (c *Client) AbortStaleUploads(ctx context.Context, prefix Location, olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	type upload struct{ key, id string }
	var stale []upload
	for u := range c.mc.ListIncompleteUploads(ctx, prefix.Bucket, prefix.Key, true) {
		if u.Err != nil {
			return 0, c.wrap("abort-uploads", prefix, u.Err)
		}
		if u.Initiated.Before(cutoff) {
			stale = append(stale, upload{u.Key, u.UploadID})
		}
	}
	n := 0
	var errs []error
	for _, u := range stale {
		// One upload by its id: RemoveIncompleteUpload would abort every
		// upload of the key, a running one included.
		err := c.core.AbortMultipartUpload(ctx, prefix.Bucket, u.key, u.id)
		if err != nil && !errors.Is(classifyErr(err).Kind, ErrNotFound) {
			errs = append(errs, c.wrap("abort-uploads", Location{prefix.Bucket, u.key}, err))
			continue
		}
		n++
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("%d of %d stale uploads not aborted: %w", len(errs), len(stale), err)
	}
	return n, nil
}
