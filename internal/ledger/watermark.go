package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
)

// watermarkKey in QFETCH_STATE holds the watermark; its KV history (64
// revisions) is the audit trail of who moved it and why.
const watermarkKey = "watermark"

// ErrNoWatermark means no run has completed yet.
var ErrNoWatermark = errors.New("no watermark yet")

// Watermark is where the next run's window starts (before any overlap): the
// Before of the last completed run, unless an operator set it.
type Watermark struct {
	Time time.Time `json:"time"`
	// Run is the completed run that set it; empty when an operator did.
	Run    string    `json:"run,omitempty"`
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
	// RunOpened is when Run was opened, for AdvanceWatermark's rule on
	// operators' settings.
	RunOpened time.Time `json:"run_opened,omitzero"`

	Revision uint64 `json:"-"`
}

// Watermark returns the current watermark, or an error wrapping
// [ErrNoWatermark].
func (l *Ledger) Watermark(ctx context.Context) (Watermark, error) {
	return l.readWatermark(ctx, watermarkKey)
}

// readWatermark reads the watermark under key (watermarkKey or
// kbWatermarkKey).
func (l *Ledger) readWatermark(ctx context.Context, key string) (Watermark, error) {
	e, err := l.state.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Watermark{}, ErrNoWatermark
	}
	if err != nil {
		return Watermark{}, msg.ClassifyAPI(fmt.Errorf("ledger: read %s: %w", key, err))
	}
	return decodeWatermark(e)
}

func decodeWatermark(e jetstream.KeyValueEntry) (Watermark, error) {
	var w Watermark
	if err := json.Unmarshal(e.Value(), &w); err != nil {
		return Watermark{}, failure.Permanent(fmt.Errorf("ledger: watermark revision %d is garbled: %w", e.Revision(), err))
	}
	w.Revision = e.Revision()
	return w, nil
}

// AdvanceWatermark moves the watermark to w.Time if that is later than the
// current one, by compare-and-set, and reports whether it moved. A run that
// completes after a later run completed leaves it where it is (I1: it only
// moves forward on completion). So does a run that was opened before an
// operator set the watermark (w.RunOpened before the setting): its window
// was cut from the old watermark, and the operator asked for the next
// window to start at theirs.
func (l *Ledger) AdvanceWatermark(ctx context.Context, w Watermark) (bool, error) {
	return l.advanceWatermark(ctx, watermarkKey, w)
}

// advanceWatermark is AdvanceWatermark for the watermark under key.
func (l *Ledger) advanceWatermark(ctx context.Context, key string, w Watermark) (bool, error) {
	for attempt := 1; attempt <= maxCASAttempts; attempt++ {
		cur, err := l.readWatermark(ctx, key)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNoWatermark) {
			return false, err
		}
		if exists && !w.Time.After(cur.Time) {
			return false, nil
		}
		if exists && cur.Run == "" && !w.RunOpened.IsZero() && cur.At.After(w.RunOpened) {
			return false, nil
		}
		data, err := marshalWatermark(w)
		if err != nil {
			return false, err
		}
		if exists {
			_, err = l.state.Update(ctx, key, data, cur.Revision)
		} else {
			_, err = l.state.Create(ctx, key, data)
		}
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
			continue // someone moved it meanwhile: look again
		default:
			return false, msg.ClassifyAPI(fmt.Errorf("ledger: advance %s: %w", key, err))
		}
	}
	return false, failure.Retryable(fmt.Errorf("ledger: advance %s: still contended", key))
}

// SetWatermark sets the watermark unconditionally, backwards too: the
// operator's override. By and Reason are kept in the history.
func (l *Ledger) SetWatermark(ctx context.Context, w Watermark) error {
	if w.By == "" {
		return failure.Permanent(errors.New("ledger: set watermark: say who sets it (By)"))
	}
	data, err := marshalWatermark(w)
	if err != nil {
		return err
	}
	if _, err := l.state.Put(ctx, watermarkKey, data); err != nil {
		return msg.ClassifyAPI(fmt.Errorf("ledger: set watermark: %w", err))
	}
	return nil
}

// WatermarkHistory returns the watermark's past values, oldest first (the
// last 64).
func (l *Ledger) WatermarkHistory(ctx context.Context) ([]Watermark, error) {
	return l.watermarkHistory(ctx, watermarkKey)
}

// watermarkHistory is WatermarkHistory for the watermark under key.
func (l *Ledger) watermarkHistory(ctx context.Context, key string) ([]Watermark, error) {
	entries, err := l.state.History(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, msg.ClassifyAPI(fmt.Errorf("ledger: %s history: %w", key, err))
	}
	var out []Watermark
	for _, e := range entries {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		w, err := decodeWatermark(e)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

func marshalWatermark(w Watermark) ([]byte, error) {
	if w.Time.IsZero() {
		return nil, failure.Permanent(errors.New("ledger: watermark time is zero"))
	}
	if w.At.IsZero() {
		w.At = time.Now().UTC()
	}
	return json.Marshal(w)
}
