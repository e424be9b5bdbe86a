package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/runstat"
	"github.com/qfetch/qfetch/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const prefix = "qualys"

// env is a real embedded NATS, a real MinIO bucket and the simulator; runs
// are made by the real planner and worker.
type env struct {
	t       *testing.T
	sim     *qualysim.Sim
	srv     *httptest.Server
	client  *qualys.Client
	natsURL string
	js      jetstream.JetStream
	q       *msg.Queue
	store   *objstore.S3
	minio   *testenv.MinIOServer
	log     *slog.Logger
}

func setup(t *testing.T, hosts int64) *env {
	t.Helper()
	sim := qualysim.New(qualysim.Config{Seed: 5, Hosts: hosts, RateLimit: qualysim.Off})
	t.Cleanup(sim.Close)
	sim.Advance(10 * 24 * time.Hour)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	client, err := qualys.New(qualys.Config{BaseURL: srv.URL, Username: sim.Username(), Password: sim.Password(), IdleTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	url := testenv.NATSURL(t)
	closeNATS, js := connect(t, url)
	t.Cleanup(closeNATS)
	// One charged failure dead-letters a batch: a forced fault makes one.
	q, err := msg.Setup(t.Context(), js, msg.Config{MaxFailures: 1})
	if err != nil {
		t.Fatal(err)
	}
	m := testenv.MinIO(t)
	s3, err := objstore.NewS3(objstore.S3Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Bucket: m.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, sim: sim, srv: srv, client: client, natsURL: url, js: js, q: q, store: s3, minio: m,
		log: slog.New(slog.DiscardHandler)}
}

func connect(t *testing.T, url string) (func(), jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc.Close, js
}

func (e *env) finisher() *finish.Finisher {
	return finish.New(finish.Config{Prefix: prefix, Owner: "test"}, e.q, e.store, e.log)
}

func (e *env) planner() *plan.Planner {
	return plan.New(plan.Config{Prefix: prefix, BatchSize: 100, PageSize: 200, Owner: "planner",
		Now: func() time.Time { return e.sim.Clock().Now() }}, e.q, e.client, e.store, e.finisher(), e.log)
}

func (e *env) plan() plan.Outcome {
	e.t.Helper()
	out, err := e.planner().Run(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// work runs a worker until cond holds.
func (e *env) work(cond func() bool) {
	e.t.Helper()
	w := fetch.New(fetch.Config{Slots: 2, Prefix: prefix, PullWait: 200 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, fetch.Deps{
		Queue: e.q, Publisher: func() fetch.Publisher { return e.q.Publisher(msg.PublisherOptions{}) },
		API: e.client, Store: e.store, Finish: e.finisher(), Log: e.log,
	})
	ctx, cancel := context.WithCancel(e.t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(ctx, ctx) })
	defer func() { cancel(); wg.Wait() }()
	testenv.Eventually(e.t, 60*time.Second, cond, "worker did not get there")
}

func (e *env) record(id string) msg.RunRecord {
	e.t.Helper()
	r, err := e.q.GetRun(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) complete(id string) func() bool {
	return func() bool { r, err := e.q.GetRun(e.t.Context(), id); return err == nil && r.State == msg.RunComplete }
}

// runs is `qfetch runs --json`, decoded, by run ID.
func (e *env) runs(cfg runstat.Config) map[string]runstat.Status {
	e.t.Helper()
	var buf bytes.Buffer
	if err := ops.Runs(e.t.Context(), e.q, cfg, 20, ops.Output{W: &buf, JSON: true}); err != nil {
		e.t.Fatal(err)
	}
	var list []runstat.Status
	if err := json.Unmarshal(buf.Bytes(), &list); err != nil {
		e.t.Fatalf("runs --json: %v\n%s", err, buf.String())
	}
	out := map[string]runstat.Status{}
	for _, s := range list {
		out[s.Run] = s
	}
	return out
}

func (e *env) deadLetters(run string) []msg.DeadLetter {
	e.t.Helper()
	var buf bytes.Buffer
	if err := ops.DLQList(e.t.Context(), e.q, run, ops.Output{W: &buf, JSON: true}); err != nil {
		e.t.Fatal(err)
	}
	var list []msg.DeadLetter
	if err := json.Unmarshal(buf.Bytes(), &list); err != nil {
		e.t.Fatalf("dlq list --json: %v\n%s", err, buf.String())
	}
	return list
}

// failedRun plans a run in which one batch is dead-lettered and works it
// until every other batch is done.
func (e *env) failedRun() msg.RunRecord {
	e.t.Helper()
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.FaultCut, 1); err != nil {
		e.t.Fatal(err)
	}
	out := e.plan()
	planned := e.record(out.Run).BatchesPlanned
	if planned < 2 {
		e.t.Fatalf("run %s has %d batches; the test needs several", out.Run, planned)
	}
	e.work(func() bool {
		n, _ := e.q.CountDone(e.t.Context(), out.Run)
		dl, _ := e.q.DeadLetters(e.t.Context(), out.Run)
		return n == planned-1 && len(dl) == 1
	})
	return e.record(out.Run)
}

// TestRunsInEveryState walks runs through every state with the real
// planner and worker and reads them back with `runs`, `status` and `dlq`;
// replaying the dead letter turns the failed run into a complete one.
func TestRunsInEveryState(t *testing.T) {
	e := setup(t, 3000)
	ctx := t.Context()

	// A: complete.
	a := e.plan()
	e.work(e.complete(a.Run))

	// B: one batch dead-lettered, nothing else left: failed.
	e.sim.Advance(3 * 24 * time.Hour)
	b := e.failedRun()

	// C: the planner gives up (Qualys rejects the login): failed.
	e.sim.Advance(3 * 24 * time.Hour)
	e.sim.SetRejectLogins(true)
	if _, err := e.planner().Run(ctx); !errors.Is(err, plan.ErrRunFailed) {
		t.Fatalf("planner with a rejected login: %v, want ErrRunFailed", err)
	}
	e.sim.SetRejectLogins(false)
	ids, _ := e.q.RunIDs(ctx)
	c := e.record(ids[len(ids)-1])

	// D: the planner stopped after its first batch: planning.
	e.sim.Advance(3 * 24 * time.Hour)
	if err := e.sim.SetFaults(qualysim.Faults{SlowStartFor: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.ForceFault(qualysim.HostList, qualysim.FaultSlowStart, 100); err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = e.planner().Run(pctx) })
	var d msg.RunRecord
	testenv.Eventually(t, 30*time.Second, func() bool {
		ids, _ := e.q.RunIDs(ctx)
		if len(ids) < 4 {
			return false
		}
		d, _ = e.q.GetRun(ctx, ids[len(ids)-1])
		return d.Progress.Batches >= 1
	}, "the planner published no batch")
	stop()
	wg.Wait()
	e.sim.ClearForcedFaults()
	if err := e.sim.SetFaults(qualysim.Faults{}); err != nil {
		t.Fatal(err)
	}

	got := e.runs(runstat.Config{})
	want := map[string]runstat.State{a.Run: runstat.Complete, b.ID: runstat.Failed, c.ID: runstat.Failed, d.ID: runstat.Planning}
	for run, st := range want {
		if got[run].State != st {
			t.Errorf("run %s: state %q, want %q (%+v)", run, got[run].State, st, got[run])
		}
	}
	if s := got[a.Run]; s.BatchesDone != s.BatchesPlanned || s.BatchesPlanned == 0 || s.Bytes == 0 || s.HostsRequested == 0 {
		t.Errorf("complete run %s: %+v", a.Run, s)
	}
	if s := got[b.ID]; s.DeadLetters != 1 || s.BatchesDone != s.BatchesPlanned-1 || s.Retries != 1 || s.Action == "" {
		t.Errorf("dead-lettered run %s: %+v", b.ID, s)
	}
	if s := got[c.ID]; s.Error == "" || strings.Contains(s.Error, e.sim.Password()) {
		t.Errorf("failed run %s: error %q", c.ID, s.Error)
	}

	// The planner resumes D and finishes planning: fetching, every batch
	// queued; a day and more later the same run is stale.
	out := e.plan()
	if out.Run != d.ID || !out.Resumed {
		t.Fatalf("planner: %+v, want run %s resumed", out, d.ID)
	}
	d = e.record(d.ID)
	s := e.runs(runstat.Config{})[d.ID]
	if s.State != runstat.Fetching || s.BatchesQueued != uint64(d.BatchesPlanned) || s.BatchesDone != 0 || !s.PlanningComplete {
		t.Errorf("run %s after planning: %+v", d.ID, s)
	}
	later := runstat.Config{Now: func() time.Time { return time.Now().Add(27 * time.Hour) }}
	if s := e.runs(later)[d.ID]; s.State != runstat.Stale {
		t.Errorf("run %s 27h on: state %q, want stale", d.ID, s.State)
	}

	// status prints the same run.
	var buf bytes.Buffer
	if err := ops.Status(ctx, e.q, runstat.Config{}, d.ID, false, time.Second, ops.Output{W: &buf, JSON: true}); err != nil {
		t.Fatal(err)
	}
	var one runstat.Status
	if err := json.Unmarshal(buf.Bytes(), &one); err != nil || one.Run != d.ID || one.BatchesPlanned != d.BatchesPlanned {
		t.Fatalf("status --json %s: %v %+v", d.ID, err, one)
	}

	// dlq: B's one dead letter, with its batch and the reason.
	dls := e.deadLetters("")
	if len(dls) != 1 || dls[0].Run != b.ID || dls[0].BatchKey() == "" || dls[0].Seq == 0 || dls[0].LastError == "" {
		t.Fatalf("dead letters: %+v", dls)
	}
	buf.Reset()
	if err := ops.DLQShow(ctx, e.q, dls[0].Seq, ops.Output{W: &buf}); err != nil || !strings.Contains(buf.String(), b.ID) {
		t.Fatalf("dlq show: %v\n%s", err, buf.String())
	}

	// Replay B's dead letter; the workers complete B (and D).
	buf.Reset()
	if err := ops.DLQReplay(ctx, e.q, ops.Selection{Run: b.ID}, ops.Output{W: &buf}); err != nil {
		t.Fatalf("replay: %v\n%s", err, buf.String())
	}
	if n := len(e.deadLetters("")); n != 0 {
		t.Fatalf("%d dead letters after replay", n)
	}
	e.work(func() bool { return e.complete(b.ID)() && e.complete(d.ID)() })
	got = e.runs(runstat.Config{})
	for _, run := range []string{a.Run, b.ID, d.ID} {
		if s := got[run]; s.State != runstat.Complete || s.BatchesDone != s.BatchesPlanned || s.DeadLetters != 0 {
			t.Errorf("run %s at the end: %+v", run, s)
		}
	}
	// B's objects are all there, the replayed batch's included.
	e.checkManifest(b.ID)
	// The watermark is D's window end: the newest complete run's.
	wm, err := e.q.Watermark(ctx)
	if err != nil || !wm.Time.Equal(d.Before) {
		t.Fatalf("watermark %v (%v), want %s", wm.Time, err, d.Before)
	}
}

// checkManifest checks the run's manifest: every planned batch is in it
// (the replayed one too), with every planned host, and the record's totals
// agree.
func (e *env) checkManifest(run string) {
	e.t.Helper()
	rec := e.record(run)
	r, err := e.store.Get(e.t.Context(), objstore.ManifestKey(prefix, run))
	if err != nil {
		e.t.Fatalf("manifest of %s: %v", run, err)
	}
	defer r.Close()
	var m finish.Manifest
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		e.t.Fatal(err)
	}
	var keys []string
	for _, b := range m.Batches {
		keys = append(keys, b.Batch)
		for _, o := range b.Objects {
			if _, err := e.store.Stat(e.t.Context(), o.Key); err != nil {
				e.t.Errorf("run %s batch %s: object %s: %v", run, b.Batch, o.Key, err)
			}
		}
	}
	var want []string
	for i := 1; i <= rec.BatchesPlanned; i++ {
		want = append(want, strconv.Itoa(i))
	}
	if !slices.Equal(keys, want) {
		e.t.Errorf("run %s: manifest batches %v, want %v", run, keys, want)
	}
	if m.Totals.HostsRequested != rec.HostsPlanned {
		e.t.Errorf("run %s: manifest requested %d hosts, %d planned", run, m.Totals.HostsRequested, rec.HostsPlanned)
	}
	if t := rec.Totals; t == nil || t.HostsReturned != m.Totals.HostsReturned || t.Bytes != m.Totals.Bytes || t.Batches != m.Totals.Batches {
		e.t.Errorf("run %s: record totals %+v, manifest %+v", run, rec.Totals, m.Totals)
	}
}

// TestDropAcceptsIncomplete: drop needs --yes, then removes the dead letter,
// records the acceptance and leaves the watermark alone (I1).
func TestDropAcceptsIncomplete(t *testing.T) {
	e := setup(t, 1000)
	ctx := t.Context()
	b := e.failedRun()
	dls := e.deadLetters(b.ID)
	if len(dls) != 1 {
		t.Fatalf("dead letters: %+v", dls)
	}
	var buf bytes.Buffer
	err := ops.DLQDrop(ctx, e.q, ops.Selection{Run: b.ID}, "alice@ops", "host decommissioned", false, ops.Output{W: &buf})
	if !errors.Is(err, ops.ErrNeedYes) {
		t.Fatalf("drop without --yes: %v", err)
	}
	if n := len(e.deadLetters(b.ID)); n != 1 {
		t.Fatalf("drop without --yes removed it: %d left", n)
	}
	if err := ops.DLQDrop(ctx, e.q, ops.Selection{}, "alice@ops", "", true, ops.Output{W: &buf}); !errors.Is(err, ops.ErrSelection) {
		t.Fatalf("drop of nothing named: %v", err)
	}
	if err := ops.DLQDrop(ctx, e.q, ops.Selection{Seqs: []uint64{dls[0].Seq}}, "alice@ops", "host decommissioned", true, ops.Output{W: &buf}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.deadLetters("")); n != 0 {
		t.Fatalf("%d dead letters after drop", n)
	}
	rec := e.record(b.ID)
	if a := rec.Accepted; a == nil || a.By != "alice@ops" || a.Reason != "host decommissioned" || !slices.Equal(a.Dropped, []string{dls[0].BatchKey()}) {
		t.Fatalf("acceptance: %+v", rec.Accepted)
	}
	if s := e.runs(runstat.Config{})[b.ID]; s.State != runstat.AcceptedIncomplete {
		t.Fatalf("state %q, want accepted-incomplete", s.State)
	}
	if _, err := e.q.Watermark(ctx); !errors.Is(err, msg.ErrNoWatermark) {
		t.Fatalf("drop moved the watermark: %v", err)
	}
	// Dropping again finds nothing: the dead letter is gone for good.
	if err := ops.DLQDrop(ctx, e.q, ops.Selection{Seqs: []uint64{dls[0].Seq}}, "alice@ops", "", true, ops.Output{W: &buf}); !errors.Is(err, msg.ErrNoDeadLetter) {
		t.Fatalf("second drop: %v", err)
	}
	// The next run's window starts where the last complete run ended: the
	// beginning, so the dropped batch's hosts are asked for again.
	e.sim.Advance(time.Hour)
	next := e.plan()
	if next.Run == b.ID || !e.record(next.Run).After.IsZero() {
		t.Fatalf("next run %+v starts at %s", next, e.record(next.Run).After)
	}
}

// TestWatermarkSet: set needs --yes and a reason, and its history keeps who
// and why.
func TestWatermarkSet(t *testing.T) {
	e := setup(t, 500)
	ctx := t.Context()
	a := e.plan()
	e.work(e.complete(a.Run))
	rec := e.record(a.Run)

	var buf bytes.Buffer
	to := rec.Before.Add(-48 * time.Hour)
	if err := ops.WatermarkSet(ctx, e.q, to, "bob@ops", "re-fetch two days", false, ops.Output{W: &buf}); !errors.Is(err, ops.ErrNeedYes) {
		t.Fatalf("set without --yes: %v", err)
	}
	if err := ops.WatermarkSet(ctx, e.q, to, "bob@ops", "", true, ops.Output{W: &buf}); err == nil {
		t.Fatal("set without a reason was accepted")
	}
	if wm, _ := e.q.Watermark(ctx); !wm.Time.Equal(rec.Before) {
		t.Fatalf("watermark moved without --yes: %s", wm.Time)
	}
	if err := ops.WatermarkSet(ctx, e.q, to, "bob@ops", "re-fetch two days", true, ops.Output{W: &buf}); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := ops.WatermarkShow(ctx, e.q, ops.Output{W: &buf, JSON: true}); err != nil {
		t.Fatal(err)
	}
	var shown struct {
		Current *msg.Watermark  `json:"current"`
		History []msg.Watermark `json:"history"`
	}
	if err := json.Unmarshal(buf.Bytes(), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Current == nil || !shown.Current.Time.Equal(to) || shown.Current.By != "bob@ops" {
		t.Fatalf("current: %+v", shown.Current)
	}
	if len(shown.History) != 2 || shown.History[0].Run != a.Run || shown.History[1].Reason != "re-fetch two days" {
		t.Fatalf("history: %+v", shown.History)
	}
	// The next run starts from the watermark set (minus the overlap, 0 here).
	e.sim.Advance(time.Hour)
	next := e.plan()
	if got := e.record(next.Run).After; !got.Equal(to) {
		t.Fatalf("next window starts at %s, want %s", got, to)
	}
}

// TestStatusWatch follows a run to completion.
func TestStatusWatch(t *testing.T) {
	e := setup(t, 1000)
	out := e.plan()
	var buf bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- ops.Status(t.Context(), e.q, runstat.Config{}, "", true, 50*time.Millisecond, ops.Output{W: &buf})
	}()
	e.work(e.complete(out.Run))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, out.Run+" [##############################] 100%") || !strings.HasSuffix(last, " complete") {
		t.Fatalf("last progress line %q", last)
	}
}
