// Package fetch is one worker process: it pulls batch messages, streams each
// batch's detection response through the validator into the object store,
// records the result and acks — or decides, by error class, what happens next.
//
// The decisions (design.md I2, I5, I6) are one pure function, decide: a
// retryable failure Naks with a back-off; back-pressure Naks for as long as
// Qualys asked and pauses this process; a fleet-wide fault pauses the whole
// process and probes until it clears, leaving every batch queued; a
// permanent failure dead-letters. Worker.apply carries them out.
package fetch

import (
	"context"
	"errors"
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
	InProgressEvery time.Duration // InProgress cadence while a batch runs; default AckWait/4
	// MaxBackoff caps retry delays; default 2m. JetStream counts a batch
	// Nak'ed with a delay against MaxAckPending until it is redelivered, so
	// a long delay holds one of the fleet's few slots idle.
	MaxBackoff time.Duration
	ProbeEvery time.Duration // fleet-wide fault probe interval; default 30s
	SplitAfter int           // timeouts of one batch before it is split; default 3
	// BreakAfter is how many retryable failures, over more than one batch
	// and with no success between, make the worker treat the fault as
	// fleet-wide: an outage must not use up every batch's chances. Default
	// 2 × Slots.
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
	if c.InProgressEvery <= 0 {
		c.InProgressEvery = ackWait / 4
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 2 * time.Minute
	}
	if c.ProbeEvery <= 0 {
		c.ProbeEvery = 30 * time.Second
	}
	if c.SplitAfter <= 0 {
		c.SplitAfter = 3
	}
	if c.BreakAfter <= 0 {
		c.BreakAfter = 2 * c.Slots
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
	// Check proves the account can log in, without a detection call.
	Check(ctx context.Context) (qualys.Limits, error)
}

// Store is where detection responses land.
type Store interface {
	// Put stores r whole under key, or nothing (and returns r's error) if r
	// fails.
	Put(ctx context.Context, key string, r io.Reader, opts objstore.PutOptions) (objstore.Object, error)
	// Check reports a store no write can succeed on.
	Check(ctx context.Context) error
}

// Queue is the part of the JetStream transport a worker uses.
type Queue interface {
	Next(ctx context.Context, maxWait time.Duration) (jetstream.Msg, error)
	DeadLetter(ctx context.Context, m jetstream.Msg, reason string, lastErr error) error
	Config() msg.Config
}

// Ledger is the part of the run ledger a worker reads and records in.
type Ledger interface {
	GetRun(ctx context.Context, id string) (ledger.RunRecord, error)
	MarkDone(ctx context.Context, r ledger.BatchResult) error
	CountFailure(ctx context.Context, run, batch string) (int, error)
	MarkSplit(ctx context.Context, run string, s ledger.Split) error
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
	pub     func() Publisher
	api     Detector
	store   Store
	finish  Finisher
	log     *slog.Logger
	metrics *Metrics

	gate   *gate
	streak streak
}

// streak counts retryable failures since the last success, and the
// distinct batches they hit. Failures spread over several batches with
// nothing succeeding is an outage; one batch failing again and again is
// that batch's problem, and its own failure count deals with it.
type streak struct {
	mu    sync.Mutex
	n     int
	first string
	many  bool
}

// fail records a failure of batch key and returns the streak with it.
func (s *streak) fail(key string) streakState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		s.first = key
	} else if key != s.first {
		s.many = true
	}
	s.n++
	return streakState{Failures: s.n, Spread: s.many}
}

func (s *streak) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n, s.first, s.many = 0, "", false
}

// Deps are a worker's collaborators; Finish and Metrics may be nil.
type Deps struct {
	Queue     Queue
	Ledger    Ledger
	Publisher func() Publisher
	API       Detector
	Store     Store
	Finish    Finisher
	Metrics   *Metrics
	Log       *slog.Logger
}

// New builds a worker.
func New(cfg Config, d Deps) *Worker {
	cfg = cfg.withDefaults(d.Queue.Config().AckWait)
	m := d.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Worker{
		cfg: cfg, q: d.Queue, ledger: d.Ledger, pub: d.Publisher, api: d.API, store: d.Store,
		finish: d.Finish, log: d.Log, metrics: m, gate: newGate(cfg.Now),
	}
}

// Ready reports nil when the worker is pulling, or why it is not: a
// fleet-wide fault, for /readyz.
func (w *Worker) Ready() error { return w.gate.fault() }

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

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.probe(gctx) })
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

// slot is one fetch at a time: wait at the gate, pull one message, run it.
func (w *Worker) slot(ctx, work context.Context, slot int) error {
	for {
		if err := w.gate.wait(ctx); err != nil {
			return nil
		}
		m, err := w.q.Next(ctx, w.cfg.PullWait)
		if err != nil {
			if ctx.Err() != nil {
				return nil
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

// gate holds pulling back: until a time (back-pressure) or while a
// fleet-wide fault lasts.
type gate struct {
	now func() time.Time

	mu      sync.Mutex
	until   time.Time
	faulted error
	changed chan struct{} // closed and replaced on every change
}

func newGate(now func() time.Time) *gate {
	return &gate{now: now, changed: make(chan struct{})}
}

func (g *gate) notify() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// pauseFor keeps slots from pulling for d (the longest pause wins).
func (g *gate) pauseFor(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if until := g.now().Add(d); until.After(g.until) {
		g.until = until
		g.notify()
	}
}

func (g *gate) setFault(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	first := g.faulted == nil
	g.faulted = err
	if first {
		g.notify()
	}
}

func (g *gate) clearFault() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.faulted != nil {
		g.faulted = nil
		g.notify()
	}
}

func (g *gate) fault() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.faulted
}

// wait returns when pulling is allowed, or ctx's error.
func (g *gate) wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		faulted, until, changed := g.faulted, g.until, g.changed
		g.mu.Unlock()
		var t *time.Timer
		var timer <-chan time.Time
		switch {
		case faulted != nil:
		case g.now().Before(until):
			t = time.NewTimer(until.Sub(g.now()))
			timer = t.C
		default:
			return nil
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// probe checks, while a fleet-wide fault lasts, whether it has cleared:
// both the Qualys login and the bucket must pass, since a fault does not
// always say which side it came from (a certificate, a DNS name). The
// interval doubles while the fault lasts, up to 16 times ProbeEvery, so a
// fleet with a wrong password does not hammer the login.
func (w *Worker) probe(ctx context.Context) error {
	var lastLog time.Time
	every := w.cfg.ProbeEvery
	for {
		if sleep(ctx, every) != nil {
			return nil
		}
		fault := w.gate.fault()
		if fault == nil {
			every = w.cfg.ProbeEvery
			continue
		}
		_, err := w.api.Check(ctx)
		if err == nil {
			err = w.store.Check(ctx)
		}
		if err == nil {
			w.metrics.probes.WithLabelValues("ok").Inc()
			w.log.Info("fleet-wide fault cleared; pulling again", "was", fault)
			w.gate.clearFault()
			w.metrics.faulted.Set(0)
			every = w.cfg.ProbeEvery
			continue
		}
		w.metrics.probes.WithLabelValues("failed").Inc()
		every = min(every*2, 16*w.cfg.ProbeEvery)
		if w.cfg.Now().Sub(lastLog) >= time.Minute {
			lastLog = w.cfg.Now()
			w.log.Error("fleet-wide fault: not pulling batches; they stay queued", "err", err, "next_probe", every)
		}
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
