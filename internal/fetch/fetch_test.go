package fetch_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const run = "20260110T000000Z-test"

// testWaits shorten Qualys' back-pressure waits so tests wait in
// milliseconds what production waits in seconds.
var testWaits = qualys.Waits{Concurrency: 300 * time.Millisecond, RateLimit: time.Second, Maintenance: time.Second}

// env is one test's world: the simulator, a real NATS and a MinIO bucket,
// and a run's batches published the way the planner does.
type env struct {
	t      *testing.T
	o      opts
	r      *testrun.Env
	sim    *qualysim.Sim
	js     jetstream.JetStream
	q      app.JetStream
	minio  *testenv.MinIOServer
	store  *objstore.S3
	after  time.Time
	before time.Time
	batch  []msg.Batch
}

type opts struct {
	hosts       int64
	batchSize   int
	maxInFlight int
	ackWait     time.Duration
	maxFailures int
	sim         qualysim.Config
	wrap        func(http.Handler) http.Handler // around the simulator
	// noRun publishes the batches without their run's record, as only a
	// forged or misrouted message comes.
	noRun bool
	// noBatches records no detection run and publishes none of its
	// batches: the test publishes what it needs (a KnowledgeBase pass).
	noBatches bool
}

func setup(t *testing.T, o opts) *env {
	t.Helper()
	if o.maxInFlight == 0 {
		o.maxInFlight = 2
	}
	if o.ackWait == 0 {
		o.ackWait = 30 * time.Second
	}
	if o.sim.ConcurrencyLimit == 0 {
		o.sim.ConcurrencyLimit = qualysim.Off
	}
	r := testrun.New(t, testrun.Options{Hosts: o.hosts, Seed: 11, Sim: o.sim, MaxInFlight: o.maxInFlight, AckWait: o.ackWait,
		MaxFailures: o.maxFailures, Waits: testWaits, PartSize: objstore.MinPartSize, Wrap: o.wrap})
	sim, q := r.Sim, r.Q
	e := &env{t: t, o: o, r: r, sim: sim, js: r.JS, q: q, minio: r.MinIO, store: r.Store,
		before: sim.Clock().Now().Truncate(time.Second)}

	if o.noBatches {
		return e
	}
	// Record the run, then publish its batches, as the planner would. The
	// run is still planning as far as a finisher can tell: tests that
	// complete it say so (setRun).
	if !o.noRun {
		if _, err := q.CreateRun(t.Context(), ledger.RunRecord{ID: run, After: e.after, Before: e.before, State: ledger.RunFetching}); err != nil {
			t.Fatal(err)
		}
	}
	ids := slices.Collect(sim.HostListTruth(e.after, e.before))
	pub := q.Publisher(msg.PublisherOptions{})
	for n := 0; len(ids) > 0; n++ {
		k := min(o.batchSize, len(ids))
		b := msg.Batch{Run: run, Number: n + 1, After: e.after, Before: e.before, IDs: hostids.Of(ids[:k]).String(), Hosts: k}
		if err := pub.Publish(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		e.batch = append(e.batch, b)
		ids = ids[k:]
	}
	if err := pub.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e
}

// worker builds a worker against the env with a client of its own.
func (e *env) worker(cfg fetch.Config, password string) *fetch.Worker {
	e.t.Helper()
	if password == "" {
		password = e.sim.Password()
	}
	client := e.r.NewClient(password)
	if cfg.ProbeEvery == 0 {
		cfg.ProbeEvery = 200 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 100 * time.Millisecond
	}
	if cfg.PullWait == 0 {
		cfg.PullWait = 200 * time.Millisecond
	}
	return e.parts(client).Worker(cfg, nil)
}

// start runs w until the test ends or stop is called; stop waits for it.
func (e *env) start(w *fetch.Worker) (stop func()) {
	ctx, cancel := context.WithCancel(e.t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Run(ctx, ctx); err != nil {
			e.t.Errorf("worker: %v", err)
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	e.t.Cleanup(stop)
	return stop
}

func (e *env) done() int {
	n, err := e.q.CountDone(e.t.Context(), run)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// queued is the number of batch messages still in the stream. A worker
// records a batch done, then acks it: a test that stops the worker as soon
// as done() counts it can cut the ack off (the batch is handed back and a
// redelivery repeats it), so tests that check queued() == 0 after the stop
// wait for it before stopping.
func (e *env) queued() uint64 {
	s, err := e.js.Stream(e.t.Context(), msg.StreamBatches)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

func (e *env) deadLetters() []msg.DeadLetter {
	dl, err := e.q.DeadLetters(e.t.Context(), run)
	if err != nil {
		e.t.Fatal(err)
	}
	return dl
}

func (e *env) incompleteUploads() int {
	n := 0
	for u := range e.minio.Client.ListIncompleteUploads(e.t.Context(), e.minio.Bucket, "", true) {
		if u.Err != nil {
			e.t.Fatal(u.Err)
		}
		n++
	}
	return n
}

// checkBucket compares every stored batch with the simulator's truth, host
// by host: each object well-formed, each host of the batch with its exact
// detection count, no host twice.
func (e *env) checkBucket(batches []msg.Batch) {
	e.t.Helper()
	all, err := qualysim.ParseStatuses("New,Active,Re-Opened,Fixed")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, b := range batches {
		ids, err := qualysim.ParseIDs(b.IDs)
		if err != nil {
			e.t.Fatal(err)
		}
		want := e.sim.DetectionCounts(qualysim.Filter{IDs: ids, After: b.After, Before: b.Before, Statuses: all})
		key := objstore.DetectionKey("qualys", run, b.Number, 1)
		r, err := e.store.Get(e.t.Context(), key)
		if err != nil {
			e.t.Fatalf("batch %d: %v", b.Number, err)
		}
		got := map[uint64]bool{}
		v := qualys.NewValidator(r, qualys.ValidatorConfig{Root: qualys.RootDetections, OnID: func(id uint64) {
			if got[id] {
				e.t.Errorf("batch %d: host %d twice", b.Number, id)
			}
			got[id] = true
		}})
		if _, err := io.Copy(io.Discard, v); err != nil {
			e.t.Fatalf("batch %d: stored object: %v", b.Number, err)
		}
		r.Close()
		if len(got) != len(want) || v.Summary().Hosts != len(want) {
			e.t.Fatalf("batch %d: %d hosts stored, truth %d", b.Number, len(got), len(want))
		}
		total := 0
		for id, n := range want {
			if !got[id] {
				e.t.Fatalf("batch %d: host %d missing", b.Number, id)
			}
			total += n
		}
		if v.Summary().Detections != total {
			e.t.Fatalf("batch %d: %d detections stored, truth %d", b.Number, v.Summary().Detections, total)
		}
	}
}

func TestCleanRun(t *testing.T) {
	e := setup(t, opts{hosts: 3000, batchSize: 400})
	stop := e.start(e.worker(fetch.Config{Slots: 2}, ""))
	testenv.Eventually(t, 60*time.Second, func() bool { return e.done() == len(e.batch) && e.queued() == 0 },
		"batches not all done and acked")
	stop()
	e.checkBucket(e.batch)
	if n := e.queued(); n != 0 {
		t.Fatalf("%d batches still queued", n)
	}
	if n := e.incompleteUploads(); n != 0 {
		t.Fatalf("%d incomplete uploads", n)
	}
	results, err := e.q.DoneBatches(t.Context(), run)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if len(r.Objects) != 1 || r.Objects[0].SHA256 == "" || r.Objects[0].Bytes == 0 || r.HostsRequested == 0 {
			t.Fatalf("result %+v", r)
		}
		obj, err := e.store.Stat(t.Context(), r.Objects[0].Key)
		if err != nil || obj.Bytes != r.Objects[0].Bytes {
			t.Fatalf("%s: size %d recorded %d (%v)", r.Objects[0].Key, obj.Bytes, r.Objects[0].Bytes, err)
		}
	}
}

// TestFaultFates forces each fault class through the simulator and checks
// the batch's exact fate.
func TestFaultFates(t *testing.T) {
	tests := []struct {
		name    string
		fault   qualysim.FaultKind
		n       int
		wantDLQ bool
	}{
		{"500 is retried", qualysim.Fault500, 2, false},
		{"503 is retried", qualysim.Fault503, 1, false},
		{"999 is retried", qualysim.Fault999, 1, false},
		{"200 error document is retried", qualysim.FaultErrorDoc, 1, false},
		{"reset mid-body is retried", qualysim.FaultReset, 2, false},
		{"cut body is retried", qualysim.FaultCut, 2, false},
		{"stall is retried", qualysim.FaultStall, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, opts{hosts: 300, batchSize: 300, sim: qualysim.Config{
				Faults: qualysim.Faults{StallFor: time.Minute}}})
			if err := e.sim.ForceFault(qualysim.Detection, tt.fault, tt.n); err != nil {
				t.Fatal(err)
			}
			stop := e.start(e.worker(fetch.Config{Slots: 1}, ""))
			testenv.Eventually(t, 60*time.Second, func() bool { return e.done() == 1 && e.queued() == 0 }, "batch not done and acked")
			stop()
			e.checkBucket(e.batch)
			st := e.sim.Stats().Endpoints[qualysim.Detection]
			if st.Requests != int64(tt.n+1) {
				t.Fatalf("%d detection calls, want %d (faults then success): %v", st.Requests, tt.n+1, st.Outcomes)
			}
			if e.queued() != 0 || len(e.deadLetters()) != 0 || e.incompleteUploads() != 0 {
				t.Fatalf("queued %d, dead letters %d, incomplete uploads %d", e.queued(), len(e.deadLetters()), e.incompleteUploads())
			}
		})
	}
}

// TestRetriesSpentDeadLetter: a batch that fails every time is dead-lettered
// after MaxFailures attempts, with its last error, and no object exists.
func TestRetriesSpentDeadLetter(t *testing.T) {
	// The batch's every call is cut; the fleet's probe (a call of its
	// own) passes, so the failures are the batch's.
	d := &detectionCalls{refuse: func(string) bool { return true }}
	e := setupCalls(t, opts{hosts: 200, batchSize: 200, maxFailures: 3}, d)
	stop := e.start(e.worker(fetch.Config{Slots: 1}, ""))
	testenv.Eventually(t, 60*time.Second, func() bool { return len(e.deadLetters()) == 1 }, "no dead letter")
	stop()
	dl := e.deadLetters()[0]
	if dl.Class != "retryable" || dl.LastError == "" || dl.MsgID != e.batch[0].MsgID() {
		t.Fatalf("dead letter %+v", dl)
	}
	if n := d.batchCalls(); n != 3 {
		t.Fatalf("%d calls of the batch, want 3", n)
	}
	if _, err := e.store.Stat(t.Context(), objstore.DetectionKey("qualys", run, 1, 1)); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("object of a failed batch: %v", err)
	}
	if e.queued() != 0 || e.incompleteUploads() != 0 || e.done() != 0 {
		t.Fatalf("queued %d, incomplete %d, done %d", e.queued(), e.incompleteUploads(), e.done())
	}
}

// TestPermanentDeadLetters: a garbled message and a 400/1905 answer go to
// the DLQ at once.
func TestPermanentDeadLetters(t *testing.T) {
	e := setup(t, opts{hosts: 100, batchSize: 100})
	if _, err := e.js.Publish(t.Context(), msg.BatchSubject(run), []byte(`{"v":1,"run":`)); err != nil {
		t.Fatal(err)
	}
	bad := msg.Batch{Run: run, Number: 2, Before: e.before, IDs: "1-3", Hosts: 3, Params: map[string][]string{"qids": {"abc"}}}
	pub := e.q.Publisher(msg.PublisherOptions{})
	if err := pub.Publish(t.Context(), bad); err != nil {
		t.Fatal(err)
	}
	if err := pub.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	stop := e.start(e.worker(fetch.Config{Slots: 1}, ""))
	testenv.Eventually(t, 30*time.Second, func() bool { return len(e.deadLetters()) == 2 && e.done() == 1 && e.queued() == 0 },
		"dead letters not written, or a batch not acked")
	stop()
	for _, dl := range e.deadLetters() {
		if dl.Class != "permanent" || dl.Deliveries != 1 {
			t.Fatalf("dead letter %+v", dl)
		}
	}
	if e.queued() != 0 {
		t.Fatalf("%d still queued", e.queued())
	}
}

// TestBackPressureNeverDeadLetters: 409s delay the batch however many
// there are; with MaxFailures 1 a single counted failure would dead-letter.
func TestBackPressureNeverDeadLetters(t *testing.T) {
	e := setup(t, opts{hosts: 200, batchSize: 100, maxFailures: 1, sim: qualysim.Config{ConcurrencyLimit: 1}})
	// Hold the only concurrency slot with a stalled call from outside.
	e.sim.SetFaults(qualysim.Faults{StallFor: time.Minute})
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.FaultStall, 1); err != nil {
		t.Fatal(err)
	}
	client, _ := qualys.New(qualys.Config{BaseURL: e.r.SimURL, Username: e.sim.Username(), Password: e.sim.Password(), IdleTimeout: time.Minute})
	holdCtx, release := context.WithCancel(t.Context())
	resp, err := client.Detections(holdCtx, qualys.DetectionQuery{IDs: []uint64{1}}.Form(), nil)
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, resp)
	testenv.Eventually(t, 10*time.Second, func() bool { return e.sim.Running(qualysim.Detection) == 1 }, "hold call not running")

	w := e.worker(fetch.Config{Slots: 2}, "")
	stop := e.start(w)
	testenv.Eventually(t, 20*time.Second, func() bool {
		return e.sim.Stats().Endpoints[qualysim.Detection].Outcomes["409/1960"] >= 3
	}, "no 409s seen")
	if len(e.deadLetters()) != 0 {
		t.Fatal("back-pressure dead-lettered a batch")
	}
	release()
	resp.Close()
	testenv.Eventually(t, 60*time.Second, func() bool { return e.done() == len(e.batch) }, "batches not done after the slot freed")
	stop()
	e.checkBucket(e.batch)
	if len(e.deadLetters()) != 0 {
		t.Fatal("dead letters after back-pressure")
	}
}

