// Package finish completes a run once every batch is stored: it writes
// manifest.json, then _SUCCESS, advances the watermark, and points
// latest.json at the run — once, whoever gets there first.
//
// Workers call it after recording each batch, the planner after planning;
// a compare-and-set claim on the run record makes one caller the finisher,
// and a claim left stale by a crash is taken over by the next caller.
package finish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
)

// Ledger is the part of the run ledger completion reads and claims.
type Ledger interface {
	GetRun(ctx context.Context, id string) (ledger.RunRecord, error)
	UpdateRun(ctx context.Context, id string, change func(*ledger.RunRecord) error) (ledger.RunRecord, error)
	CountDone(ctx context.Context, run string) (int, error)
	DoneBatches(ctx context.Context, run string) ([]ledger.BatchResult, error)
	Splits(ctx context.Context, run string) ([]ledger.Split, error)
	Pages(ctx context.Context, run string) ([]objstore.Object, error)
	AdvanceWatermark(ctx context.Context, w ledger.Watermark) (bool, error)
}

// Store is where the manifest and markers go.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader, opts objstore.PutOptions) (objstore.Object, error)
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	List(ctx context.Context, prefix string) iter.Seq2[objstore.Object, error]
	// Stat fails with an error wrapping objstore.ErrNotFound for a missing key.
	Stat(ctx context.Context, key string) (objstore.Object, error)
}

// Finisher completes runs.
type Finisher struct {
	q      Ledger
	store  Store
	prefix string
	owner  string
	stale  time.Duration
	now    func() time.Time
	log    *slog.Logger
}

// Config is a finisher's settings.
type Config struct {
	Prefix string
	Owner  string
	// StaleClaim is how old a finisher's claim may get before another caller
	// takes the completion over; default 5m.
	StaleClaim time.Duration
	Now        func() time.Time
}

// New builds a finisher.
func New(cfg Config, q Ledger, store Store, log *slog.Logger) *Finisher {
	if cfg.StaleClaim <= 0 {
		cfg.StaleClaim = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Finisher{q: q, store: store, prefix: cfg.Prefix, owner: cfg.Owner, stale: cfg.StaleClaim, now: cfg.Now, log: log}
}

// errNotMine ends a claim attempt that found the run claimed or done.
var errNotMine = errors.New("not this caller's to finish")

// TryFinish completes run if planning is over and every batch is done, and
// nobody else is completing it. It is cheap when the run is not ready.
func (f *Finisher) TryFinish(ctx context.Context, run string) error {
	rec, err := f.q.GetRun(ctx, run)
	if err != nil {
		return err
	}
	if !rec.PlanningComplete || rec.State == ledger.RunComplete || rec.State == ledger.RunFailed {
		return nil
	}
	if rec.State == ledger.RunCompleting && f.now().Sub(rec.FinishStarted) < f.stale {
		return nil
	}
	splits, err := f.q.Splits(ctx, run)
	if err != nil {
		return err
	}
	// Every planned batch needs at least one result (its own, or its
	// halves'): a quick count rules out most calls before the full check
	// lists every result.
	n, err := f.q.CountDone(ctx, run)
	if err != nil {
		return err
	}
	if n < rec.BatchesPlanned {
		return nil
	}
	results, err := f.q.DoneBatches(ctx, run)
	if err != nil {
		return err
	}
	used, missing := ledger.Resolve(rec.BatchesPlanned, results, splits)
	if missing != "" {
		return nil
	}

	claimed, err := f.q.UpdateRun(ctx, run, func(r *ledger.RunRecord) error {
		switch {
		case r.State == ledger.RunComplete || r.State == ledger.RunFailed:
			return errNotMine
		case r.State == ledger.RunCompleting && f.now().Sub(r.FinishStarted) < f.stale:
			return errNotMine
		}
		r.State = ledger.RunCompleting
		r.Finisher = f.owner
		r.FinishStarted = f.now().UTC()
		return nil
	})
	if errors.Is(err, errNotMine) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("finish %s: claiming: %w", run, err)
	}
	return f.complete(ctx, claimed, used, splits)
}

