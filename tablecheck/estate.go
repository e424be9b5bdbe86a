package tablecheck

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/local"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/tables"
)

// Prefix is the key prefix an Estate's runs write under, as qfetch local's.
const Prefix = "qualys"

// EstateConfig is a simulated subscription and how it is fetched.
type EstateConfig struct {
	Dir       string // holds the NATS store and the directory bucket (bucket/)
	Hosts     int64  // simulated hosts
	Seed      uint64
	BatchSize int // default 100
	PageSize  int // Host List page size; default 200
	Slots     int // worker slots; default 2
	Overlap   time.Duration
	// HostListDetails and ShowTags are the planner's
	// QFETCH_QUALYS_HOSTLIST_DETAILS ("" is Basic) and
	// QFETCH_QUALYS_SHOW_TAGS.
	HostListDetails string
	ShowTags        bool
	// RunTimeout bounds one run and its tables; default 2 minutes.
	RunTimeout time.Duration
	Log        *slog.Logger

	// KB switches the planner's KnowledgeBase step on (QFETCH_KB_EVERY 0:
	// a pass after every detection step, details=All and qfetch's show_*
	// flags); Next then waits for the pass and its kb table too.
	KB          bool
	KBBatchSize int   // QIDs per KB batch; default 1000
	KBQIDs      int64 // the simulator's KB size (Config.KBQIDs); 0: its default
	// NewHostsPerDay is the simulator's: hosts added as the clock moves,
	// which bring QIDs that become visible late (what backfill is for).
	NewHostsPerDay int64
}

// Estate is the real pipeline (planner, workers with their table
// conversions, finisher, all built by app as qfetch local builds them) on
// the simulator, an embedded NATS and a directory bucket, driven run after
// run on the simulator's frozen clock so that each run's truth is fixed.
type Estate struct {
	Sim    *qualysim.Sim
	Bucket string // the directory bucket's root
	Runs   []Run  // the completed runs, oldest first

	cfg   EstateConfig
	parts app.Parts
	stop  func()
}

// Run is one completed run and the simulated instant it was fetched at.
type Run struct {
	ledger.RunRecord
	At time.Time // the simulator's clock during the run (frozen)
	// HostDetails and ShowTags are what the run asked for (EstateConfig).
	HostDetails string
	ShowTags    bool
	// KB is the KnowledgeBase pass the same planner pass planned; nil
	// when EstateConfig.KB is off.
	KB *KBPass
}

// KBPass is one completed KnowledgeBase pass, with what it cost.
type KBPass struct {
	ledger.RunRecord
	At time.Time // the simulator's clock during the pass (frozen)
	// VULNs are the VULN elements the simulator served while the planner
	// pass ran (its KnowledgeBase calls are the pass's alone).
	VULNs int64
	// Fetched and Converted are how long after the planner pass's start
	// the pass was complete (sealed) and its kb table complete (its runs
	// row written): polled every 50ms.
	Fetched, Converted time.Duration
}

// Filter is what the run asked the simulator: its window, at its instant,
// with qfetch's default statuses, its Host List details and tags.
func (r Run) Filter() qualysim.Filter {
	return qualysim.Filter{After: r.After, Before: r.Before, At: r.At, Statuses: DefaultStatuses,
		HostDetails: r.HostDetails, ShowTags: r.ShowTags}
}

// DefaultStatuses are the detection statuses qfetch asks for by default.
var DefaultStatuses = func() qualysim.StatusSet {
	s, err := qualysim.ParseStatuses("New,Active,Re-Opened,Fixed")
	if err != nil {
		panic(err)
	}
	return s
}()

