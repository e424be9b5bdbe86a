package objstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/qfetch/qfetch/internal/failure"
)

// Upload is an object being written and not yet visible: an S3 multipart
// upload, or a temporary file of the directory store. Only Complete turns it
// into an object, and Abort makes that impossible for good. That is the
// fence of design.md I8: whoever takes a batch or a run over aborts the
// uploads its predecessor recorded, so a frozen or partitioned copy that
// wakes up cannot land an object, whatever it checked before. The store
// enforces it; no check made before the write is relied on.
type Upload struct {
	Key string `json:"key"`
	ID  string `json:"id"`
}

// ErrUploadGone is wrapped by Complete's error when the upload was aborted
// (by whoever took the work over) or is otherwise no longer open: nothing
// was stored. Its class is retryable; callers that fence with uploads test
// for it with errors.Is.
var ErrUploadGone = errors.New("upload aborted or no longer open")

// ErrExists is wrapped by Put's error when PutOptions.IfAbsent is set and
// the key holds an object already (S3: If-None-Match: *, enforced by the
// service). Its class is permanent.
var ErrExists = errors.New("object already exists")

// ErrChanged is wrapped by Put's error when PutOptions.IfMatch is set and
// the key no longer holds that object (replaced or removed; S3: If-Match,
// enforced by the service), and by a read of a Get's reader that finds the
// object it began reading replaced. Its class is permanent: read the key
// again and decide again.
var ErrChanged = errors.New("object changed")

// Begin starts an upload to key with opts' content type and metadata
// (IfAbsent does not apply). Nothing is visible until Complete.
func (s *S3) Begin(ctx context.Context, key string, opts PutOptions) (Upload, error) {
	if err := ValidKey(key); err != nil {
		return Upload{}, err
	}
	popts := minio.PutObjectOptions{ContentType: opts.ContentType, UserMetadata: userMetadata(opts.Metadata)}
	id, err := s.core.NewMultipartUpload(ctx, s.bucket, key, popts)
	if err != nil {
		return Upload{}, s.classify(ctx, "begin upload of", key, err)
	}
	return Upload{Key: key, ID: id}, nil
}

// Complete streams r into u and makes it the object at u.Key, whole or not
// at all (I2), holding one part buffer (I4), as Put does. If r fails, u is
// aborted and r's error is returned unchanged. If u was aborted meanwhile,
// by anyone, nothing is stored and the error wraps ErrUploadGone. The
// returned Object has SHA256 set (it is not recorded as metadata).
//
// On S3 the object is always a multipart upload, even a tiny one (one part),
// so the content type and metadata are those given to Begin. Any failure
// aborts u: an upload is completed once or never.
func (s *S3) Complete(ctx context.Context, u Upload, r io.Reader) (_ Object, err error) {
	if err := s.validUpload(u); err != nil {
		return Object{}, err
	}
	started := time.Now()
	src, buf, n, err := s.readFirst(r)
	defer func() { s.releaseSent(buf, err) }()
	if err == nil {
		if err = ctx.Err(); err != nil {
			err = fmt.Errorf("objstore: complete %q in %s: %w", u.Key, s.Describe(), err)
		}
	}
	if err != nil {
		if aerr := s.abort(ctx, u); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return Object{}, err
	}
	return s.upload(ctx, "complete", u, src, buf, n, minio.PutObjectOptions{}, nil, started)
}

// Abort ends u so that no Complete of it can succeed. An upload already
// completed or aborted is no error: either way nothing more can land
// through it.
func (s *S3) Abort(ctx context.Context, u Upload) error {
	if err := s.validUpload(u); err != nil {
		return err
	}
	if err := s.abortUpload(ctx, u); err != nil {
		return s.classify(ctx, "abort upload of", u.Key, err)
	}
	return nil
}

// validUpload rejects an upload that did not come from Begin. u comes from
// a KV record; an empty ID in particular must never reach the service (a
// DELETE with an empty uploadId could be taken for the object's).
func (s *S3) validUpload(u Upload) error {
	if err := ValidKey(u.Key); err != nil {
		return err
	}
	if u.ID == "" {
		return failure.Permanent(fmt.Errorf("objstore: upload of %q in %s has no ID", u.Key, s.Describe()))
	}
	return nil
}

// Begin: see [S3.Begin]. The upload is an empty temporary file beside key
// (opts are not kept); its ID is the file's name.
func (d *Dir) Begin(ctx context.Context, key string, _ PutOptions) (Upload, error) {
	if err := ValidKey(key); err != nil {
		return Upload{}, err
	}
	if err := ctx.Err(); err != nil {
		return Upload{}, fmt.Errorf("objstore: begin upload of %q in %s: %w", key, d.Describe(), err)
	}
	root, err := d.open("begin upload of")
	if err != nil {
		return Upload{}, err
	}
	defer root.Close()
	name := uploadPrefix + rand.Text()
	_, f, err := d.create(root, "begin upload of", key, name)
	if err != nil {
		return Upload{}, err
	}
	if err := f.Close(); err != nil {
		return Upload{}, d.classify("begin upload of", key, err)
	}
	return Upload{Key: key, ID: name}, nil
}

