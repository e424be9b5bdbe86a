package msg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

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

// ErrDeadLettersBroken is wrapped, classified fleet-wide, when QFETCH_DLQ
// cannot take any record: missing, sealed, not on qfetch's subjects, or
// full and refusing more. No batch is to blame then, and none can be
// dead-lettered until an operator (or the next planner's setup) repairs it.
var ErrDeadLettersBroken = errors.New("dead-letter stream cannot take records")

// CheckDeadLetters reports whether QFETCH_DLQ can take a record, asking the
// server for its settings and state and writing nothing: nil, or an error
// wrapping [ErrDeadLettersBroken] (fleet-wide), or another error when the
// server could not be asked (classified by [ClassifyAPI]).
func (q *Queue) CheckDeadLetters(ctx context.Context) error {
	broken := func(why string, err error) error {
		if err != nil {
			return failure.FleetWide(fmt.Errorf("msg: stream %s: %w: %s: %w", StreamDLQ, ErrDeadLettersBroken, why, err))
		}
		return failure.FleetWide(fmt.Errorf("msg: stream %s: %w: %s", StreamDLQ, ErrDeadLettersBroken, why))
	}
	s, err := q.js.Stream(ctx, StreamDLQ)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return broken("missing (the next planner recreates it)", err)
	}
	if err != nil {
		return ClassifyAPI(fmt.Errorf("msg: stream %s: %w", StreamDLQ, err))
	}
	info := s.CachedInfo()
	c, st := info.Config, info.State
	full := c.Discard == jetstream.DiscardNew &&
		((c.MaxMsgs > 0 && st.Msgs >= uint64(c.MaxMsgs)) || (c.MaxBytes > 0 && st.Bytes >= uint64(c.MaxBytes)))
	switch {
	case c.Sealed:
		return broken("sealed", nil)
	case !slices.Contains(c.Subjects, dlqSubjects):
		return broken("not on "+dlqSubjects, nil)
	case full:
		return broken(fmt.Sprintf("full (%d records, %d bytes; limits %d, %d)", st.Msgs, st.Bytes, c.MaxMsgs, c.MaxBytes), nil)
	}
	return nil
}

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
	if k, ok := strings.CutPrefix(d.MsgID, d.Run+"."); ok && ValidBatchKey(k) {
		return k
	}
	return ""
}

// DeadLetterAt returns the dead letter at seq in QFETCH_DLQ, or an error
// wrapping [ErrNoDeadLetter].
func (q *Queue) DeadLetterAt(ctx context.Context, seq uint64) (DeadLetter, error) {
	s, err := q.js.Stream(ctx, StreamDLQ)
	if err != nil {
		return DeadLetter{}, ClassifyAPI(fmt.Errorf("msg: stream %s: %w", StreamDLQ, err))
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, failure.Permanent(fmt.Errorf("msg: dead letter %d: %w", seq, ErrNoDeadLetter))
	}
	if err != nil {
		return DeadLetter{}, ClassifyAPI(fmt.Errorf("msg: read dead letter %d: %w", seq, err))
	}
	return decodeDeadLetter(m.Subject, m.Data, seq), nil
}

// Replay puts the dead-lettered batch at seq back on the work queue, byte
// for byte (same run, same key, so the same objects, I3), and then removes
// the dead letter. before is called with the batch once it is known to be
// replayable and before anything is published (the run ledger resets the
// batch's failure count there); its error stops the replay. The republished message
// has a Msg-Id of its own: the original's may still be in the duplicate
// window. Replaying the same dead letter twice publishes it once.
func (q *Queue) Replay(ctx context.Context, seq uint64, before func(Batch) error) (Batch, error) {
	dl, err := q.DeadLetterAt(ctx, seq)
	if err != nil {
		return Batch{}, err
	}
	if len(dl.Batch) == 0 {
		size := len(dl.Body)
		if dl.Size > 0 {
			size = dl.Size
		}
		return Batch{}, failure.Permanent(fmt.Errorf("msg: dead letter %d holds a garbled message (%d bytes), not a batch: %w; drop it",
			seq, size, ErrNotReplayable))
	}
	b, err := Decode(dl.Batch)
	if err != nil {
		return Batch{}, failure.Permanent(fmt.Errorf("msg: dead letter %d: %w: %w; drop it", seq, ErrNotReplayable, err))
	}
	if err := before(b); err != nil {
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
		return Batch{}, ClassifyAPI(fmt.Errorf("msg: replay dead letter %d (run %s batch %s): %w", seq, b.Run, b.Key(), err))
	}
	if err := q.deleteDeadLetter(ctx, seq); err != nil {
		return b, fmt.Errorf("msg: dead letter %d was replayed but is still listed: %w", seq, err)
	}
	return b, nil
}

// DropDeadLetter removes the dead letter at seq for good. record is called
// with the dead letter first (the operator's acceptance goes into the run
// ledger there); if it fails, the dead letter stays and its error is
// returned, so that no drop goes unrecorded.
func (q *Queue) DropDeadLetter(ctx context.Context, seq uint64, record func(DeadLetter) error) (DeadLetter, error) {
	dl, err := q.DeadLetterAt(ctx, seq)
	if err != nil {
		return DeadLetter{}, err
	}
	if err := record(dl); err != nil {
		return dl, fmt.Errorf("msg: drop dead letter %d: %w", seq, err)
	}
	if err := q.deleteDeadLetter(ctx, seq); err != nil {
		return dl, err
	}
	return dl, nil
}

// stillQueued reports whether dl's original message is still in
// QFETCH_BATCHES.
func (q *Queue) stillQueued(ctx context.Context, dl DeadLetter) (bool, error) {
	s, err := q.js.Stream(ctx, StreamBatches)
	if err != nil {
		return false, ClassifyAPI(fmt.Errorf("msg: stream %s: %w", StreamBatches, err))
	}
	m, err := s.GetMsg(ctx, dl.StreamSeq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, ClassifyAPI(fmt.Errorf("msg: look for dead letter %d's original: %w", dl.Seq, err))
	}
	return storedMsgID(m.Header, m.Data) == dl.MsgID && m.Subject == dl.Subject, nil
}

func (q *Queue) deleteDeadLetter(ctx context.Context, seq uint64) error {
	s, err := q.js.Stream(ctx, StreamDLQ)
	if err != nil {
		return ClassifyAPI(fmt.Errorf("msg: stream %s: %w", StreamDLQ, err))
	}
	err = s.DeleteMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		if _, gerr := s.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return nil // someone else removed it: the outcome asked for
		}
	}
	if err != nil {
		return ClassifyAPI(fmt.Errorf("msg: remove dead letter %d: %w", seq, err))
	}
	return nil
}
