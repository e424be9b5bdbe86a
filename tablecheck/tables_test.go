package tablecheck

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/tables"
)

// The estate the tests share: a few hundred simulated hosts fetched by
// the real pipeline in four runs — the first over every host, then three
// incremental windows of a few days, each overlapping the last by an hour
// so that some hosts are in two runs.
var (
	sharedOnce   sync.Once
	sharedEstate *Estate
	sharedErr    error
	sharedDir    string
)

// advances are the simulated time between runs (the first: none).
var advances = []time.Duration{0, 2 * 24 * time.Hour, 3 * 24 * time.Hour, 5 * 24 * time.Hour}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedEstate != nil {
		sharedEstate.Close()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

func estate(t *testing.T) *Estate {
	t.Helper()
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "tablecheck-")
		if sharedErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		sharedEstate, sharedErr = StartEstate(ctx, EstateConfig{Dir: sharedDir, Hosts: 300, Seed: 20,
			BatchSize: 40, PageSize: 100, Overlap: time.Hour, RunTimeout: 2 * time.Minute,
			Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		for _, d := range advances {
			if sharedErr != nil {
				return
			}
			_, sharedErr = sharedEstate.Next(ctx, d)
		}
	})
	if sharedErr != nil {
		t.Fatalf("building the estate: %v", sharedErr)
	}
	return sharedEstate
}

// TestTablesEqualTruth: after several incremental runs, every row DuckDB
// reads from the detections and hosts tables equals the simulator's truth
// for that run's window, host by host and field by field; nothing is
// missing, nothing extra; each row names its run, partition and source.
func TestTablesEqualTruth(t *testing.T) {
	e := estate(t)
	db := openTables(t, filepath.Join(e.Bucket, Prefix))
	checkTypes(t, db)

	detCols := append(slices.Clone(hostColumns), detectionColumns...)
	hostCols := hostColumns
	totalDet, totalHosts := 0, 0
	for _, r := range e.Runs {
		t.Run(r.ID, func(t *testing.T) {
			f := r.Filter()
			f.ShowReopened = true // qfetch sends show_reopened_info=1

			want := rowSet{}
			for id, hd := range e.Sim.DetectionRows(f) {
				hv := hostValues(&hd.Host)
				for i := range hd.Detections {
					d := &hd.Detections[i]
					want[fmt.Sprintf("%d/%d", id, d.UniqueVulnID)] = append(slices.Clone(hv), detectionValues(d)...)
				}
			}
			got := readRows(t, db, 2, "SELECT CAST(host_id AS VARCHAR), CAST(unique_vuln_id AS VARCHAR), "+
				selectList(detCols)+" FROM detections WHERE run = ?", r.ID)
			compareRows(t, "detections of "+r.ID, names(detCols), got, want)
			totalDet += len(want)

			wantHosts := rowSet{}
			for h := range e.Sim.HostRows(f) {
				wantHosts[fmt.Sprint(h.ID)] = hostValues(&h)
			}
			gotHosts := readRows(t, db, 1, "SELECT CAST(host_id AS VARCHAR), "+selectList(hostCols)+
				" FROM hosts WHERE run = ?", r.ID)
			compareRows(t, "hosts of "+r.ID, names(hostCols), gotHosts, wantHosts)
			totalHosts += len(wantHosts)

			checkSource(t, db, e, r, len(want), len(wantHosts))
		})
	}
	for table, cols := range alwaysNull {
		for _, c := range cols {
			var n int
			if err := db.QueryRow("SELECT count(" + c + ") FROM " + table).Scan(&n); err != nil {
				t.Errorf("%s.%s: %v", table, c, err)
			} else if n != 0 {
				t.Errorf("%s.%s holds %d values; the simulator writes none", table, c, n)
			}
		}
	}
	if totalDet == 0 || totalHosts == 0 || len(e.Runs) < 3 {
		t.Fatalf("the estate is too small to check anything: %d runs, %d detections, %d hosts", len(e.Runs), totalDet, totalHosts)
	}
	t.Logf("%d runs: %d detection rows, %d host rows compared with the truth", len(e.Runs), totalDet, totalHosts)
}

