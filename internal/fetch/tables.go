package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/runid"
	"github.com/qfetch/qfetch/internal/tables"
)

// TablePublisher queues a conversion (msg.TableQueue).
type TablePublisher interface {
	PublishTableJob(ctx context.Context, run, kind, item string) error
}

// tablePublishTimeout bounds the publish of a batch's conversion: the batch
// is recorded and acked already, and a lost job is queued again when the
// run is sealed.
const tablePublishTimeout = 5 * time.Second

// queueTable publishes the conversion of a batch just recorded done: into
// the detections table, or the kb table for a KnowledgeBase pass's batch. Its failure is logged and counted, never the batch's (I9).
func (w *Worker) queueTable(ctx context.Context, r ledger.BatchResult, log *slog.Logger) {
	if w.tables == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tablePublishTimeout)
	defer cancel()
	kind := msg.TableDetections
	if runid.IsKB(r.Run) {
		kind = msg.TableKB
	}
	if err := w.tables.PublishTableJob(ctx, r.Run, kind, r.Batch); err != nil {
		w.tableMetrics.publishFailures.Inc()
		log.Warn("queueing the batch's table conversion failed; the finisher queues it again when the run is sealed",
			"run", r.Run, "batch", r.Batch, "err", err)
	}
}

// TableJobs are the conversions' queue (msg.TableQueue).
type TableJobs interface {
	NextTableJob(ctx context.Context, maxWait time.Duration) (*msg.TableDelivery, error)
}

// Converter runs one conversion (tables.Builder).
type Converter interface {
	Convert(ctx context.Context, j tables.Job) (tables.Result, error)
}

// TableConfig is a worker's table loop.
type TableConfig struct {
	// Concurrency is how many conversions this process runs at once
	// (QFETCH_TABLES_CONCURRENCY); 0 runs none.
	Concurrency int
	// MaxDeliveries is how many deliveries a failing conversion gets
	// before it is terminated; default 5.
	MaxDeliveries uint64
	// Progress is how often a running conversion's lease is renewed;
	// default 30s.
	Progress time.Duration
	// Timeout bounds one conversion, so that one stalled on the bucket
	// gives its job back instead of renewing its lease for ever; default
	// 60 × Progress.
	Timeout time.Duration
	// PullWait is one pull request's wait; default 5s.
	PullWait time.Duration
	// Backoff is the wait before delivery n+1 of a failed conversion;
	// default msg.TableRetryDelay.
	Backoff func(n uint64) time.Duration
}

// TableLoop converts the analyst tables' parts. It is apart from the
// worker's fetch slots: it never takes a Qualys slot (the conversions have
// a consumer of their own) and never reads or writes the fleet's pause
// state, so a conversion can neither hold up nor be held up by a fetch.
type TableLoop struct {
	cfg     TableConfig
	jobs    TableJobs
	conv    Converter
	metrics *TableMetrics
	log     *slog.Logger
}

// NewTableLoop builds a table loop; metrics may be nil.
func NewTableLoop(cfg TableConfig, jobs TableJobs, conv Converter, metrics *TableMetrics, log *slog.Logger) *TableLoop {
	if cfg.MaxDeliveries == 0 {
		cfg.MaxDeliveries = 5
	}
	if cfg.Progress <= 0 {
		cfg.Progress = 30 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * cfg.Progress
	}
	if cfg.PullWait <= 0 {
		cfg.PullWait = 5 * time.Second
	}
	if cfg.Backoff == nil {
		cfg.Backoff = msg.TableRetryDelay
	}
	if metrics == nil {
		metrics = NewTableMetrics(nil)
	}
	return &TableLoop{cfg: cfg, jobs: jobs, conv: conv, metrics: metrics, log: log}
}

