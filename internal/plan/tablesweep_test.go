package plan_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/tables"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// TestSweepRequeuesLostTableJobs: a complete run whose table jobs were all
// lost (the tables stream purged before any conversion ran) gets its
// tables after a planner pass: the sweep queues every missing conversion
// again, under Msg-Ids the purged jobs' cannot shadow. The sweep queues
// nothing while the run's jobs are still queued, within the grace after
// the run completed, or once its tables are complete.
func TestSweepRequeuesLostTableJobs(t *testing.T) {
	e := testrun.New(t, testrun.Options{Hosts: 300, BatchSize: 60, PageSize: 100})
	tq, err := msg.SetupTables(t.Context(), e.JS, msg.TablesConfig{AckWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.Q.Tables = tq
	run := e.Plan().Run
	e.Work(e.Complete(run))
	rec := e.Record(run)
	want := uint64(rec.Totals.Batches + rec.Totals.HostListPages)

	pending := func() uint64 {
		t.Helper()
		n, err := tq.TablesPending(t.Context(), run)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// A pass on the wall clock (the run's completion time is the
	// finisher's), its sweep with the given grace.
	pass := func(grace time.Duration) {
		t.Helper()
		p := e.Parts("planner")
		p.Finish = e.Finisher()
		pl := p.Planner(plan.Config{BatchSize: 60, PageSize: 100, Now: time.Now, TablesGrace: grace})
		if _, err := pl.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	status := func() tables.Status {
		t.Helper()
		st, err := e.Parts("").TableBuilder().Status(t.Context(), run)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	// The run's conversions are queued (no table loop has run): not lost.
	if n := pending(); n != want {
		t.Fatalf("%d table jobs queued after the run, want %d (batches and pages)", n, want)
	}
	pass(time.Nanosecond)
	if n := pending(); n != want {
		t.Fatalf("a sweep while the jobs are queued left %d queued, want %d", n, want)
	}

	// Lost: the stream purged.
	s, err := e.JS.Stream(t.Context(), msg.StreamTables)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The jobs' own Msg-Ids are still in the duplicate window: a publish
	// under one is dropped, which is why the sweep uses its own.
	if err := tq.PublishTableJob(t.Context(), run, msg.TableHosts, msg.PageItem(1)); err != nil {
		t.Fatal(err)
	}
	if n := pending(); n != 0 {
		t.Fatalf("%d jobs queued after the purge and a duplicate publish, want 0", n)
	}
	pass(time.Hour)
	if n := pending(); n != 0 {
		t.Fatalf("a sweep within the grace queued %d jobs", n)
	}
	if st := status(); st.Complete || st.Recorded != 0 {
		t.Fatalf("tables before the sweep: %+v", st)
	}

	pass(time.Nanosecond)
	if n := pending(); n != want {
		t.Fatalf("the sweep queued %d jobs, want %d", n, want)
	}
	pass(time.Nanosecond) // a second sweep while they wait adds none
	if n := pending(); n != want {
		t.Fatalf("a second sweep left %d jobs queued, want %d", n, want)
	}

	// The fleet's table loop converts them: the tables complete.
	loop := e.Parts("").TableLoop(2)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = loop.Run(ctx) })
	testenv.Eventually(t, time.Minute, func() bool { return status().Complete }, "the run's tables did not complete")
	cancel()
	wg.Wait()
	if st := status(); st.Recorded != int(want) {
		t.Fatalf("tables complete with %d parts recorded, want %d", st.Recorded, want)
	}
	if _, err := e.Store.Stat(t.Context(), tables.ManifestKey(testrun.Prefix, run)); err != nil {
		t.Fatalf("no table manifest: %v", err)
	}

	pass(time.Nanosecond)
	if n := pending(); n != 0 {
		t.Fatalf("a sweep of complete tables queued %d jobs", n)
	}
}
