package plan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/url"
	"slices"
	"time"

	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/runid"
)

// A KnowledgeBase pass is a run whose ID starts with runid.KBPrefix: the
// planner opens it after its detection step, under the same lock, and
// walks the QID listing into batches exactly as it walks the Host List
// (walkAll), so the same write-ahead progress, fencing, Msg-Ids and fleet
// apply. Its window is [After, Before) on last_modified_after: After zero
// for a full pass, the KB watermark minus the overlap for an incremental
// one. Beyond the listing it asks for its Backfill: QIDs that complete
// runs' detections use and that no complete pass knows, fixed in its
// record when it opens.

// KBConfig is the KnowledgeBase step's settings (QFETCH_KB_*); the zero
// value is off.
type KBConfig struct {
	Enabled   bool
	BatchSize int // QIDs per batch; default 1000
	// Params are a pass's KnowledgeBase request parameters (details, the
	// show_* flags and the operator's extras): stored in its record and
	// copied into every batch (qparams.CheckKB holds them).
	Params url.Values
	// ListParams are the operator's extras, sent with the QID listing
	// too, so that a filter narrows what is listed as well as what is
	// fetched.
	ListParams url.Values
	Overlap    time.Duration // subtracted from the KB watermark to start an incremental pass
	// Every is how old the newest pass must be before another opens; 0:
	// every planner pass.
	Every time.Duration
	// FullEvery makes a pass full (After zero) when the newest complete
	// full pass is older; default 720h.
	FullEvery time.Duration
}

func (c KBConfig) withDefaults() KBConfig {
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.FullEvery <= 0 {
		c.FullEvery = 720 * time.Hour
	}
	return c
}

// QIDLister is the part of the Qualys client that lists QIDs.
type QIDLister interface {
	QIDPager(q qualys.KBListQuery, open qualys.OpenPage) *qualys.HostPager
}

// KBLedger is the part of the run ledger only the KnowledgeBase step uses.
type KBLedger interface {
	// KBPassIDs lists the KB passes, ascending (RunIDs leaves them out).
	KBPassIDs(ctx context.Context) ([]string, error)
	KBWatermark(ctx context.Context) (ledger.Watermark, error)
	// AdvanceKBWatermark moves the KB watermark forward only, by
	// compare-and-set, and says whether it moved.
	AdvanceKBWatermark(ctx context.Context, w ledger.Watermark) (bool, error)
}

