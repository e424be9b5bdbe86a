package plan_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/runid"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// fakeQIDs lists "QIDs" with the simulator's Host List: the host IDs
// processed since ModifiedAfter stand in for the QIDs modified since, so
// that the KB walk pages, tees, retries and resumes through the real pager
// and page writer. It records each query.
type fakeQIDs struct {
	c        *qualys.Client
	pageSize int
	mu       sync.Mutex
	queries  []qualys.KBListQuery
}

func (f *fakeQIDs) QIDPager(q qualys.KBListQuery, open qualys.OpenPage) *qualys.HostPager {
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.mu.Unlock()
	return f.c.HostPager(qualys.HostListQuery{ProcessedAfter: q.ModifiedAfter, PageSize: f.pageSize,
		Details: qualys.DetailsNone, Resume: q.Resume}, open)
}

func (f *fakeQIDs) last(t *testing.T) qualys.KBListQuery {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queries) == 0 {
		t.Fatal("no QID listing asked for")
	}
	return f.queries[len(f.queries)-1]
}

// fakeUsed stands in for tables.UsedQIDs: every run uses used, the runs in
// pending have no complete tables; it records the runs it was asked about.
type fakeUsed struct {
	mu      sync.Mutex
	used    []uint64
	pending []string
	asked   [][]string
}

func (f *fakeUsed) Used(_ context.Context, runs []string) (hostids.Set, []string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, slices.Clone(runs))
	var pending []string
	for _, r := range runs {
		if slices.Contains(f.pending, r) {
			pending = append(pending, r)
		}
	}
	return hostids.Of(f.used), pending, nil
}

