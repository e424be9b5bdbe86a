package natsperm_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/runstat"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// syncBuf is a log sink the NATS client's goroutines write to.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// conn connects as role to n, logging to log.
func conn(t *testing.T, n *testrun.SecureNATS, role natsperm.Role, log *syncBuf) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := app.Connect(n.Config(role), "qfetch-"+string(role), slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		t.Fatalf("%s connects: %v", role, err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

var appRole = map[natsperm.Role]app.Role{natsperm.Planner: app.RolePlanner, natsperm.Worker: app.RoleWorker, natsperm.Exporter: app.RoleExporter}

// A clean run with every process on its own role's NATS user, on a TLS
// server with natsperm's permissions: each role does its whole job inside
// its rights, and the server refuses nothing.
func TestEveryRoleDoesItsJobInsideItsRights(t *testing.T) {
	e := testrun.New(t, testrun.Options{Hosts: 1000, BatchSize: 100, PageSize: 300,
		Waits: qualys.Waits{Concurrency: 300 * time.Millisecond, RateLimit: time.Second, Maintenance: time.Second}})
	// A batch retried (a retry schedule, a failure count) and a maintenance
	// (the fleet's hold): the workers' rarer writes.
	for _, f := range []qualysim.FaultKind{qualysim.FaultCut, qualysim.FaultMaintenance} {
		if err := e.Sim.ForceFault(qualysim.Detection, f, 1); err != nil {
			t.Fatal(err)
		}
	}
	n := testrun.StartSecureNATS(t)
	ctx := t.Context()
	var log syncBuf
	conns := map[natsperm.Role]*nats.Conn{}
	parts := map[natsperm.Role]app.Parts{}
	// The planner first: it alone creates the streams and buckets (#17).
	for _, r := range []natsperm.Role{natsperm.Planner, natsperm.Worker, natsperm.Exporter} {
		nc, js := conn(t, n, r, &log)
		q, err := app.Queue(ctx, js, n.Config(r), config.Fleet{MaxInFlight: 2}, 0, appRole[r])
		if err != nil {
			t.Fatalf("%s sets up: %v\nlog:\n%s", r, err, log.String())
		}
		conns[r] = nc
		parts[r] = app.Parts{Log: slog.New(slog.NewTextHandler(&log, nil)), Qualys: e.Client, Store: e.Store, Queue: q,
			Prefix: testrun.Prefix, Owner: string(r)}
	}

	p := parts[natsperm.Planner].Planner(plan.Config{BatchSize: 100, PageSize: 300, Now: func() time.Time { return e.Sim.Clock().Now() }})
	out, err := p.Run(ctx)
	if err != nil {
		t.Fatalf("planner: %v\nlog:\n%s", err, log.String())
	}
	w := parts[natsperm.Worker].Worker(fetch.Config{Slots: 2, PullWait: 200 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond, ProbeEvery: 200 * time.Millisecond}, nil)
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(wctx, wctx) })
	complete := func() bool {
		r, err := parts[natsperm.Planner].Queue.GetRun(ctx, out.Run)
		return err == nil && r.State == ledger.RunComplete
	}
	testenv.Eventually(t, 60*time.Second, complete, "the run did not complete")
	stop()
	wg.Wait()
	results, err := parts[natsperm.Planner].Queue.DoneBatches(ctx, out.Run)
	if err != nil {
		t.Fatal(err)
	}
	retried := 0
	for _, r := range results {
		if r.Delivery > 1 {
			retried++
		}
	}
	if retried == 0 {
		t.Error("no batch was retried: the forced faults did not happen")
	}

	// The exporter's and the worker's reporter: metrics and status.json.
	for _, r := range []natsperm.Role{natsperm.Exporter, natsperm.Worker} {
		rep := parts[r].Reporter(runstat.ReporterConfig{Every: time.Hour}, nil)
		if err := rep.Refresh(ctx); err != nil {
			t.Errorf("%s's reporter: %v", r, err)
		}
	}

	// The workers finished the run but hold no right on the watermark
	// (#17): the planner's step moves it over the sealed run.
	if wm, err := parts[natsperm.Planner].Queue.Watermark(ctx); !errors.Is(err, ledger.ErrNoWatermark) {
		t.Errorf("the watermark moved before the planner's step: %+v, %v", wm, err)
	}
	if _, err := p.AdvanceWatermark(ctx); err != nil {
		t.Errorf("the planner advances the watermark: %v\nlog:\n%s", err, log.String())
	}

	// The operator's commands read and change what they must.
	nc, js := conn(t, n, natsperm.Operator, &log)
	conns[natsperm.Operator] = nc
	op, err := app.Open(ctx, js)
	if err != nil {
		t.Fatalf("operator opens: %v", err)
	}
	wm, err := op.Watermark(ctx)
	if err != nil || wm.Run != out.Run || wm.By != string(natsperm.Planner) {
		t.Errorf("operator reads the watermark: %+v, %v; want run %s, moved by the planner", wm, err, out.Run)
	}
	if _, err := op.WatermarkHistory(ctx); err != nil {
		t.Errorf("operator reads the watermark's history: %v", err)
	}
	if _, err := op.State(ctx); err != nil {
		t.Errorf("operator reads the queue: %v", err)
	}
	if _, err := op.DeadLetters(ctx, ""); err != nil {
		t.Errorf("operator lists dead letters: %v", err)
	}
	if _, err := op.Fleet("operator").State(ctx); err != nil {
		t.Errorf("operator reads the fleet: %v", err)
	}
	if err := op.SetWatermark(ctx, ledger.Watermark{Time: wm.Time, Run: wm.Run, By: "operator", At: time.Now().UTC()}); err != nil {
		t.Errorf("operator sets the watermark: %v", err)
	}

	sentinel := errors.New("sentinel")
	for r, nc := range conns {
		if err := app.Refused(nc, sentinel); err != sentinel {
			t.Errorf("NATS refused the %s: %v", r, err)
		}
	}
	if strings.Contains(log.String(), "NATS refused") {
		t.Errorf("refusals logged:\n%s", log.String())
	}
}

