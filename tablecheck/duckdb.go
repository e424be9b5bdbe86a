package tablecheck

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"

	// The database/sql driver "duckdb".
	_ "github.com/duckdb/duckdb-go/v2"
)

// OpenDuckDB opens an in-memory DuckDB on one connection (so that SET and
// CREATE VIEW hold for every later query), in UTC, that never fetches an
// extension: the tables are local files and parquet is built in.
func OpenDuckDB() (*sql.DB, error) {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("SET autoinstall_known_extensions = false; SET autoload_known_extensions = false; SET TimeZone = 'UTC'"); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// CreateViews runs the documented views block (duckdb-views) with root,
// a local bucket directory and prefix, in place of the doc's S3 bucket.
func CreateViews(db *sql.DB, queries map[string]string, root string) error {
	views := queries["duckdb-views"]
	if views == "" {
		return fmt.Errorf("no duckdb-views block in the queries")
	}
	views = strings.ReplaceAll(views, DocBucket, filepath.ToSlash(root))
	if strings.Contains(views, "s3://") {
		return fmt.Errorf("the views still read S3 after replacing %s:\n%s", DocBucket, views)
	}
	if _, err := db.Exec(views); err != nil {
		return fmt.Errorf("%w\n%s", err, views)
	}
	return nil
}
