package plan_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is one test's world: a simulator, a real NATS, a real MinIO bucket.
type env struct {
	r      *testrun.Env
	sim    *qualysim.Sim
	gate   *gate
	js     jetstream.JetStream
	q      app.JetStream
	store  *objstore.S3
	cfg    plan.Config
	prefix string
}

// gate holds Host List requests for pages after the first until opened,
// and reports when one is waiting.
type gate struct {
	mu      sync.Mutex
	closed  bool
	open    chan struct{}
	waiting chan struct{}
	once    sync.Once
}

func newGate() *gate { return &gate{open: make(chan struct{}), waiting: make(chan struct{})} }

func (g *gate) hold() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		g.closed = false
		close(g.open)
	}
}

func (g *gate) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/fo/asset/host/") && !strings.Contains(r.URL.Path, "detection") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body))
			g.mu.Lock()
			closed := g.closed
			g.mu.Unlock()
			if closed && form.Get("id_min") != "" {
				g.once.Do(func() { close(g.waiting) })
				select {
				case <-g.open:
				case <-r.Context().Done():
					return
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// waitFor waits for ch to close, failing the test after a deadline rather
// than hanging it.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func setup(t *testing.T, hosts int64, simCfg qualysim.Config) *env {
	t.Helper()
	g := newGate()
	r := testrun.New(t, testrun.Options{Hosts: hosts, Seed: 7, Sim: simCfg, Wrap: g.wrap, KeepClock: true, MaxInFlight: 2})
	sim := r.Sim
	return &env{
		r: r, sim: sim, gate: g, js: r.JS, q: r.Q, store: r.Store, prefix: testrun.Prefix,
		cfg: plan.Config{BatchSize: 1000, PageSize: 5000, Owner: "test-planner", HostListDetails: "None",
			Now: func() time.Time { return sim.Clock().Now() }},
	}
}

// planner is a planner on the env's parts (store: the env's, or store)
// that finishes no run: the tests check the runs as planned.
func (e *env) planner(t *testing.T, cfg plan.Config, store ...app.Store) *plan.Planner {
	p := e.r.Parts(cfg.Owner)
	p.Finish = testrun.NoFinish
	if len(store) > 0 {
		p.Store = store[0]
	}
	return p.Planner(cfg)
}

// batches reads every message in the batch stream without consuming it.
func (e *env) batches(t *testing.T) []msg.Batch {
	t.Helper()
	ctx := t.Context()
	s, err := e.js.Stream(ctx, "QFETCH_BATCHES")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []msg.Batch
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		b, err := msg.Decode(raw.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if got := raw.Header.Get(jetstream.MsgIDHeader); got != b.MsgID() {
			t.Fatalf("message %d: Msg-Id %q, want %q", seq, got, b.MsgID())
		}
		out = append(out, b)
	}
	return out
}

func (e *env) streamCount(t *testing.T) uint64 {
	s, err := e.js.Stream(t.Context(), "QFETCH_BATCHES")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// checkBatches asserts the batches cover want exactly once, numbered 1..n,
// each at most size hosts, all of one run and window.
func checkBatches(t *testing.T, bs []msg.Batch, want []uint64, size int, rec ledger.RunRecord) {
	t.Helper()
	slices.SortFunc(bs, func(a, b msg.Batch) int { return a.Number - b.Number })
	var got []uint64
	for i, b := range bs {
		if b.Number != i+1 {
			t.Fatalf("batch numbers: position %d holds batch %d", i, b.Number)
		}
		if b.Run != rec.ID || !b.After.Equal(rec.After) || !b.Before.Equal(rec.Before) {
			t.Fatalf("batch %d: run %s window [%s, %s), want %s [%s, %s)", b.Number, b.Run, b.After, b.Before, rec.ID, rec.After, rec.Before)
		}
		if b.Hosts > size || (i < len(bs)-1 && b.Hosts != size) {
			t.Fatalf("batch %d holds %d hosts, size %d", b.Number, b.Hosts, size)
		}
		set, err := hostids.Parse(b.IDs)
		ids := set.IDs()
		if err != nil || len(ids) != b.Hosts {
			t.Fatalf("batch %d: %d ids, Hosts %d, err %v", b.Number, len(ids), b.Hosts, err)
		}
		got = append(got, ids...)
	}
	if len(got) != len(want) {
		t.Fatalf("batches hold %d hosts, truth %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("host %d: batches hold %d, truth %d (each host once, in order)", i, got[i], want[i])
		}
	}
}

func TestPlanMatchesTruth(t *testing.T) {
	e := setup(t, 100_000, qualysim.Config{})
	e.sim.Advance(10 * 24 * time.Hour)
	out, err := e.planner(t, e.cfg).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rec, err := e.q.GetRun(t.Context(), out.Run)
	if err != nil {
		t.Fatal(err)
	}
	truth := slices.Collect(e.sim.HostListTruth(rec.After, rec.Before))
	if len(truth) < 50_000 {
		t.Fatalf("truth holds only %d hosts; the test wants a big window", len(truth))
	}
	checkBatches(t, e.batches(t), truth, 1000, rec)

	wantBatches := (len(truth) + 999) / 1000
	if out.Batches != wantBatches || out.Hosts != len(truth) || out.Resumed || out.Skipped {
		t.Fatalf("outcome %+v, want %d batches, %d hosts", out, wantBatches, len(truth))
	}
	if rec.State != ledger.RunFetching || !rec.PlanningComplete || rec.BatchesPlanned != wantBatches || rec.HostsPlanned != len(truth) {
		t.Fatalf("run record %+v", rec)
	}
	if !rec.After.IsZero() || !rec.Before.Equal(e.sim.Clock().Now().Truncate(time.Second)) {
		t.Fatalf("first window [%s, %s)", rec.After, rec.Before)
	}

	// The raw pages parse and hold the same IDs, in order.
	var fromPages []uint64
	pages := 0
	for obj, err := range e.store.List(t.Context(), objstore.RunPrefix(e.prefix, rec.ID)+"hostlist/") {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if obj.Key != objstore.HostListPageKey(e.prefix, rec.ID, pages) {
			t.Fatalf("page object %d is %s", pages, obj.Key)
		}
		r, err := e.store.Get(t.Context(), obj.Key)
		if err != nil {
			t.Fatal(err)
		}
		v := qualys.NewValidator(r, qualys.ValidatorConfig{Root: qualys.RootHostList, OnID: func(id uint64) { fromPages = append(fromPages, id) }})
		if _, err := io.Copy(io.Discard, v); err != nil {
			t.Fatalf("%s: %v", obj.Key, err)
		}
		r.Close()
	}
	if want := (len(truth) + 4999) / 5000; pages != want {
		t.Fatalf("%d pages stored, want %d", pages, want)
	}
	if !slices.Equal(fromPages, truth) {
		t.Fatalf("stored pages hold %d ids, truth %d, or in another order", len(fromPages), len(truth))
	}
	if hosts := e.checkPages(t, rec.ID); hosts != len(truth) {
		t.Fatalf("page records hold %d hosts, truth %d", hosts, len(truth))
	}
}

// checkPages checks that the ledger records each Host List page in the
// bucket once, in order, with its bytes, checksum and host count, and
// returns the hosts of all pages.
func (e *env) checkPages(t *testing.T, run string) (hosts int) {
	t.Helper()
	recorded, err := e.q.Pages(t.Context(), run)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for obj, err := range e.store.List(t.Context(), objstore.RunPrefix(e.prefix, run)+"hostlist/") {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, obj.Key)
	}
	if len(recorded) != len(listed) {
		t.Fatalf("%d pages recorded, %d in the bucket", len(recorded), len(listed))
	}
	for i, o := range recorded {
		if o.Key != listed[i] {
			t.Fatalf("page record %d is %s, the bucket's page %s", i+1, o.Key, listed[i])
		}
		r, err := e.store.Get(t.Context(), o.Key)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		ids := 0
		v := qualys.NewValidator(io.TeeReader(r, h), qualys.ValidatorConfig{Root: qualys.RootHostList, OnID: func(uint64) { ids++ }})
		n, err := io.Copy(io.Discard, v)
		r.Close()
		if err != nil || n != o.Bytes || hex.EncodeToString(h.Sum(nil)) != o.SHA256 || ids != o.Hosts {
			t.Fatalf("page %s recorded %+v; stored %d bytes, %d hosts (%v)", o.Key, o, n, ids, err)
		}
		hosts += o.Hosts
	}
	return hosts
}

// TestPlanPipelines: batch 1 is in the stream while the request for page 2
// is still held, so workers start before paging ends.
func TestPlanPipelines(t *testing.T) {
	e := setup(t, 20_000, qualysim.Config{})
	e.sim.Advance(10 * 24 * time.Hour)
	e.gate.hold()
	cfg := e.cfg

	done := make(chan error, 1)
	go func() {
		_, err := e.planner(t, cfg).Run(t.Context())
		done <- err
	}()
	waitFor(t, e.gate.waiting, "a held Host List request")
	testenv.Eventually(t, 10*time.Second, func() bool { return e.streamCount(t) >= 1 },
		"no batch published while page 2 was held")
	e.gate.release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPlanResumesAfterCrash: a planner stopped mid-run and started again
// resumes the same run; the stream holds each batch once.
func TestPlanResumesAfterCrash(t *testing.T) {
	e := setup(t, 60_000, qualysim.Config{})
	e.sim.Advance(10 * 24 * time.Hour)
	cfg := e.cfg
	cfg.LockTTL = 2 * time.Second

	// Crash: stop the planner while page 2 is held, after page 1's batches.
	e.gate.hold()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := e.planner(t, cfg).Run(ctx)
		done <- err
	}()
	waitFor(t, e.gate.waiting, "a held Host List request")
	testenv.Eventually(t, 10*time.Second, func() bool { return e.streamCount(t) >= 5 }, "page 1's batches not published")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped planner returned %v", err)
	}
	e.gate.release()
	ids, err := e.q.RunIDs(t.Context())
	if err != nil || len(ids) != 1 {
		t.Fatalf("runs %v, %v", ids, err)
	}
	mid, err := e.q.GetRun(t.Context(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if mid.State != ledger.RunPlanning || mid.PlanningComplete || mid.Progress.Batches < 5 {
		t.Fatalf("run after the crash: %+v", mid)
	}

	// The clock moves on before the restart: hosts re-processed meanwhile
	// leave the run's window (the next run has them), but the resumed run
	// keeps its window and its batch boundaries.
	atCrash := slices.Collect(e.sim.HostListTruth(mid.After, mid.Before))
	e.sim.Advance(time.Hour)
	out, err := e.planner(t, cfg).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !out.Resumed || out.Run != mid.ID {
		t.Fatalf("outcome %+v, want run %s resumed", out, mid.ID)
	}
	rec, err := e.q.GetRun(t.Context(), out.Run)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.PlanningComplete || !rec.Before.Equal(mid.Before) || !rec.After.Equal(mid.After) {
		t.Fatalf("run record %+v", rec)
	}
	bs := e.batches(t)
	slices.SortFunc(bs, func(a, b msg.Batch) int { return a.Number - b.Number })
	var got []uint64
	for i, b := range bs {
		if b.Number != i+1 {
			t.Fatalf("batch numbers: position %d holds batch %d", i, b.Number)
		}
		ids, err := hostids.Parse(b.IDs)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids.IDs()...)
	}
	if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Fatal("a host is in two batches, or batches overlap")
	}
	if rec.HostsPlanned != len(got) {
		t.Fatalf("record says %d hosts, batches hold %d", rec.HostsPlanned, len(got))
	}
	// The page stored again on resume is recorded once, as it was stored
	// last.
	e.checkPages(t, rec.ID)
	// Every host still in the window is in a batch; every host in a batch
	// was in the window when it was planned.
	now := slices.Collect(e.sim.HostListTruth(rec.After, rec.Before))
	for _, id := range now {
		if _, ok := slices.BinarySearch(got, id); !ok {
			_, inCrash := slices.BinarySearch(atCrash, id)
			lp, _ := e.sim.LastProcessed(id, mid.Before)
			lp2, _ := e.sim.LastProcessed(id, time.Time{})
			t.Fatalf("host %d is in the window but in no batch (in window at crash: %v; processed %s then, %s now; window %s..%s; progress %+v)", id, inCrash, lp, lp2, rec.After, rec.Before, mid.Progress)
		}
	}
	for _, id := range got {
		if _, ok := slices.BinarySearch(atCrash, id); !ok {
			t.Fatalf("host %d is in a batch but was never in the window", id)
		}
	}
}

