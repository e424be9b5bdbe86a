package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/testenv"
)

func TestCopyNewer(t *testing.T) {
	for _, c := range []struct {
		name string
		c, o Copy
		want bool
	}{
		{"later sequence", Copy{Seq: 5, Delivery: 1}, Copy{Seq: 4, Delivery: 9}, true},
		{"earlier sequence", Copy{Seq: 4, Delivery: 9}, Copy{Seq: 5, Delivery: 1}, false},
		{"redelivery", Copy{Seq: 5, Delivery: 2}, Copy{Seq: 5, Delivery: 1}, true},
		{"earlier delivery", Copy{Seq: 5, Delivery: 1}, Copy{Seq: 5, Delivery: 2}, false},
		{"same copy", Copy{Seq: 5, Delivery: 2}, Copy{Seq: 5, Delivery: 2}, false},
		{"same order, other worker", Copy{Worker: "b", Seq: 5, Delivery: 2}, Copy{Worker: "a", Seq: 5, Delivery: 2}, false},
	} {
		if got := c.c.Newer(c.o); got != c.want {
			t.Errorf("%s: %v.Newer(%v) = %v", c.name, c.c, c.o, got)
		}
	}
}

// aborts records the uploads passed to it, in order; fail, when set, is
// returned for every call.
type aborts struct {
	mu   sync.Mutex
	got  []objstore.Upload
	fail error
}

func (a *aborts) abort(_ context.Context, u objstore.Upload) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, u)
	return a.fail
}

func (a *aborts) list() []objstore.Upload {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.got)
}

func upload(name string) objstore.Upload {
	return objstore.Upload{Key: "runs/r1/" + name, ID: "id-" + name}
}

func noAbort(t *testing.T) func(context.Context, objstore.Upload) error {
	return func(_ context.Context, u objstore.Upload) error {
		t.Errorf("abort of %v called", u)
		return nil
	}
}

// TestTakeBatch takes a batch from each kind of claim: which error, which
// aborts, which claim afterwards.
func TestTakeBatch(t *testing.T) {
	t.Parallel()
	old := Copy{Worker: "a", Seq: 7, Delivery: 1}
	me := Copy{Worker: "b", Seq: 7, Delivery: 2}
	newer := Copy{Worker: "c", Seq: 9, Delivery: 1}
	result := BatchResult{Run: "r1", Batch: "3", HostsRequested: 4, Objects: []objstore.Object{{Key: "k"}}}
	split := Split{Batch: "3", Halves: [2]string{"3.1", "3.2"}}
	for _, c := range []struct {
		name string
		// prepare brings batch 3 of run r1 to the state under test.
		prepare    func(t *testing.T, e *env)
		wantErr    error
		wantAborts []objstore.Upload
		wantHolder Copy
		wantUps    []objstore.Upload
	}{{
		name:       "absent",
		prepare:    func(*testing.T, *env) {},
		wantHolder: me, wantUps: []objstore.Upload{upload("me")},
	}, {
		name: "fetching by an older copy",
		prepare: func(t *testing.T, e *env) {
			h := take(t, e.l, old, upload("a1"))
			if err := h.AddUpload(e.Ctx, upload("a2")); err != nil {
				t.Fatal(err)
			}
		},
		wantAborts: []objstore.Upload{upload("a1"), upload("a2")},
		wantHolder: me, wantUps: []objstore.Upload{upload("me")},
	}, {
		name:    "fetching by a newer copy",
		prepare: func(t *testing.T, e *env) { take(t, e.l, newer, upload("c1")) },
		wantErr: ErrSuperseded, wantHolder: newer, wantUps: []objstore.Upload{upload("c1")},
	}, {
		name:       "fetching by the same copy",
		prepare:    func(t *testing.T, e *env) { take(t, e.l, me, upload("b1")) },
		wantHolder: me, wantUps: []objstore.Upload{upload("b1"), upload("me")},
	}, {
		name:       "fetching by the same copy, first registered",
		prepare:    func(t *testing.T, e *env) { take(t, e.l, me, upload("me")) },
		wantHolder: me, wantUps: []objstore.Upload{upload("me")},
	}, {
		name: "done",
		prepare: func(t *testing.T, e *env) {
			if err := take(t, e.l, old, upload("a1")).Done(e.Ctx, result); err != nil {
				t.Fatal(err)
			}
		},
		wantErr: ErrBatchDone, wantHolder: old,
	}, {
		name: "split",
		prepare: func(t *testing.T, e *env) {
			if err := take(t, e.l, newer, upload("c1")).Split(e.Ctx, split); err != nil {
				t.Fatal(err)
			}
		},
		wantErr: ErrBatchSplit, wantHolder: newer, wantUps: []objstore.Upload{upload("c1")},
	}, {
		name: "garbled",
		prepare: func(t *testing.T, e *env) {
			if _, err := e.l.runs.Put(e.Ctx, "r1.claim.3", []byte("{nonsense")); err != nil {
				t.Fatal(err)
			}
		},
		wantHolder: me, wantUps: []objstore.Upload{upload("me")},
	}} {
		t.Run(c.name, func(t *testing.T) {
			// A server per case: each starts from an empty bucket.
			e := setup(t, Config{})
			c.prepare(t, e)
			// The final records go missing, as if their writer died
			// between the claim and the record: the take rewrites them.
			for _, k := range []string{"r1.done.3", "r1.split.3"} {
				_ = e.l.runs.Delete(e.Ctx, k)
			}
			var ab aborts
			h, err := e.l.TakeBatch(e.Ctx, "r1", "3", me, upload("me"), ab.abort)
			if !errors.Is(err, c.wantErr) || (err == nil) != (h != nil) {
				t.Fatalf("TakeBatch: %v, %v; want %v", h, err, c.wantErr)
			}
			if got := ab.list(); !slices.Equal(got, c.wantAborts) {
				t.Errorf("aborted %v, want %v", got, c.wantAborts)
			}
			cl, ok, err := e.l.GetClaim(e.Ctx, "r1", "3")
			if err != nil || !ok || cl.Holder != c.wantHolder || !slices.Equal(cl.Uploads, c.wantUps) {
				t.Fatalf("claim %+v, %v, %v; want holder %v, uploads %v", cl, ok, err, c.wantHolder, c.wantUps)
			}
			if h != nil && (h.Claim().Holder != me || !slices.Equal(h.Claim().Uploads, cl.Uploads)) {
				t.Errorf("held %+v, stored %+v", h.Claim(), cl)
			}
			switch c.wantErr {
			case ErrBatchDone:
				done, err := e.l.DoneBatches(e.Ctx, "r1")
				if err != nil || len(done) != 1 || done[0].HostsRequested != 4 || cl.Result == nil || cl.Uploads != nil {
					t.Errorf("done records %+v, %v; claim %+v", done, err, cl)
				}
			case ErrBatchSplit:
				splits, err := e.l.Splits(e.Ctx, "r1")
				if err != nil || len(splits) != 1 || splits[0] != split {
					t.Errorf("split records %+v, %v", splits, err)
				}
			}
		})
	}
}

