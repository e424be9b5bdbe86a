package msg

import (
	"errors"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/testenv"
)

// deadLetterAll fetches n messages and dead-letters each.
func deadLetterAll(t *testing.T, e *env, n int) {
	t.Helper()
	msgs, err := fetchAll(e.ctx, e.q, n, 2*time.Second)
	if err != nil || len(msgs) != n {
		t.Fatalf("Fetch: %d, %v", len(msgs), err)
	}
	for _, m := range msgs {
		if err := e.q.DeadLetter(e.ctx, m, "max failures reached", failure.Retryable(errors.New("qualys: 503"))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplay: a replayed dead letter is queued again byte for byte with its
// failure count reset, once however often it is replayed, and a garbled
// one is refused.
func TestReplay(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	good := testBatch("r1", 7)
	publishAll(t, e, good)
	if _, err := e.js.Publish(e.ctx, BatchSubject("r1"), []byte("garbled")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := e.q.CountFailure(e.ctx, "r1", good.Key()); err != nil {
			t.Fatal(err)
		}
	}
	deadLetterAll(t, e, 2)
	dls, err := e.q.DeadLetters(e.ctx, "r1")
	if err != nil || len(dls) != 2 {
		t.Fatalf("dead letters: %+v, %v", dls, err)
	}
	var goodDL, badDL DeadLetter
	for _, d := range dls {
		if d.BatchKey() == "7" {
			goodDL = d
		} else {
			badDL = d
		}
	}
	if _, err := e.q.Replay(e.ctx, badDL.Seq); !errors.Is(err, ErrNotReplayable) {
		t.Fatalf("replay of a garbled message: %v", err)
	}
	b, err := e.q.Replay(e.ctx, goodDL.Seq)
	if err != nil || b.MsgID() != good.MsgID() {
		t.Fatalf("Replay: %+v, %v", b, err)
	}
	if _, err := e.q.DeadLetterAt(e.ctx, goodDL.Seq); !errors.Is(err, ErrNoDeadLetter) {
		t.Fatalf("the replayed dead letter is still there: %v", err)
	}
	if _, err := e.q.Replay(e.ctx, goodDL.Seq); !errors.Is(err, ErrNoDeadLetter) {
		t.Fatalf("second replay: %v", err)
	}
	fails, err := e.q.Failures(e.ctx, "r1")
	if err != nil || fails[good.Key()] != 0 {
		t.Fatalf("failure count after replay: %v, %v", fails, err)
	}
	var got []byte
	testenv.Eventually(t, 5*time.Second, func() bool {
		ms := fetchNoWait(t, e.q, 2)
		for _, m := range ms {
			got = m.Data()
			_ = m.Ack()
		}
		return len(ms) == 1
	}, "the replayed batch on the queue")
	back, err := Decode(got)
	if err != nil || back.Key() != good.Key() || back.IDs != good.IDs || back.Run != good.Run {
		t.Fatalf("replayed batch %+v, %v", back, err)
	}
	if p, _ := e.q.Pending(e.ctx, "r1"); p != 0 {
		t.Fatalf("%d batches of r1 still queued", p)
	}
}

// TestDropDeadLetter records the acceptance on the run and removes the dead
// letter, even when its run has no record.
func TestDropDeadLetter(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{MaxInFlight: 3})
	if _, err := e.q.CreateRun(e.ctx, RunRecord{ID: "r1", State: RunFetching}); err != nil {
		t.Fatal(err)
	}
	publishAll(t, e, testBatch("r1", 2), testBatch("r1", 5), testBatch("orphan", 1))
	deadLetterAll(t, e, 3)
	dls, _ := e.q.DeadLetters(e.ctx, "")
	if len(dls) != 3 {
		t.Fatalf("dead letters: %+v", dls)
	}
	if _, _, err := e.q.DropDeadLetter(e.ctx, dls[0].Seq, "", "no"); err == nil {
		t.Fatal("a drop by nobody was accepted")
	}
	for _, d := range dls {
		if _, _, err := e.q.DropDeadLetter(e.ctx, d.Seq, "op", "known bad hosts"); err != nil {
			t.Fatalf("drop %d: %v", d.Seq, err)
		}
	}
	if left, _ := e.q.DeadLetters(e.ctx, ""); len(left) != 0 {
		t.Fatalf("%d dead letters left", len(left))
	}
	r, err := e.q.GetRun(e.ctx, "r1")
	if err != nil || r.Accepted == nil || r.Accepted.By != "op" || len(r.Accepted.Dropped) != 2 {
		t.Fatalf("run r1: %+v, %v", r.Accepted, err)
	}
}

// TestOpenCreatesNothing: Open on a server without qfetch's objects fails
// with ErrNotSetUp and creates none.
func TestOpenCreatesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := Open(e.ctx, e.js); !errors.Is(err, ErrNotSetUp) || failure.ClassOf(err) != failure.ClassFleetWide {
		t.Fatalf("Open on an empty server: %v", err)
	}
	names := e.js.StreamNames(e.ctx)
	for n := range names.Name() {
		t.Errorf("Open created stream %s", n)
	}
	if _, err := Setup(e.ctx, e.js, Config{MaxInFlight: 3}); err != nil {
		t.Fatal(err)
	}
	q, err := Open(e.ctx, e.js)
	if err != nil || q.Config().MaxInFlight != 3 {
		t.Fatalf("Open: %v, %+v", err, q)
	}
}