// TestWrongPasswordKeepsQueue: a fleet-wide fault consumes nothing: every
// batch stays queued, nothing is dead-lettered, the worker is not ready; a
// fixed password lets it resume by itself.
func TestWrongPasswordKeepsQueue(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 500, batchSize: 100}, d)
	e.sim.SetRejectLogins(true)
	w := e.worker(fetch.Config{Slots: 2, ProbeEvery: 100 * time.Millisecond}, "")
	stop := e.start(w)
	testenv.Eventually(t, 10*time.Second, func() bool { return w.Ready() != nil }, "worker still ready")
	// Let the probe (a detection call without ids) fail a number of times.
	testenv.Eventually(t, 20*time.Second, func() bool {
		_, probes := d.stats()
		return len(probes) >= 4
	}, "probe not running")
	if n := e.queued(); n != uint64(len(e.batch)) {
		t.Fatalf("%d queued, want %d", n, len(e.batch))
	}
	if len(e.deadLetters()) != 0 || e.done() != 0 {
		t.Fatalf("dead letters %d, done %d", len(e.deadLetters()), e.done())
	}
	if calls := d.batchCalls(); calls > 2 {
		t.Fatalf("%d batch calls during the fault: the worker kept pulling", calls)
	}
	e.sim.SetRejectLogins(false)
	testenv.Eventually(t, 60*time.Second, func() bool { return e.done() == len(e.batch) }, "not resumed after the fault cleared")
	if w.Ready() != nil {
		t.Fatalf("still not ready: %v", w.Ready())
	}
	stop()
	e.checkBucket(e.batch)
}

