package ledger

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/msg"
)

// The status writer's lock lives in a bucket of its own, so that the
// processes taking it (workers, the exporter) need no right on the bucket
// of the planner lock; the two locks never meet in one bucket.
func TestStatusWriterLockHasItsOwnBucket(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	sw, err := e.l.Acquire(e.Ctx, StatusWriterLock, "worker-a", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.Acquire(e.Ctx, "planner", "planner-a", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		bucket, key string
		present     bool
	}{
		{BucketStatusLock, StatusWriterLock, true},
		{BucketLocks, StatusWriterLock, false},
		{BucketLocks, "planner", true},
		{BucketStatusLock, "planner", false},
	} {
		kv, err := e.JS.KeyValue(e.Ctx, tt.bucket)
		if err != nil {
			t.Fatal(err)
		}
		_, err = kv.Get(e.Ctx, tt.key)
		if got := err == nil; got != tt.present {
			t.Errorf("%s in %s: present %v, want %v (%v)", tt.key, tt.bucket, got, tt.present, err)
		}
	}
	if _, err := e.l.Acquire(e.Ctx, StatusWriterLock, "worker-b", 5*time.Second); !errors.Is(err, ErrLocked) {
		t.Fatalf("second status writer: %v", err)
	}
	if err := sw.Refresh(e.Ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if err := sw.Release(e.Ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// A deployment set up before QFETCH_STATUS_LOCK: Open still works (operator
// commands), the status writer's lock fails as not set up, and the next
// Setup creates the bucket — nothing else to migrate.
func TestStatusLockBucketUpgrade(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	if err := e.JS.DeleteKeyValue(e.Ctx, BucketStatusLock); err != nil {
		t.Fatal(err)
	}
	old, err := Open(e.Ctx, e.JS)
	if err != nil {
		t.Fatalf("Open without %s: %v", BucketStatusLock, err)
	}
	if _, err := old.Acquire(e.Ctx, StatusWriterLock, "exporter", 5*time.Second); !errors.Is(err, msg.ErrNotSetUp) {
		t.Fatalf("status lock without its bucket: %v", err)
	}
	if _, err := old.Acquire(e.Ctx, "planner", "planner", 5*time.Second); err != nil {
		t.Fatalf("planner lock without the status bucket: %v", err)
	}
	if _, err := e.JS.KeyValue(e.Ctx, BucketStatusLock); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("Open created %s: %v", BucketStatusLock, err)
	}
	l, err := Setup(e.Ctx, e.JS, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(e.Ctx, StatusWriterLock, "exporter", 5*time.Second); err != nil {
		t.Fatalf("status lock after Setup: %v", err)
	}
}
