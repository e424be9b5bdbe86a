package runstat

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/runid"
)

// Metrics are the run-level series: what an alert on the whole system
// needs, whichever worker pod serves them. Labels carry states only.
type Metrics struct {
	lastComplete *prometheus.GaugeVec // no labels; absent until a run completed
	deadLetters  prometheus.Gauge
	queued       prometheus.Gauge
	waiting      prometheus.Gauge
	inFlight     prometheus.Gauge
	maxInFlight  prometheus.Gauge
	runs         *prometheus.GaugeVec // state
	lost         prometheus.Gauge
	current      *prometheus.GaugeVec // measure; only from the status writer
	refreshed    prometheus.Gauge
	errors       prometheus.Counter
	// tablesIncomplete has no labels; absent without a TablesComplete.
	tablesIncomplete *prometheus.GaugeVec

	// The KnowledgeBase passes' series (see kb.go).
	kbLastComplete *prometheus.GaugeVec // no labels; absent until a pass completed
	kbPasses       *prometheus.GaugeVec // state
	kbBatches      *prometheus.GaugeVec // state, of the newest pass

	gate           *gate
	lastCompleteNS atomic.Int64 // unix nanoseconds; 0 until a run completed
	now            func() time.Time
}

// NewMetrics creates the series and registers them with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{now: time.Now}
	m.lastComplete = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "qfetch_last_complete_run_timestamp_seconds",
		Help: "Unix time the newest complete run completed; absent until one has.",
	}, nil)
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "qfetch_last_complete_run_age_seconds",
		Help: "Seconds since the newest complete run completed, at scrape time; +Inf until one has.",
	}, m.age)
	m.deadLetters = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "qfetch_dead_letters",
		Help: "Dead-lettered batches waiting for an operator (records in QFETCH_DLQ).",
	})
	m.queued = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "qfetch_queue_batches",
		Help: "Batches queued for a worker and not yet delivered: the queue lag.",
	})
	m.waiting = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "qfetch_queue_waiting_batches",
		Help: "Batches waiting out a retry back-off as a JetStream schedule: queued work that is not yet deliverable (KEDA's lag does not see it).",
	})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "qfetch_queue_in_flight_batches",
		Help: "Batches delivered and not yet acknowledged (being fetched).",
	})
	m.maxInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "qfetch_queue_max_in_flight",
		Help: "The fleet's cap on batches in flight (the consumer's MaxAckPending, QFETCH_MAX_IN_FLIGHT).",
	})
	m.runs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "qfetch_runs",
		Help: "The 10 newest runs by state.",
	}, []string{"state"})
	for _, s := range ledger.States {
		m.runs.WithLabelValues(string(s))
	}
	m.lost = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "qfetch_batches_lost",
		Help: "Planned batches of the 10 newest runs that are neither done, queued nor dead-lettered: the queue lost them (purged); their runs count as failed.",
	})
	m.current = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "qfetch_current_run",
		Help: "The newest open run: batches_planned, batches_done, batches_queued, bytes, eta_seconds. Served by the worker that writes status.json.",
	}, []string{"measure"})
	m.refreshed = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "qfetch_status_refresh_timestamp_seconds",
		Help: "Unix time the run-level series were last refreshed.",
	})
	m.errors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "qfetch_status_refresh_errors_total",
		Help: "Refreshes of the run-level series that failed.",
	})
	m.newKBMetrics()
	m.tablesIncomplete = newTablesIncomplete()
	m.gate = &gate{cs: []prometheus.Collector{m.lastComplete, age, m.deadLetters, m.queued, m.waiting, m.inFlight,
		m.maxInFlight, m.runs, m.lost, m.current, m.refreshed, m.tablesIncomplete, m.kbLastComplete, m.kbPasses, m.kbBatches}}
	if reg != nil {
		reg.MustRegister(m.gate, m.errors)
	}
	return m
}

// gate serves its collectors only once opened: before the first refresh
// every gauge would read 0 (no dead letters, no cap), which an alert must
// not take for the truth; absent series say "not known yet".
type gate struct {
	cs   []prometheus.Collector
	open atomic.Bool
}

