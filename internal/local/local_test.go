package local_test

import (
	"log/slog"
	"os"
	"testing"

	"github.com/qfetch/qfetch/internal/local"
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
}