// Each role is refused outside its rights, with an error naming what was
// refused, classed fleet-wide (exit code 3).
func TestEachRoleIsRefusedOutsideItsRights(t *testing.T) {
	n := testrun.StartSecureNATS(t)
	var log syncBuf
	// The planner sets everything up, a worker the consumer; a dead letter
	// and a batch are there to be misused.
	setup := map[natsperm.Role]app.JetStream{}
	for _, r := range []natsperm.Role{natsperm.Planner, natsperm.Worker} {
		_, js := conn(t, n, r, &log)
		q, err := app.Queue(t.Context(), js, n.Config(r), config.Fleet{MaxInFlight: 2}, 0, appRole[r])
		if err != nil {
			t.Fatalf("%s sets up: %v\nlog:\n%s", r, err, log.String())
		}
		setup[r] = q
	}
	run := "20260110T000000Z-perm"
	b := msg.Batch{Run: run, Number: 1, Hosts: 1, IDs: "1", Before: time.Now().UTC()}
	pub := setup[natsperm.Planner].Publisher(msg.PublisherOptions{Attempts: 1})
	if err := pub.Publish(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if err := pub.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	m, err := setup[natsperm.Worker].Next(t.Context(), 5*time.Second)
	if err != nil || m == nil {
		t.Fatalf("worker pulls the batch: %v, %v", m, err)
	}
	if err := setup[natsperm.Worker].DeadLetter(t.Context(), m, "test", errors.New("boom")); err != nil {
		t.Fatal(err)
	}

	wm := ledger.Watermark{Time: time.Now().UTC(), Run: run, By: "attacker", At: time.Now().UTC()}
	publishBatch := func(ctx context.Context, q app.JetStream, _ jetstream.JetStream) error {
		p := q.Publisher(msg.PublisherOptions{Attempts: 1})
		if err := p.Publish(ctx, msg.Batch{Run: run, Number: 2, Hosts: 1, IDs: "2", Before: time.Now().UTC()}); err != nil {
			return err
		}
		return p.Wait(ctx)
	}
	setWatermark := func(ctx context.Context, q app.JetStream, _ jetstream.JetStream) error {
		return q.SetWatermark(ctx, wm)
	}
	advanceWatermark := func(ctx context.Context, q app.JetStream, _ jetstream.JetStream) error {
		_, err := q.AdvanceWatermark(ctx, wm)
		return err
	}
	// What a hostile pre-creation does, before any planner ran: the
	// request is refused whether or not the object exists.
	createStream := func(ctx context.Context, _ app.JetStream, js jetstream.JetStream) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: msg.StreamDLQ, Subjects: []string{"qfetch.dlq.>"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.MemoryStorage})
		return err
	}
	createBucket := func(ctx context.Context, _ app.JetStream, js jetstream.JetStream) error {
		_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: ledger.BucketState, Storage: jetstream.MemoryStorage, TTL: time.Minute})
		return err
	}
	updateBucket := func(ctx context.Context, _ app.JetStream, js jetstream.JetStream) error {
		_, err := js.UpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: ledger.BucketState, TTL: time.Minute})
		return err
	}
	dropDeadLetter := func(ctx context.Context, q app.JetStream, _ jetstream.JetStream) error {
		_, err := q.DropDeadLetter(ctx, 1, func(msg.DeadLetter) error { return nil })
		return err
	}
	replayDeadLetter := func(ctx context.Context, q app.JetStream, _ jetstream.JetStream) error {
		_, err := q.Replay(ctx, 1, func(msg.Batch) error { return nil })
		return err
	}
	takeLock := func(name string) attempt {
		return func(ctx context.Context, q app.JetStream, _ jetstream.JetStream) error {
			_, err := q.Acquire(ctx, name, "attacker", time.Minute)
			return err
		}
	}
	deleteStream := func(ctx context.Context, _ app.JetStream, js jetstream.JetStream) error {
		return js.DeleteStream(ctx, msg.StreamBatches)
	}
	purgeDLQ := func(ctx context.Context, _ app.JetStream, js jetstream.JetStream) error {
		s, err := js.Stream(ctx, msg.StreamDLQ)
		if err != nil {
			return err
		}
		return s.Purge(ctx)
	}
	raiseFleetCap := func(ctx context.Context, _ app.JetStream, js jetstream.JetStream) error {
		_, err := js.UpdateConsumer(ctx, msg.StreamBatches, jetstream.ConsumerConfig{Durable: msg.ConsumerWorkers,
			FilterSubject: "qfetch.batch.>", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000, MaxDeliver: -1})
		return err
	}
	changeStream := func(ctx context.Context, _ app.JetStream, js jetstream.JetStream) error {
		s, err := js.Stream(ctx, msg.StreamDLQ)
		if err != nil {
			return err
		}
		cfg := s.CachedInfo().Config
		cfg.MaxAge = time.Second // dead letters gone in a second
		_, err = js.UpdateStream(ctx, cfg)
		return err
	}
	pauseFleet := func(ctx context.Context, q app.JetStream, _ jetstream.JetStream) error {
		_, err := q.Fleet("attacker").Pause(ctx, ledger.PauseFault, "attack")
		return err
	}
	forgeDeadLetter := func(ctx context.Context, _ app.JetStream, js jetstream.JetStream) error {
		_, err := js.Publish(ctx, "qfetch.dlq."+run, []byte(`{"run":"`+run+`","subject":"qfetch.batch.`+run+`"}`))
		return err
	}

	tests := []struct {
		role natsperm.Role
		what string
		do   attempt
	}{
		{natsperm.Exporter, "move the watermark", setWatermark},
		{natsperm.Exporter, "publish a batch", publishBatch},
		{natsperm.Exporter, "take the planner lock", takeLock("planner")},
		{natsperm.Exporter, "replay a dead letter", replayDeadLetter},
		{natsperm.Exporter, "pause the fleet", pauseFleet},
		{natsperm.Exporter, "forge a dead letter", forgeDeadLetter},
		{natsperm.Exporter, "create a stream", createStream},
		{natsperm.Exporter, "create a bucket", createBucket},
		{natsperm.Worker, "move the watermark", setWatermark},
		{natsperm.Worker, "advance the watermark", advanceWatermark},
		{natsperm.Worker, "create a stream", createStream},
		{natsperm.Worker, "create a bucket", createBucket},
		{natsperm.Worker, "update a bucket", updateBucket},
		{natsperm.Worker, "replay a dead letter", replayDeadLetter},
		{natsperm.Worker, "drop a dead letter", dropDeadLetter},
		{natsperm.Worker, "take the planner lock", takeLock("planner")},
		{natsperm.Worker, "change a stream", changeStream},
		{natsperm.Worker, "delete the batch stream", deleteStream},
		{natsperm.Planner, "raise the fleet cap", raiseFleetCap},
		{natsperm.Planner, "forge a dead letter", forgeDeadLetter},
		{natsperm.Planner, "pause the fleet", pauseFleet},
		{natsperm.Planner, "purge the dead letters", purgeDLQ},
		{natsperm.Operator, "delete the batch stream", deleteStream},
		{natsperm.Operator, "change a stream", changeStream},
		{natsperm.Operator, "raise the fleet cap", raiseFleetCap},
	}
	t.Run("refused", func(t *testing.T) {
		for _, tt := range tests {
			refused(t, n, tt.role, tt.what, tt.do)
		}
	})
	// The operator may do what the others may not: replay the dead letter.
	_, js := conn(t, n, natsperm.Operator, &log)
	op, err := app.Open(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.Replay(t.Context(), 1, func(msg.Batch) error { return nil }); err != nil {
		t.Errorf("operator replays a dead letter: %v\nlog:\n%s", err, log.String())
	}
	if n, err := op.DeadLetterCount(t.Context(), ""); err != nil || n != 0 {
		t.Errorf("%d dead letters after the replay (%v), want 0", n, err)
	}
}

