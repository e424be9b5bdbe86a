package tables

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/runid"
)

// Store is the bucket a conversion reads the XML from and writes its part
// to. Put streams r (its error aborts the object); with IfAbsent it fails
// with an error wrapping objstore.ErrExists when the key holds an object.
type Store interface {
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	Put(ctx context.Context, key string, r io.Reader, opts objstore.PutOptions) (objstore.Object, error)
	Stat(ctx context.Context, key string) (objstore.Object, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix string) iter.Seq2[objstore.Object, error]
}

// Manifest is a run's table manifest, <prefix>/tables/manifests/<run>.json:
// every part of the run's tables. Its content is a pure function of the
// sealed run (its manifest.json and the converter's output), so the fleet
// and a rebuild write the same bytes.
type Manifest struct {
	Run           string    `json:"run"`
	Kind          string    `json:"kind"` // KindRun or KindKB
	SchemaVersion int       `json:"schema_version"`
	RunDate       string    `json:"run_date"`
	After         time.Time `json:"after"`
	Before        time.Time `json:"before"`
	Completed     time.Time `json:"completed"` // the XML's seal
	Parts         []Part    `json:"parts"`
	DetectionRows int64     `json:"detection_rows"`
	HostRows      int64     `json:"host_rows"`
	KBRows        int64     `json:"kb_rows,omitempty"`
	RunsKey       string    `json:"runs_key"`
	// QIDs are, for a detection run, the distinct QIDs of its detections
	// (hostids form: "6,45017-45019"), the union of its parts' MetaQIDs.
	// Absent for a KB pass, and for a run whose parts were written before
	// parts listed their QIDs (unknown then).
	QIDs *string `json:"qids,omitempty"`
}

// Kinds of run a table manifest and the runs table name.
const (
	KindRun = "run" // a detection run
	KindKB  = "kb"  // a KnowledgeBase pass
)

// kindOf is the kind of run the ID names.
func kindOf(run string) string {
	if runid.IsKB(run) {
		return KindKB
	}
	return KindRun
}

// Part is one Parquet file of a run's detections or hosts table.
type Part struct {
	Table string `json:"table"`
	Item  string `json:"item"` // batch key or page number
	Key   string `json:"key"`
	Rows  int64  `json:"rows"`
	Bytes int64  `json:"bytes"`
}

// item is one part to build: its table, its item, its XML objects in order.
type item struct {
	table, item string
	objects     []string
}

// partName is the XML stem a part is named for: batch-000017.2 for batch
// 17.2, page-000003 for page 3.
func partName(table, it string) (string, error) {
	switch table {
	case Detections, KB:
		num, part, _ := strings.Cut(it, ".")
		n, err := strconv.Atoi(num)
		if err != nil || !msg.ValidBatchKey(it) {
			return "", failure.Permanent(fmt.Errorf("tables: %q is not a batch key", it))
		}
		return strings.TrimSuffix(path.Base(objstore.DetectionPartKey("", "r", n, part, 1)), ".xml"), nil
	case Hosts:
		n, err := strconv.Atoi(it)
		if err != nil || !msg.ValidPageItem(it) {
			return "", failure.Permanent(fmt.Errorf("tables: %q is not a page number", it))
		}
		return strings.TrimSuffix(path.Base(objstore.HostListPageKey("", "r", n)), ".xml"), nil
	}
	return "", failure.Permanent(fmt.Errorf("tables: no table %q", table))
}

// partWriter is what a converter is to a build: the tables' writers.
type partWriter interface {
	Add(ctx context.Context, key string, r io.Reader) error
	Close() (Stats, error)
}

func converter(table string, w io.Writer, src Source, opt Options) partWriter {
	switch table {
	case Hosts:
		return NewHostWriter(w, src, opt)
	case KB:
		return NewKBWriter(w, src, opt)
	}
	return NewDetectionWriter(w, src, opt)
}

// parts writes Parquet parts from the stored XML.
type parts struct {
	store  Store
	prefix string
	opt    Options
	// once makes each part a create the store enforces (the fleet's
	// conversions): a late or frozen copy, perhaps of another converter
	// version, cannot replace a part a table manifest lists. A rebuild
	// replaces parts on purpose and leaves it unset.
	once bool
}

