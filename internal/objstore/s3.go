package objstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/tlsca"
)

// S3 limits on multipart uploads.
const (
	DefaultPartSize = 16 << 20
	MinPartSize     = 5 << 20
	MaxPartSize     = 5 << 30
	maxParts        = 10000
)

// sha256Meta is the user metadata (x-amz-meta-sha256) holding the content's
// hex SHA-256, on objects small enough to know it before they are sent.
const sha256Meta = "Sha256"

// abortTimeout bounds the abort of a failed upload, which runs even when the
// caller's context is cancelled: cancelling must not leave parts behind.
const abortTimeout = 30 * time.Second

// S3Config says where objects go. Internal packages take it filled; cmd/*
// fills it from the environment.
type S3Config struct {
	Endpoint string // host:port
	Secure   bool   // TLS
	// AccessKey and SecretKey are static credentials. Leave both empty to
	// use the environment (AWS_ACCESS_KEY_ID …, MINIO_ROOT_USER …), the AWS
	// shared credentials file, then IAM: EC2/ECS roles and EKS IRSA
	// (AWS_WEB_IDENTITY_TOKEN_FILE).
	AccessKey string
	SecretKey string
	Region    string // empty: asked from the bucket
	Bucket    string
	CAFile    string // PEM roots trusted in addition to the system's
	// PartSize is the multipart part size and so the memory each Put holds.
	// Default DefaultPartSize; S3 accepts MinPartSize to MaxPartSize. The
	// largest object is 10000 parts.
	PartSize uint64
	// MaxRetries is how many times minio-go tries each request before it
	// gives up; 0 keeps its default (10). We add no retries of our own.
	MaxRetries int
}

// String shows the config without its keys, for logs (I7): only whether
// static keys are set.
func (c S3Config) String() string {
	keys := "none (IAM or environment)"
	if c.AccessKey != "" || c.SecretKey != "" {
		keys = "[REDACTED]"
	}
	return fmt.Sprintf("{Endpoint:%s Secure:%t Keys:%s Region:%s Bucket:%s CAFile:%s PartSize:%d MaxRetries:%d}",
		c.Endpoint, c.Secure, keys, c.Region, c.Bucket, c.CAFile, c.PartSize, c.MaxRetries)
}

// GoString keeps %#v from printing the keys too.
func (c S3Config) GoString() string { return "objstore.S3Config" + c.String() }

// S3 stores objects in one bucket of an S3-compatible service. It is safe for
// concurrent use.
//
// Put drives the multipart upload itself through minio-go's Core rather than
// calling PutObject with size -1. That path of minio-go would do for memory
// (one part buffer, no concurrent parts) and it aborts on a reader error, but
// it drops an error that arrives with the bytes that fill a part, and so can
// complete a truncated object when the reader then says EOF; it allocates its
// part buffer anew on every call; it uploads even a tiny object as three
// requests; and it hides a failed abort. Requests still go through minio-go's
// own retries. Complete streams into an upload from Begin by the same path.
type S3 struct {
	core     *minio.Core
	bucket   string
	endpoint string
	partSize int
	// free holds idle part buffers for reuse. A bounded free list, not a
	// sync.Pool: a pool keeps one per processor, so memory would grow with
	// GOMAXPROCS rather than with the Puts running (I4).
	free chan []byte
	// freeSmall holds idle first-read buffers (smallPut bytes): every Put
	// and Complete takes one, and most objects (markers, manifests, the
	// batches of a small run) fit in it; allocated anew each time, their
	// zeroing was the worker's largest CPU cost with small batches.
	freeSmall chan []byte
	// orphanAge: see defaultOrphanAge.
	orphanAge time.Duration
}

// smallPut is how much a Put reads before it commits to a full part
// buffer: small objects (manifests, markers, Host List pages under it)
// never take one.
const smallPut = 1 << 20

// idleBuffers bounds the free list, idleSmall that of first-read buffers
// (8 MiB at most).
const (
	idleBuffers = 2
	idleSmall   = 8
)

