package msg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
)

// Headers of a retry. The server's own (Nats-Schedule*) are stripped from
// the batch message a schedule produces; AttemptHeader stays on it.
const (
	scheduleHeader       = "Nats-Schedule"
	scheduleTargetHeader = "Nats-Schedule-Target"
	// AttemptHeader carries the deliveries a batch had before its retry, so
	// that [Deliveries] runs on across retries.
	AttemptHeader = "Qfetch-Attempt"

	// maxAttempts caps AttemptHeader: a message from outside must not make
	// the count overflow or read as absurd.
	maxAttempts = 1_000_000
)

// ErrRetryNotAcked is wrapped by [Queue.Retry] when the schedule is stored
// but the original's ack failed: the batch will come back by the schedule,
// so the caller must not Nak the original (that would make a second copy
// sooner); left alone, it returns after AckWait at worst (see Retry).
var ErrRetryNotAcked = errors.New("retry scheduled, original not acked")

// Retry gives a delivered batch back to the queue for delivery at at (a time
// in the past: at once), and frees its slot now: the batch is re-published
// as a message schedule on qfetch.retry.<run>.<key>, targeting the subject
// it came on, and only once the server has stored the schedule is the
// original acked. A Nak with delay would hold a MaxAckPending slot until
// redelivery; a schedule holds none, so the fleet's cap stays in use while
// the batch waits. The copy carries AttemptHeader = [Deliveries](m).
//
// If the schedule cannot be stored, m is left untouched and the error
// returned (classified with [ClassifyAPI]): the caller can still Nak it with
// a delay. A message that is not a batch of its subject's run is refused,
// classified permanent. If the ack fails after the schedule is stored, the
// error wraps [ErrRetryNotAcked].
//
// Crash window: should the worker die (or the ack be lost) after the
// schedule is stored, the original comes back after AckWait as a second
// copy besides the scheduled one; object keys and the done record make the
// second fetch harmless (I3). Each batch has at most one schedule pending:
// the server stores a schedule as a roll-up of its subject, so a repeated
// Retry replaces the earlier one.
func (q *Queue) Retry(ctx context.Context, m jetstream.Msg, at time.Time) error {
	b, err := Decode(m.Data())
	if err != nil {
		return fmt.Errorf("msg: retry %s: %w", m.Subject(), err)
	}
	if m.Subject() != b.Subject() {
		return failure.Permanent(fmt.Errorf("msg: retry: message on %q holds a batch of run %s, only %s is retried",
			m.Subject(), b.Run, b.Subject()))
	}
	return q.schedule(ctx, m, retrySubject(b), b.MsgID(), at)
}

// Park takes any message of the batch subjects off the queue until at, as
// [Queue.Retry] does for a batch, so that it holds no slot meanwhile: a
// message that is no batch of its subject (undecodable, forged) waits on a
// subject of its own stream sequence, where it can replace no batch's
// retry. What a dead-letter stream that is broken leaves behind: such a
// message can be neither fetched nor dead-lettered, and a Nak with delay
// would keep its slot (see fetch's wedge). Errors are [Queue.Retry]'s.
func (q *Queue) Park(ctx context.Context, m jetstream.Msg, at time.Time) error {
	if b, err := Decode(m.Data()); err == nil && m.Subject() == b.Subject() {
		return q.Retry(ctx, m, at)
	}
	md, err := m.Metadata()
	if err != nil || !strings.HasPrefix(m.Subject(), batchSubjectPrefix) {
		return failure.Permanent(fmt.Errorf("msg: park %s: not a delivery of the batch stream", m.Subject()))
	}
	seq := strconv.FormatUint(md.Sequence.Stream, 10)
	return q.schedule(ctx, m, retrySubjectPrefix+parkedToken+"."+seq, "message "+seq, at)
}

// parkedToken starts the retry subjects of messages that are no batch: no
// run ID holds '~', so no batch's retry subject is one of them.
const parkedToken = "~parked"

// schedule re-publishes m as a message schedule on subject, targeting the
// subject m came on, and acks m once the server has stored it.
func (q *Queue) schedule(ctx context.Context, m jetstream.Msg, subject, name string, at time.Time) error {
	out := &nats.Msg{Subject: subject, Data: m.Data(), Header: nats.Header{}}
	// jetstream.WithScheduleAt cuts to the second; the server parses
	// RFC 3339 with a fraction as well.
	out.Header.Set(scheduleHeader, "@at "+at.UTC().Format(time.RFC3339Nano))
	out.Header.Set(scheduleTargetHeader, m.Subject())
	out.Header.Set(AttemptHeader, strconv.FormatUint(Deliveries(m), 10))
	// No Msg-Id: a later retry of the same batch inside the duplicate
	// window would be dropped as a duplicate. A repeated publish replaces
	// the schedule instead (roll-up).
	if _, err := q.js.PublishMsg(ctx, out, jetstream.WithExpectStream(StreamBatches)); err != nil {
		if tooLarge(err) {
			return failure.Permanent(fmt.Errorf("msg: retry %s: schedule: %w: %w", name, ErrTooLargeToRetry, err))
		}
		return q.confirm(ctx, ClassifyAPI(fmt.Errorf("msg: retry %s: schedule: %w", name, err)))
	}
	if err := m.DoubleAck(ctx); err != nil {
		return ClassifyAPI(fmt.Errorf("msg: retry %s: %w: %w", name, ErrRetryNotAcked, err))
	}
	return nil
}