// Objects reads stored objects: kb/latest.json and the manifest it names.
type Objects interface {
	// Get opens key, or fails with an error wrapping objstore.ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}

// UsedQIDs returns the QIDs the detections of the given complete runs use,
// and the runs among them whose tables are not complete yet (their QIDs
// are unknown): tables.UsedQIDs over the store.
type UsedQIDs func(ctx context.Context, runs []string) (used hostids.Set, pending []string, err error)

// KBDeps are the KnowledgeBase step's parts.
type KBDeps struct {
	QIDs    QIDLister
	Ledger  KBLedger
	Objects Objects
	// Used may be nil: passes then ask for no backfill.
	Used UsedQIDs
}

// WithKB gives p the KnowledgeBase step's parts; Config.KB switches the
// step on. It returns p.
func (p *Planner) WithKB(d KBDeps) *Planner {
	p.kb = d
	return p
}

// KBOutcome says what the KnowledgeBase step of a planner pass did.
type KBOutcome struct {
	Pass    string
	Resumed bool
	Full    bool // the pass lists the whole KnowledgeBase (After zero)
	// Skipped: no pass was planned (one is still being fetched, or the
	// newest is younger than KBConfig.Every); Reason says why.
	Skipped bool
	// Superseded: another planner pass took the KB pass over (or may
	// have: the lock was lost).
	Superseded bool
	Reason     string
	Batches    int
	QIDs       int // QIDs in the batches, backfill included
	Backfill   int // QIDs the pass asks for beyond its listing
	// Error says why the step failed, "" when it did not. A failure never
	// fails the planner pass: the detection step alone decides its
	// outcome (I9); the pass itself, if one was open, is marked failed and
	// the next planner pass opens another.
	Error string
}

// kbStep runs the KnowledgeBase step and reports its failure in the
// outcome, logged, never as an error: nothing it meets may fail the
// detection run (I9), a panic included.
func (p *Planner) kbStep(ctx, lockCtx context.Context) (out KBOutcome) {
	log := p.log.With("step", "kb")
	defer func() {
		if r := recover(); r != nil {
			out.Error = fmt.Sprintf("the KnowledgeBase step failed unexpectedly: %v", r)
			log.Error("KnowledgeBase step failed; the detection run is not affected", "pass", out.Pass, "err", out.Error)
		}
	}()
	if p.kb.QIDs == nil || p.kb.Ledger == nil {
		out.Error = "the KnowledgeBase step is on but the planner has no QID lister or KB ledger"
		log.Error("KnowledgeBase step failed", "err", out.Error)
		return out
	}
	out, err := p.kbPass(ctx, lockCtx, log)
	if err != nil {
		out.Error = logging.Scrub(err.Error())
		log.Error("KnowledgeBase step failed; the detection run is not affected", "pass", out.Pass, "err", err)
	}
	return out
}

// kbPass advances the KB watermark, then resumes or opens a KB pass and
// walks it, as Run does with a detection run.
func (p *Planner) kbPass(ctx, lockCtx context.Context, log *slog.Logger) (KBOutcome, error) {
	if _, err := p.kbAdvancer().Advance(lockCtx); err != nil && !errors.Is(err, ledger.ErrNoWatermark) {
		return KBOutcome{}, fmt.Errorf("plan: %w", err)
	}
	pass := newPassID(p.cfg.Owner)
	rec, resumed, skip, err := p.openKB(lockCtx, pass, log)
	if err != nil {
		if reason, ok := superseded(ctx, lockCtx, err); ok {
			return KBOutcome{Pass: rec.ID, Superseded: true, Reason: reason}, nil
		}
		return KBOutcome{}, err
	}
	if skip != "" {
		log.Info("no KnowledgeBase pass to plan", "reason", skip)
		return KBOutcome{Skipped: true, Reason: skip}, nil
	}
	backfill, _ := hostids.Count(rec.Backfill)
	out := KBOutcome{Pass: rec.ID, Resumed: resumed, Full: rec.After.IsZero(), Backfill: backfill}
	log = log.With("pass", rec.ID, "planner_pass", pass)
	if resumed {
		log.Info("resuming KnowledgeBase pass", "after", rec.After, "before", rec.Before,
			"batches", rec.Progress.Batches, "qids", rec.Progress.End.Hosts)
	} else {
		log.Info("opened KnowledgeBase pass", "full", out.Full, "after", rec.After, "before", rec.Before,
			"backfill", backfill, "covers", rec.Covers)
	}
	rec, err = p.walkKB(lockCtx, pass, rec, log)
	out.Batches, out.QIDs = rec.Progress.Batches, rec.HostsPlanned
	if err != nil {
		reason, sup, err := p.walkFailed(ctx, lockCtx, pass, rec.ID, err)
		if sup {
			out.Superseded, out.Reason = true, reason
			log.Warn("stopped: another planner pass took the KnowledgeBase pass over", "reason", reason)
			return out, nil
		}
		return out, err
	}
	log.Info("KnowledgeBase planning complete", "batches", out.Batches, "qids", out.QIDs)
	p.settle(ctx, rec.ID, p.kbAdvancer(), log)
	return out, nil
}

// openKB takes over the KB pass still being planned, or opens a new one
// when one is due, for pass. Like open, it skips while an earlier pass is
// still being fetched, and passes over (logging) one whose remaining
// batches are dead-lettered.
func (p *Planner) openKB(ctx context.Context, pass string, log *slog.Logger) (rec ledger.RunRecord, resumed bool, skip string, err error) {
	ids, err := p.kb.Ledger.KBPassIDs(ctx)
	if err != nil {
		return rec, false, "", fmt.Errorf("plan: listing KnowledgeBase passes: %w", err)
	}
	var newest, complete *ledger.RunRecord
	finished := false
scan:
	for i := len(ids) - 1; i >= 0; i-- {
		r, err := p.l.GetRun(ctx, ids[i])
		if err != nil {
			return rec, false, "", fmt.Errorf("plan: reading KnowledgeBase pass %s: %w", ids[i], err)
		}
		if newest == nil {
			newest = &r
		}
		switch r.State {
		case ledger.RunComplete:
			complete = &r
			break scan
		case ledger.RunPlanning:
			taken, err := p.l.TakePlanning(ctx, r.ID, pass, p.cfg.Owner, p.store.Abort)
			if err != nil {
				return r, false, "", fmt.Errorf("plan: taking over KnowledgeBase pass %s: %w", r.ID, err)
			}
			return taken, true, "", nil
		case ledger.RunFetching, ledger.RunCompleting:
			if p.finish != nil {
				if err := p.finish.TryFinish(ctx, r.ID); err != nil {
					log.Warn("finishing an earlier KnowledgeBase pass", "pass", r.ID, "err", err)
				}
				if r, err = p.l.GetRun(ctx, r.ID); err != nil {
					return rec, false, "", fmt.Errorf("plan: reading KnowledgeBase pass %s: %w", ids[i], err)
				}
				if r.State == ledger.RunComplete {
					finished, complete = true, &r
					break scan
				}
			}
			pending, err := p.q.Pending(ctx, r.ID)
			if err != nil {
				return rec, false, "", fmt.Errorf("plan: reading KnowledgeBase pass %s: %w", r.ID, err)
			}
			if pending > 0 {
				return rec, false, fmt.Sprintf("KnowledgeBase pass %s is still being fetched (%d of %d batches queued)",
					r.ID, pending, r.BatchesPlanned), nil
			}
			if r.Accepted != nil {
				continue
			}
			log.Error("KnowledgeBase pass cannot complete: its remaining batches are dead-lettered; replay them to complete it",
				"pass", r.ID)
		}
	}
	if finished {
		if _, err := p.kbAdvancer().Advance(ctx); err != nil && !errors.Is(err, ledger.ErrNoWatermark) {
			return rec, false, "", fmt.Errorf("plan: %w", err)
		}
	}
	now := p.cfg.Now().UTC().Truncate(time.Second)
	// Before is the planner's clock at the open, the one now is read by.
	if newest != nil && now.Sub(newest.Before) < p.cfg.KB.Every {
		return rec, false, fmt.Sprintf("the newest KnowledgeBase pass %s was opened %s ago (a pass every %s)",
			newest.ID, now.Sub(newest.Before).Round(time.Second), p.cfg.KB.Every), nil
	}
	var after time.Time
	wm, err := p.kb.Ledger.KBWatermark(ctx)
	switch {
	case errors.Is(err, ledger.ErrNoWatermark):
	case err != nil:
		return rec, false, "", fmt.Errorf("plan: reading the KB watermark: %w", err)
	default:
		full, err := p.fullDue(ctx, ids, now)
		if err != nil {
			return rec, false, "", err
		}
		if !full {
			after = wm.Time.Add(-p.cfg.KB.Overlap).UTC()
			if !after.Before(now) {
				return rec, false, fmt.Sprintf("the KB watermark %s is not before this planner's clock", wm.Time.Format(time.RFC3339)), nil
			}
		}
	}
	backfill, covers := p.backfill(ctx, complete, log)
	rec = ledger.RunRecord{
		ID:        runid.After(runid.NewKB, now, last(ids)),
		After:     after,
		Before:    now,
		Params:    p.cfg.KB.Params,
		State:     ledger.RunPlanning,
		Planner:   p.cfg.Owner,
		PlannerID: pass,
		Backfill:  backfill,
		Covers:    covers,
	}
	rec, err = p.l.CreateRun(ctx, rec)
	if err != nil {
		return rec, false, "", fmt.Errorf("plan: opening KnowledgeBase pass: %w", err)
	}
	return rec, false, "", nil
}

// fullDue says whether the next pass must list the whole KnowledgeBase: no
// complete full pass ended within FullEvery of now. ids are the KB passes,
// ascending; the walk stops at the first pass that old.
func (p *Planner) fullDue(ctx context.Context, ids []string, now time.Time) (bool, error) {
	for i := len(ids) - 1; i >= 0; i-- {
		r, err := p.l.GetRun(ctx, ids[i])
		if err != nil {
			return false, fmt.Errorf("plan: reading KnowledgeBase pass %s: %w", ids[i], err)
		}
		if now.Sub(r.Before) >= p.cfg.KB.FullEvery {
			return true, nil
		}
		if r.State == ledger.RunComplete && r.After.IsZero() {
			return false, nil
		}
	}
	return true, nil
}

// backfill returns the QIDs a new pass asks for beyond its listing: those
// the detections of runs completed since prev (the newest complete pass)
// looked use, less those the newest complete pass's manifest knows; and
// the newest of those runs up to which every run's tables were complete
// (a run with pending tables is looked at again by the next pass). It
// degrades to no backfill, and prev's Covers, when it cannot tell: the
// next pass asks again.
func (p *Planner) backfill(ctx context.Context, prev *ledger.RunRecord, log *slog.Logger) (backfill, covers string) {
	if prev != nil {
		covers = prev.Covers
	}
	if p.kb.Used == nil {
		return "", covers
	}
	ids, err := p.l.RunIDs(ctx)
	if err != nil {
		log.Warn("no backfill this pass: listing runs", "err", err)
		return "", covers
	}
	var runs []string
	open := "" // the oldest run that may still complete: Covers stays before it
	for _, id := range ids {
		if id <= covers {
			continue
		}
		r, err := p.l.GetRun(ctx, id)
		if err != nil {
			log.Warn("no backfill this pass: reading a run", "run", id, "err", err)
			return "", covers
		}
		switch {
		case r.State == ledger.RunComplete:
			runs = append(runs, id)
		case open == "" && r.State != ledger.RunFailed && r.Accepted == nil:
			// A passed-over run whose dead letters are replayed completes
			// after newer runs: the next pass must still look at it.
			open = id
		}
	}
	if len(runs) == 0 {
		return "", covers
	}
	used, pending, err := p.kb.Used(ctx, runs)
	if err != nil {
		log.Warn("no backfill this pass: reading the runs' QIDs", "err", err)
		return "", covers
	}
	next := covers
	for _, id := range runs {
		if slices.Contains(pending, id) || (open != "" && id > open) {
			break
		}
		next = id
	}
	known, err := p.knownQIDs(ctx)
	if err != nil {
		// Asking again for what is known costs calls, never data.
		log.Warn("asking for every used QID: reading the known QIDs", "err", err)
	}
	ask := minus(used.IDs(), known)
	if len(ask) > maxBackfill {
		// The backfill lives in the pass's record (a KV value): ask for
		// the first part now and look at the same runs again next pass,
		// when what this one fetched is known.
		log.Warn("backfill capped; the next pass asks for the rest", "qids", len(ask), "asked", maxBackfill)
		ask, next = ask[:maxBackfill], covers
	}
	return hostids.Of(ask).String(), next
}

// maxBackfill bounds the QIDs one pass asks for beyond its listing, so that
// its record stays far below a KV value's limit (20000 QIDs take at most
// about 140 KB in hostids form).
const maxBackfill = 20000

// minus returns the IDs of a (ascending) that are not in b (ascending).
func minus(a, b []uint64) []uint64 {
	out := a[:0:0]
	j := 0
	for _, id := range a {
		for j < len(b) && b[j] < id {
			j++
		}
		if j < len(b) && b[j] == id {
			continue
		}
		out = append(out, id)
	}
	return out
}

// maxJSON bounds what is read of kb/latest.json and a KB manifest.
const maxJSON = 64 << 20

// knownQIDs returns the QIDs the newest complete KB pass knows (its
// manifest's known_qids, through kb/latest.json), ascending; none when no
// pass completed yet.
func (p *Planner) knownQIDs(ctx context.Context) ([]uint64, error) {
	if p.kb.Objects == nil {
		return nil, nil
	}
	var latest struct {
		Run string `json:"run"`
	}
	if err := p.readJSON(ctx, objstore.KBLatestKey(p.cfg.Prefix), &latest); errors.Is(err, objstore.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	// The manifest's key comes from the pass ID, never from the object:
	// only a KB pass's manifest is read.
	if !runid.Valid(latest.Run) || !runid.IsKB(latest.Run) {
		return nil, fmt.Errorf("%s names %q, not a KnowledgeBase pass", objstore.KBLatestKey(p.cfg.Prefix), latest.Run)
	}
	var m struct {
		Known json.RawMessage `json:"known_qids"`
	}
	key := objstore.ManifestKey(p.cfg.Prefix, latest.Run)
	if err := p.readJSON(ctx, key, &m); err != nil {
		return nil, err
	}
	ids, err := parseKnown(m.Known)
	if err != nil {
		return nil, fmt.Errorf("%s: known_qids: %w", key, err)
	}
	return ids, nil
}

// parseKnown reads known_qids in hostids form ("1-5,9"), or as a list of
// numbers.
func parseKnown(raw json.RawMessage) ([]uint64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		set, err := hostids.Parse(s)
		if err != nil {
			return nil, err
		}
		return set.IDs(), nil
	}
	var list []uint64
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("neither a QID list in ids form nor a list of QIDs")
	}
	return hostids.Of(list).IDs(), nil
}

