package msg

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/testenv"
)

// fetchOne pulls one delivered batch or fails the test.
func fetchOne(t *testing.T, e *env) jetstream.Msg {
	t.Helper()
	got, err := fetchAll(e.Ctx, e.q, 1, 2*time.Second)
	if err != nil || len(got) != 1 {
		t.Fatalf("Fetch: %d messages, %v", len(got), err)
	}
	return got[0]
}

// inFlight is the consumer's NumAckPending.
func inFlight(t *testing.T, e *env) int {
	t.Helper()
	n, _, err := e.q.InFlight(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func waiting(t *testing.T, e *env, run string) uint64 {
	t.Helper()
	n, err := e.q.Waiting(e.Ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func pending(t *testing.T, e *env, run string) uint64 {
	t.Helper()
	n, err := e.q.Pending(e.Ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRetryFreesTheSlot: a batch given back with Retry holds no
// MaxAckPending slot while it waits, still counts as the run's pending
// work, and comes back at its time with the same body.
func TestRetryFreesTheSlot(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{MaxInFlight: 1})
	for _, b := range []Batch{testBatch("r1", 1), testBatch("r1", 2), testBatch("r2", 1)} {
		publishAll(t, e, b) // one by one: r1's batch 1 is delivered first
	}
	m := fetchOne(t, e)
	if n := inFlight(t, e); n != 1 {
		t.Fatalf("NumAckPending %d with one batch in hand, want 1", n)
	}

	at := time.Now().Add(300 * time.Millisecond)
	if err := e.q.Retry(e.Ctx, m, at); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	// The point: the slot is free as soon as Retry returns, not after the wait.
	if n := inFlight(t, e); n != 0 {
		t.Fatalf("NumAckPending %d right after Retry, want 0", n)
	}
	if n := waiting(t, e, "r1"); n != 1 {
		t.Errorf("Waiting(r1) = %d, want 1", n)
	}
	if n := waiting(t, e, "r2"); n != 0 {
		t.Errorf("Waiting(r2) = %d, want 0", n)
	}
	if n := pending(t, e, "r1"); n != 2 {
		t.Errorf("Pending(r1) = %d, want 2 (one queued, one waiting)", n)
	}
	qs, err := e.q.State(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	if qs.Waiting != 1 || qs.Queued != 2 || qs.InFlight != 0 {
		t.Errorf("State %+v, want 1 waiting, 2 queued, none in flight", qs)
	}

	// The freed slot takes the next batch at once, then gives it back.
	other := fetchOne(t, e)
	if err := other.Ack(); err != nil {
		t.Fatal(err)
	}

	var again jetstream.Msg
	testenv.Eventually(t, 10*time.Second, func() bool {
		for _, g := range fetchNoWait(t, e.q, 1) {
			if bytes.Equal(g.Data(), m.Data()) {
				again = g
				return true
			}
			_ = g.Ack() // r1's batch 2 or r2's: not what is awaited
		}
		return false
	}, "the retried batch back at its time")
	if now := time.Now(); now.Before(at) {
		t.Errorf("redelivered %s before its time", at.Sub(now))
	}
	if again.Subject() != m.Subject() {
		t.Errorf("redelivered on %q, want %q", again.Subject(), m.Subject())
	}
	if got := Deliveries(again); got != 2 {
		t.Errorf("Deliveries %d after one retry, want 2", got)
	}
	if got := again.Headers().Get(AttemptHeader); got != "1" {
		t.Errorf("%s = %q, want 1", AttemptHeader, got)
	}
	if id := msgID(again); id != "r1.1" {
		t.Errorf("msg ID of the scheduled copy %q, want r1.1", id)
	}
	if n := waiting(t, e, ""); n != 0 {
		t.Errorf("Waiting = %d after the schedule fired, want 0", n)
	}
	if n := pending(t, e, "r1"); n < 1 {
		t.Errorf("Pending(r1) = %d with the batch in hand, want at least 1", n)
	}
	if err := again.Ack(); err != nil {
		t.Fatal(err)
	}
}

// ackLost is a delivered message whose ack never arrives: a worker that
// dies between storing the schedule and acking the original.
type ackLost struct{ jetstream.Msg }

func (ackLost) DoubleAck(context.Context) error { return errors.New("connection lost") }

// TestRetryTwiceLeavesOneSchedule: a batch retried again (here after a lost
// ack) has one schedule, the latest.
func TestRetryTwiceLeavesOneSchedule(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	publishAll(t, e, testBatch("r1", 1))
	m := fetchOne(t, e)

	err := e.q.Retry(e.Ctx, ackLost{m}, time.Now().Add(time.Hour))
	if !errors.Is(err, ErrRetryNotAcked) {
		t.Fatalf("Retry with the ack lost: %v, want ErrRetryNotAcked", err)
	}
	if n := inFlight(t, e); n != 1 {
		t.Fatalf("NumAckPending %d after a lost ack, want 1", n)
	}
	if err := e.q.Retry(e.Ctx, m, time.Now().Add(200*time.Millisecond)); err != nil {
		t.Fatalf("second Retry: %v", err)
	}
	if n := waiting(t, e, "r1"); n != 1 {
		t.Fatalf("Waiting(r1) = %d after two retries, want 1", n)
	}
	// The hour-long schedule was replaced: the batch is back soon.
	testenv.Eventually(t, 10*time.Second, func() bool {
		got := fetchNoWait(t, e.q, 2)
		for _, g := range got {
			_ = g.Ack()
		}
		return len(got) == 1
	}, "the batch back by the second schedule")
	if n := pending(t, e, "r1"); n != 0 {
		t.Errorf("Pending(r1) = %d after the batch was acked, want 0 (no schedule left)", n)
	}
}

// TestDeadLetterOfARetriedBatch: the copy a schedule made has no Msg-Id of
// its own; its dead letter still names the batch, counts every delivery,
// and a replay after a lost Term still finds the copy queued (I3).
func TestDeadLetterOfARetriedBatch(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	b := testBatch("r1", 5)
	publishAll(t, e, b)
	if err := e.q.Retry(e.Ctx, fetchOne(t, e), time.Now()); err != nil {
		t.Fatal(err)
	}
	var copies []jetstream.Msg
	testenv.Eventually(t, 5*time.Second, func() bool {
		copies = fetchNoWait(t, e.q, 1)
		return len(copies) == 1
	}, "the scheduled copy")
	if err := e.q.DeadLetter(e.Ctx, termFails{copies[0]}, "10 failed attempts", nil); err == nil {
		t.Fatal("DeadLetter must report the lost Term")
	}
	if err := copies[0].Nak(); err != nil {
		t.Fatal(err)
	}
	dls, err := e.q.DeadLetters(e.Ctx, "r1")
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}
	if dl := dls[0]; dl.MsgID != b.MsgID() || dl.Deliveries != 2 || dl.BatchKey() != b.Key() {
		t.Errorf("dead letter %+v, want Msg-Id %s after 2 deliveries", dl, b.MsgID())
	}
	if _, err := e.q.Replay(e.Ctx, dls[0].Seq, noHook); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if p := pending(t, e, "r1"); p != 1 {
		t.Errorf("after replay run r1 has %d copies of batch %s, want 1 (I3)", p, b.Key())
	}
}

// TestRetryPastTimeFiresAtOnce: a retry time already past is no error.
func TestRetryPastTimeFiresAtOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	publishAll(t, e, testBatch("r1", 1))
	m := fetchOne(t, e)
	if err := e.q.Retry(e.Ctx, m, time.Now().Add(-time.Hour)); err != nil {
		t.Fatalf("Retry in the past: %v", err)
	}
	testenv.Eventually(t, 5*time.Second, func() bool {
		got := fetchNoWait(t, e.q, 1)
		return len(got) == 1 && bytes.Equal(got[0].Data(), m.Data())
	}, "the batch back at once")
}

func TestRetryRefuses(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	data, err := Encode(testBatch("r1", 1))
	if err != nil {
		t.Fatal(err)
	}
	// On the wrong run's subject: the stream takes it, Retry must not move it.
	if _, err := e.JS.Publish(e.Ctx, BatchSubject("r2"), data); err != nil {
		t.Fatal(err)
	}
	if _, err := e.JS.Publish(e.Ctx, BatchSubject("r3"), []byte("{garbled")); err != nil {
		t.Fatal(err)
	}
	delivered, err := fetchAll(e.Ctx, e.q, 2, 2*time.Second)
	if err != nil || len(delivered) != 2 {
		t.Fatalf("Fetch: %d, %v", len(delivered), err)
	}
	tests := []struct {
		name string
		m    jetstream.Msg
	}{
		{"batch of another run", delivered[0]},
		{"garbled body", delivered[1]},
		{"not a batch subject", fakeMsg{subject: "qfetch.retry.r1.1", data: data}},
		{"outside qfetch", fakeMsg{subject: "elsewhere", data: data}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.q.Retry(e.Ctx, tt.m, time.Now())
			if err == nil || failure.ClassOf(err) != failure.ClassPermanent {
				t.Fatalf("Retry: %v, want a permanent error", err)
			}
			t.Log(err)
		})
	}
	if n := inFlight(t, e); n != 2 {
		t.Errorf("NumAckPending %d after refusals, want 2: refused messages are left alone", n)
	}
	if n := waiting(t, e, ""); n != 0 {
		t.Errorf("Waiting = %d after refusals, want 0", n)
	}
}

// TestRetryPublishFailsLeavesMessage: without a schedule the original is
// untouched, so the caller can still Nak it.
func TestRetryPublishFailsLeavesMessage(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	publishAll(t, e, testBatch("r1", 1))
	m := fetchOne(t, e)
	// A second process whose connection is gone.
	js := testenv.Connect(t, e.URL)
	q, err := Setup(e.Ctx, js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	js.Conn().Close()
	err = q.Retry(e.Ctx, m, time.Now())
	if err == nil || failure.ClassOf(err) != failure.ClassRetryable {
		t.Fatalf("Retry on a closed connection: %v, want a retryable error", err)
	}
	if n := inFlight(t, e); n != 1 {
		t.Fatalf("NumAckPending %d, want 1: the original must stay", n)
	}
	if err := m.NakWithDelay(time.Millisecond); err != nil {
		t.Fatalf("Nak after a failed Retry: %v", err)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return len(fetchNoWait(t, e.q, 1)) == 1 },
		"the Nak'ed batch back")
}

// TestSetupUpgradesPreviousStream: the stream as the previous version made
// it (one subject, discard new, no schedules) is upgraded in place, its
// queued batches kept and deliverable, and retries work on it.
func TestSetupUpgradesPreviousStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The previous version's wanted(cfg) for Config{}, literally.
	mustStream(t, e, jetstream.StreamConfig{
		Name:        StreamBatches,
		Description: "qfetch: detection batches waiting for a worker",
		Subjects:    []string{"qfetch.batch.>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    1,
		Duplicates:  DefaultDuplicateWindow,
		MaxMsgSize:  DefaultMaxMsgSize,
		Discard:     jetstream.DiscardNew,
	})
	if _, err := e.JS.CreateConsumer(e.Ctx, StreamBatches, jetstream.ConsumerConfig{
		Durable:       ConsumerWorkers,
		Description:   "qfetch: workers share this pull consumer",
		FilterSubject: "qfetch.batch.>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       DefaultAckWait,
		MaxDeliver:    -1,
		MaxAckPending: DefaultMaxInFlight,
		Replicas:      1,
	}); err != nil {
		t.Fatal(err)
	}
	var queued []Batch
	for i := 1; i <= 3; i++ {
		b := testBatch("r1", i)
		data, err := Encode(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.JS.PublishMsg(e.Ctx, &nats.Msg{Subject: b.Subject(), Data: data}, jetstream.WithMsgID(b.MsgID())); err != nil {
			t.Fatal(err)
		}
		queued = append(queued, b)
	}
	findings, err := Inspect(e.Ctx, e.JS, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if f := findings[0]; f.Fatal || f.Problem == "" {
		t.Errorf("Inspect of the previous stream: %+v, want a problem the next start puts right", f)
	}

	cfg := Config{MaxInFlight: len(queued)}
	q, err := Setup(e.Ctx, e.JS, cfg)
	if err != nil {
		t.Fatalf("Setup over the previous version's stream: %v", err)
	}
	e.q = q
	s, err := e.JS.Stream(e.Ctx, StreamBatches)
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	if !sameSet(sc.Subjects, []string{"qfetch.batch.>", "qfetch.retry.>"}) || !sc.AllowMsgSchedules ||
		sc.Discard != jetstream.DiscardOld || !sc.AllowRollup {
		t.Errorf("stream not upgraded: %+v", sc)
	}
	if got := streamBatches(t, e); len(got) != len(queued) {
		t.Fatalf("stream holds %d batches after the upgrade, want %d", len(got), len(queued))
	}
	if findings, err = Inspect(e.Ctx, e.JS, cfg); err != nil {
		t.Fatal(err)
	} else if f := findings[0]; f.Problem != "" {
		t.Errorf("Inspect after the upgrade: %+v", f)
	}

	got, err := fetchAll(e.Ctx, e.q, 3, 2*time.Second)
	if err != nil || len(got) != 3 {
		t.Fatalf("Fetch after the upgrade: %d, %v", len(got), err)
	}
	for i, m := range got {
		b, err := Decode(m.Data())
		if err != nil || b.Key() != queued[i].Key() {
			t.Errorf("delivery %d: batch %+v, %v; want %s", i, b, err, queued[i].Key())
		}
	}
	if err := e.q.Retry(e.Ctx, got[0], time.Now().Add(100*time.Millisecond)); err != nil {
		t.Fatalf("Retry on the upgraded stream: %v", err)
	}
	for _, m := range got[1:] {
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		again := fetchNoWait(t, e.q, 1)
		return len(again) == 1 && bytes.Equal(again[0].Data(), got[0].Data())
	}, "the retried batch back on the upgraded stream")
}

// TestSetupTakesBackLimits: a limit on the batch stream would make discard
// old drop queued batches; Setup removes it and keeps the messages.
func TestSetupTakesBackLimits(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	publishAll(t, e, testBatch("r1", 1), testBatch("r1", 2))
	s, err := e.JS.Stream(e.Ctx, StreamBatches)
	if err != nil {
		t.Fatal(err)
	}
	capped := s.CachedInfo().Config
	capped.MaxMsgs, capped.MaxBytes, capped.MaxMsgsPerSubject = 100, 1<<30, 50
	if _, err := e.JS.UpdateStream(e.Ctx, capped); err != nil {
		t.Fatal(err)
	}
	if _, err := Setup(e.Ctx, e.JS, Config{}); err != nil {
		t.Fatalf("Setup over a capped stream: %v", err)
	}
	s, err = e.JS.Stream(e.Ctx, StreamBatches)
	if err != nil {
		t.Fatal(err)
	}
	if sc := s.CachedInfo().Config; sc.MaxMsgs != -1 || sc.MaxBytes != -1 || sc.MaxMsgsPerSubject != -1 {
		t.Errorf("limits left in place: msgs %d, bytes %d, per subject %d", sc.MaxMsgs, sc.MaxBytes, sc.MaxMsgsPerSubject)
	}
	if n := s.CachedInfo().State.Msgs; n != 2 {
		t.Errorf("stream holds %d messages, want 2", n)
	}
}

// TestProgressHoldsTheMessage: a worker that reports progress keeps its
// batch past AckWait; once it stops, the batch goes back.
func TestProgressHoldsTheMessage(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{AckWait: time.Second})
	publishAll(t, e, testBatch("r1", 1))
	m := fetchOne(t, e)

	const hold = 3 * time.Second
	end := time.Now().Add(hold)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(end) {
		<-tick.C
		ctx, cancel := context.WithTimeout(e.Ctx, time.Second)
		err := e.q.Progress(ctx, m)
		cancel()
		if err != nil {
			t.Fatalf("Progress: %v", err)
		}
	}
	ci, err := e.q.consumer.Info(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumRedelivered != 0 || ci.NumAckPending != 1 {
		t.Fatalf("after %s of progress with AckWait 1s: %d redelivered, %d pending, want 0 and 1",
			hold, ci.NumRedelivered, ci.NumAckPending)
	}
	if got := fetchNoWait(t, e.q, 1); len(got) != 0 {
		t.Fatalf("batch handed out again while its worker reported progress")
	}
	// Without progress AckWait applies again.
	testenv.Eventually(t, 5*time.Second, func() bool { return len(fetchNoWait(t, e.q, 1)) == 1 },
		"redelivery once progress stops")
}

// TestProgressFailsWhenServerIsGone: no answer from the server is an error
// by the context's deadline, not a silent success.
func TestProgressFailsWhenServerIsGone(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNATS(t)
	e := &env{JetStream: testenv.JetStream{URL: srv.URL(), JS: testenv.Connect(t, srv.URL()), Ctx: t.Context()}}
	q, err := Setup(e.Ctx, e.JS, Config{})
	if err != nil {
		t.Fatal(err)
	}
	e.q = q
	publishAll(t, e, testBatch("r1", 1))
	m := fetchOne(t, e)
	if err := q.Progress(e.Ctx, m); err != nil {
		t.Fatalf("Progress with the server up: %v", err)
	}
	srv.Stop()
	const deadline = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(e.Ctx, deadline)
	defer cancel()
	start := time.Now()
	err = q.Progress(ctx, m)
	if err == nil {
		t.Fatal("Progress with the server gone: nil")
	}
	if took := time.Since(start); took > deadline+time.Second {
		t.Errorf("Progress took %s with a %s deadline", took, deadline)
	}
	t.Log(err)
}

func TestInFlight(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{MaxInFlight: 3})
	publishAll(t, e, testBatch("r1", 1), testBatch("r1", 2), testBatch("r1", 3))
	if _, err := fetchAll(e.Ctx, e.q, 2, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	pending, limit, err := e.q.InFlight(e.Ctx)
	if err != nil || pending != 2 || limit != 3 {
		t.Fatalf("InFlight = %d, %d, %v; want 2, 3", pending, limit, err)
	}
}

// fakeMsg is a message as Deliveries and Retry read it.
type fakeMsg struct {
	jetstream.Msg
	subject string
	data    []byte
	hdr     nats.Header
	md      *jetstream.MsgMetadata
}

func (f fakeMsg) Subject() string      { return f.subject }
func (f fakeMsg) Data() []byte         { return f.data }
func (f fakeMsg) Headers() nats.Header { return f.hdr }
func (f fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	if f.md == nil {
		return nil, jetstream.ErrNotJSMessage
	}
	return f.md, nil
}

func TestDeliveries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		attempt   string // "" = no header
		delivered uint64 // 0 = no metadata
		want      uint64
	}{
		{"first delivery", "", 1, 1},
		{"redelivered", "", 3, 3},
		{"after one retry", "1", 1, 2},
		{"after retries, redelivered", "7", 2, 9},
		{"garbled header", "many", 2, 2},
		{"negative header", "-4", 2, 2},
		{"empty header", " ", 1, 1},
		{"absurd header is capped", "18446744073709551615", 1, maxAttempts + 1},
		{"over the cap", "1000001", 2, maxAttempts + 2},
		{"no metadata counts this delivery", "2", 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := fakeMsg{hdr: nats.Header{}}
			if tt.attempt != "" {
				m.hdr.Set(AttemptHeader, tt.attempt)
			}
			if tt.delivered > 0 {
				m.md = &jetstream.MsgMetadata{NumDelivered: tt.delivered}
			}
			if got := Deliveries(m); got != tt.want {
				t.Errorf("Deliveries = %d, want %d", got, tt.want)
			}
		})
	}
}
