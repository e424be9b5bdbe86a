package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/testenv"
)

// A conditional Put that fails for a reason other than its condition keeps
// that reason's class: only a 412, or a 404 NoSuchKey to an If-Match, is
// a refusal. A missing bucket or refused credentials stay fleet-wide, an
// outage retryable; none of them is ErrChanged, which updateLatest would
// take for "read again".
func TestReview19ConditionalPutOtherAnswers(t *testing.T) {
	cases := []struct {
		status int
		code   string // "": no body (minio-go makes up the code)
		opts   PutOptions
		want   error // wrapped; nil: none of the sentinels
		class  failure.Class
	}{
		{404, "NoSuchBucket", PutOptions{IfMatch: "abc"}, nil, failure.ClassFleetWide},
		{404, "NoSuchBucket", PutOptions{IfAbsent: true}, nil, failure.ClassFleetWide},
		{403, "AccessDenied", PutOptions{IfMatch: "abc"}, nil, failure.ClassFleetWide},
		{503, "SlowDown", PutOptions{IfMatch: "abc"}, nil, failure.ClassRetryable},
		{500, "InternalError", PutOptions{IfMatch: "abc"}, nil, failure.ClassRetryable},
		// Without a body minio-go names a 404 of a key NoSuchKey: for an
		// If-Match that is the refusal of some services.
		{404, "", PutOptions{IfMatch: "abc"}, ErrChanged, failure.ClassPermanent},
		// For IfAbsent a missing key is no refusal: never ErrExists.
		{404, "NoSuchKey", PutOptions{IfAbsent: true}, ErrNotFound, failure.ClassUnknown},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d %q %+v", tc.status, tc.code, tc.opts), func(t *testing.T) {
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
			_, err := s.Put(context.Background(), "k", strings.NewReader("x"), tc.opts)
			if err == nil {
				t.Fatal("Put succeeded")
			}
			if c := failure.ClassOf(err); c != tc.class {
				t.Errorf("class %v (%v), want %v", c, err, tc.class)
			}
			for _, sentinel := range []error{ErrExists, ErrChanged, ErrNotFound} {
				if errors.Is(err, sentinel) != (sentinel == tc.want) {
					t.Errorf("%v: errors.Is %v = %t, want %t", err, sentinel, errors.Is(err, sentinel), sentinel == tc.want)
				}
			}
		})
	}
}

// A seek of an S3 reader after its object was replaced or removed fails
// with a permanent ErrChanged (never the new object's bytes), and the
// reader's ETag stays that of the object it read.
func TestReview19SeekAfterChange(t *testing.T) {
	srv := testenv.MinIO(t)
	s := newS3(t, S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Bucket: srv.Bucket, Region: "us-east-1", PartSize: MinPartSize})
	ctx := context.Background()
	for name, change := range map[string]func(key string) error{
		"replaced": func(key string) error {
			_, err := s.Put(ctx, key, strings.NewReader("replaced"), PutOptions{})
			return err
		},
		"deleted": func(key string) error { return s.Delete(ctx, key) },
	} {
		t.Run(name, func(t *testing.T) {
			key := "seek-" + name
			put, err := s.Put(ctx, key, strings.NewReader("0123456789"), PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			rc, err := s.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if err := change(key); err != nil {
				t.Fatal(err)
			}
			_, err = rc.(io.Seeker).Seek(3, io.SeekStart)
			if !errors.Is(err, ErrChanged) || failure.ClassOf(err) != failure.ClassPermanent {
				t.Errorf("Seek after the object was %s = %v (class %v), want a permanent ErrChanged", name, err, failure.ClassOf(err))
			}
			if tag, err := ETag(rc); err != nil || tag != put.ETag {
				t.Errorf("ETag after the failed seek = %q, %v; want %q", tag, err, put.ETag)
			}
		})
	}
}

// ETag is asked of a Get's reader before it is read and after it is read
// whole: the same tag; after Close it is an error on both stores alike.
// Before, S3's reader answered after Close and the directory's failed
// ("file already closed"): a caller that asked after closing worked on
// MinIO, in every fleet test, and failed only in qfetch local.
func TestReview19ETagWhenever(t *testing.T) {
	for _, impl := range []struct {
		name  string
		setup func(t *testing.T) subject
	}{{"dir", setupDir}, {"s3", setupS3}} {
		t.Run(impl.name, func(t *testing.T) {
			sub := impl.setup(t)
			ctx := context.Background()
			obj, err := sub.s.Put(ctx, "q/latest.json", strings.NewReader(`{"run":"r"}`), PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, when := range []string{"unread", "read", "asked, then closed", "closed"} {
				rc, err := sub.s.Get(ctx, "q/latest.json")
				if err != nil {
					t.Fatal(err)
				}
				if when != "unread" {
					if _, err = io.ReadAll(rc); err != nil {
						t.Fatal(err)
					}
				}
				if when == "asked, then closed" {
					if _, err := ETag(rc); err != nil {
						t.Fatal(err)
					}
				}
				if strings.HasSuffix(when, "closed") {
					rc.Close()
				}
				tag, err := ETag(rc)
				rc.Close()
				switch {
				case strings.HasSuffix(when, "closed"):
					if !errors.Is(err, errETagClosed) {
						t.Errorf("%s: ETag = %q, %v; want the error of a closed reader", when, tag, err)
					}
				case err != nil || strings.Trim(tag, `"`) != strings.Trim(obj.ETag, `"`):
					t.Errorf("%s: ETag = %q, %v; want %q", when, tag, err, obj.ETag)
				}
			}
		})
	}
}
