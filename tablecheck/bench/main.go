// Command bench times DuckDB on the three typical analyst questions of
// docs/queries.md (open severity-5 detections by QID, one host's history,
// counts by status over the last 30 runs) and the current state they rest
// on, over tables qfetch wrote from a simulated estate.
//
//	go run ./bench                          # 2,000 hosts, 4 runs (a minute)
//	go run ./bench -hosts 1000000 -runs 4   # the 1M-host estate (long: the whole pipeline runs)
//	go run ./bench -tables DIR              # tables already written: DIR is <bucket>/<prefix>
//
// Making the estate is not timed: it runs the whole pipeline (planner,
// workers, the table loop) on the simulator, as the tests do. With
// -kb-qids the planner's KnowledgeBase step is on, over a simulated
// KnowledgeBase of about that many QIDs, and each pass is timed (the
// first is full, the later ones incremental):
//
//	go run ./bench -kb-qids 100000 -hosts 100 -runs 2 -advance 24h   # the 100k-QID KnowledgeBase
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/qfetch/qfetch/tablecheck"
)

func main() {
	hosts := flag.Int64("hosts", 2000, "simulated hosts")
	runs := flag.Int("runs", 4, "runs: the first over every host, then incremental ones")
	advance := flag.Duration("advance", 3*24*time.Hour, "simulated time between runs")
	batch := flag.Int("batch-size", 500, "hosts per batch")
	slots := flag.Int("slots", 4, "worker slots")
	dir := flag.String("dir", "", "keep the estate (NATS store, bucket) here; default a temporary directory, removed")
	tables := flag.String("tables", "", "read existing tables under this bucket directory and prefix instead of making an estate")
	queries := flag.String("queries", "", "docs/queries.md (default: found from the working directory)")
	reps := flag.Int("reps", 3, "times each question runs (the best and the median are shown)")
	kbQIDs := flag.Int64("kb-qids", 0, "plan KnowledgeBase passes over a simulated KnowledgeBase of about this many QIDs (0: no KnowledgeBase step)")
	kbBatch := flag.Int("kb-batch-size", 1000, "QIDs per KnowledgeBase batch")
	flag.Parse()
	log.SetFlags(0)

	doc, err := findDoc(*queries)
	if err != nil {
		log.Fatal(err)
	}
	q, err := tablecheck.Queries(doc)
	if err != nil {
		log.Fatal(err)
	}
	root, cleanup := *tables, func() {}
	if root == "" {
		root, cleanup, err = makeEstate(*dir, *hosts, *runs, *advance, *batch, *slots, *kbQIDs, *kbBatch)
		if err != nil {
			log.Fatal(err)
		}
	}
	err = bench(root, q, *reps)
	cleanup()
	if err != nil {
		log.Fatal(err)
	}
}

// findDoc is docs/queries.md from the repository root, tablecheck/ or
// tablecheck/bench.
func findDoc(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	for _, p := range []string{"docs/queries.md", "../docs/queries.md", "../../docs/queries.md"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("docs/queries.md not found from here; say where with -queries")
}

// makeEstate runs the pipeline over a simulated estate and returns where
// its tables are, and what removes a temporary estate once read.
func makeEstate(dir string, hosts int64, runs int, advance time.Duration, batch, slots int, kbQIDs int64, kbBatch int) (root string, cleanup func(), err error) {
	cleanup = func() {}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "tablecheck-bench-"); err != nil {
			return "", nil, err
		}
		tmp := dir
		cleanup = func() { os.RemoveAll(tmp) }
		defer func() {
			if err != nil {
				cleanup()
			}
		}()
	}
	ctx := context.Background()
	start := time.Now()
	e, err := tablecheck.StartEstate(ctx, tablecheck.EstateConfig{Dir: dir, Hosts: hosts, Seed: 1, BatchSize: batch,
		PageSize: 10 * batch, Slots: slots, Overlap: time.Hour, RunTimeout: 4 * time.Hour,
		KB: kbQIDs > 0, KBQIDs: kbQIDs, KBBatchSize: kbBatch, NewHostsPerDay: max(1, hosts/100)})
	if err != nil {
		return "", nil, err
	}
	defer e.Close()
	var kb []kbRow
	for i := range runs {
		d := advance
		if i == 0 {
			d = 0
		}
		m := watchMemory()
		r, err := e.Next(ctx, d)
		heap, rss := m.stop()
		if err != nil {
			return "", nil, err
		}
		fmt.Fprintf(os.Stderr, "run %d/%d %s: %d batches (%s so far)\n", i+1, runs, r.ID, r.BatchesPlanned,
			time.Since(start).Round(time.Second))
		if r.KB != nil {
			kb = append(kb, kbRow{KBPass: *r.KB, heap: heap, rss: rss})
		}
	}
	root = filepath.Join(e.Bucket, tablecheck.Prefix)
	if len(kb) > 0 {
		if err := printKB(root, kb); err != nil {
			return "", nil, err
		}
	}
	return root, cleanup, nil
}

