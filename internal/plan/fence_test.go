package plan_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
)

// freezingStore freezes the upload of the second page it is given until
// thawed: a pod frozen mid-page (after the page's first bytes, while the
// pager is still reading it) or at the page's end (the page read whole, its
// upload not completed). The bytes of that upload are overwritten, so that
// the page, if it ever landed, differs from any other pass's copy of it.
type freezingStore struct {
	*objstore.S3
	atEnd  bool
	mu     sync.Mutex
	calls  int
	frozen chan struct{} // closed once the upload froze
	thaw   chan struct{}
	once   sync.Once
}

func newFreezingStore(t *testing.T, s *objstore.S3, atEnd bool) *freezingStore {
	f := &freezingStore{S3: s, atEnd: atEnd, frozen: make(chan struct{}), thaw: make(chan struct{})}
	t.Cleanup(f.release)
	return f
}

func (f *freezingStore) release() { f.once.Do(func() { close(f.thaw) }) }

func (f *freezingStore) Complete(ctx context.Context, u objstore.Upload, r io.Reader) (objstore.Object, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	if n == 2 {
		r = &freezer{r: r, f: f}
	}
	return f.S3.Complete(ctx, u, r)
}

type freezer struct {
	r      io.Reader
	f      *freezingStore
	read   int
	thawed bool
}

func (z *freezer) Read(p []byte) (int, error) {
	if !z.f.atEnd && !z.thawed && z.read >= 16<<10 {
		z.freeze()
	}
	n, err := z.r.Read(p)
	z.read += n
	for i := range p[:n] {
		p[i] = 'x'
	}
	if z.f.atEnd && !z.thawed && err == io.EOF {
		z.freeze()
	}
	return n, err
}

func (z *freezer) freeze() {
	close(z.f.frozen)
	<-z.f.thaw // frozen: not even a context ends it
	z.thawed = true
}

