// Package local runs a whole qfetch run in one process with no outside
// services: embedded NATS, the Qualys simulator, a local directory as bucket.
//
// It builds the same planner, worker and finisher the cluster runs (through
// app), so a newcomer sees the real system work; with a Qualys URL or an S3 endpoint
// configured it uses those instead of the simulator or the directory.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/runstat"
)

// Config is one local run.
type Config struct {
	Dir       string // data directory: NATS store and, without S3, the bucket
	Prefix    string
	BatchSize int
	Slots     int // worker slots (also the fleet cap)
	PageSize  int // Host List page size
	Overlap   time.Duration
	SimHosts  int64   // simulator size
	SimFaults float64 // simulator outcome-fault probability
	SimSeed   uint64
	Qualys    *qualys.Config     // nil: the simulator
	S3        *objstore.S3Config // nil: a directory under Dir
	Progress  io.Writer          // live progress line (a terminal), or nil for log lines
	Log       *slog.Logger
	TickEvery time.Duration // progress cadence; default 1s on a terminal, 10s otherwise
	// Tables is how many table conversions run at once: 0 is 2, below 0
	// none (the run's analyst tables are then not written).
	Tables int
	// KB runs the planner's KnowledgeBase step beside the run (a full pass
	// the first time, then what changed) and waits for its pass too. The
	// zero value is off; qfetch local turns it on unless --kb=false.
	KB bool
}

// Summary is what a local run did.
type Summary struct {
	Run            string
	After, Before  time.Time
	Batches        int
	HostsRequested int
	HostsReturned  int
	Bytes          int64
	Seconds        float64
	Manifest       string // where manifest.json is
	Success        string // where _SUCCESS is (a path for the directory store)
	Skipped        string // why nothing ran, if so
	Dir            string // the data directory, absolute: the kept NATS store and the directory bucket
	DirBytes       int64  // its size after the run
	// Tables is where the run's table manifest is once its analyst tables
	// are complete, "" when they are not (see TablesNote); TablesGlob is
	// where the detections table's files are, for a query.
	Tables     string
	TablesGlob string
	TablesNote string
	// KB is the KnowledgeBase pass the run's planner pass opened or
	// resumed; nil when the step is off or opened none.
	KB *KBSummary
}

// KBSummary is what a local run's KnowledgeBase pass did.
type KBSummary struct {
	Pass     string
	Full     bool // the whole KnowledgeBase (the first pass), else what changed
	Batches  int
	QIDs     int   // VULNs returned
	Backfill int   // QIDs asked for beyond the listing (used by runs, not yet known)
	Bytes    int64 // of the KnowledgeBase answers
	Seconds  float64
	Manifest string
	// KBGlob and RunsGlob are the kb and runs tables' files, for the join;
	// "" when the pass's kb table is not complete (Note says why).
	KBGlob   string
	RunsGlob string
	Note     string // why the pass is not complete or its table not, if so
}

// ackWait is the local consumer's: a batch held by a qfetch local that was
// stopped goes to the next one this soon (the worker renews its lease every
// quarter of it; one process, no network between them).
const ackWait = 10 * time.Second

// ErrIncomplete means the run ended without completing: batches were
// dead-lettered.
var ErrIncomplete = errors.New("run incomplete")

