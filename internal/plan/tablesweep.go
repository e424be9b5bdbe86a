package plan

import (
	"context"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
)

// Tables queues again the lost conversions of a sealed run's analyst
// tables (tables.Sweeper).
type Tables interface {
	// Requeue queues the conversions run's tables lack, unless they are
	// complete or some are still queued, each under a Msg-Id named by
	// attempt; it returns how many it queued.
	Requeue(ctx context.Context, run, attempt string) (int, error)
}

// Defaults of the tables sweep.
const (
	// DefaultTablesSweepRuns is how many of the newest complete runs a
	// pass looks at: older runs are `qfetch tables rebuild`'s.
	DefaultTablesSweepRuns = 10
	// DefaultTablesGrace is how long after its completion a run's
	// conversions may take before the sweep queues the missing ones again
	// (the Host List pages' are queued only at the seal).
	DefaultTablesGrace = 15 * time.Minute
)

// sweepTables queues again the missing conversions of the newest complete
// runs whose tables are not complete TablesGrace after the run completed
// and of which no conversion is queued: their jobs were lost. Derived data
// never holds up the record (design.md I9): a failure is logged and the
// pass goes on.
func (p *Planner) sweepTables(ctx context.Context) {
	if p.cfg.Tables == nil {
		return
	}
	ids, err := p.l.RunIDs(ctx)
	if err != nil {
		p.log.Warn("tables sweep: listing runs", "err", err)
		return
	}
	now := p.cfg.Now()
	// One Msg-Id suffix per pass: a pass's publishes are deduplicated, a
	// later pass's are not shadowed by them.
	attempt := "sweep-" + now.UTC().Format("20060102T150405Z")
	complete := 0
	for i := len(ids) - 1; i >= 0 && complete < p.cfg.TablesSweepRuns && ctx.Err() == nil; i-- {
		r, err := p.l.GetRun(ctx, ids[i])
		if err != nil {
			p.log.Warn("tables sweep: reading a run", "run", ids[i], "err", err)
			continue
		}
		if r.State != ledger.RunComplete {
			continue
		}
		complete++
		if now.Sub(r.Completed) < p.cfg.TablesGrace {
			continue
		}
		n, err := p.cfg.Tables.Requeue(ctx, r.ID, attempt)
		if err != nil {
			p.log.Warn("tables sweep: queueing a run's table conversions failed; `qfetch tables rebuild --run` builds them",
				"run", r.ID, "err", err)
			continue
		}
		if n > 0 {
			p.log.Warn("tables sweep: queued lost table conversions again", "run", r.ID, "conversions", n,
				"completed", r.Completed)
		}
	}
}
