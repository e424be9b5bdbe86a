package ledger

import (
	"context"
	"errors"

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
// ErrNotPlanner when the run is no longer planning.
func (l *Ledger) TakePlanning(ctx context.Context, run, id, owner string,
	abort func(context.Context, objstore.Upload) error) (RunRecord, error) {
	return RunRecord{}, errClaimTODO
}

// UpdatePlanned is UpdateRun for planner pass id: change runs, and the
// record is written, only while the run is planning and id plans it;
// otherwise the error wraps ErrNotPlanner and nothing is written.
func (l *Ledger) UpdatePlanned(ctx context.Context, run, id string, change func(*RunRecord) error) (RunRecord, error) {
	return RunRecord{}, errClaimTODO
}
