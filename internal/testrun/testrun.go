// Package testrun sets up a whole qfetch on real parts for tests: the
// simulator, an embedded NATS, a MinIO bucket, and the real planner, worker
// and finisher that make runs.
package testrun

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
)

// Prefix is the object prefix of every Env.
const Prefix = "qualys"

// Options shape an Env; zero values take the defaults.
type Options struct {
	Hosts       int64  // simulated hosts; default 1000
	Seed        uint64 // simulator seed; default 1
	MaxFailures int    // msg.Config.MaxFailures; 1 makes one forced fault a dead letter
	BatchSize   int    // default 100
	PageSize    int    // Host List page size; default 200
	// ConcurrencyLimit is the simulator's (0: its default of 2;
	// qualysim.Off for none).
	ConcurrencyLimit int
}

// Env is one test's qfetch. Its parts are there to be used directly.
type Env struct {
	T       *testing.T
	Sim     *qualysim.Sim
	SimURL  string
	Client  *qualys.Client
	NATSURL string
	JS      jetstream.JetStream
	Q       app.JetStream
	Store   *objstore.S3
	MinIO   *testenv.MinIOServer
	Log     *slog.Logger

	opts Options
}

// New starts the parts for t; they stop when t ends. The simulator's clock
// starts ten days in, so the first window holds every host.
func New(t *testing.T, o Options) *Env {
	t.Helper()
	if o.Hosts == 0 {
		o.Hosts = 1000
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.BatchSize == 0 {
		o.BatchSize = 100
	}
	if o.PageSize == 0 {
		o.PageSize = 200
	}
	sim := qualysim.New(qualysim.Config{Seed: o.Seed, Hosts: o.Hosts, RateLimit: qualysim.Off, ConcurrencyLimit: o.ConcurrencyLimit})
	t.Cleanup(sim.Close)
	sim.Advance(10 * 24 * time.Hour)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	client, err := qualys.New(qualys.Config{BaseURL: srv.URL, Username: sim.Username(), Password: sim.Password(), IdleTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	url := testenv.NATSURL(t)
	js := Connect(t, url)
	mq, err := msg.Setup(t.Context(), js, msg.Config{MaxFailures: o.MaxFailures})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Setup(t.Context(), js, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	q := app.JetStream{Queue: mq, Ledger: l}
	m := testenv.MinIO(t)
	s3, err := objstore.NewS3(objstore.S3Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Bucket: m.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	return &Env{T: t, Sim: sim, SimURL: srv.URL, Client: client, NATSURL: url, JS: js, Q: q, Store: s3, MinIO: m,
		Log: slog.New(slog.DiscardHandler), opts: o}
}

// Connect opens a JetStream connection to url for the rest of the test.
func Connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Finisher is the finisher planners and workers of this Env use.
func (e *Env) Finisher() *finish.Finisher {
	return finish.New(finish.Config{Prefix: Prefix, Owner: "test"}, e.Q.Ledger, e.Store, e.Log)
}

// Planner is a planner on the simulator's clock.
func (e *Env) Planner() *plan.Planner {
	return plan.New(plan.Config{Prefix: Prefix, BatchSize: e.opts.BatchSize, PageSize: e.opts.PageSize, Owner: "planner",
		Now: func() time.Time { return e.Sim.Clock().Now() }}, e.Q.Queue, e.Q.Ledger, e.Client, e.Store, e.Finisher(), e.Log)
}

// Plan runs one planner pass, failing the test on an error.
func (e *Env) Plan() plan.Outcome {
	e.T.Helper()
	out, err := e.Planner().Run(e.T.Context())
	if err != nil {
		e.T.Fatal(err)
	}
	return out
}

// Work runs a worker with two slots until cond holds (or fails the test
// after a minute).
func (e *Env) Work(cond func() bool) {
	e.T.Helper()
	w := fetch.New(fetch.Config{Slots: 2, Prefix: Prefix, PullWait: 200 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, fetch.Deps{
		Queue: e.Q.Queue, Ledger: e.Q.Ledger, Publisher: func() fetch.Publisher { return e.Q.Publisher(msg.PublisherOptions{}) },
		API: e.Client, Store: e.Store, Finish: e.Finisher(), Log: e.Log,
	})
	ctx, cancel := context.WithCancel(e.T.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(ctx, ctx) })
	defer func() { cancel(); wg.Wait() }()
	testenv.Eventually(e.T, 60*time.Second, cond, "worker did not get there")
}

// Record reads run id's record.
func (e *Env) Record(id string) ledger.RunRecord {
	e.T.Helper()
	r, err := e.Q.GetRun(e.T.Context(), id)
	if err != nil {
		e.T.Fatal(err)
	}
	return r
}

// Complete is a condition for Work: run id is complete.
func (e *Env) Complete(id string) func() bool {
	return func() bool {
		r, err := e.Q.GetRun(e.T.Context(), id)
		return err == nil && r.State == ledger.RunComplete
	}
}

// FailedRun plans a run in which one batch is dead-lettered (MaxFailures
// must be 1) and works it until every other batch is done.
func (e *Env) FailedRun() ledger.RunRecord {
	e.T.Helper()
	if err := e.Sim.ForceFault(qualysim.Detection, qualysim.FaultCut, 1); err != nil {
		e.T.Fatal(err)
	}
	out := e.Plan()
	planned := e.Record(out.Run).BatchesPlanned
	if planned < 2 {
		e.T.Fatalf("run %s has %d batches; the test needs several", out.Run, planned)
	}
	e.Work(func() bool {
		n, _ := e.Q.CountDone(e.T.Context(), out.Run)
		dl, _ := e.Q.DeadLetters(e.T.Context(), out.Run)
		return n == planned-1 && len(dl) == 1
	})
	return e.Record(out.Run)
}
