package fetch_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/tables"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// loopWith runs p's table loop with lease renewals every progress until the
// test ends.
func (e *tablesEnv) loopWith(p process, concurrency int, progress time.Duration) {
	l := fetch.NewTableLoop(fetch.TableConfig{Concurrency: concurrency, MaxDeliveries: 5, Progress: progress,
		PullWait: 200 * time.Millisecond, Backoff: func(uint64) time.Duration { return 50 * time.Millisecond }},
		p.jobs, p.builder, p.metrics, e.Log)
	ctx, cancel := context.WithCancel(context.WithoutCancel(e.t.Context()))
	var wg sync.WaitGroup
	wg.Go(func() { _ = l.Run(ctx) })
	e.t.Cleanup(func() { cancel(); wg.Wait() })
}

// putFailsOnce fails the first Put of a key containing part, as a bucket
// answering 503 once does.
type putFailsOnce struct {
	tables.Store
	part   string
	failed atomic.Bool
}

func (s *putFailsOnce) Put(ctx context.Context, key string, r io.Reader, opts objstore.PutOptions) (objstore.Object, error) {
	if strings.Contains(key, s.part) && s.failed.CompareAndSwap(false, true) {
		return objstore.Object{}, failure.Retryable(errors.New("test: the bucket answered 503"))
	}
	return s.Store.Put(ctx, key, r, opts)
}

// The conversion that completes a run's tables writes the table manifest
// and then the runs row; one failed write there must not leave the tables
// incomplete for good. Before, Convert only logged the completion's error
// and the job was acked: no later job of the run came to finish it, and the
// run stayed out of every documented query (they read the runs table) until
// someone ran a rebuild.
func TestTablesCompletionSurvivesAFailedFinalWrite(t *testing.T) {
	for _, part := range []string{"/tables/manifests/", "/tables/runs/"} {
		t.Run(strings.Trim(part, "/"), func(t *testing.T) {
			e := setupTables(t, 120)
			store := &putFailsOnce{Store: e.Store, part: part}
			e.loop(e.process(store), 1, 5)
			run := e.fetchRun()
			testenv.Eventually(t, 2*time.Minute, e.tablesComplete(e.Store, run), "the run's tables did not complete")
			if !store.failed.Load() {
				t.Fatal("no write failed: the test did not test")
			}
			checkTables(t, e, e.Store, run)
		})
	}
}

// getBlocksOnce blocks the first Get of a key containing part until its
// context ends, as a read from a bucket whose connection stalled does.
type getBlocksOnce struct {
	tables.Store
	part    string
	blocked atomic.Bool
}

func (s *getBlocksOnce) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if strings.Contains(key, s.part) && s.blocked.CompareAndSwap(false, true) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.Store.Get(ctx, key)
}

// A conversion blocked mid-read (a stalled connection to the bucket) must
// not hold its job for ever. Before, the loop renewed the job's lease for as
// long as the conversion ran, without a bound: the job never went to
// another worker, this worker's table loop stopped, and the run's tables
// never completed.
func TestBlockedConversionIsBounded(t *testing.T) {
	e := setupTables(t, 120)
	store := &getBlocksOnce{Store: e.Store, part: "/batch-000002.xml"}
	e.loopWith(e.process(store), 1, 50*time.Millisecond)
	run := e.fetchRun()
	testenv.Eventually(t, 2*time.Minute, e.tablesComplete(e.Store, run), "the run's tables did not complete")
	if !store.blocked.Load() {
		t.Fatal("no read blocked: the test did not test")
	}
	checkTables(t, e, e.Store, run)
}

// freezeStore holds the first Put of a key containing part until thaw is
// closed, as a converter stopped (SIGSTOP) right before its part lands.
type freezeStore struct {
	tables.Store
	part   string
	frozen chan struct{}
	thaw   chan struct{}
	once   atomic.Bool
}

func (s *freezeStore) Put(ctx context.Context, key string, r io.Reader, opts objstore.PutOptions) (objstore.Object, error) {
	if strings.Contains(key, s.part) && s.once.CompareAndSwap(false, true) {
		close(s.frozen)
		<-s.thaw
	}
	return s.Store.Put(ctx, key, r, opts)
}

