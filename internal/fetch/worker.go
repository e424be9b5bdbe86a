// Package fetch is one worker process: it pulls batch messages, streams each
// batch's detection response through the validator into the object store,
// records the result and acks — or decides, by error class, what happens next.
//
// The decisions (design.md I2, I5, I6) are one pure function, decide;
// Worker.apply carries them out. Decisions that concern the whole fleet —
// an outage, a fleet-wide fault, Qualys' maintenance or rate limits — live
// in the ledger's shared fleet state, which every worker follows and one at
// a time probes; a batch that must wait leaves the queue for a schedule, so
// its slot goes to other work.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
)

// Config is one worker process's settings.
type Config struct {
	Slots           int           // concurrent fetches in this process; default 2
	Prefix          string        // object key prefix
	TruncationLimit int           // hosts per detection response; 0 = whole batch
	Owner           string        // this process, for records
	Grace           time.Duration // on stop: how long in-flight fetches may finish; default 20s
	PullWait        time.Duration // one pull request's wait; default 5s
	// InProgressEvery is how often a running batch's lease is renewed;
	// default AckWait/4, and never so rare that the lease could lapse
	// between two renewals.
	InProgressEvery time.Duration
	// LeaseMargin is how long before AckWait runs out, counted from the
	// last renewal the server confirmed, a worker gives a batch up: its
	// Qualys call and upload must be over before JetStream can hand the
	// batch to another worker (I5). Default AckWait/5, at least 100ms.
	LeaseMargin time.Duration
	// MaxBackoff caps retry delays; default 2m.
	MaxBackoff time.Duration
	// ProbeEvery is the fleet's probe period while it is paused; default
	// 30s. An outage or maintenance is probed every period, so the fleet
	// resumes within one period of its end; a fleet-wide fault (credentials,
	// access, bucket) backs off to 16 periods.
	ProbeEvery time.Duration
	// JetStreamCheckEvery is how often the worker asks JetStream whether
	// it serves (a cluster may lose its quorum); every second while it
	// does not. Default 5s.
	JetStreamCheckEvery time.Duration
	SplitAfter          int // charged failures of an oversized batch before it is split; default 3
	// BreakAfter is how many charged failures, over at least two batches
	// and with no success anywhere in the fleet between, pause the fleet as
	// a suspected outage; a probe then decides whether the charges stand.
	// Default 2.
	BreakAfter int
	Now        func() time.Time
}

