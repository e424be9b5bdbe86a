// Package plan runs one planner pass: open (or resume) a run, page the Host
// List, publish a batch message every BatchSize host IDs, record the result.
//
// Memory grows with nothing but the batch being filled: IDs stream from the
// page into the batch, the raw page streams into the store, and progress is
// checkpointed in the run record so that a crashed planner resumes the same
// run with the same batch boundaries and Msg-Ids.
package plan

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
)

// Config is one planner's settings.
type Config struct {
	Prefix          string        // object key prefix
	BatchSize       int           // host IDs per batch
	PageSize        int           // Host List truncation_limit; 0 = one page
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
	return c
}

// HostLister is the part of the Qualys client the planner uses.
type HostLister interface {
	HostPager(q qualys.HostListQuery, open qualys.OpenPage) *qualys.HostPager
}

// Store is where raw Host List pages land.
type Store interface {
	// Put stores r whole under key, or nothing if r fails.
	Put(ctx context.Context, key string, r io.Reader, opts objstore.PutOptions) (objstore.Object, error)
	// Check reports a store no write can succeed on (missing bucket, bad
	// credentials) before anything is published.
	Check(ctx context.Context) error
}

// Queue is the part of the JetStream transport a planner uses.
type Queue interface {
	// Publisher publishes batches asynchronously; its Wait ends them.
	Publisher(opts msg.PublisherOptions) *msg.Publisher
	// Pending counts run's batches still queued or in flight.
	Pending(ctx context.Context, run string) (uint64, error)
}

// Ledger is the part of the run ledger a planner reads and records in.
type Ledger interface {
	Acquire(ctx context.Context, name, owner string, ttl time.Duration) (*ledger.Lock, error)
	Watermark(ctx context.Context) (ledger.Watermark, error)
	RunIDs(ctx context.Context) ([]string, error)
	GetRun(ctx context.Context, id string) (ledger.RunRecord, error)
	CreateRun(ctx context.Context, r ledger.RunRecord) (ledger.RunRecord, error)
	UpdateRun(ctx context.Context, id string, change func(*ledger.RunRecord) error) (ledger.RunRecord, error)
	// MarkPage records a stored Host List page for the manifest.
	MarkPage(ctx context.Context, run string, page int, o objstore.Object) error
	// MarkDone records a batch's result (the planner records an empty
	// redo batch as done).
	MarkDone(ctx context.Context, r ledger.BatchResult) error
}

// Finisher completes a run whose batches are all done; the planner calls it
// once planning ends, so that a run with nothing to fetch completes at once.
type Finisher interface {
	TryFinish(ctx context.Context, run string) error
}

// Planner plans runs.
type Planner struct {
	cfg    Config
	q      Queue
	l      Ledger
	hosts  HostLister
	store  Store
	finish Finisher
	log    *slog.Logger
}

// New builds a planner publishing on q and recording in l; finish may be nil.
func New(cfg Config, q Queue, l Ledger, hosts HostLister, store Store, finish Finisher, log *slog.Logger) *Planner {
	return &Planner{cfg: cfg.withDefaults(), q: q, l: l, hosts: hosts, store: store, finish: finish, log: log}
}

// Outcome says what a planner pass did.
type Outcome struct {
	Run     string
	Resumed bool
	// Skipped is set when the pass did nothing: another planner holds the
	// lock, or an earlier run is still being fetched. Reason says which.
	Skipped bool
	Reason  string
	Batches int
	Hosts   int
}

// ErrRunFailed is wrapped when the pass gave up on its run and marked it
// failed; the error's class says why (fleet-wide, permanent, retries spent).
var ErrRunFailed = errors.New("run failed")

// lockName is the planner lock's key: one planner at a time per queue.
const lockName = "planner"

