package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/runid"
)

// Keys in QFETCH_RUNS:
//
//	<run>                 the RunRecord (run-level state, updated by compare-and-set)
//	<run>.done.<key>      one BatchResult per finished batch (key as Batch.Key)
//	<run>.split.<key>     one Split per batch that was split in two
//	<run>.fail.<key>      the retryable failures counted for a batch
//	<run>.page.<n>        Host List page n as stored (see RecordPage)
//	<run>.claim.<key>     the copy of a batch that holds it, and how it ended (see Claim)
//	<run>.drained.<key>   a batch of a failed or dropped run acknowledged unfetched
//
// A batch result is its own key so that finishing a batch is one write that
// contends with nobody, however many batches a run has; the run record is
// only written at run-level transitions.

// RunRecord is a run's state in QFETCH_RUNS under its ID.
type RunRecord struct {
	ID     string     `json:"id"`
	After  time.Time  `json:"after"`
	Before time.Time  `json:"before"`
	Params url.Values `json:"params,omitempty"`
	State  RunState   `json:"state"`
	// Planner is who opened (or last resumed) the run.
	Planner string `json:"planner,omitempty"`
	// PlannerID names the planner pass that holds the run's planning, one
	// per pass; only it may write progress, pages and the planned totals
	// (see [Ledger.UpdatePlanned]). Empty in records of older versions.
	PlannerID string `json:"planner_id,omitempty"`
	// Uploads are the Host List page uploads the planner pass began and
	// has not recorded as pages yet; a pass taking the run over aborts
	// them.
	Uploads []objstore.Upload `json:"uploads,omitempty"`
	// HostListPages is the final walk's last Host List page, set with
	// PlanningComplete by a fenced pass (0 before, and in records of older
	// versions): page records beyond it are an earlier walk's (see
	// [Ledger.Pages]).
	HostListPages int `json:"hostlist_pages,omitempty"`
	// PlanningComplete is set, with BatchesPlanned and HostsPlanned final,
	// once every batch is published.
	PlanningComplete bool `json:"planning_complete"`
	BatchesPlanned   int  `json:"batches_planned"`
	// HostsPlanned counts the hosts recorded in the planned batches; a
	// batch rebuilt after a planner restart may hold fewer (hosts that
	// left the window meanwhile, which the next run covers).
	HostsPlanned int `json:"hosts_planned"`
	// Progress is the planner's write-ahead record (see PlanProgress). A
	// resumed planner continues from there.
	Progress PlanProgress `json:"progress"`
	// Finisher is who claimed completion, at FinishStarted; a claim left
	// stale by a crash can be taken over.
	Finisher      string    `json:"finisher,omitempty"`
	FinishStarted time.Time `json:"finish_started,omitzero"`
	ManifestKey   string    `json:"manifest_key,omitempty"`
	// Totals are set when the run completes: what its manifest adds up to.
	Totals *Totals `json:"totals,omitempty"`
	// Accepted is set when an operator dropped dead-lettered batches of the
	// run: it stays incomplete on purpose (see [Acceptance]).
	Accepted *Acceptance `json:"accepted_incomplete,omitempty"`
	// Backfill is, for a KnowledgeBase pass (runid.IsKB), the QIDs it asks
	// for beyond its listing: QIDs that completed runs' detections use and
	// no completed pass returned (hostids form). Fixed when the pass opens,
	// so a resumed pass cuts the same batches.
	Backfill string `json:"backfill,omitempty"`
	// Covers is, for a KnowledgeBase pass, the newest completed detection
	// run whose detections' QIDs were checked for Backfill; the next pass
	// looks at runs after it.
	Covers string `json:"covers,omitempty"`
	// Error says why a failed run failed.
	Error     string    `json:"error,omitempty"`
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
	Completed time.Time `json:"completed,omitzero"`

	// Revision is the KV revision this record was read at.
	Revision uint64 `json:"-"`
}

// PlanProgress is the planner's write-ahead record. It is written after
// every earlier batch is acknowledged by the stream and before batch
// Batches is published, so no batch beyond it can be in the stream and
// every batch before it is;
// a resumed planner rebuilds batch Batches from the IDs in (Start.Last,
// End.Last] and publishes it again (the stream drops it if it is there)
// before it goes on. Batches are thus cut by ID, not by count, across a
// restart: a host that left the window meanwhile shrinks a batch but never
// shifts the next one.
type PlanProgress struct {
	Batches int        `json:"batches"`
	Start   PlanCursor `json:"start"` // just before batch Batches
	End     PlanCursor `json:"end"`   // just after batch Batches
}