// checkTypes: the columns are typed (numbers as numbers, timestamps as
// timestamps), not text.
func checkTypes(t *testing.T, db *sql.DB) {
	t.Helper()
	want := map[string]map[string]string{
		"detections": {"host_id": "BIGINT", "qid": "INTEGER", "severity": "INTEGER", "port": "INTEGER",
			"ssl": "BOOLEAN", "first_found_datetime": "TIMESTAMP", "times_found": "INTEGER", "run": "VARCHAR",
			"run_date": "DATE", "status": "VARCHAR"},
		"hosts": {"host_id": "BIGINT", "last_vm_scanned_date": "TIMESTAMP", "run_date": "DATE"},
		"runs":  {"run": "VARCHAR", "window_before": "TIMESTAMP", "detection_rows": "BIGINT"},
	}
	for table, cols := range want {
		rows, err := db.Query("SELECT column_name, column_type FROM (DESCRIBE " + table + ")")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for rows.Next() {
			var n, typ string
			if err := rows.Scan(&n, &typ); err != nil {
				t.Fatal(err)
			}
			got[n] = typ
		}
		rows.Close()
		for c, typ := range cols {
			// Timestamps adjusted to UTC read as TIMESTAMP WITH TIME ZONE.
			if g := got[c]; g != typ && !(typ == "TIMESTAMP" && g == "TIMESTAMP WITH TIME ZONE") {
				t.Errorf("%s.%s is %q, want %s", table, c, g, typ)
			}
		}
	}
}

// checkSource: each row of the run names the run, sits in the run's
// partition, comes from an object of the run that exists, with the
// current schema version; the run's row in the runs table says what the
// run was and how many rows it wrote.
func checkSource(t *testing.T, db *sql.DB, e *Estate, r Run, detRows, hostRows int) {
	t.Helper()
	day := r.Created.UTC().Format(time.DateOnly)
	for table, folder := range map[string]string{"detections": "detections/", "hosts": "hostlist/"} {
		rows, err := db.Query("SELECT DISTINCT CAST(run_date AS VARCHAR), source_key, schema_version FROM "+table+" WHERE run = ?", r.ID)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
			var date, key string
			var version int
			if err := rows.Scan(&date, &key, &version); err != nil {
				t.Fatal(err)
			}
			if date != day || version != tables.SchemaVersion ||
				!strings.HasPrefix(key, Prefix+"/runs/"+r.ID+"/"+folder) {
				t.Errorf("%s row of %s: run_date %s, source %s, schema %d; want %s, an object under runs/%s/%s, %d",
					table, r.ID, date, key, version, day, r.ID, folder, tables.SchemaVersion)
			} else if _, err := os.Stat(filepath.Join(e.Bucket, filepath.FromSlash(key))); err != nil {
				t.Errorf("%s row of %s: source %v", table, r.ID, err)
			}
		}
		rows.Close()
		if n == 0 && (table == "detections" && detRows > 0 || table == "hosts" && hostRows > 0) {
			t.Errorf("no %s rows for run %s", table, r.ID)
		}
	}

	var (
		after, before   sql.NullInt64
		batches, pages  int
		nDet, nHosts    int64
		runDate, runCol string
	)
	err := db.QueryRow(`SELECT epoch_ms(window_after), epoch_ms(window_before), batches, host_list_pages,
		detection_rows, host_rows, CAST(run_date AS VARCHAR), run FROM runs WHERE run = ?`, r.ID).
		Scan(&after, &before, &batches, &pages, &nDet, &nHosts, &runDate, &runCol)
	if err != nil {
		t.Fatalf("the runs table's row of %s: %v", r.ID, err)
	}
	var wantAfter sql.NullInt64 // NULL for the first run, open below
	if !r.After.IsZero() {
		wantAfter = sql.NullInt64{Int64: r.After.UnixMilli(), Valid: true}
	}
	if after != wantAfter || before.Int64 != r.Before.UnixMilli() || batches != r.BatchesPlanned ||
		nDet != int64(detRows) || nHosts != int64(hostRows) || runDate != day {
		t.Errorf("runs row of %s: window [%v, %v), %d batches, %d pages, %d detection rows, %d host rows, run_date %s; "+
			"want [%v, %v), %d batches, %d and %d rows, %s",
			r.ID, after, before, batches, pages, nDet, nHosts, runDate, wantAfter, r.Before.UnixMilli(), r.BatchesPlanned,
			detRows, hostRows, day)
	}
}