// Complete: see [S3.Complete]. It writes into u's temporary file, which it
// only opens: once Abort has removed it, nothing can bring it back.
func (d *Dir) Complete(ctx context.Context, u Upload, r io.Reader) (Object, error) {
	tmp, err := d.validUpload(u)
	if err != nil {
		return Object{}, err
	}
	if err := ctx.Err(); err != nil {
		return Object{}, errors.Join(fmt.Errorf("objstore: complete %q in %s: %w", u.Key, d.Describe(), err), d.Abort(ctx, u))
	}
	root, err := d.open("complete")
	if err != nil {
		return Object{}, err
	}
	defer root.Close()
	f, err := root.OpenFile(tmp, os.O_WRONLY, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return Object{}, failure.Retryable(fmt.Errorf("objstore: complete %q in %s: %w: %w", u.Key, d.Describe(), ErrUploadGone, err))
		}
		return Object{}, d.classify("complete", u.Key, err)
	}
	// A Complete that failed after writing removed the file; one that
	// never got to write left it empty. Truncate anyway: the file must hold
	// r and nothing else.
	if err := f.Truncate(0); err != nil {
		f.Close()
		root.Remove(tmp)
		return Object{}, d.classify("complete", u.Key, err)
	}
	return d.commit(ctx, root, "complete", u.Key, tmp, f, r, PutOptions{})
}

// Abort: see [S3.Abort]. It removes u's temporary file.
func (d *Dir) Abort(ctx context.Context, u Upload) error {
	tmp, err := d.validUpload(u)
	if err != nil {
		return err
	}
	root, err := d.open("abort upload of")
	if err != nil {
		return err
	}
	defer root.Close()
	err = root.Remove(tmp)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	if err != nil {
		return d.classify("abort upload of", u.Key, err)
	}
	if err := syncDir(root, path.Dir(u.Key)); err != nil {
		return d.classify("abort upload of", u.Key, err)
	}
	return nil
}

// randTextLen is the length of rand.Text, the random part of a Dir upload ID.
var randTextLen = len(rand.Text())

// validUpload returns the path of u's temporary file, or a permanent error
// for an upload that Begin did not make. u comes from a KV record: its ID
// must be exactly a name Begin gives, so that it can name nothing else.
func (d *Dir) validUpload(u Upload) (string, error) {
	if err := ValidKey(u.Key); err != nil {
		return "", err
	}
	rest, ok := strings.CutPrefix(u.ID, uploadPrefix)
	if !ok || len(rest) != randTextLen || strings.Trim(rest, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
		return "", failure.Permanent(fmt.Errorf("objstore: upload of %q in %s: invalid upload ID %q", u.Key, d.Describe(), u.ID))
	}
	return path.Join(path.Dir(u.Key), u.ID), nil
}

// AbortUploads aborts every upload still open under the folders (each ends
// in "/") and returns how many it aborted. Uploads are recorded where
// whoever takes the work over aborts them, but one can escape its record:
// the service may create it and the answer be lost (a cancelled Begin), or
// its writer die between Begin and the record. The finisher calls this once
// nothing in the folders may be completed any more.
func (s *S3) AbortUploads(ctx context.Context, folders ...string) (int, error) {
	if err := validFolders(folders); err != nil {
		return 0, err
	}
	n := 0
	var keyMarker, idMarker string
	for {
		// The whole bucket's uploads, filtered here, in one listing for all
		// folders: MinIO lists the uploads of one object name, or all, but
		// not those under a prefix.
		res, err := s.core.ListMultipartUploads(ctx, s.bucket, "", keyMarker, idMarker, "", 1000)
		if err != nil {
			return n, s.classify(ctx, "list uploads under", folders[0], err)
		}
		for _, u := range res.Uploads {
			if !slices.ContainsFunc(folders, func(f string) bool { return strings.HasPrefix(u.Key, f) }) {
				continue
			}
			if err := s.abortUpload(ctx, Upload{Key: u.Key, ID: u.UploadID}); err != nil {
				return n, s.classify(ctx, "abort upload of", u.Key, err)
			}
			n++
		}
		if !res.IsTruncated {
			return n, nil
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

// AbortUploads: see [S3.AbortUploads]. It removes the temporary files of
// uploads under the folders.
func (d *Dir) AbortUploads(ctx context.Context, folders ...string) (int, error) {
	if err := validFolders(folders); err != nil {
		return 0, err
	}
	root, err := d.open("abort uploads under")
	if err != nil {
		return 0, err
	}
	defer root.Close()
	n := 0
	for _, folder := range folders {
		err = fs.WalkDir(root.FS(), strings.TrimSuffix(folder, "/"), func(name string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // nothing under folder, or gone since listed
				}
				return err
			}
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if e.IsDir() || !strings.HasPrefix(e.Name(), uploadPrefix) {
				return nil
			}
			if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			n++
			return nil
		})
		if err != nil {
			return n, d.classify("abort uploads under", folder, err)
		}
	}
	return n, nil
}

// validFolders checks prefixes that name folders of keys; there must be one.
func validFolders(folders []string) error {
	if len(folders) == 0 {
		return failure.Permanent(fmt.Errorf("%w: no folder given", ErrInvalidKey))
	}
	for _, f := range folders {
		if !strings.HasSuffix(f, "/") {
			return failure.Permanent(fmt.Errorf("%w prefix %q: must end in /", ErrInvalidKey, f))
		}
		if err := validPrefix(f); err != nil {
			return err
		}
	}
	return nil
}