// StartEstate starts the simulator (frozen clock, ten days in, so the
// first window holds every host), an embedded NATS and the parts.
func StartEstate(ctx context.Context, cfg EstateConfig) (_ *Estate, err error) {
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 100
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 200
	}
	if cfg.Slots == 0 {
		cfg.Slots = 2
	}
	if cfg.RunTimeout == 0 {
		cfg.RunTimeout = 2 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	var stops []func()
	stopAll := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stopAll()
		}
	}()

	if cfg.KBBatchSize == 0 {
		cfg.KBBatchSize = 1000
	}
	sim := qualysim.New(qualysim.Config{Seed: cfg.Seed, Hosts: cfg.Hosts, RateLimit: qualysim.Off, ConcurrencyLimit: cfg.Slots,
		KBQIDs: cfg.KBQIDs, NewHostsPerDay: cfg.NewHostsPerDay})
	stops = append(stops, sim.Close)
	sim.Advance(10 * 24 * time.Hour)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	simCtx, stopSim := context.WithCancel(context.WithoutCancel(ctx))
	var simGroup errgroup.Group
	simGroup.Go(func() error { return sim.Serve(simCtx, ln) })
	stops = append(stops, func() { stopSim(); _ = simGroup.Wait() })
	client, err := qualys.New(qualys.Config{BaseURL: qualysim.URL(ln), Username: sim.Username(), Password: sim.Password(),
		IdleTimeout: 2 * time.Second})
	if err != nil {
		return nil, err
	}

	js, stopNATS, err := local.StartNATS(filepath.Join(cfg.Dir, "nats"))
	if err != nil {
		return nil, err
	}
	stops = append(stops, stopNATS)
	q, err := app.Queue(ctx, js, config.NATS{}, config.Fleet{MaxInFlight: cfg.Slots}, 10*time.Second, app.RolePlanner)
	if err != nil {
		return nil, err
	}
	if _, err := app.Queue(ctx, js, config.NATS{}, config.Fleet{MaxInFlight: cfg.Slots}, 10*time.Second, app.RoleWorker); err != nil {
		return nil, err
	}
	root := filepath.Join(cfg.Dir, "bucket")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	store, err := objstore.NewDir(root)
	if err != nil {
		return nil, err
	}
	parts := app.Parts{Log: cfg.Log, Qualys: client, Store: store, Queue: q, Prefix: Prefix, Owner: "tablecheck"}
	return &Estate{Sim: sim, Bucket: root, cfg: cfg, parts: parts, stop: stopAll}, nil
}

// Close stops what StartEstate started; the bucket stays.
func (e *Estate) Close() { e.stop() }

// Tables is the directory that holds the estate's tables.
func (e *Estate) Tables() string { return filepath.Join(e.Bucket, Prefix, "tables") }

// Next advances the simulated clock by d, then plans one run (and, with
// EstateConfig.KB, a KnowledgeBase pass) and works it until the run is
// complete and so are its tables (its runs-table file is there), and the
// same for the KnowledgeBase pass and its kb table.
func (e *Estate) Next(ctx context.Context, d time.Duration) (Run, error) {
	at := e.Sim.Advance(d)
	e.Sim.ResetStats()
	// The request parameters as the planner's configuration makes them.
	q := config.Qualys{HostListDetails: e.cfg.HostListDetails, ShowTags: e.cfg.ShowTags}
	pcfg := plan.Config{BatchSize: e.cfg.BatchSize, PageSize: e.cfg.PageSize,
		HostListDetails: q.HostListDetails, HostListParams: q.HostListExtra(), DetectionParams: q.DetectionExtra(),
		Overlap: e.cfg.Overlap, LockTTL: 30 * time.Second, Now: e.Sim.Clock().Now}
	if e.cfg.KB {
		pcfg.KB = app.PlanKBConfig(q, config.KB{Enabled: true, BatchSize: e.cfg.KBBatchSize, Details: "All",
			Overlap: time.Hour, FullEvery: 720 * time.Hour})
	}
	planner := e.parts.Planner(pcfg)
	worker := e.parts.Worker(fetch.Config{Slots: e.cfg.Slots, MaxBackoff: 200 * time.Millisecond,
		ProbeEvery: time.Second, Grace: 5 * time.Second, PullWait: 200 * time.Millisecond}, nil)

	g, gctx := errgroup.WithContext(ctx)
	workCtx, stopWork := context.WithCancel(gctx)
	defer func() { stopWork(); _ = g.Wait() }()
	g.Go(func() error { return worker.Run(workCtx, workCtx) })
	// The worker's table loop, as qfetch local runs it: the conversions
	// queued after each batch and at the seal.
	conversions := e.parts.TableLoop(e.cfg.Slots)
	g.Go(func() error { return conversions.Run(workCtx) })

	start := time.Now()
	out, err := planner.Run(gctx)
	if err != nil {
		return Run{}, fmt.Errorf("planner: %w", err)
	}
	if out.Skipped || out.Superseded {
		return Run{}, fmt.Errorf("planner made no run: %s", out.Reason)
	}
	var kb *KBPass
	if e.cfg.KB {
		if kb, err = e.waitKB(gctx, out.KB, at, start); err != nil {
			return Run{}, err
		}
	}
	var rec ledger.RunRecord
	err = poll(gctx, e.cfg.RunTimeout, func() (bool, error) {
		rec, err = e.parts.Queue.GetRun(gctx, out.Run)
		if err != nil {
			return false, err
		}
		if rec.State == ledger.RunFailed {
			return false, fmt.Errorf("run %s failed: %s", rec.ID, rec.Error)
		}
		if rec.State != ledger.RunComplete {
			return false, nil
		}
		return e.tablesComplete(rec), nil
	})
	if err != nil {
		// Say how far it got: the run's state, its tables' parts.
		st, serr := e.parts.TableBuilder().Status(context.WithoutCancel(ctx), out.Run)
		return Run{}, fmt.Errorf("run %s (state %s; tables: %d of %d parts recorded, manifest %t; %v): %w",
			out.Run, st.State, st.Recorded, st.Expected, st.Complete, serr, err)
	}
	r := Run{RunRecord: rec, At: at, HostDetails: e.cfg.HostListDetails, ShowTags: e.cfg.ShowTags, KB: kb}
	e.Runs = append(e.Runs, r)
	return r, nil
}

