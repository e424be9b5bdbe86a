package objstore

import (
	"context"
	"errors"
	"io"
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

var errTODO = errors.New("objstore: uploads not implemented yet")

// Begin starts an upload to key with opts' content type and metadata
// (IfAbsent does not apply). Nothing is visible until Complete.
func (s *S3) Begin(ctx context.Context, key string, opts PutOptions) (Upload, error) {
	return Upload{}, errTODO
}

// Complete streams r into u and makes it the object at u.Key, whole or not
// at all (I2), holding one part buffer (I4), as Put does. If r fails, u is
// aborted and r's error is returned unchanged. If u was aborted meanwhile,
// by anyone, nothing is stored and the error wraps ErrUploadGone. The
// returned Object has SHA256 set (it is not recorded as metadata).
func (s *S3) Complete(ctx context.Context, u Upload, r io.Reader) (Object, error) {
	return Object{}, errTODO
}

// Abort ends u so that no Complete of it can succeed. An upload already
// completed or aborted is no error: either way nothing more can land
// through it.
func (s *S3) Abort(ctx context.Context, u Upload) error { return errTODO }

// Begin: see [S3.Begin].
func (d *Dir) Begin(ctx context.Context, key string, opts PutOptions) (Upload, error) {
	return Upload{}, errTODO
}

// Complete: see [S3.Complete].
func (d *Dir) Complete(ctx context.Context, u Upload, r io.Reader) (Object, error) {
	return Object{}, errTODO
}

// Abort: see [S3.Abort].
func (d *Dir) Abort(ctx context.Context, u Upload) error { return errTODO }