func (c Config) withDefaults(ackWait time.Duration) Config {
	if c.Slots <= 0 {
		c.Slots = 2
	}
	if c.Grace <= 0 {
		c.Grace = 20 * time.Second
	}
	if c.PullWait <= 0 {
		c.PullWait = 5 * time.Second
	}
	if c.LeaseMargin <= 0 {
		c.LeaseMargin = max(ackWait/5, 100*time.Millisecond)
	}
	// At least two renewals fit in a lease, so one lost renewal never
	// costs the batch.
	renewMax := max((ackWait-c.LeaseMargin)/2, time.Millisecond)
	if c.InProgressEvery <= 0 || c.InProgressEvery > renewMax {
		c.InProgressEvery = min(ackWait/4, renewMax)
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 2 * time.Minute
	}
	if c.ProbeEvery <= 0 {
		c.ProbeEvery = 30 * time.Second
	}
	if c.JetStreamCheckEvery <= 0 {
		c.JetStreamCheckEvery = 5 * time.Second
	}
	if c.SplitAfter <= 0 {
		c.SplitAfter = 3
	}
	if c.BreakAfter <= 1 {
		c.BreakAfter = 2
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Owner == "" {
		c.Owner = "worker"
	}
	return c
}

// Detector is the part of the Qualys client a worker uses.
type Detector interface {
	// DetectionPager walks one batch's detection answer, page by page.
	DetectionPager(q qualys.DetectionQuery) *qualys.DetectionPager
	// Probe makes the smallest detection call there is: whether the fleet
	// can work again after a pause.
	Probe(ctx context.Context) (qualys.Limits, error)
}

// Store is where detection responses land, each page through an upload
// that the batch's claim records, so that a newer copy can abort it.
type Store interface {
	Begin(ctx context.Context, key string, opts objstore.PutOptions) (objstore.Upload, error)
	// Complete stores r whole as u's object, or nothing (and returns r's
	// error) if r fails; an upload aborted meanwhile fails with an error
	// wrapping objstore.ErrUploadGone.
	Complete(ctx context.Context, u objstore.Upload, r io.Reader) (objstore.Object, error)
	Abort(ctx context.Context, u objstore.Upload) error
	// Check reports a store no write can succeed on.
	Check(ctx context.Context) error
}

// Queue is the part of the JetStream transport a worker uses.
type Queue interface {
	Next(ctx context.Context, maxWait time.Duration) (jetstream.Msg, error)
	// Retry takes the batch off the queue until at (its slot is free
	// meanwhile) and acks m; on error m is untouched.
	Retry(ctx context.Context, m jetstream.Msg, at time.Time) error
	// Progress renews m's lease and waits for the server to confirm it.
	Progress(ctx context.Context, m jetstream.Msg) error
	// InFlight is the fleet's delivered, unacked batches and their cap.
	InFlight(ctx context.Context) (pending, limit int, err error)
	// AckWait is the consumer's AckWait as the server has it now.
	AckWait(ctx context.Context) (time.Duration, error)
	DeadLetter(ctx context.Context, m jetstream.Msg, reason string, lastErr error) error
	// Park takes any message off the queue until at, as Retry does for a
	// batch (its slot is free meanwhile); on error m is untouched.
	Park(ctx context.Context, m jetstream.Msg, at time.Time) error
	// Available reports nil when JetStream serves the workers, or an error
	// wrapping msg.ErrJetStreamUnavailable when it cannot (a cluster
	// without quorum); other errors say nothing either way.
	Available(ctx context.Context) error
	// CheckDeadLetters reports a dead-letter stream that cannot take any
	// record (msg.ErrDeadLettersBroken): a fault of the fleet, not of a batch.
	CheckDeadLetters(ctx context.Context) error
	Config() msg.Config
}

// Ledger is the part of the run ledger a worker reads and records in.
type Ledger interface {
	GetRun(ctx context.Context, id string) (ledger.RunRecord, error)
	// TakeBatch makes this copy the holder of a batch's claim, aborting
	// the uploads of the copy before it.
	TakeBatch(ctx context.Context, run, batch string, me ledger.Copy, first objstore.Upload,
		abort func(context.Context, objstore.Upload) error) (*ledger.Held, error)
	GetClaim(ctx context.Context, run, batch string) (ledger.Claim, bool, error)
	MarkDrained(ctx context.Context, run, batch string) error
	CountFailure(ctx context.Context, run, batch string) (int, error)
	ForgiveFailure(ctx context.Context, run, batch string) error
	FailureCount(ctx context.Context, run, batch string) (int, error)
}

// Fleet is the fleet's shared pause state and outage breaker.
type Fleet interface {
	Follow(ctx context.Context) error
	Snapshot() (ledger.FleetState, <-chan struct{})
	Fail(ctx context.Context, s ledger.Suspect, breakAfter int, reason string) (ledger.FailOutcome, error)
	Succeeded(ctx context.Context, since uint64) error
	Pause(ctx context.Context, kind ledger.PauseKind, reason string) (ledger.FleetState, error)
	Hold(ctx context.Context, until time.Time, reason string) error
	ProbeFailed(ctx context.Context, reason string) ([]ledger.Suspect, error)
	Resume(ctx context.Context) error
	ClaimProbe(ctx context.Context, period time.Duration) (bool, error)
	KeepProbe(ctx context.Context, period time.Duration) error
	State(ctx context.Context) (ledger.FleetState, error)
}

// Publisher publishes split halves.
type Publisher interface {
	Publish(ctx context.Context, b msg.Batch) error
	Wait(ctx context.Context) error
}

// Finisher completes a run once its last batch is recorded.
type Finisher interface {
	TryFinish(ctx context.Context, run string) error
}

// Worker pulls and fetches batches.
type Worker struct {
	cfg     Config
	q       Queue
	ledger  Ledger
	fleet   Fleet
	pub     func() Publisher
	api     Detector
	kb      KnowledgeBase // nil: KnowledgeBase batches fail as permanent
	store   Store
	finish  Finisher
	log     *slog.Logger
	metrics *Metrics
	// tables queues each done batch's conversion; nil: none.
	tables       TablePublisher
	tableMetrics *TableMetrics

	ackMu   sync.Mutex
	ackLive time.Duration // the consumer's AckWait, read at ackAt
	ackAt   time.Time

	// local holds this process back when the fleet's state cannot be
	// written (NATS unreachable): a pause must not wait for the store that
	// records it.
	local *gate
	// nats holds this process back while JetStream is unavailable (see
	// jetstream.go).
	nats *gate
	// wedges are the messages this worker failed to dead-letter.
	wedges *wedges
}

// Deps are a worker's collaborators; Finish and Metrics may be nil.
type Deps struct {
	Queue     Queue
	Ledger    Ledger
	Fleet     Fleet
	Publisher func() Publisher
	API       Detector
	// KB fetches KnowledgeBase batches; usually the same client as API.
	KB      KnowledgeBase
	Store   Store
	Finish  Finisher
	Metrics *Metrics
	Log     *slog.Logger
	// Tables queues the conversion of each batch recorded done; nil
	// queues none. TableMetrics may be nil.
	Tables       TablePublisher
	TableMetrics *TableMetrics
}

// New builds a worker.
func New(cfg Config, d Deps) *Worker {
	cfg = cfg.withDefaults(d.Queue.Config().AckWait)
	m := d.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	// A wedged message comes back after wedgeBackoff probe periods (plus
	// AckWait at worst): unseen for two of those, it is no longer ours.
	ws := newWedges(cfg.Now, 2*(wedgeBackoff*cfg.ProbeEvery+d.Queue.Config().AckWait))
	m.watchWedges(ws)
	tm := d.TableMetrics
	if tm == nil {
		tm = NewTableMetrics(nil)
	}
	return &Worker{tables: d.Tables, tableMetrics: tm,
		cfg: cfg, q: d.Queue, ledger: d.Ledger, fleet: d.Fleet, pub: d.Publisher, api: d.API, kb: d.KB, store: d.Store,
		finish: d.Finish, log: d.Log, metrics: m, local: newGate(cfg.Now), nats: newGate(cfg.Now), wedges: ws,
	}
}

// Ready reports nil when the worker is pulling, or why it is not: a fleet
// pause, for /readyz; JetStream unavailable (an error wrapping
// msg.ErrJetStreamUnavailable, state "nats"); or an error wrapping
// [ErrWedged] while a batch message cannot be dead-lettered. A
// back-pressure hold is no reason: it ends by itself.
func (w *Worker) Ready() error {
	if err := w.nats.fault(); err != nil {
		return &natsDownError{err}
	}
	if err := w.wedges.err(); err != nil {
		return err
	}
	if err := w.local.fault(); err != nil {
		return err
	}
	st, _ := w.fleet.Snapshot()
	if p := st.Pause; p != nil {
		return fmt.Errorf("fleet paused (%s) since %s by %s: %s", p.Kind, p.Since.Format(time.RFC3339), p.By, p.Reason)
	}
	return nil
}

// Run pulls and fetches until ctx ends (the soft stop: no new pulls, and
// batches in flight get Config.Grace to finish) or hard ends (everything in
// flight is abandoned at once and its batch handed back). It returns nil
// after a clean stop.
func (w *Worker) Run(ctx, hard context.Context) error {
	// Each fetch runs under work: it outlives ctx by the grace period.
	work, cancelWork := context.WithCancelCause(context.WithoutCancel(hard))
	defer cancelWork(nil)
	stopWatch := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.cfg.Grace, func() { cancelWork(errGraceOver) })
		context.AfterFunc(work, func() { t.Stop() })
	})
	defer stopWatch()
	stopHard := context.AfterFunc(hard, func() { cancelWork(context.Cause(hard)) })
	defer stopHard()

	// The slots must not pull on a snapshot that has never been read: the
	// fleet may be paused already.
	if _, err := w.fleet.State(ctx); err != nil {
		w.log.Warn("reading the fleet's state at start", "err", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.follow(gctx) })
	g.Go(func() error { return w.probe(gctx) })
	g.Go(func() error { return w.watchJetStream(gctx) })
	for slot := range w.cfg.Slots {
		g.Go(func() error { return w.slot(gctx, work, slot) })
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

var errGraceOver = errors.New("stop grace period over")

// slot is one fetch at a time: wait until the fleet may pull, pull one
// message, run it.
func (w *Worker) slot(ctx, work context.Context, slot int) error {
	for {
		if err := w.waitPull(ctx); err != nil {
			return nil
		}
		m, err := w.q.Next(ctx, w.cfg.PullWait)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, msg.ErrJetStreamUnavailable) {
				w.jetStreamDown(err) // waitPull holds the slot until it serves again
				continue
			}
			// NATS unreachable or the consumer gone: wait and pull again;
			// the client reconnects by itself.
			w.log.Warn("pulling a batch failed", "slot", slot, "err", err)
			if sleep(ctx, time.Second) != nil {
				return nil
			}
			continue
		}
		if m == nil {
			continue
		}
		w.handle(work, m)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