// write converts it's objects, in order, into its part, streamed into the
// store: the Parquet never sits whole in memory, and a failed conversion
// aborts the object (the store's Put sees the pipe's error), so no partial
// part appears.
func (p parts) write(ctx context.Context, src Source, it item) (Part, error) {
	name, err := partName(it.table, it.item)
	if err != nil {
		return Part{}, err
	}
	key := PartKey(p.prefix, it.table, src.Run, src.RunDate, name)
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		st  Stats
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := p.convert(ctx, pw, src, it)
		pw.CloseWithError(err) // nil: EOF
		done <- result{st, err}
	}()
	obj, err := p.store.Put(ctx, key, pr, objstore.PutOptions{ContentType: "application/vnd.apache.parquet", IfAbsent: p.once})
	pr.CloseWithError(errors.Join(err, errors.New("tables: the store stopped reading")))
	res := <-done
	if res.err != nil {
		return Part{}, res.err
	}
	if p.once && errors.Is(err, objstore.ErrExists) {
		// Converted before (a redelivery, another worker): the part there
		// stands, and its record names its bytes.
		obj, err = p.store.Stat(ctx, key)
	}
	if err != nil {
		return Part{}, fmt.Errorf("tables: writing %s: %w", key, err)
	}
	return Part{Table: it.table, Item: it.item, Key: key, Rows: res.st.Rows, Bytes: obj.Bytes}, nil
}

func (p parts) convert(ctx context.Context, w io.Writer, src Source, it item) (Stats, error) {
	cw := converter(it.table, w, src, p.opt)
	for _, key := range it.objects {
		r, err := p.store.Get(ctx, key)
		if err != nil {
			return Stats{}, fmt.Errorf("tables: reading %s: %w", key, err)
		}
		err = cw.Add(ctx, key, r)
		r.Close()
		if err != nil {
			return Stats{}, fmt.Errorf("tables: converting %s: %w", key, classify(err))
		}
	}
	st, err := cw.Close()
	if err != nil {
		return Stats{}, fmt.Errorf("tables: closing the %s part of %s: %w", it.table, it.item, classify(err))
	}
	return st, nil
}

// classify makes malformed XML permanent: no redelivery reads it better.
func classify(err error) error {
	if errors.Is(err, ErrMalformed) && failure.ClassOf(err) != failure.ClassPermanent {
		return failure.Permanent(err)
	}
	return err
}

// sealed reads a sealed run's manifest.json: _SUCCESS must be there.
func sealed(ctx context.Context, store Store, prefix, run string) (finish.Manifest, error) {
	if _, err := store.Stat(ctx, objstore.SuccessKey(prefix, run)); err != nil {
		if errors.Is(err, objstore.ErrNotFound) {
			return finish.Manifest{}, failure.Permanent(fmt.Errorf("tables: run %s is not sealed (no _SUCCESS): its tables are built once it is", run))
		}
		return finish.Manifest{}, fmt.Errorf("tables: run %s: %w", run, err)
	}
	r, err := store.Get(ctx, objstore.ManifestKey(prefix, run))
	if err != nil {
		return finish.Manifest{}, fmt.Errorf("tables: reading the manifest of run %s: %w", run, err)
	}
	defer r.Close()
	var m finish.Manifest
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return finish.Manifest{}, failure.Permanent(fmt.Errorf("tables: the manifest of run %s cannot be read: %w", run, err))
	}
	if m.Run != run {
		return finish.Manifest{}, failure.Permanent(fmt.Errorf("tables: the manifest under run %s names run %q", run, m.Run))
	}
	return m, nil
}

// items are the parts a sealed run's tables hold, detections by batch key
// then hosts by page, each with its objects in order; a KnowledgeBase
// pass's are its kb parts by batch key (its QID listing pages make none).
func items(m finish.Manifest) ([]item, error) {
	var out []item
	batchTable := Detections
	if kindOf(m.Run) == KindKB {
		batchTable = KB
	}
	for _, b := range m.Batches {
		it := item{table: batchTable, item: b.Batch}
		for _, o := range b.Objects {
			it.objects = append(it.objects, o.Key)
		}
		out = append(out, it)
	}
	if batchTable == KB {
		sortItems(out, func(i item) (string, string) { return i.table, i.item })
		return out, nil
	}
	for _, o := range m.HostList {
		n, ok := ledger.PageNumber(o.Key)
		if !ok {
			return nil, failure.Permanent(fmt.Errorf("tables: run %s lists %s, which is no Host List page", m.Run, o.Key))
		}
		out = append(out, item{table: Hosts, item: strconv.Itoa(n), objects: []string{o.Key}})
	}
	sortItems(out, func(i item) (string, string) { return i.table, i.item })
	return out, nil
}

