// Package testrun is the one test environment: the simulator, an embedded
// NATS, a MinIO bucket, and the roles app builds on them that make runs.
package testrun

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

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
	Hosts int64  // simulated hosts; default 1000
	Seed  uint64 // simulator seed; default 1
	// Sim is the rest of the simulator's configuration (faults, limits,
	// sizes); Seed and Hosts come from above, and its rate limit is off.
	// Its ConcurrencyLimit 0 is the simulator's default of 2.
	Sim qualysim.Config
	// Wrap, if set, wraps the simulator's handler (to hold or watch
	// requests).
	Wrap func(http.Handler) http.Handler
	// KeepClock leaves the simulator's clock at its start; by default it
	// starts ten days in, so the first window holds every host.
	KeepClock bool

	MaxInFlight int           // msg.Config.MaxInFlight (the consumer's cap; 0: msg's default)
	AckWait     time.Duration // msg.Config.AckWait (0: msg's default)
	MaxFailures int           // msg.Config.MaxFailures; 1 makes one forced fault a dead letter
	Waits       qualys.Waits  // the client's back-pressure waits (zero: the client's defaults)
	PartSize    uint64        // the store's multipart part size (0: the default)

	BatchSize int // default 100
	PageSize  int // Host List page size; default 200
	// KB is the planners' KnowledgeBase step. Its zero value is off (the
	// binaries' default is on): the Env's users count the batches, calls,
	// objects and dead letters of their detection runs, which a KB pass
	// beside them would change. A test of the KB step sets Enabled.
	KB plan.KBConfig
}

func (o Options) withDefaults() Options {
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
	return o
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

// New starts the parts for t; they stop when t ends.
func New(t *testing.T, o Options) *Env {
	t.Helper()
	o = o.withDefaults()
	sc := o.Sim
	sc.Seed, sc.Hosts, sc.RateLimit = o.Seed, o.Hosts, qualysim.Off
	sim := qualysim.New(sc)
	t.Cleanup(sim.Close)
	if !o.KeepClock {
		sim.Advance(10 * 24 * time.Hour)
	}
	var h http.Handler = sim
	if o.Wrap != nil {
		h = o.Wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	url := testenv.NATSURL(t)
	js := Connect(t, url)
	mq, err := msg.Setup(t.Context(), js, msg.Config{MaxInFlight: o.MaxInFlight, AckWait: o.AckWait, MaxFailures: o.MaxFailures})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Setup(t.Context(), js, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m := testenv.MinIO(t)
	s3, err := objstore.NewS3(objstore.S3Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey,
		Bucket: m.Bucket, PartSize: o.PartSize})
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{T: t, Sim: sim, SimURL: srv.URL, NATSURL: url, JS: js, Q: app.JetStream{Queue: mq, Ledger: l},
		Store: s3, MinIO: m, Log: slog.New(slog.DiscardHandler), opts: o}
	e.Client = e.NewClient(sim.Password())
	return e
}

// NewClient is a client of the simulator that logs in with password.
func (e *Env) NewClient(password string) *qualys.Client {
	e.T.Helper()
	c, err := qualys.New(qualys.Config{BaseURL: e.SimURL, Username: e.Sim.Username(), Password: password,
		IdleTimeout: 2 * time.Second, Waits: e.opts.Waits})
	if err != nil {
		e.T.Fatal(err)
	}
	return c
}

// Parts are the Env's parts for a process called owner ("": the role's
// default). Their finisher is one of their own; set Finish to choose.
func (e *Env) Parts(owner string) app.Parts {
	return app.Parts{Log: e.Log, Qualys: e.Client, Store: e.Store, Queue: e.Q, Prefix: Prefix, Owner: owner}
}

// NoFinish is a finisher that finishes nothing: for planners and workers
// whose test checks what happens before a run is finished.
var NoFinish app.Finisher = noFinish{}

type noFinish struct{}

func (noFinish) TryFinish(context.Context, string) error { return nil }

// Connect opens a JetStream connection to url for the rest of the test.
func Connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	return testenv.Connect(t, url)
}

// Finisher is the finisher planners and workers of this Env use.
func (e *Env) Finisher() *finish.Finisher {
	return e.Parts("test").Finisher(finish.Config{})
}

// Planner is a planner on the simulator's clock.
func (e *Env) Planner() *plan.Planner {
	p := e.Parts("planner")
	p.Finish = e.Finisher()
	return p.Planner(plan.Config{BatchSize: e.opts.BatchSize, PageSize: e.opts.PageSize, KB: e.opts.KB,
		Now: func() time.Time { return e.Sim.Clock().Now() }})
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
	p := e.Parts("")
	p.Finish = e.Finisher()
	e.WorkWith(p, cond)
}

// WorkWith runs a worker with two slots on p until cond holds (or fails
// the test after a minute).
func (e *Env) WorkWith(p app.Parts, cond func() bool) {
	e.T.Helper()
	w := p.Worker(fetch.Config{Slots: 2, PullWait: 200 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(e.T.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(ctx, ctx) })
	defer func() { cancel(); wg.Wait() }()
	testenv.Eventually(e.T, 60*time.Second, cond, "worker did not get there")
}

// AdvanceWatermark runs the planner's watermark step (plan.Advancer) as
// the next planner pass would, and returns the watermark it leaves.
func (e *Env) AdvanceWatermark() (ledger.Watermark, error) {
	return plan.Advancer{Ledger: e.Q.Ledger, Store: e.Store, Prefix: Prefix, By: "test", Now: e.Sim.Clock().Now,
		Log: e.Log}.Advance(e.T.Context())
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
