package tablecheck

import (
	"database/sql"
	"testing"

	// The database/sql driver "duckdb".
	_ "github.com/duckdb/duckdb-go/v2"
)

// openDB opens an in-memory DuckDB for the rest of the test. Extensions
// are never fetched: the tables are local files and parquet is built in.
func openDB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// One connection: SET and CREATE VIEW hold for every later query.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("SET autoinstall_known_extensions = false; SET autoload_known_extensions = false"); err != nil {
		t.Fatal(err)
	}
	return db
}