// A converter frozen before its part lands, woken after another process
// completed the run's tables, changes no byte of them: its part, record,
// table manifest and runs row are the ones there already.
func TestFrozenConverterAfterTablesComplete(t *testing.T) {
	e := setupTables(t, 120)
	run := e.fetchRun() // no table loop yet: the jobs wait
	fz := &freezeStore{Store: e.Store, part: "/part-batch-000001.", frozen: make(chan struct{}), thaw: make(chan struct{})}
	a := e.process(fz)
	type outcome struct {
		res tables.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := a.builder.Convert(context.WithoutCancel(t.Context()), tables.Job{Run: run, Kind: msg.TableDetections, Item: "1"})
		done <- outcome{res, err}
	}()
	select {
	case <-fz.frozen:
	case <-time.After(30 * time.Second):
		t.Fatal("the converter did not reach its part's write")
	}
	e.loop(e.process(e.Store), 2, 5)
	testenv.Eventually(t, 2*time.Minute, e.tablesComplete(e.Store, run), "the run's tables did not complete")
	before := snapshot(t, e.Store)
	recs, err := e.Q.TableParts(t.Context(), run)
	if err != nil {
		t.Fatal(err)
	}
	close(fz.thaw)
	var got outcome
	select {
	case got = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the thawed converter did not end")
	}
	if got.err != nil || !got.res.Complete {
		t.Fatalf("thawed converter: %+v, %v", got.res, got.err)
	}
	if after := snapshot(t, e.Store); !maps.Equal(after, before) {
		t.Fatalf("the thawed converter changed the tables:\n got %v\nwant %v", after, before)
	}
	after, err := e.Q.TableParts(t.Context(), run)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(after, recs) {
		t.Fatalf("part records changed:\n got %v\nwant %v", after, recs)
	}
	checkTables(t, e, e.Store, run)
}

// The same with a converter that writes other bytes (another version of
// qfetch in a rolling upgrade, modelled by another row group size): woken
// after the tables completed, it must not land its part, since the table
// manifest lists the part that is there. Before, the part's Put was
// unconditional, so the late copy replaced it and the manifest's bytes no
// longer matched the object: only a store-enforced create fences it.
func TestFrozenConverterOfAnotherVersionLandsNothing(t *testing.T) {
	e := setupTables(t, 120)
	run := e.fetchRun() // no table loop yet: the jobs wait
	fz := &freezeStore{Store: e.Store, part: "/part-batch-000001.", frozen: make(chan struct{}), thaw: make(chan struct{})}
	a := e.process(fz)
	a.builder = tables.NewBuilder(tables.Config{Prefix: testrun.Prefix, Options: tables.Options{RowGroupRows: 100}},
		fz, e.Q.Ledger, nil, e.Log)
	done := make(chan error, 1)
	go func() {
		_, err := a.builder.Convert(context.WithoutCancel(t.Context()), tables.Job{Run: run, Kind: msg.TableDetections, Item: "1"})
		done <- err
	}()
	select {
	case <-fz.frozen:
	case <-time.After(30 * time.Second):
		t.Fatal("the converter did not reach its part's write")
	}
	e.loop(e.process(e.Store), 2, 5)
	testenv.Eventually(t, 2*time.Minute, e.tablesComplete(e.Store, run), "the run's tables did not complete")
	before := snapshot(t, e.Store)
	close(fz.thaw)
	select {
	case err := <-done:
		if err != nil {
			t.Logf("thawed converter: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the thawed converter did not end")
	}
	if after := snapshot(t, e.Store); !maps.Equal(after, before) {
		t.Errorf("the thawed converter changed the tables:\n got %v\nwant %v", after, before)
	}
	checkTables(t, e, e.Store, run)
	parts, err := e.Q.TableParts(t.Context(), run)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if o, err := e.Store.Stat(t.Context(), p.Key); err != nil || o.Bytes != p.Bytes {
			t.Errorf("part record %s/%s: %d bytes, the object holds %d (%v)", p.Kind, p.Item, p.Bytes, o.Bytes, err)
		}
	}
}