// currentTruth is each host's detections from the newest run that holds
// it (an empty set for a host whose newest run had none), keyed as the
// detections rows are, with that run.
func currentTruth(e *Estate) (rows rowSet, newest map[uint64]string) {
	cur := map[uint64][]qualysim.DetectionTruth{}
	hosts := map[uint64]qualysim.HostFields{}
	newest = map[uint64]string{}
	for _, r := range e.Runs {
		f := r.Filter()
		f.ShowReopened = true
		for h := range e.Sim.HostRows(f) {
			newest[h.ID] = r.ID
			cur[h.ID] = nil
		}
		for id, hd := range e.Sim.DetectionRows(f) {
			cur[id] = hd.Detections
			hosts[id] = hd.Host
		}
	}
	rows = rowSet{}
	for id, dets := range cur {
		h := hosts[id]
		for i := range dets {
			d := &dets[i]
			rows[fmt.Sprintf("%d/%d", id, d.UniqueVulnID)] = append(append([]value{str(newest[id])}, hostValues(&h)...),
				detectionValues(d)...)
		}
	}
	return rows, newest
}

// TestCurrentStateQuery: the current-state SQL of docs/queries.md, as
// written there, equals the truth after several incremental runs: each
// host's detections from the newest complete run that contains it. The
// other documented questions, computed on it, equal theirs.
func TestCurrentStateQuery(t *testing.T) {
	e := estate(t)
	q := docQueries(t, "duckdb-current-state", "duckdb-open-sev5-by-qid", "duckdb-host-history",
		"duckdb-status-last-30-runs")
	db := openTables(t, filepath.Join(e.Bucket, Prefix))
	mustExec(t, db, q["duckdb-current-state"])

	want, newest := currentTruth(e)
	cols := append([]column{{name: "run"}}, append(slices.Clone(hostColumns), detectionColumns...)...)
	got := readRows(t, db, 2, "SELECT CAST(host_id AS VARCHAR), CAST(unique_vuln_id AS VARCHAR), "+
		selectList(cols)+" FROM current_state")
	compareRows(t, "current_state", names(cols), got, want)
	appearances := 0
	for _, r := range e.Runs {
		for range e.Sim.HostRows(r.Filter()) {
			appearances++
		}
	}
	if appearances == len(newest) {
		t.Errorf("no host is in two runs: the current state was not put to the test")
	}

	t.Run("open severity 5 by QID", func(t *testing.T) {
		type count struct{ hosts, dets int }
		wantQ := map[string]*count{}
		seen := map[string]bool{}
		for k, v := range want {
			sev, status := v[1+len(hostColumns)+3], v[1+len(hostColumns)+8]
			if sev.s != "5" || status.s == "Fixed" {
				continue
			}
			qid := v[1+len(hostColumns)+1].s
			host := strings.Split(k, "/")[0]
			if wantQ[qid] == nil {
				wantQ[qid] = &count{}
			}
			wantQ[qid].dets++
			if !seen[qid+"/"+host] {
				seen[qid+"/"+host] = true
				wantQ[qid].hosts++
			}
		}
		rows := readRows(t, db, 1, "SELECT CAST(qid AS VARCHAR), CAST(hosts AS VARCHAR), CAST(detections AS VARCHAR) FROM ("+
			strings.TrimSuffix(strings.TrimSpace(q["duckdb-open-sev5-by-qid"]), ";")+")")
		wantRows := rowSet{}
		for qid, c := range wantQ {
			wantRows[qid] = []value{num(c.hosts), num(c.dets)}
		}
		compareRows(t, "open severity-5 detections by QID", []string{"hosts", "detections"}, rows, wantRows)
		if len(wantRows) == 0 {
			t.Error("the truth has no open severity-5 detection: nothing was compared")
		}
	})

	t.Run("one host's history", func(t *testing.T) {
		// A host in more than one run, with detections.
		var host uint64
		var runs []Run
		for id := range newest {
			var in []Run
			for _, r := range e.Runs {
				for h := range e.Sim.HostRows(qualysim.Filter{After: r.After, Before: r.Before, At: r.At, IDMin: id, IDMax: id}) {
					if h.ID == id {
						in = append(in, r)
					}
				}
			}
			if len(in) > 1 && (host == 0 || id < host) {
				host, runs = id, in
			}
		}
		if host == 0 {
			t.Fatal("no host is in two runs")
		}
		wantRows := rowSet{}
		for _, r := range runs {
			f := r.Filter()
			f.ShowReopened, f.IDMin, f.IDMax = true, host, host
			n := 0
			for _, hd := range e.Sim.DetectionRows(f) {
				for _, d := range hd.Detections {
					wantRows[fmt.Sprintf("%s/%d/%d", r.ID, d.QID, d.UniqueVulnID)] = []value{str(d.Status)}
					n++
				}
			}
			if n == 0 {
				wantRows[r.ID+"//"] = []value{null}
			}
		}
		mustExec(t, db, fmt.Sprintf("SET VARIABLE host_id = %d", host))
		hist := "SELECT run, CAST(qid AS VARCHAR), CAST(unique_vuln_id AS VARCHAR), status FROM (" +
			strings.Replace(strings.TrimSuffix(strings.TrimSpace(q["duckdb-host-history"]), ";"),
				"SELECT h.run,", "SELECT d.unique_vuln_id, h.run,", 1) + ")"
		got := readRows(t, db, 3, hist)
		compareRows(t, fmt.Sprintf("history of host %d", host), []string{"status"}, got, wantRows)
	})

	t.Run("counts by status over the last 30 runs", func(t *testing.T) {
		wantRows := rowSet{}
		counts := map[string]int{}
		for _, r := range e.Runs {
			f := r.Filter()
			f.ShowReopened = true
			for _, hd := range e.Sim.DetectionRows(f) {
				for _, d := range hd.Detections {
					counts[r.ID+"/"+d.Status]++
				}
			}
		}
		for k, n := range counts {
			wantRows[k] = []value{num(n)}
		}
		got := readRows(t, db, 2, "SELECT run, status, CAST(detections AS VARCHAR) FROM ("+
			strings.TrimSuffix(strings.TrimSpace(q["duckdb-status-last-30-runs"]), ";")+")")
		compareRows(t, "counts by status", []string{"detections"}, got, wantRows)
	})
}

