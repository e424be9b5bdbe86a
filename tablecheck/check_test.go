package tablecheck

import (
	"database/sql"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// queriesDoc is docs/queries.md, relative to this module.
const queriesDoc = "../docs/queries.md"

// docQueries reads docs/queries.md's named SQL blocks, failing the test
// if one the checks run is missing.
func docQueries(t testing.TB, names ...string) map[string]string {
	t.Helper()
	q, err := Queries(queriesDoc)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if q[n] == "" {
			t.Fatalf("%s has no block marked <!-- query: %s -->", queriesDoc, n)
		}
	}
	return q
}

// openDB opens DuckDB for the rest of the test.
func openDB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := OpenDuckDB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// openTables opens DuckDB on the tables under root (a bucket directory
// and prefix, in place of the doc's s3://my-bucket/qualys) through the
// documented views.
func openTables(t testing.TB, root string) *sql.DB {
	t.Helper()
	db := openDB(t)
	if err := CreateViews(db, docQueries(t, "duckdb-views"), root); err != nil {
		t.Fatal(err)
	}
	return db
}

func mustExec(t testing.TB, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%v\n%s", err, query)
	}
}

// rowSet is rows by key, each row's values in column order.
type rowSet map[string][]value

// readRows runs query and keys each row by its first keyCols values; the
// rest are the row. A key seen twice fails the test: every row is one
// host × detection, or one host, once.
func readRows(t testing.TB, db *sql.DB, keyCols int, query string, args ...any) rowSet {
	t.Helper()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, query)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	out := rowSet{}
	raw := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		vals := make([]value, len(cols))
		for i, r := range raw {
			vals[i] = value{r.String, r.Valid}
		}
		key := keyOf(vals[:keyCols])
		if _, dup := out[key]; dup {
			t.Fatalf("row %s twice in\n%s", key, query)
		}
		out[key] = vals[keyCols:]
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func keyOf(vals []value) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = v.s
	}
	return strings.Join(parts, "/")
}

// selectList is the VARCHAR expressions of cols, for readRows.
func selectList(cols []column) string {
	exprs := make([]string, len(cols))
	for i, c := range cols {
		exprs[i] = c.expr() + " AS " + c.name
	}
	return strings.Join(exprs, ", ")
}

// compareRows fails the test with the first differences between got and
// want (missing rows, extra rows, values column by column).
func compareRows(t testing.TB, what string, names []string, got, want rowSet) {
	t.Helper()
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("row %s missing", k))
			continue
		}
		for i, w := range want[k] {
			if g[i] != w {
				diffs = append(diffs, fmt.Sprintf("row %s column %s = %s", k, names[i], describeDiff(g[i], w)))
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("row %s is not in the truth", k))
		}
	}
	if len(diffs) > 0 {
		n := len(diffs)
		if len(diffs) > 8 {
			diffs = diffs[:8]
		}
		t.Errorf("%s: %d rows read, %d in the truth; %d differences, the first:\n  %s", what, len(got), len(want), n,
			strings.Join(diffs, "\n  "))
	}
}

// describeDiff shows two differing values briefly: long texts from
// where they part.
func describeDiff(got, want value) string {
	if !got.ok || !want.ok || len(got.s)+len(want.s) < 120 {
		return fmt.Sprintf("%v, want %v", got, want)
	}
	i := 0
	for i < len(got.s) && i < len(want.s) && got.s[i] == want.s[i] {
		i++
	}
	from := max(0, i-20)
	tail := func(s string) string { return strconv.Quote(s[from:min(len(s), i+40)]) }
	return fmt.Sprintf("…%s (%d bytes), want …%s (%d bytes): they differ from byte %d", tail(got.s), len(got.s),
		tail(want.s), len(want.s), i)
}

func names(cols []column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.name
	}
	return out
}

// copyTree copies the directory src to dst (the tests add files to a copy
// of the estate's tables, never to the estate's).
func copyTree(dst, src string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