type attempt func(ctx context.Context, q app.JetStream, js jetstream.JetStream) error

// refused runs do as role on its own connection, in parallel with the
// other attempts, and wants a refusal classed fleet-wide.
func refused(t *testing.T, n *testrun.SecureNATS, role natsperm.Role, what string, do attempt) {
	t.Run(string(role)+" may not "+what, func(t *testing.T) {
		t.Parallel()
		var log syncBuf
		nc, js := conn(t, n, role, &log)
		var q app.JetStream
		var err error
		if role == natsperm.Operator {
			q, err = app.Open(t.Context(), js)
		} else {
			q, err = app.Queue(t.Context(), js, n.Config(role), config.Fleet{MaxInFlight: 2}, 0, appRole[role])
		}
		if err != nil {
			t.Fatalf("%s sets up inside its rights: %v\nlog:\n%s", role, err, log.String())
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		err = app.Refused(nc, do(ctx, q, js))
		var re *natsperm.RefusedError
		if !errors.As(err, &re) {
			t.Fatalf("got %v, want a refusal\nlog:\n%s", err, log.String())
		}
		if !errors.Is(err, nats.ErrPermissionViolation) || failure.ClassOf(err) != failure.ClassFleetWide ||
			app.ExitCode(err) != app.ExitFleetWide {
			t.Errorf("refusal %v: class %v, exit code %d; want fleet-wide, 3", err, failure.ClassOf(err), app.ExitCode(err))
		}
		if !strings.Contains(err.Error(), "NATS refused this process to") || !strings.Contains(log.String(), "NATS refused") {
			t.Errorf("the error and the log must say what NATS refused: %v\nlog:\n%s", err, log.String())
		}
	})
}
