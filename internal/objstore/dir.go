package objstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
)

// Dir stores objects as files under a local directory, for the embedded mode.
// A key is a path below the root ('/' separated); the root itself is never
// left, even through symbolic links (os.Root). It is safe for concurrent use.
//
// Names starting with '.' are the store's own (temporary files) and are never
// objects. Unlike S3, a key cannot be both an object and the start of other
// keys ("a" and "a/b"): the object layout never asks for that.
//
// A Dir serves one process. Its conditional writes (PutOptions.IfMatch) are
// a compare and a rename under a lock that every Dir of the same root in
// the process shares, and that every rename and remove of an object takes:
// a lock another process does not see. qfetch local, the Dir's user, holds
// the data directory's lock (flock) for as long as it runs, so a second
// process never writes the same root; a fleet shares S3, whose service
// enforces the conditions.
type Dir struct {
	root string
	// mu orders the compare of IfMatch with its rename, and every other
	// rename or remove of an object against them: see dirLock.
	mu *sync.Mutex
}

// dirLocks holds one lock per root (absolute path), for every Dir of the
// process on that root.
var dirLocks sync.Map // string → *sync.Mutex

// dirLock returns root's lock.
func dirLock(root string) *sync.Mutex {
	mu, _ := dirLocks.LoadOrStore(root, new(sync.Mutex))
	return mu.(*sync.Mutex)
}

const (
	dirPerm  = 0o750
	filePerm = 0o640
	// tmpPrefix marks files being written. A crash leaves them behind, unseen
	// by List and Get; they are safe to remove when no Put is running and no
	// upload open (removing an upload's file aborts it).
	tmpPrefix = ".tmp-"
	// uploadPrefix marks the temporary files of uploads (Begin). rand.Text
	// is upper case, so a Put's temporary file never has it.
	uploadPrefix = tmpPrefix + "up-"
	copyBuf      = 256 << 10
)

// NewDir returns a store rooted at root. It does not create the directory or
// touch it: call Check.
func NewDir(root string) (*Dir, error) {
	if root == "" {
		return nil, errors.New("objstore: directory is empty")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("objstore: directory %s: %w", root, err)
	}
	return &Dir{root: abs, mu: dirLock(abs)}, nil
}

// Describe names the directory for logs: dir:/path.
func (d *Dir) Describe() string { return "dir:" + d.root }

// Check verifies that the directory exists and that we may write in it.
func (d *Dir) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	root, err := d.open("check")
	if err != nil {
		return err
	}
	defer root.Close()
	probe := tmpPrefix + "check-" + rand.Text()
	f, err := root.OpenFile(probe, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return failure.FleetWide(fmt.Errorf("objstore: check: cannot write in %s: %w", d.Describe(), err))
	}
	f.Close()
	if err := root.Remove(probe); err != nil {
		return failure.FleetWide(fmt.Errorf("objstore: check: %s: %w", d.Describe(), err))
	}
	return nil
}

// open opens the root, per call, so that a directory replaced while we run is
// the one used.
func (d *Dir) open(op string) (*os.Root, error) {
	root, err := os.OpenRoot(d.root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, failure.FleetWide(fmt.Errorf("objstore: %s: directory %s does not exist", op, d.root))
		}
		return nil, failure.FleetWide(fmt.Errorf("objstore: %s: %s: %w", op, d.Describe(), err))
	}
	return root, nil
}

// Put streams r to key: written to a temporary file beside it, synced, then
// renamed over key and the directory synced, so that key holds the old
// object or the whole new one, even across a crash (I2). If r fails, the
// temporary file is removed and r's error is returned unchanged; so is a
// cancelled ctx, checked between chunks. With IfAbsent the file is linked to
// key instead, which fails if key exists (ErrExists). With IfMatch the file
// at key is hashed, under the root's lock, and the rename is made only if
// its ETag (the hex SHA-256 of its content) is IfMatch's (else ErrChanged).
// The other PutOptions are not kept. Complete writes and renames an
// upload's temporary file the same way.
func (d *Dir) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Object, error) {
	if err := ValidKey(key); err != nil {
		return Object{}, err
	}
	if err := opts.check(key); err != nil {
		return Object{}, err
	}
	if err := ctx.Err(); err != nil {
		return Object{}, fmt.Errorf("objstore: put %q in %s: %w", key, d.Describe(), err)
	}
	root, err := d.open("put")
	if err != nil {
		return Object{}, err
	}
	defer root.Close()
	tmp, f, err := d.create(root, "put", key, tmpPrefix+rand.Text())
	if err != nil {
		return Object{}, err
	}
	return d.commit(ctx, root, "put", key, tmp, f, r, opts)
}

// create makes the empty temporary file name in key's directory.
func (d *Dir) create(root *os.Root, op, key, name string) (string, *os.File, error) {
	parent := path.Dir(key)
	if err := root.MkdirAll(parent, dirPerm); err != nil {
		return "", nil, d.classify(op, key, err)
	}
	tmp := path.Join(parent, name)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return "", nil, d.classify(op, key, err)
	}
	return tmp, f, nil
}

