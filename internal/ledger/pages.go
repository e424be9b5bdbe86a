package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
)

// Host List pages are recorded under <run>.page.<n> in QFETCH_RUNS, one key
// per page number, never in the run record: the record is rewritten by
// every progress write, and a walk of thousands of pages would make each of
// those writes carry them all (and pass the server's payload limit). A page
// stored again (a retried page, a resumed planner) replaces its own record,
// as its object replaces its own key.

func pageKey(run string, page int) (string, error) {
	if !msg.ValidRunID(run) {
		return "", failure.Permanent(fmt.Errorf("ledger: run ID %q is not 1-64 letters, digits, '-' or '_'", run))
	}
	if page < 1 {
		return "", failure.Permanent(fmt.Errorf("ledger: host list page %d of %s: pages count from 1", page, run))
	}
	return run + ".page." + strconv.Itoa(page), nil
}

// MarkPage records Host List page number page of run, stored as o (with
// its host count), so that the manifest lists it without listing the
// bucket. It is unfenced, as older versions wrote pages; a planner pass
// records through [Ledger.BeginPage] and [Ledger.RecordPage].
func (l *Ledger) MarkPage(ctx context.Context, run string, page int, o objstore.Object) error {
	key, err := pageKey(run, page)
	if err != nil {
		return err
	}
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if _, err := l.runs.Put(ctx, key, data); err != nil {
		return msg.ClassifyAPI(fmt.Errorf("ledger: record %s: %w", key, err))
	}
	return nil
}

// PageSlot is a planner pass's right to record one Host List page: the
// revision its page record had before the pass registered the page's
// upload (see [Ledger.BeginPage]).
type PageSlot struct {
	run, pass string
	page      int
	upload    objstore.Upload
	key       string
	rev       uint64 // 0: no record
}

// Upload is the page upload the slot registered.
func (s PageSlot) Upload() objstore.Upload { return s.upload }

// BeginPage opens the recording of Host List page page of run by planner
// pass pass, whose upload u is about to receive the page: it reads the
// revision of the page's record, and only then lists u in the run record
// (by [Ledger.UpdatePlanned], so the error wraps [ErrNotPlanner] if pass no
// longer plans the run). A pass taking the run over aborts u; the page's
// record is written with [Ledger.RecordPage].
func (l *Ledger) BeginPage(ctx context.Context, run, pass string, page int, u objstore.Upload) (PageSlot, error) {
	key, err := pageKey(run, page)
	if err != nil {
		return PageSlot{}, err
	}
	// The order is the fence (see RecordPage): the revision is read
	// before the upload is registered.
	rev, err := l.pageRevision(ctx, key)
	if err != nil {
		return PageSlot{}, err
	}
	if _, err := l.UpdatePlanned(ctx, run, pass, func(r *RunRecord) error {
		r.Uploads = append(r.Uploads, u)
		return nil
	}); err != nil {
		return PageSlot{}, err
	}
	return PageSlot{run: run, pass: pass, page: page, upload: u, key: key, rev: rev}, nil
}

// RecordPage records the slot's page, stored as o, and unlists the slot's
// upload from the run record. The record is written by compare-and-set on
// the revision the slot read; when it was written meanwhile, RecordPage
// reads the revision again, then checks that the slot's pass still plans
// the run (else the error wraps [ErrNotPlanner] and nothing is written),
// and tries again.
//
// This fences a pass that lost the run, even one frozen between any two of
// these steps. Pass A (stale) read its revision before it registered its
// upload, which was before pass B's TakePlanning, which was before B read
// its revision; and each retry reads the revision before it sees the run
// record naming its pass. So whatever A writes, it expects a revision read
// before B took the run, and B's write lands after that read: if B's lands
// first, A's compare-and-set fails and A, reading the run record, stops; if
// A's lands first, B's compare-and-set fails and B, still the planner,
// writes again over it. Either way the record left is B's.
func (l *Ledger) RecordPage(ctx context.Context, s PageSlot, o objstore.Object) error {
	if s.key == "" {
		return failure.Permanent(errors.New("ledger: record a host list page without BeginPage"))
	}
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	rev := s.rev
	for attempt := 1; ; attempt++ {
		if _, err = l.writeAt(ctx, s.key, data, rev); err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return msg.ClassifyAPI(fmt.Errorf("ledger: record %s: %w", s.key, err))
		}
		if attempt == maxCASAttempts {
			return failure.Retryable(fmt.Errorf("ledger: record %s: still contended after %d attempts", s.key, attempt))
		}
		if rev, err = l.pageRevision(ctx, s.key); err != nil {
			return err
		}
		if err := l.stillPlans(ctx, s.run, s.pass); err != nil {
			return fmt.Errorf("ledger: record %s: %w", s.key, err)
		}
		if err := casPause(ctx, attempt); err != nil {
			return err
		}
	}
	if err := l.DropPage(ctx, s); err != nil {
		return fmt.Errorf("ledger: record %s: %w", s.key, err)
	}
	return nil
}

