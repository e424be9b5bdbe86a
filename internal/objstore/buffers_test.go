package objstore

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/qfetch/qfetch/internal/testenv"
)

// TestReusedBuffersCarryNothingOver: Puts and Completes reuse their
// buffers, first-read and part-size alike; each object holds its own bytes
// only, whatever size came before it (a shorter object after a longer one
// would show a reused buffer's leftovers), and a first-read buffer is kept
// for the next Put.
func TestReusedBuffersCarryNothingOver(t *testing.T) {
	srv := testenv.MinIO(t)
	s := newS3(t, S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Bucket: srv.Bucket, Region: "us-east-1", PartSize: MinPartSize})
	sizes := []int{900 << 10, 10 << 10, 0, smallPut, MinPartSize + 3, 1, 2*MinPartSize + 7, 300 << 10}
	for i, n := range sizes {
		body := bytes.Repeat([]byte{byte('a' + i)}, n)
		key := fmt.Sprintf("reuse/%d", i)
		if i%2 == 0 {
			if _, err := s.Put(t.Context(), key, bytes.NewReader(body), PutOptions{}); err != nil {
				t.Fatalf("put %d bytes: %v", n, err)
			}
		} else {
			u, err := s.Begin(t.Context(), key, PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Complete(t.Context(), u, bytes.NewReader(body)); err != nil {
				t.Fatalf("complete %d bytes: %v", n, err)
			}
		}
		if getSum(t, s, key) != sumReader(t, bytes.NewReader(body)) {
			t.Fatalf("object %d: stored other bytes than %d of %q", i, n, rune('a'+i))
		}
	}
	if len(s.freeSmall) == 0 || len(s.free) == 0 {
		t.Fatalf("idle buffers after the Puts: %d first-read, %d part-size; want both kept", len(s.freeSmall), len(s.free))
	}
}
