package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/failure"
)

func testUploadRoundTrip(t *testing.T, sub subject) {
	ctx := context.Background()
	sizes := []int64{0, 1, 100 << 10, sub.part, 2*sub.part + 7}
	for i, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			key := DetectionKey("q", "r1", i+1, 1)
			u, err := sub.s.Begin(ctx, key, PutOptions{ContentType: "application/xml"})
			if err != nil {
				t.Fatalf("Begin: %v", err)
			}
			if u.Key != key || u.ID == "" {
				t.Fatalf("Begin = %+v, want key %s and an ID", u, key)
			}
			if _, err := sub.s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Stat before Complete = %v, want ErrNotFound", err)
			}
			want := sumOf(t, uint64(i), size)
			obj, err := sub.s.Complete(ctx, u, stream(uint64(i), size))
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if obj.Key != key || obj.Bytes != size || obj.SHA256 != want {
				t.Errorf("Complete = %+v, want key %s, size %d, sha256 %s", obj, key, size, want)
			}
			if got := getSum(t, sub.s, key); got != want {
				t.Errorf("Get: sha256 %s, want %s", got, want)
			}
			if st, err := sub.s.Stat(ctx, key); err != nil || st.Bytes != size {
				t.Errorf("Stat = %+v, %v; want size %d", st, err, size)
			}
			if left := sub.leftovers(t, key); len(left) > 0 {
				t.Errorf("after a good Complete, left behind: %v", left)
			}
		})
	}
}

// wantGone checks an error of Complete for an upload that was aborted.
func wantGone(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrUploadGone) || failure.ClassOf(err) != failure.ClassRetryable {
		t.Errorf("Complete = %v (class %v), want a retryable ErrUploadGone", err, failure.ClassOf(err))
	}
}

func testUploadFailingReader(t *testing.T, sub subject) {
	ctx := context.Background()
	cases := []struct {
		name string
		at   int64 // bytes before the failure
		then error // what the reader says after it
	}{
		{"at once", 0, nil},
		{"in the first part", 1000, nil},
		{"after several parts", 2*sub.part + sub.part/2, nil},
		{"with a part's last bytes, then EOF", 2 * sub.part, io.EOF},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := DetectionKey("q", "r1", i+1, 1)
			u, err := sub.s.Begin(ctx, key, PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cause := failure.Retryable(errors.New("response cut short"))
			r := &cutReader{r: stream(1, 4*sub.part), left: tc.at, err: cause, then: orErr(tc.then, cause)}
			if _, err := sub.s.Complete(ctx, u, r); err != cause {
				t.Fatalf("Complete error = %v, want the reader's error unchanged", err)
			}
			if _, err := sub.s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Stat after a failed Complete: %v, want ErrNotFound", err)
			}
			if left := sub.leftovers(t, key); len(left) > 0 {
				t.Errorf("failed Complete left behind: %v", left)
			}
			// The failure aborted the upload: it cannot be completed now.
			_, err = sub.s.Complete(ctx, u, strings.NewReader("late"))
			wantGone(t, err)
			if _, err := sub.s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Stat after a second Complete: %v, want ErrNotFound", err)
			}
		})
	}
}

func testUploadAbortBefore(t *testing.T, sub subject) {
	ctx := context.Background()
	for i, size := range []int64{10, 2*sub.part + 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			key := HostListPageKey("q", "r1", i+1)
			old := sumOf(t, 7, 5000)
			if _, err := sub.s.Put(ctx, key, stream(7, 5000), PutOptions{}); err != nil {
				t.Fatal(err)
			}
			u, err := sub.s.Begin(ctx, key, PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := sub.s.Abort(ctx, u); err != nil {
				t.Fatalf("Abort: %v", err)
			}
			_, err = sub.s.Complete(ctx, u, stream(8, size))
			wantGone(t, err)
			if got := getSum(t, sub.s, key); got != old {
				t.Errorf("after an aborted upload the object has sha256 %s, want the old %s", got, old)
			}
			if left := sub.leftovers(t, key); len(left) > 0 {
				t.Errorf("aborted upload left behind: %v", left)
			}
			if err := sub.s.Abort(ctx, u); err != nil {
				t.Errorf("second Abort: %v, want nil", err)
			}
		})
	}
}

// The takeover aborts while the frozen copy is in the middle of streaming:
// when the copy goes on, nothing lands.
func testUploadAbortDuring(t *testing.T, sub subject) {
	ctx := context.Background()
	for i, at := range []int64{100, sub.part + sub.part/2} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			key := DetectionKey("q", "r1", i+1, 3)
			u, err := sub.s.Begin(ctx, key, PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			g := &gateReader{r: stream(9, 2*sub.part+5), at: at, reached: make(chan struct{}), release: make(chan struct{})}
			aborted := make(chan error, 1)
			go func() {
				<-g.reached
				aborted <- sub.s.Abort(ctx, u)
				close(g.release)
			}()
			_, err = sub.s.Complete(ctx, u, g)
			if err := <-aborted; err != nil {
				t.Fatalf("Abort: %v", err)
			}
			wantGone(t, err)
			if _, err := sub.s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Stat = %v, want ErrNotFound", err)
			}
			if left := sub.leftovers(t, key); len(left) > 0 {
				t.Errorf("aborted upload left behind: %v", left)
			}
		})
	}
}

