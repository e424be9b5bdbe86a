// Package finish completes a run once every batch is stored: it removes
// what the run's result does not name, writes manifest.json, then
// _SUCCESS, points latest.json at the run and marks it complete — once,
// whoever gets there first. A KnowledgeBase pass (runid.IsKB) is sealed
// the same way under kb/<pass>/, its manifest adds the QIDs qfetch knows,
// and kb/latest.json, never latest.json, points at it. The planner then moves the watermark over it
// (plan.Advancer): workers, which finish runs, hold no right on it.
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
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/runid"
)

// Ledger is the part of the run ledger completion reads and claims.
type Ledger interface {
	GetRun(ctx context.Context, id string) (ledger.RunRecord, error)
	UpdateRun(ctx context.Context, id string, change func(*ledger.RunRecord) error) (ledger.RunRecord, error)
	CountDone(ctx context.Context, run string) (int, error)
	DoneBatches(ctx context.Context, run string) ([]ledger.BatchResult, error)
	Splits(ctx context.Context, run string) ([]ledger.Split, error)
	Pages(ctx context.Context, run string) ([]objstore.Object, error)
}

// Store is where the manifest and markers go, and what the run's prefix is
// checked and cleaned in.
type Store interface {
	// Put with IfAbsent fails with an error wrapping objstore.ErrExists,
	// storing nothing, when the key holds an object; with IfMatch, with
	// objstore.ErrChanged when it holds another than that ETag.
	Put(ctx context.Context, key string, r io.Reader, opts objstore.PutOptions) (objstore.Object, error)
	// Get's reader must be one objstore.ETag reads (both stores' are):
	// latest.json is replaced on the ETag read.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	List(ctx context.Context, prefix string) iter.Seq2[objstore.Object, error]
	// Delete removes key; a missing key is no error.
	Delete(ctx context.Context, key string) error
	// AbortUploads aborts the uploads still open under the folders.
	AbortUploads(ctx context.Context, folders ...string) (int, error)
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
	tables Tables
}

// Config is a finisher's settings.
type Config struct {
	Prefix string
	Owner  string
	// StaleClaim is how old a finisher's claim may get before another caller
	// takes the completion over; default 5m.
	StaleClaim time.Duration
	Now        func() time.Time
	// Tables is told of every run this finisher seals; nil: nobody.
	Tables Tables
}

