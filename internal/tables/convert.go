package tables

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/qfetch/qfetch/internal/qualys/xmlscan"
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
// The file's key/value metadata MetaQIDs lists the QIDs of its rows.
type DetectionWriter struct{ tableWriter[DetectionRow] }

// NewDetectionWriter starts a detections file on w.
func NewDetectionWriter(w io.Writer, src Source, opt Options) *DetectionWriter {
	d := &DetectionWriter{}
	p := &detParser{qids: map[int32]struct{}{}}
	d.init(w, Detections, src, opt, p, &p.scanBase)
	p.sink = &d.sink
	d.beforeClose = p.writeQIDs
	return d
}

// HostWriter writes one Parquet file of the hosts table from Host List XML
// pages (details=Basic or All) added to it. A page with details=None gives
// rows that hold the host ID alone.
type HostWriter struct{ tableWriter[HostRow] }

// NewHostWriter starts a hosts file on w.
func NewHostWriter(w io.Writer, src Source, opt Options) *HostWriter {
	h := &HostWriter{}
	p := &hostParser{}
	h.init(w, Hosts, src, opt, p, &p.scanBase)
	p.sink = &h.sink
	return h
}

// tableWriter is what the tables' writers share: one parser feeding one
// sink, and the sticky error that makes a failed file unusable.
type tableWriter[T any] struct {
	sink        sink[T]
	h           xmlscan.Handler
	base        *scanBase
	beforeClose func()
	stats       Stats
	err         error
}

func (t *tableWriter[T]) init(w io.Writer, table string, src Source, opt Options, h xmlscan.Handler, base *scanBase) {
	t.sink = newSink[T](w, table, opt)
	t.h, t.base = h, base
	base.src = sourceCols{Run: src.Run, SchemaVersion: SchemaVersion}
}

// Add converts one stored XML object, key naming it in each row. An
// object that is not a whole document of the table's API fails with an
// error wrapping ErrMalformed, classed permanent.
func (t *tableWriter[T]) Add(ctx context.Context, key string, r io.Reader) error {
	if t.err != nil {
		return t.err
	}
	n, err := t.base.convert(ctx, key, r, t.h)
	t.stats.Objects++
	t.stats.XMLBytes += n
	t.stats.Hosts += t.base.units
	t.err = err
	return err
}

// Close flushes the last row group and the footer.
func (t *tableWriter[T]) Close() (Stats, error) {
	if t.err != nil {
		return t.stats, t.err
	}
	if t.beforeClose != nil {
		t.beforeClose()
	}
	t.err = t.sink.close()
	t.stats.Rows = t.sink.total
	if t.err == nil {
		t.err = errClosed
		return t.stats, nil
	}
	return t.stats, t.err
}

// scanBase is what every parser holds: the feeder it runs on, the source
// columns of its rows, what it counted in the object (HOSTs, VULNs), and
// the writer's error that stopped the scan.
type scanBase struct {
	f     feeder
	src   sourceCols
	units int64
	werr  error
}

// convert reads one object for h into the sink.
func (b *scanBase) convert(ctx context.Context, key string, r io.Reader, h xmlscan.Handler) (int64, error) {
	b.src.SourceKey = key
	b.units, b.werr = 0, nil
	err := b.f.run(ctx, key, r, h)
	if errors.Is(err, errStopped) {
		err = b.werr
	}
	return b.f.n, err
}

// committed stops the scan on the sink's error, which is the writer's,
// not the XML's.
func (b *scanBase) committed(err error) error {
	if err != nil {
		b.werr = err
		return xmlscan.ErrStop
	}
	return nil
}

// errClosed is what a writer returns once closed.
var errClosed = errors.New("tables: writer closed")

// RunRow is the one row a complete run has in the runs table.
type RunRow struct {
	Run           string
	Kind          string // KindRun or KindKB ("" is KindRun)
	RunDate       time.Time
	After, Before time.Time
	Completed     time.Time // when the run's XML was sealed
	Batches       int
	HostListPages int
	DetectionRows int64
	HostRows      int64
	KBRows        int64
}