// PlanCursor is a point in a Host List walk.
type PlanCursor struct {
	Page   int    `json:"page"`   // Host List page holding Last
	IDMin  uint64 `json:"id_min"` // id_min that page was requested with
	LastID uint64 `json:"last_id"`
	Hosts  int    `json:"hosts"` // hosts in the batches up to here
}

// Totals add a complete run up, as its manifest and its record say.
// Records written before HostsPlanned, HostListPages and Seconds were kept
// here lack them (they read as zero).
type Totals struct {
	Batches        int     `json:"batches"`
	Objects        int     `json:"objects"`
	Bytes          int64   `json:"bytes"`
	HostsPlanned   int     `json:"hosts_planned"`
	HostsRequested int     `json:"hosts_requested"`
	HostsReturned  int     `json:"hosts_returned"`
	HostListPages  int     `json:"hostlist_pages"`
	Seconds        float64 `json:"seconds"` // run creation to completion
}

// Acceptance records an operator's decision to leave a run incomplete by
// dropping its dead-lettered batches. The watermark still never moves past
// the run (I1): the next run's window starts at the last completed run, so
// it asks for the dropped batches' hosts again.
type Acceptance struct {
	By      string    `json:"by"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
	Dropped []string  `json:"dropped"` // batch keys
}

// BatchResult is what a worker records when a batch is stored, under
// <run>.done.<key>.
type BatchResult struct {
	Run   string `json:"run"`
	Batch string `json:"batch"` // Batch.Key()
	// HostsRequested is the batch's Hosts; HostsReturned what the response
	// held (hosts without detections are left out by the API).
	HostsRequested int `json:"hosts_requested"`
	HostsReturned  int `json:"hosts_returned"`
	// IDs are, for a KnowledgeBase batch, the QIDs its answer held
	// (hostids form); the pass's manifest adds them up into the QIDs
	// qfetch knows. Empty for a detection batch.
	IDs      string            `json:"ids,omitempty"`
	Objects  []objstore.Object `json:"objects"`
	Delivery uint64            `json:"delivery"`
	Worker   string            `json:"worker,omitempty"`
	Duration float64           `json:"duration_seconds"`
	At       time.Time         `json:"at"`
}

// Bytes is the size of all the batch's objects.
func (r BatchResult) Bytes() int64 {
	var n int64
	for _, o := range r.Objects {
		n += o.Bytes
	}
	return n
}

// Split records that a batch was replaced by two halves.
type Split struct {
	Batch  string    `json:"batch"`
	Halves [2]string `json:"halves"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Errors of the run-record helpers.
var (
	ErrRunExists   = errors.New("run record already exists")
	ErrRunNotFound = errors.New("run record not found")
	// ErrNoChange may be returned by an UpdateRun function to leave the
	// record as it is; UpdateRun then returns it unchanged with this error.
	ErrNoChange = errors.New("no change")
)

// maxCASAttempts bounds UpdateRun's retries; reaching it means something
// rewrites the record in a loop.
const maxCASAttempts = 100

func runKey(run string) (string, error) {
	if !msg.ValidRunID(run) {
		return "", failure.Permanent(fmt.Errorf("ledger: run ID %q is not 1-64 letters, digits, '-' or '_'", run))
	}
	return run, nil
}

// CreateRun stores a new run record, failing with [ErrRunExists] when one
// with the same ID is there. It sets Created and Updated.
func (l *Ledger) CreateRun(ctx context.Context, r RunRecord) (RunRecord, error) {
	key, err := runKey(r.ID)
	if err != nil {
		return RunRecord{}, err
	}
	now := time.Now().UTC()
	r.Created, r.Updated = now, now
	data, err := r.encode()
	if err != nil {
		return RunRecord{}, err
	}
	rev, err := l.runs.Create(ctx, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return RunRecord{}, fmt.Errorf("ledger: run %s: %w", r.ID, ErrRunExists)
	}
	if err != nil {
		return RunRecord{}, msg.ClassifyAPI(fmt.Errorf("ledger: create run %s: %w", r.ID, err))
	}
	r.Revision = rev
	return r, nil
}

// GetRun returns the run record of id, or an error wrapping [ErrRunNotFound].
func (l *Ledger) GetRun(ctx context.Context, id string) (RunRecord, error) {
	key, err := runKey(id)
	if err != nil {
		return RunRecord{}, err
	}
	e, err := l.runs.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return RunRecord{}, fmt.Errorf("ledger: run %s: %w", id, ErrRunNotFound)
	}
	if err != nil {
		return RunRecord{}, msg.ClassifyAPI(fmt.Errorf("ledger: read run %s: %w", id, err))
	}
	var r RunRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return RunRecord{}, failure.Permanent(fmt.Errorf("ledger: run record %s is garbled: %w", id, err))
	}
	r.Revision = e.Revision()
	return r, nil
}

