package msg

// Cold review of issue #15: each test here fails on the code it was
// written against, for the reason its comment gives.

import "testing"

// TestEdgeStrayRetryMessageBlocksNoRun: a message on
// qfetch.retry.<run>.<key> that is no schedule (a forged one, a worker of
// another version that dropped the header, a schedule the server refused
// to parse and stored as is) is never delivered — the consumer reads only
// qfetch.batch.> — and never removed, yet Pending counts it as a batch of
// the run still queued. The planner then skips every later window with
// "run … is still being fetched" (issue case 1's symptom, by another
// road), and the run's status shows a batch queued forever. Pending should
// count only schedules (messages carrying Nats-Schedule) on the retry
// subjects, or Setup/the worker should purge what no schedule will fire.
func TestEdgeStrayRetryMessageBlocksNoRun(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	b := testBatch("r1", 1)
	publishAll(t, e, b)
	m := fetchOne(t, e)
	if err := m.DoubleAck(e.Ctx); err != nil {
		t.Fatal(err)
	}
	data, err := Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	// The same batch, on its retry subject, without a schedule header.
	if _, err := e.JS.Publish(e.Ctx, retrySubject(b), data); err != nil {
		t.Fatal(err)
	}
	if n := pending(t, e, "r1"); n != 0 {
		t.Fatalf("Pending(r1) = %d for a run whose one batch is acked: a stray message on %s counts as queued forever",
			n, retrySubject(b))
	}
}
