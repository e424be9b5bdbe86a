package tablecheck

import (
	"path/filepath"
	"testing"
)

// TestDuckDBOffline: the Parquet reader is built into the DuckDB the
// module links, so the checks read local files with no extension to
// download (CI has no network for it).
func TestDuckDBOffline(t *testing.T) {
	db := openDB(t)
	var loaded bool
	if err := db.QueryRow("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'parquet'").Scan(&loaded); err != nil || !loaded {
		t.Fatalf("parquet extension loaded: %v, %v", loaded, err)
	}
	f := filepath.Join(t.TempDir(), "x.parquet")
	if _, err := db.Exec("COPY (SELECT range AS n FROM range(10)) TO '" + f + "' (FORMAT parquet)"); err != nil {
		t.Fatal(err)
	}
	var n, sum int64
	if err := db.QueryRow("SELECT count(*), sum(n) FROM read_parquet(?)", f).Scan(&n, &sum); err != nil || n != 10 || sum != 45 {
		t.Fatalf("read back %d rows summing to %d (%v), want 10 and 45", n, sum, err)
	}
}
