package runstat_test

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/runstat"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// countingStore counts the status.json writes.
type countingStore struct {
	*objstore.S3
	puts atomic.Int32
}

func (s *countingStore) Put(ctx context.Context, key string, r io.Reader, o objstore.PutOptions) (objstore.Object, error) {
	s.puts.Add(1)
	return s.S3.Put(ctx, key, r, o)
}

// env is a whole qfetch on real parts (testrun).
type env struct{ *testrun.Env }

func setup(t *testing.T) *env {
	return &env{testrun.New(t, testrun.Options{Hosts: 1000, Seed: 9, MaxFailures: 1, BatchSize: 200, PageSize: 500})}
}

func (e *env) plan() string { return e.Plan().Run }

type reporter struct {
	*runstat.Reporter
	reg   *prometheus.Registry
	store *countingStore
}

func (e *env) reporter(owner string) reporter {
	reg := prometheus.NewRegistry()
	st := &countingStore{S3: e.Store}
	p := e.Parts(owner)
	p.Store = st
	r := p.Reporter(runstat.ReporterConfig{Every: time.Minute}, runstat.NewMetrics(reg))
	return reporter{Reporter: r, reg: reg, store: st}
}

func (r reporter) refresh(t *testing.T) {
	t.Helper()
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// value is the gauge name{labels}; ok is false when the series is absent.
func (r reporter) value(t *testing.T, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func (r reporter) want(t *testing.T, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := r.value(t, name, labels)
	if !ok || got != want {
		t.Errorf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
	}
}

func (e *env) status(run string) runstat.Status {
	e.T.Helper()
	rd, err := e.Store.Get(e.T.Context(), objstore.StatusKey(testrun.Prefix, run))
	if err != nil {
		e.T.Fatalf("status.json of %s: %v", run, err)
	}
	defer rd.Close()
	var s runstat.Status
	if err := json.NewDecoder(rd).Decode(&s); err != nil {
		e.T.Fatal(err)
	}
	return s
}

// TestReporter follows a run with a dead letter to completion: the gauges
// and status.json say what the queue and the run records say, and only the
// lock holder writes status.json, only when it changed.
func TestReporter(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	if err := e.Sim.ForceFault(qualysim.Detection, qualysim.FaultCut, 1); err != nil {
		t.Fatal(err)
	}
	run := e.plan()
	rec, _ := e.Q.GetRun(ctx, run)
	planned := float64(rec.BatchesPlanned)

	r1, r2 := e.reporter("w1"), e.reporter("w2")
	// Before the first refresh nothing is known, and nothing is served.
	if v, ok := r1.value(t, "qfetch_dead_letters", nil); ok {
		t.Errorf("qfetch_dead_letters = %v served before the first refresh", v)
	}
	r1.refresh(t)
	r2.refresh(t)
	for _, r := range []reporter{r1, r2} {
		r.want(t, "qfetch_queue_batches", nil, planned)
		r.want(t, "qfetch_dead_letters", nil, 0)
		r.want(t, "qfetch_runs", map[string]string{"state": "fetching"}, 1)
		r.want(t, "qfetch_runs", map[string]string{"state": "complete"}, 0)
		if _, ok := r.value(t, "qfetch_last_complete_run_timestamp_seconds", nil); ok {
			t.Error("last complete run timestamp before any run completed")
		}
		if age, _ := r.value(t, "qfetch_last_complete_run_age_seconds", nil); !math.IsInf(age, 1) {
			t.Errorf("age %v before any run completed, want +Inf", age)
		}
	}
	r1.want(t, "qfetch_current_run", map[string]string{"measure": "batches_planned"}, planned)
	r1.want(t, "qfetch_current_run", map[string]string{"measure": "batches_queued"}, planned)
	if _, ok := r2.value(t, "qfetch_current_run", map[string]string{"measure": "batches_planned"}); ok {
		t.Error("the process without the lock serves the current run's series")
	}
	if s := e.status(run); s.State != ledger.RunFetching || s.BatchesPlanned != rec.BatchesPlanned || s.BatchesQueued != uint64(rec.BatchesPlanned) {
		t.Fatalf("status.json: %+v", s)
	}
	if n := r2.store.puts.Load(); n != 0 {
		t.Fatalf("the process without the lock wrote %d objects", n)
	}
	r1.refresh(t)
	if n := r1.store.puts.Load(); n != 1 {
		t.Fatalf("%d status.json writes for an unchanged run, want 1", n)
	}

	// Workers: every batch but the dead-lettered one is done.
	e.Work(func() bool {
		dl, _ := e.Q.DeadLetters(ctx, run)
		n, _ := e.Q.CountDone(ctx, run)
		return len(dl) == 1 && n == rec.BatchesPlanned-1
	})
	r1.refresh(t)
	r1.want(t, "qfetch_dead_letters", nil, 1)
	r1.want(t, "qfetch_queue_batches", nil, 0)
	r1.want(t, "qfetch_runs", map[string]string{"state": "failed"}, 1)
	if s := e.status(run); s.State != ledger.RunFailed || s.DeadLetters != 1 || s.BatchesDone != rec.BatchesPlanned-1 || s.Action == "" {
		t.Fatalf("status.json with a dead letter: %+v", s)
	}

	// Replayed and fetched, the run completes; its last status.json says so.
	dls, _ := e.Q.DeadLetters(ctx, run)
	if _, err := e.Q.Replay(ctx, dls[0].Seq, func(b msg.Batch) error { return e.Q.ResetFailures(ctx, b.Run, b.Key()) }); err != nil {
		t.Fatal(err)
	}
	e.Work(func() bool { r, _ := e.Q.GetRun(ctx, run); return r.State == ledger.RunComplete })
	r1.refresh(t)
	rec, _ = e.Q.GetRun(ctx, run)
	r1.want(t, "qfetch_dead_letters", nil, 0)
	r1.want(t, "qfetch_runs", map[string]string{"state": "complete"}, 1)
	r1.want(t, "qfetch_runs", map[string]string{"state": "failed"}, 0)
	r1.want(t, "qfetch_last_complete_run_timestamp_seconds", nil, float64(rec.Completed.UnixNano())/1e9)
	if age, _ := r1.value(t, "qfetch_last_complete_run_age_seconds", nil); age < 0 || age > 600 {
		t.Errorf("age of a run completed just now: %v", age)
	}
	if _, ok := r1.value(t, "qfetch_current_run", map[string]string{"measure": "batches_planned"}); ok {
		t.Error("current run series with no run open")
	}
	s := e.status(run)
	if s.State != ledger.RunComplete || s.BatchesDone != rec.BatchesPlanned || s.Bytes != rec.Totals.Bytes || s.Manifest == "" {
		t.Fatalf("final status.json: %+v", s)
	}
}
