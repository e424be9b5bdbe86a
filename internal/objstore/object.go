package objstore

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
)

// Object describes a stored object: what Put returns, and the one record
// of an object that the run ledger and manifest.json keep. Its JSON is the
// ledger's encoding (every field present); manifest.json leaves out an
// unknown sha256 and zero hosts (see finish.Objects).
type Object struct {
	Key   string `json:"key"`
	Bytes int64  `json:"bytes"`
	// SHA256 is the hex SHA-256 of the content. Put and Complete always set
	// it, computed over the bytes they stored. Stat sets it only when the
	// store recorded it at write time (S3 objects that Put sent in a single
	// PUT; see [S3.Put]); List never does. Empty means unknown, not "no
	// content".
	SHA256 string `json:"sha256"`
	// Hosts is how many hosts the object holds. The store never knows it:
	// the caller that parsed the content sets it.
	Hosts int `json:"hosts"`
	// ETag is the store's entity tag (S3: quotes removed; for a multipart
	// upload it is not an MD5 of the content; the directory store: the
	// content's hex SHA-256). Put and Complete set it, and S3's Stat and
	// List; the directory store's Stat and List do not. It is not recorded.
	ETag string `json:"-"`
}

// PutOptions are passed through to S3. The directory store keeps neither.
type PutOptions struct {
	ContentType string
	// Metadata becomes S3 user metadata (x-amz-meta-*). The key "sha256" is
	// reserved for the content hash the store records itself.
	Metadata map[string]string
	// IfAbsent makes Put fail with an error wrapping ErrExists, storing
	// nothing, when key already holds an object: a create that the store
	// enforces (S3 If-None-Match: *), for objects written once per run.
	IfAbsent bool
	// IfMatch, when set, makes Put a replace that the store enforces (S3
	// If-Match): it succeeds only if key still holds the object with this
	// ETag (from [ETag] of a Get's reader, or from a Put), and otherwise
	// fails with an error wrapping ErrChanged, storing nothing; a key that
	// holds nothing fails the same way. Together with IfAbsent for a key
	// that holds nothing, it makes a read–decide–write a compare-and-set:
	// the decision is fenced by the store, not by a read made before the
	// write. Setting both is an error.
	IfMatch string
}

// check rejects options that cannot both hold.
func (o PutOptions) check(key string) error {
	if o.IfAbsent && o.IfMatch != "" {
		return failure.Permanent(fmt.Errorf("objstore: put %q: IfAbsent and IfMatch exclude each other", key))
	}
	return nil
}

// ETag returns the entity tag of the object that r, a reader from Get,
// reads: the one to give PutOptions.IfMatch to replace exactly that
// object. It is the tag of what the reader returns, even if the key has
// been replaced since Get. Ask it before closing r: a closed reader's is an
// error on both stores. A reader that did not come from a store's Get (one
// a caller wrapped) has none: that is an error too.
//
// The S3 store knows it from Get's answer. The directory store hashes the
// file it opened (its ETag is the content's hex SHA-256) on the first call:
// a cost in proportion to the object, for the small objects that are
// replaced conditionally.
func ETag(r io.Reader) (string, error) {
	t, ok := r.(interface{ etag() (string, error) })
	if !ok {
		return "", fmt.Errorf("objstore: a %T is not a reader from Get: it has no ETag", r)
	}
	return t.etag()
}

// Modified is when the object r reads was stored, by the store's clock: r
// must be a reader from a store's Get. The S3 store knows it from Get's
// answer (Last-Modified, to the second); the directory store from the
// file it opened.
func Modified(r io.Reader) (time.Time, error) {
	t, ok := r.(interface{ modified() (time.Time, error) })
	if !ok {
		return time.Time{}, fmt.Errorf("objstore: a %T is not a reader from Get: it has no time stored", r)
	}
	return t.modified()
}

// errETagClosed is ETag's error for a reader already closed.
var errETagClosed = errors.New("ETag of a closed reader: ask it before Close")

// ErrNotFound is wrapped by the error of Get and Stat for a key that does not
// exist. It carries no failure class: whether a missing object is a failure
// is the caller's call.
var ErrNotFound = errors.New("object not found")

// source reads the caller's stream for Put: it hashes what it reads, counts
// it, and keeps the stream's first error. Put returns that error unchanged,
// so its failure class (the caller's validator decides it) reaches the worker.
// A stream's error is sticky here even if the stream itself would not repeat
// it, so a failure that arrives together with the last bytes of a part is not
// lost.
type source struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	err  error // the stream's first error other than io.EOF
	done bool  // io.EOF seen
}

func (s *source) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.done {
		return 0, io.EOF
	}
	n, err := s.r.Read(p)
	if n > 0 {
		s.h.Write(p[:n])
		s.n += int64(n)
	}
	switch {
	case err == io.EOF:
		s.done = true
	case err != nil:
		s.err = err
	}
	return n, err
}

// fill reads into buf until it is full, the stream ends or fails. It returns
// how many bytes it read and the stream's error, never io.EOF: s.done tells
// the end of the stream.
func (s *source) fill(buf []byte) (int, error) {
	n, empty := 0, 0
	for n < len(buf) && !s.done && s.err == nil {
		m, _ := s.Read(buf[n:])
		n += m
		// A stream that keeps returning nothing and no error would spin
		// here for ever; bufio gives up the same way.
		if empty = empty + 1; m > 0 {
			empty = 0
		} else if empty == 100 {
			s.err = io.ErrNoProgress
		}
	}
	return n, s.err
}
