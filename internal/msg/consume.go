package msg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/logging"
)

// Fetch sends one pull request for up to n batch messages and calls deliver
// with each, in this goroutine, as it arrives. It returns when n have arrived
// or maxWait has passed (nil: an empty queue is not an error).
//
// Call it with n = the number of free slots, and let deliver hand the
// message to one of them without blocking: processing starts as each message
// arrives, not when the request ends. One pull request for exactly n
// messages means the server never hands this process a message it has no
// slot for; Consumer.Messages/Consume would keep a client-side buffer topped
// up ahead of demand, holding messages idle here that another pod could be
// fetching (and charging them AckWait). MaxAckPending still caps the whole
// fleet (I5): while it is reached, the request waits and delivers nothing.
//
// Fetch does not abandon its pull request when ctx ends: the server would
// still deliver into it, and such a message would sit unacked for AckWait.
// It waits the request out instead (keep maxWait to a few seconds: it bounds
// how long a stop takes), Naks without delay what arrives after ctx ended,
// so that another worker takes it at once, and returns ctx's error.
func (q *Queue) Fetch(ctx context.Context, n int, maxWait time.Duration, deliver func(jetstream.Msg)) error {
	if n < 1 {
		return fmt.Errorf("msg: fetch %d messages: need at least 1", n)
	}
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	// Shorter pull requests mostly measure round trips.
	maxWait = max(maxWait, 100*time.Millisecond)
	c, err := q.workers(ctx)
	if err != nil {
		return q.confirm(ctx, err)
	}
	batch, err := c.Fetch(n, jetstream.FetchMaxWait(maxWait))
	if err != nil {
		return q.confirm(ctx, ClassifyAPI(fmt.Errorf("msg: fetch: %w", err)))
	}
	for m := range batch.Messages() {
		if ctx.Err() != nil {
			_ = m.Nak() // best effort: AckWait returns it otherwise
			continue
		}
		deliver(m)
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err := batch.Error(); err != nil {
		// A consumer without a leader (a cluster without quorum) has no
		// responders for the pull request: see Confirm.
		return q.confirm(ctx, ClassifyAPI(fmt.Errorf("msg: fetch: %w", err)))
	}
	return nil
}

// Next pulls one batch message, waiting up to maxWait; it returns nil and no
// error when none came. A worker slot can loop on it: each slot then has at
// most one pull request and one message. See [Queue.Fetch].
func (q *Queue) Next(ctx context.Context, maxWait time.Duration) (jetstream.Msg, error) {
	var got jetstream.Msg
	err := q.Fetch(ctx, 1, maxWait, func(m jetstream.Msg) { got = m })
	if err != nil {
		return nil, err
	}
	return got, nil
}

// DeadLetter is the record [Queue.DeadLetter] publishes to QFETCH_DLQ: the
// original message and why it was given up, enough to replay it.
type DeadLetter struct {
	Run     string `json:"run,omitempty"`
	Subject string `json:"subject"`
	MsgID   string `json:"msg_id,omitempty"`
	// StreamSeq is the original's sequence in QFETCH_BATCHES.
	StreamSeq uint64 `json:"stream_seq"`
	// Batch is the original body when it is JSON (the usual case), Body
	// otherwise (base64 in JSON), so a garbled message is kept byte for byte
	// — up to [MaxBatchBytes]: of a larger message, which cannot be a batch,
	// Body keeps the first bytes and Truncated is set. Size and SHA256 (hex)
	// are the whole original's, so a kept copy can still be matched.
	Batch     json.RawMessage `json:"batch,omitempty"`
	Body      []byte          `json:"body,omitempty"`
	Truncated bool            `json:"truncated,omitempty"`
	Size      int             `json:"size,omitempty"`
	SHA256    string          `json:"sha256,omitempty"`
	// Reason is the decision ("permanent failure", "max deliveries reached").
	Reason string `json:"reason"`
	// Class is the failure class of the last error.
	Class string `json:"class"`
	// Deliveries counts every delivery of the batch, across its retries
	// (see [Deliveries]).
	Deliveries uint64    `json:"deliveries"`
	LastError  string    `json:"last_error,omitempty"`
	At         time.Time `json:"at"`

	// Seq is the record's sequence in QFETCH_DLQ, set when it is read: what
	// an operator names it by.
	Seq uint64 `json:"seq,omitempty"`
}

// maxTermReason keeps the Term advisory small; the full error is in the
// dead letter.
const maxTermReason = 256

// Bounds of a dead-letter record, so that any message the batch stream
// accepts (up to its MaxMsgSize, 1 MiB) can be dead-lettered: a record that
// does not fit the server's max payload cannot be written, and a batch
// that can be neither fetched nor dead-lettered would come back for ever.
const (
	// maxRecordBytes bounds the encoded record; half the server's max
	// payload when that is smaller.
	maxRecordBytes = 512 << 10
	// keptHead is how much of a message too large to keep whole is kept.
	keptHead = 4 << 10
	// maxLastError bounds the error text: it may quote a Qualys answer.
	maxLastError = 4 << 10
	// maxMsgIDKept bounds the Msg-Id copied from the message's header; a
	// qfetch Msg-Id is a run ID (64) and a batch key.
	maxMsgIDKept = 200
)

// DeadLetter records m in QFETCH_DLQ on qfetch.dlq.<run> with reason and
// the last error, then terminates m so it is never redelivered. If the
// record cannot be written, m is left alone and the error returned: the
// caller should Nak it, since a batch must never vanish without a trace.
// A repeated dead-lettering of the same delivery chain is deduplicated.
// The record is bounded (see [DeadLetter.Truncated]), so that no message
// the stream accepts is too large to be dead-lettered.
func (q *Queue) DeadLetter(ctx context.Context, m jetstream.Msg, reason string, lastErr error) error {
	md, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("msg: dead-letter: %w", err)
	}
	body := m.Data()
	sum := sha256.Sum256(body)
	dl := DeadLetter{
		Subject:    m.Subject(),
		MsgID:      clip(msgID(m), maxMsgIDKept),
		StreamSeq:  md.Sequence.Stream,
		Reason:     reason,
		Deliveries: Deliveries(m),
		At:         time.Now().UTC(),
		Size:       len(body),
		SHA256:     hex.EncodeToString(sum[:]),
	}
	dl.Run = strings.TrimPrefix(m.Subject(), batchSubjectPrefix)
	if !ValidRunID(dl.Run) {
		dl.Run = "unknown"
	}
	switch {
	case len(body) > MaxBatchBytes:
		dl.Body, dl.Truncated = body[:keptHead], true
	case json.Valid(body):
		dl.Batch = json.RawMessage(body)
	default:
		dl.Body = body
	}
	if lastErr != nil {
		dl.Class = failure.ClassOf(lastErr).String()
		// Defence in depth (I7): error texts are built without secrets, and
		// whatever looks like one is cut again before it is stored.
		dl.LastError = clip(logging.Scrub(lastErr.Error()), maxLastError)
	}
	data, err := encodeRecord(dl)
	if err != nil {
		return fmt.Errorf("msg: dead-letter: %w", err)
	}
	if limit := q.recordLimit(); len(data) > limit {
		// JSON escaping can still grow a kept body (control characters):
		// keep the head only.
		dl.Batch, dl.Body, dl.Truncated = nil, body[:min(len(body), keptHead)], true
		if data, err = encodeRecord(dl); err != nil {
			return fmt.Errorf("msg: dead-letter: %w", err)
		}
	}
	out := &nats.Msg{Subject: dlqSubjectPrefix + dl.Run, Data: data, Header: nats.Header{}}
	// Stream sequence stays the same across redeliveries of one message.
	id := fmt.Sprintf("dlq.%s.%d", dl.MsgID, dl.StreamSeq)
	if _, err := q.js.PublishMsg(ctx, out, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamDLQ)); err != nil {
		if cerr := q.CheckDeadLetters(ctx); errors.Is(cerr, ErrDeadLettersBroken) {
			return fmt.Errorf("msg: dead-letter %s: %w (publish: %w)", m.Subject(), cerr, err)
		}
		return ClassifyAPI(fmt.Errorf("msg: dead-letter %s: %w", m.Subject(), err))
	}
	termReason := reason
	if lastErr != nil {
		termReason += ": " + dl.LastError
	}
	if len(termReason) > maxTermReason {
		termReason = termReason[:maxTermReason]
	}
	if err := m.TermWithReason(termReason); err != nil {
		return ClassifyAPI(fmt.Errorf("msg: terminate %s after dead-lettering: %w", m.Subject(), err))
	}
	return nil
}

