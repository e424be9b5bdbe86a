package runstat_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/runid"
	"github.com/qfetch/qfetch/internal/runstat"
	"github.com/qfetch/qfetch/internal/testrun"
)

// passLedger is the ledger with its KnowledgeBase pass list; a build whose
// ledger.KBPassIDs is not there yet finds the passes among the records.
type passLedger struct{ app.JetStream }

func (q passLedger) KBPassIDs(ctx context.Context) ([]string, error) {
	if ids, err := q.JetStream.KBPassIDs(ctx); err == nil {
		return ids, nil
	}
	ids, err := q.JetStream.RunIDs(ctx)
	return slices.DeleteFunc(ids, func(id string) bool { return !runid.IsKB(id) }), err
}

// TestReporterKBPass: a KnowledgeBase pass gets its status.json under
// kb/<pass>/ and series of its own (the newest pass's batches, the newest
// complete pass's time), and never counts among the runs.
func TestReporterKBPass(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	const old, pass = "kb-20260101T000000Z-aaaaaa", "kb-20260102T000000Z-bbbbbb"
	done := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	before := e.Sim.Clock().Now().Truncate(time.Second)
	if _, err := e.Q.CreateRun(ctx, ledger.RunRecord{ID: old, Before: before.Add(-time.Hour), State: ledger.RunComplete,
		PlanningComplete: true, BatchesPlanned: 1, Completed: done, Totals: &ledger.Totals{Batches: 1, HostsRequested: 5, HostsReturned: 5, Bytes: 100}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Q.CreateRun(ctx, ledger.RunRecord{ID: pass, Before: before, State: ledger.RunFetching,
		PlanningComplete: true, BatchesPlanned: 2, HostsPlanned: 6}); err != nil {
		t.Fatal(err)
	}
	if err := e.Q.MarkDone(ctx, ledger.BatchResult{Run: pass, Batch: "1", HostsRequested: 3, HostsReturned: 2, IDs: "1,3",
		Objects: []objstore.Object{{Key: objstore.DetectionKey(testrun.Prefix, pass, 1, 1), Bytes: 40}}, At: before}); err != nil {
		t.Fatal(err)
	}
	pub := e.Q.Publisher(msg.PublisherOptions{})
	if err := pub.Publish(ctx, msg.Batch{Kind: msg.KindKB, Run: pass, Number: 2, Before: before, IDs: hostids.Of([]uint64{7, 8, 9}).String(), Hosts: 3}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Wait(ctx); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	r := reporter{Reporter: runstat.NewReporter(runstat.ReporterConfig{Prefix: testrun.Prefix, Owner: "exporter", Every: time.Minute},
		passLedger{e.Q}, e.Store, runstat.NewMetrics(reg), slog.New(slog.DiscardHandler)), reg: reg}
	r.refresh(t)

	s := e.status(pass)
	if s.Kind != runstat.KindKB || s.State != ledger.RunFetching || s.BatchesDone != 1 || s.BatchesPlanned != 2 ||
		s.BatchesQueued != 1 || s.HostsReturned != 2 || s.Bytes != 40 {
		t.Errorf("status.json of the pass: %+v", s)
	}
	if s := e.status(old); s.Kind != runstat.KindKB || s.State != ledger.RunComplete {
		t.Errorf("status.json of the complete pass: %+v", s)
	}
	for state, want := range map[string]float64{"planned": 2, "done": 1, "queued": 1, "dead_lettered": 0} {
		r.want(t, "qfetch_kb_pass_batches", map[string]string{"state": state}, want)
	}
	r.want(t, "qfetch_kb_passes", map[string]string{"state": string(ledger.RunFetching)}, 1)
	r.want(t, "qfetch_kb_passes", map[string]string{"state": string(ledger.RunComplete)}, 1)
	r.want(t, "qfetch_kb_last_complete_timestamp_seconds", nil, float64(done.Unix()))
	for _, st := range ledger.States {
		r.want(t, "qfetch_runs", map[string]string{"state": string(st)}, 0)
	}
	if _, ok := r.value(t, "qfetch_last_complete_run_timestamp_seconds", nil); ok {
		t.Errorf("a KB pass counts as the last complete run")
	}
	if v, ok := r.value(t, "qfetch_current_run", map[string]string{"measure": "batches_planned"}); ok {
		t.Errorf("a KB pass is the current run (batches_planned %v)", v)
	}
}