// UpdateRun changes run id by compare-and-set: it reads the record, calls
// change on a copy, and writes it only if nobody wrote in between; otherwise
// it reads again and calls change again. change must therefore decide from
// the record it is given alone, which is what makes "exactly once" decisions
// safe: of several processes moving a run from fetching to completing, one
// write succeeds and the others see the new state on their retry.
//
// If change returns an error, nothing is written and UpdateRun returns that
// error with the record as read ([ErrNoChange] for "nothing to do"). On
// success the written record is returned, Updated set and Revision new.
func (l *Ledger) UpdateRun(ctx context.Context, id string, change func(*RunRecord) error) (RunRecord, error) {
	for attempt := 1; ; attempt++ {
		cur, err := l.GetRun(ctx, id)
		if err != nil {
			return RunRecord{}, err
		}
		next := cur
		next.Params = cloneValues(cur.Params)
		next.Uploads = slices.Clone(cur.Uploads)
		if err := change(&next); err != nil {
			return cur, err
		}
		next.ID = cur.ID // the key, not the caller's to change
		next.Updated = time.Now().UTC()
		data, err := next.encode()
		if err != nil {
			return cur, err
		}
		rev, err := l.runs.Update(ctx, id, data, cur.Revision)
		if err == nil {
			next.Revision = rev
			return next, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return cur, msg.ClassifyAPI(fmt.Errorf("ledger: update run %s: %w", id, err))
		}
		if attempt == maxCASAttempts {
			return cur, failure.Retryable(fmt.Errorf("ledger: update run %s: still contended after %d attempts", id, attempt))
		}
		if err := casPause(ctx, attempt); err != nil {
			return cur, err
		}
	}
}

// encode scrubs r's Error and marshals it. Every run record written passes
// here: an error's text can carry what a server echoed (a credential, a
// proxy URL), and the record is read by every role and copied into
// status.json (I7, #17.7).
func (r *RunRecord) encode() ([]byte, error) {
	r.Error = logging.Scrub(r.Error)
	return json.Marshal(r)
}

// RunIDs returns the IDs of every detection run record, ascending (run IDs
// sort by time). KnowledgeBase passes are left out (see [Ledger.KBPassIDs]):
// the watermark, latest.json and the planner's scan of runs are about
// detection runs alone.
func (l *Ledger) RunIDs(ctx context.Context) ([]string, error) {
	return l.recordIDs(ctx, func(id string) bool { return !runid.IsKB(id) })
}

