package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/qfetch/qfetch/internal/failure"
)

// subject is one store under test with a way to see what a failed Put may
// have left behind: an incomplete multipart upload, a temporary file.
type subject struct {
	s store
	// part is the size at which the store changes strategy (S3: one part).
	part int64
	// leftovers lists the traces of unfinished writes of key.
	leftovers func(t *testing.T, key string) []string
}

// TestConformance runs one suite against both stores (style.md item 12).
func TestConformance(t *testing.T) {
	impls := []struct {
		name  string
		setup func(t *testing.T) subject
	}{
		{"dir", setupDir},
		{"s3", setupS3},
	}
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) {
			t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, impl.setup(t)) })
			t.Run("FailingReader", func(t *testing.T) { testFailingReader(t, impl.setup(t)) })
			t.Run("FailedOverwriteKeepsOld", func(t *testing.T) { testFailedOverwrite(t, impl.setup(t)) })
			t.Run("Cancel", func(t *testing.T) { testCancel(t, impl.setup(t)) })
			t.Run("NotFound", func(t *testing.T) { testNotFound(t, impl.setup(t)) })
			t.Run("List", func(t *testing.T) { testList(t, impl.setup(t)) })
			t.Run("Delete", func(t *testing.T) { testDelete(t, impl.setup(t)) })
			t.Run("Check", func(t *testing.T) { testCheck(t, impl.setup(t)) })
			t.Run("InvalidKeys", func(t *testing.T) { testInvalidKeys(t, impl.setup(t)) })
			t.Run("ConcurrentOverwrite", func(t *testing.T) { testConcurrentOverwrite(t, impl.setup(t)) })
			t.Run("UploadRoundTrip", func(t *testing.T) { testUploadRoundTrip(t, impl.setup(t)) })
			t.Run("UploadFailingReader", func(t *testing.T) { testUploadFailingReader(t, impl.setup(t)) })
			t.Run("UploadAbortBeforeComplete", func(t *testing.T) { testUploadAbortBefore(t, impl.setup(t)) })
			t.Run("UploadAbortDuringComplete", func(t *testing.T) { testUploadAbortDuring(t, impl.setup(t)) })
			t.Run("UploadAbortAfterComplete", func(t *testing.T) { testUploadAbortAfter(t, impl.setup(t)) })
			t.Run("UploadInvalid", func(t *testing.T) { testUploadInvalid(t, impl.setup(t)) })
			t.Run("AbortUploads", func(t *testing.T) { testAbortUploads(t, impl.setup(t)) })
			t.Run("IfAbsent", func(t *testing.T) { testIfAbsent(t, impl.setup(t)) })
			t.Run("IfMatch", func(t *testing.T) { testIfMatch(t, impl.setup(t)) })
			t.Run("IfMatchAndIfAbsent", func(t *testing.T) { testIfMatchAndIfAbsent(t, impl.setup(t)) })
			t.Run("CompareAndSet", func(t *testing.T) { testCompareAndSet(t, impl.setup(t)) })
		})
	}
}

func testRoundTrip(t *testing.T, sub subject) {
	ctx := context.Background()
	sizes := []int64{0, 1, 100 << 10, sub.part - 1, sub.part, 2*sub.part + 7}
	for i, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			key := DetectionKey("q", "r1", i+1, 1)
			want := sumOf(t, uint64(i), size)
			obj, err := sub.s.Put(ctx, key, stream(uint64(i), size), PutOptions{ContentType: "application/xml"})
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if obj.Key != key || obj.Bytes != size || obj.SHA256 != want {
				t.Errorf("Put = %+v, want key %s, size %d, sha256 %s", obj, key, size, want)
			}
			if got := getSum(t, sub.s, key); got != want {
				t.Errorf("Get: sha256 %s, want %s", got, want)
			}
			st, err := sub.s.Stat(ctx, key)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if st.Key != key || st.Bytes != size || (st.SHA256 != "" && st.SHA256 != want) {
				t.Errorf("Stat = %+v, want key %s, size %d, sha256 %s or none", st, key, size, want)
			}
			if left := sub.leftovers(t, key); len(left) > 0 {
				t.Errorf("after a good Put, left behind: %v", left)
			}
		})
	}
}

func testFailingReader(t *testing.T, sub subject) {
	ctx := context.Background()
	cases := []struct {
		name string
		at   int64 // bytes before the failure
		then error // what the reader says after it
	}{
		{"at once", 0, nil},
		{"in the first part", 1000, nil},
		{"after several parts", 2*sub.part + sub.part/2, nil},
		// The failure comes with the bytes that fill a part, and the reader
		// says EOF afterwards: a store that only looked at the next read
		// would complete a truncated object.
		{"with a part's last bytes, then EOF", 2 * sub.part, io.EOF},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := DetectionKey("q", "r1", i+1, 1)
			cause := failure.Retryable(errors.New("response cut short"))
			then := orErr(tc.then, cause)
			_, err := sub.s.Put(ctx, key, &cutReader{r: stream(1, 4*sub.part), left: tc.at, err: cause, then: then}, PutOptions{})
			if err != cause {
				t.Fatalf("Put error = %v, want the reader's error unchanged", err)
			}
			if c := failure.ClassOf(err); c != failure.ClassRetryable {
				t.Errorf("class %v, want retryable", c)
			}
			if _, err := sub.s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Stat after a failed Put: %v, want ErrNotFound", err)
			}
			if left := sub.leftovers(t, key); len(left) > 0 {
				t.Errorf("failed Put left behind: %v", left)
			}
		})
	}
}

func orErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func testFailedOverwrite(t *testing.T, sub subject) {
	ctx := context.Background()
	for _, at := range []int64{1000, 2*sub.part + 1} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			key := HostListPageKey("q", "r1", len(fmt.Sprint(at)))
			old := sumOf(t, 7, 5000)
			if _, err := sub.s.Put(ctx, key, stream(7, 5000), PutOptions{}); err != nil {
				t.Fatalf("Put old: %v", err)
			}
			cause := failure.Permanent(errors.New("error document in the body"))
			if _, err := sub.s.Put(ctx, key, &cutReader{r: stream(8, 4*sub.part), left: at, err: cause, then: cause}, PutOptions{}); err != cause {
				t.Fatalf("Put new = %v, want the reader's error", err)
			}
			if got := getSum(t, sub.s, key); got != old {
				t.Errorf("after a failed overwrite the object has sha256 %s, want the old %s", got, old)
			}
			if st, err := sub.s.Stat(ctx, key); err != nil || st.Bytes != 5000 {
				t.Errorf("Stat = %+v, %v; want the old size 5000", st, err)
			}
			if left := sub.leftovers(t, key); len(left) > 0 {
				t.Errorf("failed Put left behind: %v", left)
			}
		})
	}
}

func testCancel(t *testing.T, sub subject) {
	t.Run("before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		key := SuccessKey("q", "r1")
		if _, err := sub.s.Put(ctx, key, strings.NewReader("x"), PutOptions{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Put = %v, want context.Canceled", err)
		}
		if _, err := sub.s.Stat(context.Background(), key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Stat = %v, want ErrNotFound", err)
		}
	})
	for _, at := range []int64{100, sub.part + sub.part/2} {
		t.Run(fmt.Sprintf("after %d bytes", at), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			key := DetectionKey("q", "r1", 1, 2)
			r := &cancelReader{r: stream(3, 3*sub.part), left: at, cancel: cancel}
			if _, err := sub.s.Put(ctx, key, r, PutOptions{}); !errors.Is(err, context.Canceled) {
				t.Fatalf("Put = %v, want context.Canceled", err)
			}
			if _, err := sub.s.Stat(context.Background(), key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Stat = %v, want ErrNotFound", err)
			}
			if left := sub.leftovers(t, key); len(left) > 0 {
				t.Errorf("cancelled Put left behind: %v", left)
			}
		})
	}
}

func testNotFound(t *testing.T, sub subject) {
	ctx := context.Background()
	key := ManifestKey("q", "nope")
	_, err := sub.s.Stat(ctx, key)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat = %v, want ErrNotFound", err)
	}
	if c := failure.ClassOf(err); c != failure.ClassUnknown {
		t.Errorf("Stat: class %v; a missing object is for the caller to judge", c)
	}
	if rc, err := sub.s.Get(ctx, key); !errors.Is(err, ErrNotFound) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("Get = %v, want ErrNotFound", err)
	}
	// A "directory" is not an object either.
	if _, err := sub.s.Put(ctx, "q/runs/r1/hostlist/page-000001.xml", strings.NewReader("x"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.s.Stat(ctx, "q/runs/r1/hostlist"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat of a prefix = %v, want ErrNotFound", err)
	}
	if rc, err := sub.s.Get(ctx, "q/runs/r1"); !errors.Is(err, ErrNotFound) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("Get of a prefix = %v, want ErrNotFound", err)
	}
}

