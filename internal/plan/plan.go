// Package plan runs one planner pass: open (or take over) a run, page the
// Host List into batch messages and stored pages, fenced by the run record,
// then the same for a KnowledgeBase pass over the QID listing (kb.go); and
// it alone advances the watermark and the KB watermark over completed runs
// and passes (Advancer).
//
// Memory grows with nothing but the batch being filled: IDs stream from the
// page into the batch, the raw page streams into the store, and progress is
// checkpointed in the run record so that a crashed planner resumes the same
// run with the same batch boundaries and Msg-Ids. Each pass names itself in
// the run record (PlannerID) and writes only while it is named there, so a
// pass that lost its lock to a newer one stops and lands nothing.
package plan

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/retry"
	"github.com/qfetch/qfetch/internal/runid"
)

// Config is one planner's settings.
type Config struct {
	Prefix          string        // object key prefix
	BatchSize       int           // host IDs per batch
	PageSize        int           // Host List truncation_limit; 0 = one page
	HostListDetails string        // Host List details (qualys.DetailsNone, …); "" = Basic
	Overlap         time.Duration // subtracted from the watermark to start a window
	FirstAfter      time.Time     // window start of the very first run; zero = everything
	HostListParams  url.Values    // operator filters for the Host List
	DetectionParams url.Values    // operator extras for detection requests
	Owner           string        // who plans: pod or host name, for the lock and the record
	LockTTL         time.Duration // planner lock lifetime without refresh; default 1m
	StaleAfter      time.Duration // a run still fetching after this long is reported stale; default ledger.DefaultStaleAfter
	MaxAttempts     int           // tries per Host List page for retryable failures; default 8
	MaxBackoff      time.Duration // cap on the wait between tries; default 2m
	Now             func() time.Time
	// KB is the KnowledgeBase step's settings; the zero value is off.
	KB KBConfig
	// Tables re-queues lost table conversions of complete runs
	// (tablesweep.go); nil: no sweep. TablesSweepRuns and TablesGrace
	// bound it; defaults DefaultTablesSweepRuns and DefaultTablesGrace.
	Tables          Tables
	TablesSweepRuns int
	TablesGrace     time.Duration
}

