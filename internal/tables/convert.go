package tables

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrMalformed is wrapped by a conversion's error when the XML cannot be
// read as the Qualys document it should be. Its class is permanent.
var ErrMalformed = errors.New("tables: malformed XML")

// Options tune a writer; the zero value is the default.
type Options struct {
	// RowGroupRows is how many rows a row group holds before it is flushed
	// (memory stays bounded by it whatever the batch size).
	RowGroupRows int
}

// Stats are what a writer read and wrote.
type Stats struct {
	Objects  int   // XML objects added
	XMLBytes int64 // their bytes
	Hosts    int64 // HOST elements read
	Rows     int64 // rows written
}

// Source is the run a file's rows belong to.
type Source struct {
	Run     string
	RunDate time.Time // the run's creation time
}

// DetectionWriter writes one Parquet file of the detections table from the
// detection XML objects added to it, in order (a batch's pages).
type DetectionWriter struct{}

// NewDetectionWriter starts a detections file on w.
func NewDetectionWriter(w io.Writer, src Source, opt Options) *DetectionWriter {
	panic("tables: not implemented")
}

// Add converts one stored detection XML object, key naming it in each row.
func (d *DetectionWriter) Add(ctx context.Context, key string, r io.Reader) error {
	panic("tables: not implemented")
}

// Close flushes the last row group and the footer.
func (d *DetectionWriter) Close() (Stats, error) { panic("tables: not implemented") }

// HostWriter writes one Parquet file of the hosts table from Host List XML
// pages (details=Basic or All) added to it.
type HostWriter struct{}

// NewHostWriter starts a hosts file on w.
func NewHostWriter(w io.Writer, src Source, opt Options) *HostWriter {
	panic("tables: not implemented")
}

// Add converts one stored Host List page.
func (h *HostWriter) Add(ctx context.Context, key string, r io.Reader) error {
	panic("tables: not implemented")
}

// Close flushes the last row group and the footer.
func (h *HostWriter) Close() (Stats, error) { panic("tables: not implemented") }

// RunRow is the one row a complete run has in the runs table.
type RunRow struct {
	Run           string
	RunDate       time.Time
	After, Before time.Time
	Completed     time.Time // when the run's XML was sealed
	Batches       int
	HostListPages int
	DetectionRows int64
	HostRows      int64
}

// WriteRun writes the runs table's file for one run.
func WriteRun(w io.Writer, r RunRow) error { panic("tables: not implemented") }
