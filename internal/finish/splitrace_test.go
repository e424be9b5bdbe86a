package finish

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
)

// rv2Queue is an in-memory finish.Queue.
type rv2Queue struct {
	rec     ledger.RunRecord
	results []ledger.BatchResult
	splits  []ledger.Split
	wm      *ledger.Watermark
}

func (q *rv2Queue) GetRun(context.Context, string) (ledger.RunRecord, error) { return q.rec, nil }
func (q *rv2Queue) UpdateRun(_ context.Context, _ string, change func(*ledger.RunRecord) error) (ledger.RunRecord, error) {
	r := q.rec
	if err := change(&r); err != nil {
		return q.rec, err
	}
	q.rec = r
	return r, nil
}
func (q *rv2Queue) CountDone(context.Context, string) (int, error) { return len(q.results), nil }
func (q *rv2Queue) DoneBatches(context.Context, string) ([]ledger.BatchResult, error) {
	return q.results, nil
}
func (q *rv2Queue) Splits(context.Context, string) ([]ledger.Split, error)   { return q.splits, nil }
func (q *rv2Queue) Pages(context.Context, string) ([]objstore.Object, error) { return nil, nil }
func (q *rv2Queue) AdvanceWatermark(_ context.Context, w ledger.Watermark) (bool, error) {
	q.wm = &w
	return true, nil
}

// TestWholeResultWithUnpublishedSplitCompletes: the worker records a
// split (MarkSplit) and then fails to publish the halves; the redelivered
// whole batch then succeeds. The run must complete on the whole result:
// the quick count before the full check may not ask for the halves too.
func TestWholeResultWithUnpublishedSplitCompletes(t *testing.T) {
	dir, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	q := &rv2Queue{
		rec: ledger.RunRecord{ID: "20260110T000000Z-abcdef", State: ledger.RunFetching, PlanningComplete: true,
			BatchesPlanned: 2, Before: time.Now()},
		results: []ledger.BatchResult{{Run: "20260110T000000Z-abcdef", Batch: "1"}, {Run: "20260110T000000Z-abcdef", Batch: "2"}},
		splits:  []ledger.Split{{Batch: "2", Halves: [2]string{"2.1", "2.2"}}},
	}
	if _, missing := ledger.Resolve(q.rec.BatchesPlanned, q.results, q.splits); missing != "" {
		t.Fatalf("precondition: resolve says %s missing", missing)
	}
	f := New(Config{Prefix: "qualys", Owner: "t"}, q, dir, slog.New(slog.DiscardHandler))
	if err := f.TryFinish(t.Context(), q.rec.ID); err != nil && !errors.Is(err, errNotMine) {
		t.Fatal(err)
	}
	if q.rec.State != ledger.RunComplete {
		t.Fatalf("run state %q: every planned batch has a result, yet the run never completes (count %d < planned %d + splits %d)",
			q.rec.State, len(q.results), q.rec.BatchesPlanned, len(q.splits))
	}
}
