package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/retry"
	"github.com/qfetch/qfetch/internal/runstat"
	"github.com/qfetch/qfetch/internal/tables"
)

// Role is what a process does in the fleet. It decides what the process may
// change of the shared setup and how its parts are sized.
type Role int

const (
	// RolePlanner lists hosts and publishes batches; it adopts the consumer
	// as the workers set it.
	RolePlanner Role = iota + 1
	// RoleWorker fetches batches; workers own the consumer's settings (the
	// fleet cap, I5).
	RoleWorker
	// RoleExporter writes run-level metrics and status.json; it adopts the
	// consumer like a planner.
	RoleExporter
)

func (r Role) ownsConsumer() bool { return r == RoleWorker }

// ownsStreams: planners create the streams and buckets and bring them to
// their settings; the other roles bind to them and wait for a planner.
func (r Role) ownsStreams() bool { return r == RolePlanner }

// partSize is the store's multipart part size (0: the default). The
// planner's pages are a few MB: the smallest part keeps it lean.
func (r Role) partSize() uint64 {
	if r == RolePlanner {
		return objstore.MinPartSize
	}
	return 0
}

// Store is what the roles need of a store, together: *objstore.S3 and
// *objstore.Dir both are one.
type Store interface {
	fetch.Store
	finish.Store
	plan.Store
	runstat.Store
	tables.Store
	// Describe names the store for logs, without secrets.
	Describe() string
}

// Finisher is what a planner or worker calls when a run may be complete.
type Finisher interface {
	TryFinish(ctx context.Context, run string) error
}

// Parts are built once per process; the roles are built on them. Build
// fills them from configuration; `qfetch local`, the bench and the tests
// fill them with parts of their own.
type Parts struct {
	Log    *slog.Logger
	Qualys *qualys.Client
	Store  Store
	Queue  JetStream
	Prefix string // object key prefix
	Owner  string // this process, for locks and records
	// Finish is the finisher planners and workers on these parts call; nil:
	// one built by Finisher. Tests set their own.
	Finish Finisher
	// TableMetrics count the table conversions of the worker and table
	// loop built on these parts; nil: unregistered ones.
	TableMetrics *fetch.TableMetrics
	// NATS is the connection Build opened, closed by Close; nil otherwise.
	NATS *nats.Conn
}

// Sections are the configuration sections Build reads.
type Sections struct {
	Qualys config.Qualys
	S3     config.S3
	NATS   config.NATS
	Log    config.Log
	Fleet  config.Fleet
	// AckWait is the consumer's (workers only; 0: the default).
	AckWait time.Duration
	// SetupWait bounds how long Build asks JetStream again while its
	// set-up gets no answer (0: DefaultSetupWait).
	SetupWait time.Duration
}

// DefaultSetupWait is how long Build sets up JetStream again while the
// cluster has no leader to answer: an election after a node's loss or
// restart ends within seconds, a lost quorum does not.
const DefaultSetupWait = 30 * time.Second

// Build builds the parts for the process called name, in role. Close the
// parts when done.
func Build(ctx context.Context, name string, role Role, s Sections) (*Parts, error) {
	log, err := Logger(s.Log)
	if err != nil {
		return nil, err
	}
	client, store, err := clients(s, role)
	if err != nil {
		return nil, err
	}
	nc, js, err := Connect(s.NATS, name, log)
	if err != nil {
		return nil, err
	}
	q, err := setUp(ctx, js, s, role, log)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &Parts{Log: log, Qualys: client, Store: store, Queue: q, Prefix: s.S3.Prefix, Owner: Owner(), NATS: nc}, nil
}

// setUp is [Queue], asked again while JetStream does not answer it. The
// set-up only creates what is missing and binds, so another try is safe;
// a cluster electing leaders (a node lost or restarted) answers again in
// seconds, and the pass then goes on instead of failing for its CronJob
// to run it again. What still has no answer after s.SetupWait is a lost
// quorum (fleet-wide, as [msg.Confirm] finds) or the request's own error.
func setUp(ctx context.Context, js jetstream.JetStream, s Sections, role Role, log *slog.Logger) (JetStream, error) {
	p := setupRetry{wait: s.SetupWait, base: 500 * time.Millisecond, max: 4 * time.Second}
	if p.wait <= 0 {
		p.wait = DefaultSetupWait
	}
	return p.do(ctx, log, func() (JetStream, error) {
		q, err := Queue(ctx, js, s.NATS, s.Fleet, s.AckWait, role)
		// A cluster without quorum fails every process alike: fleet-wide.
		return q, msg.Confirm(ctx, js, err)
	})
}