// waitKB waits until the KnowledgeBase pass the planner pass planned is
// complete and so is its kb table (its runs row is written).
func (e *Estate) waitKB(ctx context.Context, out *plan.KBOutcome, at, start time.Time) (*KBPass, error) {
	switch {
	case out == nil:
		return nil, fmt.Errorf("the planner's KnowledgeBase step did not run")
	case out.Error != "":
		return nil, fmt.Errorf("KnowledgeBase step: %s", out.Error)
	case out.Skipped || out.Superseded || out.Pass == "":
		return nil, fmt.Errorf("the planner made no KnowledgeBase pass: %s", out.Reason)
	}
	p := &KBPass{At: at}
	err := poll(ctx, e.cfg.RunTimeout, func() (bool, error) {
		rec, err := e.parts.Queue.GetRun(ctx, out.Pass)
		if err != nil {
			return false, err
		}
		if rec.State == ledger.RunFailed {
			return false, fmt.Errorf("KnowledgeBase pass %s failed: %s", rec.ID, rec.Error)
		}
		if rec.State != ledger.RunComplete {
			return false, nil
		}
		if p.Fetched == 0 {
			p.Fetched = time.Since(start)
		}
		p.RunRecord = rec
		return e.tablesComplete(rec), nil
	})
	if err != nil {
		st, serr := e.parts.TableBuilder().Status(context.WithoutCancel(ctx), out.Pass)
		return nil, fmt.Errorf("KnowledgeBase pass %s (kb table: %d of %d parts recorded, manifest %t; %v): %w",
			out.Pass, st.Recorded, st.Expected, st.Complete, serr, err)
	}
	p.Converted = time.Since(start)
	p.VULNs = e.Sim.Stats().Endpoints[qualysim.KB].VULNs
	return p, nil
}

// tablesComplete says whether the run's tables are complete: its table
// manifest and, written last, its file in the runs table exist (by glob:
// the file's part name is the converter's business).
func (e *Estate) tablesComplete(rec ledger.RunRecord) bool {
	if _, err := os.Stat(filepath.Join(e.Bucket, filepath.FromSlash(tables.ManifestKey(Prefix, rec.ID)))); err != nil {
		return false
	}
	dir := path.Dir(tables.PartKey(Prefix, tables.Runs, rec.ID, rec.Created, "x"))
	files, err := filepath.Glob(filepath.Join(e.Bucket, filepath.FromSlash(dir), "*.parquet"))
	return err == nil && len(files) > 0
}

// poll calls cond every 50ms until it is true, fails, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not done within %v: %w", timeout, context.Cause(ctx))
		case <-t.C:
		}
	}
}
