package ledger

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestKBPassIDs: run IDs and KB pass IDs are listed apart, each ascending,
// so that nothing about detection runs meets a KB pass unless it asks.
func TestKBPassIDs(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	ids := []string{"kb-20261204T120000Z-aaaaaa", "20261204T120000Z-bbbbbb", "kb-20261203T120000Z-cccccc", "20261203T120000Z-dddddd"}
	for _, id := range ids {
		if _, err := e.l.CreateRun(e.Ctx, RunRecord{ID: id, Before: testBefore, State: RunPlanning}); err != nil {
			t.Fatal(err)
		}
	}
	// Batch records of a KB pass are not records of their own.
	if err := e.l.MarkDone(e.Ctx, BatchResult{Run: ids[0], Batch: "1", IDs: "38170"}); err != nil {
		t.Fatal(err)
	}
	runs, err := e.l.RunIDs(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"20261203T120000Z-dddddd", "20261204T120000Z-bbbbbb"}; !slices.Equal(runs, want) {
		t.Errorf("RunIDs = %v, want %v", runs, want)
	}
	passes, err := e.l.KBPassIDs(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"kb-20261203T120000Z-cccccc", "kb-20261204T120000Z-aaaaaa"}; !slices.Equal(passes, want) {
		t.Errorf("KBPassIDs = %v, want %v", passes, want)
	}
}

// TestKBWatermark: the KB watermark moves forward only, by compare-and-set,
// apart from the detection watermark, with its own history.
func TestKBWatermark(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	if _, err := e.l.KBWatermark(e.Ctx); !errors.Is(err, ErrNoWatermark) {
		t.Fatalf("fresh KB watermark: %v", err)
	}
	moved, err := e.l.AdvanceKBWatermark(e.Ctx, Watermark{Time: testBefore, Run: "kb-1", By: "planner-a", Reason: "kb pass complete"})
	if err != nil || !moved {
		t.Fatalf("first advance: %v, %v", moved, err)
	}
	if moved, err := e.l.AdvanceKBWatermark(e.Ctx, Watermark{Time: testBefore.Add(-time.Hour), Run: "kb-0", By: "planner-b"}); err != nil || moved {
		t.Fatalf("advance backwards: %v, %v", moved, err)
	}
	if _, err := e.l.Watermark(e.Ctx); !errors.Is(err, ErrNoWatermark) {
		t.Fatalf("the detection watermark moved with the KB one: %v", err)
	}
	if moved, err := e.l.AdvanceWatermark(e.Ctx, Watermark{Time: testBefore.Add(time.Hour), Run: "r1", By: "planner-a"}); err != nil || !moved {
		t.Fatalf("detection advance: %v, %v", moved, err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			w := Watermark{Time: testBefore.Add(time.Duration(i) * time.Minute), By: fmt.Sprint("p", i)}
			if _, err := e.l.AdvanceKBWatermark(e.Ctx, w); err != nil {
				t.Errorf("advance %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	w, err := e.l.KBWatermark(e.Ctx)
	if err != nil || !w.Time.Equal(testBefore.Add(7*time.Minute)) {
		t.Fatalf("KB watermark %+v, %v; want the latest of all", w, err)
	}
	hist, err := e.l.KBWatermarkHistory(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) < 2 || hist[0].By != "planner-a" || !hist[len(hist)-1].Time.Equal(w.Time) {
		t.Fatalf("KB history %+v", hist)
	}
	for _, h := range hist {
		if h.Run == "r1" {
			t.Fatalf("the detection watermark is in the KB history: %+v", hist)
		}
	}
}
