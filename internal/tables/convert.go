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
//
// A failed Add leaves the file unusable: every later call returns its error.
type DetectionWriter struct {
	sink  sink[DetectionRow]
	f     feeder
	p     detParser
	stats Stats
	err   error
}

// NewDetectionWriter starts a detections file on w.
func NewDetectionWriter(w io.Writer, src Source, opt Options) *DetectionWriter {
	d := &DetectionWriter{sink: newSink[DetectionRow](w, Detections, opt)}
	d.p = detParser{f: &d.f, sink: &d.sink, src: sourceCols{Run: src.Run, SchemaVersion: SchemaVersion}}
	return d
}

// Add converts one stored detection XML object, key naming it in each row.
// An object that is not a whole detection document fails with an error
// wrapping ErrMalformed, classed permanent.
func (d *DetectionWriter) Add(ctx context.Context, key string, r io.Reader) error {
	if d.err != nil {
		return d.err
	}
	n, err := d.p.convert(ctx, key, r)
	d.stats.Objects++
	d.stats.XMLBytes += n
	d.stats.Hosts += d.p.hosts
	d.err = err
	return err
}

// Close flushes the last row group and the footer.
func (d *DetectionWriter) Close() (Stats, error) {
	if d.err != nil {
		return d.stats, d.err
	}
	d.err = d.sink.close()
	d.stats.Rows = d.sink.total
	if d.err == nil {
		d.err = errClosed
		return d.stats, nil
	}
	return d.stats, d.err
}

// HostWriter writes one Parquet file of the hosts table from Host List XML
// pages (details=Basic or All) added to it. A page with details=None gives
// rows that hold the host ID alone.
type HostWriter struct {
	sink  sink[HostRow]
	f     feeder
	p     hostParser
	stats Stats
	err   error
}

// NewHostWriter starts a hosts file on w.
func NewHostWriter(w io.Writer, src Source, opt Options) *HostWriter {
	h := &HostWriter{sink: newSink[HostRow](w, Hosts, opt)}
	h.p = hostParser{f: &h.f, sink: &h.sink, src: sourceCols{Run: src.Run, SchemaVersion: SchemaVersion}}
	return h
}

// Add converts one stored Host List page; errors as DetectionWriter.Add's.
func (h *HostWriter) Add(ctx context.Context, key string, r io.Reader) error {
	if h.err != nil {
		return h.err
	}
	n, err := h.p.convert(ctx, key, r)
	h.stats.Objects++
	h.stats.XMLBytes += n
	h.stats.Hosts += h.p.hosts
	h.err = err
	return err
}

// Close flushes the last row group and the footer.
func (h *HostWriter) Close() (Stats, error) {
	if h.err != nil {
		return h.stats, h.err
	}
	h.err = h.sink.close()
	h.stats.Rows = h.sink.total
	if h.err == nil {
		h.err = errClosed
		return h.stats, nil
	}
	return h.stats, h.err
}

// errClosed is what a writer returns once closed.
var errClosed = errors.New("tables: writer closed")

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