// Run performs one planner run and fetches it to completion.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return Summary{}, fmt.Errorf("data directory: %w", err)
	}
	// The NATS store is kept for `qfetch runs --local` and friends, which
	// start their own server on it: one at a time.
	unlock, err := lockDir(cfg.Dir)
	if err != nil {
		return Summary{}, err
	}
	defer unlock()
	js, stopNATS, err := StartNATS(filepath.Join(cfg.Dir, "nats"))
	if err != nil {
		return Summary{}, err
	}
	defer stopNATS()
	// One process plays every role: the planner's part creates the
	// streams and buckets (no other role may), the worker's the consumer.
	if _, err := app.Queue(ctx, js, config.NATS{}, config.Fleet{MaxInFlight: cfg.Slots}, ackWait, app.RolePlanner); err != nil {
		return Summary{}, err
	}
	q, err := app.Queue(ctx, js, config.NATS{}, config.Fleet{MaxInFlight: cfg.Slots}, ackWait, app.RoleWorker)
	if err != nil {
		return Summary{}, err
	}
	qc := cfg.Qualys
	if qc == nil {
		var stopSim func()
		if qc, stopSim, err = startSim(ctx, cfg); err != nil {
			return Summary{}, err
		}
		defer stopSim()
	}
	client, err := qualys.New(*qc)
	if err != nil {
		return Summary{}, err
	}
	store, where, err := openStore(cfg)
	if err != nil {
		return Summary{}, err
	}
	parts := app.Parts{Log: cfg.Log, Qualys: client, Store: store, Queue: q, Prefix: cfg.Prefix, Owner: "qfetch-local"}
	sum, err := fetchRun(ctx, parts, cfg, where)
	if err == nil {
		// Said in the summary: the data stays, and it is not small.
		sum.Dir, _ = filepath.Abs(cfg.Dir)
		sum.DirBytes, _ = dirSize(cfg.Dir)
	}
	return sum, err
}

// fetchRun plans one run on parts and works it to its end with one worker.
func fetchRun(ctx context.Context, parts app.Parts, cfg Config, where func(key string) string) (Summary, error) {
	planner := parts.Planner(plan.Config{BatchSize: cfg.BatchSize, PageSize: cfg.PageSize, Overlap: cfg.Overlap,
		LockTTL: 30 * time.Second, KB: kbConfig(cfg)})
	worker := parts.Worker(fetch.Config{Slots: cfg.Slots, MaxBackoff: 2 * time.Second, ProbeEvery: 2 * time.Second,
		Grace: 5 * time.Second, PullWait: 500 * time.Millisecond}, nil)
	// status.json as the worker fleet writes it, more often: a local run
	// is short.
	reporter := parts.Reporter(runstat.ReporterConfig{Every: 5 * time.Second}, nil)
	conversions := parts.TableLoop(tableConcurrency(cfg.Tables))

	// The worker runs until the run ends; the planner's pass ends earlier.
	g, gctx := errgroup.WithContext(ctx)
	workCtx, stopWork := context.WithCancel(gctx)
	defer stopWork()
	g.Go(func() error { return worker.Run(workCtx, ctx) })
	g.Go(func() error { return reporter.Run(workCtx) })
	g.Go(func() error { return conversions.Run(workCtx) })

	start := time.Now()
	out, err := planner.Run(gctx)
	if err != nil {
		stopWork()
		_ = g.Wait()
		return Summary{}, err
	}
	if out.Skipped {
		// An earlier qfetch local stopped while its run was being fetched:
		// there is no other worker to finish it, so this one does.
		run, err := unfinished(gctx, parts.Queue)
		if err != nil {
			stopWork()
			_ = g.Wait()
			return Summary{}, err
		}
		if run != "" {
			cfg.Log.Info("finishing the run an earlier qfetch local left", "run", run)
			out.Run, out.Skipped = run, false
		}
	}
	if out.Skipped || out.Superseded {
		stopWork()
		return Summary{Skipped: out.Reason}, g.Wait()
	}
	rec, err := watch(gctx, parts.Queue, out.Run, cfg, start)
	var tables tablesDone
	if err == nil && tableConcurrency(cfg.Tables) > 0 {
		tables, err = waitTables(gctx, parts, rec.ID)
	}
	var kb *KBSummary
	if err == nil {
		kb, err = waitKB(gctx, parts, cfg, out.KB, start, where)
	}
	stopWork()
	if werr := g.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return Summary{Run: out.Run}, err
	}
	// The planner's step after its run completed: the watermark moves over
	// it, and the next qfetch local starts its window there.
	if _, err := planner.AdvanceWatermark(ctx); err != nil {
		return Summary{Run: out.Run}, fmt.Errorf("advancing the watermark: %w", err)
	}
	// The run's final status.json (the reporter stopped with the worker),
	// and the status lock released for the next run.
	if err := reporter.Final(ctx); err != nil {
		cfg.Log.Warn("writing the run's final status.json", "run", rec.ID, "err", err)
	}
	sum, err := summarize(ctx, parts.Queue, rec, start, where(objstore.SuccessKey(cfg.Prefix, rec.ID)),
		where(objstore.ManifestKey(cfg.Prefix, rec.ID)))
	if tables.complete {
		sum.Tables = where(tablesManifestKey(cfg.Prefix, rec.ID))
		sum.TablesGlob = where(tablesGlob(cfg.Prefix))
	}
	sum.TablesNote = tables.note
	sum.KB = kb
	if kb != nil && kb.Note == "" {
		// As the planner's next pass would: the next qfetch local asks
		// only for what changed since.
		if _, err := planner.AdvanceKBWatermark(ctx); err != nil {
			cfg.Log.Warn("advancing the KB watermark", "pass", kb.Pass, "err", err)
		}
	}
	return sum, err
}

