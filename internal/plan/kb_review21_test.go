package plan_test

import (
	"slices"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/runid"
)

// TestKBBackfillCoversStopsAtOpenRun_review21: a detection run passed over
// while its batches are dead-lettered (a newer run opened and completed
// meanwhile) completes later, once its batches are replayed. Covers must
// not move past it while it is open: otherwise no pass ever looks at its
// detections, and a QID only it uses stays unknown until a full pass lists
// it (if Qualys lists it at all).
func TestKBBackfillCoversStopsAtOpenRun_review21(t *testing.T) {
	e := setupKB(t, 1000)
	ctx := t.Context()
	now := e.sim.Clock().Now()
	r1, r2, r3 := runid.New(now.Add(-72*time.Hour)), runid.New(now.Add(-71*time.Hour)), runid.New(now.Add(-70*time.Hour))
	completeRun(t, e, r1)
	if _, err := e.q.CreateRun(ctx, ledger.RunRecord{ID: r2, After: now.Add(-72 * time.Hour),
		Before: now.Add(-48 * time.Hour), State: ledger.RunFetching, PlanningComplete: true}); err != nil {
		t.Fatal(err)
	}
	completeRun(t, e, r3)
	e.used.used = []uint64{2}

	out := runKB(t, e.kbPlanner(t, e.cfg))
	rec, err := e.q.GetRun(ctx, out.KB.Pass)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Covers != r1 {
		t.Fatalf("covers %q, want %s (run %s is still open)", rec.Covers, r1, r2)
	}

	// The replayed run completes; the next pass must look at it.
	if _, err := e.q.UpdateRun(ctx, r2, func(r *ledger.RunRecord) error {
		r.State, r.Completed = ledger.RunComplete, time.Now().UTC()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.completeKB(t, out.KB.Pass, true)
	e.sim.Advance(time.Hour)
	runKB(t, e.kbPlanner(t, e.cfg))
	if got := e.used.asked; len(got) != 2 || !slices.Contains(got[1], r2) {
		t.Fatalf("second pass asked about runs %v, want %s among them", got, r2)
	}
}
