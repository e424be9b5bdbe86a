package local_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/local"
	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/runstat"
)

func TestDefaultDir(t *testing.T) {
	for _, tc := range []struct {
		name      string
		xdg, home string
		want      string
	}{
		{"XDG data home", "/data", "/home/ann", "/data/qfetch/local"},
		{"relative XDG data home is ignored", "data", "/home/ann", "/home/ann/.local/share/qfetch/local"},
		{"home", "", "/home/ann", "/home/ann/.local/share/qfetch/local"},
		{"no home", "", "", "qfetch-data"},
		{"relative home", "", "ann", "qfetch-data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"XDG_DATA_HOME": tc.xdg, "HOME": tc.home}
			if got := local.DefaultDirFrom(func(k string) string { return env[k] }); got != filepath.FromSlash(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	t.Setenv("XDG_DATA_HOME", "/xdg")
	if got := local.DefaultDir(); got != filepath.FromSlash("/xdg/qfetch/local") {
		t.Fatalf("DefaultDir() = %q with XDG_DATA_HOME=/xdg", got)
	}
}

// TestOpenKeptStore: after a local run, Open finds it in the kept store
// (runs, the watermark, the directory bucket) the way the operator
// commands read it; the data directory is locked while either uses it.
func TestOpenKeptStore(t *testing.T) {
	dir := t.TempDir()
	cfg := local.Config{Dir: dir, Prefix: local.DefaultPrefix, BatchSize: 500, Slots: 2, PageSize: 1000,
		SimHosts: 1200, SimSeed: 3, Log: slog.New(slog.DiscardHandler)}
	sum, err := local.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Dir != dir || sum.DirBytes < sum.Bytes {
		t.Fatalf("summary names %q (%d bytes), want %q and at least the %d bytes fetched", sum.Dir, sum.DirBytes, dir, sum.Bytes)
	}

	in, err := local.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			in.Close()
		}
	}()
	rec, err := in.Queue.GetRun(t.Context(), sum.Run)
	if err != nil || rec.State != ledger.RunComplete || rec.BatchesPlanned != sum.Batches {
		t.Fatalf("run %s in the kept store: %+v, %v", sum.Run, rec, err)
	}
	wm, err := in.Queue.Watermark(t.Context())
	if err != nil || !wm.Time.Equal(sum.Before) || wm.Run != sum.Run {
		t.Fatalf("watermark %+v, %v; want %s from run %s", wm, err, sum.Before, sum.Run)
	}
	if in.Store == nil || in.Prefix != local.DefaultPrefix || !strings.Contains(in.Store.Describe(), filepath.Join(dir, "bucket")) {
		t.Fatalf("store %v, prefix %q", in.Store, in.Prefix)
	}
	// What `qfetch runs --local` prints.
	var out bytes.Buffer
	if err := ops.Runs(t.Context(), in.Queue, runstat.Config{}, 10, ops.Output{W: &out}); err != nil || !strings.Contains(out.String(), sum.Run) {
		t.Fatalf("ops.Runs: %v\n%s", err, out.String())
	}

	// One process at a time on a store: a second inspection and a run are
	// refused while this one is open, and not harmed.
	if _, err := local.Open(t.Context(), dir); !errors.Is(err, local.ErrBusy) {
		t.Fatalf("second Open: %v, want ErrBusy", err)
	}
	if _, err := local.Run(t.Context(), cfg); !errors.Is(err, local.ErrBusy) {
		t.Fatalf("Run while inspected: %v, want ErrBusy", err)
	}
	in.Close()
	closed = true

	// Released: the next run continues the history from the watermark.
	next, err := local.Run(t.Context(), cfg)
	if err != nil || !next.After.Equal(sum.Before) {
		t.Fatalf("next run %+v, %v; want it to start at %s", next, err, sum.Before)
	}
}

// TestOpenNoStore: Open on a directory without local runs says so and
// creates nothing there.
func TestOpenNoStore(t *testing.T) {
	dir := t.TempDir()
	if _, err := local.Open(t.Context(), dir); !errors.Is(err, local.ErrNoLocalRuns) {
		t.Fatalf("Open on an empty directory: %v, want ErrNoLocalRuns", err)
	}
	if _, err := local.Open(t.Context(), filepath.Join(dir, "missing")); !errors.Is(err, local.ErrNoLocalRuns) {
		t.Fatalf("Open on a missing directory: %v, want ErrNoLocalRuns", err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Fatalf("Open left %v in %s (%v)", entries, dir, err)
	}
}
