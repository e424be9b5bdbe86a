package tables

import (
	"fmt"
	"io"
	"math"
)

// WriteRun writes the runs table's file for one run.
func WriteRun(w io.Writer, r RunRow) error {
	if r.Batches < 0 || r.Batches > math.MaxInt32 || r.HostListPages < 0 || r.HostListPages > math.MaxInt32 {
		return fmt.Errorf("tables: run %s: batch or page count out of range", r.Run)
	}
	pw := newWriter[runCols](w, Runs)
	kind := r.Kind
	if kind == "" {
		kind = KindRun
	}
	row := runCols{
		Run:           r.Run,
		Kind:          kind,
		KBRows:        r.KBRows,
		SchemaVersion: SchemaVersion,
		Created:       r.RunDate.UTC(),
		WindowAfter:   r.After.UTC(),
		WindowBefore:  r.Before.UTC(),
		Completed:     r.Completed.UTC(),
		Batches:       int32(r.Batches),
		HostListPages: int32(r.HostListPages),
		DetectionRows: r.DetectionRows,
		HostRows:      r.HostRows,
	}
	if _, err := pw.Write([]runCols{row}); err != nil {
		return fmt.Errorf("tables: writing the runs row of %s: %w", r.Run, err)
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("tables: writing the runs row of %s: %w", r.Run, err)
	}
	return nil
}
