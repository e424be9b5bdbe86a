package ledger

import (
	"errors"
	"sync"
	"testing"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
)

func TestSetupCreatesBuckets(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	for bucket, history := range map[string]int64{BucketRuns: runsHistory, BucketState: stateHistory, BucketLocks: 1, BucketFleet: 1, BucketStatusLock: 1} {
		kv, err := e.JS.KeyValue(e.Ctx, bucket)
		if err != nil {
			t.Fatalf("bucket %s: %v", bucket, err)
		}
		st, err := kv.Status(e.Ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.History() != history {
			t.Errorf("bucket %s history %d, want %d", bucket, st.History(), history)
		}
	}
	findings, err := Inspect(e.Ctx, e.JS, Config{})
	if err != nil || len(findings) != 5 {
		t.Fatalf("Inspect: %+v, %v", findings, err)
	}
	for _, f := range findings {
		if f.Problem != "" {
			t.Errorf("%s: %s", f.Object, f.Problem)
		}
	}
}

func TestSetupIsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, errs[i] = Setup(e.Ctx, e.JS, Config{}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Setup %d: %v", i, err)
		}
	}
	if _, err := Setup(e.Ctx, e.JS, Config{Replicas: 6}); failure.ClassOf(err) != failure.ClassPermanent {
		t.Errorf("Setup with 6 replicas: %v", err)
	}
}

// TestOpenCreatesNothing: Open on a server without the buckets fails with
// msg.ErrNotSetUp and creates none; Inspect reports them missing.
func TestOpenCreatesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := Open(e.Ctx, e.JS); !errors.Is(err, msg.ErrNotSetUp) || failure.ClassOf(err) != failure.ClassFleetWide {
		t.Fatalf("Open on an empty server: %v", err)
	}
	for n := range e.JS.KeyValueStoreNames(e.Ctx).Name() {
		t.Errorf("Open created bucket %s", n)
	}
	findings, err := Inspect(e.Ctx, e.JS, Config{})
	if err != nil || len(findings) != 5 || findings[0].Problem == "" {
		t.Fatalf("Inspect of an empty server: %+v, %v", findings, err)
	}
	if _, err := Setup(e.Ctx, e.JS, Config{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(e.Ctx, e.JS); err != nil {
		t.Fatalf("Open: %v", err)
	}
}

func TestCompareBatchKeys(t *testing.T) {
	keys := []string{"1", "2", "2.1", "2.1.2", "2.2", "10", "10.1", "100"}
	for i := range keys {
		for j := range keys {
			got := CompareBatchKeys(keys[i], keys[j])
			if (i < j && got >= 0) || (i > j && got <= 0) || (i == j && got != 0) {
				t.Errorf("compare(%q, %q) = %d", keys[i], keys[j], got)
			}
		}
	}
}
