package objstore

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/qfetch/qfetch/internal/testenv"
)

// Complete keeps what Begin was given, and every object it makes is a
// multipart upload, even a tiny one.
func TestS3UploadOptions(t *testing.T) {
	srv := testenv.MinIO(t)
	s := newS3(t, S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Bucket: srv.Bucket, Region: "us-east-1", PartSize: MinPartSize})
	ctx := context.Background()
	opts := PutOptions{ContentType: "application/xml", Metadata: map[string]string{"run": "r1", "sha256": "forged"}}
	for _, tc := range []struct {
		size  int64
		parts int
	}{{0, 1}, {1000, 1}, {MinPartSize + 1, 2}} {
		t.Run(fmt.Sprint(tc.size), func(t *testing.T) {
			key := fmt.Sprintf("k%d", tc.size)
			u, err := s.Begin(ctx, key, opts)
			if err != nil {
				t.Fatal(err)
			}
			obj, err := s.Complete(ctx, u, stream(5, tc.size))
			if err != nil {
				t.Fatal(err)
			}
			info, err := srv.Client.StatObject(ctx, srv.Bucket, key, minio.StatObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if info.ContentType != "application/xml" || info.UserMetadata["Run"] != "r1" {
				t.Errorf("content type %q, metadata %v; want application/xml and Run=r1", info.ContentType, info.UserMetadata)
			}
			if _, ok := info.UserMetadata["Sha256"]; ok {
				t.Errorf("metadata %v holds a sha256", info.UserMetadata)
			}
			if suffix := fmt.Sprintf("-%d", tc.parts); !strings.HasSuffix(info.ETag, suffix) || obj.ETag != info.ETag {
				t.Errorf("ETag %q (Complete said %q), want a multipart ETag ending %s", info.ETag, obj.ETag, suffix)
			}
		})
	}
}
