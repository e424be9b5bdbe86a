package plan_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/testrun"
)

// The planner's watermark step moves the watermark over completed runs,
// oldest first, and over a run only when its record is complete, its
// _SUCCESS stored, its window contiguous with the watermark and ending no
// later than the planner's clock (#17: workers, which seal runs, no longer
// write it).
func TestAdvancerChecksEachRun(t *testing.T) {
	t0 := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	now := t0.Add(30 * 24 * time.Hour)
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	type run struct {
		after, before time.Time
		state         ledger.RunState
		noSuccess     bool
		noPages       bool // a record no planner walked (a worker's credential wrote it)
	}
	complete := func(after, before time.Time) run { return run{after: after, before: before, state: ledger.RunComplete} }
	tests := []struct {
		name       string
		firstAfter time.Time
		watermark  *ledger.Watermark // set by an operator before the runs open
		runs       []run
		want       []int  // the runs that moved it, in order (indexes into runs)
		logged     string // what the log says of a run passed over
	}{
		{name: "two runs, oldest first", runs: []run{complete(time.Time{}, h(1)), complete(h(1).Add(-time.Minute), h(2))}, want: []int{0, 1}},
		{name: "still fetching", runs: []run{{after: time.Time{}, before: h(1), state: ledger.RunFetching}}},
		{name: "failed", runs: []run{{after: time.Time{}, before: h(1), state: ledger.RunFailed}}},
		{name: "no _SUCCESS, the next run still contiguous", runs: []run{{before: h(1), state: ledger.RunComplete, noSuccess: true},
			complete(time.Time{}, h(2))}, want: []int{1}, logged: "_SUCCESS is not stored"},
		{name: "no Host List page, the next run still contiguous", runs: []run{{before: h(1), state: ledger.RunComplete, noPages: true},
			complete(time.Time{}, h(2))}, want: []int{1}, logged: "no Host List page is recorded"},
		{name: "a gap", runs: []run{complete(time.Time{}, h(1)), complete(h(3), h(4))}, want: []int{0},
			logged: "starts after the watermark"},
		{name: "first window after QFETCH_PLAN_FIRST_AFTER", firstAfter: h(1), runs: []run{complete(h(2), h(3))},
			logged: "starts after the watermark"},
		{name: "first window from QFETCH_PLAN_FIRST_AFTER", firstAfter: h(1), runs: []run{complete(h(1), h(3))}, want: []int{0}},
		{name: "a window ending in the future", runs: []run{complete(time.Time{}, now.Add(time.Hour))},
			logged: "ends after this planner's clock"},
		{name: "opened before an operator's setting", watermark: &ledger.Watermark{Time: h(1), By: "bob@ops", Reason: "re-fetch"},
			runs: []run{complete(time.Time{}, h(5))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testrun.New(t, testrun.Options{Hosts: 10})
			ctx := t.Context()
			var ids []string
			for i, r := range tt.runs {
				id := r.before.Format("20060102T150405Z") + "-r" + string(rune('a'+i))
				ids = append(ids, id)
				if _, err := e.Q.CreateRun(ctx, ledger.RunRecord{ID: id, After: r.after, Before: r.before, State: r.state}); err != nil {
					t.Fatal(err)
				}
				if !r.noPages { // what the planner's walk records
					if err := e.Q.MarkPage(ctx, id, 1, objstore.Object{Key: "page-1", Hosts: 1}); err != nil {
						t.Fatal(err)
					}
				}
				if r.state == ledger.RunComplete && !r.noSuccess {
					if _, err := e.Store.Put(ctx, objstore.SuccessKey(testrun.Prefix, id), strings.NewReader(""), objstore.PutOptions{}); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tt.watermark != nil {
				// Set after the runs opened: their windows were cut from
				// the watermark it replaced.
				if err := e.Q.SetWatermark(ctx, *tt.watermark); err != nil {
					t.Fatal(err)
				}
			}
			var log bytes.Buffer
			a := plan.Advancer{Ledger: e.Q.Ledger, Store: e.Store, Prefix: testrun.Prefix, FirstAfter: tt.firstAfter,
				By: "planner-x", Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(&log, nil))}
			wm, err := a.Advance(ctx)
			if err != nil && !errors.Is(err, ledger.ErrNoWatermark) {
				t.Fatal(err)
			}
			hist, err := e.Q.WatermarkHistory(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got, want []string
			for _, w := range hist {
				if w.Run != "" {
					got = append(got, w.Run)
					if w.By != "planner-x" {
						t.Errorf("watermark set by %q, want the planner", w.By)
					}
				}
			}
			for _, i := range tt.want {
				want = append(want, ids[i])
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("the watermark was moved by runs %v, want %v", got, want)
			}
			if len(want) > 0 && wm.Run != want[len(want)-1] {
				t.Errorf("Advance returned %+v, want run %s's", wm, want[len(want)-1])
			}
			if tt.logged != "" && !strings.Contains(log.String(), tt.logged) {
				t.Errorf("the log does not say %q:\n%s", tt.logged, log.String())
			}
			// A second step changes nothing.
			if _, err := a.Advance(ctx); err != nil && !errors.Is(err, ledger.ErrNoWatermark) {
				t.Fatal(err)
			}
			if again, _ := e.Q.WatermarkHistory(ctx); len(again) != len(hist) {
				t.Errorf("a second step moved the watermark: %d entries, then %d", len(hist), len(again))
			}
		})
	}
}

// A run the workers completed (they seal it but leave the watermark) moves
// the watermark at the start of the next planner pass, before the pass cuts
// its window from it.
func TestNextPassAdvancesBeforeItsWindow(t *testing.T) {
	e := testrun.New(t, testrun.Options{Hosts: 300, BatchSize: 100, PageSize: 300})
	first := e.Plan()
	e.Work(e.Complete(first.Run))
	if wm, err := e.Q.Watermark(t.Context()); !errors.Is(err, ledger.ErrNoWatermark) {
		t.Fatalf("the workers moved the watermark: %+v, %v", wm, err)
	}
	e.Sim.Advance(time.Hour)
	next := e.Plan()
	rec := e.Record(first.Run)
	wm, err := e.Q.Watermark(t.Context())
	if err != nil || wm.Run != first.Run || !wm.Time.Equal(rec.Before) || wm.By != "planner" {
		t.Fatalf("watermark %+v, %v; want run %s's end, moved by the planner", wm, err, first.Run)
	}
	if after := e.Record(next.Run).After; !after.Equal(rec.Before) {
		t.Errorf("the next window starts at %s, want %s (the completed run's end)", after, rec.Before)
	}
}
