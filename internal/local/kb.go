package local

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/tables"
)

// kbConfig is the planner's KnowledgeBase step for cfg: the deployed
// defaults (QFETCH_KB_*), every planner pass.
func kbConfig(cfg Config) plan.KBConfig {
	if !cfg.KB {
		return plan.KBConfig{}
	}
	return app.PlanKBConfig(config.Qualys{}, config.KB{Enabled: true, BatchSize: 1000, Details: "All",
		Overlap: time.Hour, FullEvery: 720 * time.Hour})
}

// waitKB waits for the KnowledgeBase pass the planner pass opened (or
// resumed) and for its kb table, and says what it did. A pass that fails
// or is dead-lettered is reported in the summary's note, not as the run's
// error: the detection run alone decides qfetch local's outcome (I9).
func waitKB(ctx context.Context, parts app.Parts, cfg Config, out *plan.KBOutcome, start time.Time, where func(string) string) (*KBSummary, error) {
	if out == nil {
		return nil, nil
	}
	if out.Pass == "" {
		if out.Error != "" {
			cfg.Log.Warn("the KnowledgeBase step failed", "err", out.Error)
			return &KBSummary{Note: "the KnowledgeBase step failed: " + out.Error}, nil
		}
		return nil, nil
	}
	quiet := cfg
	quiet.Progress = nil // the run's progress line has ended; the pass logs
	rec, err := watch(ctx, parts.Queue, out.Pass, quiet, start)
	s := &KBSummary{Pass: out.Pass, Full: rec.After.IsZero(), Batches: rec.BatchesPlanned, Backfill: out.Backfill}
	switch {
	case errors.Is(err, ErrIncomplete):
		s.Note = fmt.Sprintf("KnowledgeBase pass %s incomplete: %v", out.Pass, err)
		return s, nil
	case err != nil && ctx.Err() == nil && rec.ID != "":
		s.Note = fmt.Sprintf("KnowledgeBase pass %s: %v", out.Pass, err)
		return s, nil
	case err != nil:
		return nil, err
	}
	results, err := parts.Queue.DoneBatches(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	for _, r := range results {
		s.QIDs += r.HostsReturned
		s.Bytes += r.Bytes()
	}
	s.Seconds = rec.Completed.Sub(start).Seconds()
	s.Manifest = where(objstore.ManifestKey(cfg.Prefix, rec.ID))
	if tableConcurrency(cfg.Tables) == 0 {
		return s, nil
	}
	done, err := waitTables(ctx, parts, rec.ID)
	if err != nil {
		return nil, err
	}
	if !done.complete {
		s.Note = done.note
		return s, nil
	}
	s.KBGlob = where(tableGlob(cfg.Prefix, tables.KB))
	s.RunsGlob = where(tableGlob(cfg.Prefix, tables.Runs))
	return s, nil
}
