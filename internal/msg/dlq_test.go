package msg

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/testenv"
)

// deadLetterAll fetches n messages and dead-letters each.
func deadLetterAll(t *testing.T, e *env, n int) {
	t.Helper()
	msgs, err := fetchAll(e.Ctx, e.q, n, 2*time.Second)
	if err != nil || len(msgs) != n {
		t.Fatalf("Fetch: %d, %v", len(msgs), err)
	}
	for _, m := range msgs {
		if err := e.q.DeadLetter(e.Ctx, m, "max failures reached", failure.Retryable(errors.New("qualys: 503"))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplay: a replayed dead letter is queued again byte for byte, once
// however often it is replayed, after its hook (the ledger's failure count
// reset; see ops' TestReplayResetsFailures), and a garbled one is refused
// before its hook.
func TestReplay(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	good := testBatch("r1", 7)
	publishAll(t, e, good)
	if _, err := e.JS.Publish(e.Ctx, BatchSubject("r1"), []byte("garbled")); err != nil {
		t.Fatal(err)
	}
	var hooked []string
	before := func(b Batch) error { hooked = append(hooked, b.Key()); return nil }
	deadLetterAll(t, e, 2)
	dls, err := e.q.DeadLetters(e.Ctx, "r1")
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
	if _, err := e.q.Replay(e.Ctx, badDL.Seq, before); !errors.Is(err, ErrNotReplayable) {
		t.Fatalf("replay of a garbled message: %v", err)
	}
	b, err := e.q.Replay(e.Ctx, goodDL.Seq, before)
	if err != nil || b.MsgID() != good.MsgID() {
		t.Fatalf("Replay: %+v, %v", b, err)
	}
	if _, err := e.q.DeadLetterAt(e.Ctx, goodDL.Seq); !errors.Is(err, ErrNoDeadLetter) {
		t.Fatalf("the replayed dead letter is still there: %v", err)
	}
	if _, err := e.q.Replay(e.Ctx, goodDL.Seq, before); !errors.Is(err, ErrNoDeadLetter) {
		t.Fatalf("second replay: %v", err)
	}
	if !slices.Equal(hooked, []string{good.Key()}) {
		t.Fatalf("hook called for %v, want once for %s", hooked, good.Key())
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
	if p, _ := e.q.Pending(e.Ctx, "r1"); p != 0 {
		t.Fatalf("%d batches of r1 still queued", p)
	}
}

// TestDropDeadLetter calls the hook (the ledger's acceptance; see ops'
// TestDropAcceptsIncomplete) and removes the dead letter; a failing hook
// leaves it.
func TestDropDeadLetter(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{MaxInFlight: 3})
	publishAll(t, e, testBatch("r1", 2), testBatch("r1", 5), testBatch("orphan", 1))
	deadLetterAll(t, e, 3)
	dls, _ := e.q.DeadLetters(e.Ctx, "")
	if len(dls) != 3 {
		t.Fatalf("dead letters: %+v", dls)
	}
	refuse := errors.New("not recorded")
	if _, err := e.q.DropDeadLetter(e.Ctx, dls[0].Seq, func(DeadLetter) error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("a drop whose record failed: %v", err)
	}
	if _, err := e.q.DeadLetterAt(e.Ctx, dls[0].Seq); err != nil {
		t.Fatalf("a drop whose record failed removed the dead letter: %v", err)
	}
	var recorded []string
	for _, d := range dls {
		if _, err := e.q.DropDeadLetter(e.Ctx, d.Seq, func(dl DeadLetter) error {
			recorded = append(recorded, dl.Run+"."+dl.BatchKey())
			return nil
		}); err != nil {
			t.Fatalf("drop %d: %v", d.Seq, err)
		}
	}
	if left, _ := e.q.DeadLetters(e.Ctx, ""); len(left) != 0 {
		t.Fatalf("%d dead letters left", len(left))
	}
	slices.Sort(recorded)
	if !slices.Equal(recorded, []string{"orphan.1", "r1.2", "r1.5"}) {
		t.Fatalf("recorded %v", recorded)
	}
}

// TestOpenCreatesNothing: Open on a server without qfetch's objects fails
// with ErrNotSetUp and creates none.
func TestOpenCreatesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := Open(e.Ctx, e.JS); !errors.Is(err, ErrNotSetUp) || failure.ClassOf(err) != failure.ClassFleetWide {
		t.Fatalf("Open on an empty server: %v", err)
	}
	names := e.JS.StreamNames(e.Ctx)
	for n := range names.Name() {
		t.Errorf("Open created stream %s", n)
	}
	if _, err := Setup(e.Ctx, e.JS, Config{MaxInFlight: 3}); err != nil {
		t.Fatal(err)
	}
	q, err := Open(e.Ctx, e.JS)
	if err != nil || q.Config().MaxInFlight != 3 {
		t.Fatalf("Open: %v, %+v", err, q)
	}
}
