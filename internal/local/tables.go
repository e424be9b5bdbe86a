package local

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/tables"
)

func tableConcurrency(n int) int {
	switch {
	case n < 0:
		return 0
	case n == 0:
		return 2
	}
	return n
}

// tablesDone is how a run's tables ended.
type tablesDone struct {
	complete bool
	note     string // why they are not complete
}

// waitTables waits until run's analyst tables are complete, or until none
// of its conversions is queued any more while they are not (a conversion
// given up: the run itself is complete all the same, I9).
func waitTables(ctx context.Context, parts app.Parts, run string) (tablesDone, error) {
	b := parts.TableBuilder()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	idle := 0
	for {
		st, err := b.Status(ctx, run)
		if err != nil {
			return tablesDone{}, err
		}
		if st.Complete {
			return tablesDone{complete: true}, nil
		}
		pending, err := parts.Queue.Tables.TablesPending(ctx, run)
		if err != nil {
			return tablesDone{}, err
		}
		// Twice idle in a row: the last job's ack may come just before its
		// completion is written.
		if idle++; pending > 0 {
			idle = 0
		}
		if idle > 5 {
			note := fmt.Sprintf("the run's tables are incomplete (%d of %d parts); see the log, then: qfetch tables rebuild --run %s", st.Recorded, st.Expected, run)
			parts.Log.Warn("the run's analyst tables are incomplete", "run", run, "parts", st.Recorded, "expected", st.Expected)
			return tablesDone{note: note}, nil
		}
		select {
		case <-ctx.Done():
			return tablesDone{}, context.Cause(ctx)
		case <-t.C:
		}
	}
}

func tablesManifestKey(prefix, run string) string { return tables.ManifestKey(prefix, run) }

// tablesGlob is the detections table's files, every run, for read_parquet.
func tablesGlob(prefix string) string { return tableGlob(prefix, tables.Detections) }

// tableGlob is a table's files, every run, for read_parquet.
func tableGlob(prefix, table string) string {
	dir := path.Dir(path.Dir(path.Dir(tables.PartKey(prefix, table, "r", time.Time{}, "x"))))
	return dir + "/**/*.parquet"
}