// setupRetry is how [setUp] asks again: for up to wait in all, backing
// off from base to max between tries.
type setupRetry struct{ wait, base, max time.Duration }

func (p setupRetry) do(ctx context.Context, log *slog.Logger, try func() (JetStream, error)) (JetStream, error) {
	start := time.Now()
	for n := 1; ; n++ {
		q, err := try()
		if err == nil {
			return q, nil
		}
		// A refusal also leaves requests unanswered; no wait mends the
		// pod's credentials.
		noPeers := msg.NoPeers(err)
		if !(msg.Unanswered(err) || noPeers) || errors.Is(err, nats.ErrPermissionViolation) || ctx.Err() != nil {
			return JetStream{}, err
		}
		d := retry.Backoff(n, p.base, p.max)
		if time.Since(start)+d > p.wait {
			if noPeers {
				// Servers down, or fewer than the replicas asked: an
				// operator's to mend, whichever process meets it.
				return JetStream{}, failure.FleetWide(fmt.Errorf("%w (too few NATS servers up for QFETCH_NATS_STREAM_REPLICAS in %d tries over %s)",
					err, n, time.Since(start).Round(time.Second)))
			}
			return JetStream{}, fmt.Errorf("%w (no answer in %d tries over %s)", err, n, time.Since(start).Round(time.Second))
		}
		why := "no answer (a leader election, or the cluster's quorum lost)"
		if noPeers {
			why = "too few servers up to place the streams at their replicas (a server down, or not yet heard from after a start)"
		}
		log.Warn("setting up JetStream: "+why+"; asking again",
			slog.Int("try", n), slog.Duration("in", d), slog.Any("error", err))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return JetStream{}, err
		}
	}
}

// clients builds the Qualys client and the store of a process in role.
func clients(s Sections, role Role) (*qualys.Client, *objstore.S3, error) {
	client, err := Qualys(s.Qualys)
	if err != nil {
		return nil, nil, err
	}
	store, err := S3(s.S3, role.partSize())
	if err != nil {
		return nil, nil, err
	}
	return client, store, nil
}

// Close closes the NATS connection Build opened.
func (p Parts) Close() {
	if p.NATS != nil {
		p.NATS.Close()
	}
}

// Finisher builds a finisher on p; cfg's Prefix and Owner are p's.
func (p Parts) Finisher(cfg finish.Config) *finish.Finisher {
	cfg.Prefix, cfg.Owner = p.Prefix, p.Owner
	if cfg.Tables == nil && p.Queue.Tables != nil {
		cfg.Tables = p.TableBuilder()
	}
	return finish.New(cfg, p.Queue.Ledger, p.Store, p.Log)
}

func (p Parts) finisher() Finisher {
	if p.Finish != nil {
		return p.Finish
	}
	return p.Finisher(finish.Config{})
}

// Planner builds a planner on p; cfg's Prefix and Owner are p's. Its
// KnowledgeBase step (on when cfg.KB.Enabled) lists QIDs with p's Qualys
// client and reads the QIDs runs use from p's store's table manifests.
func (p Parts) Planner(cfg plan.Config) *plan.Planner {
	cfg.Prefix, cfg.Owner = p.Prefix, p.Owner
	if cfg.Tables == nil {
		cfg.Tables = p.tableSweeper()
	}
	pl := plan.New(cfg, p.Queue.Queue, p.Queue.Ledger, p.Qualys, p.Store, p.finisher(), p.Log)
	store, prefix := p.Store, p.Prefix
	return pl.WithKB(plan.KBDeps{
		QIDs:    p.Qualys,
		Ledger:  p.Queue.Ledger,
		Objects: p.Store,
		Used: func(ctx context.Context, runs []string) (hostids.Set, []string, error) {
			return tables.UsedQIDs(ctx, store, prefix, runs)
		},
	})
}

