package msg

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/testenv"
)

// streamBatches reads every message left in QFETCH_BATCHES by sequence
// (a work-queue stream admits no second consumer to read it with).
func streamBatches(t *testing.T, e *env) []Batch {
	t.Helper()
	s, err := e.JS.Stream(e.Ctx, StreamBatches)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []Batch
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(e.Ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		b, err := Decode(m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != b.MsgID() {
			t.Errorf("message %d has Msg-Id %q, want %q", seq, got, b.MsgID())
		}
		out = append(out, b)
	}
	return out
}

func TestPublishTwiceStoresEachBatchOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	const n = 40
	var bs []Batch
	for i := 1; i <= n; i++ {
		bs = append(bs, testBatch("r1", i))
	}
	// A split half is a batch of its own, with a derived Msg-Id.
	h1, h2, err := testBatch("r1", 7).Split()
	if err != nil {
		t.Fatal(err)
	}
	bs = append(bs, h1, h2)

	first := publishAll(t, e, bs...)
	second := publishAll(t, e, bs...) // a planner retried inside the run
	if first.Published != n+2 || first.Duplicates != 0 {
		t.Errorf("first pass: %+v", first)
	}
	if second.Published != 0 || second.Duplicates != n+2 {
		t.Errorf("second pass: %+v", second)
	}
	var keys []string
	for _, b := range streamBatches(t, e) {
		keys = append(keys, b.Key())
	}
	slices.Sort(keys)
	var want []string
	for _, b := range bs {
		want = append(want, b.Key())
	}
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Fatalf("stream holds %v\nwant each once: %v", keys, want)
	}
}

func TestPublishFailsLoudly(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{MaxMsgSize: 2048})

	t.Run("too large", func(t *testing.T) {
		b := testBatch("r1", 1)
		b.IDs, b.Hosts = bigIDs(600), 600
		err := e.q.Publisher(PublisherOptions{}).Publish(e.Ctx, b)
		if failure.ClassOf(err) != failure.ClassPermanent || !strings.Contains(err.Error(), "lower the batch size") {
			t.Fatalf("want a permanent size error, got %v", err)
		}
	})

	t.Run("stream gone", func(t *testing.T) {
		if err := e.JS.DeleteStream(e.Ctx, StreamBatches); err != nil {
			t.Fatal(err)
		}
		p := e.q.Publisher(PublisherOptions{Window: 2, Attempts: 2, AttemptTimeout: time.Second})
		if err := p.Publish(e.Ctx, testBatch("r1", 1)); err != nil {
			t.Fatalf("Publish queues before it knows: %v", err)
		}
		err := p.Wait(e.Ctx)
		if err == nil || failure.ClassOf(err) != failure.ClassRetryable || !strings.Contains(err.Error(), "r1.1") {
			t.Fatalf("Wait: want a retryable error naming the batch, got %v", err)
		}
		// Every later Publish reports the failure instead of carrying on.
		if err2 := p.Publish(e.Ctx, testBatch("r1", 2)); !errors.Is(err2, err) && (err2 == nil || err2.Error() != err.Error()) {
			t.Fatalf("Publish after a failure: want the first error, got %v", err2)
		}
	})
}

// bigIDs returns n non-adjacent IDs, which no range can shorten.
func bigIDs(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(2 * (i + 1))
	}
	return strings.Join(ids, ",")
}