// Run converts until ctx ends; a conversion in hand when it does is handed
// back. It returns at once when Concurrency is 0.
func (t *TableLoop) Run(ctx context.Context) error {
	if t.cfg.Concurrency <= 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	for range t.cfg.Concurrency {
		g.Go(func() error {
			for gctx.Err() == nil {
				d, err := t.jobs.NextTableJob(gctx, t.cfg.PullWait)
				if err != nil {
					if gctx.Err() != nil {
						return nil
					}
					t.log.Warn("pulling a table job failed", "err", err)
					if sleep(gctx, time.Second) != nil {
						return nil
					}
					continue
				}
				if d != nil {
					t.handle(gctx, d)
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// handle runs one delivered job and settles it: Ack when done or when it
// names nothing to convert, Term with a reason when it can never succeed or
// has used its deliveries, otherwise a delayed Nak.
func (t *TableLoop) handle(ctx context.Context, d *msg.TableDelivery) {
	j, err := d.Job()
	if err != nil {
		t.metrics.conversions.WithLabelValues("unknown", "failed").Inc()
		t.log.Error("a garbled table job is terminated", "subject", d.Subject(), "err", err)
		t.settle(d.Term("garbled table job: "+err.Error()), "terminating")
		return
	}
	log := t.log.With("run", j.Run, "kind", j.Kind, "item", j.Item)
	start := time.Now()
	cctx, stop := context.WithTimeout(ctx, t.cfg.Timeout)
	go func() {
		tick := time.NewTicker(t.cfg.Progress)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				_ = d.InProgress()
			case <-cctx.Done():
				return
			}
		}
	}()
	res, err := t.conv.Convert(cctx, tables.Job{Run: j.Run, Kind: j.Kind, Item: j.Item})
	stop()
	t.metrics.seconds.WithLabelValues(j.Kind).Observe(time.Since(start).Seconds())
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	switch {
	case err == nil && res.Skipped != "":
		t.metrics.conversions.WithLabelValues(j.Kind, "skipped").Inc()
		log.Info("table job converts nothing", "why", res.Skipped)
		t.settle(d.Ack(actx), "acking")
	case err == nil:
		t.metrics.conversions.WithLabelValues(j.Kind, "converted").Inc()
		log.Debug("table part written", "key", res.Part.Key, "rows", res.Part.Rows, "bytes", res.Part.Bytes, "tables_complete", res.Complete)
		t.settle(d.Ack(actx), "acking")
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// Stopping: hand it back uncharged.
		t.settle(d.Retry(0), "handing back")
	case failure.ClassOf(err) == failure.ClassPermanent || d.Deliveries() >= t.cfg.MaxDeliveries:
		t.metrics.conversions.WithLabelValues(j.Kind, "failed").Inc()
		reason := fmt.Sprintf("table conversion %s/%s/%s given up after %d deliveries: %v", j.Run, j.Kind, j.Item, d.Deliveries(), err)
		log.Error("table conversion given up; the run's XML is untouched; rebuild its tables with `qfetch tables rebuild --run "+j.Run+"`",
			"deliveries", d.Deliveries(), "err", err)
		t.settle(d.Term(reason), "terminating")
	default:
		t.metrics.conversions.WithLabelValues(j.Kind, "retried").Inc()
		delay := t.cfg.Backoff(d.Deliveries())
		log.Warn("table conversion failed; retrying", "deliveries", d.Deliveries(), "next", delay, "err", err)
		t.settle(d.Retry(delay), "handing back")
	}
}

func (t *TableLoop) settle(err error, what string) {
	if err != nil {
		t.log.Warn(what+" a table job failed; it comes back after its ack wait", "err", err)
	}
}

// TableMetrics are the table loop's series.
type TableMetrics struct {
	conversions *prometheus.CounterVec   // table, result
	seconds     *prometheus.HistogramVec // table
	// publishFailures counts batches whose conversion could not be queued.
	publishFailures prometheus.Counter
}

// NewTableMetrics creates the series and registers them with reg (nil:
// none).
func NewTableMetrics(reg prometheus.Registerer) *TableMetrics {
	m := &TableMetrics{
		conversions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qfetch_table_conversions_total",
			Help: "Analyst table conversions, by table (detections, hosts, kb, unknown) and result (converted, skipped, retried, failed).",
		}, []string{"table", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "qfetch_table_conversion_seconds",
			Help:    "Time one conversion took, by table.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}, []string{"table"}),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qfetch_table_job_publish_failures_total",
			Help: "Batches recorded done whose table conversion could not be queued (the finisher queues it again at the seal).",
		}),
	}
	for _, table := range []string{msg.TableDetections, msg.TableHosts, msg.TableKB} {
		for _, r := range []string{"converted", "skipped", "retried", "failed"} {
			m.conversions.WithLabelValues(table, r)
		}
	}
	if reg != nil {
		reg.MustRegister(m.conversions, m.seconds, m.publishFailures)
	}
	return m
}
