package tables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
)

// Ledger is what conversions read of the run ledger and record in it. The
// objects a job converts come from here, never from the job's message.
type Ledger interface {
	GetRun(ctx context.Context, id string) (ledger.RunRecord, error)
	DoneBatch(ctx context.Context, run, batch string) (ledger.BatchResult, bool, error)
	Page(ctx context.Context, run string, n int) (objstore.Object, bool, error)
	Splits(ctx context.Context, run string) ([]ledger.Split, error)
	DoneBatches(ctx context.Context, run string) ([]ledger.BatchResult, error)
	RecordTablePart(ctx context.Context, p ledger.TablePart) error
	CountTableParts(ctx context.Context, run string) (int, error)
	TableParts(ctx context.Context, run string) ([]ledger.TablePart, error)
}

// Publisher queues conversions (msg.TableQueue).
type Publisher interface {
	PublishTableJob(ctx context.Context, run, kind, item string) error
}

// Job is one conversion: the part of table Kind built from Item of Run.
type Job struct {
	Run, Kind, Item string
}

func (j Job) String() string { return j.Run + "/" + j.Kind + "/" + j.Item }

// Config is a builder's settings.
type Config struct {
	Prefix  string
	Options Options
}

// Builder runs the fleet's conversions: one job at a time per call, each
// recording its part and trying to complete the run's tables.
type Builder struct {
	parts  parts
	ledger Ledger
	pub    Publisher
	log    *slog.Logger
}

// NewBuilder builds a builder; pub may be nil (nothing is queued then).
func NewBuilder(cfg Config, store Store, l Ledger, pub Publisher, log *slog.Logger) *Builder {
	return &Builder{parts: parts{store: store, prefix: cfg.Prefix, opt: cfg.Options, once: true}, ledger: l, pub: pub, log: log}
}

// Result is what a job did.
type Result struct {
	// Skipped says why nothing was converted ("" when a part was written):
	// the job names nothing the run's tables hold.
	Skipped string
	Part    Part
	// Complete is set when the run's tables are complete after the job.
	Complete bool
}

// Convert runs job j: it checks what j names against the ledger, converts
// those objects into the part, records the part and tries to complete the
// run's tables. An error classified permanent will never succeed (a forged
// or garbled job, malformed XML); any other is worth another delivery.
func (b *Builder) Convert(ctx context.Context, j Job) (Result, error) {
	if err := (msg.TableJob{Run: j.Run, Kind: j.Kind, Item: j.Item}).Validate(); err != nil {
		return Result{}, err
	}
	rec, err := b.ledger.GetRun(ctx, j.Run)
	if errors.Is(err, ledger.ErrRunNotFound) {
		return Result{}, failure.Permanent(fmt.Errorf("tables: job %s: no such run", j))
	}
	if err != nil {
		return Result{}, err
	}
	if rec.State == ledger.RunFailed {
		return Result{Skipped: "the run failed"}, nil
	}
	src := Source{Run: rec.ID, RunDate: rec.Created}
	var it item
	switch j.Kind {
	case msg.TableDetections, msg.TableKB:
		res, ok, err := b.ledger.DoneBatch(ctx, j.Run, j.Item)
		if err != nil {
			return Result{}, err
		}
		if !ok {
			return Result{}, failure.Permanent(fmt.Errorf("tables: job %s: the batch is not recorded done", j))
		}
		if rec.State == ledger.RunComplete {
			used, err := b.used(ctx, rec, j.Item)
			if err != nil {
				return Result{}, err
			}
			if !used {
				return Result{Skipped: "the sealed run does not use this batch (its halves stand for it)"}, nil
			}
		}
		it = item{table: batchTable(j.Kind), item: j.Item}
		for _, o := range res.Objects {
			it.objects = append(it.objects, o.Key)
		}
	case msg.TableHosts:
		// Pages are final only once the run is sealed: before, a resumed
		// planner may still rewrite them. The finisher queues them between
		// _SUCCESS and marking the run complete, so that a finisher dying
		// there leaves them to the one that takes its claim over.
		if rec.State != ledger.RunComplete {
			if _, err := b.parts.store.Stat(ctx, objstore.SuccessKey(b.parts.prefix, j.Run)); errors.Is(err, objstore.ErrNotFound) {
				return Result{}, failure.Permanent(fmt.Errorf("tables: job %s: the run is %s, Host List pages are converted once it is sealed", j, rec.State))
			} else if err != nil {
				return Result{}, fmt.Errorf("tables: job %s: %w", j, err)
			}
		}
		n, _ := strconv.Atoi(j.Item)
		if rec.HostListPages > 0 && n > rec.HostListPages {
			return Result{}, failure.Permanent(fmt.Errorf("tables: job %s: the run's Host List walk ended at page %d", j, rec.HostListPages))
		}
		o, ok, err := b.ledger.Page(ctx, j.Run, n)
		if err != nil {
			return Result{}, err
		}
		if !ok {
			return Result{}, failure.Permanent(fmt.Errorf("tables: job %s: the page is not recorded", j))
		}
		if o.Key != objstore.HostListPageKey(b.parts.prefix, j.Run, n) {
			return Result{}, failure.Permanent(fmt.Errorf("tables: job %s: the page record names %s", j, o.Key))
		}
		it = item{table: Hosts, item: j.Item, objects: []string{o.Key}}
	}
	p, err := b.parts.write(ctx, src, it)
	if err != nil {
		return Result{}, err
	}
	if err := b.ledger.RecordTablePart(ctx, ledger.TablePart{Run: j.Run, Kind: j.Kind, Item: j.Item, Key: p.Key, Rows: p.Rows, Bytes: p.Bytes}); err != nil {
		return Result{}, err
	}
	if j.Kind != msg.TableHosts && rec.State != ledger.RunComplete {
		// Sealed while this part was written: if its halves stand for the
		// batch, a completion that listed the parts before this one landed
		// kept it, so it is removed here (one of the two always sees it).
		if cur, err := b.ledger.GetRun(ctx, j.Run); err == nil && cur.State == ledger.RunComplete {
			if used, err := b.used(ctx, cur, j.Item); err == nil && !used {
				if err := b.parts.store.Delete(ctx, p.Key); err != nil {
					return Result{}, err
				}
				return Result{Skipped: "the sealed run does not use this batch (its halves stand for it)"}, nil
			}
		}
	}
	complete, err := b.TryComplete(ctx, j.Run)
	if err != nil {
		// This may be the run's last job: acked, it would leave nobody to
		// complete the tables. Delivered again, it completes them.
		return Result{}, fmt.Errorf("tables: job %s: completing the run's tables: %w", j, err)
	}
	return Result{Part: p, Complete: complete}, nil
}

