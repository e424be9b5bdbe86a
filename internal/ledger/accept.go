package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Accept records in run's record that an operator (by, for reason) dropped
// dead-lettered batch key: the run is accepted as incomplete (see
// [Acceptance]). A reason left empty keeps the earlier one. It reports
// whether the record changed: a run that completed meanwhile (a leftover of
// a batch done since) or has no record has nothing to accept.
func (l *Ledger) Accept(ctx context.Context, run, key, by, reason string) (bool, error) {
	if by == "" {
		return false, errors.New("ledger: accept: say who drops it")
	}
	_, err := l.UpdateRun(ctx, run, func(r *RunRecord) error {
		if r.State == RunComplete {
			return ErrNoChange
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
		return true, nil
	case errors.Is(err, ErrNoChange), errors.Is(err, ErrRunNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("recording it in run %s: %w", run, err)
	}
}