// DropPage takes the slot's upload off the run record's list: once its page
// is recorded, or failed (then it is tidiness, not safety: a listed upload
// that ended is aborted again harmlessly). ErrNotPlanner passes through.
func (l *Ledger) DropPage(ctx context.Context, s PageSlot) error {
	_, err := l.UpdatePlanned(ctx, s.run, s.pass, func(r *RunRecord) error {
		r.Uploads = slices.DeleteFunc(r.Uploads, func(x objstore.Upload) bool { return x == s.upload })
		return nil
	})
	return err
}

// pageRevision is the revision of a page record, 0 when there is none.
func (l *Ledger) pageRevision(ctx context.Context, key string) (uint64, error) {
	e, err := l.runs.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return 0, nil
	case err != nil:
		return 0, msg.ClassifyAPI(fmt.Errorf("ledger: read %s: %w", key, err))
	}
	return e.Revision(), nil
}

// stillPlans fails wrapping ErrNotPlanner unless run is planning and pass
// plans it.
func (l *Ledger) stillPlans(ctx context.Context, run, pass string) error {
	r, err := l.GetRun(ctx, run)
	if err != nil {
		return err
	}
	if r.State != RunPlanning {
		return fmt.Errorf("ledger: planner pass %s writing %s: the run is %s: %w", pass, run, r.State, ErrNotPlanner)
	}
	if r.PlannerID != pass {
		return fmt.Errorf("ledger: planner pass %s writing %s: pass %s of %s plans it: %w", pass, run, r.PlannerID, r.Planner, ErrNotPlanner)
	}
	return nil
}

// Pages returns the Host List pages recorded for run, in page order. Once
// a fenced run's planning is complete (PlannerID and HostListPages set), a
// record beyond the final walk's last page is left out: it is a page of an
// earlier, longer walk, not of the run.
func (l *Ledger) Pages(ctx context.Context, run string) ([]objstore.Object, error) {
	if !msg.ValidRunID(run) {
		return nil, failure.Permanent(fmt.Errorf("ledger: run ID %q is not 1-64 letters, digits, '-' or '_'", run))
	}
	pages := map[int]objstore.Object{}
	err := l.eachValue(ctx, run+".page.*", func(key string, v []byte) error {
		n, err := strconv.Atoi(strings.TrimPrefix(key, run+".page."))
		var o objstore.Object
		if err == nil {
			err = json.Unmarshal(v, &o)
		}
		if err != nil {
			return failure.Permanent(fmt.Errorf("ledger: page record %s is garbled: %w", key, err))
		}
		pages[n] = o
		return nil
	})
	if err != nil {
		return nil, err
	}
	rec, err := l.GetRun(ctx, run)
	switch {
	case errors.Is(err, ErrRunNotFound):
	case err != nil:
		return nil, err
	case rec.PlannerID != "" && rec.HostListPages > 0:
		for n := range pages {
			if n > rec.HostListPages {
				delete(pages, n)
			}
		}
	}
	out := make([]objstore.Object, 0, len(pages))
	for _, n := range slices.Sorted(maps.Keys(pages)) {
		out = append(out, pages[n])
	}
	return out, nil
}
