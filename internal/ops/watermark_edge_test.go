package ops_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/ops"
)

// TestWatermarkSetUndoneByOpenRun: an operator moves the watermark
// back to have hosts fetched again ("the next run's window starts there");
// a run opened before the set completes afterwards and advances the
// watermark past it. Nothing warned, and the next run starts at the old
// run's end: the window the operator asked for is never fetched again.
func TestWatermarkSetUndoneByOpenRun(t *testing.T) {
	e := setup(t, 500)
	ctx := t.Context()
	a := e.Plan() // open, fetching, nobody working on it yet
	rec := e.Record(a.Run)
	to := rec.Before.Add(-72 * time.Hour)

	var buf bytes.Buffer
	err := ops.WatermarkSet(ctx, e.Q, to, "bob@ops", "bucket lost three days, fetch them again", true, ops.Output{W: &buf})
	if err != nil {
		t.Logf("set refused while a run is open (acceptable): %v", err)
		return
	}
	t.Logf("set said: %s", buf.String())
	e.Work(e.Complete(a.Run))
	_, err = e.AdvanceWatermark() // the next planner pass's step
	if err != nil {
		t.Fatal(err)
	}

	wm, err := e.Q.Watermark(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !wm.Time.Equal(to) {
		t.Errorf("the operator set the watermark to %s while run %s was open; its completion moved it to %s (%s): "+
			"the next run will not start where the operator was told it would", to.Format(time.RFC3339), a.Run,
			wm.Time.Format(time.RFC3339), wm.By)
	}
}
