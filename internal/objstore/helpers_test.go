package objstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"iter"
	"math/rand/v2"
	"testing"
)

// store is what the conformance suite asks of both implementations.
type store interface {
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Object, error)
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	Stat(ctx context.Context, key string) (Object, error)
	List(ctx context.Context, prefix string) iter.Seq2[Object, error]
	Delete(ctx context.Context, key string) error
	Check(ctx context.Context) error
	Describe() string
	Begin(ctx context.Context, key string, opts PutOptions) (Upload, error)
	Complete(ctx context.Context, u Upload, r io.Reader) (Object, error)
	Abort(ctx context.Context, u Upload) error
	AbortUploads(ctx context.Context, folders ...string) (int, error)
}

var (
	_ store = (*S3)(nil)
	_ store = (*Dir)(nil)
)

// stream is n bytes of deterministic noise for seed.
func stream(seed uint64, n int64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return io.LimitReader(rand.NewChaCha8(s), n)
}

// sumOf is the hex SHA-256 of stream(seed, n).
func sumOf(t testing.TB, seed uint64, n int64) string {
	t.Helper()
	return sumReader(t, stream(seed, n))
}

func sumReader(t testing.TB, r io.Reader) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatalf("hash: %v", err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cutReader passes left bytes of r, and returns err with the last of them
// (or alone, when left is 0). Later reads return then: err again, as most
// readers do, or io.EOF, as a reader that forgets its failure would.
type cutReader struct {
	r     io.Reader
	left  int64
	err   error
	then  error
	fired bool
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.fired {
		return 0, c.then
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left == 0 {
		c.fired = true
		return n, c.err
	}
	return n, err
}

// cancelReader calls cancel once left bytes have been read, and goes on.
type cancelReader struct {
	r      io.Reader
	left   int64
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.left -= int64(n); c.left <= 0 {
		c.cancel()
	}
	return n, err
}

func getSum(t *testing.T, s store, key string) string {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	return sumReader(t, rc)
}

// gateReader passes at bytes of r, then stops until release is closed,
// having closed reached, and reads on.
type gateReader struct {
	r       io.Reader
	at      int64
	reached chan struct{}
	release chan struct{}
}

func (g *gateReader) Read(p []byte) (int, error) {
	if g.at == 0 {
		close(g.reached)
		<-g.release
		g.at = -1
	}
	if g.at > 0 && int64(len(p)) > g.at {
		p = p[:g.at]
	}
	n, err := g.r.Read(p)
	if g.at > 0 {
		g.at -= int64(n)
	}
	return n, err
}
