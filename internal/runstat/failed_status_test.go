package runstat_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/runstat"
)

// TestFailedRunStatusJSON: a run's last outstanding batch is
// dead-lettered some minutes after its record last changed (planning
// ended; the record is not touched when a batch is done or dead-lettered).
// The status writer, which held the lock all along, must write the run's
// status.json once more so that it says "failed" with the action to take,
// as `qfetch status` does.
func TestFailedRunStatusJSON(t *testing.T) {
	e := setup(t)
	var skew atomic.Int64 // the reporter's clock runs this far ahead
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	const every = 30 * time.Second // QFETCH_EXPORTER_EVERY's default
	r := e.Parts("exporter").Reporter(runstat.ReporterConfig{Every: every, Status: runstat.Config{Now: now}},
		runstat.NewMetrics(prometheus.NewRegistry()))

	if err := e.Sim.ForceFault(qualysim.Detection, qualysim.FaultCut, 1); err != nil {
		t.Fatal(err)
	}
	run := e.plan()
	if err := r.Refresh(t.Context()); err != nil { // takes the lock, writes "fetching"
		t.Fatal(err)
	}
	if s := e.status(run); s.State != ledger.RunFetching {
		t.Fatalf("status.json says %s before any work", s.State)
	}
	planned := e.Record(run).BatchesPlanned
	e.Work(func() bool {
		n, _ := e.Q.CountDone(t.Context(), run)
		dl, _ := e.Q.DeadLetters(t.Context(), run)
		return n == planned-1 && len(dl) == 1
	})
	// The next refreshes, a few minutes after planning ended.
	skew.Store(int64(5 * time.Minute))
	for range 2 {
		if err := r.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if s, _ := runstat.Of(t.Context(), e.Q, runstat.Config{Now: now}, e.Record(run)); s.State != ledger.RunFailed {
		t.Fatalf("qfetch status says %s, want failed", s.State)
	}
	if s := e.status(run); s.State != ledger.RunFailed || s.DeadLetters != 1 {
		t.Fatalf("status.json says %q with %d dead letters, %d of %d batches done; `qfetch status` says failed with 1 dead letter",
			s.State, s.DeadLetters, s.BatchesDone, s.BatchesPlanned)
	}
}

// TestDrainedInStatusJSON: status.json counts a failed run's batches that
// were acknowledged without a call.
func TestDrainedInStatusJSON(t *testing.T) {
	e := setup(t)
	run := e.FailedRun().ID
	for _, batch := range []string{"1", "2", "3"} {
		if err := e.Q.MarkDrained(t.Context(), run, batch); err != nil {
			t.Fatal(err)
		}
	}
	e.reporter("exporter").refresh(t) // a fresh lock holder writes every recent run
	if s := e.status(run); s.Drained != 3 || s.State != ledger.RunFailed {
		t.Fatalf("status.json says %s with %d batches drained; want failed with 3", s.State, s.Drained)
	}
}
