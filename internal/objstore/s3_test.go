package objstore

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/testenv"
)

func setupS3(t *testing.T) subject {
	t.Helper()
	srv := testenv.MinIO(t)
	s := newS3(t, S3Config{
		Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Bucket: srv.Bucket, Region: "us-east-1", PartSize: MinPartSize,
	})
	return subject{
		s:    s,
		part: MinPartSize,
		leftovers: func(t *testing.T, key string) []string {
			t.Helper()
			return incompleteUploads(t, srv.Client, srv.Bucket, key)
		},
	}
}

func newS3(t testing.TB, cfg S3Config) *S3 {
	t.Helper()
	s, err := NewS3(cfg)
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	return s
}

// incompleteUploads lists the multipart uploads of key that were neither
// completed nor aborted. MinIO lists them by exact key only.
func incompleteUploads(t *testing.T, c *minio.Client, bucket, key string) []string {
	t.Helper()
	var ids []string
	for u := range c.ListIncompleteUploads(context.Background(), bucket, key, true) {
		if u.Err != nil {
			t.Fatalf("list incomplete uploads: %v", u.Err)
		}
		ids = append(ids, u.Key+" "+u.UploadID)
	}
	return ids
}

// The leftover check of the suite must be able to fail.
func TestS3LeftoversSeesIncompleteUploads(t *testing.T) {
	srv := testenv.MinIO(t)
	key := DetectionKey("q", "r1", 1, 1)
	core := minio.Core{Client: srv.Client}
	id, err := core.NewMultipartUpload(context.Background(), srv.Bucket, key, minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if left := incompleteUploads(t, srv.Client, srv.Bucket, key); len(left) != 1 || !strings.Contains(left[0], id) {
		t.Errorf("leftovers = %v, want upload %s", left, id)
	}
}

// Put records the SHA-256 when the object fits one part, and says nothing
// rather than something wrong when it does not.
func TestS3StatSHA256AndOptions(t *testing.T) {
	srv := testenv.MinIO(t)
	s := newS3(t, S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Bucket: srv.Bucket, Region: "us-east-1", PartSize: MinPartSize})
	ctx := context.Background()
	opts := PutOptions{ContentType: "application/xml", Metadata: map[string]string{"run": "r1", "sha256": "forged"}}
	for _, size := range []int64{1000, MinPartSize + 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			key := fmt.Sprintf("k%d", size)
			want := sumOf(t, 5, size)
			if _, err := s.Put(ctx, key, stream(5, size), opts); err != nil {
				t.Fatal(err)
			}
			st, err := s.Stat(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if single := size < MinPartSize; single && st.SHA256 != want || !single && st.SHA256 != "" {
				t.Errorf("Stat SHA256 = %q; want %q for one part, none for more", st.SHA256, want)
			}
			info, err := srv.Client.StatObject(ctx, srv.Bucket, key, minio.StatObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if info.ContentType != "application/xml" || info.UserMetadata["Run"] != "r1" {
				t.Errorf("content type %q, metadata %v; want application/xml and Run=r1", info.ContentType, info.UserMetadata)
			}
			if v, ok := info.UserMetadata["Sha256"]; ok && v != want {
				t.Errorf("x-amz-meta-sha256 = %q, want %q (or none)", v, want)
			}
		})
	}
}