func TestSecondPlannerSkips(t *testing.T) {
	e := setup(t, 20_000, qualysim.Config{})
	e.sim.Advance(10 * 24 * time.Hour)
	e.gate.hold()
	done := make(chan error, 1)
	go func() {
		_, err := e.planner(t, e.cfg).Run(t.Context())
		done <- err
	}()
	waitFor(t, e.gate.waiting, "a held Host List request")
	second := e.cfg
	second.Owner = "second-planner"
	out, err := e.planner(t, second).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !out.Skipped || !strings.Contains(out.Reason, "test-planner") || out.Run != "" {
		t.Fatalf("second planner: %+v", out)
	}
	e.gate.release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// With the first run still being fetched, a third pass opens nothing.
	out, err = e.planner(t, second).Run(t.Context())
	if err != nil || !out.Skipped || !strings.Contains(out.Reason, "still being fetched") {
		t.Fatalf("third planner: %+v, %v", out, err)
	}
}

func TestWrongPasswordPublishesNothing(t *testing.T) {
	e := setup(t, 5_000, qualysim.Config{})
	e.sim.SetRejectLogins(true)
	_, err := e.planner(t, e.cfg).Run(t.Context())
	if !errors.Is(err, plan.ErrRunFailed) || failure.ClassOf(err) != failure.ClassFleetWide {
		t.Fatalf("err = %v (class %v)", err, failure.ClassOf(err))
	}
	if strings.Contains(err.Error(), e.sim.Password()) {
		t.Fatal("password in the error")
	}
	if n := e.streamCount(t); n != 0 {
		t.Fatalf("%d batches published", n)
	}
	ids, _ := e.q.RunIDs(t.Context())
	rec, err := e.q.GetRun(t.Context(), ids[0])
	if err != nil || rec.State != ledger.RunFailed || rec.Error == "" {
		t.Fatalf("run record %+v, %v", rec, err)
	}
}

