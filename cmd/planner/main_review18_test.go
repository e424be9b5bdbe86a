package main

import (
	"context"
	"net"
	"testing"

	"github.com/qfetch/qfetch/internal/app"
)

// TestStoppedPlannerExits130: a planner told to stop (SIGTERM from the
// CronJob's deadline, SIGINT) while it starts exits 130 whatever the start
// then met, as the worker does: an operator reading 3 would go looking for
// a fleet-wide fault that may not exist.
func TestStoppedPlannerExits130(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for k, v := range map[string]string{
		"QFETCH_QUALYS_URL":      "http://127.0.0.1:9",
		"QFETCH_QUALYS_USERNAME": "user",
		"QFETCH_QUALYS_PASSWORD": "a-long-password",
		"QFETCH_NATS_URL":        "nats://" + closed,
		"QFETCH_S3_ENDPOINT":     closed,
		"QFETCH_S3_SECURE":       "false",
		"QFETCH_S3_ACCESS_KEY":   "access-key",
		"QFETCH_S3_SECRET_KEY":   "secret-key-123",
		"QFETCH_S3_BUCKET":       "qualys-raw",
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(stopSignal{})
	err = run(ctx)
	if code := app.ExitCode(err); code != app.ExitInterrupted {
		t.Fatalf("exit code %d (%v), want %d", code, err, app.ExitInterrupted)
	}
}

// stopSignal is a cause as interrupt.Context gives it: context.Canceled
// for errors.Is.
type stopSignal struct{}

func (stopSignal) Error() string        { return "terminated signal received" }
func (stopSignal) Is(target error) bool { return target == context.Canceled }