func (p *Planner) readJSON(ctx context.Context, key string, v any) error {
	r, err := p.kb.Objects.Get(ctx, key)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := json.NewDecoder(io.LimitReader(r, maxJSON)).Decode(v); err != nil {
		return fmt.Errorf("reading %s: %w", key, err)
	}
	return nil
}

// walkKB walks the pass's QID listing merged with its backfill into
// batches, from its progress record.
func (p *Planner) walkKB(ctx context.Context, pass string, rec ledger.RunRecord, log *slog.Logger) (ledger.RunRecord, error) {
	from := rec.Progress.Start
	backfill, err := hostids.Parse(rec.Backfill)
	if err != nil {
		return rec, fmt.Errorf("KnowledgeBase pass %s: its backfill: %w", rec.ID, err)
	}
	pager := p.kb.QIDs.QIDPager(qualys.KBListQuery{
		ModifiedAfter: rec.After,
		Extra:         p.cfg.KB.ListParams,
		Resume:        qualys.Cursor{Page: from.Page, IDMin: from.IDMin, Last: from.LastID},
	}, p.openPage(pass, rec.ID))
	// A resumed pass takes up where its record starts, as the pager does.
	extra := backfill.IDs()
	extra = extra[sortedAfter(extra, from.LastID):]
	return p.walkAll(ctx, pass, rec, withExtra(pager, extra), p.cfg.KB.BatchSize, log)
}

