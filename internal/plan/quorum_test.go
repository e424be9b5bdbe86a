package plan_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// TestQuorumLossFailsPassFleetWide: a pass meets a JetStream cluster that
// lost two nodes of three after its first page. It fails fleet-wide (exit
// 3, wrapping msg.ErrJetStreamUnavailable) and leaves its run resumable;
// the nodes back, the next pass resumes the same run and plans it whole.
func TestQuorumLossFailsPassFleetWide(t *testing.T) {
	c := testenv.StartNATSCluster(t)
	_, js := testenv.ConnectCluster(t, c.URLs(), nats.DontRandomize(), nats.ReconnectWait(100*time.Millisecond))
	var mq *msg.Queue
	var l *ledger.Ledger
	c.SetUp("the queue and the ledger on a new cluster", func(ctx context.Context) (err error) {
		if mq, err = msg.Setup(ctx, js, msg.Config{StreamReplicas: 3}); err != nil {
			return err
		}
		l, err = ledger.Setup(ctx, js, ledger.Config{Replicas: 3})
		return err
	})
	m := testenv.MinIO(t)
	store, err := objstore.NewS3(objstore.S3Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Bucket: m.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	sim := qualysim.New(qualysim.Config{Seed: 7, Hosts: 12_000, RateLimit: qualysim.Off})
	t.Cleanup(sim.Close)
	sim.Advance(10 * 24 * time.Hour)
	g := newGate()
	srv := httptest.NewServer(g.wrap(sim))
	t.Cleanup(srv.Close)
	client, err := qualys.New(qualys.Config{BaseURL: srv.URL, Username: sim.Username(), Password: sim.Password()})
	if err != nil {
		t.Fatal(err)
	}
	q := app.JetStream{Queue: mq, Ledger: l}
	parts := app.Parts{Log: slog.New(slog.DiscardHandler), Qualys: client, Store: store, Queue: q, Prefix: testrun.Prefix,
		Owner: "test-planner", Finish: testrun.NoFinish}
	cfg := plan.Config{BatchSize: 1000, PageSize: 5000, HostListDetails: "None", LockTTL: 5 * time.Second,
		Now: func() time.Time { return sim.Clock().Now() }}
	e := &env{js: js}

	g.hold()
	done := make(chan error, 1)
	var first plan.Outcome
	go func() {
		var err error
		first, err = parts.Planner(cfg).Run(t.Context())
		done <- err
	}()
	waitFor(t, g.waiting, "a held Host List request")
	testenv.Eventually(t, 30*time.Second, func() bool { return e.streamCount(t) >= 5 }, "page 1's batches published")
	c.Shutdown(1)
	c.Shutdown(2)
	testenv.Eventually(t, time.Minute, func() bool {
		return errors.Is(mq.Available(t.Context()), msg.ErrJetStreamUnavailable)
	}, "the cluster finding its quorum lost")
	g.release()
	var passErr error
	select {
	case passErr = <-done:
	case <-time.After(3 * time.Minute):
		t.Fatal("the pass did not end within 3 minutes of the quorum loss")
	}
	if !errors.Is(passErr, msg.ErrJetStreamUnavailable) || failure.ClassOf(passErr) != failure.ClassFleetWide ||
		app.ExitCode(passErr) != app.ExitFleetWide {
		t.Fatalf("pass ended with %v (class %v, exit %d; outcome %+v), want fleet-wide JetStream unavailable, exit 3",
			passErr, failure.ClassOf(passErr), app.ExitCode(passErr), first)
	}

	c.Start(1)
	c.Start(2)
	// The queue's stream and the ledger's bucket each elect their leader
	// apart (CI read the ledger while only the queue had one).
	c.WaitReady(time.Minute)
	ids, err := l.RunIDs(t.Context())
	if err != nil || len(ids) != 1 {
		t.Fatalf("runs %v, %v", ids, err)
	}
	mid, err := l.GetRun(t.Context(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if mid.State != ledger.RunPlanning || mid.PlanningComplete {
		t.Fatalf("run after the failed pass: %+v, want still planning", mid)
	}
	var out plan.Outcome
	// The lock of the failed pass may outlive it by its TTL.
	testenv.EventuallyOK(t, time.Minute, func() error {
		out, err = parts.Planner(cfg).Run(t.Context())
		if err == nil && out.Skipped {
			return errors.New("skipped: " + out.Reason)
		}
		return err
	}, "the next pass")
	if !out.Resumed || out.Run != mid.ID {
		t.Fatalf("outcome %+v, want run %s resumed", out, mid.ID)
	}
	rec, err := l.GetRun(t.Context(), out.Run)
	if err != nil || !rec.PlanningComplete {
		t.Fatalf("run record %+v, %v", rec, err)
	}
	checkBatches(t, e.batches(t), slices.Collect(sim.HostListTruth(rec.After, rec.Before)), cfg.BatchSize, rec)
}