// take makes c the holder of batch 3 of r1, with no upload to abort.
func take(t *testing.T, l *Ledger, c Copy, first objstore.Upload) *Held {
	t.Helper()
	h, err := l.TakeBatch(context.Background(), "r1", "3", c, first, noAbort(t))
	if err != nil {
		t.Fatalf("TakeBatch as %v: %v", c, err)
	}
	return h
}

// TestHeldAfterTakeover: once a newer copy holds the batch, nothing the
// older one writes lands, and an abort that fails stops a takeover.
func TestHeldAfterTakeover(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	a := take(t, e.l, Copy{Worker: "a", Seq: 1, Delivery: 1}, objstore.Upload{})
	if a.Claim().Uploads != nil {
		t.Errorf("uploads without a first: %v", a.Claim().Uploads)
	}
	if err := a.AddUpload(e.Ctx, upload("a1")); err != nil {
		t.Fatal(err)
	}
	b := Copy{Worker: "b", Seq: 1, Delivery: 2}
	broken := aborts{fail: errors.New("store down")}
	if _, err := e.l.TakeBatch(e.Ctx, "r1", "3", b, upload("b1"), broken.abort); !errors.Is(err, broken.fail) {
		t.Fatalf("take with a failing abort: %v", err)
	}
	if cl, _, _ := e.l.GetClaim(e.Ctx, "r1", "3"); cl.Holder.Worker != "a" {
		t.Fatalf("a failed abort let the take through: %+v", cl)
	}
	var ab aborts
	hb, err := e.l.TakeBatch(e.Ctx, "r1", "3", b, upload("b1"), ab.abort)
	if err != nil || !slices.Equal(ab.list(), []objstore.Upload{upload("a1")}) {
		t.Fatalf("takeover: %v, aborted %v", err, ab.list())
	}
	if err := a.AddUpload(e.Ctx, upload("a2")); !errors.Is(err, ErrSuperseded) {
		t.Errorf("AddUpload after the takeover: %v", err)
	}
	if err := a.Done(e.Ctx, BatchResult{Run: "r1", Batch: "3"}); !errors.Is(err, ErrSuperseded) {
		t.Errorf("Done after the takeover: %v", err)
	}
	if err := a.Split(e.Ctx, Split{Batch: "3"}); !errors.Is(err, ErrSuperseded) {
		t.Errorf("Split after the takeover: %v", err)
	}
	if done, err := e.l.DoneBatches(e.Ctx, "r1"); err != nil || len(done) != 0 {
		t.Errorf("the superseded copy's Done wrote %+v, %v", done, err)
	}
	if err := hb.Done(e.Ctx, BatchResult{Run: "r1", Batch: "3", Worker: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := hb.AddUpload(e.Ctx, upload("b2")); err == nil {
		t.Error("AddUpload to a done claim")
	}
	if err := hb.Done(e.Ctx, BatchResult{Run: "r1", Batch: "4"}); err == nil {
		t.Error("Done of another batch")
	}
	cl, ok, err := e.l.GetClaim(e.Ctx, "r1", "3")
	if err != nil || !ok || cl.State != ClaimDone || cl.Result == nil || cl.Result.Worker != "b" {
		t.Fatalf("claim after Done: %+v, %v, %v", cl, ok, err)
	}
	if _, ok, err := e.l.GetClaim(e.Ctx, "r1", "4"); ok || err != nil {
		t.Errorf("claim of an untaken batch: %v, %v", ok, err)
	}
	if _, _, err := e.l.GetClaim(e.Ctx, "r1", "03"); err == nil {
		t.Error("GetClaim accepted batch key 03")
	}
	if _, err := e.l.TakeBatch(e.Ctx, "r 1", "3", b, upload("b1"), ab.abort); err == nil {
		t.Error("TakeBatch accepted run ID 'r 1'")
	}
}

// TestTakeBatchAbortsAgain: an upload the holder registers while a newer
// copy aborts its uploads makes the newer copy's write fail; it reads the
// claim again and aborts what it lists now, the new upload included.
func TestTakeBatchAbortsAgain(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	a := take(t, e.l, Copy{Worker: "a", Seq: 1, Delivery: 1}, upload("a1"))
	var ab aborts
	raced := false
	h, err := e.l.TakeBatch(e.Ctx, "r1", "3", Copy{Worker: "b", Seq: 2, Delivery: 1}, upload("b1"),
		func(ctx context.Context, u objstore.Upload) error {
			if !raced {
				raced = true
				if err := a.AddUpload(ctx, upload("a2")); err != nil {
					t.Errorf("the holder's AddUpload during the take: %v", err)
				}
			}
			return ab.abort(ctx, u)
		})
	if err != nil {
		t.Fatal(err)
	}
	if want := []objstore.Upload{upload("a1"), upload("a1"), upload("a2")}; !slices.Equal(ab.list(), want) {
		t.Errorf("aborted %v, want %v", ab.list(), want)
	}
	if !slices.Equal(h.Claim().Uploads, []objstore.Upload{upload("b1")}) {
		t.Errorf("claim after the take: %+v", h.Claim())
	}
	if err := a.AddUpload(e.Ctx, upload("a3")); !errors.Is(err, ErrSuperseded) {
		t.Errorf("AddUpload after the takeover: %v", err)
	}
}

// TestTakeBatchConcurrently: copies on separate connections take the same
// batch at once, each registering uploads while it can. At the end one
// holds it, every upload another registered was aborted before the
// holder's take landed, and only the holder can write.
func TestTakeBatchConcurrently(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	copies := []Copy{
		{Worker: "w0", Seq: 10, Delivery: 1}, {Worker: "w1", Seq: 10, Delivery: 2},
		{Worker: "w2", Seq: 11, Delivery: 1}, {Worker: "w3", Seq: 12, Delivery: 1},
		{Worker: "w4", Seq: 12, Delivery: 3}, {Worker: "w5", Seq: 13, Delivery: 1},
	}
	var ab aborts
	type outcome struct {
		held       *Held
		registered []objstore.Upload // uploads whose registration succeeded
		aborted    []objstore.Upload // ab's list when the take returned
	}
	out := make([]outcome, len(copies))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range copies {
		l, err := Open(e.Ctx, testenv.Connect(t, e.URL))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			<-start
			first := upload(fmt.Sprintf("%s-0", c.Worker))
			h, err := l.TakeBatch(e.Ctx, "r1", "3", c, first, ab.abort)
			if err != nil {
				if !errors.Is(err, ErrSuperseded) {
					t.Errorf("%v: TakeBatch: %v", c, err)
				}
				return
			}
			o := &out[i]
			o.held, o.aborted, o.registered = h, ab.list(), []objstore.Upload{first}
			for n := 1; n <= 5; n++ {
				u := upload(fmt.Sprintf("%s-%d", c.Worker, n))
				if err := h.AddUpload(e.Ctx, u); err != nil {
					if !errors.Is(err, ErrSuperseded) {
						t.Errorf("%v: AddUpload: %v", c, err)
					}
					return
				}
				o.registered = append(o.registered, u)
			}
		})
	}
	close(start)
	wg.Wait()

	cl, ok, err := e.l.GetClaim(e.Ctx, "r1", "3")
	if err != nil || !ok {
		t.Fatalf("claim: %v, %v", ok, err)
	}
	var holder *outcome
	for i := range out {
		o := &out[i]
		if o.held == nil {
			continue
		}
		// Only the holder can still write.
		err := o.held.AddUpload(e.Ctx, upload(copies[i].Worker+"-late"))
		if copies[i] == cl.Holder {
			if err != nil {
				t.Fatalf("holder %v cannot write: %v", copies[i], err)
			}
			holder = o
		} else if !errors.Is(err, ErrSuperseded) {
			t.Errorf("%v wrote after losing the batch: %v", copies[i], err)
		}
	}
	if holder == nil {
		t.Fatalf("the claim's holder %v never took it", cl.Holder)
	}
	for i := range out {
		o := &out[i]
		if o.held == nil || o == holder {
			continue
		}
		for _, u := range o.registered {
			if !slices.Contains(holder.aborted, u) {
				t.Errorf("%v registered %v, not aborted before the holder's take", copies[i], u)
			}
		}
	}
	for _, u := range holder.registered {
		if slices.Contains(ab.list(), u) {
			t.Errorf("the holder's upload %v was aborted", u)
		}
	}
	if err := holder.held.Done(e.Ctx, BatchResult{Run: "r1", Batch: "3", Worker: cl.Holder.Worker}); err != nil {
		t.Fatal(err)
	}
	for _, c := range copies {
		if _, err := e.l.TakeBatch(e.Ctx, "r1", "3", c, objstore.Upload{}, noAbort(t)); !errors.Is(err, ErrBatchDone) {
			t.Errorf("%v: take of a done batch: %v", c, err)
		}
	}
}