// used reports whether batch stands in the sealed run's result: a batch
// recorded done stands unless a split put halves in its place.
func (b *Builder) used(ctx context.Context, rec ledger.RunRecord, batch string) (bool, error) {
	splits, err := b.ledger.Splits(ctx, rec.ID)
	if err != nil {
		return false, err
	}
	if len(splits) == 0 {
		return true, nil
	}
	done, err := b.ledger.DoneBatches(ctx, rec.ID)
	if err != nil {
		return false, err
	}
	used, _ := ledger.Resolve(rec.BatchesPlanned, done, splits)
	for _, r := range used {
		if r.Batch == batch {
			return true, nil
		}
	}
	return false, nil
}

// TryComplete completes run's tables if the run is sealed (its _SUCCESS is
// there) and every part
// it needs is recorded: it removes parts of batches the run does not use,
// writes the table manifest (if none is there), then the run's row in the
// runs table. It is cheap while parts are missing (one count).
func (b *Builder) TryComplete(ctx context.Context, run string) (bool, error) {
	rec, err := b.ledger.GetRun(ctx, run)
	if err != nil || rec.State == ledger.RunFailed {
		return false, err
	}
	store, prefix := b.parts.store, b.parts.prefix
	if rec.State != ledger.RunComplete {
		// Sealed but not yet marked complete (the finisher queues the
		// tables in between), or its finisher died there: _SUCCESS decides.
		if _, err := store.Stat(ctx, objstore.SuccessKey(prefix, run)); errors.Is(err, objstore.ErrNotFound) {
			return false, nil
		} else if err != nil {
			return false, err
		}
	}
	if _, err := store.Stat(ctx, ManifestKey(prefix, run)); err == nil {
		// Complete; the runs row may have been lost to a crash after it.
		m, err := sealed(ctx, store, prefix, run)
		if err != nil {
			return true, err
		}
		return true, b.ensureRunRow(ctx, m)
	} else if !errors.Is(err, objstore.ErrNotFound) {
		return false, err
	}
	if rec.Totals != nil {
		n, err := b.ledger.CountTableParts(ctx, run)
		if err != nil {
			return false, err
		}
		if n < expectedParts(run, *rec.Totals) {
			return false, nil
		}
	}
	m, err := sealed(ctx, store, prefix, run)
	if err != nil {
		return false, err
	}
	want, err := items(m)
	if err != nil {
		return false, err
	}
	recs, err := b.ledger.TableParts(ctx, run)
	if err != nil {
		return false, err
	}
	have := map[string]ledger.TablePart{}
	for _, p := range recs {
		have[p.Kind+"/"+p.Item] = p
	}
	keep := map[string]bool{}
	var ps []Part
	for _, it := range want {
		p, ok := have[it.table+"/"+it.item]
		if !ok {
			return false, nil
		}
		name, err := partName(it.table, it.item)
		if err != nil {
			return false, err
		}
		if p.Key != PartKey(prefix, it.table, run, m.Created, name) {
			return false, failure.Permanent(fmt.Errorf("tables: run %s: part record %s/%s names %s", run, p.Kind, p.Item, p.Key))
		}
		keep[p.Key] = true
		ps = append(ps, Part{Table: it.table, Item: it.item, Key: p.Key, Rows: p.Rows, Bytes: p.Bytes})
	}
	if err := removeStrays(ctx, store, prefix, m, keep, b.log); err != nil {
		return false, err
	}
	var qids *string
	if kindOf(run) == KindRun {
		if qids, err = runQIDs(ctx, store, ps); err != nil {
			return false, err
		}
	}
	tm := manifestFor(prefix, m, ps, qids)
	data, err := encodeManifest(tm)
	if err != nil {
		return false, err
	}
	// The manifest and the runs row go together: a stop between them would
	// leave a complete run that the documented queries (which read the
	// runs table) never show, and no later job to write its row.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalWrites)
	defer cancel()
	_, err = store.Put(ctx, ManifestKey(prefix, run), bytes.NewReader(data), objstore.PutOptions{ContentType: "application/json", IfAbsent: true})
	if err != nil && !errors.Is(err, objstore.ErrExists) {
		return false, fmt.Errorf("tables: writing the table manifest of %s: %w", run, err)
	}
	if err := writeRunRow(ctx, store, tm.RunsKey, runRow(m, tm)); err != nil {
		return true, err
	}
	b.log.Info("run's tables complete", "run", run, "parts", len(ps), "detection_rows", tm.DetectionRows, "host_rows", tm.HostRows, "kb_rows", tm.KBRows)
	return true, nil
}

