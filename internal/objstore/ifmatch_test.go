package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/qfetch/qfetch/internal/failure"
)

// etagOf is the ETag of key as a Get's reader gives it.
func etagOf(t *testing.T, s store, key string) string {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	tag, err := ETag(rc)
	if err != nil || tag == "" {
		t.Fatalf("ETag of Get(%q) = %q, %v", key, tag, err)
	}
	return tag
}

// testIfMatch: a Put with IfMatch replaces the object only if the key holds
// the object with that ETag; otherwise it stores nothing and fails with a
// permanent ErrChanged. On S3 the condition travels on the PUT (small) and on
// the multipart upload's completion (large), and MinIO enforces both.
func testIfMatch(t *testing.T, sub subject) {
	ctx := context.Background()
	put := func(t *testing.T, key string, seed uint64) Object {
		t.Helper()
		o, err := sub.s.Put(ctx, key, stream(seed, 10), PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	cases := []struct {
		name string
		// prepare fills key and returns the ETag to send.
		prepare func(t *testing.T, key string) (tag string)
		want    error
	}{
		{"current ETag from Get", func(t *testing.T, key string) string {
			put(t, key, 1)
			return etagOf(t, sub.s, key)
		}, nil},
		{"current ETag from Put", func(t *testing.T, key string) string {
			return put(t, key, 1).ETag
		}, nil},
		{"quoted current ETag", func(t *testing.T, key string) string {
			put(t, key, 1)
			return `"` + etagOf(t, sub.s, key) + `"`
		}, nil},
		{"stale ETag", func(t *testing.T, key string) string {
			put(t, key, 1)
			tag := etagOf(t, sub.s, key)
			put(t, key, 2)
			return tag
		}, ErrChanged},
		{"reader opened before a replace", func(t *testing.T, key string) string {
			put(t, key, 1)
			rc, err := sub.s.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			put(t, key, 2)
			tag, err := ETag(rc) // the object this reader reads, not the key's new one
			if err != nil {
				t.Fatal(err)
			}
			return tag
		}, ErrChanged},
		{"made-up ETag", func(t *testing.T, key string) string {
			put(t, key, 1)
			return "0123456789abcdef0123456789abcdef"
		}, ErrChanged},
		{"missing key", func(t *testing.T, key string) string {
			other := key + ".other"
			put(t, other, 1)
			return etagOf(t, sub.s, other)
		}, ErrChanged},
		{"deleted key", func(t *testing.T, key string) string {
			put(t, key, 1)
			tag := etagOf(t, sub.s, key)
			if err := sub.s.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
			return tag
		}, ErrChanged},
	}
	for _, size := range []int64{10, sub.part + 7} {
		for i, tc := range cases {
			t.Run(fmt.Sprintf("%d/%s", size, tc.name), func(t *testing.T) {
				key := RunPrefix("q", fmt.Sprint("r", i)) + "latest-" + strconv.FormatInt(size, 10) + ".json"
				tag := tc.prepare(t, key)
				before := ""
				if _, err := sub.s.Stat(ctx, key); err == nil {
					before = getSum(t, sub.s, key)
				}
				obj, err := sub.s.Put(ctx, key, stream(3, size), PutOptions{IfMatch: tag})
				if tc.want == nil {
					if err != nil {
						t.Fatalf("Put IfMatch: %v", err)
					}
					if got, want := getSum(t, sub.s, key), sumOf(t, 3, size); got != want || obj.SHA256 != want {
						t.Errorf("object has sha256 %s (Put said %s), want %s", got, obj.SHA256, want)
					}
					if got := etagOf(t, sub.s, key); obj.ETag != got {
						t.Errorf("Put returned ETag %q, Get gives %q", obj.ETag, got)
					}
					return
				}
				if !errors.Is(err, tc.want) || errors.Is(err, ErrExists) || failure.ClassOf(err) != failure.ClassPermanent {
					t.Fatalf("Put IfMatch = %v (class %v), want a permanent %v", err, failure.ClassOf(err), tc.want)
				}
				if before == "" {
					if _, err := sub.s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
						t.Errorf("refused Put left an object: Stat = %v", err)
					}
				} else if got := getSum(t, sub.s, key); got != before {
					t.Errorf("refused Put changed the object: sha256 %s, was %s", got, before)
				}
				if left := sub.leftovers(t, key); len(left) > 0 {
					t.Errorf("refused Put left behind: %v", left)
				}
			})
		}
	}
}

// testIfMatchAndIfAbsent: the two conditions exclude each other, and
// IfAbsent's refusal is ErrExists, never ErrChanged.
func testIfMatchAndIfAbsent(t *testing.T, sub subject) {
	ctx := context.Background()
	key := RunPrefix("q", "r1") + "both.json"
	_, err := sub.s.Put(ctx, key, strings.NewReader("x"), PutOptions{IfAbsent: true, IfMatch: "abc"})
	if err == nil || failure.ClassOf(err) != failure.ClassPermanent {
		t.Errorf("Put with IfAbsent and IfMatch = %v, want a permanent error", err)
	}
	if _, err := sub.s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Put with both conditions stored something: Stat = %v", err)
	}
	if _, err := sub.s.Put(ctx, key, strings.NewReader("x"), PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	_, err = sub.s.Put(ctx, key, strings.NewReader("y"), PutOptions{IfAbsent: true})
	if !errors.Is(err, ErrExists) || errors.Is(err, ErrChanged) {
		t.Errorf("Put IfAbsent over an object = %v, want ErrExists only", err)
	}
	if _, err := ETag(strings.NewReader("x")); err == nil {
		t.Error("ETag of a reader that is not from Get succeeded")
	}
}

// testCompareAndSet: writers that each read a counter, add one and write it
// back with IfMatch (IfAbsent while there is none), reading again when
// refused, lose no increment: the store orders their writes.
func testCompareAndSet(t *testing.T, sub subject) {
	ctx := context.Background()
	key := RunPrefix("q", "r1") + "counter"
	const writers, each = 6, 5
	increment := func() error {
		for {
			opts := PutOptions{IfAbsent: true}
			n := 0
			rc, err := sub.s.Get(ctx, key)
			switch {
			case errors.Is(err, ErrNotFound):
			case err != nil:
				return err
			default:
				b, rerr := io.ReadAll(rc)
				tag, terr := ETag(rc)
				rc.Close()
				if err := errors.Join(rerr, terr); err != nil {
					return err
				}
				if n, err = strconv.Atoi(string(b)); err != nil {
					return err
				}
				opts = PutOptions{IfMatch: tag}
			}
			_, err = sub.s.Put(ctx, key, strings.NewReader(strconv.Itoa(n+1)), opts)
			if errors.Is(err, ErrChanged) || errors.Is(err, ErrExists) {
				continue
			}
			return err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			for range each {
				if errs[i] = increment(); errs[i] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	rc, err := sub.s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != strconv.Itoa(writers*each) {
		t.Errorf("counter = %s, want %d: a conditional write overwrote another", got, writers*each)
	}
}

// A refusal of a condition is classed by the condition sent, through a
// server that answers every request alike.
func TestS3ConditionRefusals(t *testing.T) {
	cases := []struct {
		name   string
		status int
		code   string
		opts   PutOptions
		want   error // wrapped; nil: neither sentinel
		class  failure.Class
	}{
		{"IfAbsent refused", 412, "PreconditionFailed", PutOptions{IfAbsent: true}, ErrExists, failure.ClassPermanent},
		{"IfMatch refused", 412, "PreconditionFailed", PutOptions{IfMatch: "abc"}, ErrChanged, failure.ClassPermanent},
		{"IfMatch on no object", 404, "NoSuchKey", PutOptions{IfMatch: "abc"}, ErrChanged, failure.ClassPermanent},
		{"IfMatch in conflict", 409, "ConditionalRequestConflict", PutOptions{IfMatch: "abc"}, ErrChanged, failure.ClassRetryable},
		{"IfAbsent in conflict", 409, "ConditionalRequestConflict", PutOptions{IfAbsent: true}, nil, failure.ClassRetryable},
		{"no condition sent", 412, "PreconditionFailed", PutOptions{}, nil, failure.ClassFleetWide},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(tc.status)
				fmt.Fprintf(w, "<Error><Code>%s</Code><Message>test</Message></Error>", tc.code)
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
