// Command planner opens (or resumes) one qfetch run: it pages the Qualys
// Host List and publishes the host IDs as batches to JetStream.
//
// Configuration comes from QFETCH_* variables (see README); the exit code
// says what happened (README, "Exit codes").
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
)

type spec struct {
	Qualys config.Qualys
	NATS   config.NATS
	S3     config.S3
	Log    config.Log
	Plan   config.Plan
	config.Fleet
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "planner:", err)
	}
	os.Exit(app.ExitCode(err))
}

func run(ctx context.Context) error {
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
	p := parts.Planner(app.PlanConfig(s.Qualys, s.Fleet, s.Plan))

	out, err := p.Run(ctx)
	if err != nil {
		return err
	}
	if out.Skipped {
		log.Info("nothing to plan", "reason", out.Reason)
		return nil
	}
	log.Info("planned", slog.String("run", out.Run), slog.Bool("resumed", out.Resumed),
		slog.Int("batches", out.Batches), slog.Int("hosts", out.Hosts))
	return nil
}