// recordLimit is the largest dead-letter record this connection writes.
func (q *Queue) recordLimit() int {
	limit := maxRecordBytes
	if nc := q.js.Conn(); nc != nil {
		if mp := nc.MaxPayload(); mp > 0 {
			limit = min(limit, int(mp)/2)
		}
	}
	return limit
}

// encodeRecord encodes a dead letter without HTML escaping: escaped, a
// kept body of '<' would grow sixfold.
func encodeRecord(dl DeadLetter) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(dl); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// clip cuts s to at most n bytes, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// DeadLetters returns the dead letters of run ("" for every run), oldest
// first. A record that does not decode is returned as it is (Body, with
// Reason saying so), so that it can be seen and dropped.
func (q *Queue) DeadLetters(ctx context.Context, run string) ([]DeadLetter, error) {
	subject, err := dlqSubject(run)
	if err != nil {
		return nil, err
	}
	c, err := q.js.OrderedConsumer(ctx, StreamDLQ, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, ClassifyAPI(fmt.Errorf("msg: read dead letters: %w", err))
	}
	// The server would keep the consumer for its inactivity threshold;
	// listings are frequent (status, the reporter on every pod).
	defer func() {
		if info := c.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = q.js.DeleteConsumer(dctx, StreamDLQ, info.Name)
		}
	}()
	var out []DeadLetter
	for {
		batch, err := c.FetchNoWait(256)
		if err != nil {
			return nil, ClassifyAPI(fmt.Errorf("msg: read dead letters: %w", err))
		}
		got, caughtUp := 0, false
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("msg: dead letter on %s: %w", m.Subject(), err)
			}
			out = append(out, decodeDeadLetter(m.Subject(), m.Data(), md.Sequence.Stream))
			caughtUp = md.NumPending == 0
		}
		if err := batch.Error(); err != nil {
			return nil, ClassifyAPI(fmt.Errorf("msg: read dead letters: %w", err))
		}
		if got == 0 || caughtUp {
			return out, nil
		}
	}
}