// finalWrites bounds the table manifest and runs row writes, which a
// caller's stop does not cut short.
const finalWrites = time.Minute

// ensureRunRow writes the runs row of a run whose table manifest exists,
// unless it is there.
func (b *Builder) ensureRunRow(ctx context.Context, m finish.Manifest) error {
	store, prefix := b.parts.store, b.parts.prefix
	key := PartKey(prefix, Runs, m.Run, m.Created, Runs)
	if _, err := store.Stat(ctx, key); err == nil || !errors.Is(err, objstore.ErrNotFound) {
		return err
	}
	tm, err := readManifest(ctx, store, prefix, m.Run)
	if err != nil {
		return err
	}
	return writeRunRow(ctx, store, key, runRow(m, tm))
}

// Sealed queues the conversions a just-sealed run still needs (the Host
// List pages', which are final only now, and any batch whose part is not
// recorded: a publish a worker lost), then tries to complete its tables
// (every batch part may be written already). The finisher calls it after
// the seal; its failure changes nothing of the run (I9). For a
// KnowledgeBase pass it queues kb jobs for the batches and none for pages
// (its QID listing makes no table).
func (b *Builder) Sealed(ctx context.Context, run string, batches []string, pages []int) error {
	batchKind := msg.TableDetections
	if kindOf(run) == KindKB {
		batchKind, pages = msg.TableKB, nil
	}
	if b.pub != nil {
		recs, err := b.ledger.TableParts(ctx, run)
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, p := range recs {
			have[p.Kind+"/"+p.Item] = true
		}
		var errs []error
		for _, k := range batches {
			if !have[batchKind+"/"+k] {
				errs = append(errs, b.pub.PublishTableJob(ctx, run, batchKind, k))
			}
		}
		for _, n := range pages {
			if it := msg.PageItem(n); !have[msg.TableHosts+"/"+it] {
				errs = append(errs, b.pub.PublishTableJob(ctx, run, msg.TableHosts, it))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("tables: queueing the conversions of %s: %w", run, err)
		}
	}
	_, err := b.TryComplete(ctx, run)
	return err
}

// Status is how far a run's tables are.
type Status struct {
	Run      string
	State    ledger.RunState
	Recorded int  // part records
	Expected int  // parts a complete run's tables hold (0 until sealed)
	Complete bool // the table manifest and the runs row are written
}

// Status reports run's tables.
func (b *Builder) Status(ctx context.Context, run string) (Status, error) {
	rec, err := b.ledger.GetRun(ctx, run)
	if err != nil {
		return Status{}, err
	}
	st := Status{Run: run, State: rec.State}
	if st.Recorded, err = b.ledger.CountTableParts(ctx, run); err != nil {
		return st, err
	}
	if rec.Totals != nil {
		st.Expected = expectedParts(run, *rec.Totals)
	}
	_, err = b.parts.store.Stat(ctx, PartKey(b.parts.prefix, Runs, run, rec.Created, Runs))
	switch {
	case err == nil:
		_, err = b.parts.store.Stat(ctx, ManifestKey(b.parts.prefix, run))
		st.Complete = err == nil
		if err != nil && !errors.Is(err, objstore.ErrNotFound) {
			return st, err
		}
	case !errors.Is(err, objstore.ErrNotFound):
		return st, err
	}
	return st, nil
}

// batchTable is the table a batch job of kind writes a part of.
func batchTable(kind string) string {
	if kind == msg.TableKB {
		return KB
	}
	return Detections
}

// expectedParts is how many parts a complete run's tables hold: one per
// batch, and for a detection run one per Host List page.
func expectedParts(run string, t ledger.Totals) int {
	if kindOf(run) == KindKB {
		return t.Batches
	}
	return t.Batches + t.HostListPages
}