// TestFleetRespectsCap: three workers with four slots each against a fleet
// cap of two: the simulator never sees more than two calls at once, and
// every batch is stored once.
func TestFleetRespectsCap(t *testing.T) {
	e := setup(t, opts{hosts: 4000, batchSize: 200, maxInFlight: 2})
	var stops []func()
	for range 3 {
		stops = append(stops, e.start(e.worker(fetch.Config{Slots: 4}, "")))
	}
	testenv.Eventually(t, 120*time.Second, func() bool { return e.done() == len(e.batch) }, "batches not all done")
	for _, s := range stops {
		s()
	}
	st := e.sim.Stats().Endpoints[qualysim.Detection]
	if st.PeakRunning > 2 || st.PeakRunning < 1 {
		t.Fatalf("peak concurrent calls %d, cap 2", st.PeakRunning)
	}
	if st.Requests != int64(len(e.batch)) {
		t.Fatalf("%d calls for %d batches", st.Requests, len(e.batch))
	}
	e.checkBucket(e.batch)
}

// TestStopMidStreamRedelivers: a worker stopped hard mid-body hands its
// batch back at once; another worker stores it whole.
func TestStopMidStreamRedelivers(t *testing.T) {
	e := setup(t, opts{hosts: 300, batchSize: 300, sim: qualysim.Config{Faults: qualysim.Faults{Bandwidth: 64 << 10}}})
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.FaultBandwidth, 1); err != nil {
		t.Fatal(err)
	}
	w1 := e.worker(fetch.Config{Slots: 1, Grace: 50 * time.Millisecond}, "")
	stop1 := e.start(w1)
	testenv.Eventually(t, 10*time.Second, func() bool { return e.sim.Stats().Endpoints[qualysim.Detection].Bytes > 0 }, "no body streaming")
	stop1()
	if e.done() != 0 {
		t.Fatal("a batch was recorded done by a stopped worker")
	}
	if n := e.incompleteUploads(); n != 0 {
		t.Fatalf("%d incomplete uploads after the stop", n)
	}
	stop2 := e.start(e.worker(fetch.Config{Slots: 1}, ""))
	testenv.Eventually(t, 30*time.Second, func() bool { return e.done() == 1 }, "batch not redelivered")
	stop2()
	e.checkBucket(e.batch)
	rs, _ := e.q.DoneBatches(t.Context(), run)
	if rs[0].Delivery != 2 {
		t.Fatalf("stored on delivery %d, want 2", rs[0].Delivery)
	}
}