// DeadLetterCount is how many dead letters run ("" for every run) has,
// without reading them.
func (q *Queue) DeadLetterCount(ctx context.Context, run string) (int, error) {
	subject, err := dlqSubject(run)
	if err != nil {
		return 0, err
	}
	if run == "" {
		// Every message of the stream is a dead letter.
		s, err := q.js.Stream(ctx, StreamDLQ)
		if err != nil {
			return 0, ClassifyAPI(fmt.Errorf("msg: count dead letters: %w", err))
		}
		return int(s.CachedInfo().State.Msgs), nil
	}
	n, err := q.subjectCount(ctx, StreamDLQ, subject)
	if err != nil {
		return 0, ClassifyAPI(fmt.Errorf("msg: count dead letters of %s: %w", run, err))
	}
	return int(n), nil
}

func dlqSubject(run string) (string, error) {
	if run == "" {
		return dlqSubjects, nil
	}
	if err := checkRun(run); err != nil {
		return "", err
	}
	return dlqSubjectPrefix + run, nil
}

// Pending is the number of run's batch messages still in the stream:
// queued, delivered and not yet acked, or waiting out a retry as a schedule
// ([Queue.Retry]). Zero for a planned run means nothing more will happen to
// it unless an operator replays dead letters.
//
// Both subjects are counted in one snapshot of the stream: a batch moving
// between them (a retry stores its schedule before the original's ack; a
// schedule that fires stores the batch before its own removal) is always
// on one of them, so a run with work left never reads as zero.
func (q *Queue) Pending(ctx context.Context, run string) (uint64, error) {
	if err := checkRun(run); err != nil {
		return 0, err
	}
	counts, err := q.subjectCounts(ctx, StreamBatches, queueSubjects)
	if err != nil {
		return 0, ClassifyAPI(fmt.Errorf("msg: pending batches of %s: %w", run, err))
	}
	n := counts[BatchSubject(run)]
	for subject, c := range counts {
		if strings.HasPrefix(subject, retryPrefix(run)) && q.scheduled(ctx, subject) {
			n += c
		}
	}
	return n, nil
}

// scheduled reports whether the message on a retry subject is a schedule
// that will fire. Anything else there (a stray publish without the
// schedule headers) is no queued work: counted, it would hold its run open
// for good. When the message cannot be read, it counts: a run reads as
// drained only when it is.
func (q *Queue) scheduled(ctx context.Context, subject string) bool {
	s, err := q.js.Stream(ctx, StreamBatches)
	if err != nil {
		return true
	}
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return !errors.Is(err, jetstream.ErrMsgNotFound)
	}
	return m.Header.Get(jetstream.ScheduleHeader) != "" && m.Header.Get(jetstream.ScheduleTargetHeader) != ""
}

// Waiting is the number of run's batches waiting out a retry as a schedule
// ([Queue.Retry]): counted by [Queue.Pending] too, but neither queued nor
// in flight. "" counts every run's.
func (q *Queue) Waiting(ctx context.Context, run string) (uint64, error) {
	filter := retrySubjects
	if run != "" {
		if err := checkRun(run); err != nil {
			return 0, err
		}
		filter = retryPrefix(run) + ">"
	}
	counts, err := q.subjectCounts(ctx, StreamBatches, filter)
	if err != nil {
		return 0, ClassifyAPI(fmt.Errorf("msg: batches waiting to retry: %w", err))
	}
	var n uint64
	for subject, c := range counts {
		if q.scheduled(ctx, subject) {
			n += c
		}
	}
	return n, nil
}

// subjectCount is how many messages stream holds on subject (a literal
// subject), asked of the server without reading them.
func (q *Queue) subjectCount(ctx context.Context, stream, subject string) (uint64, error) {
	counts, err := q.subjectCounts(ctx, stream, subject)
	if err != nil {
		return 0, err
	}
	return counts[subject], nil
}

// subjectCounts is how many messages stream holds on each subject filter
// matches, asked of the server without reading them.
func (q *Queue) subjectCounts(ctx context.Context, stream, filter string) (map[string]uint64, error) {
	s, err := q.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	return info.State.Subjects, nil
}