func testUploadAbortAfter(t *testing.T, sub subject) {
	ctx := context.Background()
	key := ManifestKey("q", "r1")
	u, err := sub.s.Begin(ctx, key, PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := sumOf(t, 3, 3000)
	if _, err := sub.s.Complete(ctx, u, stream(3, 3000)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := sub.s.Abort(ctx, u); err != nil {
			t.Errorf("Abort after Complete: %v, want nil", err)
		}
	}
	if got := getSum(t, sub.s, key); got != want {
		t.Errorf("object has sha256 %s after Abort, want %s", got, want)
	}
	// A completed upload cannot be completed again.
	_, err = sub.s.Complete(ctx, u, stream(4, 3000))
	wantGone(t, err)
	if got := getSum(t, sub.s, key); got != want {
		t.Errorf("object has sha256 %s after a second Complete, want %s", got, want)
	}
}

// An upload record that Begin did not make touches nothing: above all not
// the object at its key.
func testUploadInvalid(t *testing.T, sub subject) {
	ctx := context.Background()
	key := StatusKey("q", "r1")
	if _, err := sub.s.Put(ctx, key, strings.NewReader("{}"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []Upload{{Key: key}, {Key: "../" + key, ID: "x"}, {Key: "", ID: "x"}} {
		if err := sub.s.Abort(ctx, u); failure.ClassOf(err) != failure.ClassPermanent {
			t.Errorf("Abort(%+v) = %v, want permanent", u, err)
		}
		if _, err := sub.s.Complete(ctx, u, strings.NewReader("x")); failure.ClassOf(err) != failure.ClassPermanent {
			t.Errorf("Complete(%+v) = %v, want permanent", u, err)
		}
	}
	if st, err := sub.s.Stat(ctx, key); err != nil || st.Bytes != 2 {
		t.Errorf("Stat = %+v, %v; want the object untouched", st, err)
	}
	if _, err := sub.s.Begin(ctx, "a//b", PutOptions{}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Begin with an invalid key = %v, want ErrInvalidKey", err)
	}
}

func testIfAbsent(t *testing.T, sub subject) {
	ctx := context.Background()
	for i, size := range []int64{10, sub.part + 7} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			key := SuccessKey("q", fmt.Sprint("r", i))
			want := sumOf(t, 11, size)
			obj, err := sub.s.Put(ctx, key, stream(11, size), PutOptions{IfAbsent: true})
			if err != nil {
				t.Fatalf("Put IfAbsent of a new key: %v", err)
			}
			if obj.SHA256 != want || obj.Bytes != size {
				t.Errorf("Put = %+v, want size %d sha256 %s", obj, size, want)
			}
			_, err = sub.s.Put(ctx, key, stream(12, size), PutOptions{IfAbsent: true})
			if !errors.Is(err, ErrExists) || failure.ClassOf(err) != failure.ClassPermanent {
				t.Errorf("Put IfAbsent over an object = %v (class %v), want a permanent ErrExists", err, failure.ClassOf(err))
			}
			if got := getSum(t, sub.s, key); got != want {
				t.Errorf("object has sha256 %s, want the first %s", got, want)
			}
			if left := sub.leftovers(t, key); len(left) > 0 {
				t.Errorf("refused Put left behind: %v", left)
			}
			// Without IfAbsent the object is replaced as ever.
			if _, err := sub.s.Put(ctx, key, stream(12, size), PutOptions{}); err != nil {
				t.Fatal(err)
			}
			if got, want := getSum(t, sub.s, key), sumOf(t, 12, size); got != want {
				t.Errorf("object has sha256 %s after an overwrite, want %s", got, want)
			}
		})
	}
}

// AbortUploads ends every upload open under the folders given (one listing
// for all), and only those: an upload beside them, or under a key that
// merely starts like one, still completes.
func testAbortUploads(t *testing.T, sub subject) {
	ctx := context.Background()
	run := RunPrefix("q", "r1")
	var inside []Upload
	for _, key := range []string{DetectionKey("q", "r1", 1, 1), DetectionKey("q", "r1", 1, 2), DetectionKey("q", "r1", 7, 1),
		run + "hostlist/page-000002.xml"} {
		u, err := sub.s.Begin(ctx, key, PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		inside = append(inside, u)
	}
	var outside []Upload
	for _, key := range []string{DetectionKey("q", "r2", 1, 1), run + "manifest.json", run + "detections-x/a.xml"} {
		u, err := sub.s.Begin(ctx, key, PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		outside = append(outside, u)
	}
	n, err := sub.s.AbortUploads(ctx, run+"detections/", run+"hostlist/")
	if err != nil || n != len(inside) {
		t.Fatalf("AbortUploads = %d, %v; want %d, nil", n, err, len(inside))
	}
	for _, u := range inside {
		_, err := sub.s.Complete(ctx, u, strings.NewReader("late"))
		wantGone(t, err)
	}
	for _, u := range outside {
		if _, err := sub.s.Complete(ctx, u, strings.NewReader("kept")); err != nil {
			t.Errorf("Complete of %s outside the folder: %v", u.Key, err)
		}
	}
	if n, err := sub.s.AbortUploads(ctx, run+"detections/"); err != nil || n != 0 {
		t.Errorf("AbortUploads again = %d, %v; want 0, nil", n, err)
	}
	if n, err := sub.s.AbortUploads(ctx, RunPrefix("q", "none")+"detections/"); err != nil || n != 0 {
		t.Errorf("AbortUploads of an empty folder = %d, %v; want 0, nil", n, err)
	}
	if _, err := sub.s.AbortUploads(ctx, run+"hostlist/", run+"detections"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("AbortUploads of a prefix that is no folder = %v, want ErrInvalidKey", err)
	}
	if _, err := sub.s.AbortUploads(ctx); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("AbortUploads of no folder = %v, want ErrInvalidKey", err)
	}
}