func sortItems[T any](s []T, id func(T) (string, string)) {
	slices.SortFunc(s, func(a, b T) int {
		ta, ia := id(a)
		tb, ib := id(b)
		if c := cmp.Compare(tableOrder(ta), tableOrder(tb)); c != 0 {
			return c
		}
		return ledger.CompareBatchKeys(ia, ib) // page numbers order the same way
	})
}

func tableOrder(t string) int {
	switch t {
	case Detections:
		return 0
	case Hosts:
		return 1
	}
	return 2
}

// manifestFor is the table manifest of sealed run m with its parts and,
// for a detection run, the QIDs they hold (nil: unknown).
func manifestFor(prefix string, m finish.Manifest, ps []Part, qids *string) Manifest {
	out := Manifest{Run: m.Run, Kind: kindOf(m.Run), SchemaVersion: SchemaVersion, RunDate: m.Created.UTC().Format(time.DateOnly),
		After: m.After.UTC(), Before: m.Before.UTC(), Completed: m.Completed.UTC(), Parts: slices.Clone(ps),
		RunsKey: PartKey(prefix, Runs, m.Run, m.Created, Runs)}
	if out.Kind == KindRun {
		out.QIDs = qids
	}
	sortItems(out.Parts, func(p Part) (string, string) { return p.Table, p.Item })
	for _, p := range out.Parts {
		switch p.Table {
		case Detections:
			out.DetectionRows += p.Rows
		case Hosts:
			out.HostRows += p.Rows
		case KB:
			out.KBRows += p.Rows
		}
	}
	return out
}

// runRow is the run's row in the runs table.
func runRow(m finish.Manifest, tm Manifest) RunRow {
	return RunRow{Run: m.Run, Kind: kindOf(m.Run), RunDate: m.Created.UTC(), After: m.After.UTC(), Before: m.Before.UTC(),
		Completed: m.Completed.UTC(), Batches: len(m.Batches), HostListPages: len(m.HostList),
		DetectionRows: tm.DetectionRows, HostRows: tm.HostRows, KBRows: tm.KBRows}
}

func encodeManifest(tm Manifest) ([]byte, error) {
	b, err := json.MarshalIndent(tm, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// writeRunRow writes the runs table's file of the run.
func writeRunRow(ctx context.Context, store Store, key string, row RunRow) error {
	var buf bytes.Buffer
	if err := WriteRun(&buf, row); err != nil {
		return fmt.Errorf("tables: the runs row of %s: %w", row.Run, err)
	}
	if _, err := store.Put(ctx, key, &buf, objstore.PutOptions{ContentType: "application/vnd.apache.parquet"}); err != nil {
		return fmt.Errorf("tables: writing %s: %w", key, err)
	}
	return nil
}

// removeStrays deletes the objects in the run's partitions of its tables
// (detections and hosts, or kb) that keep does not name: parts of a batch
// the sealed run does not use (its halves stand for it), or of a rebuild's
// earlier layout.
func removeStrays(ctx context.Context, store Store, prefix string, m finish.Manifest, keep map[string]bool, log *slog.Logger) error {
	tables := []string{Detections, Hosts}
	if kindOf(m.Run) == KindKB {
		tables = []string{KB}
	}
	for _, table := range tables {
		dir := path.Dir(PartKey(prefix, table, m.Run, m.Created, "x")) + "/"
		for o, err := range store.List(ctx, dir) {
			if err != nil {
				return fmt.Errorf("tables: listing %s: %w", dir, err)
			}
			if keep[o.Key] {
				continue
			}
			if err := store.Delete(ctx, o.Key); err != nil {
				return fmt.Errorf("tables: removing %s: %w", o.Key, err)
			}
			log.Info("removed a table part the sealed run does not use", "run", m.Run, "key", o.Key)
		}
	}
	return nil
}
