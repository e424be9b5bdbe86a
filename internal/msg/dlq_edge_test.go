package msg

import (
	"errors"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/testenv"
)

// TestGarbledDeadLetterBlocksListAndDrop: one record on qfetch.dlq.<run>
// that is not a DeadLetter (hand-published with the nats CLI, a future
// schema, a truncated write) makes every listing fail, and so `dlq list`,
// `runs`, `status` and the reporter; and it cannot be dropped by sequence
// either, so the operator has no qfetch command to get rid of it.
func TestGarbledDeadLetterBlocksListAndDrop(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	// A real dead letter of run r1, and a garbled record beside it.
	publishAll(t, e, testBatch("r1", 1))
	deadLetterAll(t, e, 1)
	ack, err := e.JS.Publish(e.Ctx, dlqSubjectPrefix+"r1", []byte("not json at all"))
	if err != nil {
		t.Fatal(err)
	}

	if _, err := e.q.DeadLetters(e.Ctx, ""); err != nil {
		t.Errorf("listing every dead letter fails because of one garbled record: %v", err)
	}
	if _, err := e.q.DeadLetters(e.Ctx, "r1"); err != nil {
		t.Errorf("listing run r1's dead letters fails because of one garbled record: %v", err)
	}
	if _, err := e.q.DropDeadLetter(e.Ctx, ack.Sequence, func(DeadLetter) error { return nil }); err != nil {
		t.Errorf("the garbled record %d cannot be dropped: %v", ack.Sequence, err)
	}
}

// TestReplayWhileOriginalStillQueued: a worker writes the dead letter
// but its Term is lost (DeadLetter's own contract: "the caller should Nak
// it"), so the original batch stays in QFETCH_BATCHES and is redelivered.
// Replaying the dead letter then publishes a second copy under a new
// Msg-Id: two copies of one batch in the work queue (I3), fetched twice,
// possibly concurrently, the slower one overwriting objects a manifest may
// already describe.
func TestReplayWhileOriginalStillQueued(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	b := testBatch("r1", 4)
	publishAll(t, e, b)
	msgs, err := fetchAll(e.Ctx, e.q, 1, 2*time.Second)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Fetch: %d, %v", len(msgs), err)
	}
	if err := e.q.DeadLetter(e.Ctx, termFails{msgs[0]}, "10 failed attempts", failure.Retryable(errors.New("qualys: 503"))); err == nil {
		t.Fatal("DeadLetter must report the lost Term")
	}
	if err := msgs[0].Nak(); err != nil { // what fetch.Worker.deadLetter does
		t.Fatal(err)
	}
	dls, err := e.q.DeadLetters(e.Ctx, "r1")
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}
	if p, _ := e.q.Pending(e.Ctx, "r1"); p != 1 {
		t.Fatalf("the original is not queued: %d", p)
	}

	if _, err := e.q.Replay(e.Ctx, dls[0].Seq, noHook); err != nil {
		t.Logf("Replay refused (acceptable): %v", err)
	}
	if p, _ := e.q.Pending(e.Ctx, "r1"); p != 1 {
		t.Errorf("after replay run r1 has %d copies of batch %s queued, want 1 (I3)", p, b.Key())
	}
}

// TestDeadLettersLeavesConsumers: every DeadLetters call (each `dlq
// list`, every `status`, and each reporter refresh on every worker pod, per
// open run) leaves an ordered consumer on QFETCH_DLQ for its 5-minute
// inactivity threshold. Operator reads should not pile objects up on the
// server (msg.Open "creates nothing").
func TestDeadLettersLeavesConsumers(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	for range 5 {
		if _, err := e.q.DeadLetters(e.Ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
	s, err := e.JS.Stream(e.Ctx, StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	// The server removes a deleted consumer in the background: poll.
	testenv.Eventually(t, 10*time.Second, func() bool {
		info, err := s.Info(e.Ctx)
		return err == nil && info.State.Consumers == 0
	}, "consumers left on "+StreamDLQ+" after 5 listings")
}

// TestDeadLettersRunIsAFilter: the run given to DeadLetters (from
// `dlq list|replay|drop --run`) is not validated: "*" selects every run's
// dead letters, so `dlq drop --run '*' --yes` drops all of them, and a run
// with a space gives a server error instead of a usage error.
func TestDeadLettersRunIsAFilter(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{MaxInFlight: 2})
	publishAll(t, e, testBatch("r1", 1), testBatch("r2", 1))
	deadLetterAll(t, e, 2)
	got, err := e.q.DeadLetters(e.Ctx, "*")
	if err == nil || failure.ClassOf(err) != failure.ClassPermanent {
		t.Errorf("DeadLetters(\"*\") = %d dead letters of several runs, %v; want a permanent error naming the bad run ID", len(got), err)
	}
}
