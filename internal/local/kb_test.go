package local_test

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/local"
)

// TestLocalKB: with KB on, the first local run's planner pass fetches the
// whole KnowledgeBase beside the run and the summary reports it with the
// figures its manifest and objects hold; the second asks only for what
// changed since.
func TestLocalKB(t *testing.T) {
	dir := t.TempDir()
	cfg := local.Config{Dir: dir, Prefix: "qualys", BatchSize: 500, Slots: 2, PageSize: 1000,
		SimHosts: 500, SimSeed: 3, KB: true, Log: slog.New(slog.DiscardHandler)}
	first, err := local.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	k := first.KB
	if k == nil || k.Pass == "" || k.Note != "" || !k.Full {
		t.Fatalf("first run's KB pass: %+v", k)
	}
	b, err := os.ReadFile(k.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	var m finish.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	known, err := hostids.Count(m.KnownQIDs)
	if err != nil {
		t.Fatal(err)
	}
	// The simulator's KnowledgeBase holds the detected QIDs and 1000 more.
	if k.QIDs != known || k.QIDs <= 1000 || k.Batches != (k.QIDs+999)/1000 || k.Batches != m.Totals.Batches ||
		k.Bytes != m.Totals.Bytes || k.Bytes != vulnBytes(t, filepath.Dir(k.Manifest)) || k.Seconds <= 0 {
		t.Errorf("first run's KB pass %+v; manifest: %d known QIDs, totals %+v", k, known, m.Totals)
	}
	if k.KBGlob == "" || k.RunsGlob == "" {
		t.Errorf("first run's KB pass: kb table globs %q %q", k.KBGlob, k.RunsGlob)
	}
	if parts, _ := filepath.Glob(filepath.Join(dir, "bucket", "qualys", "tables", "kb", "run_date=*", "run="+k.Pass, "*.parquet")); len(parts) != k.Batches {
		t.Errorf("first KB pass: %d kb table parts, want %d", len(parts), k.Batches)
	}

	second, err := local.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	k2 := second.KB
	if k2 == nil || k2.Pass == "" || k2.Pass == k.Pass || k2.Full || k2.Note != "" || k2.QIDs >= k.QIDs {
		t.Fatalf("second run's KB pass %+v after %+v", k2, k)
	}
	if k2.Bytes != vulnBytes(t, filepath.Dir(k2.Manifest)) {
		t.Errorf("second KB pass: %d bytes, its objects hold %d", k2.Bytes, vulnBytes(t, filepath.Dir(k2.Manifest)))
	}

	off := cfg
	off.KB = false
	third, err := local.Run(t.Context(), off)
	if err != nil {
		t.Fatal(err)
	}
	if third.KB != nil {
		t.Errorf("KB off: the summary reports a pass %+v", third.KB)
	}
}

// vulnBytes is the size of a KB pass's answers (its vulns/ objects).
func vulnBytes(t *testing.T, passDir string) int64 {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(passDir, "vulns", "*"))
	var n int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}