func TestMaxAckPendingCapsTheFleet(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{MaxInFlight: 2})
	publishAll(t, e, testBatch("r1", 1), testBatch("r1", 2), testBatch("r1", 3))
	// A second worker process, with its own connection.
	other, err := Setup(e.Ctx, testenv.Connect(t, e.URL), Config{MaxInFlight: 2})
	if err != nil {
		t.Fatal(err)
	}

	got, err := fetchAll(e.Ctx, e.q, 3, 300*time.Millisecond)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("Fetch(3) with MaxInFlight 2 delivered %d", len(got))
	}
	// A pull that expires on the server, not a no-wait one: at MaxAckPending
	// the server keeps a no-wait request waiting after its client has given
	// up, where it counts in NumWaiting below and takes the slot the ack
	// frees. The server drops an expired request before it answers 408.
	n, err := fetchAll(e.Ctx, other, 1, 300*time.Millisecond)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(n) != 0 {
		t.Fatalf("a third batch was delivered to another worker while two are unacked")
	}
	// The other worker waits for a slot (a long-poll, as workers do); an ack
	// frees one.
	type result struct {
		msgs []jetstream.Msg
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// Next returns as soon as its one message arrives.
		m, err := other.Next(e.Ctx, 10*time.Second)
		var msgs []jetstream.Msg
		if m != nil {
			msgs = append(msgs, m)
		}
		done <- result{msgs, err}
	}()
	testenv.Eventually(t, 5*time.Second, func() bool {
		info, err := other.consumer.Info(e.Ctx)
		return err == nil && info.NumWaiting == 1
	}, "the other worker's pull request to reach the server")
	if err := got[0].DoubleAck(e.Ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || len(r.msgs) != 1 {
		t.Fatalf("after one ack the other worker got %d (%v), want exactly 1", len(r.msgs), r.err)
	}
	third := r.msgs
	seen := map[string]bool{}
	for _, m := range append(got, third...) {
		b, err := Decode(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		seen[b.Key()] = true
	}
	if len(seen) != 3 {
		t.Errorf("delivered batches %v, want 3 distinct", seen)
	}
}

// fetchAll is Fetch collecting what arrives.
func fetchAll(ctx context.Context, q *Queue, n int, maxWait time.Duration) ([]jetstream.Msg, error) {
	var out []jetstream.Msg
	err := q.Fetch(ctx, n, maxWait, func(m jetstream.Msg) { out = append(out, m) })
	return out, err
}

// fetchNoWait asks for up to n messages available right now.
func fetchNoWait(t *testing.T, q *Queue, n int) []jetstream.Msg {
	t.Helper()
	b, err := q.consumer.FetchNoWait(n)
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for m := range b.Messages() {
		out = append(out, m)
	}
	// With MaxAckPending reached the server neither answers nor drops the
	// request: the client gives up after a second, and the request waits on
	// the server until it is pruned and can take a message meanwhile. Use
	// it only where no message can be held back by MaxAckPending.
	return out
}

func TestFetchEmptyQueue(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	got, err := fetchAll(e.Ctx, e.q, 2, 200*time.Millisecond)
	if err != nil || len(got) != 0 {
		t.Fatalf("Fetch on an empty queue: %d messages, %v", len(got), err)
	}
}

func TestFetchStopGivesMessagesBack(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	ctx, cancel := context.WithCancel(e.Ctx)
	type result struct {
		msgs []jetstream.Msg
		err  error
	}
	done := make(chan result, 1)
	go func() {
		m, err := fetchAll(ctx, e.q, 1, 10*time.Second)
		done <- result{m, err}
	}()
	testenv.Eventually(t, 5*time.Second, func() bool {
		info, err := e.q.consumer.Info(e.Ctx)
		return err == nil && info.NumWaiting == 1
	}, "the pull request to reach the server")
	cancel()
	// Arrives after the stop: the pending pull request still receives it.
	publishAll(t, e, testBatch("r1", 1))
	r := <-done
	if !errors.Is(r.err, context.Canceled) || len(r.msgs) != 0 {
		t.Fatalf("Fetch after stop: %d messages, %v", len(r.msgs), r.err)
	}
	var again []jetstream.Msg
	testenv.Eventually(t, 5*time.Second, func() bool {
		again = fetchNoWait(t, e.q, 1)
		return len(again) == 1
	}, "the batch back in the queue well before AckWait")
	if md, err := again[0].Metadata(); err != nil || md.NumDelivered != 2 {
		t.Errorf("redelivery metadata %+v, %v", md, err)
	}
}

func TestNakWithDelayRedelivers(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	publishAll(t, e, testBatch("r1", 1))
	got, err := fetchAll(e.Ctx, e.q, 1, time.Second)
	if err != nil || len(got) != 1 {
		t.Fatalf("Fetch: %d, %v", len(got), err)
	}
	const delay = 300 * time.Millisecond
	nakAt := time.Now()
	if err := got[0].NakWithDelay(delay); err != nil {
		t.Fatal(err)
	}
	var again []jetstream.Msg
	testenv.Eventually(t, 10*time.Second, func() bool {
		again = fetchNoWait(t, e.q, 1)
		return len(again) == 1
	}, "redelivery after NakWithDelay")
	if waited := time.Since(nakAt); waited < delay {
		t.Errorf("redelivered after %s, before the %s delay", waited, delay)
	}
	md, err := again[0].Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if md.NumDelivered != 2 {
		t.Errorf("NumDelivered %d, want 2", md.NumDelivered)
	}
}

// termFails is a message whose Term is lost, as when a worker dies between
// writing the dead letter and terminating the original.
type termFails struct{ jetstream.Msg }

func (termFails) TermWithReason(string) error { return errors.New("connection lost") }

func TestDeadLetter(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	good := testBatch("r1", 3)
	publishAll(t, e, good)
	garbled := []byte("\x00not a batch\xff")
	if _, err := e.JS.Publish(e.Ctx, BatchSubject("r2"), garbled); err != nil {
		t.Fatal(err)
	}
	msgs, err := fetchAll(e.Ctx, e.q, 2, 2*time.Second)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("Fetch: %d, %v", len(msgs), err)
	}
	for _, m := range msgs {
		if _, err := Decode(m.Data()); err != nil {
			if err := e.q.DeadLetter(e.Ctx, m, "permanent failure", err); err != nil {
				t.Fatalf("DeadLetter garbled: %v", err)
			}
			continue
		}
		// First try: the record is written, the Term is lost.
		if err := e.q.DeadLetter(e.Ctx, termFails{m}, "max deliveries reached", nil); err == nil {
			t.Fatal("DeadLetter must report a failed Term")
		}
		if err := m.Nak(); err != nil {
			t.Fatal(err)
		}
	}
	var redelivered []jetstream.Msg
	testenv.Eventually(t, 5*time.Second, func() bool {
		redelivered = fetchNoWait(t, e.q, 1)
		return len(redelivered) == 1
	}, "the good batch back after its lost Term")
	cause := failure.Retryable(errors.New("qualys: 503 Service Unavailable"))
	if err := e.q.DeadLetter(e.Ctx, redelivered[0], "max deliveries reached", cause); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}

	r1, err := e.q.DeadLetters(e.Ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(r1) != 1 {
		t.Fatalf("run r1 has %d dead letters, want 1 (the repeat deduplicated): %+v", len(r1), r1)
	}
	dl := r1[0]
	b, err := Decode(dl.Batch)
	if err != nil || b.MsgID() != good.MsgID() || dl.MsgID != good.MsgID() || dl.Run != "r1" ||
		dl.Reason != "max deliveries reached" || dl.Deliveries != 1 || dl.StreamSeq == 0 {
		t.Errorf("dead letter %+v (batch %+v, %v)", dl, b, err)
	}
	r2, err := e.q.DeadLetters(e.Ctx, "r2")
	if err != nil || len(r2) != 1 {
		t.Fatalf("run r2 dead letters: %+v, %v", r2, err)
	}
	if string(r2[0].Body) != string(garbled) || r2[0].Class != "permanent" || !strings.Contains(r2[0].LastError, "not JSON") {
		t.Errorf("garbled dead letter %+v", r2[0])
	}
	if all, err := e.q.DeadLetters(e.Ctx, ""); err != nil || len(all) != 2 {
		t.Errorf("all dead letters: %d, %v", len(all), err)
	}

	// Terminated: never delivered again, gone from the work queue.
	testenv.Eventually(t, 5*time.Second, func() bool {
		info, err := e.q.consumer.Info(e.Ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}, "nothing pending after Term")
	if left := streamBatches(t, e); len(left) != 0 {
		t.Errorf("batch stream still holds %d", len(left))
	}
}