// recordIDs returns the IDs of the run records keep keeps, ascending.
func (l *Ledger) recordIDs(ctx context.Context, keep func(id string) bool) ([]string, error) {
	// Run records are the only single-token keys.
	lister, err := l.runs.ListKeysFiltered(ctx, "*")
	if err != nil {
		return nil, msg.ClassifyAPI(fmt.Errorf("ledger: list runs: %w", err))
	}
	var ids []string
	for k := range lister.Keys() {
		if keep(k) {
			ids = append(ids, k)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// MarkDone records a batch's result under <run>.done.<batch>. A redelivered
// batch overwrites its own entry, so recording twice is harmless.
func (l *Ledger) MarkDone(ctx context.Context, r BatchResult) error {
	key, err := doneKey(r.Run, r.Batch)
	if err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := l.runs.Put(ctx, key, data); err != nil {
		return msg.ClassifyAPI(fmt.Errorf("ledger: record batch %s done: %w", key, err))
	}
	return nil
}

// CountFailure adds one to the retryable failures of batch (a Batch.Key) of
// run and returns the new count; workers dead-letter the batch once it
// reaches Config.MaxFailures. Deliveries are no measure: back-pressure and
// fleet-wide Naks are deliveries too.
func (l *Ledger) CountFailure(ctx context.Context, run, batch string) (int, error) {
	key, err := failKey(run, batch)
	if err != nil {
		return 0, err
	}
	for attempt := 1; attempt <= maxCASAttempts; attempt++ {
		n := 0
		var rev uint64
		e, err := l.runs.Get(ctx, key)
		switch {
		case err == nil:
			n, _ = strconv.Atoi(string(e.Value()))
			rev = e.Revision()
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			return 0, msg.ClassifyAPI(fmt.Errorf("ledger: count failure of %s: %w", key, err))
		}
		val := []byte(strconv.Itoa(n + 1))
		_, err = l.writeAt(ctx, key, val, rev)
		switch {
		case err == nil:
			return n + 1, nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			if err := casPause(ctx, attempt); err != nil {
				return 0, err
			}
		default:
			return 0, msg.ClassifyAPI(fmt.Errorf("ledger: count failure of %s: %w", key, err))
		}
	}
	return 0, failure.Retryable(fmt.Errorf("ledger: count failure of %s: still contended", key))
}

// ForgiveFailure takes back one failure counted for batch (a Batch.Key) of
// run by [Ledger.CountFailure], never going below 0: a charge made for a
// failure that turned out to be the fleet's (an outage), not the batch's.
func (l *Ledger) ForgiveFailure(ctx context.Context, run, batch string) error {
	key, err := failKey(run, batch)
	if err != nil {
		return err
	}
	for attempt := 1; attempt <= maxCASAttempts; attempt++ {
		n, rev, err := l.failureCount(ctx, key)
		if err != nil || n == 0 {
			return err
		}
		_, err = l.runs.Update(ctx, key, []byte(strconv.Itoa(n-1)), rev)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			if err := casPause(ctx, attempt); err != nil {
				return err
			}
		default:
			return msg.ClassifyAPI(fmt.Errorf("ledger: forgive failure of %s: %w", key, err))
		}
	}
	return failure.Retryable(fmt.Errorf("ledger: forgive failure of %s: still contended", key))
}

// FailureCount returns the failures counted for batch (a Batch.Key) of run,
// 0 when none, changing nothing.
func (l *Ledger) FailureCount(ctx context.Context, run, batch string) (int, error) {
	key, err := failKey(run, batch)
	if err != nil {
		return 0, err
	}
	n, _, err := l.failureCount(ctx, key)
	return n, err
}

// failureCount reads a failure count key: its count and revision, both 0
// when it is absent or deleted.
func (l *Ledger) failureCount(ctx context.Context, key string) (int, uint64, error) {
	e, err := l.runs.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, msg.ClassifyAPI(fmt.Errorf("ledger: read failure count %s: %w", key, err))
	}
	n, err := strconv.Atoi(string(e.Value()))
	if err != nil {
		return 0, 0, failure.Permanent(fmt.Errorf("ledger: failure count %s is garbled: %q", key, e.Value()))
	}
	return n, e.Revision(), nil
}

func failKey(run, batch string) (string, error) {
	key, err := doneKey(run, batch)
	if err != nil {
		return "", err
	}
	return run + ".fail." + strings.TrimPrefix(key, run+".done."), nil
}

// writeAt writes key by compare-and-set on revision rev, read before: a
// create when rev is 0 (the key was absent). A key written meanwhile fails
// with jetstream.ErrKeyExists or ErrKeyRevisionMismatch, unwrapped, for the
// caller to read again.
func (l *Ledger) writeAt(ctx context.Context, key string, data []byte, rev uint64) (uint64, error) {
	if rev == 0 {
		return l.runs.Create(ctx, key, data)
	}
	return l.runs.Update(ctx, key, data, rev)
}

// casPause waits a short random time before compare-and-set attempt+1, so
// that writers that collided spread out, or returns the cause of ctx's end.
func casPause(ctx context.Context, attempt int) error {
	t := time.NewTimer(time.Duration(rand.Int64N(int64(min(attempt, 10)) * int64(time.Millisecond))))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Failures returns the retryable failures counted so far per batch key of
// run (see [Ledger.CountFailure]); their sum is the run's retries.
func (l *Ledger) Failures(ctx context.Context, run string) (map[string]int, error) {
	if _, err := runKey(run); err != nil {
		return nil, err
	}
	out := map[string]int{}
	err := l.eachValue(ctx, run+".fail.>", func(key string, v []byte) error {
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return failure.Permanent(fmt.Errorf("ledger: failure count %s is garbled: %q", key, v))
		}
		out[strings.TrimPrefix(key, run+".fail.")] = n
		return nil
	})
	return out, err
}

// ResetFailures forgets batch's failure count, so that a replayed batch gets
// its full share of retries again.
func (l *Ledger) ResetFailures(ctx context.Context, run, batch string) error {
	key, err := failKey(run, batch)
	if err != nil {
		return err
	}
	if err := l.runs.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return msg.ClassifyAPI(fmt.Errorf("ledger: reset failure count %s: %w", key, err))
	}
	return nil
}

