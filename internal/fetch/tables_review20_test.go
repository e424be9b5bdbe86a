package fetch_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/tables"
	"github.com/qfetch/qfetch/internal/testenv"
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
			testenv.Eventually(t, 60*time.Second, e.tablesComplete(e.Store, run), "the run's tables did not complete")
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
	testenv.Eventually(t, 60*time.Second, e.tablesComplete(e.Store, run), "the run's tables did not complete")
	if !store.blocked.Load() {
		t.Fatal("no read blocked: the test did not test")
	}
	checkTables(t, e, e.Store, run)
}