// TestInProgressOutlivesAckWait: a body that takes several AckWaits to
// stream is not redelivered to another worker meanwhile.
func TestInProgressOutlivesAckWait(t *testing.T) {
	if testing.Short() {
		t.Skip("streams for several seconds")
	}
	e := setup(t, opts{hosts: 200, batchSize: 200, ackWait: time.Second, sim: qualysim.Config{
		ResultsSize: 4000, Faults: qualysim.Faults{Bandwidth: 2 << 20}}})
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.FaultBandwidth, 1); err != nil {
		t.Fatal(err)
	}
	w1 := e.start(e.worker(fetch.Config{Slots: 1}, ""))
	w2 := e.start(e.worker(fetch.Config{Slots: 1}, ""))
	testenv.Eventually(t, 120*time.Second, func() bool { return e.done() == 1 }, "batch not done")
	w1()
	w2()
	st := e.sim.Stats().Endpoints[qualysim.Detection]
	if st.Requests != 1 {
		t.Fatalf("%d calls: the batch was redelivered while streaming", st.Requests)
	}
	rs, _ := e.q.DoneBatches(t.Context(), run)
	if secs := rs[0].Duration; secs < 3 {
		t.Fatalf("the stream took %.1fs, want several AckWaits (1s) for the test to mean anything", secs)
	}
	e.checkBucket(e.batch)
}