// Bad bucket, bad credentials, bad TLS settings stop the fleet, with a
// message that names the bucket and endpoint and never a key.
func TestS3FleetWide(t *testing.T) {
	srv := testenv.MinIO(t)
	good := S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Bucket: srv.Bucket, Region: "us-east-1", PartSize: MinPartSize, MaxRetries: 1}
	wrongSecret := "wrong-" + srv.SecretKey[:10]
	cases := []struct {
		name string
		edit func(*S3Config)
	}{
		{"missing bucket", func(c *S3Config) { c.Bucket = "no-such-bucket-" + strings.ToLower(srv.Bucket[2:12]) }},
		{"wrong secret key", func(c *S3Config) { c.SecretKey = wrongSecret }},
		{"unknown access key", func(c *S3Config) { c.AccessKey = "nobody-" + srv.AccessKey }},
		{"TLS to a plain HTTP endpoint", func(c *S3Config) { c.Secure = true }},
		{"nothing listening at the endpoint", func(c *S3Config) { c.Endpoint = closedPort(t) }},
		{"endpoint name that does not resolve", func(c *S3Config) { c.Endpoint = "no-such-host.invalid:9000" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			s := newS3(t, cfg)
			ctx := context.Background()
			check := func(op string, err error) {
				t.Helper()
				if c := failure.ClassOf(err); c != failure.ClassFleetWide {
					t.Fatalf("%s: class %v (%v), want fleet-wide", op, c, err)
				}
				msg := err.Error()
				if !strings.Contains(msg, cfg.Bucket) || !strings.Contains(msg, cfg.Endpoint) {
					t.Errorf("%s: %q does not name bucket %s and endpoint %s", op, msg, cfg.Bucket, cfg.Endpoint)
				}
				for _, key := range []string{srv.SecretKey, wrongSecret, srv.AccessKey} {
					if strings.Contains(msg, key) {
						t.Errorf("%s: the message holds a key: %q", op, msg)
					}
				}
			}
			check("Check", s.Check(ctx))
			_, err := s.Put(ctx, "small", strings.NewReader("x"), PutOptions{})
			check("Put one part", err)
			_, err = s.Put(ctx, "large", stream(1, MinPartSize+1), PutOptions{})
			check("Put parts", err)
			_, err = s.Stat(ctx, "small")
			check("Stat", err)
		})
	}
}

// A store that answers and then fails is worth retrying (one that cannot
// be reached at all is fleet-wide: TestS3FleetWide).
func TestS3Retryable(t *testing.T) {
	resetting := resettingServer(t)
	for _, tc := range []struct{ name, endpoint string }{
		{"connection reset", resetting},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newS3(t, S3Config{Endpoint: tc.endpoint, AccessKey: "a", SecretKey: "secret-b",
				Bucket: "bkt", Region: "us-east-1", MaxRetries: 1})
			ctx := context.Background()
			if err := s.Check(ctx); failure.ClassOf(err) != failure.ClassRetryable {
				t.Errorf("Check = %v, want retryable", err)
			}
			if _, err := s.Put(ctx, "k", strings.NewReader("x"), PutOptions{}); failure.ClassOf(err) != failure.ClassRetryable {
				t.Errorf("Put = %v, want retryable", err)
			}
			for _, err := range s.List(ctx, "") {
				if failure.ClassOf(err) != failure.ClassRetryable {
					t.Errorf("List = %v, want retryable", err)
				}
			}
		})
	}
}

func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// resettingServer accepts connections and drops them unanswered.
func resettingServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0) // RST, not FIN
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