// take returns an idle part buffer, or nil.
func (s *S3) take() []byte {
	select {
	case b := <-s.free:
		return b
	default:
		return nil
	}
}

// takeSmall returns an idle first-read buffer, or a new one.
func (s *S3) takeSmall() []byte {
	select {
	case b := <-s.freeSmall:
		return b
	default:
		return make([]byte, s.smallSize())
	}
}

// smallSize is the size of a first-read buffer.
func (s *S3) smallSize() int { return min(smallPut, s.partSize) }

// releaseSent releases buf after the requests that sent it ended with err.
// Only a success returns it: a service that refuses a write (a condition
// that fails, an upload aborted under us) answers before it reads the body,
// and net/http may still be sending that body out of buf after the request
// has returned (the RoundTripper's contract). A refused buffer is left to
// the garbage collector.
func (s *S3) releaseSent(buf []byte, err error) {
	if err == nil {
		s.release(buf)
	}
}

// release keeps a buffer for the next Put if there is room: a full-size
// one on the free list, a first-read one on its own.
func (s *S3) release(b []byte) {
	list := s.free
	switch len(b) {
	case s.partSize:
	case s.smallSize():
		list = s.freeSmall
	default:
		return
	}
	select {
	case list <- b:
	default:
	}
}

// NewS3 checks cfg and makes a client. It does not contact the service: call
// Check for that.
func NewS3(cfg S3Config) (*S3, error) {
	switch {
	case cfg.Endpoint == "":
		return nil, errors.New("objstore: S3 endpoint is empty")
	case strings.Contains(cfg.Endpoint, "://"):
		return nil, fmt.Errorf("objstore: S3 endpoint %q must be host:port, without a scheme (TLS is Secure)", cfg.Endpoint)
	case cfg.Bucket == "":
		return nil, errors.New("objstore: S3 bucket is empty")
	case s3utils.CheckValidBucketName(cfg.Bucket) != nil:
		return nil, fmt.Errorf("objstore: S3 bucket %q: %w", cfg.Bucket, s3utils.CheckValidBucketName(cfg.Bucket))
	case (cfg.AccessKey == "") != (cfg.SecretKey == ""):
		return nil, errors.New("objstore: set both the S3 access key and secret key, or neither (to use IAM or the environment)")
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < MinPartSize || cfg.PartSize > MaxPartSize {
		return nil, fmt.Errorf("objstore: S3 part size %d is outside [%d, %d]", cfg.PartSize, MinPartSize, MaxPartSize)
	}

	creds := credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	if cfg.AccessKey == "" {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.EnvMinio{},
			&credentials.FileAWSCredentials{},
			&credentials.IAM{},
		})
	}
	transport, err := minio.DefaultTransport(cfg.Secure)
	if err != nil {
		return nil, fmt.Errorf("objstore: S3 transport: %w", err)
	}
	if cfg.CAFile != "" {
		roots, err := tlsca.Pool(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("objstore: S3 %w", err)
		}
		if transport.TLSClientConfig == nil {
			return nil, errors.New("objstore: an S3 CA file needs Secure (TLS)")
		}
		transport.TLSClientConfig.RootCAs = roots
	}
	core, err := minio.NewCore(cfg.Endpoint, &minio.Options{
		Creds:      creds,
		Secure:     cfg.Secure,
		Transport:  transport,
		Region:     cfg.Region,
		MaxRetries: cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("objstore: S3 client for %s: %w", cfg.Endpoint, err)
	}
	s := &S3{core: core, bucket: cfg.Bucket, endpoint: cfg.Endpoint, partSize: int(cfg.PartSize)}
	s.free = make(chan []byte, idleBuffers)
	s.freeSmall = make(chan []byte, idleSmall)
	s.orphanAge = defaultOrphanAge
	return s, nil
}

// Describe names the bucket and endpoint for logs: s3://endpoint/bucket
// (not bucket@endpoint, which log scrubbing would take for credentials).
func (s *S3) Describe() string { return "s3://" + s.endpoint + "/" + s.bucket }

