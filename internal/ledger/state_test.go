package ledger

import (
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	fresh, old := now.Add(-time.Hour), now.Add(-27*time.Hour)
	accepted := &Acceptance{By: "op", Dropped: []string{"3"}}
	tests := []struct {
		name   string
		rec    RunRecord
		queued uint64
		dead   int
		want   RunState
	}{
		{"planning", RunRecord{State: RunPlanning, Created: fresh}, 3, 0, RunPlanning},
		{"planning with nothing queued yet", RunRecord{State: RunPlanning, Created: fresh}, 0, 1, RunPlanning},
		{"fetching", RunRecord{State: RunFetching, PlanningComplete: true, Created: fresh}, 3, 0, RunFetching},
		{"fetching, dead letter, more queued", RunRecord{State: RunFetching, PlanningComplete: true, Created: fresh}, 2, 1, RunFetching},
		{"dead-lettered, nothing queued", RunRecord{State: RunFetching, PlanningComplete: true, Created: fresh}, 0, 1, RunFailed},
		{"dead-lettered beats stale", RunRecord{State: RunFetching, PlanningComplete: true, Created: old}, 0, 2, RunFailed},
		{"finisher died, all done", RunRecord{State: RunFetching, PlanningComplete: true, Created: fresh}, 0, 0, RunFetching},
		{"completing", RunRecord{State: RunCompleting, PlanningComplete: true, Created: fresh}, 0, 0, RunCompleting},
		{"stale fetching", RunRecord{State: RunFetching, PlanningComplete: true, Created: old}, 5, 0, RunStale},
		{"stale planning", RunRecord{State: RunPlanning, Created: old}, 0, 0, RunStale},
		{"accepted", RunRecord{State: RunFetching, PlanningComplete: true, Created: old, Accepted: accepted}, 0, 0, RunAcceptedIncomplete},
		{"accepted, another dead letter left", RunRecord{State: RunFetching, PlanningComplete: true, Created: fresh, Accepted: accepted}, 0, 1, RunFailed},
		{"accepted, replayed batch queued", RunRecord{State: RunFetching, PlanningComplete: true, Created: fresh, Accepted: accepted}, 1, 0, RunFetching},
		{"complete", RunRecord{State: RunComplete, Created: old}, 0, 0, RunComplete},
		{"failed planning", RunRecord{State: RunFailed, Created: fresh}, 0, 0, RunFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.rec, tt.queued, tt.dead, now, DefaultStaleAfter); got != tt.want {
				t.Errorf("Classify = %s, want %s", got, tt.want)
			}
		})
	}
}
