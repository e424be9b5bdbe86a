package local_test

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/qfetch/qfetch/internal/local"
	"github.com/qfetch/qfetch/internal/runstat"
)

// TestLocalSecondRunStatus: two `qfetch local` runs one after the
// other from the same data directory (TestLocalTwice's set-up). Each run's
// status.json must end up saying it completed, the second one's too.
func TestLocalSecondRunStatus(t *testing.T) {
	dir := t.TempDir()
	cfg := local.Config{Dir: dir, Prefix: "qualys", BatchSize: 500, Slots: 2, PageSize: 1000,
		SimHosts: 3000, SimSeed: 5, Log: slog.New(slog.DiscardHandler)}
	for i := range 2 {
		sum, err := local.Run(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(filepath.Dir(sum.Manifest), "status.json"))
		if err != nil {
			t.Fatalf("run %d (%s, %.1fs): no status.json: %v", i+1, sum.Run, sum.Seconds, err)
		}
		var st runstat.Status
		if err := json.Unmarshal(b, &st); err != nil || st.State != runstat.Complete || st.Run != sum.Run {
			t.Fatalf("run %d: status.json %+v, %v", i+1, st, err)
		}
	}
}