// TestDoneEmpty: the planner's empty batch is done unless a copy claimed
// it; then the copy's claim stands and no record is written.
func TestDoneEmpty(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	if err := e.l.DoneEmpty(e.Ctx, "r1", "1", "planner-a"); err != nil {
		t.Fatal(err)
	}
	cl, ok, err := e.l.GetClaim(e.Ctx, "r1", "1")
	if err != nil || !ok || cl.State != ClaimDone || cl.Result == nil || cl.Result.Worker != "planner-a" {
		t.Fatalf("claim of an empty batch: %+v, %v, %v", cl, ok, err)
	}
	take(t, e.l, Copy{Worker: "w", Seq: 1, Delivery: 1}, upload("w1"))
	if err := e.l.DoneEmpty(e.Ctx, "r1", "3", "planner-a"); err != nil {
		t.Fatal(err)
	}
	if cl, _, _ := e.l.GetClaim(e.Ctx, "r1", "3"); cl.State != ClaimFetching || cl.Holder.Worker != "w" {
		t.Errorf("DoneEmpty changed a copy's claim: %+v", cl)
	}
	done, err := e.l.DoneBatches(e.Ctx, "r1")
	if err != nil || len(done) != 1 || done[0].Batch != "1" || len(done[0].Objects) != 0 {
		t.Fatalf("done records %+v, %v", done, err)
	}
	if _, err := e.l.TakeBatch(e.Ctx, "r1", "1", Copy{Worker: "w", Seq: 2, Delivery: 1}, upload("x"), noAbort(t)); !errors.Is(err, ErrBatchDone) {
		t.Errorf("take of an empty batch: %v", err)
	}
	if err := e.l.DoneEmpty(e.Ctx, "r1", "x", "p"); err == nil {
		t.Error("DoneEmpty accepted batch key x")
	}
}

func TestMarkDrained(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	for _, b := range []string{"1", "2", "2", "7.1"} {
		if err := e.l.MarkDrained(e.Ctx, "r1", b); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.l.MarkDrained(e.Ctx, "r11", "1"); err != nil {
		t.Fatal(err)
	}
	if err := e.l.MarkDone(e.Ctx, BatchResult{Run: "r1", Batch: "3"}); err != nil {
		t.Fatal(err)
	}
	for run, want := range map[string]int{"r1": 3, "r11": 1, "r2": 0} {
		if n, err := e.l.CountDrained(e.Ctx, run); err != nil || n != want {
			t.Errorf("CountDrained(%s) = %d, %v; want %d", run, n, err, want)
		}
	}
	if n, err := e.l.CountDone(e.Ctx, "r1"); err != nil || n != 1 {
		t.Errorf("CountDone counts drained batches: %d, %v", n, err)
	}
	if err := e.l.MarkDrained(e.Ctx, "r1", "1.x"); err == nil {
		t.Error("MarkDrained accepted batch key 1.x")
	}
}
