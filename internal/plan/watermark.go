package plan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
)

// Watermarks is the part of the run ledger that advancing the watermark
// reads and writes.
type Watermarks interface {
	Watermark(ctx context.Context) (ledger.Watermark, error)
	RunIDs(ctx context.Context) ([]string, error)
	GetRun(ctx context.Context, id string) (ledger.RunRecord, error)
	// AdvanceWatermark moves the watermark forward only, by
	// compare-and-set, and says whether it moved.
	AdvanceWatermark(ctx context.Context, w ledger.Watermark) (bool, error)
	// Pages are the run's Host List page records: only a planner's
	// credential may write them (a worker's may write run records).
	Pages(ctx context.Context, run string) ([]objstore.Object, error)
}

// Marks is where a sealed run's _SUCCESS is looked for.
type Marks interface {
	// Stat describes key's object, or fails with an error wrapping
	// objstore.ErrNotFound.
	Stat(ctx context.Context, key string) (objstore.Object, error)
}

// Advancer moves the watermark over runs that completed since it last
// moved. Planners run it (workers hold no right on the watermark: NATS
// cannot tell a compare-and-set advance from a set, so a worker's
// credential could otherwise move it anywhere, I1/I7); `qfetch local` and
// tests that stand in for the next planner pass run it too.
type Advancer struct {
	Ledger Watermarks
	Store  Marks
	Prefix string
	// FirstAfter is where the first window starts (the planner's
	// QFETCH_PLAN_FIRST_AFTER): with no watermark yet, a run is contiguous
	// when its window starts at or before it.
	FirstAfter time.Time
	By         string // who advances, for the watermark's history
	// Now is the planner's clock, the one its runs' windows end by
	// (default time.Now).
	Now func() time.Time
	Log *slog.Logger
	// kb is set when Ledger shows KnowledgeBase passes and the KB
	// watermark (see Planner.kbAdvancer): for the logs and the reason.
	kb bool
}

// maxSkew is how far past the advancing planner's clock a run's window
// may end: planner pods on other nodes cut windows by their own clocks.
const maxSkew = time.Minute

// Advance moves the watermark over every completed run newer than it,
// oldest first, each one checked: its record complete, its _SUCCESS
// stored, its window starting at or before the watermark as it stands
// then (no gap between the two, I1), a Host List page recorded (which only
// a planner may write) and ending no later than this
// planner's clock (a record forged with a window ending in the future
// would hold every later window empty). A run that fails a check is logged
// and passed over; a later run may still be contiguous, since its window
// was cut from the same watermark. It returns the watermark it leaves, or
// an error wrapping ledger.ErrNoWatermark when there is none.
func (a Advancer) Advance(ctx context.Context) (ledger.Watermark, error) {
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	log := a.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wm, err := a.Ledger.Watermark(ctx)
	exists := err == nil
	if err != nil && !errors.Is(err, ledger.ErrNoWatermark) {
		return wm, fmt.Errorf("advancing the watermark: reading it: %w", err)
	}
	candidates, err := a.completedSince(ctx, wm, exists)
	if err != nil {
		return wm, err
	}
	for _, r := range candidates {
		if exists && !r.Before.After(wm.Time) {
			continue
		}
		start := a.FirstAfter
		if exists {
			start = wm.Time
		}
		if reason, err := a.check(ctx, r, start, now()); err != nil {
			return wm, err
		} else if reason != "" {
			log.Error("not advancing the "+a.what()+" over a completed run: "+reason, "run", r.ID,
				"after", r.After, "before", r.Before, "watermark", start)
			continue
		}
		next := ledger.Watermark{Time: r.Before, Run: r.ID, By: a.By, Reason: "run complete",
			At: time.Now().UTC(), RunOpened: r.Created}
		if a.kb {
			next.Reason = "KnowledgeBase pass complete"
		}
		moved, err := a.Ledger.AdvanceWatermark(ctx, next)
		if err != nil {
			return wm, fmt.Errorf("advancing the %s over %s: %w", a.what(), r.ID, err)
		}
		if moved {
			log.Info(a.what()+" advanced", "run", r.ID, "watermark", r.Before)
		}
		if wm, err = a.Ledger.Watermark(ctx); err != nil {
			return wm, fmt.Errorf("advancing the watermark: reading it: %w", err)
		}
		exists = true
	}
	if !exists {
		return wm, ledger.ErrNoWatermark
	}
	return wm, nil
}

// what names the watermark a moves.
func (a Advancer) what() string {
	if a.kb {
		return "KB watermark"
	}
	return "watermark"
}

// completedSince returns the complete runs that may move wm, oldest first:
// the run IDs sort by time, so the walk goes from the newest back to the
// first complete run wm already covers, or to the first run opened before
// an operator set wm (AdvanceWatermark refuses those: their windows were
// cut from the watermark the operator replaced).
func (a Advancer) completedSince(ctx context.Context, wm ledger.Watermark, exists bool) ([]ledger.RunRecord, error) {
	ids, err := a.Ledger.RunIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("advancing the watermark: listing runs: %w", err)
	}
	var out []ledger.RunRecord
	for i := len(ids) - 1; i >= 0; i-- {
		r, err := a.Ledger.GetRun(ctx, ids[i])
		if err != nil {
			return nil, fmt.Errorf("advancing the watermark: reading run %s: %w", ids[i], err)
		}
		if exists && wm.Run == "" && !r.Created.IsZero() && wm.At.After(r.Created) {
			break
		}
		if r.State != ledger.RunComplete {
			continue
		}
		if exists && !r.Before.After(wm.Time) {
			break
		}
		out = append(out, r)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// check says why complete run r may not move the watermark from start at
// now, or "" when it may. An error means the store could not be asked.
func (a Advancer) check(ctx context.Context, r ledger.RunRecord, start, now time.Time) (string, error) {
	if r.After.After(start) {
		return "its window starts after the watermark: the hosts between would never be fetched", nil
	}
	if !r.Before.After(r.After) {
		return "its window is empty or reversed", nil
	}
	if r.Before.After(now.Add(maxSkew)) {
		return "its window ends after this planner's clock: no planner cut it", nil
	}
	// A worker's credential can write a complete run record and its
	// _SUCCESS, but no Host List page record: a run no planner walked has
	// none (review17c).
	if pages, err := a.Ledger.Pages(ctx, r.ID); err != nil {
		return "", fmt.Errorf("advancing the watermark: reading the Host List pages of %s: %w", r.ID, err)
	} else if len(pages) == 0 {
		return "no Host List page is recorded: no planner walked its window", nil
	}
	key := objstore.SuccessKey(a.Prefix, r.ID)
	if _, err := a.Store.Stat(ctx, key); errors.Is(err, objstore.ErrNotFound) {
		return "its _SUCCESS is not stored (" + key + ")", nil
	} else if err != nil {
		return "", fmt.Errorf("advancing the watermark: looking for %s: %w", key, err)
	}
	return "", nil
}

// AdvanceWatermark is this planner's Advancer run once, outside a pass:
// what `qfetch local` runs once its run completed.
func (p *Planner) AdvanceWatermark(ctx context.Context) (ledger.Watermark, error) {
	return p.advancer().Advance(ctx)
}

func (p *Planner) advancer() Advancer {
	return Advancer{Ledger: p.l, Store: p.store, Prefix: p.cfg.Prefix, FirstAfter: p.cfg.FirstAfter,
		By: p.cfg.Owner, Now: p.cfg.Now, Log: p.log}
}