// Check verifies that the bucket exists and that these credentials may see
// it. Its errors are fleet-wide (missing bucket, refused credentials, TLS)
// or retryable (the service is down).
func (s *S3) Check(ctx context.Context) error {
	ok, err := s.core.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.classify(ctx, "check", "", err)
	}
	if !ok {
		return failure.FleetWide(fmt.Errorf("objstore: check: bucket %q does not exist on %s", s.bucket, s.endpoint))
	}
	return nil
}

// Put streams r, of any length, to key: whole or not at all (I2).
//
// It reads r one part at a time into a buffer of PartSize bytes, the only
// memory it holds (I4), and hashes what it reads. A stream that ends within
// the first part goes up in a single PUT whose signed payload hash is that
// SHA-256, so the service checks the bytes, and which records the hash as
// metadata (Stat then returns it). A longer stream goes up as a multipart
// upload, one part at a time; the hash of the whole is only known at the end,
// after the metadata was sent, so it is returned but not recorded: keep it
// from the returned Object (the manifest does).
//
// If r fails, Put aborts the upload, so that neither an object nor an
// incomplete upload is left, and the previous object at key, if any, stays as
// it was; it returns r's error unchanged, class and all (joined with the
// abort's error in the rare case the abort fails too: a bucket lifecycle rule
// for incomplete uploads is the backstop). A cancelled ctx aborts the same way.
//
// With IfAbsent, the request that makes the object visible (the PUT, or the
// completion of the multipart upload) carries If-None-Match: *, and the
// service refuses it if key exists: the error wraps ErrExists. With IfMatch
// that request carries If-Match: "etag" instead, and the service refuses it
// unless key holds that object: the error wraps ErrChanged. minio-go's
// retry of a request whose answer was lost may be refused the same way,
// the first attempt having stored the object; the caller that is refused
// reads the key again (finish adopts a manifest that says the same, and
// finds latest.json already naming its run).
func (s *S3) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (_ Object, err error) {
	if err := ValidKey(key); err != nil {
		return Object{}, err
	}
	if err := opts.check(key); err != nil {
		return Object{}, err
	}
	started := time.Now()
	src, buf, n, err := s.readFirst(r)
	defer func() { s.releaseSent(buf, err) }()
	if err != nil {
		return Object{}, err
	}
	if err := ctx.Err(); err != nil {
		return Object{}, fmt.Errorf("objstore: put %q in %s: %w", key, s.Describe(), err)
	}
	popts := minio.PutObjectOptions{ContentType: opts.ContentType, UserMetadata: userMetadata(opts.Metadata)}
	// The condition goes on the request that makes the object visible:
	// the PUT, or the multipart upload's completion (not its creation).
	copts, refused := popts, error(nil)
	switch {
	case opts.IfAbsent:
		copts.SetMatchETagExcept("*")
		refused = ErrExists
	case opts.IfMatch != "":
		copts.SetMatchETag(strings.Trim(opts.IfMatch, `"`))
		refused = ErrChanged
	}

	if src.done {
		sum := hex.EncodeToString(src.h.Sum(nil))
		copts.UserMetadata[sha256Meta] = sum
		// With the content hash given, minio-go signs it instead of hashing
		// the body again in signed chunks; the service verifies it.
		copts.DisableContentSha256 = true
		info, err := s.core.PutObject(ctx, s.bucket, key, bytes.NewReader(buf[:n]), int64(n), "", sum, copts)
		if err != nil {
			return Object{}, s.classifyCond(ctx, "put", key, err, refused)
		}
		return Object{Key: key, Bytes: src.n, SHA256: sum, ETag: info.ETag}, nil
	}

	uploadID, err := s.core.NewMultipartUpload(ctx, s.bucket, key, popts)
	if err != nil {
		return Object{}, s.classify(ctx, "put", key, err)
	}
	return s.upload(ctx, "put", Upload{Key: key, ID: uploadID}, src, buf, n, copts, refused, started)
}

