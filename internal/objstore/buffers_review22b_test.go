package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/qfetch/qfetch/internal/testenv"
)

// TestRefusedWriteReleasesABufferTheTransportStillReads: a write the
// service refuses before it reads the body — a conditional Put on a key
// that exists (If-None-Match: *, 412), a Complete of an upload that was
// aborted meanwhile (the I8 fence: NoSuchUpload on the part) — is answered
// while net/http's write loop is still copying the body out of the
// bytes.Reader over the buffer. RoundTrip returns then (its contract: the
// body may be read and closed "in a separate goroutine even after
// RoundTrip returns"; minio-go does not wait for it), Put or Complete
// releases the buffer, and the next Put fills it while the old request
// still reads it: a data race (run with -race). Reuse is only safe once the
// transport has let go of the body.
//
// Before 8c48c14 a first-read buffer was never reused, so this needed a
// refused write larger than smallPut (part buffers); now every refused
// conditional Put of a marker, manifest or latest.json, and every fenced
// Complete of a small batch, hands on a buffer still being read.
func TestRefusedWriteReleasesABufferTheTransportStillReads(t *testing.T) {
	srv := testenv.MinIO(t)
	const size = smallPut - 1 // fits a first-read buffer
	tests := []struct {
		name   string
		refuse func(ctx context.Context, s *S3, body []byte) error
		want   error
	}{
		{"put if absent on an existing key", func(ctx context.Context, s *S3, body []byte) error {
			_, err := s.Put(ctx, "taken", bytes.NewReader(body), PutOptions{IfAbsent: true})
			return err
		}, ErrExists},
		{"complete of an aborted upload", func(ctx context.Context, s *S3, body []byte) error {
			u, err := s.Begin(ctx, "fenced", PutOptions{})
			if err != nil {
				return err
			}
			if err := s.Abort(ctx, u); err != nil {
				return err
			}
			_, err = s.Complete(ctx, u, bytes.NewReader(body))
			return err
		}, ErrUploadGone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newS3(t, S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
				Bucket: srv.Bucket, Region: "us-east-1", PartSize: MinPartSize})
			if _, err := s.Put(t.Context(), "taken", bytes.NewReader(bytes.Repeat([]byte{'a'}, size)), PutOptions{}); err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				if err := tt.refuse(t.Context(), s, bytes.Repeat([]byte{'b'}, size)); !errors.Is(err, tt.want) {
					t.Fatalf("round %d: refused write: %v, want %v", i, err, tt.want)
				}
				// The next Put takes the refused write's buffer and fills it.
				body := bytes.Repeat([]byte{byte('c' + i)}, size)
				key := fmt.Sprintf("next/%d", i)
				if _, err := s.Put(t.Context(), key, bytes.NewReader(body), PutOptions{}); err != nil {
					t.Fatalf("round %d: put: %v", i, err)
				}
				if getSum(t, s, key) != sumReader(t, bytes.NewReader(body)) {
					t.Fatalf("round %d: stored object differs from what was put", i)
				}
			}
		})
	}
}
