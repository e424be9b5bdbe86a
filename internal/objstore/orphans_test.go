package objstore

import (
	"bytes"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/qfetch/qfetch/internal/testenv"
)

// TestPutAbortsOrphanedUploads: a writer killed mid-upload leaves an open
// multipart upload that nobody would abort; the next whole Put of the key
// (the redelivered batch) aborts it. Writers racing on one key do not abort
// each other (TestConformance/s3/ConcurrentOverwrite).
func TestPutAbortsOrphanedUploads(t *testing.T) {
	srv := testenv.MinIO(t)
	s := newS3(t, S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Bucket: srv.Bucket, Region: "us-east-1", PartSize: MinPartSize})
	// The orphan here is seconds old; a killed worker's is minutes old.
	s.orphanAge = -time.Minute
	const key = "qualys/runs/r1/detections/batch-000001.xml"
	core := minio.Core{Client: srv.Client}
	id, err := core.NewMultipartUpload(t.Context(), srv.Bucket, key, minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := incompleteUploads(t, srv.Client, srv.Bucket, key); len(got) != 1 {
		t.Fatalf("setup: incomplete uploads %v", got)
	}
	data := bytes.Repeat([]byte("x"), MinPartSize+100)
	if _, err := s.Put(t.Context(), key, bytes.NewReader(data), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := incompleteUploads(t, srv.Client, srv.Bucket, key); len(got) != 0 {
		t.Fatalf("orphaned upload %s still open after a whole Put: %v", id, got)
	}
}
