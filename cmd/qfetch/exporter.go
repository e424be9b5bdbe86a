package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/runstat"
)

func exporterCommand() *cobra.Command {
	return withExitCodes(&cobra.Command{
		Use:   "exporter",
		Short: "serve the run-level metrics and write status.json (one always-on pod)",
		Long: `Serves the run-level metrics (/metrics) and writes runs/<run>/status.json
(kb/<pass>/status.json for a KnowledgeBase pass, whose series are apart),
whether or not workers are running: run it as one always-on pod, so that
alerts see the last complete run, dead letters and the queue even while the
workers are scaled to zero. Reads QFETCH_NATS_*, QFETCH_S3_*, QFETCH_LOG_*,
QFETCH_MAX_IN_FLIGHT and QFETCH_EXPORTER_LISTEN / QFETCH_EXPORTER_EVERY.
It never changes the workers' consumer settings.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error { return runExporter(cmd.Context()) }),
	})
}

func runExporter(ctx context.Context) error {
	var s struct {
		NATS     config.NATS
		S3       config.S3
		Log      config.Log
		Exporter config.Exporter
		config.Fleet
	}
	if err := app.LoadConfig(&s); err != nil {
		return err
	}
	log, err := app.Logger(s.Log)
	if err != nil {
		return err
	}
	store, err := app.S3(s.S3, 0)
	if err != nil {
		return err
	}
	nc, js, err := app.Connect(s.NATS, "qfetch-exporter", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	app.RegisterBuildInfo(reg)
	gate := app.NewGate()
	ready := app.NewReadiness(log, gate.Ready, app.Connected(nc))
	srv, err := app.Listen(s.Exporter.Listen, "QFETCH_EXPORTER_LISTEN", app.Handler(reg, ready.Ready))
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(srv.Serve)
	g.Go(func() error {
		defer srv.Shutdown()
		// It binds to the streams and buckets the planner creates (it may
		// create none, #17) and adopts the consumer as the workers set it
		// (I5): on a new installation it waits, not ready, for the first
		// planner.
		var q app.JetStream
		err := gate.Pass(gctx, log, time.Second, app.StartCheck{State: app.StateNATS, Name: "qfetch's streams and buckets",
			Max: 30 * time.Second, Run: func(ctx context.Context) error {
				var err error
				q, err = app.Queue(ctx, js, s.NATS, s.Fleet, 0, app.RoleExporter)
				return err
			}})
		if err != nil {
			if gctx.Err() != nil {
				return nil // stopped while waiting: as at any other time
			}
			return err
		}
		parts := app.Parts{Log: log, Store: store, Queue: q, Prefix: s.S3.Prefix, Owner: app.Owner()}
		reporter := parts.Reporter(runstat.ReporterConfig{Every: s.Exporter.Every}, runstat.NewMetrics(reg))
		log.Info("exporter started", app.BuildAttr(), "listen", srv.Addr(), "every", s.Exporter.Every.String(), "store", store.Describe())
		return reporter.Run(gctx)
	})
	// The reporter ends at a signal, the server with it: exit 0.
	return g.Wait()
}