// readFirst reads the start of r for Put and Complete: a little first, so
// that only a stream longer than smallPut takes a whole part buffer. It
// returns the buffer (for the caller to release) holding n bytes.
func (s *S3) readFirst(r io.Reader) (*source, []byte, int, error) {
	buf := s.take()
	if buf == nil {
		buf = s.takeSmall()
	}
	src := &source{r: r, h: sha256.New()}
	n, err := src.fill(buf)
	if err == nil && !src.done && len(buf) < s.partSize {
		full := s.take()
		if full == nil {
			full = make([]byte, s.partSize)
		}
		copy(full, buf[:n])
		s.release(buf)
		var m int
		m, err = src.fill(full[n:])
		n, buf = n+m, full
	}
	return src, buf, n, err
}

// upload streams buf[:n] and the rest of src into the open upload u and
// completes it with copts, for Put and Complete alike; refused is what a
// refusal of copts' condition wraps (nil: none sent). If anything fails it
// aborts u, and returns the stream's error unchanged, or the store's.
func (s *S3) upload(ctx context.Context, op string, u Upload, src *source, buf []byte, n int,
	copts minio.PutObjectOptions, refused error, started time.Time,
) (Object, error) {
	etag, err := s.putParts(ctx, op, u, src, buf, n, copts, refused)
	if err != nil {
		if aerr := s.abort(ctx, u); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return Object{}, err
	}
	// Even an upload through Begin and Complete, recorded where whoever
	// takes the work over aborts it, can be orphaned: its writer may die
	// between Begin and the record.
	s.abortOrphans(ctx, u.Key, started)
	return Object{Key: u.Key, Bytes: src.n, SHA256: hex.EncodeToString(src.h.Sum(nil)), ETag: etag}, nil
}

// abort aborts u even when ctx is cancelled: cancelling must not leave
// parts behind. An upload already gone (aborted, completed) is no error.
func (s *S3) abort(ctx context.Context, u Upload) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	if err := s.abortUpload(ctx, u); err != nil {
		return fmt.Errorf("objstore: abort upload of %q in %s: %w", u.Key, s.Describe(), err)
	}
	return nil
}

// abortUpload asks the service to abort u; an upload it no longer has
// (aborted, completed) is no error.
func (s *S3) abortUpload(ctx context.Context, u Upload) error {
	err := s.core.AbortMultipartUpload(ctx, s.bucket, u.Key, u.ID)
	if noSuchUpload(err) {
		return nil
	}
	return err
}

func noSuchUpload(err error) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) && resp.Code == "NoSuchUpload"
}

// defaultOrphanAge is how much older than a finished Put an open upload of
// the same key must be to count as orphaned. A killed worker's batch comes
// back only after AckWait; writers that start together on one key spare
// each other. Aborting a live writer's upload is harmless: its Put fails as
// retryable and its batch comes round again.
const defaultOrphanAge = 10 * time.Second

// abortOrphans aborts the multipart uploads still open for key once the key
// is written whole, if they began well before this Put: they belong to a
// writer that died mid-upload (a killed worker, whose batch was redelivered
// to us), and nobody else would ever abort them (I2). Best effort: a bucket
// lifecycle rule for incomplete uploads remains the backstop
// (deploy/README.md).
func (s *S3) abortOrphans(ctx context.Context, key string, started time.Time) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	res, err := s.core.ListMultipartUploads(ctx, s.bucket, key, "", "", "", 100)
	if err != nil {
		return
	}
	for _, u := range res.Uploads {
		if u.Key == key && u.Initiated.Before(started.Add(-s.orphanAge)) {
			_ = s.core.AbortMultipartUpload(ctx, s.bucket, key, u.UploadID)
		}
	}
}