// workerWith builds a worker with its own client and metrics registry.
func (e *env) workerWith(client *qualys.Client, cfg fetch.Config, reg *prometheus.Registry) *fetch.Worker {
	if cfg.ProbeEvery == 0 {
		cfg.ProbeEvery = 100 * time.Millisecond
	}
	cfg.MaxBackoff = 50 * time.Millisecond
	cfg.PullWait = 200 * time.Millisecond
	return e.parts(client).Worker(cfg, fetch.NewMetrics(reg))
}

// parts are the env's parts with client; its workers finish no run (the
// batches belong to no run record).
func (e *env) parts(client *qualys.Client) app.Parts {
	p := e.r.Parts("")
	p.Qualys, p.Finish = client, testrun.NoFinish
	return p
}

// counter reads a counter of reg by name and label values.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// TestOutageDoesNotBurnQueue: Qualys failing every call for a while is an
// outage, not a fault of each batch: with two failures allowed per batch,
// no batch is dead-lettered, and all complete once Qualys recovers. (Three
// failures of one batch would dead-letter it.)
func TestOutageDoesNotBurnQueue(t *testing.T) {
	e := setup(t, opts{hosts: 1200, batchSize: 100, maxFailures: 3})
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.Fault503, 12); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	client, err := qualys.New(qualys.Config{BaseURL: e.r.SimURL, Username: e.sim.Username(), Password: e.sim.Password(), Waits: testWaits})
	if err != nil {
		t.Fatal(err)
	}
	stop := e.start(e.workerWith(client, fetch.Config{Slots: 2}, reg))
	testenv.Eventually(t, 60*time.Second, func() bool { return e.done()+len(e.deadLetters()) == len(e.batch) }, "batches neither done nor dead")
	stop()
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Fatalf("%d batches dead-lettered by an outage", len(dl))
	}
	if st := e.sim.Stats().Endpoints[qualysim.Detection]; st.Outcomes["fault/503"] != 12 {
		t.Fatalf("outcomes %v: the outage did not happen as planned", st.Outcomes)
	}
	e.checkBucket(e.batch)
}

