package finish_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"iter"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const prefix = testrun.Prefix

type env struct {
	t     *testing.T
	r     *testrun.Env
	sim   *qualysim.Sim
	q     app.JetStream
	store *countingStore
}

// countingStore counts Puts of _SUCCESS and can fail the next one, and
// counts Lists.
type countingStore struct {
	*objstore.S3
	successes atomic.Int32
	failNext  atomic.Bool
	lists     atomic.Int32
}

func (s *countingStore) List(ctx context.Context, prefix string) iter.Seq2[objstore.Object, error] {
	s.lists.Add(1)
	return s.S3.List(ctx, prefix)
}

func (s *countingStore) Put(ctx context.Context, key string, r io.Reader, o objstore.PutOptions) (objstore.Object, error) {
	if strings.HasSuffix(key, "/_SUCCESS") {
		if s.failNext.CompareAndSwap(true, false) {
			return objstore.Object{}, errors.New("injected: store failed")
		}
		s.successes.Add(1)
	}
	return s.S3.Put(ctx, key, r, o)
}

func setup(t *testing.T, hosts int64, maxFailures int) *env {
	t.Helper()
	r := testrun.New(t, testrun.Options{Hosts: hosts, Seed: 3, MaxFailures: maxFailures, Sim: qualysim.Config{ConcurrencyLimit: qualysim.Off}})
	return &env{t: t, r: r, sim: r.Sim, q: r.Q, store: &countingStore{S3: r.Store}}
}

// parts are the Env's parts for owner, on the counting store, finishing
// with fin. A nil fin is app's default, a real finisher: a test whose
// roles must finish nothing passes testrun.NoFinish.
func (e *env) parts(owner string, fin app.Finisher) app.Parts {
	p := e.r.Parts(owner)
	p.Store, p.Finish = e.store, fin
	return p
}

func (e *env) finisher(owner string, stale time.Duration) *finish.Finisher {
	return e.parts(owner, nil).Finisher(finish.Config{StaleClaim: stale})
}

