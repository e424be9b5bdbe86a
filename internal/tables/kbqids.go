package tables

import (
	"context"

	"github.com/qfetch/qfetch/internal/hostids"
)

// UsedQIDs returns the QIDs that the detections of the given complete runs
// use, read from their table manifests (each lists its run's distinct
// QIDs), and the runs whose tables are not complete yet (their QIDs are
// unknown; the KnowledgeBase planner looks at them again next time).
// (Contract stub: H-tables implements it.)
func UsedQIDs(ctx context.Context, store Store, prefix string, runs []string) (used hostids.Set, pending []string, err error) {
	panic("not implemented")
}
