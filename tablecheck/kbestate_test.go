package tablecheck

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/tables"
)

// kbAdvances are the simulated time between the KnowledgeBase estate's
// planner passes. The last is none: a planner pass after the newest run's
// tables are complete, whose KnowledgeBase pass backfills the late-visible
// QIDs that run's new hosts brought (an incremental listing misses them:
// their last modification is before the KB watermark).
var kbAdvances = []time.Duration{0, 24 * time.Hour, 2 * 24 * time.Hour, 24 * time.Hour, 0}

// kbColumns are the kb table's columns the check compares, as VARCHAR.
var kbColumns = []column{
	{name: "vuln_type"}, {name: "severity"}, {name: "title"}, {name: "category"},
	tsCol("last_service_modification_datetime"), tsCol("published_datetime"), {name: "patchable"},
	{name: "cves", sql: "nullif(array_to_string([c.id FOR c IN cves], ','), '')"},
	score("cvss_base"), score("cvss_temporal"), {name: "cvss_vector"},
	score("cvss3_base"), score("cvss3_temporal"), {name: "cvss3_vector"},
}

// score reads a CVSS score as written ("7.5", "10.0").
func score(name string) column {
	return column{name: name, sql: "printf('%.1f', " + name + ")"}
}

func kbValues(v *qualysim.KBVuln) []value {
	cvss := func(c *qualysim.KBCVSS) (base, temporal, vector value) {
		if c == nil {
			return null, null, null
		}
		return tenths(c.Base), tenths(c.Temporal), str(c.Vector)
	}
	b2, t2, v2 := cvss(v.CVSS)
	b3, t3, v3 := cvss(v.CVSS3)
	return []value{
		str(v.VulnType), num(v.Severity), str(v.Title), str(v.Category),
		ts(v.LastModified), ts(v.Published), boolean(v.Patchable),
		str(strings.Join(v.CVEIDs(), ",")),
		b2, t2, v2, b3, t3, v3,
	}
}

// tenths renders a score as the kb table's DOUBLE reads back.
func tenths(s string) value {
	if s == "" {
		return null
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return value{"unparsable " + s, true}
	}
	return value{strconv.FormatFloat(f, 'f', 1, 64), true}
}