// Run performs one planner pass.
func (p *Planner) Run(ctx context.Context) (Outcome, error) {
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
	// may be running, so planning stops.
	lockCtx, cancel := context.WithCancelCause(ctx)
	var keeper sync.WaitGroup
	keeper.Go(func() {
		if err := lock.Keep(lockCtx); err != nil {
			cancel(fmt.Errorf("plan: planner lock lost: %w", err))
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

	rec, resumed, skip, err := p.open(lockCtx)
	if err != nil || skip != "" {
		return Outcome{Skipped: skip != "", Reason: skip}, err
	}
	out := Outcome{Run: rec.ID, Resumed: resumed}
	log := p.log.With("run", rec.ID)
	if resumed {
		log.Info("resuming run", "after", rec.After, "before", rec.Before,
			"batches", rec.Progress.Batches, "hosts", rec.Progress.End.Hosts)
	} else {
		log.Info("opened run", "after", rec.After, "before", rec.Before)
	}

	rec, err = p.page(lockCtx, rec, log)
	out.Batches, out.Hosts = rec.Progress.Batches, rec.HostsPlanned
	if err != nil {
		if cause := context.Cause(lockCtx); lockCtx.Err() != nil && ctx.Err() == nil {
			err = cause // lost the lock: say so, not "context canceled"
		}
		if ctx.Err() != nil || lockCtx.Err() != nil {
			// Stopped from outside: leave the run open for the next pass.
			return out, err
		}
		return out, p.fail(context.WithoutCancel(ctx), rec.ID, err)
	}
	log.Info("planning complete", "batches", out.Batches, "hosts", out.Hosts)
	if p.finish != nil {
		if err := p.finish.TryFinish(ctx, rec.ID); err != nil {
			// Workers finish the run when they record its last batch; a
			// failure here is theirs to repeat.
			log.Warn("trying to finish the run", "err", err)
		}
	}
	return out, nil
}

// open resumes the run still being planned, or opens a new one. It refuses
// (skip) while an earlier run is still being fetched: a new window would
// overlap it and double the work without finishing anything sooner.
func (p *Planner) open(ctx context.Context) (rec ledger.RunRecord, resumed bool, skip string, err error) {
	ids, err := p.l.RunIDs(ctx)
	if err != nil {
		return rec, false, "", fmt.Errorf("plan: listing runs: %w", err)
	}
	// Run IDs sort by time; look from the newest back to the newest
	// complete one.
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
			r, err = p.l.UpdateRun(ctx, r.ID, func(r *ledger.RunRecord) error {
				r.Planner = p.cfg.Owner
				return nil
			})
			return r, true, "", err
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
	id := newRunID(now)
	for t := now; len(ids) > 0 && id <= ids[len(ids)-1]; {
		t = t.Add(time.Second)
		id = newRunID(t)
	}
	rec = ledger.RunRecord{
		ID:      id,
		After:   after.UTC(),
		Before:  now,
		Params:  p.cfg.DetectionParams,
		State:   ledger.RunPlanning,
		Planner: p.cfg.Owner,
	}
	rec, err = p.l.CreateRun(ctx, rec)
	if err != nil {
		return rec, false, "", fmt.Errorf("plan: opening run: %w", err)
	}
	return rec, false, "", nil
}

// newRunID makes an ID that sorts by time and does not collide.
func newRunID(t time.Time) string {
	var b [3]byte
	_, _ = crand.Read(b[:])
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// page pages the Host List from the run's progress record and publishes
// batches. Before each publish it writes the batch's bounds to the run
// record (see ledger.PlanProgress), so a crash at any point resumes with the
// same batch boundaries and Msg-Ids.
func (p *Planner) page(ctx context.Context, rec ledger.RunRecord, log *slog.Logger) (ledger.RunRecord, error) {
	// A resumed run rebuilds its last recorded batch: start from where it
	// started and take IDs up to where it ended.
	from := rec.Progress.Start
	pager := p.hosts.HostPager(qualys.HostListQuery{
		ProcessedAfter:  rec.After,
		ProcessedBefore: rec.Before,
		PageSize:        p.cfg.PageSize,
		Extra:           p.cfg.HostListParams,
		Resume:          qualys.Cursor{Page: from.Page, IDMin: from.IDMin, Last: from.LastID},
	}, p.openPage(rec.ID))
	w := &walk{p: p, rec: rec, prog: rec.Progress, pub: p.q.Publisher(msg.PublisherOptions{}),
		batch: make([]uint64, 0, p.cfg.BatchSize), hosts: from.Hosts, redo: rec.Progress.Batches}
	defer func() {
		// No publish outlives the pass, whatever ended it; a stopped one is
		// republished by the next pass (it is the recorded batch).
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = w.pub.Wait(wctx)
	}()
	if err := w.all(ctx, pager, log); err != nil {
		return w.rec, err
	}
	return p.l.UpdateRun(ctx, rec.ID, func(r *ledger.RunRecord) error {
		r.PlanningComplete = true
		r.BatchesPlanned = w.prog.Batches
		r.HostsPlanned = w.hosts
		r.State = ledger.RunFetching
		return nil
	})
}

// walk is one pass over the Host List: the batch being filled, and the
// progress record batches are cut against.
type walk struct {
	p     *Planner
	rec   ledger.RunRecord
	prog  ledger.PlanProgress
	pub   *msg.Publisher
	batch []uint64
	hosts int // hosts in the batches before the one being filled
	// redo is the recorded batch a resumed run rebuilds first; 0 once it is
	// published (or there is none).
	redo int
}

// all takes every host ID of the window into batches, retrying failed
// pages as decide says, and waits until every batch is published.
func (w *walk) all(ctx context.Context, pager *qualys.HostPager, log *slog.Logger) error {
	attempts := 0
	for id, err := range pager.All(ctx) {
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			wait, giveUp := w.p.decide(err, &attempts)
			if giveUp {
				return err
			}
			log.Warn("host list page failed; retrying", "page", pager.Cursor().Page,
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
	if w.redo == 0 && len(w.batch) == w.p.cfg.BatchSize {
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
		rec, err := w.p.l.UpdateRun(ctx, w.rec.ID, func(r *ledger.RunRecord) error {
			r.Progress = next
			return nil
		})
		if err != nil {
			return fmt.Errorf("recording batch %d: %w", number, err)
		}
		w.rec, w.prog = rec, next
	}
	b := msg.Batch{
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
		if err := w.p.l.MarkDone(ctx, ledger.BatchResult{Run: w.rec.ID, Batch: strconv.Itoa(w.redo), Worker: w.p.cfg.Owner,
			At: w.p.cfg.Now().UTC()}); err != nil {
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
// with ErrRunFailed.
func (p *Planner) fail(ctx context.Context, run string, cause error) error {
	_, err := p.l.UpdateRun(ctx, run, func(r *ledger.RunRecord) error {
		r.State = ledger.RunFailed
		r.Error = cause.Error()
		return nil
	})
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