// Manifest is manifest.json: what an analyst or a job needs to trust a run.
type Manifest struct {
	Run       string              `json:"run"`
	After     time.Time           `json:"after"`
	Before    time.Time           `json:"before"`
	Params    map[string][]string `json:"params,omitempty"`
	Created   time.Time           `json:"created"`
	Completed time.Time           `json:"completed"`
	Finisher  string              `json:"finisher"`
	HostList  Objects             `json:"hostlist"`
	Batches   []ManifestBatch     `json:"batches"`
	Splits    []ledger.Split      `json:"splits,omitempty"`
	Totals    ledger.Totals       `json:"totals"`
}

// Objects are stored objects as manifest.json lists them: the one object
// record, with sha256 left out when unknown and hosts when zero, as the
// manifest always had them (the ledger keeps every field).
type Objects []objstore.Object

// MarshalJSON writes the manifest's encoding of each object.
func (l Objects) MarshalJSON() ([]byte, error) {
	type object struct {
		Key    string `json:"key"`
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256,omitempty"`
		Hosts  int    `json:"hosts,omitempty"`
	}
	if l == nil {
		return []byte("null"), nil
	}
	out := make([]object, len(l))
	for i, o := range l {
		out[i] = object{Key: o.Key, Bytes: o.Bytes, SHA256: o.SHA256, Hosts: o.Hosts}
	}
	return json.Marshal(out)
}

// ManifestBatch is one batch's outcome. Qualys leaves hosts without a
// matching detection out of its answer, so HostsReturned below
// HostsRequested is normal, not loss.
type ManifestBatch struct {
	Batch          string    `json:"batch"`
	HostsRequested int       `json:"hosts_requested"`
	HostsReturned  int       `json:"hosts_returned"`
	Objects        Objects   `json:"objects"`
	Delivery       uint64    `json:"delivery"`
	Worker         string    `json:"worker,omitempty"`
	Seconds        float64   `json:"seconds"`
	At             time.Time `json:"at"`
}

// Latest is latest.json: the newest complete run.
type Latest struct {
	Run      string    `json:"run"`
	Before   time.Time `json:"before"`
	Manifest string    `json:"manifest"`
	Success  string    `json:"success"`
	Updated  time.Time `json:"updated"`
}

// complete writes the manifest, then _SUCCESS, then the watermark, then
// latest.json, then marks the run complete. Every step is safe to repeat,
// so a finisher taking over a stale claim simply does them all again.
func (f *Finisher) complete(ctx context.Context, rec ledger.RunRecord, used []ledger.BatchResult, splits []ledger.Split) error {
	now := f.now().UTC()
	m := Manifest{Run: rec.ID, After: rec.After, Before: rec.Before, Params: rec.Params,
		Created: rec.Created, Completed: now, Finisher: f.owner, Splits: splits}
	pages, err := f.hostList(ctx, rec.ID)
	if err != nil {
		return err
	}
	m.HostList = pages
	slices.SortFunc(used, func(a, b ledger.BatchResult) int { return ledger.CompareBatchKeys(a.Batch, b.Batch) })
	for _, r := range used {
		mb := ManifestBatch{Batch: r.Batch, HostsRequested: r.HostsRequested, HostsReturned: r.HostsReturned,
			Delivery: r.Delivery, Worker: r.Worker, Seconds: r.Duration, At: r.At}
		for _, o := range r.Objects {
			mb.Objects = append(mb.Objects, o)
			m.Totals.Objects++
			m.Totals.Bytes += o.Bytes
		}
		m.Totals.HostsRequested += r.HostsRequested
		m.Totals.HostsReturned += r.HostsReturned
		m.Batches = append(m.Batches, mb)
	}
	m.Totals.Batches = len(m.Batches)
	m.Totals.HostsPlanned = rec.HostsPlanned
	m.Totals.HostListPages = len(m.HostList)
	m.Totals.Seconds = now.Sub(rec.Created).Seconds()

	manifestKey := objstore.ManifestKey(f.prefix, rec.ID)
	successKey := objstore.SuccessKey(f.prefix, rec.ID)
	if err := f.putJSON(ctx, manifestKey, m); err != nil {
		return fmt.Errorf("finish %s: writing the manifest: %w", rec.ID, err)
	}
	if _, err := f.store.Put(ctx, successKey, strings.NewReader(""), objstore.PutOptions{ContentType: "text/plain"}); err != nil {
		return fmt.Errorf("finish %s: writing _SUCCESS: %w", rec.ID, err)
	}
	// The watermark moves only now that the run is complete (I1), and only
	// forward: an older run completing late leaves it alone.
	if _, err := f.q.AdvanceWatermark(ctx, ledger.Watermark{Time: rec.Before, Run: rec.ID, By: f.owner, At: now, RunOpened: rec.Created}); err != nil {
		return fmt.Errorf("finish %s: advancing the watermark: %w", rec.ID, err)
	}
	if err := f.updateLatest(ctx, Latest{Run: rec.ID, Before: rec.Before, Manifest: manifestKey, Success: successKey, Updated: now}); err != nil {
		return fmt.Errorf("finish %s: writing latest.json: %w", rec.ID, err)
	}
	_, err = f.q.UpdateRun(ctx, rec.ID, func(r *ledger.RunRecord) error {
		r.State = ledger.RunComplete
		r.Completed = now
		r.ManifestKey = manifestKey
		totals := m.Totals
		r.Totals = &totals
		return nil
	})
	if err != nil {
		return fmt.Errorf("finish %s: marking complete: %w", rec.ID, err)
	}
	f.log.Info("run complete", "run", rec.ID, "batches", m.Totals.Batches, "objects", m.Totals.Objects,
		"bytes", m.Totals.Bytes, "hosts_requested", m.Totals.HostsRequested, "hosts_returned", m.Totals.HostsReturned,
		"manifest", manifestKey)
	return nil
}