func TestMissingBucketPublishesNothing(t *testing.T) {
	e := setup(t, 5_000, qualysim.Config{})
	m := testenv.MinIO(t)
	store, err := objstore.NewS3(objstore.S3Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Bucket: "no-such-bucket-here"})
	if err != nil {
		t.Fatal(err)
	}
	p := e.planner(t, e.cfg, store)
	_, err = p.Run(t.Context())
	if failure.ClassOf(err) != failure.ClassFleetWide || !strings.Contains(err.Error(), "no-such-bucket-here") {
		t.Fatalf("err = %v (class %v)", err, failure.ClassOf(err))
	}
	if n := e.streamCount(t); n != 0 {
		t.Fatalf("%d batches published", n)
	}
	if ids, _ := e.q.RunIDs(t.Context()); len(ids) != 0 {
		t.Fatalf("runs opened: %v", ids)
	}
}

// TestPlanRetriesFaults: 5xx and cut pages are retried, 409 waited out,
// and the result is still exact.
func TestPlanRetriesFaults(t *testing.T) {
	e := setup(t, 30_000, qualysim.Config{})
	e.sim.Advance(10 * 24 * time.Hour)
	for _, k := range []qualysim.FaultKind{qualysim.Fault500, qualysim.FaultCut, qualysim.FaultReset} {
		if err := e.sim.ForceFault(qualysim.HostList, k, 1); err != nil {
			t.Fatal(err)
		}
	}
	cfg := e.cfg
	cfg.MaxBackoff = 50 * time.Millisecond
	out, err := e.planner(t, cfg).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := e.q.GetRun(t.Context(), out.Run)
	truth := slices.Collect(e.sim.HostListTruth(rec.After, rec.Before))
	checkBatches(t, e.batches(t), truth, 1000, rec)
}

