package testenv_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/qfetch/qfetch/internal/testenv"
)

func put(t *testing.T, c *minio.Client, bucket, key string, data []byte) {
	t.Helper()
	_, err := c.PutObject(testCtx(t), bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
}

func get(t *testing.T, c *minio.Client, bucket, key string) []byte {
	t.Helper()
	obj, err := c.GetObject(testCtx(t), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("read %s/%s: %v", bucket, key, err)
	}
	return b
}

func TestMinIOPutGet(t *testing.T) {
	s := testenv.MinIO(t)
	want := []byte("<HOST_LIST_VM_DETECTION_OUTPUT/>")
	put(t, s.Client, s.Bucket, "runs/r1/a.xml", want)
	if got := get(t, s.Client, s.Bucket, "runs/r1/a.xml"); !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestMinIOBucketsAreSeparate(t *testing.T) {
	a, b := testenv.MinIO(t), testenv.MinIO(t)
	if a.Bucket == b.Bucket {
		t.Fatalf("two calls gave the same bucket %q", a.Bucket)
	}
	if a.Endpoint != b.Endpoint {
		t.Fatalf("two calls in one package gave two processes: %s and %s", a.Endpoint, b.Endpoint)
	}
	put(t, a.Client, a.Bucket, "k", []byte("only in a"))
	_, err := b.Client.StatObject(testCtx(t), b.Bucket, "k", minio.StatObjectOptions{})
	if minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		t.Fatalf("stat k in the other bucket: err = %v, want NoSuchKey", err)
	}
}

func TestDedicatedMinIORestartKeepsObjects(t *testing.T) {
	p := testenv.DedicatedMinIO(t)
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(testCtx(t), "restart", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	put(t, c, "restart", "k", []byte("survives"))
	endpoint := p.Endpoint

	tests := []struct {
		name string
		down func() error
	}{
		{"stop", p.Stop},
		{"kill", p.Kill},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.down(); err != nil {
				t.Fatal(err)
			}
			if p.Running() {
				t.Fatal("Running() after the process was taken down")
			}
			if conn, err := net.DialTimeout("tcp", endpoint, time.Second); err == nil {
				conn.Close()
				t.Fatalf("%s still accepts connections", endpoint)
			}
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			if p.Endpoint != endpoint {
				t.Fatalf("endpoint changed over a restart: %s, then %s", endpoint, p.Endpoint)
			}
			if got := get(t, c, "restart", "k"); string(got) != "survives" {
				t.Fatalf("after restart got %q, want %q", got, "survives")
			}
		})
	}
}

func TestStartMinIOTwiceFails(t *testing.T) {
	p := testenv.DedicatedMinIO(t)
	if err := p.Start(); err == nil {
		t.Fatal("Start on a running process succeeded")
	}
}

func TestMinIOLogsNeverHoldTheSecret(t *testing.T) {
	p := testenv.DedicatedMinIO(t)
	// A request signed with a wrong secret makes MinIO talk about credentials.
	bad, err := minio.New(p.Endpoint, &minio.Options{Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, _ = bad.BucketExists(ctx, "x")
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains([]byte(p.Logs()), []byte(p.SecretKey)) {
		t.Fatal("MinIO's output kept by testenv contains the secret key")
	}
}