// ErrTooLargeToRetry is wrapped, classified permanent, by [Queue.Retry]
// and [Queue.Park] when the schedule cannot be stored because of its size:
// a message within a few bytes of the stream's or the server's limit,
// which the schedule's headers push past it. No try will store it.
var ErrTooLargeToRetry = errors.New("too large to be scheduled again (the schedule's headers take it past the maximum message size)")

func tooLarge(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, nats.ErrMaxPayload) ||
		(errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum)
}

// retrySubject is where b waits out a retry: one subject per batch, so that
// the roll-up keeps one schedule per batch. Keys are digits and dots, valid
// subject tokens.
func retrySubject(b Batch) string { return retryPrefix(b.Run) + b.Key() }

func retryPrefix(run string) string { return retrySubjectPrefix + run + "." }

// Deliveries is how many times m's batch has been delivered: this message's
// NumDelivered plus the deliveries before its retries (AttemptHeader).
func Deliveries(m jetstream.Msg) uint64 {
	var before uint64
	if h := m.Headers(); h != nil {
		if n, err := strconv.ParseUint(h.Get(AttemptHeader), 10, 64); err == nil {
			before = min(n, maxAttempts)
		}
	}
	delivered := uint64(1) // it is in hand, so delivered at least once
	if md, err := m.Metadata(); err == nil && md.NumDelivered > 0 {
		delivered = md.NumDelivered
	}
	return before + delivered
}

// msgID is m's Nats-Msg-Id; see [storedMsgID].
func msgID(m jetstream.Msg) string { return storedMsgID(m.Headers(), m.Data()) }

// storedMsgID is a batch message's Nats-Msg-Id. A batch a schedule produced
// has lost it (the server strips it), so it is derived from the batch then.
func storedMsgID(h nats.Header, data []byte) string {
	if id := h.Get(jetstream.MsgIDHeader); id != "" {
		return id
	}
	if b, err := Decode(data); err == nil {
		return b.MsgID()
	}
	return ""
}

// defaultProgressWait bounds a Progress whose ctx has no deadline.
const defaultProgressWait = 5 * time.Second

// Progress tells the server that m is still being worked on (InProgress),
// and waits for its answer: nil means the server got it and restarted m's
// AckWait. Unlike m.InProgress, which only sends, a worker can base its
// lease on the answer: without one the message may already be on its way
// to another worker. The server keys progress by stream sequence, so nil
// does not prove this delivery still holds m (the lease's margin covers
// that). A ctx without a deadline waits at most 5s.
func (q *Queue) Progress(ctx context.Context, m jetstream.Msg) error {
	if m.Reply() == "" {
		return failure.Permanent(fmt.Errorf("msg: progress on %s: not a JetStream delivery", m.Subject()))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultProgressWait)
		defer cancel()
	}
	if _, err := q.js.Conn().RequestWithContext(ctx, m.Reply(), []byte("+WPI")); err != nil {
		// Not confirmed (see Confirm): a renewal is retried at its next
		// tick, and a question asked here would hold that tick back.
		return failure.Retryable(fmt.Errorf("msg: progress on %s: %w", m.Subject(), err))
	}
	return nil
}

// InFlight is the consumer's count of delivered, unacknowledged batches
// and its MaxAckPending, the fleet's cap on them (I5).
func (q *Queue) InFlight(ctx context.Context) (pending, limit int, err error) {
	c, err := q.workers(ctx)
	if err != nil {
		return 0, 0, q.confirm(ctx, err)
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return 0, 0, q.confirm(ctx, ClassifyAPI(fmt.Errorf("msg: consumer %s: %w", ConsumerWorkers, err)))
	}
	return ci.NumAckPending, ci.Config.MaxAckPending, nil
}

// AckWait is the consumer's AckWait as the server holds it now: another
// process may have changed it since this one started (Setup brings it to
// the newest pod's configuration), and a lease must be timed by the
// server's value, not by this process's setting.
func (q *Queue) AckWait(ctx context.Context) (time.Duration, error) {
	c, err := q.workers(ctx)
	if err != nil {
		return 0, err
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return 0, ClassifyAPI(fmt.Errorf("msg: consumer %s: %w", ConsumerWorkers, err))
	}
	return ci.Config.AckWait, nil
}