// MarkSplit records that batch (a Batch.Key) of run was split, before its
// halves are published.
func (l *Ledger) MarkSplit(ctx context.Context, run string, s Split) error {
	if _, err := runKey(run); err != nil {
		return err
	}
	if !msg.ValidBatchKey(s.Batch) {
		return failure.Permanent(fmt.Errorf("ledger: batch key %q is not like 17 or 17.1.2", s.Batch))
	}
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if _, err := l.runs.Put(ctx, run+".split."+s.Batch, data); err != nil {
		return msg.ClassifyAPI(fmt.Errorf("ledger: record split of %s.%s: %w", run, s.Batch, err))
	}
	return nil
}

func doneKey(run, batch string) (string, error) {
	if _, err := runKey(run); err != nil {
		return "", err
	}
	if !msg.ValidBatchKey(batch) {
		return "", failure.Permanent(fmt.Errorf("ledger: batch key %q is not like 17 or 17.1.2", batch))
	}
	return run + ".done." + batch, nil
}

// CountDone returns how many batch results run has, without transferring
// them: it asks the server how many distinct done keys a filtered consumer
// would deliver. Completion code can call it after every batch and list the
// results only when the count says the run may be complete. Done keys are
// never deleted, so the count only grows.
func (l *Ledger) CountDone(ctx context.Context, run string) (int, error) {
	return l.countKeys(ctx, run, "done")
}

// countKeys returns how many distinct keys run has under kind
// (<run>.<kind>.>), asking the server how many a filtered consumer
// delivering the last value per subject would deliver, without receiving
// any.
func (l *Ledger) countKeys(ctx context.Context, run, kind string) (int, error) {
	if _, err := runKey(run); err != nil {
		return 0, err
	}
	stream := "KV_" + BucketRuns
	c, err := l.js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubject:     "$KV." + BucketRuns + "." + run + "." + kind + ".>",
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       true,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: time.Minute, // in case the delete below is lost
	})
	if err != nil {
		return 0, msg.ClassifyAPI(fmt.Errorf("ledger: count %s keys of %s: %w", kind, run, err))
	}
	info := c.CachedInfo()
	_ = l.js.DeleteConsumer(ctx, stream, info.Name) // the inactivity threshold covers a failure
	return int(info.NumPending), nil
}

// DoneBatches returns every batch result of run, ordered by batch key.
func (l *Ledger) DoneBatches(ctx context.Context, run string) ([]BatchResult, error) {
	return readByBatch(ctx, l, run, "done", "batch result", func(r BatchResult) string { return r.Batch })
}

// Splits returns every split recorded for run, ordered by batch key.
func (l *Ledger) Splits(ctx context.Context, run string) ([]Split, error) {
	return readByBatch(ctx, l, run, "split", "split record", func(s Split) string { return s.Batch })
}

// readByBatch decodes every record of run under kind (run.kind.<batch key>),
// ordered by batch key; what names a record in the error of a garbled one.
func readByBatch[T any](ctx context.Context, l *Ledger, run, kind, what string, batch func(T) string) ([]T, error) {
	if _, err := runKey(run); err != nil {
		return nil, err
	}
	var out []T
	err := l.eachValue(ctx, run+"."+kind+".>", func(key string, v []byte) error {
		var r T
		if err := json.Unmarshal(v, &r); err != nil {
			return failure.Permanent(fmt.Errorf("ledger: %s %s is garbled: %w", what, key, err))
		}
		out = append(out, r)
		return nil
	})
	slices.SortFunc(out, func(a, b T) int { return CompareBatchKeys(batch(a), batch(b)) })
	return out, err
}

// eachValue calls fn with the latest value of every live key matching
// pattern.
func (l *Ledger) eachValue(ctx context.Context, pattern string, fn func(key string, value []byte) error) error {
	w, err := l.runs.Watch(ctx, pattern, jetstream.IgnoreDeletes())
	if err != nil {
		return msg.ClassifyAPI(fmt.Errorf("ledger: read %s: %w", pattern, err))
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e := <-w.Updates():
			if e == nil { // every current value has been delivered
				return nil
			}
			if err := fn(e.Key(), e.Value()); err != nil {
				return err
			}
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// CompareBatchKeys orders batch keys as numbers, part by part: "2" < "10" <
// "10.1" < "10.2". Malformed keys sort by length and bytes.
func CompareBatchKeys(a, b string) int {
	for a != "" || b != "" {
		var x, y string
		x, a, _ = strings.Cut(a, ".")
		y, b, _ = strings.Cut(b, ".")
		if c := len(x) - len(y); c != 0 {
			return c
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// cloneValues deep-copies v, so that a change function cannot reach into
// the record it was given through the shared slices.
func cloneValues(v url.Values) url.Values {
	out := maps.Clone(v)
	for k, vs := range out {
		out[k] = slices.Clone(vs)
	}
	return out
}
