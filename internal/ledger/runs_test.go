package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/testenv"
)

func newRun(t *testing.T, e *env, id string) RunRecord {
	t.Helper()
	r, err := e.l.CreateRun(e.Ctx, RunRecord{ID: id, After: testAfter, Before: testBefore, State: RunPlanning})
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	return r
}

func TestRunRecordLifecycle(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	r := newRun(t, e, "20250301T000000Z")
	if _, err := e.l.CreateRun(e.Ctx, RunRecord{ID: r.ID}); !errors.Is(err, ErrRunExists) {
		t.Fatalf("second CreateRun: want ErrRunExists, got %v", err)
	}
	if _, err := e.l.GetRun(e.Ctx, "nope"); !errors.Is(err, ErrRunNotFound) {
		t.Fatalf("GetRun of a missing run: %v", err)
	}
	got, err := e.l.UpdateRun(e.Ctx, r.ID, func(r *RunRecord) error {
		r.PlanningComplete, r.BatchesPlanned, r.HostsPlanned, r.State = true, 12, 11500, RunFetching
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision <= r.Revision || got.Updated.Before(r.Created) {
		t.Errorf("revision %d after %d, updated %v", got.Revision, r.Revision, got.Updated)
	}
	read, err := e.l.GetRun(e.Ctx, r.ID)
	if err != nil || read.State != RunFetching || read.BatchesPlanned != 12 || !read.Before.Equal(testBefore) {
		t.Fatalf("GetRun: %+v, %v", read, err)
	}
	// A function that declines writes nothing.
	unchanged, err := e.l.UpdateRun(e.Ctx, r.ID, func(*RunRecord) error { return ErrNoChange })
	if !errors.Is(err, ErrNoChange) || unchanged.Revision != read.Revision {
		t.Fatalf("ErrNoChange: %v, revision %d vs %d", err, unchanged.Revision, read.Revision)
	}
	newRun(t, e, "20250302T000000Z")
	ids, err := e.l.RunIDs(e.Ctx)
	if err != nil || !slices.Equal(ids, []string{"20250301T000000Z", "20250302T000000Z"}) {
		t.Fatalf("RunIDs: %v, %v", ids, err)
	}
}

func TestUpdateRunUnderContention(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	r := newRun(t, e, "r1")
	const workers, each = 6, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := e.l.UpdateRun(e.Ctx, r.ID, func(r *RunRecord) error {
					r.BatchesPlanned++
					return nil
				}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("UpdateRun: %v", err)
	}
	got, err := e.l.GetRun(e.Ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.BatchesPlanned != workers*each {
		t.Fatalf("counter %d, want %d: an increment was lost", got.BatchesPlanned, workers*each)
	}
}

func TestUpdateRunDecidesOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	r := newRun(t, e, "r1")
	const finishers = 5
	var wg sync.WaitGroup
	won := make(chan string, finishers)
	for i := range finishers {
		me := fmt.Sprintf("worker-%d", i)
		wg.Go(func() {
			_, err := e.l.UpdateRun(e.Ctx, r.ID, func(r *RunRecord) error {
				if r.State == RunCompleting {
					return ErrNoChange
				}
				r.State, r.Finisher = RunCompleting, me
				return nil
			})
			if err == nil {
				won <- me
			} else if !errors.Is(err, ErrNoChange) {
				t.Errorf("%s: %v", me, err)
			}
		})
	}
	wg.Wait()
	close(won)
	var winners []string
	for w := range won {
		winners = append(winners, w)
	}
	got, err := e.l.GetRun(e.Ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(winners) != 1 || got.Finisher != winners[0] {
		t.Fatalf("winners %v, record says %q", winners, got.Finisher)
	}
}

func TestBatchResults(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	run := "r1"
	keys := []string{"1", "2", "3", "10", "7.1", "7.2.1", "7.2.2"}
	for _, k := range keys {
		res := BatchResult{Run: run, Batch: k, HostsRequested: 4, HostsReturned: 3, Delivery: 1, At: time.Now(),
			Objects: []objstore.Object{{Key: "runs/r1/detections/batch-" + k + ".xml", Bytes: 10, SHA256: "ab", Hosts: 3}}}
		if err := e.l.MarkDone(e.Ctx, res); err != nil {
			t.Fatalf("MarkDone %s: %v", k, err)
		}
	}
	// A redelivered batch records again, over its own entry.
	if err := e.l.MarkDone(e.Ctx, BatchResult{Run: run, Batch: "2", Delivery: 2}); err != nil {
		t.Fatal(err)
	}
	// Another run's results do not count.
	if err := e.l.MarkDone(e.Ctx, BatchResult{Run: "r11", Batch: "1"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []Split{{Batch: "7", Halves: [2]string{"7.1", "7.2"}}, {Batch: "7.2", Halves: [2]string{"7.2.1", "7.2.2"}}} {
		if err := e.l.MarkSplit(e.Ctx, run, s); err != nil {
			t.Fatal(err)
		}
	}
	newRun(t, e, run)

	n, err := e.l.CountDone(e.Ctx, run)
	if err != nil || n != len(keys) {
		t.Fatalf("CountDone: %d, %v; want %d", n, err, len(keys))
	}
	done, err := e.l.DoneBatches(e.Ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range done {
		got = append(got, d.Batch)
		if d.Batch == "2" && d.Delivery != 2 {
			t.Errorf("batch 2 result is not the latest: %+v", d)
		}
	}
	want := []string{"1", "2", "3", "7.1", "7.2.1", "7.2.2", "10"}
	if !slices.Equal(got, want) {
		t.Fatalf("DoneBatches %v, want %v", got, want)
	}
	splits, err := e.l.Splits(e.Ctx, run)
	if err != nil || len(splits) != 2 || splits[1].Halves[1] != "7.2.2" {
		t.Fatalf("Splits: %+v, %v", splits, err)
	}
	if n, err := e.l.CountDone(e.Ctx, "empty"); err != nil || n != 0 {
		t.Errorf("CountDone of a run without results: %d, %v", n, err)
	}
	if err := e.l.MarkDone(e.Ctx, BatchResult{Run: run, Batch: "07"}); err == nil {
		t.Error("MarkDone accepted batch key 07")
	}
	// No throwaway consumers are left behind.
	testenv.Eventually(t, 5*time.Second, func() bool {
		s, err := e.JS.Stream(e.Ctx, "KV_"+BucketRuns)
		if err != nil {
			return false
		}
		info, err := s.Info(e.Ctx)
		return err == nil && info.State.Consumers == 0
	}, "counting consumers deleted")
}

func TestWatermark(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	if _, err := e.l.Watermark(e.Ctx); !errors.Is(err, ErrNoWatermark) {
		t.Fatalf("fresh watermark: %v", err)
	}
	t1 := testBefore
	moved, err := e.l.AdvanceWatermark(e.Ctx, Watermark{Time: t1, Run: "r1", By: "worker-a", Reason: "run complete"})
	if err != nil || !moved {
		t.Fatalf("first advance: %v, %v", moved, err)
	}
	// A run that completes late does not move it back.
	moved, err = e.l.AdvanceWatermark(e.Ctx, Watermark{Time: t1.Add(-time.Hour), Run: "r0", By: "worker-b"})
	if err != nil || moved {
		t.Fatalf("advance backwards: %v, %v", moved, err)
	}
	// The operator can, and says why.
	back := t1.Add(-48 * time.Hour)
	if err := e.l.SetWatermark(e.Ctx, Watermark{Time: back, By: "alice", Reason: "re-fetch after outage"}); err != nil {
		t.Fatal(err)
	}
	w, err := e.l.Watermark(e.Ctx)
	if err != nil || !w.Time.Equal(back) || w.By != "alice" {
		t.Fatalf("watermark %+v, %v", w, err)
	}
	hist, err := e.l.WatermarkHistory(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	var by []string
	for _, h := range hist {
		by = append(by, h.By)
	}
	if !slices.Equal(by, []string{"worker-a", "alice"}) {
		t.Fatalf("history by %v", by)
	}
}

func TestAdvanceWatermarkConcurrent(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := e.l.AdvanceWatermark(e.Ctx, Watermark{Time: testBefore.Add(time.Duration(i) * time.Hour), By: fmt.Sprint(i)}); err != nil {
				t.Errorf("advance %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	w, err := e.l.Watermark(e.Ctx)
	if err != nil || !w.Time.Equal(testBefore.Add(7*time.Hour)) {
		t.Fatalf("watermark %+v, %v; want the latest of all", w, err)
	}
}

func TestLock(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	l, err := e.l.Acquire(e.Ctx, "planner", "planner-a run r1", 5*time.Second)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	_, err = e.l.Acquire(e.Ctx, "planner", "planner-b", 5*time.Second)
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrLocked) || held.Holder.Owner != "planner-a run r1" {
		t.Fatalf("contended Acquire: %v", err)
	}
	if err := l.Refresh(e.Ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if err := l.Release(e.Ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	l2, err := e.l.Acquire(e.Ctx, "planner", "planner-b", 5*time.Second)
	if err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	// The old holder lost it: its refresh and release touch nothing.
	if err := l.Refresh(e.Ctx); !errors.Is(err, ErrLockLost) {
		t.Fatalf("Refresh by the old holder: %v", err)
	}
	if err := l.Release(e.Ctx); !errors.Is(err, ErrLockLost) {
		t.Fatalf("Release by the old holder: %v", err)
	}
	if _, err := e.l.Acquire(e.Ctx, "planner", "planner-c", 5*time.Second); !errors.Is(err, ErrLocked) {
		t.Fatalf("the new holder's lock was disturbed: %v", err)
	}
	if err := l2.Release(e.Ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLockExpires(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	if _, err := e.l.Acquire(e.Ctx, "planner", "crashed", time.Second); err != nil {
		t.Fatal(err)
	}
	// The holder dies: no refresh, no release.
	var l *Lock
	testenv.Eventually(t, 15*time.Second, func() bool {
		var err error
		l, err = e.l.Acquire(e.Ctx, "planner", "successor", time.Second)
		return err == nil
	}, "the stale lock to expire")
	if l.Holder().Owner != "successor" {
		t.Fatalf("holder %+v", l.Holder())
	}
}

func TestLockKeep(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	l, err := e.l.Acquire(e.Ctx, "planner", "a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	keep := func(l *Lock) (context.CancelFunc, <-chan error) {
		ctx, cancel := context.WithCancel(e.Ctx)
		errc := make(chan error, 1)
		var wg sync.WaitGroup
		wg.Go(func() { errc <- l.Keep(ctx) })
		t.Cleanup(func() { cancel(); wg.Wait() })
		return cancel, errc
	}
	stop, stopped := keep(l)

	// Refreshed for longer than its TTL, the lock is still held.
	first := l.Holder().Refreshed
	testenv.Eventually(t, 10*time.Second, func() bool {
		return l.Holder().Refreshed.Sub(first) > 1200*time.Millisecond
	}, "refreshes for more than one TTL")
	if _, err := e.l.Acquire(e.Ctx, "planner", "b", time.Second); !errors.Is(err, ErrLocked) {
		t.Fatalf("a kept lock was taken: %v", err)
	}
	// Refreshes carry the TTL too: once they stop, the lock expires.
	stop()
	if err := <-stopped; err != nil {
		t.Fatalf("Keep after stop: %v", err)
	}
	var l2 *Lock
	testenv.Eventually(t, 15*time.Second, func() bool {
		l2, err = e.l.Acquire(e.Ctx, "planner", "b", time.Second)
		return err == nil
	}, "the lock to expire after its last refresh")

	// Someone removes it (an operator); Keep notices and says so.
	_, lost := keep(l2)
	kv, err := e.JS.KeyValue(e.Ctx, BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(e.Ctx, "planner"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lost:
		if !errors.Is(err, ErrLockLost) {
			t.Fatalf("Keep: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Keep did not notice the lost lock")
	}
}

// TestAccept: drops accumulate in the acceptance, an empty reason keeps the
// earlier one, and a complete run or one without a record has nothing to
// accept.
func TestAccept(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	newRun(t, e, "r1")
	if _, err := e.l.Accept(e.Ctx, "r1", "2", "", "no"); err == nil {
		t.Fatal("an acceptance by nobody was recorded")
	}
	for _, k := range []string{"2", "5", "2"} {
		reason := ""
		if k == "2" {
			reason = "known bad hosts"
		}
		if ok, err := e.l.Accept(e.Ctx, "r1", k, "op", reason); err != nil || !ok {
			t.Fatalf("Accept %s: %v, %v", k, ok, err)
		}
	}
	r, err := e.l.GetRun(e.Ctx, "r1")
	if err != nil || r.Accepted == nil || r.Accepted.By != "op" || r.Accepted.Reason != "known bad hosts" ||
		!slices.Equal(r.Accepted.Dropped, []string{"2", "5"}) {
		t.Fatalf("run r1: %+v, %v", r.Accepted, err)
	}
	if ok, err := e.l.Accept(e.Ctx, "orphan", "1", "op", ""); err != nil || ok {
		t.Fatalf("Accept of a run without a record: %v, %v", ok, err)
	}
	if _, err := e.l.UpdateRun(e.Ctx, "r1", func(r *RunRecord) error { r.State = RunComplete; return nil }); err != nil {
		t.Fatal(err)
	}
	if ok, err := e.l.Accept(e.Ctx, "r1", "7", "op", ""); err != nil || ok {
		t.Fatalf("Accept on a complete run: %v, %v", ok, err)
	}
}

// TestPages: pages come back in page order (10 after 9), a page recorded
// again replaces its record, and other runs' pages do not count.
func TestPages(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	for _, n := range []int{10, 2, 1, 9, 2} {
		o := objstore.Object{Key: fmt.Sprintf("runs/r1/hostlist/page-%06d.xml", n), Bytes: int64(n), SHA256: "ab", Hosts: n}
		if err := e.l.MarkPage(e.Ctx, "r1", n, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.l.MarkPage(e.Ctx, "r11", 1, objstore.Object{Key: "other"}); err != nil {
		t.Fatal(err)
	}
	if err := e.l.MarkPage(e.Ctx, "r1", 0, objstore.Object{}); err == nil {
		t.Error("page 0 was recorded")
	}
	pages, err := e.l.Pages(e.Ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, p := range pages {
		got = append(got, p.Hosts)
	}
	if !slices.Equal(got, []int{1, 2, 9, 10}) {
		t.Fatalf("pages %v, want 1, 2, 9, 10", got)
	}
	if none, err := e.l.Pages(e.Ctx, "r2"); err != nil || len(none) != 0 {
		t.Fatalf("pages of a run without any: %v, %v", none, err)
	}
}
