package runstat

import (
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
)

func TestClassify(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	fresh, old := now.Add(-time.Hour), now.Add(-27*time.Hour)
	accepted := &ledger.Acceptance{By: "op", Dropped: []string{"3"}}
	tests := []struct {
		name   string
		rec    ledger.RunRecord
		queued uint64
		dead   int
		want   State
	}{
		{"planning", ledger.RunRecord{State: ledger.RunPlanning, Created: fresh}, 3, 0, Planning},
		{"planning with nothing queued yet", ledger.RunRecord{State: ledger.RunPlanning, Created: fresh}, 0, 1, Planning},
		{"fetching", ledger.RunRecord{State: ledger.RunFetching, PlanningComplete: true, Created: fresh}, 3, 0, Fetching},
		{"fetching, dead letter, more queued", ledger.RunRecord{State: ledger.RunFetching, PlanningComplete: true, Created: fresh}, 2, 1, Fetching},
		{"dead-lettered, nothing queued", ledger.RunRecord{State: ledger.RunFetching, PlanningComplete: true, Created: fresh}, 0, 1, Failed},
		{"dead-lettered beats stale", ledger.RunRecord{State: ledger.RunFetching, PlanningComplete: true, Created: old}, 0, 2, Failed},
		{"finisher died, all done", ledger.RunRecord{State: ledger.RunFetching, PlanningComplete: true, Created: fresh}, 0, 0, Fetching},
		{"completing", ledger.RunRecord{State: ledger.RunCompleting, PlanningComplete: true, Created: fresh}, 0, 0, Completing},
		{"stale fetching", ledger.RunRecord{State: ledger.RunFetching, PlanningComplete: true, Created: old}, 5, 0, Stale},
		{"stale planning", ledger.RunRecord{State: ledger.RunPlanning, Created: old}, 0, 0, Stale},
		{"accepted", ledger.RunRecord{State: ledger.RunFetching, PlanningComplete: true, Created: old, Accepted: accepted}, 0, 0, AcceptedIncomplete},
		{"accepted, another dead letter left", ledger.RunRecord{State: ledger.RunFetching, PlanningComplete: true, Created: fresh, Accepted: accepted}, 0, 1, Failed},
		{"accepted, replayed batch queued", ledger.RunRecord{State: ledger.RunFetching, PlanningComplete: true, Created: fresh, Accepted: accepted}, 1, 0, Fetching},
		{"complete", ledger.RunRecord{State: ledger.RunComplete, Created: old}, 0, 0, Complete},
		{"failed planning", ledger.RunRecord{State: ledger.RunFailed, Created: fresh}, 0, 0, Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.rec, tt.queued, tt.dead, now, DefaultStaleAfter); got != tt.want {
				t.Errorf("classify = %s, want %s", got, tt.want)
			}
		})
	}
}
