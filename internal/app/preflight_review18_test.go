package app_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
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

// TestPreflightRidesOutABlip: one 503 from Qualys (or one reset) at the
// planner's start is not a fault: the Host List calls that follow retry
// such an answer eight times, so the preflight must not fail the whole
// CronJob run on it (exit 1, a window skipped until the next schedule).
func TestPreflightRidesOutABlip(t *testing.T) {
	sim := qualysim.New(qualysim.Config{Seed: 1, Hosts: 10})
	t.Cleanup(sim.Close)
	var abouts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/msp/about.php" && abouts.Add(1) == 1 {
			http.Error(w, "<html><title>503 Service Temporarily Unavailable</title></html>", http.StatusServiceUnavailable)
			return
		}
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := qualys.New(qualys.Config{BaseURL: srv.URL, Username: sim.Username(), Password: sim.Password(), ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	store, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := app.Parts{Log: slog.New(slog.DiscardHandler), Qualys: c, Store: store, Prefix: "qualys"}
	if err := p.Preflight(t.Context()); err != nil {
		t.Fatalf("Preflight after one 503: %v (exit %d)", err, app.ExitCode(err))
	}
	if n := abouts.Load(); n != 2 {
		t.Errorf("%d about.php calls, want 2", n)
	}
}