// putParts uploads buf[:n], then the rest of src part by part, and completes
// the upload. On error the caller aborts it.
func (s *S3) putParts(ctx context.Context, op string, u Upload, src *source, buf []byte, n int,
	copts minio.PutObjectOptions, refused error,
) (string, error) {
	var parts []minio.CompletePart
	for {
		if len(parts) == maxParts {
			return "", failure.Permanent(fmt.Errorf("objstore: %s %q in %s: larger than %d parts of %d bytes",
				op, u.Key, s.Describe(), maxParts, s.partSize))
		}
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("objstore: %s %q in %s: %w", op, u.Key, s.Describe(), err)
		}
		p, err := s.core.PutObjectPart(ctx, s.bucket, u.Key, u.ID, len(parts)+1,
			bytes.NewReader(buf[:n]), int64(n), minio.PutObjectPartOptions{})
		if err != nil {
			return "", s.classify(ctx, op, u.Key, err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: p.PartNumber, ETag: p.ETag})
		if src.done {
			break
		}
		if n, err = src.fill(buf); err != nil {
			return "", err
		}
		if n == 0 && src.done {
			break // the stream ended exactly at a part boundary
		}
	}
	return s.complete(ctx, op, u, parts, copts, refused)
}

// complete completes u from parts. minio-go retries a request whose answer
// was lost, and the retry of a completion that did succeed finds the upload
// gone: so on NoSuchUpload the object at the key is compared with the one
// these parts make (its multipart ETag), and if they match it is ours.
// Identical content uploaded the same way by someone else is
// indistinguishable, and is then the object we meant to store anyway.
// refused: see upload.
func (s *S3) complete(ctx context.Context, op string, u Upload, parts []minio.CompletePart,
	copts minio.PutObjectOptions, refused error,
) (string, error) {
	info, err := s.core.CompleteMultipartUpload(ctx, s.bucket, u.Key, u.ID, parts, copts)
	if err == nil {
		return info.ETag, nil
	}
	if !noSuchUpload(err) || ctx.Err() != nil {
		return "", s.classifyCond(ctx, op, u.Key, err, refused)
	}
	want, ok := multipartETag(parts)
	if !ok {
		// The parts' ETags are not MD5s (encryption): whether the first
		// attempt completed cannot be told.
		return "", failure.Retryable(fmt.Errorf("objstore: %s %q in %s: the upload is gone, and whether it was completed cannot be told: %w",
			op, u.Key, s.Describe(), err))
	}
	st, serr := s.Stat(ctx, u.Key)
	switch {
	case errors.Is(serr, ErrNotFound):
	case serr != nil:
		return "", fmt.Errorf("objstore: %s %q in %s: the upload is gone; is it stored? %w", op, u.Key, s.Describe(), serr)
	case strings.EqualFold(st.ETag, want):
		return st.ETag, nil
	}
	return "", s.classify(ctx, op, u.Key, err)
}

// multipartETag is the ETag S3 gives the object completed from parts: the
// hex MD5 of their binary MD5s, then "-" and their count. ok is false when a
// part's ETag is no MD5.
func multipartETag(parts []minio.CompletePart) (string, bool) {
	h := md5.New()
	for _, p := range parts {
		b, err := hex.DecodeString(strings.Trim(p.ETag, `"`))
		if err != nil || len(b) != md5.Size {
			return "", false
		}
		h.Write(b)
	}
	return fmt.Sprintf("%x-%d", h.Sum(nil), len(parts)), true
}

func userMetadata(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		if !strings.EqualFold(k, sha256Meta) {
			out[k] = v
		}
	}
	return out
}

// Get opens key for reading. A missing key is ErrNotFound. Errors while
// reading the body are retryable.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	// Core's GetObject sends the request now (the Client's waits for the
	// first Read), so a missing key is an error here.
	body, info, _, err := s.core.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.classify(ctx, "get", key, err)
	}
	return &s3Reader{obj: body, s: s, ctx: ctx, key: key, tag: info.ETag, stored: info.LastModified}, nil
}