// kbEnv is a plan env with the KB step on.
type kbEnv struct {
	*env
	qids *fakeQIDs
	used *fakeUsed
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func setupKB(t *testing.T, hosts int64) *kbEnv {
	t.Helper()
	e := setup(t, hosts, qualysim.Config{})
	e.sim.Advance(10 * 24 * time.Hour)
	// The detection walk is one page, so that the gate (pages after the
	// first) holds the KB walk alone.
	e.cfg.PageSize = 0
	e.cfg.KB = plan.KBConfig{Enabled: true, BatchSize: 400, Overlap: time.Hour}
	return &kbEnv{env: e, qids: &fakeQIDs{c: e.r.Client, pageSize: 1000}, used: &fakeUsed{}, logs: &syncBuffer{}}
}

// kbPlanner is a planner with the KB step on the env's parts, finishing
// nothing; its log goes to e.logs.
func (e *kbEnv) kbPlanner(t *testing.T, cfg plan.Config, store ...app.Store) *plan.Planner {
	p := e.r.Parts(cfg.Owner)
	p.Finish = testrun.NoFinish
	p.Log = slog.New(slog.NewTextHandler(e.logs, nil))
	if len(store) > 0 {
		p.Store = store[0]
	}
	return p.Planner(cfg).WithKB(plan.KBDeps{QIDs: e.qids, Ledger: e.q.Ledger, Objects: e.store, Used: e.used.Used})
}

// kbBatches are the stream's batches of pass, each decoded (a Msg-Id other
// than its own fails the test); purged messages are passed over.
func (e *kbEnv) kbBatches(t *testing.T, pass string) []msg.Batch {
	t.Helper()
	ctx := t.Context()
	s, err := e.js.Stream(ctx, msg.StreamBatches)
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
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if raw.Subject != msg.BatchSubject(pass) {
			continue
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

// completeKB does what the fleet and the finisher do with a KB pass: its
// batches leave the queue, its record is complete and its _SUCCESS stored.
func (e *kbEnv) completeKB(t *testing.T, pass string, success bool) {
	t.Helper()
	ctx := t.Context()
	s, err := e.js.Stream(ctx, msg.StreamBatches)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(msg.BatchSubject(pass))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.UpdateRun(ctx, pass, func(r *ledger.RunRecord) error {
		r.State, r.Completed = ledger.RunComplete, time.Now().UTC()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if success {
		e.putSuccess(t, pass)
	}
}

func (e *kbEnv) putSuccess(t *testing.T, pass string) {
	t.Helper()
	if _, err := e.store.Put(t.Context(), objstore.SuccessKey(e.prefix, pass), strings.NewReader(""), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func truthIDs(seq func(func(uint64) bool)) []uint64 {
	var out []uint64
	for id := range seq {
		out = append(out, id)
	}
	return out
}

func union(a, b []uint64) []uint64 { return hostids.Of(slices.Concat(a, b)).IDs() }

func runKB(t *testing.T, p *plan.Planner) plan.Outcome {
	t.Helper()
	out, err := p.Run(t.Context())
	if err != nil {
		t.Fatalf("planner pass: %v", err)
	}
	if out.KB == nil {
		t.Fatal("the KB step did not run")
	}
	if out.KB.Error != "" {
		t.Fatalf("KB step: %s", out.KB.Error)
	}
	return out
}

// TestKBFullThenIncremental: the first KB pass lists the whole
// KnowledgeBase (After zero) into version 2 batches of a kb- pass, with
// Msg-Ids, beside the detection run; once it is complete, the next planner
// pass moves the KB watermark over it and opens an incremental pass from
// the watermark less the overlap, while its detection step is skipped
// (the detection run is still being fetched).
func TestKBFullThenIncremental(t *testing.T) {
	e := setupKB(t, 3000)
	ctx := t.Context()
	p := e.kbPlanner(t, e.cfg)

	out := runKB(t, p)
	if out.Run == "" || runid.IsKB(out.Run) || out.Hosts == 0 {
		t.Fatalf("detection step: %+v", out)
	}
	kb := out.KB
	if !runid.IsKB(kb.Pass) || !kb.Full || kb.Skipped || kb.Resumed {
		t.Fatalf("first KB pass: %+v", kb)
	}
	rec, err := e.q.GetRun(ctx, kb.Pass)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.After.IsZero() || !rec.PlanningComplete || rec.State != ledger.RunFetching {
		t.Fatalf("first KB pass record: %+v", rec)
	}
	if q := e.qids.last(t); !q.ModifiedAfter.IsZero() {
		t.Fatalf("full pass listed from %s", q.ModifiedAfter)
	}
	full := truthIDs(e.sim.HostListTruth(time.Time{}, time.Time{}))
	bs := e.kbBatches(t, kb.Pass)
	for _, b := range bs {
		if b.V != 2 || b.Kind != msg.KindKB {
			t.Fatalf("batch %d: version %d kind %q, want 2 %q", b.Number, b.V, b.Kind, msg.KindKB)
		}
	}
	checkBatches(t, bs, full, 400, rec)
	if kb.QIDs != len(full) || kb.Batches != len(bs) {
		t.Fatalf("outcome %+v, truth %d QIDs in %d batches", kb, len(full), len(bs))
	}
	for page := 1; page <= 3; page++ {
		if _, err := e.store.Stat(ctx, objstore.HostListPageKey(e.prefix, kb.Pass, page)); err != nil {
			t.Fatalf("listing page %d: %v", page, err)
		}
	}
	if ids, err := e.q.RunIDs(ctx); err != nil || slices.Contains(ids, kb.Pass) {
		t.Fatalf("RunIDs %v lists the KB pass (%v)", ids, err)
	}

	e.completeKB(t, kb.Pass, true)
	e.sim.Advance(24 * time.Hour)
	out = runKB(t, p)
	if !out.Skipped {
		t.Fatalf("detection step: %+v, want skipped (its run is still queued)", out)
	}
	wm, err := e.q.KBWatermark(ctx)
	if err != nil || !wm.Time.Equal(rec.Before) || wm.Run != kb.Pass {
		t.Fatalf("KB watermark %+v, %v; want the first pass's end %s", wm, err, rec.Before)
	}
	if _, err := e.q.Watermark(ctx); !errors.Is(err, ledger.ErrNoWatermark) {
		t.Fatalf("the detection watermark moved: %v", err)
	}
	kb2 := out.KB
	if kb2.Full || kb2.Pass == kb.Pass || kb2.Pass <= kb.Pass {
		t.Fatalf("second KB pass: %+v", kb2)
	}
	rec2, err := e.q.GetRun(ctx, kb2.Pass)
	if err != nil {
		t.Fatal(err)
	}
	after := rec.Before.Add(-time.Hour)
	if !rec2.After.Equal(after) || !e.qids.last(t).ModifiedAfter.Equal(after) {
		t.Fatalf("incremental pass from %s (listed from %s), want %s", rec2.After, e.qids.last(t).ModifiedAfter, after)
	}
	changed := truthIDs(e.sim.HostListTruth(after, time.Time{}))
	if len(changed) == 0 || len(changed) >= len(full) {
		t.Fatalf("the simulator changed %d of %d: the test shows nothing", len(changed), len(full))
	}
	checkBatches(t, e.kbBatches(t, kb2.Pass), changed, 400, rec2)
}

// TestKBResumeCutsSameBatches: a planner stopped in the middle of a KB
// pass's listing leaves it planning; the next pass takes it over and cuts
// the same batches (IDs in order, each batch full but the last, each
// Msg-Id once), backfill merged in and listed QIDs not asked twice.
func TestKBResumeCutsSameBatches(t *testing.T) {
	e := setupKB(t, 3000)
	ctx := t.Context()
	full := truthIDs(e.sim.HostListTruth(time.Time{}, time.Time{}))
	// A complete detection run whose detections use listed QIDs and
	// QIDs the listing lacks, between and beyond the listed ones.
	backfill := []uint64{1, full[10], full[10] + 1, full[1500] + 1, full[len(full)-1] + 7}
	e.used.used = backfill
	completeRun(t, e, runid.New(e.sim.Clock().Now().Add(-48*time.Hour)))

	e.gate.hold()
	cfgA := e.cfg
	cfgA.Owner = "planner-a"
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan plan.Outcome, 1)
	go func() {
		out, _ := e.kbPlanner(t, cfgA).Run(runCtx)
		done <- out
	}()
	waitFor(t, e.gate.waiting, "the KB listing's second page")
	cancel()
	outA := <-done
	if outA.KB == nil || outA.KB.Pass == "" {
		t.Fatalf("planner A: %+v", outA)
	}
	pass := outA.KB.Pass
	if r, err := e.q.GetRun(ctx, pass); err != nil || r.State != ledger.RunPlanning {
		t.Fatalf("stopped pass: %+v, %v", r, err)
	}
	before := len(e.kbBatches(t, pass))
	e.gate.release()

	cfgB := e.cfg
	cfgB.Owner = "planner-b"
	out := runKB(t, e.kbPlanner(t, cfgB))
	if out.KB.Pass != pass || !out.KB.Resumed {
		t.Fatalf("planner B: %+v, want %s resumed", out.KB, pass)
	}
	rec, err := e.q.GetRun(ctx, pass)
	if err != nil {
		t.Fatal(err)
	}
	want := union(full, backfill)
	bs := e.kbBatches(t, pass)
	if len(bs) <= before || before == 0 {
		t.Fatalf("%d batches before the stop, %d after: the stop was not mid-walk", before, len(bs))
	}
	checkBatches(t, bs, want, 400, rec)
	// The backfill holds a listed QID too (the listing is not known when
	// the pass opens); the batches ask for it once.
	if rec.HostsPlanned != len(want) || out.KB.Backfill != len(backfill) {
		t.Fatalf("planned %d QIDs (backfill %d), want %d (backfill %d)", rec.HostsPlanned, out.KB.Backfill, len(want), len(backfill))
	}
}

// completeRun records a complete detection run id.
func completeRun(t *testing.T, e *kbEnv, id string) {
	t.Helper()
	now := e.sim.Clock().Now()
	if _, err := e.q.CreateRun(t.Context(), ledger.RunRecord{ID: id, After: now.Add(-72 * time.Hour),
		Before: now.Add(-48 * time.Hour), State: ledger.RunComplete}); err != nil {
		t.Fatal(err)
	}
}

// TestKBBackfill: a new pass asks for the QIDs complete runs use less those
// the newest complete pass's manifest knows, merged into its listing
// without repeats; Covers stops before the first run whose tables are
// pending, and the next pass looks at runs after it only.
func TestKBBackfill(t *testing.T) {
	e := setupKB(t, 1000)
	ctx := t.Context()
	now := e.sim.Clock().Now()
	r1, r2, r3 := runid.New(now.Add(-72*time.Hour)), runid.New(now.Add(-71*time.Hour)), runid.New(now.Add(-70*time.Hour))
	for _, id := range []string{r1, r2, r3} {
		completeRun(t, e, id)
	}
	full := truthIDs(e.sim.HostListTruth(time.Time{}, time.Time{}))
	// An earlier complete pass knows 3 and 4.
	known := "kb-20200101T000000Z-aaaaaa"
	putJSON(t, e, objstore.KBLatestKey(e.prefix), `{"run":"`+known+`","manifest":"ignored"}`)
	putJSON(t, e, objstore.ManifestKey(e.prefix, known), `{"run":"`+known+`","kind":"kb","known_qids":"3-4"}`)
	e.used.used = []uint64{2, 3, 4, full[5], full[len(full)-1] + 1}
	e.used.pending = []string{r3}

	out := runKB(t, e.kbPlanner(t, e.cfg))
	rec, err := e.q.GetRun(ctx, out.KB.Pass)
	if err != nil {
		t.Fatal(err)
	}
	wantBackfill := hostids.Of([]uint64{2, full[5], full[len(full)-1] + 1}).String()
	if rec.Backfill != wantBackfill || rec.Covers != r2 {
		t.Fatalf("backfill %q covers %q, want %q and %s", rec.Backfill, rec.Covers, wantBackfill, r2)
	}
	if got := e.used.asked; len(got) != 1 || !slices.Equal(got[0], []string{r1, r2, r3}) {
		t.Fatalf("asked about runs %v, want [%s %s %s]", got, r1, r2, r3)
	}
	checkBatches(t, e.kbBatches(t, out.KB.Pass), union(full, []uint64{2, full[len(full)-1] + 1}), 400, rec)

	e.completeKB(t, out.KB.Pass, true)
	e.sim.Advance(time.Hour)
	out = runKB(t, e.kbPlanner(t, e.cfg))
	if got := e.used.asked; len(got) != 2 || !slices.Equal(got[1], []string{r3}) {
		t.Fatalf("second pass asked about runs %v, want [%s]", got, r3)
	}
}

func putJSON(t *testing.T, e *kbEnv, key, body string) {
	t.Helper()
	if _, err := e.store.Put(t.Context(), key, strings.NewReader(body), objstore.PutOptions{ContentType: "application/json"}); err != nil {
		t.Fatal(err)
	}
}

// TestKBAdvancerRefuses: the KB watermark moves over a complete pass only
// with the checks runs get: a complete record without _SUCCESS, a pass
// whose window starts after the watermark (a gap), or one ending after the
// planner's clock, moves nothing; a whole pass does.
func TestKBAdvancerRefuses(t *testing.T) {
	e := setupKB(t, 1000)
	ctx := t.Context()
	p := e.kbPlanner(t, e.cfg)
	first := runKB(t, p).KB.Pass
	e.completeKB(t, first, false)
	if _, err := p.AdvanceKBWatermark(ctx); !errors.Is(err, ledger.ErrNoWatermark) {
		t.Fatalf("advanced over a pass without _SUCCESS: %v", err)
	}
	if !strings.Contains(e.logs.String(), "its _SUCCESS is not stored") {
		t.Errorf("the refusal is not logged:\n%s", e.logs)
	}
	e.putSuccess(t, first)
	wm, err := p.AdvanceKBWatermark(ctx)
	rec := e.r.Record(first)
	if err != nil || !wm.Time.Equal(rec.Before) {
		t.Fatalf("KB watermark %+v, %v; want %s", wm, err, rec.Before)
	}

	now := e.sim.Clock().Now()
	for _, tc := range []struct {
		name          string
		after, before time.Time
		log           string
	}{
		{"gap", wm.Time.Add(time.Second), now.Add(30 * time.Second), "its window starts after the watermark"},
		{"future end", wm.Time.Add(-time.Hour), now.Add(time.Hour), "ends after this planner's clock"},
		{"no listing page", wm.Time.Add(-time.Hour), now.Add(30 * time.Second), "no Host List page is recorded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A forged pass: complete, with its _SUCCESS, as a worker's
			// credential could write them.
			id := runid.NewKB(now.Add(time.Duration(len(tc.name)) * time.Second))
			if _, err := e.q.CreateRun(ctx, ledger.RunRecord{ID: id, After: tc.after, Before: tc.before,
				State: ledger.RunComplete}); err != nil {
				t.Fatal(err)
			}
			e.putSuccess(t, id)
			got, err := p.AdvanceKBWatermark(ctx)
			if err != nil || !got.Time.Equal(wm.Time) {
				t.Fatalf("KB watermark %+v, %v; want it left at %s", got, err, wm.Time)
			}
			if !strings.Contains(e.logs.String(), tc.log) {
				t.Errorf("no %q in the log", tc.log)
			}
			// Out of the way of the next case.
			if _, err := e.q.UpdateRun(ctx, id, func(r *ledger.RunRecord) error { r.State = ledger.RunFailed; return nil }); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestKBSupersededPassPublishesNothing: planner A freezes in its KB pass's
// listing and loses its lock; planner B takes the pass over and plans it to
// the end. A, thawed, publishes nothing, lands no page, and reports the KB
// pass superseded, its detection step unharmed.
func TestKBSupersededPassPublishesNothing(t *testing.T) {
	e := setupKB(t, 3000)
	ctx := t.Context()
	cfgA := e.cfg
	cfgA.Owner = "planner-a"
	cfgA.LockTTL = 2 * time.Second
	cfgA.MaxBackoff = 50 * time.Millisecond
	// The detection page is the first upload, the KB listing's first page
	// the second: A freezes at its end.
	frozen := newFreezingStore(t, e.store, true)
	a := e.kbPlanner(t, cfgA, frozen)
	plan.FreezeLock(a)
	type result struct {
		out plan.Outcome
		err error
	}
	doneA := make(chan result, 1)
	go func() {
		out, err := a.Run(ctx)
		doneA <- result{out, err}
	}()
	waitFor(t, frozen.frozen, "planner A frozen in the KB listing's first page")
	testenv.Eventually(t, 30*time.Second, func() bool { return e.lockGone(t) }, "planner A's lock never lapsed")

	cfgB := e.cfg
	cfgB.Owner = "planner-b"
	outB := runKB(t, e.kbPlanner(t, cfgB))
	if !outB.KB.Resumed {
		t.Fatalf("planner B: %+v, want A's pass resumed", outB.KB)
	}
	pass := outB.KB.Pass
	after := e.kbBatches(t, pass)

	frozen.release()
	resA := <-doneA
	if resA.err != nil || resA.out.KB == nil || !resA.out.KB.Superseded || resA.out.KB.Pass != pass {
		t.Fatalf("planner A: %+v, %v; want its KB pass %s superseded", resA.out.KB, resA.err, pass)
	}
	if resA.out.Run == "" || resA.out.Superseded {
		t.Fatalf("planner A's detection step: %+v", resA.out)
	}
	if got := e.kbBatches(t, pass); len(got) != len(after) {
		t.Fatalf("%d batches after A woke, %d before", len(got), len(after))
	}
	rec := e.r.Record(pass)
	checkBatches(t, after, truthIDs(e.sim.HostListTruth(time.Time{}, time.Time{})), 400, rec)
	r, err := e.store.Get(ctx, objstore.HostListPageKey(e.prefix, pass, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 8)
	if _, err := io.ReadFull(r, head); err != nil || string(head) == "xxxxxxxx" {
		t.Fatalf("page 1 holds A's frozen copy: %q, %v", head, err)
	}
}

// TestKBAndDetectionFailApart: a KB step that fails (its listing refused)
// fails its pass and is reported in the outcome, while the detection run is
// planned and the pass ends without error; a detection step that fails
// fails its run and the pass, while the KB pass is planned.
func TestKBAndDetectionFailApart(t *testing.T) {
	t.Run("kb fails", func(t *testing.T) {
		e := setupKB(t, 1000)
		e.qids.c = e.r.NewClient("not-the-password")
		out, err := e.kbPlanner(t, e.cfg).Run(t.Context())
		if err != nil || out.Run == "" || out.Hosts == 0 {
			t.Fatalf("detection step: %+v, %v", out, err)
		}
		if out.KB == nil || out.KB.Error == "" || out.KB.Pass == "" {
			t.Fatalf("KB step: %+v, want its failure", out.KB)
		}
		if r := e.r.Record(out.KB.Pass); r.State != ledger.RunFailed {
			t.Fatalf("KB pass %s: %s, want failed", r.ID, r.State)
		}
		if r := e.r.Record(out.Run); r.State != ledger.RunFetching || !r.PlanningComplete {
			t.Fatalf("detection run: %s", r.State)
		}
	})
	t.Run("detection fails", func(t *testing.T) {
		e := setupKB(t, 1000)
		p := e.r.Parts("planner")
		p.Finish = testrun.NoFinish
		p.Qualys = e.r.NewClient("not-the-password")
		planner := p.Planner(e.cfg).WithKB(plan.KBDeps{QIDs: e.qids, Ledger: e.q.Ledger, Objects: e.store})
		out, err := planner.Run(t.Context())
		if !errors.Is(err, plan.ErrRunFailed) {
			t.Fatalf("detection step: %v, want its run failed", err)
		}
		if out.KB == nil || out.KB.Error != "" || out.KB.Batches == 0 {
			t.Fatalf("KB step: %+v, want a pass planned", out.KB)
		}
		if r := e.r.Record(out.KB.Pass); r.State != ledger.RunFetching {
			t.Fatalf("KB pass: %s", r.State)
		}
	})
}

// TestKBBackfillCapped: a backfill larger than a pass may hold in its record
// (the first pass knows nothing, so every used QID is unknown) is cut to
// its first QIDs, and the runs are looked at again by the next pass.
func TestKBBackfillCapped(t *testing.T) {
	e := setupKB(t, 100)
	now := e.sim.Clock().Now()
	r1 := runid.New(now.Add(-72 * time.Hour))
	completeRun(t, e, r1)
	used := make([]uint64, 0, 25000)
	for q := uint64(1_000_001); len(used) < cap(used); q += 2 {
		used = append(used, q)
	}
	e.used.used = used

	out := runKB(t, e.kbPlanner(t, e.cfg))
	rec, err := e.q.GetRun(t.Context(), out.KB.Pass)
	if err != nil {
		t.Fatal(err)
	}
	if want := hostids.Of(used[:20000]).String(); rec.Backfill != want {
		t.Fatalf("backfill holds %d QIDs (%.40q…), want the first 20000", mustCount(t, rec.Backfill), rec.Backfill)
	}
	if rec.Covers != "" {
		t.Fatalf("covers %q: the capped runs must be looked at again", rec.Covers)
	}
}

func mustCount(t *testing.T, ids string) int {
	t.Helper()
	n, err := hostids.Count(ids)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