// New builds a finisher.
func New(cfg Config, q Ledger, store Store, log *slog.Logger) *Finisher {
	if cfg.StaleClaim <= 0 {
		cfg.StaleClaim = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Finisher{q: q, store: store, prefix: cfg.Prefix, owner: cfg.Owner, stale: cfg.StaleClaim, now: cfg.Now, log: log, tables: cfg.Tables}
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
	// Every planned batch needs at least one result (its own, or its
	// halves'): a quick count rules out most calls before the full check
	// lists every result. It needs no splits, so they are read after it:
	// workers call this after every batch, and reading the splits is a
	// consumer created and deleted on the server each time.
	n, err := f.q.CountDone(ctx, run)
	if err != nil {
		return err
	}
	if n < rec.BatchesPlanned {
		return nil
	}
	// Splits are still read before the results, as they always were.
	splits, err := f.q.Splits(ctx, run)
	if err != nil {
		return err
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
	// Kind is "kb" for a KnowledgeBase pass, whose hostlist holds its QID
	// listing pages (qids/) and whose batches' objects its KnowledgeBase
	// answers (vulns/); empty for a detection run.
	Kind string `json:"kind,omitempty"`
	// KnownQIDs are, for a KnowledgeBase pass, the QIDs qfetch knows after
	// it (hostids form): the previous complete pass's, the ones this pass's
	// answers held and the ones its backfill asked for, so that a QID
	// Qualys does not return is not asked again every pass.
	KnownQIDs string `json:"known_qids,omitempty"`
}

// KindKB is Manifest.Kind of a KnowledgeBase pass.
const KindKB = "kb"

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
	Batch          string `json:"batch"`
	HostsRequested int    `json:"hosts_requested"`
	HostsReturned  int    `json:"hosts_returned"`
	// IDs are, for a KnowledgeBase batch, the QIDs its answer held.
	IDs      string    `json:"ids,omitempty"`
	Objects  Objects   `json:"objects"`
	Delivery uint64    `json:"delivery"`
	Worker   string    `json:"worker,omitempty"`
	Seconds  float64   `json:"seconds"`
	At       time.Time `json:"at"`
}

// Latest is latest.json: the newest complete run; and kb/latest.json: the
// newest complete KnowledgeBase pass.
type Latest struct {
	Run      string    `json:"run"`
	Before   time.Time `json:"before"`
	Manifest string    `json:"manifest"`
	Success  string    `json:"success"`
	Updated  time.Time `json:"updated"`
}

// complete makes the run's prefix hold exactly what its result names (see
// seal), then writes the manifest, then _SUCCESS, then latest.json, then
// marks the run complete (the planner moves the watermark over it then).
// Every step is safe to repeat, so a finisher taking over a stale claim
// simply does them all again; and a stale finisher that wakes up after
// another one sealed the run changes nothing in it: it removes the same
// keys, finds the same manifest there and adopts it, and finds _SUCCESS
// there.
func (f *Finisher) complete(ctx context.Context, rec ledger.RunRecord, used []ledger.BatchResult, splits []ledger.Split) error {
	now := f.now().UTC()
	m := Manifest{Run: rec.ID, After: rec.After, Before: rec.Before, Params: rec.Params,
		Created: rec.Created, Completed: now, Finisher: f.owner, Splits: splits}
	stored, err := f.stored(ctx, rec.ID)
	if err != nil {
		return err
	}
	pages, err := f.q.Pages(ctx, rec.ID)
	if err != nil {
		return fmt.Errorf("finish %s: reading host list pages: %w", rec.ID, err)
	}
	m.HostList = hostList(f.prefix, rec, pages, stored)
	slices.SortFunc(used, func(a, b ledger.BatchResult) int { return ledger.CompareBatchKeys(a.Batch, b.Batch) })
	latestKey := objstore.LatestKey(f.prefix)
	if runid.IsKB(rec.ID) {
		m.Kind, latestKey = KindKB, objstore.KBLatestKey(f.prefix)
		if m.KnownQIDs, err = f.knownQIDs(ctx, rec, used); err != nil {
			return err
		}
	}
	for _, r := range used {
		mb := ManifestBatch{Batch: r.Batch, HostsRequested: r.HostsRequested, HostsReturned: r.HostsReturned, IDs: r.IDs,
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

	if err := f.seal(ctx, rec.ID, m, stored); err != nil {
		return err
	}
	manifestKey := objstore.ManifestKey(f.prefix, rec.ID)
	successKey := objstore.SuccessKey(f.prefix, rec.ID)
	if m, err = f.writeManifest(ctx, manifestKey, m); err != nil {
		return err
	}
	// _SUCCESS there already was written by a finisher that wrote (or
	// adopted) this same manifest: the run is sealed either way.
	_, err = f.store.Put(ctx, successKey, strings.NewReader(""), objstore.PutOptions{ContentType: "text/plain", IfAbsent: true})
	if err != nil && !errors.Is(err, objstore.ErrExists) {
		return fmt.Errorf("finish %s: writing _SUCCESS: %w", rec.ID, err)
	}
	if err := f.updateLatest(ctx, latestKey, Latest{Run: rec.ID, Before: rec.Before, Manifest: manifestKey, Success: successKey, Updated: now}); err != nil {
		return fmt.Errorf("finish %s: writing %s: %w", rec.ID, latestKey, err)
	}
	// Before the run is marked complete: a finisher that dies after this
	// mark and before queueing the tables would leave them to nobody, while
	// one that dies before it leaves them to the finisher taking its claim
	// over, which does every step again.
	f.sealedTables(ctx, m)
	_, err = f.q.UpdateRun(ctx, rec.ID, func(r *ledger.RunRecord) error {
		if r.State == ledger.RunComplete {
			return errNotMine // completed by the finisher that took this one's claim over: its record stands
		}
		r.State = ledger.RunComplete
		r.Completed = now
		r.ManifestKey = manifestKey
		totals := m.Totals
		r.Totals = &totals
		return nil
	})
	if err != nil && !errors.Is(err, errNotMine) {
		return fmt.Errorf("finish %s: marking complete: %w", rec.ID, err)
	}
	f.log.Info("run complete", "run", rec.ID, "kind", m.Kind, "batches", m.Totals.Batches, "objects", m.Totals.Objects,
		"bytes", m.Totals.Bytes, "hosts_requested", m.Totals.HostsRequested, "hosts_returned", m.Totals.HostsReturned,
		"manifest", manifestKey)
	return nil
}

// pageDir is the folder of run's listing pages: hostlist/, or qids/ for a
// KnowledgeBase pass; itemDir the folder of its batches' answers:
// detections/, or vulns/. Both come from the one place keys are made.
func pageDir(prefix, run string) string {
	return path.Dir(objstore.HostListPageKey(prefix, run, 1)) + "/"
}

func itemDir(prefix, run string) string {
	return path.Dir(objstore.DetectionKey(prefix, run, 1, 1)) + "/"
}

// stored lists what run's batch answers and listing pages folders hold
// (detections/ and hostlist/, or vulns/ and qids/), by key.
func (f *Finisher) stored(ctx context.Context, run string) (map[string]objstore.Object, error) {
	out := map[string]objstore.Object{}
	for _, dir := range []string{itemDir(f.prefix, run), pageDir(f.prefix, run)} {
		for o, err := range f.store.List(ctx, dir) {
			if err != nil {
				return nil, fmt.Errorf("finish %s: listing %s: %w", run, dir, err)
			}
			out[o.Key] = o
		}
	}
	return out, nil
}

// hostList returns the Host List pages the manifest lists, given the pages
// the ledger recorded for the run (in page order) and what its prefix
// stores. Page keys sort in page order (objstore.HostListPageKey).
//
// A run planned by this version (PlannerID set) has every page recorded by
// the planner pass that stored it, and a pass resuming the run stores and
// records again every page from where its walk starts, which is at or
// before where the last walk stopped. So the recorded pages are the final
// walk's, and an unrecorded page after the last recorded one is a leftover
// of an earlier pass whose walk went further (hosts left the window before
// the resume): it is not listed, and seal removes it. An unrecorded page
// before the last recorded one can only come from a version that recorded
// no pages, before this one resumed the run: it is the only copy of hosts
// the batches were cut from, and is listed as stored.
//
// A run whose planning ended before PlannerID existed keeps the earlier
// rule. A page can be stored there without its record: by a version that
// kept none (a run resumed across the upgrade), or by a planner that died
// between the Put and the record and whose resumed walk ended before that
// page. The ledger is taken when it holds pages 1..n, stored as recorded,
// and page n+1 is not stored; otherwise every stored page is listed, with its record where the
// record matches the object's size, so that the manifest lists every page
// the prefix holds (I8).
func hostList(prefix string, rec ledger.RunRecord, pages []objstore.Object, stored map[string]objstore.Object) Objects {
	dir := pageDir(prefix, rec.ID)
	recorded := make(map[string]objstore.Object, len(pages))
	last := ""
	for _, p := range pages {
		if p.Key != "" {
			recorded[p.Key] = p
			last = max(last, p.Key)
		}
	}
	var out Objects
	if rec.PlannerID != "" {
		for _, key := range slices.Sorted(maps.Keys(stored)) {
			if p, ok := recorded[key]; ok {
				out = append(out, p)
				delete(recorded, key)
			} else if strings.HasPrefix(key, dir) && key < last {
				out = append(out, listed(stored[key]))
			}
		}
		// A recorded page that is not stored is listed all the same:
		// seal refuses to seal a run without it.
		for _, key := range slices.Sorted(maps.Keys(recorded)) {
			out = append(out, recorded[key])
		}
		slices.SortFunc(out, func(a, b objstore.Object) int { return strings.Compare(a.Key, b.Key) })
		return out
	}
	whole := len(pages) > 0
	for i, p := range pages {
		s, ok := stored[p.Key]
		whole = whole && ok && s.Bytes == p.Bytes && p.Key == objstore.HostListPageKey(prefix, rec.ID, i+1)
	}
	if _, next := stored[objstore.HostListPageKey(prefix, rec.ID, len(pages)+1)]; whole && !next {
		return pages
	}
	for _, key := range slices.Sorted(maps.Keys(stored)) {
		if !strings.HasPrefix(key, dir) {
			continue
		}
		if p, ok := recorded[key]; ok && p.Bytes == stored[key].Bytes {
			out = append(out, p)
			continue
		}
		out = append(out, listed(stored[key]))
	}
	return out
}

// listed is a stored object as the manifest lists it without a record: its
// checksum and hosts unknown.
func listed(o objstore.Object) objstore.Object {
	return objstore.Object{Key: o.Key, Bytes: o.Bytes}
}

// seal makes the run's prefix hold exactly the objects m lists: each of
// them must be stored with the bytes recorded, or the run is not sealed (a
// permanent error names the first that is not); then every other object
// under detections/ and hostlist/ is removed: a split batch's own pages,
// pages of an earlier attempt beyond a shorter redelivery's last one, Host
// List pages beyond the planner's final walk.
//
// What m lists is a pure function of the run's final ledger state: the
// planned batches, their done and split records and the recorded pages,
// none of which changes once the run is claimed for completion (a batch's
// claim is final when its record is written, and a late copy cannot land
// another one: design.md I8), and, for runs planned before PlannerID
// existed, Host List pages that nothing writes any more. So two finishers,
// one of them stale and waking up after the other sealed the run, remove
// the same keys, and the stale one removes nothing the seal kept. Nothing
// that the store holds beyond that is trusted: objects are listed, not
// assumed.
func (f *Finisher) seal(ctx context.Context, run string, m Manifest, stored map[string]objstore.Object) error {
	keep := map[string]bool{}
	check := func(o objstore.Object) error {
		keep[o.Key] = true
		s, ok := stored[o.Key]
		switch {
		case !ok:
			return failure.Permanent(fmt.Errorf("finish %s: %s is not stored: not sealing", run, o.Key))
		case s.Bytes != o.Bytes:
			return failure.Permanent(fmt.Errorf("finish %s: %s holds %d bytes, the ledger recorded %d: not sealing", run, o.Key, s.Bytes, o.Bytes))
		}
		return nil
	}
	batches := map[string]bool{} // the used batches, by the stem of their keys
	for _, o := range m.HostList {
		if err := check(o); err != nil {
			return err
		}
	}
	for _, b := range m.Batches {
		for _, o := range b.Objects {
			if err := check(o); err != nil {
				return err
			}
			batches[batchStem(o.Key)] = true
		}
	}
	var removed []string
	var unused, stale, pages int
	for _, key := range slices.Sorted(maps.Keys(stored)) {
		if keep[key] {
			continue
		}
		if err := f.store.Delete(ctx, key); err != nil {
			return fmt.Errorf("finish %s: removing %s, which the run's result does not name: %w", run, key, err)
		}
		removed = append(removed, key)
		switch {
		case strings.HasPrefix(key, pageDir(f.prefix, run)):
			pages++
		case batches[batchStem(key)]:
			stale++
		default:
			unused++
		}
	}
	if len(removed) > 0 {
		f.log.Info("removed objects the run's result does not name", "run", run, "objects", len(removed),
			"unused_batches", unused, "stale_pages", stale, "hostlist_pages", pages,
			"first", removed[:min(len(removed), 5)])
	}
	// An upload that escaped its record (created by the service while its
	// writer saw an error, or begun by a writer that died before recording
	// it) can never be completed now, but would stay in the prefix.
	aborted, err := f.store.AbortUploads(ctx, itemDir(f.prefix, run), pageDir(f.prefix, run))
	if err != nil {
		return fmt.Errorf("finish %s: aborting uploads left in the run: %w", run, err)
	}
	if aborted > 0 {
		f.log.Info("aborted uploads the run's result does not name", "run", run, "uploads", aborted)
	}
	return nil
}

// batchStem is a detection key's name without its page: batch-000017.2.1
// for batch-000017.2.1-p0002.xml.
func batchStem(key string) string {
	name := strings.TrimSuffix(path.Base(key), ".xml")
	if i := strings.LastIndex(name, "-p"); i >= 0 {
		if _, err := strconv.Atoi(name[i+2:]); err == nil {
			name = name[:i]
		}
	}
	return name
}

// writeManifest writes m as key unless an object is there. One that is was
// written by a finisher before this one: this one took over its stale claim
// after it died, or is the stale one, waking up after another sealed the
// run. If it lists the same objects (the keep-set is the same for both; see
// seal) it is adopted, so that what _SUCCESS vouches for never changes;
// otherwise the run is not sealed.
func (f *Finisher) writeManifest(ctx context.Context, key string, m Manifest) (Manifest, error) {
	err := f.putJSON(ctx, key, m, objstore.PutOptions{ContentType: "application/json", IfAbsent: true})
	switch {
	case err == nil:
		return m, nil
	case !errors.Is(err, objstore.ErrExists):
		return m, fmt.Errorf("finish %s: writing the manifest: %w", m.Run, err)
	}
	r, err := f.store.Get(ctx, key)
	if err != nil {
		return m, fmt.Errorf("finish %s: reading the manifest already there: %w", m.Run, err)
	}
	body, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return m, fmt.Errorf("finish %s: reading the manifest already there: %w", m.Run, err)
	}
	var cur Manifest
	if err := json.Unmarshal(body, &cur); err != nil {
		return m, failure.Permanent(fmt.Errorf("finish: manifest.json of run %s exists and cannot be read (%v): not sealing", m.Run, err))
	}
	if !sameObjects(cur, m) {
		return m, failure.Permanent(fmt.Errorf("finish: manifest.json of run %s exists and lists other objects: not sealing", m.Run))
	}
	f.log.Info("adopting the manifest another finisher wrote", "run", m.Run, "finisher", cur.Finisher, "manifest", key)
	return cur, nil
}

// sameObjects reports whether a and b list the same objects (key, bytes and
// checksum), the Host List pages and the batches' each.
func sameObjects(a, b Manifest) bool {
	return slices.Equal(objectIDs(a.HostList), objectIDs(b.HostList)) &&
		slices.Equal(objectIDs(batchObjects(a)), objectIDs(batchObjects(b)))
}

func batchObjects(m Manifest) Objects {
	var out Objects
	for _, b := range m.Batches {
		out = append(out, b.Objects...)
	}
	return out
}

type objectID struct {
	key, sha256 string
	bytes       int64
}

func objectIDs(l Objects) []objectID {
	out := make([]objectID, len(l))
	for i, o := range l {
		out[i] = objectID{key: o.Key, sha256: o.SHA256, bytes: o.Bytes}
	}
	slices.SortFunc(out, func(a, b objectID) int { return strings.Compare(a.key, b.key) })
	return out
}

// latestTries bounds updateLatest's attempts. Each refused write means
// another finisher wrote the key in between: runs finishing at the same
// moment are few, and the second round mostly finds a later run there.
const latestTries = 16

// updateLatest points key (latest.json or kb/latest.json) at l unless it
// already names l's run or a run with a later window end.
//
// Finishers of different runs (workers completing two runs at once) race
// here, so the read and the write are a compare-and-set the store enforces,
// never a check before a write: the write is made on condition that key
// still holds what was read (IfMatch its ETag; IfAbsent when it held
// nothing), and a refused write reads again and decides again. A finisher
// of an older run that read before a newer run's finisher wrote is refused,
// and then finds the newer run there: latest.json never moves back.
func (f *Finisher) updateLatest(ctx context.Context, key string, l Latest) error {
	var err error
	for range latestTries {
		if err := ctx.Err(); err != nil {
			return err
		}
		var opts objstore.PutOptions
		var done bool
		if opts, done, err = f.decideLatest(ctx, key, l); err != nil || done {
			return err
		}
		opts.ContentType = "application/json"
		err = f.putJSON(ctx, key, l, opts)
		if !errors.Is(err, objstore.ErrChanged) && !errors.Is(err, objstore.ErrExists) {
			return err
		}
	}
	return failure.Retryable(fmt.Errorf("still changing after %d conditional writes: %w", latestTries, err))
}

// decideLatest reads key and says whether l is to be written there, and on
// which condition: done when key already names l's run or a later one.
// Content that does not decode, or names a window ending more than
// latestSkew after the store's time of it, is replaced; a failed read is an
// error, not content. The store's Get must give a reader that has an
// objstore.ETag and objstore.Modified.
func (f *Finisher) decideLatest(ctx context.Context, key string, l Latest) (opts objstore.PutOptions, done bool, err error) {
	r, err := f.store.Get(ctx, key)
	switch {
	case errors.Is(err, objstore.ErrNotFound):
		return objstore.PutOptions{IfAbsent: true}, false, nil
	case err != nil:
		return opts, false, err
	}
	defer r.Close()
	body, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return opts, false, err
	}
	tag, err := objstore.ETag(r)
	if err != nil {
		return opts, false, err
	}
	stored, err := objstore.Modified(r)
	if err != nil {
		return opts, false, err
	}
	var cur Latest
	if json.Unmarshal(body, &cur) == nil && !cur.Before.After(stored.Add(latestSkew)) &&
		(cur.Run == l.Run || cur.Before.After(l.Before)) {
		return opts, true, nil
	}
	return objstore.PutOptions{IfMatch: tag}, false, nil
}

// latestSkew is how far past the time latest.json was stored (the store's
// clock) the window it names may end and be kept. A run's window ends at
// its planner's clock before the run is fetched, so only a planner's clock
// gone wrong or a forged object ends it later, and it would hold
// latest.json from every run until that day. The finisher's own clock
// plays no part: one running behind must not take a newer run for a
// future one and move latest.json back.
const latestSkew = 24 * time.Hour

func (f *Finisher) putJSON(ctx context.Context, key string, v any, opts objstore.PutOptions) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = f.store.Put(ctx, key, bytes.NewReader(b), opts)
	return err
}
