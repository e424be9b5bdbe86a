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

func decodeDeadLetter(data []byte, seq uint64) (DeadLetter, error) {
	var dl DeadLetter
	if err := json.Unmarshal(data, &dl); err != nil {
		return DeadLetter{}, failure.Permanent(fmt.Errorf("msg: dead letter %d is garbled: %w", seq, err))
	}
	dl.Seq = seq
	return dl, nil
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
	return decodeDeadLetter(m.Data, seq)
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
// a known run, the run record first records the drop (who, why, which
// batch) as an [Acceptance]: the run is accepted as incomplete.
func (q *Queue) DropDeadLetter(ctx context.Context, seq uint64, by, reason string) (DeadLetter, error) {
	if by == "" {
		return DeadLetter{}, failure.Permanent(errors.New("msg: drop dead letter: say who drops it"))
	}
	dl, err := q.DeadLetterAt(ctx, seq)
	if err != nil {
		return DeadLetter{}, err
	}
	if ValidRunID(dl.Run) {
		key := dl.BatchKey()
		if key == "" {
			key = fmt.Sprintf("dlq-%d", seq)
		}
		_, err := q.UpdateRun(ctx, dl.Run, func(r *RunRecord) error {
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
		if err != nil && !errors.Is(err, ErrRunNotFound) {
			return dl, fmt.Errorf("msg: drop dead letter %d: recording it in run %s: %w", seq, dl.Run, err)
		}
	}
	if err := q.deleteDeadLetter(ctx, seq); err != nil {
		return dl, err
	}
	return dl, nil
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