func (e *env) plan(fin plan.Finisher) plan.Outcome {
	e.t.Helper()
	p := e.parts("planner", fin).Planner(plan.Config{BatchSize: 500, PageSize: 2000,
		Now: func() time.Time { return e.sim.Clock().Now() }})
	out, err := p.Run(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// work runs a worker with fin until cond holds.
func (e *env) work(fin fetch.Finisher, cond func() bool) {
	e.t.Helper()
	e.r.WorkWith(e.parts("", fin), cond)
}

func (e *env) run(id string) ledger.RunRecord {
	r, err := e.q.GetRun(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) getJSON(key string, v any) {
	e.t.Helper()
	r, err := e.store.Get(e.t.Context(), key)
	if err != nil {
		e.t.Fatalf("%s: %v", key, err)
	}
	defer r.Close()
	if err := json.NewDecoder(r).Decode(v); err != nil {
		e.t.Fatalf("%s: %v", key, err)
	}
}

func TestRunCompletesWithManifest(t *testing.T) {
	e := setup(t, 3000, 0)
	fin := e.finisher("w", 0)
	out := e.plan(fin)
	e.work(fin, func() bool { return e.run(out.Run).State == ledger.RunComplete })

	rec := e.run(out.Run)
	var m finish.Manifest
	e.getJSON(objstore.ManifestKey(prefix, out.Run), &m)
	if _, err := e.store.Stat(t.Context(), objstore.SuccessKey(prefix, out.Run)); err != nil {
		t.Fatalf("_SUCCESS: %v", err)
	}
	if e.store.successes.Load() != 1 {
		t.Fatalf("_SUCCESS written %d times", e.store.successes.Load())
	}
	truth := slices.Collect(e.sim.HostListTruth(rec.After, rec.Before))
	all, _ := qualysim.ParseStatuses("New,Active,Re-Opened,Fixed")
	withDetections := 0
	for range e.sim.DetectionTruth(qualysim.Filter{After: rec.After, Before: rec.Before, Statuses: all}) {
		withDetections++
	}
	if m.Run != out.Run || m.Totals.Batches != rec.BatchesPlanned || m.Totals.HostsRequested != len(truth) ||
		m.Totals.HostsReturned != withDetections || m.Totals.HostListPages != 2 || len(m.Batches) != rec.BatchesPlanned {
		t.Fatalf("manifest totals %+v, truth %d hosts, %d with detections", m.Totals, len(truth), withDetections)
	}
	// The Host List pages come from the ledger, each with the bytes,
	// checksum and hosts of its object; the bucket is listed only to hold
	// the run's prefix to its result (detections/ and hostlist/, once each).
	if n := e.store.lists.Load(); n != 2 {
		t.Errorf("the bucket was listed %d times, want 2", n)
	}
	pageHosts := 0
	for i, o := range m.HostList {
		if o.Key != objstore.HostListPageKey(prefix, out.Run, i+1) {
			t.Fatalf("manifest host list page %d is %s", i+1, o.Key)
		}
		r, err := e.store.Get(t.Context(), o.Key)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(r)
		r.Close()
		sum := sha256.Sum256(body)
		if err != nil || int64(len(body)) != o.Bytes || hex.EncodeToString(sum[:]) != o.SHA256 || o.Hosts == 0 {
			t.Fatalf("host list page %s: manifest says %+v, bucket holds %d bytes", o.Key, o, len(body))
		}
		pageHosts += o.Hosts
	}
	if pageHosts != len(truth) {
		t.Fatalf("host list pages hold %d hosts, truth %d", pageHosts, len(truth))
	}
	var bytes int64
	for i, b := range m.Batches {
		if want := strconv.Itoa(i + 1); b.Batch != want {
			t.Fatalf("manifest batch %d is %q, want %q (in order)", i, b.Batch, want)
		}
		for _, o := range b.Objects {
			st, err := e.store.Stat(t.Context(), o.Key)
			if err != nil || st.Bytes != o.Bytes || o.SHA256 == "" {
				t.Fatalf("batch %d object %s: stat %+v, %v", i, o.Key, st, err)
			}
			bytes += o.Bytes
		}
	}
	if bytes != m.Totals.Bytes {
		t.Fatalf("objects add up to %d bytes, totals say %d", bytes, m.Totals.Bytes)
	}
	// Workers hold no right on the watermark (#17): the finisher leaves
	// it, and the planner's step moves it over the sealed run.
	if wm, err := e.q.Watermark(t.Context()); !errors.Is(err, ledger.ErrNoWatermark) {
		t.Fatalf("the finisher moved the watermark: %+v, %v", wm, err)
	}
	if _, err := e.r.AdvanceWatermark(); err != nil {
		t.Fatal(err)
	}
	wm, err := e.q.Watermark(t.Context())
	if err != nil || !wm.Time.Equal(rec.Before) || wm.Run != out.Run {
		t.Fatalf("watermark %+v, %v; want %s", wm, err, rec.Before)
	}
	var latest finish.Latest
	e.getJSON(objstore.LatestKey(prefix), &latest)
	if latest.Run != out.Run || latest.Manifest != objstore.ManifestKey(prefix, out.Run) {
		t.Fatalf("latest.json %+v", latest)
	}
	if rec.State != ledger.RunComplete || rec.ManifestKey == "" {
		t.Fatalf("record %+v", rec)
	}
}

// TestFinishOnce: many callers at once on a finished run; one completes it.
func TestFinishOnce(t *testing.T) {
	e := setup(t, 1000, 0)
	out := e.plan(testrun.NoFinish)
	e.work(testrun.NoFinish, func() bool {
		n, _ := e.q.CountDone(t.Context(), out.Run)
		return n == e.run(out.Run).BatchesPlanned
	})
	var wg sync.WaitGroup
	for i := range 8 {
		fin := e.finisher("finisher-"+string(rune('a'+i)), 0)
		wg.Go(func() {
			if err := fin.TryFinish(t.Context(), out.Run); err != nil {
				t.Errorf("TryFinish: %v", err)
			}
		})
	}
	wg.Wait()
	if got := e.store.successes.Load(); got != 1 {
		t.Fatalf("_SUCCESS written %d times by 8 concurrent finishers", got)
	}
	if e.run(out.Run).State != ledger.RunComplete {
		t.Fatal("not complete")
	}
}

// TestStaleClaimTakenOver: a finisher that dies after claiming leaves the
// run completing; a later caller takes over once the claim is stale.
func TestStaleClaimTakenOver(t *testing.T) {
	e := setup(t, 1000, 0)
	out := e.plan(testrun.NoFinish)
	e.work(testrun.NoFinish, func() bool {
		n, _ := e.q.CountDone(t.Context(), out.Run)
		return n == e.run(out.Run).BatchesPlanned
	})
	e.store.failNext.Store(true)
	if err := e.finisher("dies", time.Hour).TryFinish(t.Context(), out.Run); err == nil {
		t.Fatal("the injected failure was not reported")
	}
	if r := e.run(out.Run); r.State != ledger.RunCompleting || r.Finisher != "dies" {
		t.Fatalf("record after the failed finish: %+v", r)
	}
	if _, err := e.q.Watermark(t.Context()); !errors.Is(err, ledger.ErrNoWatermark) {
		t.Fatal("watermark moved for an incomplete run")
	}
	// A fresh claim is respected...
	if err := e.finisher("early", time.Hour).TryFinish(t.Context(), out.Run); err != nil || e.run(out.Run).State != ledger.RunCompleting {
		t.Fatalf("a fresh claim was taken over: %v", err)
	}
	// ...a stale one is taken over; here the next planner does it.
	p := e.parts("next-planner", e.finisher("next", time.Nanosecond)).Planner(plan.Config{BatchSize: 500,
		Now: func() time.Time { return e.sim.Clock().Now() }})
	next, err := p.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r := e.run(out.Run); r.State != ledger.RunComplete || r.Finisher != "next" {
		t.Fatalf("record after the takeover: %+v", r)
	}
	if next.Skipped || next.Run == out.Run {
		t.Fatalf("the next planner did not open a new run: %+v", next)
	}
	if rec := e.run(next.Run); !rec.After.Equal(e.run(out.Run).Before) {
		t.Fatalf("next window starts %s, want %s", rec.After, e.run(out.Run).Before)
	}
}

// TestDeadLetterBlocksCompletion: a dead-lettered batch leaves the run
// incomplete and the watermark where it was; the next planner starts again
// from the last completed run.
func TestDeadLetterBlocksCompletion(t *testing.T) {
	e := setup(t, 1500, 1)
	fin := e.finisher("w", 0)
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.FaultCut, 1); err != nil {
		t.Fatal(err)
	}
	out := e.plan(fin)
	planned := e.run(out.Run).BatchesPlanned
	e.work(fin, func() bool {
		n, _ := e.q.CountDone(t.Context(), out.Run)
		dl, _ := e.q.DeadLetters(t.Context(), out.Run)
		return n == planned-1 && len(dl) == 1
	})
	if r := e.run(out.Run); r.State != ledger.RunFetching {
		t.Fatalf("state %s with a dead letter", r.State)
	}
	if _, err := e.store.Stat(t.Context(), objstore.SuccessKey(prefix, out.Run)); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("_SUCCESS of an incomplete run: %v", err)
	}
	if _, err := e.q.Watermark(t.Context()); !errors.Is(err, ledger.ErrNoWatermark) {
		t.Fatal("watermark moved")
	}
	e.sim.Advance(time.Hour)
	next := e.plan(fin)
	if next.Skipped || next.Run == out.Run {
		t.Fatalf("next planner: %+v", next)
	}
	if rec := e.run(next.Run); !rec.After.IsZero() {
		t.Fatalf("next window starts at %s; with no completed run it must start at the beginning", rec.After)
	}
}

// TestEmptyRunCompletesAtOnce: a window with no hosts completes during
// planning, through the same finisher.
func TestEmptyRunCompletesAtOnce(t *testing.T) {
	e := setup(t, 500, 0)
	fin := e.finisher("planner", 0)
	first := e.plan(fin)
	e.work(fin, func() bool { return e.run(first.Run).State == ledger.RunComplete })
	e.sim.Advance(time.Second)
	out := e.plan(fin)
	rec := e.run(out.Run)
	if rec.BatchesPlanned != 0 || rec.State != ledger.RunComplete {
		t.Fatalf("empty run: %+v", rec)
	}
	var m finish.Manifest
	e.getJSON(objstore.ManifestKey(prefix, out.Run), &m)
	if len(m.Batches) != 0 || m.Totals.HostsRequested != 0 {
		t.Fatalf("manifest %+v", m.Totals)
	}
	if wm, _ := e.q.Watermark(t.Context()); !wm.Time.Equal(rec.Before) {
		t.Fatalf("watermark %s, want %s", wm.Time, rec.Before)
	}
}