// TestOnlyCompleteRuns: parts of a run whose tables are not complete (no
// row in the runs table) change nothing the current state says.
func TestOnlyCompleteRuns(t *testing.T) {
	e := estate(t)
	q := docQueries(t, "duckdb-current-state")
	root := t.TempDir()
	if err := copyTree(filepath.Join(root, Prefix, "tables"), e.Tables()); err != nil {
		t.Fatal(err)
	}
	// A later run converted halfway: the newest run's parts again under a
	// newer run ID, with no runs-table file and no manifest.
	last := e.Runs[len(e.Runs)-1]
	later := "29991231T000000Z-0a0b0c"
	for _, table := range []string{tables.Detections, tables.Hosts} {
		src := filepath.Join(e.Tables(), table, "run_date="+last.Created.UTC().Format(time.DateOnly), "run="+last.ID)
		dst := filepath.Join(root, Prefix, "tables", table, "run_date=2999-12-31", "run="+later)
		if err := copyTree(dst, src); err != nil {
			t.Fatal(err)
		}
	}
	db := openTables(t, filepath.Join(root, Prefix))
	mustExec(t, db, q["duckdb-current-state"])
	var n int
	if err := db.QueryRow("SELECT count(*) FROM current_state WHERE run = ?", later).Scan(&n); err != nil || n != 0 {
		t.Fatalf("current_state holds %d rows of the incomplete run (%v)", n, err)
	}
	want, _ := currentTruth(e)
	if err := db.QueryRow("SELECT count(*) FROM current_state").Scan(&n); err != nil || n != len(want) {
		t.Fatalf("current_state holds %d rows with an incomplete run beside, want %d (%v)", n, len(want), err)
	}
}