// commit streams r into f, the temporary file tmp beside key, syncs it and
// moves it onto key: by rename, or for a create (IfAbsent) by a link, which
// fails if key exists; with IfMatch, the rename is made only if key holds
// that object. Whatever fails, f is closed and tmp removed. If tmp is
// removed under it (an aborted upload), the move fails with ErrUploadGone:
// nothing is stored. Only opts' conditions are used.
func (d *Dir) commit(ctx context.Context, root *os.Root, op, key, tmp string, f *os.File, r io.Reader, opts PutOptions) (Object, error) {
	ifAbsent := opts.IfAbsent
	committed := false
	defer func() {
		if !committed {
			f.Close()
			root.Remove(tmp)
		}
	}()

	src := &source{r: r, h: sha256.New()}
	buf := make([]byte, copyBuf)
	for !src.done {
		if err := ctx.Err(); err != nil {
			return Object{}, fmt.Errorf("objstore: %s %q in %s: %w", op, key, d.Describe(), err)
		}
		n, err := src.fill(buf)
		if err != nil {
			return Object{}, err
		}
		if _, err := f.Write(buf[:n]); err != nil {
			return Object{}, d.classify(op, key, err)
		}
	}
	if err := f.Sync(); err != nil {
		return Object{}, d.classify(op, key, err)
	}
	if err := f.Close(); err != nil {
		return Object{}, d.classify(op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return Object{}, fmt.Errorf("objstore: %s %q in %s: %w", op, key, d.Describe(), err)
	}
	if err := d.move(root, op, key, tmp, opts); err != nil {
		return Object{}, err
	}
	committed = true
	if ifAbsent {
		// key holds the object now; a temporary file left behind is
		// invisible and, like a crash's, safe to remove later.
		_ = root.Remove(tmp)
	}
	if err := syncDir(root, path.Dir(key)); err != nil {
		return Object{}, d.classify(op, key, err)
	}
	sum := hex.EncodeToString(src.h.Sum(nil))
	return Object{Key: key, Bytes: src.n, SHA256: sum, ETag: sum}, nil
}

// move puts tmp in key's place, under the root's lock: by a link for
// IfAbsent, else by a rename, made for IfMatch only if key holds that
// object.
func (d *Dir) move(root *os.Root, op, key, tmp string, opts PutOptions) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if opts.IfMatch != "" {
		tag, err := fileETag(root, key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return d.classify(op, key, err)
		}
		if tag != strings.Trim(opts.IfMatch, `"`) {
			return failure.Permanent(fmt.Errorf("objstore: %s %q in %s: %w", op, key, d.Describe(), ErrChanged))
		}
	}
	ifAbsent := opts.IfAbsent
	move := root.Rename
	if ifAbsent {
		move = root.Link
	}
	if err := move(tmp, key); err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return failure.Retryable(fmt.Errorf("objstore: %s %q in %s: %w: %w", op, key, d.Describe(), ErrUploadGone, err))
		case ifAbsent && errors.Is(err, fs.ErrExist):
			if fi, serr := root.Lstat(key); serr == nil && !fi.IsDir() {
				return failure.Permanent(fmt.Errorf("objstore: %s %q in %s: %w", op, key, d.Describe(), ErrExists))
			}
		}
		return d.classify(op, key, err)
	}
	return nil
}

// fileETag is the ETag of the object at key: the hex SHA-256 of its
// content. A key that holds no object (missing, a directory) is
// ErrNotFound.
func fileETag(root *os.Root, key string) (string, error) {
	f, err := root.Open(key)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	return (&dirReader{File: f}).etag()
}

// dirReader is an object's file, as Get returns it: an *os.File (it reads,
// seeks, reads at) that also knows its ETag.
type dirReader struct {
	*os.File
	tag    string
	closed bool // ETag refuses a closed reader (see [ETag])
}

func (r *dirReader) Close() error {
	r.closed = true
	return r.File.Close()
}

// modified: see [Modified].
func (r *dirReader) modified() (time.Time, error) {
	fi, err := r.Stat()
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// etag: see [ETag]. It hashes the open file with ReadAt, which leaves the
// reader's offset alone; the file is never written in place (Put renames a
// new one over it), so the hash is that of what the reader reads.
func (r *dirReader) etag() (string, error) {
	switch {
	case r.closed:
		return "", fmt.Errorf("objstore: %s: %w", r.Name(), errETagClosed)
	case r.tag != "":
		return r.tag, nil
	}
	fi, err := r.Stat()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r.File, 0, fi.Size())); err != nil {
		return "", fmt.Errorf("objstore: hashing %s: %w", r.Name(), err)
	}
	r.tag = hex.EncodeToString(h.Sum(nil))
	return r.tag, nil
}

