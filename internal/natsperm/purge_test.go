package natsperm_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/runstat"
	"github.com/qfetch/qfetch/internal/testrun"
)

// The hole still open (README "Security"): the batch stream must allow
// roll-ups for its retry schedules, so a worker's credentials can empty the
// queue with one "Nats-Rollup: all". What this test holds is that the damage
// shows: the run whose batches vanished reads as failed with its lost
// batches counted (status.json, `qfetch status`), and qfetch_batches_lost,
// which QfetchBatchesLost alerts on, counts them; before, the run read as
// fetching for a day, then stale, and the planner called its batches
// dead-lettered.
func TestPurgedQueueShows(t *testing.T) {
	n := testrun.StartSecureNATS(t)
	var log syncBuf
	qs := map[natsperm.Role]app.JetStream{}
	for _, r := range []natsperm.Role{natsperm.Planner, natsperm.Worker, natsperm.Exporter} {
		_, js := conn(t, n, r, &log)
		q, err := app.Queue(t.Context(), js, n.Config(r), config.Fleet{MaxInFlight: 2}, 0, appRole[r])
		if err != nil {
			t.Fatalf("%s sets up: %v\nlog:\n%s", r, err, log.String())
		}
		qs[r] = q
	}
	ctx := t.Context()
	const run = "20260110T000000Z-victim"
	after := time.Date(2026, 1, 9, 0, 0, 0, 0, time.UTC)
	before := after.Add(24 * time.Hour)
	planner := qs[natsperm.Planner]
	if _, err := planner.CreateRun(ctx, ledger.RunRecord{ID: run, After: after, Before: before, State: ledger.RunFetching,
		PlanningComplete: true, BatchesPlanned: 3, HostsPlanned: 3}); err != nil {
		t.Fatal(err)
	}
	pub := planner.Publisher(msg.PublisherOptions{})
	for i := 1; i <= 3; i++ {
		if err := pub.Publish(ctx, msg.Batch{Run: run, Number: i, After: after, Before: before, IDs: "1", Hosts: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	status := func() runstat.Status {
		t.Helper()
		rec, err := planner.GetRun(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		s, err := runstat.Of(ctx, qs[natsperm.Exporter], runstat.Config{}, rec)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := status(); s.State != ledger.RunFetching || s.Lost != 0 {
		t.Fatalf("before the purge: state %s, lost %d", s.State, s.Lost)
	}

	_, wjs := conn(t, n, natsperm.Worker, &log)
	m := nats.NewMsg("qfetch.batch.20260110T000000Z-other")
	m.Data = []byte("x")
	m.Header.Set("Nats-Rollup", "all")
	if _, err := wjs.PublishMsg(ctx, m); err != nil {
		t.Skipf("the server refused the roll-up (%v): the hole is closed, and README \"Security\" should say so", err)
	}

	s := status()
	if s.State != ledger.RunFailed || s.Lost != 3 || s.BatchesQueued != 0 || !strings.Contains(s.Action, "purged") {
		t.Fatalf("after the purge: state %s, lost %d, queued %d, action %q", s.State, s.Lost, s.BatchesQueued, s.Action)
	}
	reg := prometheus.NewRegistry()
	metrics := runstat.NewMetrics(reg)
	rep := runstat.NewReporter(runstat.ReporterConfig{Owner: "exporter"}, qs[natsperm.Exporter], discard{}, metrics, slog.New(slog.NewTextHandler(&log, nil)))
	if err := rep.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := gathered(t, reg, "qfetch_batches_lost"); got != 3 {
		t.Fatalf("qfetch_batches_lost = %v, want 3", got)
	}
}

// discard is a store that takes every status.json and keeps nothing.
type discard struct{}

func (discard) Put(_ context.Context, key string, r io.Reader, _ objstore.PutOptions) (objstore.Object, error) {
	n, err := io.Copy(io.Discard, r)
	return objstore.Object{Key: key, Bytes: n}, err
}

func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}
