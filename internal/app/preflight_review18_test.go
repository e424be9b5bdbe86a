package app_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/ops"
)

// readOnlyStore is a bucket that exists but refuses every write, as with a
// read-only key; it cancels stop at the tries-th write.
type readOnlyStore struct {
	tries int
	stop  context.CancelFunc
	puts  int
}

func (s *readOnlyStore) Check(context.Context) error { return nil }
func (s *readOnlyStore) Put(_ context.Context, _ string, _ io.Reader, _ objstore.PutOptions) (objstore.Object, error) {
	if s.puts++; s.puts == s.tries {
		s.stop()
	}
	return objstore.Object{}, errors.New("Access Denied.")
}
func (s *readOnlyStore) Delete(context.Context, string) error { return nil }
func (s *readOnlyStore) Describe() string                     { return "s3://127.0.0.1:9000/qualys-raw" }

// TestGateLogsABucketFaultOnce: Pass logs a failing check once, and again
// only when its cause changes. A bucket refusing writes is one cause,
// however many tries meet it: the worker's log must not get an ERROR line
// per try (every QFETCH_WORKER_PROBE_EVERY, for ever) for it.
func TestGateLogsABucketFaultOnce(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ctx, cancel := context.WithCancel(t.Context())
	store := &readOnlyStore{tries: 4, stop: cancel}
	g := app.NewGate()
	err := g.Pass(ctx, log, time.Millisecond, app.StartCheck{State: app.StateStore, Name: "the bucket", Max: time.Millisecond,
		Run: func(ctx context.Context) error { return ops.CheckBucket(ctx, store, "qualys") }})
	if app.ExitCode(err) != app.ExitInterrupted {
		t.Fatalf("Pass: %v", err)
	}
	if store.puts != 4 {
		t.Fatalf("%d tries, want 4", store.puts)
	}
	if n := strings.Count(buf.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines for one cause met 3 times, want 1:\n%s", n, buf.String())
	}
}