func (g *gate) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range g.cs {
		c.Describe(ch)
	}
}

// Collectors lists what the gate holds, for whoever inventories the series
// a process can serve.
func (g *gate) Collectors() []prometheus.Collector { return g.cs }

func (g *gate) Collect(ch chan<- prometheus.Metric) {
	if !g.open.Load() {
		return
	}
	for _, c := range g.cs {
		c.Collect(ch)
	}
}

// age runs in the scrape's goroutine.
func (m *Metrics) age() float64 {
	ns := m.lastCompleteNS.Load()
	if ns == 0 {
		return math.Inf(1)
	}
	return m.now().Sub(time.Unix(0, ns)).Seconds()
}

// Reporter refreshes the run-level metrics, and, in the one process that
// holds the status lock, writes runs/<run>/status.json for open runs.
type Reporter struct {
	q       ReporterQueue
	store   Store
	prefix  string
	owner   string
	every   time.Duration
	cfg     Config
	metrics *Metrics
	log     *slog.Logger

	lost    int // batches lost by the recent runs, summed by one Refresh
	lock    *ledger.Lock
	lockOK  time.Time          // last successful take or refresh
	written map[string]written // by run: what this process last wrote

	tablesComplete TablesComplete  // nil: tables not checked
	tablesGrace    time.Duration   // see DefaultTablesGrace
	tablesDone     map[string]bool // recent runs whose tables were found complete
}

// written is what a status.json held when this process wrote it.
type written struct {
	sum   [32]byte
	state ledger.RunState
}

// ReporterQueue is what a reporter reads and locks: the run records and
// batch counts, the queue's counters, and the status writer's lock.
type ReporterQueue interface {
	Queue
	Passes
	State(ctx context.Context) (msg.QueueState, error)
	Acquire(ctx context.Context, name, owner string, ttl time.Duration) (*ledger.Lock, error)
}

// Store is where status.json goes.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader, opts objstore.PutOptions) (objstore.Object, error)
}

// ReporterConfig are a reporter's settings.
type ReporterConfig struct {
	Prefix string
	Owner  string
	// Every is the refresh period, and so the most often a status.json is
	// rewritten; default 30s.
	Every  time.Duration
	Status Config
	// TablesComplete, if set, checks complete runs' analyst tables
	// (qfetch_tables_incomplete_runs) TablesGrace after they completed
	// (default DefaultTablesGrace).
	TablesComplete TablesComplete
	TablesGrace    time.Duration
}

// statusLock names the lock of the process that writes status.json; the
// ledger keeps it in a bucket of its own, apart from the planner lock.
const statusLock = ledger.StatusWriterLock

// recentRuns is how many of the newest runs the state gauge counts.
const recentRuns = 10