// lockGone reports whether the planner lock key is absent.
func (e *env) lockGone(t *testing.T) bool {
	kv, err := e.js.KeyValue(t.Context(), ledger.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	_, err = kv.Get(t.Context(), "planner")
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// TestTakenOverPlannerLandsNothing (issue 16, case 3): planner A freezes in
// a Host List page and its lock lapses; planner B takes the run over and
// plans it to the end; then A wakes up. A publishes nothing more, writes
// nothing into the run, its page upload does not land, and it reports that
// it was superseded. Frozen mid-page, A would publish next; frozen at the
// page's end, it would complete the page's upload next.
func TestTakenOverPlannerLandsNothing(t *testing.T) {
	t.Run("mid-page", func(t *testing.T) { testTakenOver(t, false) })
	t.Run("page end", func(t *testing.T) { testTakenOver(t, true) })
}

func testTakenOver(t *testing.T, atEnd bool) {
	e := setup(t, 30_000, qualysim.Config{})
	e.sim.Advance(10 * 24 * time.Hour)
	ctx := t.Context()
	cfgA := e.cfg
	cfgA.Owner = "planner-a"
	cfgA.LockTTL = 2 * time.Second
	cfgA.MaxBackoff = 50 * time.Millisecond
	frozen := newFreezingStore(t, e.store, atEnd)
	a := e.planner(t, cfgA, frozen)
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
	waitFor(t, frozen.frozen, "planner A frozen in page 2's upload")
	testenv.Eventually(t, 30*time.Second, func() bool { return e.lockGone(t) }, "planner A's lock never lapsed")

	ids, err := e.q.RunIDs(ctx)
	if err != nil || len(ids) != 1 {
		t.Fatalf("runs %v, %v", ids, err)
	}
	atFreeze, err := e.q.GetRun(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	page2 := objstore.HostListPageKey(e.prefix, atFreeze.ID, 2)
	if !strings.HasPrefix(atFreeze.PlannerID, "planner-a/") || len(atFreeze.Uploads) != 1 || atFreeze.Uploads[0].Key != page2 {
		t.Fatalf("run record while A is frozen: planner %q, uploads %+v; want A's, with page 2's upload listed", atFreeze.PlannerID, atFreeze.Uploads)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return e.streamCount(t) == uint64(atFreeze.Progress.Batches) },
		"A's recorded batches never all reached the stream")

	cfgB := e.cfg
	cfgB.Owner = "planner-b"
	outB, err := e.planner(t, cfgB).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !outB.Resumed || outB.Run != atFreeze.ID || outB.Superseded {
		t.Fatalf("planner B: %+v; want run %s resumed", outB, atFreeze.ID)
	}
	byB, err := e.q.GetRun(ctx, atFreeze.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(byB.PlannerID, "planner-b/") || !byB.PlanningComplete || len(byB.Uploads) != 0 {
		t.Fatalf("run record after B: planner %q, complete %v, uploads %+v", byB.PlannerID, byB.PlanningComplete, byB.Uploads)
	}
	inStream := e.streamCount(t)
	// Every publish A makes from now on reaches this subscriber, even one
	// the stream would drop as a duplicate.
	nc := e.js.Conn()
	sub, err := nc.SubscribeSync(msg.BatchSubject(atFreeze.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	frozen.release()
	var ra result
	select {
	case ra = <-doneA:
	case <-time.After(60 * time.Second):
		t.Fatal("planner A did not stop after it woke up")
	}
	if ra.err != nil || !ra.out.Superseded || ra.out.Run != atFreeze.ID || ra.out.Reason == "" {
		t.Fatalf("planner A: %+v, %v; want superseded on run %s and no error", ra.out, ra.err, atFreeze.ID)
	}

	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, err := sub.Pending(); err != nil || n != 0 {
		t.Fatalf("A published %d batches after B took the run over (%v)", n, err)
	}
	if n := e.streamCount(t); n != inStream {
		t.Fatalf("the stream holds %d batches after A woke up, %d before: A published after B took the run over", n, inStream)
	}
	final, err := e.q.GetRun(ctx, atFreeze.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.Revision != byB.Revision || final.BatchesPlanned != byB.BatchesPlanned || final.PlannerID != byB.PlannerID ||
		final.State != ledger.RunFetching {
		t.Fatalf("run record after A woke up: revision %d, batches %d, planner %q, state %s; B left revision %d, batches %d, planner %q",
			final.Revision, final.BatchesPlanned, final.PlannerID, final.State, byB.Revision, byB.BatchesPlanned, byB.PlannerID)
	}
	truth := slices.Collect(e.sim.HostListTruth(final.After, final.Before))
	checkBatches(t, e.batches(t), truth, 1000, final)
	if hosts := e.checkPages(t, final.ID); hosts != len(truth) {
		t.Fatalf("page records hold %d hosts, truth %d", hosts, len(truth))
	}
	// Page 2 is B's copy: A's, had it landed, would hold A's overwritten
	// bytes.
	r, err := e.store.Get(ctx, page2)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, err = io.Copy(h, r)
	r.Close()
	if err != nil || len(final.Pages) < 2 || hex.EncodeToString(h.Sum(nil)) != final.Pages[1].SHA256 {
		t.Fatalf("page 2 in the bucket is not the copy B recorded (%v)", err)
	}
}

// TestLostLockStopsPlanner: a planner whose lock is removed stops before
// its next publish, writes nothing more into the run and says it was
// superseded, without an error (the planner exits 0).
func TestLostLockStopsPlanner(t *testing.T) {
	e := setup(t, 20_000, qualysim.Config{})
	e.sim.Advance(10 * 24 * time.Hour)
	ctx := t.Context()
	cfg := e.cfg
	cfg.LockTTL = 3 * time.Second
	e.gate.hold()
	t.Cleanup(e.gate.release)

	type result struct {
		out plan.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := e.planner(t, cfg).Run(ctx)
		done <- result{out, err}
	}()
	waitFor(t, e.gate.waiting, "a held Host List request")
	ids, err := e.q.RunIDs(ctx)
	if err != nil || len(ids) != 1 {
		t.Fatalf("runs %v, %v", ids, err)
	}
	mid, err := e.q.GetRun(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if mid.Progress.Batches == 0 {
		t.Fatalf("no batch recorded before page 2: %+v", mid.Progress)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return e.streamCount(t) == uint64(mid.Progress.Batches) },
		"page 1's batches never all reached the stream")

	kv, err := e.js.KeyValue(ctx, ledger.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "planner"); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the planner did not stop after losing its lock")
	}
	if r.err != nil || !r.out.Superseded || r.out.Run != mid.ID || !strings.Contains(r.out.Reason, "lock") {
		t.Fatalf("planner: %+v, %v; want superseded on run %s (lock lost) and no error", r.out, r.err, mid.ID)
	}
	e.gate.release()
	if n := e.streamCount(t); n != uint64(mid.Progress.Batches) {
		t.Fatalf("%d batches in the stream, %d when the lock was lost", n, mid.Progress.Batches)
	}
	after, err := e.q.GetRun(ctx, mid.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision != mid.Revision || after.State != ledger.RunPlanning {
		t.Fatalf("run record written after the lock was lost: revision %d (was %d), state %s", after.Revision, mid.Revision, after.State)
	}
}

// TestResumeKeepsPagesOfFinalWalk: a resumed pass whose walk ends on an
// earlier page than a previous pass's records only the pages it reached.
func TestResumeKeepsPagesOfFinalWalk(t *testing.T) {
	e := setup(t, 20_000, qualysim.Config{})
	e.sim.Advance(10 * 24 * time.Hour)
	ctx := t.Context()
	before := e.sim.Clock().Now().UTC().Truncate(time.Second)
	truth := slices.Collect(e.sim.HostListTruth(time.Time{}, before))
	walked := (len(truth) + 4999) / 5000
	id := "20260110T000000Z-abcdef"
	// An earlier pass recorded more pages than this window's walk reaches.
	var stale []objstore.Object
	for n := 1; n <= walked+2; n++ {
		stale = append(stale, objstore.Object{Key: objstore.HostListPageKey(e.prefix, id, n), Hosts: 1, Bytes: 1})
	}
	if _, err := e.q.CreateRun(ctx, ledger.RunRecord{ID: id, Before: before, State: ledger.RunPlanning,
		Planner: "earlier", PlannerID: "earlier/0000", Pages: stale}); err != nil {
		t.Fatal(err)
	}
	out, err := e.planner(t, e.cfg).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Resumed || out.Run != id {
		t.Fatalf("outcome %+v", out)
	}
	rec, err := e.q.GetRun(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Pages) != walked {
		t.Fatalf("run record lists %d pages, the final walk reached %d", len(rec.Pages), walked)
	}
	hosts := 0
	for i, o := range rec.Pages {
		if o.Key != objstore.HostListPageKey(e.prefix, id, i+1) || o.SHA256 == "" {
			t.Fatalf("page %d recorded as %+v", i+1, o)
		}
		hosts += o.Hosts
	}
	if hosts != len(truth) {
		t.Fatalf("recorded pages hold %d hosts, truth %d", hosts, len(truth))
	}
	if got := e.checkPages(t, id); got != len(truth) {
		t.Fatalf("page records hold %d hosts, truth %d", got, len(truth))
	}
}
