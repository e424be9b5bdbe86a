package local_test

import (
	"encoding/json"
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
