package app

import (
	"context"

	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/runstat"
	"github.com/qfetch/qfetch/internal/tables"
)

// TableBuilder builds the analyst tables' converter on p: the fleet's
// conversions, completion, and the finisher's hook.
func (p Parts) TableBuilder() *tables.Builder {
	var pub tables.Publisher
	if p.Queue.Tables != nil {
		pub = p.Queue.Tables
	}
	return tables.NewBuilder(tables.Config{Prefix: p.Prefix}, p.Store, p.Queue.Ledger, pub, p.Log)
}

// TableLoop builds a worker's table loop on p: concurrency conversions at
// once (0: none), counted in p.TableMetrics.
func (p Parts) TableLoop(concurrency int) *fetch.TableLoop {
	cfg := fetch.TableConfig{Concurrency: concurrency}
	var jobs fetch.TableJobs
	if p.Queue.Tables != nil {
		jobs = p.Queue.Tables
		cfg.Progress = p.Queue.Tables.Config().AckWait / 4
	} else {
		cfg.Concurrency = 0
	}
	return fetch.NewTableLoop(cfg, jobs, p.TableBuilder(), p.TableMetrics, p.Log)
}

// tablePublisher is what a worker queues its batches' conversions with;
// nil (no interface holding a nil pointer) where there is no stream.
func (p Parts) tablePublisher() fetch.TablePublisher {
	if p.Queue.Tables == nil {
		return nil
	}
	return p.Queue.Tables
}

// tableSweeper is the planner's sweep of lost table conversions; nil
// without the tables stream.
func (p Parts) tableSweeper() plan.Tables {
	if p.Queue.Tables == nil {
		return nil
	}
	return tables.Sweeper{Builder: p.TableBuilder(), Queue: p.Queue.Tables}
}

// tablesComplete is the reporter's check of a complete run's tables.
func (p Parts) tablesComplete() runstat.TablesComplete {
	b := p.TableBuilder()
	return func(ctx context.Context, run string) (bool, error) {
		st, err := b.Status(ctx, run)
		return st.Complete, err
	}
}