// TestQualysTLSFaultProbesQualys: a certificate the client does not trust
// is a fleet-wide fault that no bucket check can clear: the worker stays
// unready, probing, with every batch queued.
func TestQualysTLSFaultProbesQualys(t *testing.T) {
	e := setup(t, opts{hosts: 300, batchSize: 100})
	tlsSrv := httptest.NewTLSServer(e.sim) // certificate not trusted by the client
	t.Cleanup(tlsSrv.Close)
	client, err := qualys.New(qualys.Config{BaseURL: tlsSrv.URL, Username: e.sim.Username(), Password: e.sim.Password(), Waits: testWaits})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	w := e.workerWith(client, fetch.Config{Slots: 1, ProbeEvery: 50 * time.Millisecond}, reg)
	stop := e.start(w)
	testenv.Eventually(t, 20*time.Second, func() bool {
		return counter(t, reg, "qfetch_worker_fault_probes_total", map[string]string{"result": "failed"}) >= 3
	}, "no failed probes")
	if w.Ready() == nil {
		t.Fatal("worker ready while Qualys TLS is broken")
	}
	if ok := counter(t, reg, "qfetch_worker_fault_probes_total", map[string]string{"result": "ok"}); ok != 0 {
		t.Fatalf("%v probes passed while Qualys TLS is broken", ok)
	}
	stop()
	if e.queued() != uint64(len(e.batch)) || len(e.deadLetters()) != 0 {
		t.Fatalf("queued %d of %d, dead letters %d", e.queued(), len(e.batch), len(e.deadLetters()))
	}
}