// Worker builds a worker on p; cfg's Prefix and Owner are p's. metrics may
// be nil.
func (p Parts) Worker(cfg fetch.Config, metrics *fetch.Metrics) *fetch.Worker {
	cfg.Prefix, cfg.Owner = p.Prefix, p.Owner
	q := p.Queue
	return fetch.New(cfg, fetch.Deps{
		Queue:        q.Queue,
		Ledger:       q.Ledger,
		Fleet:        q.Ledger.Fleet(p.Owner),
		Publisher:    func() fetch.Publisher { return q.Publisher(msg.PublisherOptions{}) },
		API:          p.Qualys,
		KB:           p.Qualys,
		Store:        p.Store,
		Finish:       p.finisher(),
		Metrics:      metrics,
		Log:          p.Log,
		Tables:       p.tablePublisher(),
		TableMetrics: p.TableMetrics,
	})
}

// Reporter builds the run-level metrics and status.json writer on p; cfg's
// Prefix and Owner are p's. metrics may be nil.
func (p Parts) Reporter(cfg runstat.ReporterConfig, metrics *runstat.Metrics) *runstat.Reporter {
	cfg.Prefix, cfg.Owner = p.Prefix, p.Owner
	if cfg.TablesComplete == nil {
		cfg.TablesComplete = p.tablesComplete()
	}
	return runstat.NewReporter(cfg, p.Queue, p.Store, metrics, p.Log)
}

// WorkerSpec is the worker's configuration: cmd/worker's and the bench's
// in-process worker's.
type WorkerSpec struct {
	Qualys config.Qualys
	NATS   config.NATS
	S3     config.S3
	Log    config.Log
	Worker config.Worker
	Tables config.Tables
	config.Fleet
}

// Sections are the parts' configuration sections.
func (s WorkerSpec) Sections() Sections {
	return Sections{Qualys: s.Qualys, S3: s.S3, NATS: s.NATS, Log: s.Log, Fleet: s.Fleet, AckWait: s.Worker.AckWait}
}

// FetchConfig is the worker's own settings.
func (s WorkerSpec) FetchConfig() fetch.Config {
	return fetch.Config{
		Slots:           s.Worker.Slots,
		TruncationLimit: s.Qualys.DetectionTruncationLimit,
		Grace:           s.Worker.Grace,
		ProbeEvery:      s.Worker.ProbeEvery,
		MaxBackoff:      s.Worker.MaxBackoff,
	}
}

// kbShow are the show_* flags of every KnowledgeBase request (QETL's full
// set): the kb table's columns need them.
var kbShow = []string{"show_disabled_flag", "show_qid_change_log", "show_supported_modules_info", "show_pci_reasons"}

// PlanKBConfig is a planner's KnowledgeBase step from its configuration
// sections; LoadConfig has validated them. A pass's parameters are the
// operator's extras (QFETCH_QUALYS_KB_PARAMS), the show_* flags set to 1
// unless the operator set them, and details from QFETCH_KB_DETAILS,
// which wins.
func PlanKBConfig(q config.Qualys, kb config.KB) plan.KBConfig {
	params := q.KBParams.Values()
	for _, f := range kbShow {
		if !params.Has(f) {
			params.Set(f, "1")
		}
	}
	params.Set("details", kb.Details)
	return plan.KBConfig{
		Enabled:    kb.Enabled,
		BatchSize:  kb.BatchSize,
		Params:     params,
		ListParams: q.KBParams.Values(),
		Overlap:    kb.Overlap,
		Every:      kb.Every,
		FullEvery:  kb.FullEvery,
	}
}

// PlanConfig is a planner's settings from its configuration sections;
// LoadConfig has validated them.
func PlanConfig(q config.Qualys, f config.Fleet, c config.Plan) plan.Config {
	firstAfter, _ := c.FirstAfterTime()
	return plan.Config{
		BatchSize:       f.BatchSize,
		PageSize:        q.HostListPageSize,
		HostListDetails: q.HostListDetails,
		Overlap:         c.Overlap,
		FirstAfter:      firstAfter,
		HostListParams:  q.HostListExtra(),
		DetectionParams: q.DetectionExtra(),
		LockTTL:         c.LockTTL,
	}
}
