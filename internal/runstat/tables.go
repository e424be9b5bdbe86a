package runstat

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/ledger"
)

// TablesComplete reports whether a complete run's analyst tables are
// complete: their table manifest and runs row written (tables.Builder's
// Status).
type TablesComplete func(ctx context.Context, run string) (bool, error)

// DefaultTablesGrace is how long after a run completed its tables may
// still be missing before qfetch_tables_incomplete_runs counts it: the
// planner's sweep (every planner pass; the CronJob runs every 6 h) queues
// lost conversions again, which then take minutes.
const DefaultTablesGrace = 8 * time.Hour

func newTablesIncomplete() *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "qfetch_tables_incomplete_runs",
		Help: "Complete runs among the 10 newest whose analyst tables are not complete 8 h after the run completed: their conversions were lost or keep failing. Absent where the tables are not checked.",
	}, nil)
}

// tablesIncomplete counts the complete runs of recs (the recent ones)
// whose tables are not complete the grace after the run completed. A run
// found complete is not asked again: its tables stay complete.
func (r *Reporter) tablesIncomplete(ctx context.Context, recs []ledger.RunRecord, now time.Time) (int, error) {
	n := 0
	for _, rec := range recs {
		if rec.State != ledger.RunComplete || r.tablesDone[rec.ID] || now.Sub(rec.Completed) < r.tablesGrace {
			continue
		}
		ok, err := r.tablesComplete(ctx, rec.ID)
		if err != nil {
			return 0, err
		}
		if ok {
			r.tablesDone[rec.ID] = true
			continue
		}
		n++
	}
	for run := range r.tablesDone {
		if !containsRun(recs, run) {
			delete(r.tablesDone, run) // no longer among the recent runs
		}
	}
	return n, nil
}

func containsRun(recs []ledger.RunRecord, run string) bool {
	for _, r := range recs {
		if r.ID == run {
			return true
		}
	}
	return false
}
