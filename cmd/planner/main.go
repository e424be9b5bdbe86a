// Command planner opens (or resumes) one qfetch run: it pages the Qualys
// Host List and publishes the host IDs as batches to JetStream; then it
// does the same for a KnowledgeBase pass over the QIDs.
//
// Configuration comes from QFETCH_* variables (see README); the exit code
// says what happened (README, "Exit codes").
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/interrupt"
	"github.com/qfetch/qfetch/internal/plan"
)

type spec struct {
	Qualys config.Qualys
	NATS   config.NATS
	S3     config.S3
	Log    config.Log
	Plan   config.Plan
	KB     config.KB
	config.Fleet
}

const usage = `usage: planner [--help | --version]

planner opens (or resumes) one qfetch run: it pages the Qualys Host List
for the hosts changed since the watermark and publishes their IDs as
batches to JetStream, where the workers pick them up. Then, unless
QFETCH_KB_ENABLED=false, it does the same for the KnowledgeBase: a pass
over the QIDs changed since the KB watermark (the whole KnowledgeBase the
first time and every QFETCH_KB_FULL_EVERY). It runs once and exits (a
CronJob). The exit code is the detection run's: a KnowledgeBase failure is
logged and printed, and the next pass tries again.

It takes no arguments: it is configured by QFETCH_* variables, mainly
QFETCH_QUALYS_URL, QFETCH_QUALYS_USERNAME, QFETCH_QUALYS_PASSWORD,
QFETCH_NATS_URL, QFETCH_S3_ENDPOINT, QFETCH_S3_BUCKET, QFETCH_S3_ACCESS_KEY,
QFETCH_S3_SECRET_KEY (README, "Configuration", lists them all).

` + app.ExitCodesHelp

func main() {
	if code, exit := app.Args("planner", usage, os.Args[1:], os.Stdout, os.Stderr); exit {
		os.Exit(code)
	}
	ctx, stop := interrupt.Context(context.Background())
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "planner:", err)
	}
	os.Exit(app.ExitCode(err))
}

func run(ctx context.Context) (err error) {
	defer func() {
		// A stop asked for is what ended the planner, whatever it met on
		// the way out (NATS dials ignore ctx): 130, as for the worker.
		if err != nil && ctx.Err() != nil && !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("interrupted: %w (and: %w)", context.Cause(ctx), err)
		}
	}()
	var s spec
	if err := app.LoadConfig(&s); err != nil {
		return err
	}
	parts, err := app.Build(ctx, "qfetch-planner", app.RolePlanner, app.Sections{Qualys: s.Qualys, S3: s.S3, NATS: s.NATS, Log: s.Log, Fleet: s.Fleet})
	if err != nil {
		return err
	}
	defer parts.Close()
	log := parts.Log
	log.Info("planner started", app.BuildAttr())
	// Before a run is opened or resumed: a wrong password or a missing
	// bucket must leave no failed run behind.
	if err := parts.Preflight(ctx); err != nil {
		return err
	}
	cfg := app.PlanConfig(s.Qualys, s.Fleet, s.Plan)
	cfg.KB = app.PlanKBConfig(s.Qualys, s.KB)
	p := parts.Planner(cfg)

	out, err := p.Run(ctx)
	// The KnowledgeBase step's outcome is reported whatever the detection
	// step's; it never decides the exit code (I9).
	defer reportKB(log, out.KB)
	if err != nil {
		return err
	}
	if out.Skipped {
		log.Info("nothing to plan", "reason", out.Reason)
		return nil
	}
	if out.Superseded {
		// Not a failure: the run goes on under the pass that took it over.
		log.Warn("stopped planning: another planner took the run over", slog.String("run", out.Run),
			slog.String("reason", out.Reason), slog.Int("batches", out.Batches))
		return nil
	}
	log.Info("planned", slog.String("run", out.Run), slog.Bool("resumed", out.Resumed),
		slog.Int("batches", out.Batches), slog.Int("hosts", out.Hosts))
	return nil
}

// reportKB logs what the KnowledgeBase step did; kb is nil when it is off
// or did not run.
func reportKB(log *slog.Logger, kb *plan.KBOutcome) {
	switch {
	case kb == nil:
	case kb.Error != "":
		log.Error("KnowledgeBase pass failed; the next planner pass tries again", slog.String("pass", kb.Pass),
			slog.Int("batches", kb.Batches), slog.String("error", kb.Error))
	case kb.Skipped:
		log.Info("no KnowledgeBase pass to plan", slog.String("reason", kb.Reason))
	case kb.Superseded:
		log.Warn("stopped planning the KnowledgeBase pass: another planner took it over",
			slog.String("pass", kb.Pass), slog.String("reason", kb.Reason))
	default:
		log.Info("planned KnowledgeBase pass", slog.String("pass", kb.Pass), slog.Bool("full", kb.Full),
			slog.Bool("resumed", kb.Resumed), slog.Int("batches", kb.Batches), slog.Int("qids", kb.QIDs),
			slog.Int("backfill", kb.Backfill))
	}
}