// sortedAfter is the index of the first ID of ids (ascending) above last.
func sortedAfter(ids []uint64, last uint64) int {
	i, found := slices.BinarySearch(ids, last)
	if found {
		i++
	}
	return i
}

// merged is a listing with extra IDs merged in, ascending, each once.
type merged struct {
	lister
	extra []uint64
}

// withExtra merges extra (ascending) into src's IDs. An extra ID is
// yielded when the listing passes it, so the cursor a batch is recorded
// with is the listing's page that holds the next listed ID: resuming
// there, with the batch's last ID, yields nothing twice and misses
// nothing.
func withExtra(src lister, extra []uint64) lister {
	if len(extra) == 0 {
		return src
	}
	return &merged{lister: src, extra: extra}
}

func (m *merged) All(ctx context.Context) iter.Seq2[uint64, error] {
	return func(yield func(uint64, error) bool) {
		i := 0
		for id, err := range m.lister.All(ctx) {
			if err != nil {
				if !yield(0, err) {
					return
				}
				continue
			}
			for ; i < len(m.extra) && m.extra[i] < id; i++ {
				if !yield(m.extra[i], nil) {
					return
				}
			}
			if i < len(m.extra) && m.extra[i] == id {
				i++
			}
			if !yield(id, nil) {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		for ; i < len(m.extra); i++ {
			if !yield(m.extra[i], nil) {
				return
			}
		}
	}
}

// kindOf is the batch kind of run id's batches.
func kindOf(id string) string {
	if runid.IsKB(id) {
		return msg.KindKB
	}
	return ""
}

// kbMarks shows the KB passes and their watermark to an Advancer as runs
// and the watermark.
type kbMarks struct {
	Ledger
	kb KBLedger
}

func (m kbMarks) Watermark(ctx context.Context) (ledger.Watermark, error) {
	return m.kb.KBWatermark(ctx)
}

func (m kbMarks) RunIDs(ctx context.Context) ([]string, error) { return m.kb.KBPassIDs(ctx) }

func (m kbMarks) AdvanceWatermark(ctx context.Context, w ledger.Watermark) (bool, error) {
	return m.kb.AdvanceKBWatermark(ctx, w)
}

// kbAdvancer moves the KB watermark over complete KB passes with the
// checks Advancer makes of runs: complete, _SUCCESS stored, a listing page
// recorded (only a planner writes one), no gap (a full pass has none), and
// not ending after this planner's clock.
func (p *Planner) kbAdvancer() Advancer {
	a := p.advancer()
	a.Ledger = kbMarks{Ledger: p.l, kb: p.kb.Ledger}
	a.FirstAfter = time.Time{} // the first pass is full
	a.kb = true
	return a
}

// AdvanceKBWatermark is this planner's KB advancer run once, outside a
// pass, as the next pass would run it.
func (p *Planner) AdvanceKBWatermark(ctx context.Context) (ledger.Watermark, error) {
	if p.kb.Ledger == nil {
		return ledger.Watermark{}, errors.New("plan: the planner has no KB ledger (WithKB)")
	}
	return p.kbAdvancer().Advance(ctx)
}
