package runstat_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/runstat"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// hookQueue runs hook once, right after the reporter read run's record: the
// run moves on between the read and the status.json write.
type hookQueue struct {
	app.JetStream
	run  string
	hook func()
}

func (q *hookQueue) GetRun(ctx context.Context, id string) (ledger.RunRecord, error) {
	rec, err := q.JetStream.GetRun(ctx, id)
	if id == q.run && q.hook != nil {
		h := q.hook
		q.hook = nil
		h()
	}
	return rec, err
}

// TestStatusJSONStaleAfterCompletion: the status writer reads a run
// record, the run completes (manifest, _SUCCESS), and the writer then puts
// a status.json saying "fetching" into the complete run's prefix, after
// _SUCCESS. If that writer then dies, the next lock holder only gets the
// lock after its TTL (3 periods), by which time the run "ended" more than
// 2 periods ago and is skipped: status.json says "fetching" for good, next
// to _SUCCESS.
func TestStatusJSONStaleAfterCompletion(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	run := e.plan()

	const every = time.Second
	hq := &hookQueue{JetStream: e.Q, run: run}
	hq.hook = func() { e.Work(func() bool { r, _ := e.Q.GetRun(ctx, run); return r.State == ledger.RunComplete }) }
	r1 := runstat.NewReporter(runstat.ReporterConfig{Prefix: testrun.Prefix, Owner: "w1", Every: every},
		hq, e.Store, runstat.NewMetrics(prometheus.NewRegistry()), e.Log)
	if err := r1.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Store.Stat(ctx, objstore.SuccessKey(testrun.Prefix, run)); err != nil {
		t.Fatalf("the run did not complete during the refresh: %v", err)
	}
	if s := e.status(run); s.State != ledger.RunComplete {
		t.Logf("status.json written after _SUCCESS says %q", s.State)
	}

	// w1 dies without releasing the lock; w2 takes over once it expires.
	r2 := e.Parts("w2").Reporter(runstat.ReporterConfig{Every: every}, runstat.NewMetrics(prometheus.NewRegistry()))
	testenv.Eventually(t, 30*time.Second, func() bool {
		if err := r2.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		l, err := e.Q.Acquire(ctx, "status-writer", "probe", time.Minute)
		if err == nil { // free between w1's expiry and w2's next try: give it back
			_ = l.Release(ctx)
			return false
		}
		var held *ledger.HeldError
		return errors.As(err, &held) && held.Holder.Owner == "w2"
	}, "w2 never took the status writer's lock")
	if err := r2.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if s := e.status(run); s.State != ledger.RunComplete {
		t.Errorf("run %s is complete, its status.json says %q for good", run, s.State)
	}
}