// unfinished returns the newest run still being fetched with batches
// queued, if any: the planner declines to open a new window over it.
func unfinished(ctx context.Context, q app.JetStream) (string, error) {
	ids, err := q.RunIDs(ctx)
	if err != nil {
		return "", err
	}
	for i := len(ids) - 1; i >= 0; i-- {
		r, err := q.GetRun(ctx, ids[i])
		if err != nil {
			return "", err
		}
		switch r.State {
		case ledger.RunComplete:
			return "", nil
		case ledger.RunFetching, ledger.RunCompleting:
			if n, err := q.Pending(ctx, r.ID); err != nil || n > 0 {
				return r.ID, err
			}
		}
	}
	return "", nil
}

// startSim serves the Qualys simulator on a loopback port until stop, and
// says how to reach it.
func startSim(ctx context.Context, cfg Config) (qc *qualys.Config, stop func(), err error) {
	sim := qualysim.New(qualysim.Config{
		Seed:   cfg.SimSeed,
		Hosts:  cfg.SimHosts,
		Clock:  qualysim.NewClock(time.Now(), true),
		Faults: qualysim.Faults{Prob: qualysim.Spread(cfg.SimFaults), StallFor: 3 * time.Second},
		// The local fleet's cap is the simulator's limit, as it would be
		// with a real subscription.
		ConcurrencyLimit: cfg.Slots,
		RateLimit:        qualysim.Off,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		sim.Close()
		return nil, nil, err
	}
	simCtx, stopSim := context.WithCancel(context.WithoutCancel(ctx))
	var g errgroup.Group
	g.Go(func() error { return sim.Serve(simCtx, ln) })
	qc = &qualys.Config{BaseURL: qualysim.URL(ln), Username: sim.Username(), Password: sim.Password(),
		IdleTimeout: 2 * time.Second, Waits: qualys.Waits{Concurrency: time.Second, RateLimit: 10 * time.Second, Maintenance: 10 * time.Second}}
	cfg.Log.Info("simulated Qualys", "url", qc.BaseURL, "hosts", cfg.SimHosts, "faults", cfg.SimFaults)
	return qc, func() { stopSim(); _ = g.Wait(); sim.Close() }, nil
}

// openStore opens the S3 store configured, else a directory under
// cfg.Dir; where says where a key is, for the summary.
func openStore(cfg Config) (store app.Store, where func(key string) string, err error) {
	if cfg.S3 != nil {
		s, err := objstore.NewS3(*cfg.S3)
		if err != nil {
			return nil, nil, err
		}
		return s, func(key string) string { return s.Describe() + "/" + key }, nil
	}
	root := filepath.Join(cfg.Dir, "bucket")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, nil, err
	}
	d, err := objstore.NewDir(root)
	if err != nil {
		return nil, nil, err
	}
	return d, func(key string) string { return filepath.Join(root, filepath.FromSlash(key)) }, nil
}