// TestKBJoinEqualsTruth runs the real pipeline with its KnowledgeBase
// step over several incremental runs while the simulator's clock moves
// (hosts added, QIDs modified, published and made visible late), then
// reads the kb table through docs/queries.md's SQL: every detection of
// the current state joins to a kb row; the joined title, severity, CVEs
// and CVSS scores, and the whole current KnowledgeBase view, equal the
// simulator's KnowledgeBase at the newest pass's instant QID by QID; the
// fetched QIDs cover every QID the detections use; and each incremental
// pass asked the simulator only for the QIDs changed since its
// last_modified_after plus its backfill.
func TestKBJoinEqualsTruth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	e, err := StartEstate(ctx, EstateConfig{Dir: t.TempDir(), Hosts: 200, Seed: 21, BatchSize: 50, PageSize: 100,
		Overlap: time.Hour, RunTimeout: 2 * time.Minute, KB: true, KBBatchSize: 700, KBQIDs: 4000, NewHostsPerDay: 15,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, d := range kbAdvances {
		if _, err := e.Next(ctx, d); err != nil {
			t.Fatal(err)
		}
	}

	backfilled := checkKBRequests(t, e)
	if backfilled == 0 {
		t.Errorf("no pass backfilled a QID: the estate does not exercise late-visible QIDs (raise NewHostsPerDay)")
	}

	root := filepath.Join(e.Bucket, Prefix)
	db := kbTables(t, root)
	newest := e.Runs[len(e.Runs)-1].KB
	truth := map[int]*qualysim.KBVuln{}
	all := e.Sim.KBTruth(newest.At)
	for i := range all {
		truth[all[i].QID] = &all[i]
	}

	fetched := qidSet(t, db, `SELECT DISTINCT qid FROM kb WHERE run IN (SELECT run FROM runs WHERE kind = 'kb')`)
	used := qidSet(t, db, `SELECT DISTINCT qid FROM detections WHERE run IN (SELECT run FROM runs)`)
	var unfetched []int
	for q := range used {
		if !fetched[q] {
			unfetched = append(unfetched, q)
		}
	}
	if len(used) == 0 || len(unfetched) > 0 {
		t.Errorf("%d QIDs used by detections, %d fetched; used but never fetched: %v", len(used), len(fetched), head(unfetched))
	}
	for _, l := range e.Sim.KBLate(e.Runs[0].KB.Before, newest.At) {
		if l.Detected && used[l.QID] && !fetched[l.QID] {
			t.Errorf("late-visible QID %d (visible %s) is used and was never fetched", l.QID, l.Visible)
		}
	}

	// The current KnowledgeBase view is the truth restricted to what
	// qfetch fetched.
	want := rowSet{}
	for q := range fetched {
		if v := truth[q]; v != nil {
			want[strconv.Itoa(q)] = kbValues(v)
		}
	}
	got := readRows(t, db, 1, "SELECT CAST(qid AS VARCHAR), "+selectList(kbColumns)+" FROM kb_current")
	compareRows(t, "kb_current", names(kbColumns), got, want)

	// The documented join: every current detection finds its QID.
	var missing int
	if err := db.QueryRow(`SELECT count(*) FROM current_state d LEFT JOIN kb_current k ON k.qid = d.qid
		WHERE k.qid IS NULL`).Scan(&missing); err != nil || missing != 0 {
		t.Errorf("%d current-state detections join to no kb row (%v)", missing, err)
	}
	rows := openJoin(t, db)
	if len(rows) == 0 {
		t.Fatal("the join returned no open detections: nothing checked")
	}
	if diffs := compareJoin(rows, truth); len(diffs) > 0 {
		t.Errorf("open detections with the KnowledgeBase: %d of %d rows differ from the truth, the first:\n  %s",
			len(diffs), len(rows), strings.Join(head(diffs), "\n  "))
	}

	// The checks can fail: one value off in the truth is caught, and so
	// is a kb part gone from the tables.
	broken := maps.Clone(truth)
	v := *truth[rows[0].qid]
	v.Title += " (changed)"
	broken[rows[0].qid] = &v
	if diffs := compareJoin(rows, broken); len(diffs) == 0 || !strings.Contains(diffs[0], "(changed)") {
		t.Errorf("self-check: a changed title in the truth went unnoticed: %v", diffs)
	}
	if n := missingAfterRemovingAPart(t, root); n == 0 {
		t.Errorf("self-check: with a part of the full pass gone, every detection still joins")
	}
	t.Logf("%d planner passes; %d QIDs fetched, %d used, %d backfilled; %d open detections joined; kb_current %d rows",
		len(e.Runs), len(fetched), len(used), backfilled, len(rows), len(got))
}

// checkKBRequests: the first pass is full and asks for the whole
// KnowledgeBase; each later one is incremental and asks the simulator for
// exactly the QIDs changed since its last_modified_after plus its
// backfill (counted as VULNs served). It returns the QIDs backfilled.
func checkKBRequests(t *testing.T, e *Estate) (backfilled int) {
	t.Helper()
	var full int64
	for i, r := range e.Runs {
		p := r.KB
		bf, err := hostids.Parse(p.Backfill)
		if err != nil {
			t.Fatalf("pass %s: backfill %q: %v", p.ID, p.Backfill, err)
		}
		var listed []int
		if p.After.IsZero() {
			listed = e.Sim.KBQIDs(p.At)
		} else {
			listed = e.Sim.KBChanged(p.After, p.At)
		}
		asked := map[int]bool{}
		for _, q := range listed {
			asked[q] = true
		}
		for _, q := range bf.IDs() {
			asked[int(q)] = true
		}
		returned := 0 // the asked QIDs the KnowledgeBase holds
		for _, q := range e.Sim.KBQIDs(p.At) {
			if asked[q] {
				returned++
			}
		}
		if (i == 0) != p.After.IsZero() {
			t.Errorf("pass %d (%s): After %v; want the first pass full and the others incremental", i, p.ID, p.After)
		}
		if p.HostsPlanned != len(asked) || p.VULNs != int64(returned) {
			t.Errorf("pass %s (after %v): %d QIDs planned, %d VULNs served; want %d asked (%d changed, %d backfill), %d served",
				p.ID, p.After, p.HostsPlanned, p.VULNs, len(asked), len(listed), bf.Len(), returned)
		}
		if i == 0 {
			full = p.VULNs
		} else if p.VULNs >= full {
			t.Errorf("incremental pass %s served %d VULNs, the full one %d", p.ID, p.VULNs, full)
		}
		backfilled += bf.Len()
		t.Logf("pass %s: after %v, %d changed, %d backfill, %d VULNs served", p.ID, p.After.Format(time.RFC3339),
			len(listed), bf.Len(), p.VULNs)
	}
	return backfilled
}

// kbTables opens DuckDB on the tables under root with the documented
// views: detections, hosts, runs, kb, current_state, kb_current.
func kbTables(t *testing.T, root string) *sql.DB {
	t.Helper()
	q := docQueries(t, "duckdb-kb-views", "duckdb-kb-current", "duckdb-current-state", "duckdb-open-detections-kb")
	db := openTables(t, root)
	mustExec(t, db, strings.ReplaceAll(q["duckdb-kb-views"], DocBucket, filepath.ToSlash(root)))
	mustExec(t, db, q["duckdb-current-state"])
	mustExec(t, db, q["duckdb-kb-current"])
	return db
}

func qidSet(t *testing.T, db *sql.DB, query string) map[int]bool {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatalf("%v\n%s", err, query)
	}
	defer rows.Close()
	out := map[int]bool{}
	for rows.Next() {
		var q int
		if err := rows.Scan(&q); err != nil {
			t.Fatal(err)
		}
		out[q] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// joinRow is one row of the documented join: the QID and its KnowledgeBase
// columns, as VARCHAR.
type joinRow struct {
	qid  int
	vals []value
}

// joinColumns are the join's KnowledgeBase columns and the truth's
// counterparts (kbValues' indexes).
var joinColumns = []struct {
	col   column
	truth int
}{
	{column{name: "title"}, 2}, {column{name: "kb_severity"}, 1},
	{column{name: "cves", sql: "nullif(array_to_string(cves, ','), '')"}, 7},
	{score("cvss_base"), 8}, {score("cvss_temporal"), 9}, {score("cvss3_base"), 11}, {score("cvss3_temporal"), 12},
	{column{name: "cvss3_vector"}, 13},
}

// openJoin runs docs/queries.md's "open detections with title, severity,
// CVEs and CVSS" as written and reads its KnowledgeBase columns.
func openJoin(t *testing.T, db *sql.DB) []joinRow {
	t.Helper()
	q := docQueries(t, "duckdb-open-detections-kb")["duckdb-open-detections-kb"]
	exprs := []string{"qid"}
	for _, c := range joinColumns {
		exprs = append(exprs, c.col.expr())
	}
	query := "SELECT " + strings.Join(exprs, ", ") + " FROM (" + strings.TrimSuffix(strings.TrimSpace(q), ";") + ")"
	rows, err := db.Query(query)
	if err != nil {
		t.Fatalf("%v\n%s", err, query)
	}
	defer rows.Close()
	var out []joinRow
	raw := make([]sql.NullString, len(joinColumns))
	ptrs := []any{new(int)}
	for i := range raw {
		ptrs = append(ptrs, &raw[i])
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		r := joinRow{qid: *ptrs[0].(*int)}
		for _, s := range raw {
			r.vals = append(r.vals, value{s.String, s.Valid})
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// compareJoin compares each joined row with the truth of its QID.
func compareJoin(rows []joinRow, truth map[int]*qualysim.KBVuln) []string {
	var diffs []string
	for _, r := range rows {
		v := truth[r.qid]
		if v == nil {
			diffs = append(diffs, fmt.Sprintf("QID %d is not in the KnowledgeBase's truth", r.qid))
			continue
		}
		want := kbValues(v)
		for i, c := range joinColumns {
			if r.vals[i] != want[c.truth] {
				diffs = append(diffs, fmt.Sprintf("QID %d %s = %s", r.qid, c.col.name, describeDiff(r.vals[i], want[c.truth])))
			}
		}
	}
	return diffs
}

// missingAfterRemovingAPart copies the tables, removes the full pass's
// first kb part from the copy and counts the current detections that no
// longer join.
func missingAfterRemovingAPart(t *testing.T, root string) int {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "qualys")
	if err := copyTree(dir, root); err != nil {
		t.Fatal(err)
	}
	parts, err := filepath.Glob(filepath.Join(dir, "tables", tables.KB, "*", "run=*", "*.parquet"))
	if err != nil || len(parts) == 0 {
		t.Fatalf("no kb parts in the copy: %v", err)
	}
	slices.Sort(parts) // the oldest pass (the full one) first, by run
	slices.SortStableFunc(parts, func(a, b string) int {
		return strings.Compare(filepath.Base(filepath.Dir(a)), filepath.Base(filepath.Dir(b)))
	})
	if err := os.Remove(parts[0]); err != nil {
		t.Fatal(err)
	}
	db := kbTables(t, dir)
	var missing int
	if err := db.QueryRow(`SELECT count(*) FROM current_state d LEFT JOIN kb_current k ON k.qid = d.qid
		WHERE k.qid IS NULL`).Scan(&missing); err != nil {
		t.Fatal(err)
	}
	return missing
}

// head is the first eight of xs.
func head[T any](xs []T) []T { return xs[:min(len(xs), 8)] }