// syncDir makes a rename or remove in dir durable.
func syncDir(root *os.Root, dir string) error {
	f, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Get opens key for reading. A missing key, or a directory, is ErrNotFound.
func (d *Dir) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	root, err := d.open("get")
	if err != nil {
		return nil, err
	}
	defer root.Close() // the file stays open without it
	f, err := root.Open(key)
	if err != nil {
		return nil, d.classify("get", key, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return nil, d.classify("get", key, err)
		}
		return nil, fmt.Errorf("objstore: get %q in %s: %w", key, d.Describe(), ErrNotFound)
	}
	return &dirReader{File: f}, nil
}

// Stat returns key's size. A missing key, or a directory, is ErrNotFound.
// SHA256 and ETag are not set.
func (d *Dir) Stat(ctx context.Context, key string) (Object, error) {
	if err := ValidKey(key); err != nil {
		return Object{}, err
	}
	if err := ctx.Err(); err != nil {
		return Object{}, err
	}
	root, err := d.open("stat")
	if err != nil {
		return Object{}, err
	}
	defer root.Close()
	fi, err := root.Stat(key)
	if err != nil {
		return Object{}, d.classify("stat", key, err)
	}
	if !fi.Mode().IsRegular() {
		return Object{}, fmt.Errorf("objstore: stat %q in %s: %w", key, d.Describe(), ErrNotFound)
	}
	return Object{Key: key, Bytes: fi.Size()}, nil
}

// List yields the objects whose keys start with prefix, in key order (byte
// order, as S3 lists: "a-b" before "a/b"). Stop early by breaking the loop.
func (d *Dir) List(ctx context.Context, prefix string) iter.Seq2[Object, error] {
	return func(yield func(Object, error) bool) {
		if err := validPrefix(prefix); err != nil {
			yield(Object{}, err)
			return
		}
		root, err := d.open("list")
		if err != nil {
			yield(Object{}, err)
			return
		}
		defer root.Close()
		start := "."
		if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
			start = prefix[:i]
		}
		d.walk(ctx, root.FS(), start, prefix, yield)
	}
}

// walk yields the objects under dir that match prefix and reports whether to
// go on. Within a directory it visits a subdirectory "d" as if it were named
// "d/", which is where its keys sort among its siblings'.
func (d *Dir) walk(ctx context.Context, fsys fs.FS, dir, prefix string, yield func(Object, error) bool) bool {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		if dir != "." && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) {
			return true // nothing under this prefix
		}
		return yield(Object{}, d.classify("list", prefix, err))
	}
	sortName := func(e fs.DirEntry) string {
		if e.IsDir() {
			return e.Name() + "/"
		}
		return e.Name()
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return cmp.Compare(sortName(a), sortName(b)) })
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return yield(Object{}, err)
		}
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		key := e.Name()
		if dir != "." {
			key = dir + "/" + key
		}
		switch {
		case e.IsDir():
			sub := key + "/"
			if strings.HasPrefix(sub, prefix) || strings.HasPrefix(prefix, sub) {
				if !d.walk(ctx, fsys, key, prefix, yield) {
					return false
				}
			}
		case e.Type().IsRegular() && strings.HasPrefix(key, prefix):
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted since ReadDir
			}
			if err != nil {
				return yield(Object{}, d.classify("list", prefix, err))
			}
			if !yield(Object{Key: key, Bytes: fi.Size()}, nil) {
				return false
			}
		}
	}
	return true
}

// Delete removes key. Deleting a missing key is not an error. Emptied
// directories stay: a Put may be about to write in them.
func (d *Dir) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	root, err := d.open("delete")
	if err != nil {
		return err
	}
	defer root.Close()
	fi, err := root.Lstat(key)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return nil
	case err != nil:
		return d.classify("delete", key, err)
	case fi.IsDir():
		return nil // a directory is no object
	}
	d.mu.Lock()
	err = root.Remove(key)
	d.mu.Unlock()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return d.classify("delete", key, err)
	}
	if err := syncDir(root, path.Dir(key)); err != nil {
		return d.classify("delete", key, err)
	}
	return nil
}

// writeOps are the operations of classify that write an object: for them a
// missing directory is no missing key.
var writeOps = map[string]bool{"put": true, "begin upload of": true, "complete": true}

// classify gives a file system error its class: a missing key is
// ErrNotFound; no permission, a read-only or full disk stop every write
// alike (fleet-wide); a key that collides with a directory, or a directory
// with a key, or a name too long for the file system, will never work
// (permanent); anything else may pass.
func (d *Dir) classify(op, key string, err error) error {
	where := fmt.Sprintf("%q in %s", key, d.Describe())
	switch {
	case !writeOps[op] && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)):
		return fmt.Errorf("objstore: %s %s: %w", op, where, ErrNotFound)
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		return failure.FleetWide(fmt.Errorf("objstore: %s %s: %w", op, where, err))
	case errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.EEXIST):
		return failure.Permanent(fmt.Errorf("objstore: %s %s: the key collides with another key's directory: %w", op, where, err))
	case errors.Is(err, syscall.ENAMETOOLONG):
		return failure.Permanent(fmt.Errorf("objstore: %s %s: %w", op, where, err))
	default:
		return failure.Retryable(fmt.Errorf("objstore: %s %s: %w", op, where, err))
	}
}
