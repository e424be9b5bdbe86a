// Command worker pulls qfetch batches from JetStream, fetches each batch's
// Qualys host detections and streams them into the bucket.
//
// The first SIGTERM stops pulling and gives batches in flight
// QFETCH_WORKER_GRACE to finish; the second abandons them at once. Either
// way unfinished batches go back to the queue.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/interrupt"
	"github.com/qfetch/qfetch/internal/runstat"
)

const usage = `usage: worker [--help | --version]

worker pulls qfetch batches from JetStream, fetches each batch's Qualys
host detections and streams them into the bucket. It serves /healthz,
/readyz and /metrics on QFETCH_WORKER_LISTEN. The first SIGTERM stops
pulling and gives batches in flight QFETCH_WORKER_GRACE to finish.

At start it checks NATS and JetStream, the bucket (it writes and deletes
a probe object under <prefix>/_qfetch-check/) and the Qualys login
(/msp/about.php), and pulls nothing until they pass: it does not exit,
it logs what failed and checks again with back-off (at most every
QFETCH_WORKER_PROBE_EVERY; the login every four). /readyz answers
"ready" or "not ready: <state>", the state one of starting, nats, store,
qualys, paused, wedged, unavailable.

It takes no arguments: it is configured by QFETCH_* variables, mainly
QFETCH_QUALYS_URL, QFETCH_QUALYS_USERNAME, QFETCH_QUALYS_PASSWORD,
QFETCH_NATS_URL, QFETCH_S3_ENDPOINT, QFETCH_S3_BUCKET, QFETCH_S3_ACCESS_KEY,
QFETCH_S3_SECRET_KEY, QFETCH_WORKER_SLOTS (README, "Configuration", lists
them all).

` + app.ExitCodesHelp

func main() {
	if code, exit := app.Args("worker", usage, os.Args[1:], os.Stdout, os.Stderr); exit {
		os.Exit(code)
	}
	soft, hard, stop := signals()
	err := run(soft, hard)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
	}
	os.Exit(app.ExitCode(err))
}

// signals: the first SIGINT/SIGTERM ends soft, the second ends hard. A
// signal caught before main (interrupt's early handler) ends soft too; the
// hard stop then takes two more.
func signals() (soft, hard context.Context, stop func()) {
	soft, cancelSoft := interrupt.Context(context.Background())
	hard, cancelHard := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, interrupt.Signals...)
	done := make(chan struct{})
	go func() {
		for n := 0; ; n++ {
			select {
			case <-ch:
				if n == 0 {
					// interrupt.Context's own handler cancels soft.
					continue
				}
				cancelHard()
				return
			case <-done:
				return
			}
		}
	}()
	return soft, hard, func() {
		signal.Stop(ch)
		close(done)
		cancelSoft()
		cancelHard()
	}
}

func run(soft, hard context.Context) error {
	var s app.WorkerSpec
	if err := app.LoadConfig(&s); err != nil {
		return err
	}
	log, err := app.Logger(s.Log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	app.RegisterBuildInfo(reg)

	// /readyz answers from the start: not ready (starting, then the first
	// failing start check's state) until the start checks pass.
	gate := app.NewGate()
	ready := app.NewReadiness(log, gate.Ready)
	srv, err := app.Listen(s.Worker.Listen, "QFETCH_WORKER_LISTEN", app.Handler(reg, ready.Ready))
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	stopServing := func() error {
		srv.Shutdown()
		return <-served
	}
	log.Info("worker starting: checking NATS, the bucket and the Qualys login before pulling", app.BuildAttr(),
		"slots", s.Worker.Slots, "listen", srv.Addr())

	// It waits for its dependencies instead of exiting: see app.StartParts.
	parts, err := app.StartParts(soft, "qfetch-worker", app.RoleWorker, s.Sections(), log, gate, s.Worker.ProbeEvery)
	if err != nil {
		_ = stopServing()
		if soft.Err() != nil {
			return fmt.Errorf("interrupted: %w", context.Cause(soft))
		}
		return err
	}
	defer parts.Close()

	parts.TableMetrics = fetch.NewTableMetrics(reg)
	w := parts.Worker(s.FetchConfig(), fetch.NewMetrics(reg))
	// Conversions run beside the fetches, off the Qualys slots (I9).
	conversions := parts.TableLoop(s.Tables.Concurrency)
	reporter := parts.Reporter(runstat.ReporterConfig{Every: s.Worker.StatusEvery}, runstat.NewMetrics(reg))
	ready.Use(gate.Ready, app.Connected(parts.NATS), workerReady(w))

	log.Info("worker started", app.BuildAttr(), "slots", s.Worker.Slots, "listen", srv.Addr(), "store", parts.Store.Describe())
	var g errgroup.Group
	g.Go(func() error { return <-served })
	// Run-level metrics and status.json, until the first signal.
	g.Go(func() error { return reporter.Run(soft) })
	g.Go(func() error { return conversions.Run(soft) })
	g.Go(func() error {
		defer srv.Shutdown()
		return w.Run(soft, hard)
	})
	err = g.Wait()
	log.Info("worker stopped")
	if err == nil && soft.Err() != nil {
		// Stopped by a signal, its batches handed back: 130 as for the
		// planner (README, "Exit codes").
		return fmt.Errorf("interrupted: %w", context.Cause(soft))
	}
	return err
}

// workerReady is the worker's own readiness: paused while the fleet (or
// this worker alone) is paused by a fleet-wide fault; an error that names
// its state (a wedged worker's) keeps it.
func workerReady(w *fetch.Worker) func() error {
	return func() error {
		err := w.Ready()
		if err == nil {
			return nil
		}
		if app.StateOf(err) != app.StateUnavailable {
			return err
		}
		return &app.NotReady{State: app.StatePaused, Err: err}
	}
}