func (c Config) withDefaults() Config {
	if c.LockTTL <= 0 {
		c.LockTTL = time.Minute
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = ledger.DefaultStaleAfter
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 2 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Owner == "" {
		c.Owner = "planner"
	}
	c.KB = c.KB.withDefaults()
	if c.TablesSweepRuns <= 0 {
		c.TablesSweepRuns = DefaultTablesSweepRuns
	}
	if c.TablesGrace <= 0 {
		c.TablesGrace = DefaultTablesGrace
	}
	return c
}

// HostLister is the part of the Qualys client the planner uses.
type HostLister interface {
	HostPager(q qualys.HostListQuery, open qualys.OpenPage) *qualys.HostPager
}

// Store is where raw Host List pages land, each through an upload the run
// record lists until the page is recorded, so that a pass taking the run
// over can abort it.
type Store interface {
	// Begin starts an upload to key; nothing is visible until Complete.
	Begin(ctx context.Context, key string, opts objstore.PutOptions) (objstore.Upload, error)
	// Complete streams r into u and stores it whole, or nothing if r fails
	// (u is aborted then) or u was aborted.
	Complete(ctx context.Context, u objstore.Upload, r io.Reader) (objstore.Object, error)
	// Abort makes u unable to complete.
	Abort(ctx context.Context, u objstore.Upload) error
	// Check reports a store no write can succeed on (missing bucket, bad
	// credentials) before anything is published.
	Check(ctx context.Context) error
	Marks
}

// Queue is the part of the JetStream transport a planner uses.
type Queue interface {
	// Publisher publishes batches asynchronously; its Wait ends them.
	Publisher(opts msg.PublisherOptions) *msg.Publisher
	// Pending counts run's batches still queued or in flight.
	Pending(ctx context.Context, run string) (uint64, error)
	// Confirm returns err classified fleet-wide, wrapping
	// msg.ErrJetStreamUnavailable, when it is JetStream that cannot serve
	// (a cluster without quorum); otherwise err as it is.
	Confirm(ctx context.Context, err error) error
}

// Ledger is the part of the run ledger a planner reads and records in.
type Ledger interface {
	Acquire(ctx context.Context, name, owner string, ttl time.Duration) (*ledger.Lock, error)
	Watermarks
	CreateRun(ctx context.Context, r ledger.RunRecord) (ledger.RunRecord, error)
	// TakePlanning makes pass id the planner of a run being planned,
	// aborting its predecessor's page uploads first.
	TakePlanning(ctx context.Context, run, id, owner string,
		abort func(context.Context, objstore.Upload) error) (ledger.RunRecord, error)
	// UpdatePlanned is every write of pass id into the run record; it fails
	// with ledger.ErrNotPlanner once another pass took the run over.
	UpdatePlanned(ctx context.Context, run, id string, change func(*ledger.RunRecord) error) (ledger.RunRecord, error)
	// BeginPage lists a Host List page's upload in the run record, for
	// pass id; RecordPage records the stored page and unlists it, DropPage
	// unlists the upload of a page that failed. All fail with
	// ledger.ErrNotPlanner once another pass took the run over.
	BeginPage(ctx context.Context, run, id string, page int, u objstore.Upload) (ledger.PageSlot, error)
	RecordPage(ctx context.Context, s ledger.PageSlot, o objstore.Object) error
	DropPage(ctx context.Context, s ledger.PageSlot) error
	// DoneEmpty records a batch done with nothing to fetch (the planner's
	// rebuilt batch whose hosts all left the window).
	DoneEmpty(ctx context.Context, run, batch, by string) error
}

// Finisher completes a run whose batches are all done; the planner calls it
// once planning ends, so that a run with nothing to fetch completes at once.
type Finisher interface {
	TryFinish(ctx context.Context, run string) error
}

// Planner plans runs.
type Planner struct {
	cfg Config
	// keep refreshes the planner lock until ctx ends; tests replace it to
	// freeze a pass.
	keep   func(*ledger.Lock, context.Context) error
	q      Queue
	l      Ledger
	hosts  HostLister
	store  Store
	finish Finisher
	kb     KBDeps
	log    *slog.Logger
}

// New builds a planner publishing on q and recording in l; finish may be nil.
func New(cfg Config, q Queue, l Ledger, hosts HostLister, store Store, finish Finisher, log *slog.Logger) *Planner {
	return &Planner{cfg: cfg.withDefaults(), keep: (*ledger.Lock).Keep, q: q, l: l, hosts: hosts, store: store, finish: finish, log: log}
}

// Outcome says what a planner pass did.
type Outcome struct {
	Run     string
	Resumed bool
	// Skipped is set when the pass did nothing: another planner holds the
	// lock, or an earlier run is still being fetched. Reason says which.
	Skipped bool
	// Superseded is set when the pass stopped because another pass took
	// its run over (or may have: the lock was lost); Reason says which.
	// It published nothing after it learned so, and the run is the
	// other pass's to plan.
	Superseded bool
	Reason     string
	Batches    int
	Hosts      int
	// KB is what the KnowledgeBase step did; nil when it is off or did
	// not run (no lock, or the pass was stopped). Its failure is in it,
	// never in Run's error: the detection step alone decides that.
	KB *KBOutcome
}

// ErrRunFailed is wrapped when the pass gave up on its run and marked it
// failed; the error's class says why (fleet-wide, permanent, retries spent).
var ErrRunFailed = errors.New("run failed")

// lockName is the planner lock's key: one planner at a time per queue.
const lockName = "planner"

// Run performs one planner pass.
func (p *Planner) Run(ctx context.Context) (out Outcome, err error) {
	defer func() {
		// A pass that met a JetStream without quorum (its publishes and
		// records unanswered) fails fleet-wide: exit 3, as every pass would
		// until the servers are back; its run record and progress stay as
		// the last write left them, and the next pass resumes it.
		if err != nil && ctx.Err() == nil {
			err = p.q.Confirm(ctx, err)
		}
	}()
	if err := p.store.Check(ctx); err != nil {
		return Outcome{}, fmt.Errorf("plan: the store is not usable: %w", err)
	}
	lock, err := p.l.Acquire(ctx, lockName, p.cfg.Owner, p.cfg.LockTTL)
	var held *ledger.HeldError
	if errors.As(err, &held) {
		return Outcome{Skipped: true, Reason: fmt.Sprintf("another planner (%s) holds the lock since %s",
			held.Holder.Owner, held.Holder.Acquired.Format(time.RFC3339))}, nil
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("plan: taking the planner lock: %w", err)
	}
	// The lock is refreshed while planning; losing it means another planner
	// may be running, so planning stops. The lock alone fences nothing (a
	// frozen pass notices its loss late): the run record does, since every
	// write of this pass checks that it still names the pass.
	lockCtx, cancel := context.WithCancelCause(ctx)
	var keeper sync.WaitGroup
	// lockUnavailable is set by the keeper, read after keeper.Wait.
	var lockUnavailable error
	keeper.Go(func() {
		if err := p.keep(lock, lockCtx); err != nil {
			// The pass stops at once: the lock may be another planner's
			// now. Only then is it asked whether JetStream could not
			// serve (Confirm may take seconds): a lock nobody could
			// refresh was not taken by anyone, and the pass fails
			// fleet-wide instead of reporting itself superseded.
			cancel(fmt.Errorf("plan: planner lock lost: %w", err))
			if cerr := p.q.Confirm(ctx, err); errors.Is(cerr, msg.ErrJetStreamUnavailable) {
				lockUnavailable = fmt.Errorf("plan: refreshing the planner lock: %w", cerr)
			}
		}
	})
	defer func() {
		cancel(nil)
		keeper.Wait()
		relCtx, relCancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer relCancel()
		if err := lock.Release(relCtx); err != nil {
			p.log.Warn("releasing the planner lock", "err", err)
		}
	}()

	out, err = p.detect(ctx, lockCtx)
	if ctx.Err() == nil && lockCtx.Err() != nil {
		keeper.Wait() // the keeper stopped the pass: its verdict
		if lockUnavailable != nil {
			// Not superseded, not stopped: JetStream went away under the pass.
			out.Superseded, out.Reason = false, ""
			return out, lockUnavailable
		}
	}
	// The KnowledgeBase step comes second, under the same lock, whatever
	// the detection step did: its failure is its own (I9), and a detection
	// failure does not hold KnowledgeBase changes back. Only a pass that
	// lost its lock or was stopped leaves it to the next pass.
	if p.cfg.KB.Enabled && lockCtx.Err() == nil {
		kb := p.kbStep(ctx, lockCtx)
		out.KB = &kb
	}
	return out, err
}

// detect is the detection step of a pass holding the lock (lockCtx ends
// when it is lost): advance the watermark, open or take over a run, walk
// the Host List.
func (p *Planner) detect(ctx, lockCtx context.Context) (Outcome, error) {
	// Runs completed since the last pass move the watermark before
	// anything reads it (finishers no longer do: see Advancer).
	if _, err := p.advancer().Advance(lockCtx); err != nil && !errors.Is(err, ledger.ErrNoWatermark) {
		return Outcome{}, fmt.Errorf("plan: %w", err)
	}
	p.sweepTables(lockCtx)
	pass := newPassID(p.cfg.Owner)
	rec, resumed, skip, err := p.open(lockCtx, pass)
	if err != nil {
		if reason, ok := superseded(ctx, lockCtx, err); ok {
			return Outcome{Run: rec.ID, Superseded: true, Reason: reason}, nil
		}
		return Outcome{}, err
	}
	if skip != "" {
		return Outcome{Skipped: true, Reason: skip}, nil
	}
	out := Outcome{Run: rec.ID, Resumed: resumed}
	log := p.log.With("run", rec.ID, "pass", pass)
	if resumed {
		log.Info("resuming run", "after", rec.After, "before", rec.Before,
			"batches", rec.Progress.Batches, "hosts", rec.Progress.End.Hosts)
	} else {
		log.Info("opened run", "after", rec.After, "before", rec.Before)
	}

	rec, err = p.page(lockCtx, pass, rec, log)
	out.Batches, out.Hosts = rec.Progress.Batches, rec.HostsPlanned
	if err != nil {
		reason, sup, err := p.walkFailed(ctx, lockCtx, pass, rec.ID, err)
		if sup {
			out.Superseded, out.Reason = true, reason
			log.Warn("stopped: another planner pass took the run over", "reason", reason)
			return out, nil
		}
		return out, err
	}
	log.Info("planning complete", "batches", out.Batches, "hosts", out.Hosts)
	p.settle(ctx, rec.ID, p.advancer(), log)
	return out, nil
}

// walkFailed settles a walk of run id that ended in err: another pass took
// the run over (superseded, with its reason: the failure is not ours to
// record), the pass was stopped from outside (the run stays open for the
// next pass), or the run is marked failed.
func (p *Planner) walkFailed(ctx, lockCtx context.Context, pass, id string, err error) (reason string, sup bool, _ error) {
	if reason, ok := superseded(ctx, lockCtx, err); ok {
		return reason, true, nil
	}
	if ctx.Err() != nil || lockCtx.Err() != nil {
		return "", false, err
	}
	ferr := p.fail(context.WithoutCancel(ctx), pass, id, err)
	if reason, ok := superseded(ctx, lockCtx, ferr); ok {
		return reason, true, nil
	}
	return "", false, ferr
}

// settle tries to finish run id once its planning is complete, and when
// that completed it (nothing to fetch, or the workers were quicker than
// the last page) moves adv's watermark now; otherwise workers finish it
// and the next pass moves the watermark.
func (p *Planner) settle(ctx context.Context, id string, adv Advancer, log *slog.Logger) {
	if p.finish == nil {
		return
	}
	if err := p.finish.TryFinish(ctx, id); err != nil {
		log.Warn("trying to finish", "err", err)
	}
	if r, err := p.l.GetRun(ctx, id); err == nil && r.State == ledger.RunComplete {
		if _, err := adv.Advance(ctx); err != nil && !errors.Is(err, ledger.ErrNoWatermark) {
			log.Warn("advancing the watermark; the next pass does", "err", err)
		}
	}
}

// newPassID names one planner pass: owner, for operators, and a random
// part, since one owner's passes (a restarted pod) must differ.
func newPassID(owner string) string {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return owner + "/" + hex.EncodeToString(b[:])
}

// superseded says whether err (with the pass's contexts) means that another
// pass took the run over, or may have: the run record names another pass,
// or the lock was lost while ctx, the caller's, still runs.
func superseded(ctx, lockCtx context.Context, err error) (reason string, ok bool) {
	if errors.Is(err, ledger.ErrNotPlanner) {
		return err.Error(), true
	}
	if cause := context.Cause(lockCtx); lockCtx.Err() != nil && ctx.Err() == nil && errors.Is(cause, ledger.ErrLockLost) &&
		!errors.Is(cause, msg.ErrJetStreamUnavailable) {
		return cause.Error(), true
	}
	return "", false
}

// open takes over the run still being planned, or opens a new one, for
// pass. It refuses (skip) while an earlier run is still being fetched: a
// new window would overlap it and double the work without finishing
// anything sooner.
func (p *Planner) open(ctx context.Context, pass string) (rec ledger.RunRecord, resumed bool, skip string, err error) {
	ids, err := p.l.RunIDs(ctx)
	if err != nil {
		return rec, false, "", fmt.Errorf("plan: listing runs: %w", err)
	}
	// Run IDs sort by time; look from the newest back to the newest
	// complete one.
	finished := false
scan:
	for i := len(ids) - 1; i >= 0; i-- {
		r, err := p.l.GetRun(ctx, ids[i])
		if err != nil {
			return rec, false, "", fmt.Errorf("plan: reading run %s: %w", ids[i], err)
		}
		switch r.State {
		case ledger.RunComplete:
			break scan
		case ledger.RunPlanning:
			taken, err := p.l.TakePlanning(ctx, r.ID, pass, p.cfg.Owner, p.store.Abort)
			if err != nil {
				return r, false, "", fmt.Errorf("plan: taking over run %s: %w", r.ID, err)
			}
			return taken, true, "", nil
		case ledger.RunFetching, ledger.RunCompleting:
			// Its finisher may have died halfway: complete it now if it is done.
			if p.finish != nil {
				if err := p.finish.TryFinish(ctx, r.ID); err != nil {
					p.log.Warn("finishing an earlier run", "run", r.ID, "err", err)
				}
				if r, err = p.l.GetRun(ctx, r.ID); err != nil {
					return rec, false, "", fmt.Errorf("plan: reading run %s: %w", ids[i], err)
				}
				if r.State == ledger.RunComplete {
					finished = true
					break scan
				}
			}
			pending, err := p.q.Pending(ctx, r.ID)
			if err != nil {
				return rec, false, "", fmt.Errorf("plan: reading run %s: %w", r.ID, err)
			}
			if pending > 0 {
				// A new window would overlap it and double the work without
				// finishing anything sooner.
				age := p.cfg.Now().Sub(r.Created).Round(time.Minute)
				if age > p.cfg.StaleAfter {
					p.log.Error("run is stale: batches still queued long after it was opened; are workers running?",
						"run", r.ID, "age", age, "queued", pending)
				}
				return rec, false, fmt.Sprintf("run %s is still being fetched (%d of %d batches queued, opened %s ago)",
					r.ID, pending, r.BatchesPlanned, age), nil
			}
			// Nothing of it is queued, yet it is not complete: batches were
			// dead-lettered. It stays incomplete, the watermark stays, and the
			// next window starts from the last completed run (I1).
			if r.Accepted != nil {
				continue // an operator dropped its dead letters: known and accepted
			}
			p.log.Error("run cannot complete: its remaining batches are dead-lettered; replay them to complete it",
				"run", r.ID)
		}
	}

	if finished {
		// Completed just now by this pass: its window ends where the new
		// one starts.
		if _, err := p.advancer().Advance(ctx); err != nil && !errors.Is(err, ledger.ErrNoWatermark) {
			return rec, false, "", fmt.Errorf("plan: %w", err)
		}
	}
	now := p.cfg.Now().UTC().Truncate(time.Second)
	after := p.cfg.FirstAfter
	wm, err := p.l.Watermark(ctx)
	switch {
	case err == nil:
		after = wm.Time.Add(-p.cfg.Overlap)
	case errors.Is(err, ledger.ErrNoWatermark):
	default:
		return rec, false, "", fmt.Errorf("plan: reading the watermark: %w", err)
	}
	// Run IDs sort by time to the second; a run opened in the same second
	// as the newest one (a failed run retried at once) must still sort
	// after it, since the scan above goes newest first.
	id := runid.After(runid.New, now, last(ids))
	rec = ledger.RunRecord{
		ID:        id,
		After:     after.UTC(),
		Before:    now,
		Params:    p.cfg.DetectionParams,
		State:     ledger.RunPlanning,
		Planner:   p.cfg.Owner,
		PlannerID: pass,
	}
	rec, err = p.l.CreateRun(ctx, rec)
	if err != nil {
		return rec, false, "", fmt.Errorf("plan: opening run: %w", err)
	}
	return rec, false, "", nil
}

// last is the last of ids, "" when there is none.
func last(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return ids[len(ids)-1]
}

// page pages the Host List from the run's progress record and publishes
// batches. Before each publish it writes the batch's bounds to the run
// record (see ledger.PlanProgress), so a crash at any point resumes with the
// same batch boundaries and Msg-Ids. Every write is pass's: once another
// pass holds the run, the next write fails and nothing more is published.
func (p *Planner) page(ctx context.Context, pass string, rec ledger.RunRecord, log *slog.Logger) (ledger.RunRecord, error) {
	// A resumed run rebuilds its last recorded batch: start from where it
	// started and take IDs up to where it ended.
	from := rec.Progress.Start
	pager := p.hosts.HostPager(qualys.HostListQuery{
		ProcessedAfter:  rec.After,
		ProcessedBefore: rec.Before,
		PageSize:        p.cfg.PageSize,
		Details:         p.cfg.HostListDetails,
		Extra:           p.cfg.HostListParams,
		Resume:          qualys.Cursor{Page: from.Page, IDMin: from.IDMin, Last: from.LastID},
	}, p.openPage(pass, rec.ID))
	return p.walkAll(ctx, pass, rec, pager, p.cfg.BatchSize, log)
}

// lister is what a walk takes IDs from: a Host List pager, or a QID
// listing merged with a KnowledgeBase pass's backfill (see withExtra). All
// yields IDs ascending and, after an error, retries the current page when
// the loop goes on; Cursor is where the listing is.
type lister interface {
	All(ctx context.Context) iter.Seq2[uint64, error]
	Cursor() qualys.Cursor
}

// walkAll takes every ID of src into batches of size, published with
// write-ahead progress and fenced by the run record, and records planning
// complete. Runs and KnowledgeBase passes share it, so both cut, resume
// and stop alike.
func (p *Planner) walkAll(ctx context.Context, pass string, rec ledger.RunRecord, src lister, size int, log *slog.Logger) (ledger.RunRecord, error) {
	from := rec.Progress.Start
	w := &walk{p: p, pass: pass, rec: rec, prog: rec.Progress, pub: p.q.Publisher(msg.PublisherOptions{}),
		size: size, batch: make([]uint64, 0, size), hosts: from.Hosts, redo: rec.Progress.Batches}
	defer func() {
		// No publish outlives the pass, whatever ended it; a stopped one is
		// republished by the next pass (it is the recorded batch).
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = w.pub.Wait(wctx)
	}()
	if err := w.all(ctx, src, log); err != nil {
		return w.rec, err
	}
	last := src.Cursor().Page
	return p.l.UpdatePlanned(ctx, rec.ID, pass, func(r *ledger.RunRecord) error {
		r.PlanningComplete = true
		r.BatchesPlanned = w.prog.Batches
		r.HostsPlanned = w.hosts
		r.State = ledger.RunFetching
		// Pages an earlier pass recorded beyond this walk's last page are
		// not the run's (ledger.Pages leaves them out, the finisher
		// deletes them); every page writer has ended, so no upload is
		// open.
		r.HostListPages = last
		r.Uploads = nil
		return nil
	})
}

// walk is one pass over the Host List: the batch being filled, and the
// progress record batches are cut against.
type walk struct {
	p     *Planner
	pass  string
	rec   ledger.RunRecord
	prog  ledger.PlanProgress
	pub   *msg.Publisher
	size  int // IDs per batch
	batch []uint64
	hosts int // hosts in the batches before the one being filled
	// redo is the recorded batch a resumed run rebuilds first; 0 once it is
	// published (or there is none).
	redo int
}

// all takes every host ID of the window into batches, retrying failed
// pages as decide says, and waits until every batch is published.
func (w *walk) all(ctx context.Context, pager lister, log *slog.Logger) error {
	attempts := 0
	for id, err := range pager.All(ctx) {
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if errors.Is(err, ledger.ErrNotPlanner) {
				return err // another pass plans the run: retrying cannot help
			}
			wait, giveUp := w.p.decide(err, &attempts)
			if giveUp {
				return err
			}
			log.Warn("listing page failed; retrying", "page", pager.Cursor().Page,
				"attempt", attempts, "class", failure.ClassOf(err).String(), "wait", wait, "err", err)
			if err := sleep(ctx, wait); err != nil {
				return err
			}
			continue
		}
		attempts = 0
		if err := w.add(ctx, id, pager.Cursor()); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if w.redo > 0 {
		if err := w.finishRedo(ctx); err != nil {
			return err
		}
	}
	if len(w.batch) > 0 {
		if err := w.publish(ctx, w.prog.Batches+1, pager.Cursor(), true); err != nil {
			return err
		}
		w.hosts = w.prog.End.Hosts
	}
	if err := w.pub.Wait(ctx); err != nil {
		return fmt.Errorf("publishing: %w", err)
	}
	return nil
}

// add puts id into the batch being filled and publishes it when full; cur
// is where the pager is.
func (w *walk) add(ctx context.Context, id uint64, cur qualys.Cursor) error {
	if w.redo > 0 && id > w.prog.End.LastID {
		if err := w.finishRedo(ctx); err != nil {
			return err
		}
	}
	w.batch = append(w.batch, id)
	if w.redo == 0 && len(w.batch) == w.size {
		if err := w.publish(ctx, w.prog.Batches+1, cur, true); err != nil {
			return err
		}
		w.hosts = w.prog.End.Hosts
	}
	return nil
}

// publish sends the batch being filled as batch number; record writes the
// progress record first (a rebuilt batch is recorded already).
func (w *walk) publish(ctx context.Context, number int, cur qualys.Cursor, record bool) error {
	end := ledger.PlanCursor{Page: cur.Page, IDMin: cur.IDMin, LastID: w.batch[len(w.batch)-1], Hosts: w.hosts + len(w.batch)}
	if record {
		// Every earlier batch must be in the stream before the record
		// moves past it: a resumed planner rebuilds only the recorded
		// batch. One round trip per batch, beside the record's own.
		if err := w.pub.Wait(ctx); err != nil {
			return fmt.Errorf("publishing batch %d: %w", number-1, err)
		}
		next := ledger.PlanProgress{Batches: number, Start: w.prog.End, End: end}
		rec, err := w.p.l.UpdatePlanned(ctx, w.rec.ID, w.pass, func(r *ledger.RunRecord) error {
			r.Progress = next
			return nil
		})
		if err != nil {
			return fmt.Errorf("recording batch %d: %w", number, err)
		}
		w.rec, w.prog = rec, next
	}
	if ctx.Err() != nil {
		// The lock is lost (or the pass stopped): Publish might still
		// take a slot before it sees ctx.
		return context.Cause(ctx)
	}
	b := msg.Batch{
		Kind:   kindOf(w.rec.ID),
		Run:    w.rec.ID,
		Number: number,
		After:  w.rec.After,
		Before: w.rec.Before,
		IDs:    hostids.Of(w.batch).String(),
		Hosts:  len(w.batch),
		Params: w.rec.Params,
	}
	if err := w.pub.Publish(ctx, b); err != nil {
		return fmt.Errorf("publishing batch %d: %w", b.Number, err)
	}
	w.batch = w.batch[:0]
	return nil
}

// finishRedo publishes the rebuilt batch (if any host of it is still in
// the window) and carries on after it as the record says.
func (w *walk) finishRedo(ctx context.Context) error {
	if len(w.batch) > 0 {
		if err := w.publish(ctx, w.redo, qualys.Cursor{Page: w.prog.End.Page, IDMin: w.prog.End.IDMin}, false); err != nil {
			return err
		}
	} else {
		// Every host of the recorded batch left the window before it
		// was published: nothing to fetch, but the run counts it, so
		// it is recorded done as empty (a copy published before the
		// crash, if any, overwrites this when a worker stores it).
		if err := w.p.l.DoneEmpty(ctx, w.rec.ID, strconv.Itoa(w.redo), w.p.cfg.Owner); err != nil {
			return fmt.Errorf("recording empty batch %d: %w", w.redo, err)
		}
	}
	w.hosts, w.redo = w.prog.End.Hosts, 0
	return nil
}

// decide says how long to wait before retrying a failed page, or to give up.
// Back-pressure waits as told and is never counted against the attempts.
func (p *Planner) decide(err error, attempts *int) (wait time.Duration, giveUp bool) {
	switch failure.ClassOf(err) {
	case failure.ClassBackPressure:
		return retry.Jitter(failure.WaitOf(err)), false
	case failure.ClassFleetWide, failure.ClassPermanent:
		return 0, true
	default:
		*attempts++
		if *attempts >= p.cfg.MaxAttempts {
			return 0, true
		}
		return retry.Backoff(*attempts, time.Second, p.cfg.MaxBackoff), false
	}
}

// fail marks the run failed with the reason and returns the error wrapped
// with ErrRunFailed; if pass no longer plans the run, it marks nothing and
// the error wraps ledger.ErrNotPlanner.
func (p *Planner) fail(ctx context.Context, pass, run string, cause error) error {
	_, err := p.l.UpdatePlanned(ctx, run, pass, func(r *ledger.RunRecord) error {
		r.State = ledger.RunFailed
		r.Error = cause.Error()
		return nil
	})
	if errors.Is(err, ledger.ErrNotPlanner) {
		return fmt.Errorf("plan: run %s: marking it failed (%w): %w", run, cause, err)
	}
	if err != nil {
		p.log.Error("marking the run failed", "run", run, "err", err)
	}
	return fmt.Errorf("plan: run %s: %w: %w", run, ErrRunFailed, cause)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
