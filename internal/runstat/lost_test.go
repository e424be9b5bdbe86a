package runstat

import (
	"testing"

	"github.com/qfetch/qfetch/internal/ledger"
)

// A run whose planning is over, with nothing queued, in flight, waiting or
// dead-lettered and fewer batches done than planned, lost the rest: the
// queue was purged. Any other run has lost nothing (yet).
func TestLost(t *testing.T) {
	fetching := ledger.RunRecord{State: ledger.RunFetching, PlanningComplete: true, BatchesPlanned: 10}
	with := func(f func(*ledger.RunRecord)) ledger.RunRecord { r := fetching; f(&r); return r }
	for _, tt := range []struct {
		name        string
		rec         ledger.RunRecord
		queued      uint64
		deadLetters int
		done        int
		want        int
	}{
		{"purged", fetching, 0, 0, 4, 6},
		{"purged before any batch", fetching, 0, 0, 0, 10},
		{"all done, before its finisher", fetching, 0, 0, 10, 0},
		{"batches queued", fetching, 1, 0, 4, 0},
		{"the rest dead-lettered", fetching, 0, 6, 4, 0},
		{"still planning", with(func(r *ledger.RunRecord) { r.PlanningComplete = false }), 0, 0, 4, 0},
		{"completing", with(func(r *ledger.RunRecord) { r.State = ledger.RunCompleting }), 0, 0, 4, 0},
		{"complete", with(func(r *ledger.RunRecord) { r.State = ledger.RunComplete }), 0, 0, 4, 0},
		{"failed", with(func(r *ledger.RunRecord) { r.State = ledger.RunFailed }), 0, 0, 4, 0},
		{"accepted incomplete", with(func(r *ledger.RunRecord) { r.Accepted = &ledger.Acceptance{} }), 0, 0, 4, 0},
	} {
		if got := lost(tt.rec, tt.queued, tt.deadLetters, tt.done); got != tt.want {
			t.Errorf("%s: lost %d, want %d", tt.name, got, tt.want)
		}
	}
}