// Stopping MinIO makes calls fleet-wide (nothing answers: the fleet pauses
// rather than charge batches), and they work again once it is back; a Put
// cut off by the outage leaves no object.
func TestS3EndpointStopped(t *testing.T) {
	p := testenv.DedicatedMinIO(t)
	client, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := client.MakeBucket(ctx, "bkt", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	s := newS3(t, S3Config{Endpoint: p.Endpoint, AccessKey: p.AccessKey, SecretKey: p.SecretKey,
		Bucket: "bkt", Region: "us-east-1", PartSize: MinPartSize, MaxRetries: 1})

	// The outage starts while the second part is being read.
	var stopErr error
	r := &hookReader{r: stream(1, 3*MinPartSize), at: MinPartSize + 1, hook: func() { stopErr = p.Stop() }}
	_, err = s.Put(ctx, "k", r, PutOptions{})
	if stopErr != nil {
		t.Fatal(stopErr)
	}
	if failure.ClassOf(err) != failure.ClassFleetWide {
		t.Errorf("Put during the outage = %v, want fleet-wide", err)
	}
	if err := s.Check(ctx); failure.ClassOf(err) != failure.ClassFleetWide {
		t.Errorf("Check while stopped = %v, want fleet-wide", err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Errorf("Check once back: %v", err)
	}
	if _, err := s.Stat(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat = %v, want ErrNotFound", err)
	}
	// The abort could not reach the store; what is left is for a bucket
	// lifecycle rule on incomplete uploads. Reported, not asserted.
	t.Logf("incomplete uploads after the outage: %v", incompleteUploads(t, client, "bkt", "k"))
}

// hookReader calls hook once at byte at, then reads on.
type hookReader struct {
	r    io.Reader
	at   int64
	hook func()
}

func (h *hookReader) Read(p []byte) (int, error) {
	if h.hook != nil && h.at <= 0 {
		h.hook()
		h.hook = nil
	}
	if h.hook != nil && int64(len(p)) > h.at {
		p = p[:h.at]
	}
	n, err := h.r.Read(p)
	h.at -= int64(n)
	return n, err
}

// S3 answers by class, through a server that answers every request alike.
func TestS3ErrorClasses(t *testing.T) {
	cases := []struct {
		status int
		code   string
		want   failure.Class
	}{
		{503, "SlowDown", failure.ClassRetryable},
		{500, "InternalError", failure.ClassRetryable},
		{502, "", failure.ClassRetryable},
		{429, "", failure.ClassRetryable},
		{403, "AccessDenied", failure.ClassFleetWide},
		{403, "SignatureDoesNotMatch", failure.ClassFleetWide},
		{400, "ExpiredToken", failure.ClassFleetWide},
		{400, "InvalidAccessKeyId", failure.ClassFleetWide},
		{301, "PermanentRedirect", failure.ClassFleetWide},
		{404, "NoSuchBucket", failure.ClassFleetWide},
		{400, "SomethingNew", failure.ClassFleetWide},
		{404, "NoSuchKey", failure.ClassUnknown},
		{404, "NoSuchUpload", failure.ClassRetryable},
		// Get sends no condition: a refusal is an answer we do not
		// expect (TestS3ConditionRefusals has Put's).
		{412, "PreconditionFailed", failure.ClassFleetWide},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.code), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(tc.status)
				if tc.code != "" {
					fmt.Fprintf(w, "<Error><Code>%s</Code><Message>test</Message></Error>", tc.code)
				}
			}))
			defer srv.Close()
			s := newS3(t, S3Config{Endpoint: srv.Listener.Addr().String(), AccessKey: "a", SecretKey: "secret-b",
				Bucket: "bkt", Region: "us-east-1", MaxRetries: 1})
			_, err := s.Get(context.Background(), "k")
			if err == nil {
				t.Fatal("Get succeeded")
			}
			if c := failure.ClassOf(err); c != tc.want {
				t.Errorf("class %v (%v), want %v", c, err, tc.want)
			}
			if tc.code == "NoSuchKey" && !errors.Is(err, ErrNotFound) {
				t.Errorf("%v, want ErrNotFound", err)
			}
			if tc.code == "NoSuchUpload" && !errors.Is(err, ErrUploadGone) {
				t.Errorf("%v, want ErrUploadGone", err)
			}
			if errors.Is(err, ErrExists) || errors.Is(err, ErrChanged) {
				t.Errorf("%v: a refused condition, but Get sent none", err)
			}
		})
	}
}

func TestS3TLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	srv.StartTLS()
	defer srv.Close()
	endpoint := srv.Listener.Addr().String()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := S3Config{Endpoint: endpoint, Secure: true, AccessKey: "a", SecretKey: "secret-b", Bucket: "bkt",
		Region: "us-east-1", MaxRetries: 1}

	err := newS3(t, cfg).Check(context.Background())
	if failure.ClassOf(err) != failure.ClassFleetWide || !strings.Contains(err.Error(), endpoint) {
		t.Errorf("unknown CA: %v, want fleet-wide naming %s", err, endpoint)
	}
	cfg.CAFile = caFile
	if err := newS3(t, cfg).Check(context.Background()); err != nil {
		t.Errorf("with the CA file: %v", err)
	}
	cfg.Secure, cfg.CAFile = false, ""
	if err := newS3(t, cfg).Check(context.Background()); failure.ClassOf(err) != failure.ClassFleetWide {
		t.Errorf("plain HTTP to a TLS endpoint: %v, want fleet-wide", err)
	}
}

