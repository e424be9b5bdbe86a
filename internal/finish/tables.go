package finish

import (
	"context"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
)

// Tables builds the analyst tables of sealed runs (package tables).
type Tables interface {
	// Sealed queues what run's tables still need once it is sealed (its
	// Host List pages are final only then) and completes them if nothing
	// is missing. batches are the run's batch keys, pages its Host List
	// page numbers.
	Sealed(ctx context.Context, run string, batches []string, pages []int) error
}

// tablesHookTimeout bounds the hook: it publishes one job per page (and
// per batch whose part is missing) and reads the part records.
const tablesHookTimeout = time.Minute

// sealedTables tells the tables of run m, sealed. Derived data never holds
// up the record (design.md I9): a failure is logged, the run stays sealed,
// and `qfetch tables rebuild` repairs.
func (f *Finisher) sealedTables(ctx context.Context, m Manifest) {
	if f.tables == nil {
		return
	}
	// The run is sealed already: a caller stopping now (a worker whose soft
	// stop began) must not lose its pages' conversions.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tablesHookTimeout)
	defer cancel()
	batches := make([]string, len(m.Batches))
	for i, b := range m.Batches {
		batches[i] = b.Batch
	}
	var pages []int
	for _, o := range m.HostList {
		if m.Kind == KindKB {
			// A pass's listing pages feed no table: its batches feed the
			// kb table, and tables.Builder picks it by the pass's ID.
			break
		}
		if n, ok := ledger.PageNumber(o.Key); ok {
			pages = append(pages, n)
		}
	}
	if err := f.tables.Sealed(ctx, m.Run, batches, pages); err != nil {
		f.log.Warn("queueing the run's table conversions failed; `qfetch tables rebuild --run` builds them",
			"run", m.Run, "err", err)
	}
}