// TestEarlierSchemaStaysReadable: a partition written with an earlier
// schema (a column fewer) and the current ones read together through the
// documented views (union_by_name): every row is there, the old rows read
// NULL in the column they lack, the new rows keep their values.
func TestEarlierSchemaStaysReadable(t *testing.T) {
	e := estate(t)
	root := t.TempDir()
	if err := copyTree(filepath.Join(root, Prefix, "tables"), e.Tables()); err != nil {
		t.Fatal(err)
	}
	first := e.Runs[0]
	src := filepath.Join(e.Tables(), tables.Detections, "run_date="+first.Created.UTC().Format(time.DateOnly), "run="+first.ID)
	parts, err := filepath.Glob(filepath.Join(src, "*.parquet"))
	if err != nil || len(parts) == 0 {
		t.Fatalf("no detections parts in %s (%v)", src, err)
	}
	// The earlier schema's file: the first run's first part without
	// qds_factors, in an older run of its own.
	const old = "20250101T000000Z-0a0b0c"
	oldDir := filepath.Join(root, Prefix, "tables", tables.Detections, "run_date=2025-01-01", "run="+old)
	if err := os.MkdirAll(oldDir, 0o755); err != nil {
		t.Fatal(err)
	}
	db := openDB(t)
	oldFile := filepath.Join(oldDir, "part-batch-000001.parquet")
	mustExec(t, db, fmt.Sprintf(`COPY (SELECT * EXCLUDE (qds_factors) REPLACE ('%s' AS run) FROM read_parquet('%s'))
		TO '%s' (FORMAT parquet, COMPRESSION zstd)`, old, filepath.ToSlash(parts[0]), filepath.ToSlash(oldFile)))
	var oldRows, oldWithFactors int
	if err := db.QueryRow("SELECT count(*), count(qds_factors) FROM read_parquet(?)", parts[0]).Scan(&oldRows, &oldWithFactors); err != nil {
		t.Fatal(err)
	}
	if oldWithFactors == 0 {
		t.Fatal("the part copied has no qds_factors: the dropped column tests nothing")
	}

	views := openTables(t, filepath.Join(root, Prefix))
	var total, oldRead, oldFactors, newFactors int
	err = views.QueryRow(`SELECT count(*), count(*) FILTER (run = $1), count(qds_factors) FILTER (run = $1),
		count(qds_factors) FILTER (run <> $1) FROM detections`, old).Scan(&total, &oldRead, &oldFactors, &newFactors)
	if err != nil {
		t.Fatal(err)
	}
	var current, currentFactors int
	if err := views.QueryRow("SELECT count(*), count(qds_factors) FROM read_parquet(?, hive_partitioning = true)",
		filepath.ToSlash(e.Tables())+"/detections/**/*.parquet").Scan(&current, &currentFactors); err != nil {
		t.Fatal(err)
	}
	if oldRead != oldRows || oldFactors != 0 || total != current+oldRows || newFactors != currentFactors {
		t.Fatalf("read %d rows (%d of the old schema, %d of them with qds_factors; %d new ones with it); "+
			"want %d + %d, none, %d", total, oldRead, oldFactors, newFactors, current, oldRows, currentFactors)
	}
}