type question struct {
	name, query string
	rows        int
	times       []time.Duration
}

func bench(root string, q map[string]string, reps int) error {
	db, err := tablecheck.OpenDuckDB()
	if err != nil {
		return err
	}
	defer db.Close()
	if err := tablecheck.CreateViews(db, q, root); err != nil {
		return err
	}
	if _, err := db.Exec(q["duckdb-current-state"]); err != nil {
		return err
	}
	var host int64
	if err := db.QueryRow("SELECT host_id FROM hosts GROUP BY host_id ORDER BY count(*) DESC, host_id LIMIT 1").Scan(&host); err != nil {
		return fmt.Errorf("choosing a host: %w", err)
	}
	if _, err := db.Exec(fmt.Sprintf("SET VARIABLE host_id = %d", host)); err != nil {
		return err
	}
	qs := []*question{
		{name: "current state (count)", query: "SELECT count(*) FROM current_state"},
		{name: "open severity-5 detections by QID", query: q["duckdb-open-sev5-by-qid"]},
		{name: fmt.Sprintf("one host's history (%d)", host), query: q["duckdb-host-history"]},
		{name: "counts by status, last 30 runs", query: q["duckdb-status-last-30-runs"]},
	}
	// The KnowledgeBase's views exist once a pass is complete.
	if _, err := os.Stat(filepath.Join(root, "tables", "kb")); err == nil {
		views := strings.ReplaceAll(q["duckdb-kb-views"], tablecheck.DocBucket, filepath.ToSlash(root))
		if _, err := db.Exec(views + q["duckdb-kb-current"]); err != nil {
			return fmt.Errorf("the KnowledgeBase views: %w", err)
		}
		qs = append(qs, &question{name: "open detections with the KnowledgeBase", query: q["duckdb-open-detections-kb"]})
	}
	for _, x := range qs {
		for range reps {
			start := time.Now()
			n, err := count(db, x.query)
			if err != nil {
				return fmt.Errorf("%s: %w", x.name, err)
			}
			x.times = append(x.times, time.Since(start))
			x.rows = n
		}
	}
	var nDet, nHosts, nRuns int64
	if err := db.QueryRow("SELECT (SELECT count(*) FROM detections), (SELECT count(*) FROM hosts), (SELECT count(*) FROM runs WHERE coalesce(kind, 'run') = 'run')").
		Scan(&nDet, &nHosts, &nRuns); err != nil {
		return err
	}
	size, files := treeSize(filepath.Join(root, "tables"))
	xml, _ := treeSize(filepath.Join(root, "runs"))
	fmt.Printf("tables: %s — %d runs, %d host rows, %d detection rows; %d files, %.1f MiB (the runs' XML: %.1f MiB)\n\n",
		filepath.Join(root, "tables"), nRuns, nHosts, nDet, files, float64(size)/(1<<20), float64(xml)/(1<<20))
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "question\trows\tbest\tmedian\t")
	for _, x := range qs {
		slices.Sort(x.times)
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t\n", x.name, x.rows, ms(x.times[0]), ms(x.times[len(x.times)/2]))
	}
	return w.Flush()
}

// count runs query and counts its rows (reading them all, as a client
// would).
func count(db *sql.DB, query string) (int, error) {
	rows, err := db.Query(query)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func treeSize(root string) (size int64, files int) {
	_ = filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
				files++
			}
		}
		return nil
	})
	return size, files
}