// With no keys configured, credentials come from the environment (and IAM).
func TestS3CredentialChain(t *testing.T) {
	srv := testenv.MinIO(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	s := newS3(t, S3Config{Endpoint: srv.Endpoint, Bucket: srv.Bucket, Region: "us-east-1"})
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if _, err := s.Put(context.Background(), "k", strings.NewReader("x"), PutOptions{}); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

func TestS3ConfigHidesSecret(t *testing.T) {
	cfg := S3Config{Endpoint: "h:1", AccessKey: "AKIA-id", SecretKey: "s3cr3t-value", Bucket: "bkt"}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(format, cfg)
		if strings.Contains(out, cfg.SecretKey) || strings.Contains(out, cfg.AccessKey) || !strings.Contains(out, "h:1") {
			t.Errorf("%s: %s", format, out)
		}
	}
	s := newS3(t, cfg)
	if d := s.Describe(); d != "s3://h:1/bkt" {
		t.Errorf("Describe = %q", d)
	}
}

func TestNewS3Rejects(t *testing.T) {
	good := S3Config{Endpoint: "h:1", AccessKey: "a", SecretKey: "secret-b", Bucket: "bkt"}
	cases := map[string]func(*S3Config){
		"no endpoint":      func(c *S3Config) { c.Endpoint = "" },
		"scheme":           func(c *S3Config) { c.Endpoint = "https://h:1" },
		"no bucket":        func(c *S3Config) { c.Bucket = "" },
		"bad bucket name":  func(c *S3Config) { c.Bucket = "ab" },
		"only access key":  func(c *S3Config) { c.SecretKey = "" },
		"only secret key":  func(c *S3Config) { c.AccessKey = "" },
		"part too small":   func(c *S3Config) { c.PartSize = MinPartSize - 1 },
		"part too large":   func(c *S3Config) { c.PartSize = MaxPartSize + 1 },
		"missing CA file":  func(c *S3Config) { c.Secure, c.CAFile = true, "/nonexistent/ca.pem" },
		"CA without TLS":   func(c *S3Config) { c.CAFile = writeFile(t, "ca.pem", testCA(t)) },
		"CA file, not PEM": func(c *S3Config) { c.Secure, c.CAFile = true, writeFile(t, "ca.pem", "junk") },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := good
			edit(&cfg)
			_, err := NewS3(cfg)
			if err == nil {
				t.Fatal("NewS3 accepted it")
			}
			if strings.Contains(err.Error(), "secret-b") {
				t.Errorf("error holds the secret: %v", err)
			}
		})
	}
	if _, err := NewS3(good); err != nil {
		t.Errorf("good config: %v", err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func testCA(t *testing.T) string {
	t.Helper()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}

// TestS3ReaderSeeks: a Get's reader seeks from the start by asking for the
// object again from that byte (a Parquet footer is read alone), and refuses
// to mix in the bytes of an object that replaced the one it began reading.
func TestS3ReaderSeeks(t *testing.T) {
	srv := testenv.MinIO(t)
	s := newS3(t, S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Bucket: srv.Bucket, Region: "us-east-1", PartSize: MinPartSize})
	ctx := context.Background()
	body := []byte("0123456789abcdefghij")
	if _, err := s.Put(ctx, "seek", bytes.NewReader(body), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, "seek")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	sk, ok := rc.(io.ReadSeeker)
	if !ok {
		t.Fatalf("the S3 reader %T does not seek", rc)
	}
	for _, off := range []int64{12, 0, 19} {
		if _, err := sk.Seek(off, io.SeekStart); err != nil {
			t.Fatalf("seek to %d: %v", off, err)
		}
		got, err := io.ReadAll(sk)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, body[off:]) {
			t.Fatalf("from byte %d read %q, want %q", off, got, body[off:])
		}
	}
	if _, err := s.Put(ctx, "seek", strings.NewReader("replaced"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sk.Seek(4, io.SeekStart); err == nil {
		t.Fatal("a seek after the object was replaced read the new object's bytes")
	}
}