// TestSecondRunStartsAtWatermark: once a run completes, the next window is
// [watermark - overlap, now).
func TestSecondRunStartsAtWatermark(t *testing.T) {
	e := setup(t, 5_000, qualysim.Config{})
	e.sim.Advance(24 * time.Hour)
	cfg := e.cfg
	cfg.Overlap = 10 * time.Minute
	out, err := e.planner(t, cfg).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	first, _ := e.q.GetRun(t.Context(), out.Run)
	// Stand-in for completion: the run is done and the watermark moves.
	if _, err := e.q.UpdateRun(t.Context(), first.ID, func(r *ledger.RunRecord) error { r.State = ledger.RunComplete; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.AdvanceWatermark(t.Context(), ledger.Watermark{Time: first.Before, Run: first.ID, By: "test"}); err != nil {
		t.Fatal(err)
	}
	e.sim.Advance(24 * time.Hour)
	out, err = e.planner(t, cfg).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	second, _ := e.q.GetRun(t.Context(), out.Run)
	if !second.After.Equal(first.Before.Add(-10*time.Minute)) || !second.Before.After(first.Before) || second.ID <= first.ID {
		t.Fatalf("second window [%s, %s) id %s after first [%s, %s) id %s", second.After, second.Before, second.ID, first.After, first.Before, first.ID)
	}
	truth := slices.Collect(e.sim.HostListTruth(second.After, second.Before))
	if second.HostsPlanned != len(truth) || len(truth) == 0 || len(truth) >= 5000 {
		t.Fatalf("second run planned %d hosts, truth %d", second.HostsPlanned, len(truth))
	}
}

// TestResumeAfterStopWithUnackedPublishes: a planner stopped while the
// stream refuses its batches must leave nothing unpublished behind the
// progress record: the resumed planner rebuilds only the recorded batch, so
// every earlier one must be in the stream before the record moves on.
func TestResumeAfterStopWithUnackedPublishes(t *testing.T) {
	e := setup(t, 5_000, qualysim.Config{})
	e.sim.Advance(10 * 24 * time.Hour)
	cfg := e.cfg
	cfg.BatchSize = 10
	cfg.PageSize = 30 // the first page makes 3 batches
	cfg.LockTTL = 2 * time.Second

	// Make the stream take 3 messages and refuse the rest for now (stands
	// in for a leader election or a slow disk while the planner pod is
	// stopped): the gate holds the second Host List page until the stream
	// has the first page's batches, then the stream stops listening on
	// their subject. (A MaxMsgs cap would not refuse: the batch stream
	// discards old messages, as message schedules require.)
	ctx := t.Context()
	s, err := e.js.Stream(ctx, "QFETCH_BATCHES")
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	subjects := sc.Subjects
	e.gate.hold()

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := e.planner(t, cfg).Run(runCtx)
		done <- err
	}()
	waitFor(t, e.gate.waiting, "the planner to ask for the second Host List page")
	testenv.Eventually(t, 10*time.Second, func() bool { return len(e.batches(t)) == 3 },
		"the first page's 3 batches in the stream")
	sc.Subjects = []string{"qfetch.retry.>"}
	if _, err := e.js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	e.gate.release()
	testenv.Eventually(t, 10*time.Second, func() bool {
		ids, _ := e.q.RunIDs(ctx)
		if len(ids) != 1 {
			return false
		}
		r, _ := e.q.GetRun(ctx, ids[0])
		return r.Progress.Batches >= 4
	}, "planner never got to batch 4")
	cancel() // SIGTERM
	<-done

	// The stream recovers; the planner is started again and resumes.
	sc.Subjects = subjects
	if _, err := e.js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	out, err := e.planner(t, cfg).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Resumed {
		t.Fatalf("outcome %+v: want the run resumed", out)
	}
	rec, _ := e.q.GetRun(ctx, out.Run)
	var have []int
	for _, b := range e.batches(t) {
		have = append(have, b.Number)
	}
	slices.Sort(have)
	var missing []int
	for n := 1; n <= rec.BatchesPlanned; n++ {
		if _, ok := slices.BinarySearch(have, n); !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("run %s planned %d batches but the stream never got %d of them: %v (progress at resume pointed past them)",
			rec.ID, rec.BatchesPlanned, len(missing), missing)
	}
}

// TestResumeEmptyRecordedBatch: the planner wrote the record for batch 1
// and crashed before publishing it; before the restart every host of batch
// 1 left the window. The resumed planner has nothing to publish for it, so
// it records it done as empty: every planned batch is in the stream or
// done, and the run can complete.
func TestResumeEmptyRecordedBatch(t *testing.T) {
	e := setup(t, 2_000, qualysim.Config{})
	e.sim.Advance(10 * 24 * time.Hour)
	cfg := e.cfg
	cfg.BatchSize = 10
	cfg.PageSize = 0
	ctx := t.Context()
	before := e.sim.Clock().Now().UTC().Truncate(time.Second)
	truth := slices.Collect(e.sim.HostListTruth(time.Time{}, before))
	if len(truth) == 0 || truth[0] < 2 {
		t.Skipf("truth %d hosts, first %v", len(truth), truth)
	}
	// Batch 1 covered IDs (0, truth[0]-1]: all of them gone from the window.
	rec := ledger.RunRecord{ID: "20260110T000000Z-abcdef", Before: before, State: ledger.RunPlanning, Planner: "crashed",
		Progress: ledger.PlanProgress{Batches: 1, End: ledger.PlanCursor{Page: 1, LastID: truth[0] - 1, Hosts: 10}}}
	if _, err := e.q.CreateRun(ctx, rec); err != nil {
		t.Fatal(err)
	}
	out, err := e.planner(t, cfg).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Resumed {
		t.Fatalf("outcome %+v", out)
	}
	got, _ := e.q.GetRun(ctx, rec.ID)
	have := map[int]bool{}
	for _, b := range e.batches(t) {
		have[b.Number] = true
	}
	done, err := e.q.DoneBatches(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range done {
		if r.Batch != "1" || r.HostsRequested != 0 || len(r.Objects) != 0 {
			t.Fatalf("done record %+v", r)
		}
		have[1] = true
	}
	var missing []int
	for n := 1; n <= got.BatchesPlanned; n++ {
		if !have[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("BatchesPlanned %d but batches %v are in neither the stream nor the done records: the run can never complete",
			got.BatchesPlanned, missing)
	}
}

// TestRunIDsSortAfterSameSecond: a run opened in the same second as the
// previous one still sorts after it.
func TestRunIDsSortAfterSameSecond(t *testing.T) {
	e := setup(t, 2_000, qualysim.Config{})
	e.sim.SetRejectLogins(true)
	first, _ := e.planner(t, e.cfg).Run(t.Context()) // fails: the run is marked failed
	e.sim.SetRejectLogins(false)
	second, err := e.planner(t, e.cfg).Run(t.Context()) // same frozen clock second
	if err != nil {
		t.Fatal(err)
	}
	ids, err := e.q.RunIDs(t.Context())
	if err != nil || len(ids) != 2 {
		t.Fatalf("runs %v, %v", ids, err)
	}
	if ids[0] != first.Run || ids[1] != second.Run {
		t.Fatalf("runs sort %v; want the failed %s before the new %s", ids, first.Run, second.Run)
	}
}

// TestPlanAsksWithDetails: the planner asks the Host List with its
// configured details (Basic when unset), stores the pages as they came,
// and reads the same IDs from an ID_SET (None) as from HOSTs (Basic, All).
func TestPlanAsksWithDetails(t *testing.T) {
	for _, tc := range []struct{ details, want string }{
		{"", "<LAST_VULN_SCAN_DATETIME>"},
		{qualys.DetailsNone, "<ID_SET>"},
		{qualys.DetailsBasic, "<LAST_VULN_SCAN_DATETIME>"},
		{qualys.DetailsAll, "<ASSET_GROUP_IDS>"},
	} {
		t.Run("details="+tc.details, func(t *testing.T) {
			e := setup(t, 3_000, qualysim.Config{})
			cfg := e.cfg
			cfg.PageSize, cfg.HostListDetails = 1000, tc.details
			out, err := e.planner(t, cfg).Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			rec, err := e.q.GetRun(t.Context(), out.Run)
			if err != nil {
				t.Fatal(err)
			}
			truth := slices.Collect(e.sim.HostListTruth(rec.After, rec.Before))
			checkBatches(t, e.batches(t), truth, 1000, rec)
			if hosts := e.checkPages(t, rec.ID); hosts != len(truth) {
				t.Fatalf("page records hold %d hosts, truth %d", hosts, len(truth))
			}
			r, err := e.store.Get(t.Context(), objstore.HostListPageKey(e.prefix, rec.ID, 1))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			page, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(page, []byte(tc.want)) || bytes.Contains(page, []byte("<ID_SET>")) != (tc.details == qualys.DetailsNone) {
				t.Fatalf("page 1 of a details=%q run holds no %s:\n%.600s", tc.details, tc.want, page)
			}
		})
	}
}
