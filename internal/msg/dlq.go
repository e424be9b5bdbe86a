package msg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
)

// ErrNoDeadLetter means QFETCH_DLQ holds no record at that sequence (never
// was, or it was replayed or dropped already).
var ErrNoDeadLetter = errors.New("no such dead letter")

// ErrNotReplayable is wrapped when a dead letter holds a message that is not
// a valid batch: it can only be dropped.
var ErrNotReplayable = errors.New("dead letter cannot be replayed")

// garbledRecord is the Reason of a dead-letter record that does not decode
// (written by hand, or by another version).
const garbledRecord = "garbled dead-letter record"

func decodeDeadLetter(subject string, data []byte, seq uint64) DeadLetter {
	var dl DeadLetter
	if err := json.Unmarshal(data, &dl); err != nil {
		dl = DeadLetter{Subject: subject, Body: data, Reason: garbledRecord, LastError: err.Error()}
		dl.Run = strings.TrimPrefix(subject, dlqSubjectPrefix)
	}
	dl.Seq = seq
	return dl
}

// BatchKey is the dead-lettered batch's key ("17", "17.1"), from the batch
// when it decodes, else from the message ID; "" when neither says.
func (d DeadLetter) BatchKey() string {
	if b, err := Decode(d.Batch); err == nil {
		return b.Key()
	}
	if k, ok := strings.CutPrefix(d.MsgID, d.Run+"."); ok && validBatchKey(k) {
		return k
	}
	return ""
}

// DeadLetterAt returns the dead letter at seq in QFETCH_DLQ, or an error
// wrapping [ErrNoDeadLetter].
func (q *Queue) DeadLetterAt(ctx context.Context, seq uint64) (DeadLetter, error) {
	s, err := q.js.Stream(ctx, StreamDLQ)
	if err != nil {
		return DeadLetter{}, classifyAPI(fmt.Errorf("msg: stream %s: %w", StreamDLQ, err))
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, failure.Permanent(fmt.Errorf("msg: dead letter %d: %w", seq, ErrNoDeadLetter))
	}
	if err != nil {
		return DeadLetter{}, classifyAPI(fmt.Errorf("msg: read dead letter %d: %w", seq, err))
	}
	return decodeDeadLetter(m.Subject, m.Data, seq), nil
}

// Replay puts the dead-lettered batch at seq back on the work queue, byte
// for byte (same run, same key, so the same objects, I3), with its failure
// count reset, and then removes the dead letter. The republished message
// has a Msg-Id of its own: the original's may still be in the duplicate
// window. Replaying the same dead letter twice publishes it once.
func (q *Queue) Replay(ctx context.Context, seq uint64) (Batch, error) {
	dl, err := q.DeadLetterAt(ctx, seq)
	if err != nil {
		return Batch{}, err
	}
	if len(dl.Batch) == 0 {
		return Batch{}, failure.Permanent(fmt.Errorf("msg: dead letter %d holds a garbled message (%d bytes), not a batch: %w; drop it",
			seq, len(dl.Body), ErrNotReplayable))
	}
	b, err := Decode(dl.Batch)
	if err != nil {
		return Batch{}, failure.Permanent(fmt.Errorf("msg: dead letter %d: %w: %w; drop it", seq, ErrNotReplayable, err))
	}
	if err := q.resetFailures(ctx, b.Run, b.Key()); err != nil {
		return Batch{}, err
	}
	// A dead letter whose Term was lost leaves its original in the queue:
	// it gets the reset count and its turn, and a second copy would fetch
	// the batch twice (I3).
	queued, err := q.stillQueued(ctx, dl)
	if err != nil {
		return Batch{}, err
	}
	if queued {
		if err := q.deleteDeadLetter(ctx, seq); err != nil {
			return b, err
		}
		return b, nil
	}
	m := &nats.Msg{Subject: b.Subject(), Data: dl.Batch, Header: nats.Header{}}
	id := fmt.Sprintf("%s.replay.%d", b.MsgID(), seq)
	if _, err := q.js.PublishMsg(ctx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamBatches)); err != nil {
		return Batch{}, classifyAPI(fmt.Errorf("msg: replay dead letter %d (run %s batch %s): %w", seq, b.Run, b.Key(), err))
	}
	if err := q.deleteDeadLetter(ctx, seq); err != nil {
		return b, fmt.Errorf("msg: dead letter %d was replayed but is still listed: %w", seq, err)
	}
	return b, nil
}

// DropDeadLetter removes the dead letter at seq for good. When it belongs to
// a known run that has not completed, the run record first records the drop
// (who, why, which batch) as an [Acceptance]: the run is accepted as
// incomplete; accepted says whether that happened.
func (q *Queue) DropDeadLetter(ctx context.Context, seq uint64, by, reason string) (dl DeadLetter, accepted bool, err error) {
	if by == "" {
		return DeadLetter{}, false, failure.Permanent(errors.New("msg: drop dead letter: say who drops it"))
	}
	dl, err = q.DeadLetterAt(ctx, seq)
	if err != nil {
		return DeadLetter{}, false, err
	}
	if ValidRunID(dl.Run) {
		key := dl.BatchKey()
		if key == "" {
			key = fmt.Sprintf("dlq-%d", seq)
		}
		_, err := q.UpdateRun(ctx, dl.Run, func(r *RunRecord) error {
			if r.State == RunComplete {
				return ErrNoChange // a leftover of a batch done since: nothing to accept
			}
			a := Acceptance{By: by, Reason: reason, At: time.Now().UTC()}
			if r.Accepted != nil {
				a.Dropped = slices.Clone(r.Accepted.Dropped)
				if reason == "" {
					a.Reason = r.Accepted.Reason
				}
			}
			if !slices.Contains(a.Dropped, key) {
				a.Dropped = append(a.Dropped, key)
			}
			r.Accepted = &a
			return nil
		})
		switch {
		case err == nil:
			accepted = true
		case errors.Is(err, ErrNoChange), errors.Is(err, ErrRunNotFound):
		default:
			return dl, false, fmt.Errorf("msg: drop dead letter %d: recording it in run %s: %w", seq, dl.Run, err)
		}
	}
	if err := q.deleteDeadLetter(ctx, seq); err != nil {
		return dl, accepted, err
	}
	return dl, accepted, nil
}

// stillQueued reports whether dl's original message is still in
// QFETCH_BATCHES.
func (q *Queue) stillQueued(ctx context.Context, dl DeadLetter) (bool, error) {
	s, err := q.js.Stream(ctx, StreamBatches)
	if err != nil {
		return false, classifyAPI(fmt.Errorf("msg: stream %s: %w", StreamBatches, err))
	}
	m, err := s.GetMsg(ctx, dl.StreamSeq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, classifyAPI(fmt.Errorf("msg: look for dead letter %d's original: %w", dl.Seq, err))
	}
	return m.Header.Get(jetstream.MsgIDHeader) == dl.MsgID && m.Subject == dl.Subject, nil
}

func (q *Queue) deleteDeadLetter(ctx context.Context, seq uint64) error {
	s, err := q.js.Stream(ctx, StreamDLQ)
	if err != nil {
		return classifyAPI(fmt.Errorf("msg: stream %s: %w", StreamDLQ, err))
	}
	err = s.DeleteMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		if _, gerr := s.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return nil // someone else removed it: the outcome asked for
		}
	}
	if err != nil {
		return classifyAPI(fmt.Errorf("msg: remove dead letter %d: %w", seq, err))
	}
	return nil
}
