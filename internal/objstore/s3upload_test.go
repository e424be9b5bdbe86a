package objstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
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

// minio-go retries a request whose answer is lost. A completion that did
// succeed then meets NoSuchUpload on the retry; Complete must see that the
// object is the one its parts make, and not report the upload gone.
func TestS3CompleteAnswerLost(t *testing.T) {
	srv := testenv.MinIO(t)
	target, err := url.Parse("http://" + srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // signed by the client
	}}
	var dropped atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Query().Has("uploadId") && dropped.Add(1) == 1 {
			// The store completes the upload; the client never hears of it.
			proxy.ServeHTTP(httptest.NewRecorder(), r)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.Close()
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	s := newS3(t, S3Config{Endpoint: front.Listener.Addr().String(), AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Bucket: srv.Bucket, Region: "us-east-1", PartSize: MinPartSize, MaxRetries: 3})
	ctx := context.Background()
	for i, size := range []int64{100, 2*MinPartSize + 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			dropped.Store(0)
			key := DetectionKey("q", "r1", i+1, 1)
			u, err := s.Begin(ctx, key, PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := sumOf(t, 6, size)
			obj, err := s.Complete(ctx, u, stream(6, size))
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if n := dropped.Load(); n < 2 {
				t.Fatalf("%d completion requests: the lost answer was not retried", n)
			}
			if got := getSum(t, s, key); got != want || obj.SHA256 != want {
				t.Errorf("object sha256 %s, Complete said %s; want %s", got, obj.SHA256, want)
			}
		})
	}
}

// The check after NoSuchUpload tells our object from another, and from none.
func TestS3CompleteGoneCheck(t *testing.T) {
	srv := testenv.MinIO(t)
	s := newS3(t, S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Bucket: srv.Bucket, Region: "us-east-1", PartSize: MinPartSize})
	ctx := context.Background()
	const key = "k"
	upload := func(sizes ...int64) (Upload, []minio.CompletePart) {
		t.Helper()
		u, err := s.Begin(ctx, key, PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var parts []minio.CompletePart
		for i, size := range sizes {
			p, err := s.core.PutObjectPart(ctx, srv.Bucket, key, u.ID, i+1, stream(uint64(i), size), size, minio.PutObjectPartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, minio.CompletePart{PartNumber: p.PartNumber, ETag: p.ETag})
		}
		return u, parts
	}
	u, parts := upload(MinPartSize, 10)
	etag, err := s.complete(ctx, "complete", u, parts, minio.PutObjectOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want, ok := multipartETag(parts); !ok || etag != want {
		t.Fatalf("MinIO's ETag %q, computed %q (ok %t)", etag, want, ok)
	}
	// The retry of that very request.
	if again, err := s.complete(ctx, "complete", u, parts, minio.PutObjectOptions{}, nil); err != nil || again != etag {
		t.Errorf("second completion = %q, %v; want %q, nil", again, err, etag)
	}
	// Other parts: the object there is not theirs.
	other := append([]minio.CompletePart(nil), parts...)
	other[1].ETag = fmt.Sprintf("%032x", 1)
	_, err = s.complete(ctx, "complete", u, other, minio.PutObjectOptions{}, nil)
	wantGone(t, err)
	// An aborted upload and no object at all.
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	u, parts = upload(10)
	if err := s.Abort(ctx, u); err != nil {
		t.Fatal(err)
	}
	_, err = s.complete(ctx, "complete", u, parts, minio.PutObjectOptions{}, nil)
	wantGone(t, err)
	if _, err := s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat = %v, want ErrNotFound", err)
	}
}
