package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/qfetch/qfetch/internal/objstore"
)

// A run's planning belongs to one planner pass, named in the run record
// (PlannerID). Every planner write into the record — progress, Host List
// uploads and pages, the planned totals, a failure — is a compare-and-set
// that checks the pass still holds it, so a planner that lost its lock
// (frozen, partitioned) cannot move a run another pass has taken over; and
// the pass that takes a run over aborts the page uploads of its
// predecessor first, so none of them can land (design.md I8).

// ErrNotPlanner is wrapped when a planner pass writes into a run it no
// longer plans: another pass took it over, or planning is over.
var ErrNotPlanner = errors.New("run is planned by another planner pass")

// TakePlanning makes pass id (owner for operators) the planner of run,
// which must be planning: it aborts, with abort, every page upload the
// record lists before it writes, and again on every retry. Errors wrap
// ErrNotPlanner when the run is no longer planning; an abort that fails
// stops the take (its error): the previous pass might still land a page.
// The record returned is the one written, holding no uploads.
func (l *Ledger) TakePlanning(ctx context.Context, run, id, owner string,
	abort func(context.Context, objstore.Upload) error) (RunRecord, error) {
	// UpdateRun calls change once per compare-and-set attempt, with the
	// record as read, so the uploads of whatever record the write
	// replaces are aborted before it lands.
	return l.UpdateRun(ctx, run, func(r *RunRecord) error {
		if r.State != RunPlanning {
			return fmt.Errorf("ledger: take planning of %s: the run is %s: %w", run, r.State, ErrNotPlanner)
		}
		for _, u := range r.Uploads {
			if err := abort(ctx, u); err != nil {
				return fmt.Errorf("ledger: take planning of %s: abort page upload %s of pass %s: %w", run, u.Key, r.PlannerID, err)
			}
		}
		r.Planner, r.PlannerID, r.Uploads = owner, id, nil
		return nil
	})
}

// UpdatePlanned is UpdateRun for planner pass id: change runs, and the
// record is written, only while the run is planning and id plans it;
// otherwise the error wraps ErrNotPlanner and nothing is written. Both are
// checked on the record each compare-and-set replaces, so a pass that was
// taken over between its read and its write writes nothing.
func (l *Ledger) UpdatePlanned(ctx context.Context, run, id string, change func(*RunRecord) error) (RunRecord, error) {
	return l.UpdateRun(ctx, run, func(r *RunRecord) error {
		if r.State != RunPlanning {
			return fmt.Errorf("ledger: planner pass %s writing %s: the run is %s: %w", id, run, r.State, ErrNotPlanner)
		}
		if r.PlannerID != id {
			return fmt.Errorf("ledger: planner pass %s writing %s: pass %s of %s plans it: %w", id, run, r.PlannerID, r.Planner, ErrNotPlanner)
		}
		return change(r)
	})
}