// TestTruncatedResponsePages: with a truncation limit the answer comes in
// pages; each is stored under its own key and the batch is done only when
// the last is stored.
func TestTruncatedResponsePages(t *testing.T) {
	e := setup(t, opts{hosts: 500, batchSize: 500})
	stop := e.start(e.worker(fetch.Config{Slots: 1, TruncationLimit: 120}, ""))
	testenv.Eventually(t, 60*time.Second, func() bool { return e.done() == 1 }, "batch not done")
	stop()
	rs, err := e.q.DoneBatches(t.Context(), run)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := qualysim.ParseStatuses("New,Active,Re-Opened,Fixed")
	ids, _ := qualysim.ParseIDs(e.batch[0].IDs)
	want := e.sim.DetectionCounts(qualysim.Filter{IDs: ids, After: e.after, Before: e.before, Statuses: all})
	pages := (len(want) + 119) / 120
	if len(rs[0].Objects) != pages || rs[0].HostsReturned != len(want) {
		t.Fatalf("%d objects and %d hosts recorded, want %d pages of %d hosts", len(rs[0].Objects), rs[0].HostsReturned, pages, len(want))
	}
	seen := map[uint64]bool{}
	for i, o := range rs[0].Objects {
		if wantKey := objstore.DetectionKey("qualys", run, 1, i+1); o.Key != wantKey {
			t.Fatalf("page %d stored as %s, want %s", i+1, o.Key, wantKey)
		}
		r, err := e.store.Get(t.Context(), o.Key)
		if err != nil {
			t.Fatal(err)
		}
		v := qualys.NewValidator(r, qualys.ValidatorConfig{Root: qualys.RootDetections, OnID: func(id uint64) {
			if seen[id] {
				t.Errorf("host %d on two pages", id)
			}
			seen[id] = true
		}})
		if _, err := io.Copy(io.Discard, v); err != nil {
			t.Fatalf("page %d: %v", i+1, err)
		}
		r.Close()
		if last := i == len(rs[0].Objects)-1; (v.Summary().Warning == nil) != last {
			t.Fatalf("page %d: warning %+v", i+1, v.Summary().Warning)
		}
	}
	for id := range want {
		if !seen[id] {
			t.Fatalf("host %d on no page", id)
		}
	}
}

// TestPoisonBatchSplits: a batch whose calls keep stalling is split in
// halves after SplitAfter timeouts; the halves are stored under their own
// keys and the split is recorded, so completion can add it up.
func TestPoisonBatchSplits(t *testing.T) {
	e := setup(t, opts{hosts: 400, batchSize: 400, sim: qualysim.Config{Faults: qualysim.Faults{StallFor: time.Minute}}})
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.FaultStall, 2); err != nil {
		t.Fatal(err)
	}
	stop := e.start(e.worker(fetch.Config{Slots: 1, SplitAfter: 2}, ""))
	testenv.Eventually(t, 60*time.Second, func() bool { return e.done() == 2 }, "halves not done")
	stop()
	splits, err := e.q.Splits(t.Context(), run)
	if err != nil || len(splits) != 1 || splits[0].Batch != "1" || splits[0].Halves != [2]string{"1.1", "1.2"} {
		t.Fatalf("splits %+v, %v", splits, err)
	}
	rs, _ := e.q.DoneBatches(t.Context(), run)
	first, second, _ := e.batch[0].Split()
	var halves []msg.Batch
	for _, r := range rs {
		switch r.Batch {
		case "1.1":
			halves = append(halves, first)
			if r.Objects[0].Key != objstore.DetectionPartKey("qualys", run, 1, "1", 1) {
				t.Fatalf("half 1 stored as %s", r.Objects[0].Key)
			}
		case "1.2":
			halves = append(halves, second)
		default:
			t.Fatalf("done entry for %s", r.Batch)
		}
	}
	for _, h := range halves {
		ids, _ := qualysim.ParseIDs(h.IDs)
		all, _ := qualysim.ParseStatuses("New,Active,Re-Opened,Fixed")
		want := e.sim.DetectionCounts(qualysim.Filter{IDs: ids, After: h.After, Before: h.Before, Statuses: all})
		r, err := e.store.Get(t.Context(), objstore.DetectionPartKey("qualys", run, h.Number, h.Part, 1))
		if err != nil {
			t.Fatal(err)
		}
		v := qualys.NewValidator(r, qualys.ValidatorConfig{Root: qualys.RootDetections})
		if _, err := io.Copy(io.Discard, v); err != nil {
			t.Fatal(err)
		}
		r.Close()
		if v.Summary().Hosts != len(want) {
			t.Fatalf("half %s holds %d hosts, truth %d", h.Key(), v.Summary().Hosts, len(want))
		}
	}
	if len(e.deadLetters()) != 0 || e.queued() != 0 {
		t.Fatalf("dead letters %d, queued %d", len(e.deadLetters()), e.queued())
	}
}

// setRun replaces the run's record with rec (its ID kept).
func (e *env) setRun(rec ledger.RunRecord) {
	e.t.Helper()
	if _, err := e.q.UpdateRun(e.t.Context(), run, func(r *ledger.RunRecord) error {
		*r = rec
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
}