func testList(t *testing.T, sub subject) {
	ctx := context.Background()
	keys := []string{ // all byte orders that a per-directory walk gets wrong
		"a/c/d", "a0", "b", "a-b", "a/b", "runs/r10/y", "runs/r1/x", "runs/r1/detections/batch-000002.xml",
		"runs/r1/detections/batch-000001.xml", "runs/r1/detections/batch-a1000000.xml", "runs/r1/detections/batch-000001-p0002.xml",
	}
	for i, k := range keys {
		if _, err := sub.s.Put(ctx, k, bytes.NewReader(make([]byte, i)), PutOptions{}); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
	}
	sorted := slices.Sorted(slices.Values(keys))
	sizeOf := map[string]int64{}
	for i, k := range keys {
		sizeOf[k] = int64(i)
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", sorted},
		{"a", []string{"a-b", "a/b", "a/c/d", "a0"}},
		{"a/", []string{"a/b", "a/c/d"}},
		{"a/c", []string{"a/c/d"}},
		{"runs/r1/", []string{"runs/r1/detections/batch-000001-p0002.xml", "runs/r1/detections/batch-000001.xml",
			"runs/r1/detections/batch-000002.xml", "runs/r1/detections/batch-a1000000.xml", "runs/r1/x"}},
		{"runs/r1/detections/batch-00000", []string{"runs/r1/detections/batch-000001-p0002.xml",
			"runs/r1/detections/batch-000001.xml", "runs/r1/detections/batch-000002.xml"}},
		{"runs/r", []string{"runs/r1/detections/batch-000001-p0002.xml", "runs/r1/detections/batch-000001.xml",
			"runs/r1/detections/batch-000002.xml", "runs/r1/detections/batch-a1000000.xml", "runs/r1/x", "runs/r10/y"}},
		{"zzz", nil},
		{"b/", nil},
		{"nope/deeper/", nil},
	}
	for _, tc := range cases {
		t.Run(tc.prefix, func(t *testing.T) {
			var got []string
			for o, err := range sub.s.List(ctx, tc.prefix) {
				if err != nil {
					t.Fatalf("List: %v", err)
				}
				if o.Bytes != sizeOf[o.Key] {
					t.Errorf("%s: size %d, want %d", o.Key, o.Bytes, sizeOf[o.Key])
				}
				got = append(got, o.Key)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("List(%q) =\n%q\nwant\n%q", tc.prefix, got, tc.want)
			}
		})
	}
	t.Run("break", func(t *testing.T) {
		var got []string
		for o, err := range sub.s.List(ctx, "") {
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if got = append(got, o.Key); len(got) == 2 {
				break
			}
		}
		if !slices.Equal(got, sorted[:2]) {
			t.Errorf("first two = %q, want %q", got, sorted[:2])
		}
	})
}

func testDelete(t *testing.T, sub subject) {
	ctx := context.Background()
	key := StatusKey("q", "r1")
	if _, err := sub.s.Put(ctx, key, strings.NewReader("{}"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := sub.s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := sub.s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat after Delete = %v, want ErrNotFound", err)
	}
	if err := sub.s.Delete(ctx, key); err != nil {
		t.Errorf("Delete of a missing key: %v, want nil", err)
	}
	if err := sub.s.Delete(ctx, "q/runs/r1"); err != nil {
		t.Errorf("Delete of a prefix: %v, want nil", err)
	}
}

func testCheck(t *testing.T, sub subject) {
	if err := sub.s.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if d := sub.s.Describe(); d == "" {
		t.Error("Describe is empty")
	}
}

func testInvalidKeys(t *testing.T, sub subject) {
	ctx := context.Background()
	keys := []string{"", "/a", "a/", "a//b", "..", "../a", "a/../b", "./a", ".hidden", "a/.tmp-x",
		"a\x00b", "a\nb", "\xff", strings.Repeat("k", MaxKeyLen+1)}
	for _, key := range keys {
		t.Run(fmt.Sprintf("%.20q", key), func(t *testing.T) {
			check := func(op string, err error) {
				t.Helper()
				if !errors.Is(err, ErrInvalidKey) || failure.ClassOf(err) != failure.ClassPermanent {
					t.Errorf("%s: %v, want a permanent ErrInvalidKey", op, err)
				}
			}
			_, err := sub.s.Put(ctx, key, strings.NewReader("x"), PutOptions{})
			check("Put", err)
			_, err = sub.s.Get(ctx, key)
			check("Get", err)
			_, err = sub.s.Stat(ctx, key)
			check("Stat", err)
			check("Delete", sub.s.Delete(ctx, key))
		})
	}
	for _, prefix := range []string{"/", "/a", "a//", "../"} {
		n := 0
		for _, err := range sub.s.List(ctx, prefix) {
			n++
			if !errors.Is(err, ErrInvalidKey) {
				t.Errorf("List(%q): %v, want ErrInvalidKey", prefix, err)
			}
		}
		if n != 1 {
			t.Errorf("List(%q) yielded %d times, want one error", prefix, n)
		}
	}
}

// Writers racing on one key (a redelivered batch and its first delivery)
// leave one of their objects, whole.
func testConcurrentOverwrite(t *testing.T, sub subject) {
	ctx := context.Background()
	key := DetectionKey("q", "r1", 9, 1)
	const writers = 4
	size := sub.part + 1000 // multipart for S3
	want := map[string]bool{}
	for i := range writers {
		want[sumOf(t, uint64(100+i), size)] = true
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			_, errs[i] = sub.s.Put(ctx, key, stream(uint64(100+i), size), PutOptions{})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if got := getSum(t, sub.s, key); !want[got] {
		t.Errorf("object has sha256 %s, which no writer wrote", got)
	}
}