// watch reports progress until the run completes, or until nothing of it
// is queued any more while it is still incomplete (dead letters).
func watch(ctx context.Context, q app.JetStream, run string, cfg Config, start time.Time) (ledger.RunRecord, error) {
	every := cfg.TickEvery
	if every <= 0 {
		every = 10 * time.Second
		if cfg.Progress != nil {
			every = time.Second
		}
	}
	// Poll often, show every so often: the end should be noticed at once.
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	p := progress{w: cfg.Progress, log: cfg.Log, start: start}
	var lastShown time.Time
	for {
		rec, err := q.GetRun(ctx, run)
		if err != nil {
			return rec, err
		}
		done, err := q.CountDone(ctx, run)
		if err != nil {
			return rec, err
		}
		final := rec.State == ledger.RunComplete || rec.State == ledger.RunFailed
		if final || time.Since(lastShown) >= every {
			var bytes int64
			if results, err := q.DoneBatches(ctx, run); err == nil {
				for _, r := range results {
					bytes += r.Bytes()
				}
			}
			p.show(rec, done, bytes)
			lastShown = time.Now()
		}
		switch rec.State {
		case ledger.RunComplete:
			p.end()
			return rec, nil
		case ledger.RunFailed:
			p.end()
			return rec, failure.Permanent(fmt.Errorf("run %s failed: %s", run, rec.Error))
		}
		if rec.PlanningComplete {
			pending, err := q.Pending(ctx, run)
			if err != nil {
				return rec, err
			}
			if pending == 0 && rec.State == ledger.RunFetching {
				// Give the last finisher a moment: it records, then acks,
				// then finishes.
				if dl, _ := q.DeadLetters(ctx, run); len(dl) > 0 {
					p.end()
					return rec, fmt.Errorf("%w: %s dead-lettered, e.g. batch %s: %s", ErrIncomplete, runstat.Count(len(dl), "batch", "batches"), dl[0].MsgID, dl[0].LastError)
				}
			}
		}
		select {
		case <-ctx.Done():
			p.end()
			return rec, context.Cause(ctx)
		case <-t.C:
		}
	}
}

func summarize(ctx context.Context, q app.JetStream, rec ledger.RunRecord, start time.Time, success, manifest string) (Summary, error) {
	results, err := q.DoneBatches(ctx, rec.ID)
	if err != nil {
		return Summary{}, err
	}
	s := Summary{Run: rec.ID, After: rec.After, Before: rec.Before, Batches: rec.BatchesPlanned,
		Seconds: time.Since(start).Seconds(), Success: success, Manifest: manifest}
	for _, r := range results {
		s.HostsRequested += r.HostsRequested
		s.HostsReturned += r.HostsReturned
		s.Bytes += r.Bytes()
	}
	return s, nil
}

// StartNATS starts an embedded NATS with JetStream stored in dir and
// connects to it in process (no port); stop closes both. qfetch local and
// the tests that build the pipeline as it does (tablecheck) share it.
func StartNATS(dir string) (js jetstream.JetStream, stop func(), err error) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "qfetch-local",
		DontListen: true,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ns.Start()
	shutdown := func() { ns.Shutdown(); ns.WaitForShutdown() }
	if !ns.ReadyForConnections(30 * time.Second) {
		shutdown()
		return nil, nil, errors.New("embedded NATS did not start within 30s")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		shutdown()
		return nil, nil, fmt.Errorf("connecting to the embedded NATS: %w", err)
	}
	if js, err = jetstream.New(nc); err != nil {
		nc.Close()
		shutdown()
		return nil, nil, err
	}
	return js, func() { nc.Close(); shutdown() }, nil
}