// NewReporter builds a reporter; q is usually an app.JetStream (the
// transport and the ledger).
func NewReporter(cfg ReporterConfig, q ReporterQueue, store Store, m *Metrics, log *slog.Logger) *Reporter {
	if cfg.Every <= 0 {
		cfg.Every = 30 * time.Second
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if cfg.TablesGrace <= 0 {
		cfg.TablesGrace = DefaultTablesGrace
	}
	return &Reporter{q: q, store: store, prefix: cfg.Prefix, owner: cfg.Owner,
		every: cfg.Every, cfg: cfg.Status.withDefaults(), metrics: m, log: log, written: map[string]written{},
		tablesComplete: cfg.TablesComplete, tablesGrace: cfg.TablesGrace, tablesDone: map[string]bool{}}
}

// Run refreshes at once and then every period until ctx ends; a failed
// refresh is logged, counted and tried again at the next tick.
func (r *Reporter) Run(ctx context.Context) error {
	t := time.NewTicker(r.every)
	defer t.Stop()
	defer r.release()
	for {
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.metrics.errors.Inc()
			r.log.Warn("refreshing run status failed; trying again at the next tick", "err", err, "every", r.every)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r *Reporter) release() {
	if r.lock == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.lock.Release(ctx)
	r.lock = nil
}

// Refresh reads the queue and the recent runs once, updates the metrics,
// and writes the status of open runs if this process holds the lock.
func (r *Reporter) Refresh(ctx context.Context) error {
	now := r.cfg.Now()
	qs, err := r.q.State(ctx)
	if err != nil {
		return err
	}
	m := r.metrics
	m.deadLetters.Set(float64(qs.DeadLetters))
	m.queued.Set(float64(qs.Queued))
	m.waiting.Set(float64(qs.Waiting))
	m.inFlight.Set(float64(qs.InFlight))
	m.maxInFlight.Set(float64(qs.MaxInFlight))

	ids, err := r.q.RunIDs(ctx)
	if err != nil {
		return err
	}
	// KnowledgeBase passes are reported apart (refreshKB).
	ids = slices.DeleteFunc(ids, runid.IsKB)
	counts := map[ledger.RunState]int{}
	r.lost = 0
	var open, recentIDs []string // newest first
	var recentRecs []ledger.RunRecord
	var lastComplete time.Time
	for i := len(ids) - 1; i >= 0; i-- {
		recent := len(ids)-1-i < recentRuns
		if !recent && !lastComplete.IsZero() {
			break
		}
		rec, err := r.q.GetRun(ctx, ids[i])
		if err != nil {
			return err
		}
		if rec.State == ledger.RunComplete && lastComplete.IsZero() {
			lastComplete = rec.Completed
		}
		if !recent {
			continue
		}
		st, err := r.quickState(ctx, rec, now)
		if err != nil {
			return err
		}
		counts[st]++
		recentIDs = append(recentIDs, rec.ID)
		recentRecs = append(recentRecs, rec)
		// Open runs, and runs whose end this process has not written yet
		// (a run's record does not change when its last batch is
		// dead-lettered, so its time says nothing).
		if !st.Terminal() || r.written[rec.ID].state != st {
			open = append(open, rec.ID)
		}
	}
	for _, s := range ledger.States {
		m.runs.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
	kbOpen, kbRecent, err := r.refreshKB(ctx, now)
	if err != nil {
		// The KnowledgeBase is derived data (I9): its passes' status never
		// holds up the runs'.
		m.errors.Inc()
		r.log.Warn("refreshing the KnowledgeBase passes' status failed; the runs' is refreshed", "err", err)
	}
	m.lost.Set(float64(r.lost))
	if r.tablesComplete != nil {
		// Derived data: a failed check leaves the gauge as it was and
		// fails nothing else (design.md I9).
		if n, err := r.tablesIncomplete(ctx, recentRecs, now); err != nil {
			r.log.Warn("checking the recent runs' analyst tables", "err", err)
		} else {
			m.tablesIncomplete.WithLabelValues().Set(float64(n))
		}
	}
	if !lastComplete.IsZero() {
		m.lastComplete.WithLabelValues().Set(float64(lastComplete.UnixNano()) / 1e9)
		m.lastCompleteNS.Store(lastComplete.UnixNano())
	}
	fresh, held := r.holdLock(ctx)
	if !held {
		m.current.Reset()
		r.refreshed(now)
		return nil
	}
	if fresh {
		// Whoever held the lock before may have died between a run's end
		// and its last status.json: a new writer rewrites every recent
		// run's once (unchanged ones cost a small PUT each).
		open, kbOpen = recentIDs, kbRecent
	}
	if err := r.writeStatuses(ctx, slices.Concat(open, kbOpen), slices.Concat(recentIDs, kbRecent)); err != nil {
		// The timestamp stays: status.json not being written (a missing
		// bucket, wrong keys) is what its staleness alerts on.
		m.gate.open.Store(true)
		return err
	}
	r.refreshed(now)
	return nil
}

// refreshed marks a complete refresh.
func (r *Reporter) refreshed(now time.Time) {
	r.metrics.refreshed.Set(float64(now.UnixNano()) / 1e9)
	r.metrics.gate.open.Store(true)
}

// Final refreshes once more, so that a run that just ended gets its last
// status.json, and releases the status writer's lock: for a process that
// stops after a run (qfetch local), where Run has already returned.
func (r *Reporter) Final(ctx context.Context) error {
	defer r.release()
	return r.Refresh(ctx)
}

// quickState classifies a run without listing its batches.
func (r *Reporter) quickState(ctx context.Context, rec ledger.RunRecord, now time.Time) (ledger.RunState, error) {
	if rec.State == ledger.RunComplete || rec.State == ledger.RunFailed {
		return ledger.Classify(rec, 0, 0, now, r.cfg.StaleAfter), nil
	}
	queued, err := r.q.Pending(ctx, rec.ID)
	if err != nil {
		return "", err
	}
	dls := 0
	if queued == 0 {
		if dls, err = r.q.DeadLetterCount(ctx, rec.ID); err != nil {
			return "", err
		}
	}
	n, err := Lost(ctx, r.q, rec, queued, dls)
	if err != nil {
		return "", err
	}
	if n > 0 {
		r.lost += n
		return ledger.RunFailed, nil
	}
	return ledger.Classify(rec, queued, dls, now, r.cfg.StaleAfter), nil
}

// holdLock takes or keeps the status writer's lock: held is false when
// another process has it, fresh true when it was taken just now.
func (r *Reporter) holdLock(ctx context.Context) (fresh, held bool) {
	ttl := 3 * r.every
	if r.lock != nil {
		err := r.lock.Refresh(ctx)
		switch {
		case err == nil:
			r.lockOK = time.Now()
			return false, true
		case !errors.Is(err, ledger.ErrLockLost) && time.Since(r.lockOK) < ttl:
			// Not refreshed, but not expired either: nobody else can hold it.
			r.log.Warn("refreshing the status writer's lock", "err", err)
			return false, true
		}
		r.lock = nil
	}
	l, err := r.q.Acquire(ctx, statusLock, r.owner, ttl)
	if err != nil {
		if !errors.Is(err, ledger.ErrLocked) {
			r.log.Warn("taking the status writer's lock", "err", err)
		}
		return false, false
	}
	r.lock, r.lockOK = l, time.Now()
	// What this process wrote before may have been overwritten since.
	clear(r.written)
	return true, true
}

// writeStatuses writes status.json of each run (newest first) whose status
// changed since it was last written here, and the newest open run's gauges
// (a KnowledgeBase pass has gauges of its own).
func (r *Reporter) writeStatuses(ctx context.Context, runs, recent []string) error {
	r.metrics.current.Reset()
	var errs []error
	current := false
	for _, id := range runs {
		// Read just before writing: a status taken from a record read
		// before the run ended would overwrite the final one.
		rec, err := r.q.GetRun(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s, err := Of(ctx, r.q, r.cfg, rec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !current && !s.State.Terminal() && !runid.IsKB(s.Run) {
			current = true
			c := r.metrics.current
			c.WithLabelValues("batches_planned").Set(float64(s.BatchesPlanned))
			c.WithLabelValues("batches_done").Set(float64(s.BatchesDone))
			c.WithLabelValues("batches_queued").Set(float64(s.BatchesQueued))
			c.WithLabelValues("bytes").Set(float64(s.Bytes))
			c.WithLabelValues("eta_seconds").Set(s.ETASeconds)
		}
		sum := digest(s)
		if r.written[s.Run].sum == sum {
			continue
		}
		body, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return err
		}
		key := objstore.StatusKey(r.prefix, s.Run)
		if _, err := r.store.Put(ctx, key, bytes.NewReader(body), objstore.PutOptions{ContentType: "application/json"}); err != nil {
			errs = append(errs, fmt.Errorf("writing %s: %w", key, err))
			continue
		}
		r.written[s.Run] = written{sum: sum, state: s.State}
	}
	for run := range r.written {
		if !slices.Contains(recent, run) {
			delete(r.written, run) // no longer among the recent runs
		}
	}
	return errors.Join(errs...)
}

// digest identifies a status apart from the moment it was taken, so that an
// unchanged run is not rewritten every period.
func digest(s Status) [32]byte {
	s.At, s.AgeSeconds, s.ETASeconds, s.BytesPerSecond = time.Time{}, 0, 0, 0
	b, _ := json.Marshal(s)
	return sha256.Sum256(b)
}