// hostList returns run's Host List pages as the ledger recorded them. A
// page can be stored without its record: by a version that kept none (a
// run resumed across the upgrade), or by a planner that died between the
// Put and the record and whose resumed walk ended before that page (hosts
// left the window meanwhile). Each walk stores pages in order from a page
// at or before where the last one stopped, so the stored pages are always
// 1..m: the ledger is taken when it holds pages 1..n and page n+1 is not
// stored. Otherwise the pages are listed from the bucket, each with its
// record where there is one, so that the manifest lists every page the
// prefix holds (I8).
func (f *Finisher) hostList(ctx context.Context, run string) (Objects, error) {
	pages, err := f.q.Pages(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("finish %s: reading host list pages: %w", run, err)
	}
	recorded := make(map[string]objstore.Object, len(pages))
	whole := len(pages) > 0
	for i, p := range pages {
		recorded[p.Key] = p
		whole = whole && p.Key == objstore.HostListPageKey(f.prefix, run, i+1)
	}
	if whole {
		_, err := f.store.Stat(ctx, objstore.HostListPageKey(f.prefix, run, len(pages)+1))
		switch {
		case errors.Is(err, objstore.ErrNotFound):
			return pages, nil
		case err != nil:
			return nil, fmt.Errorf("finish %s: looking for an unrecorded host list page: %w", run, err)
		}
	}
	var listed Objects
	for obj, err := range f.store.List(ctx, objstore.RunPrefix(f.prefix, run)+"hostlist/") {
		if err != nil {
			return nil, fmt.Errorf("finish %s: listing host list pages: %w", run, err)
		}
		if p, ok := recorded[obj.Key]; ok {
			listed = append(listed, p)
			continue
		}
		listed = append(listed, objstore.Object{Key: obj.Key, Bytes: obj.Bytes, SHA256: obj.SHA256})
	}
	return listed, nil
}

// updateLatest points latest.json at l unless it already names a run with a
// later window end.
func (f *Finisher) updateLatest(ctx context.Context, l Latest) error {
	key := objstore.LatestKey(f.prefix)
	r, err := f.store.Get(ctx, key)
	switch {
	case err == nil:
		var cur Latest
		derr := json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&cur)
		r.Close()
		if derr == nil && cur.Before.After(l.Before) {
			return nil
		}
	case !errors.Is(err, objstore.ErrNotFound):
		return err
	}
	return f.putJSON(ctx, key, l)
}

func (f *Finisher) putJSON(ctx context.Context, key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = f.store.Put(ctx, key, bytes.NewReader(b), objstore.PutOptions{ContentType: "application/json"})
	return err
}
