package local_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/local"
	"github.com/qfetch/qfetch/internal/runstat"
)

// TestLocalTwice: the first run fetches everything into the directory and
// completes; the second, from the same data directory, runs the next window.
func TestLocalTwice(t *testing.T) {
	dir := t.TempDir()
	cfg := local.Config{Dir: dir, Prefix: "qualys", BatchSize: 500, Slots: 2, PageSize: 1000,
		SimHosts: 3000, SimSeed: 5, SimFaults: 0.05, Log: slog.New(slog.DiscardHandler)}
	first, err := local.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if first.Batches != 6 || first.HostsRequested != 3000 || first.HostsReturned == 0 || first.Bytes == 0 || !first.After.IsZero() {
		t.Fatalf("first run: %+v", first)
	}
	for _, p := range []string{first.Success, first.Manifest} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	checkStatus(t, first)
	// The run's analyst tables are complete when its summary is printed.
	if _, err := os.Stat(first.Tables); err != nil || first.TablesGlob == "" {
		t.Fatalf("first run's tables %q (%v), glob %q", first.Tables, err, first.TablesGlob)
	}
	if parts, _ := filepath.Glob(filepath.Join(dir, "bucket", "qualys", "tables", "detections", "run_date=*", "run="+first.Run, "*.parquet")); len(parts) != first.Batches {
		t.Fatalf("first run: %d detections parts, want %d", len(parts), first.Batches)
	}
	second, err := local.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if second.Run == first.Run || !second.After.Equal(first.Before) || second.HostsRequested >= 3000 {
		t.Fatalf("second run %+v after first %+v", second, first)
	}
	if _, err := os.Stat(second.Success); err != nil {
		t.Fatal(err)
	}
	// The first run's status lock is gone: the second writes its own.
	checkStatus(t, second)
}

// checkStatus: status.json sits next to the run's manifest and says the run
// completed, with its bytes.
func checkStatus(t *testing.T, sum local.Summary) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(sum.Manifest), "status.json"))
	if err != nil {
		t.Fatalf("run %s: no status.json: %v", sum.Run, err)
	}
	var st runstat.Status
	if err := json.Unmarshal(b, &st); err != nil || st.State != ledger.RunComplete || st.Run != sum.Run || st.Bytes != sum.Bytes {
		t.Fatalf("run %s: status.json %+v, %v", sum.Run, st, err)
	}
}

// TestLocalInterruptedWhileFetching: a local run stopped after planning,
// with batches still queued, is finished by the next qfetch local (there is
// no other worker); the one after opens the next window.
func TestLocalInterruptedWhileFetching(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := local.Config{Dir: dir, Prefix: local.DefaultPrefix, BatchSize: 50, Slots: 1, PageSize: 500,
		SimHosts: 2000, SimSeed: 7, Log: slog.New(onMessage{"planning complete", cancel})}
	if _, err := local.Run(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v, want context.Canceled", err)
	}
	run, planned := queuedRun(t, dir)

	cfg.Log = slog.New(slog.DiscardHandler)
	sum, err := local.Run(t.Context(), cfg)
	if err != nil || sum.Skipped != "" || sum.Run != run || sum.HostsRequested != planned {
		t.Fatalf("next local run: %+v, %v; want run %s finished", sum, err, run)
	}
	checkStatus(t, sum)
	next, err := local.Run(t.Context(), cfg)
	if err != nil || next.Run == run || !next.After.Equal(sum.Before) {
		t.Fatalf("the run after: %+v, %v; want a new window from %s", next, err, sum.Before)
	}
}

// queuedRun returns the one run in dir's kept store, which must be being
// fetched with batches queued, and its hosts.
func queuedRun(t *testing.T, dir string) (run string, hosts int) {
	t.Helper()
	in, err := local.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	ids, err := in.Queue.RunIDs(t.Context())
	if err != nil || len(ids) != 1 {
		t.Fatalf("runs %v, %v", ids, err)
	}
	rec, err := in.Queue.GetRun(t.Context(), ids[0])
	pending, perr := in.Queue.Pending(t.Context(), ids[0])
	if err != nil || perr != nil || rec.State != ledger.RunFetching || pending == 0 {
		t.Fatalf("interrupted run %s: state %s, %d queued (%v, %v); want fetching with batches queued", ids[0], rec.State, pending, err, perr)
	}
	return ids[0], rec.HostsPlanned
}

// onMessage calls do when a record with message msg is logged.
type onMessage struct {
	msg string
	do  func()
}

func (h onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.do()
	}
	return nil
}
func (h onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h onMessage) WithGroup(string) slog.Handler      { return h }