// s3Reader is an object's body. It also seeks (from the start), by asking
// again for the object from that byte, so that a reader after a file's
// tail (a Parquet footer) fetches only the tail.
type s3Reader struct {
	obj io.ReadCloser
	s   *S3
	ctx context.Context
	key string
	tag string // the ETag of the object read, from Get's answer
	// stored is its Last-Modified, from the same answer.
	stored time.Time
	// closed: ETag refuses a closed reader, as the directory store's must
	// (it hashes the open file), so that a caller tested on S3 works on both.
	closed bool
}

// etag: see [ETag].
func (r *s3Reader) etag() (string, error) {
	if r.closed {
		return "", fmt.Errorf("objstore: get %q in %s: %w", r.key, r.s.Describe(), errETagClosed)
	}
	if r.tag == "" {
		return "", fmt.Errorf("objstore: get %q in %s: the answer had no ETag", r.key, r.s.Describe())
	}
	return r.tag, nil
}

// modified: see [Modified].
func (r *s3Reader) modified() (time.Time, error) {
	if r.stored.IsZero() {
		return time.Time{}, fmt.Errorf("objstore: get %q in %s: the answer had no Last-Modified", r.key, r.s.Describe())
	}
	return r.stored, nil
}

// Seek asks for the object again from offset (whence io.SeekStart only),
// on condition that it is the same object the first request read: a key
// replaced in between fails the seek instead of mixing two objects' bytes.
func (r *s3Reader) Seek(offset int64, whence int) (int64, error) {
	if whence != io.SeekStart || offset < 0 {
		return 0, fmt.Errorf("objstore: get %q: the S3 reader seeks to an offset from the start only", r.key)
	}
	var opts minio.GetObjectOptions
	if offset > 0 {
		if err := opts.SetRange(offset, 0); err != nil {
			return 0, fmt.Errorf("objstore: get %q from byte %d: %w", r.key, offset, err)
		}
	}
	var refused error
	if r.tag != "" {
		if err := opts.SetMatchETag(r.tag); err != nil {
			return 0, fmt.Errorf("objstore: get %q: %w", r.key, err)
		}
		refused = ErrChanged
	}
	body, _, _, err := r.s.core.GetObject(r.ctx, r.s.bucket, r.key, opts)
	if err != nil {
		return 0, r.s.classifyCond(r.ctx, "get", r.key, err, refused)
	}
	_ = r.obj.Close()
	r.obj = body
	return offset, nil
}

func (r *s3Reader) Read(p []byte) (int, error) {
	n, err := r.obj.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.classify(r.ctx, "read", r.key, err)
	}
	return n, err
}

func (r *s3Reader) Close() error {
	r.closed = true
	return r.obj.Close()
}

// Stat returns key's size and ETag, and its SHA-256 when it was recorded
// (see Put). A missing key is ErrNotFound.
func (s *S3) Stat(ctx context.Context, key string) (Object, error) {
	if err := ValidKey(key); err != nil {
		return Object{}, err
	}
	info, err := s.core.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Object{}, s.classify(ctx, "stat", key, err)
	}
	o := Object{Key: key, Bytes: info.Size, ETag: info.ETag}
	for k, v := range info.UserMetadata {
		if strings.EqualFold(k, sha256Meta) {
			o.SHA256 = v
		}
	}
	return o, nil
}

// List yields the objects whose keys start with prefix, in key order (byte
// order, as S3 lists). SHA256 is not set. Stop early by breaking the loop.
func (s *S3) List(ctx context.Context, prefix string) iter.Seq2[Object, error] {
	return func(yield func(Object, error) bool) {
		if err := validPrefix(prefix); err != nil {
			yield(Object{}, err)
			return
		}
		// minio-go's lister runs until its context ends: end it when we do.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for info := range s.core.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if info.Err != nil {
				yield(Object{}, s.classify(ctx, "list", prefix, info.Err))
				return
			}
			if !yield(Object{Key: info.Key, Bytes: info.Size, ETag: info.ETag}, nil) {
				return
			}
		}
	}
}

// Delete removes key. Deleting a missing key is not an error.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := s.core.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return s.classify(ctx, "delete", key, err)
	}
	return nil
}
