package tablecheck

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/tables"
)

// kbSample is the real 42-QID KnowledgeBase answer the tables package keeps.
const kbSample = "../internal/tables/testdata/samples/kb_42vulns_details-default_ig-potential-vuln_gzip_recorded_200.xml"

// writeTable writes one part of table for run from the XML docs with w.
func writePart(t *testing.T, root, table, run string, created time.Time, part string, add func(*bytes.Buffer) error) {
	t.Helper()
	var buf bytes.Buffer
	if err := add(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, filepath.FromSlash(tables.PartKey("", table, run, created, part)))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

type adder interface {
	Add(ctx context.Context, key string, r io.Reader) error
	Close() (tables.Stats, error)
}

func convert(w adder, docs ...string) error {
	for i, d := range docs {
		if err := w.Add(context.Background(), "k"+string(rune('0'+i)), strings.NewReader(d)); err != nil {
			return err
		}
	}
	_, err := w.Close()
	return err
}

// TestKBQueries runs the KnowledgeBase queries of docs/queries.md, as
// written there, on the converter's output of the real KnowledgeBase
// sample and of two later passes: the current KnowledgeBase is each QID's
// row from the newest complete pass, and the open detections join to it.
func TestKBQueries(t *testing.T) {
	root := t.TempDir()
	day := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	const (
		run   = "20261204T100000Z-aaaaaa"
		passA = "kb-20261204T090000Z-aaaaaa" // full: the real sample
		passB = "kb-20261204T110000Z-bbbbbb" // incremental: QID 6 changed
		passC = "kb-20261204T120000Z-cccccc" // not complete: no runs row
	)
	sample, err := os.ReadFile(kbSample)
	if err != nil {
		t.Fatal(err)
	}
	kbDoc := func(vulns string) string {
		return `<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><DATETIME>2026-12-04T11:00:00Z</DATETIME><VULN_LIST>` + vulns +
			`</VULN_LIST></RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT>`
	}
	writePart(t, root, tables.KB, passA, day, "batch-000001", func(b *bytes.Buffer) error {
		return convert(tables.NewKBWriter(b, tables.Source{Run: passA, RunDate: day}, tables.Options{}), string(sample))
	})
	writePart(t, root, tables.KB, passB, day, "batch-000001", func(b *bytes.Buffer) error {
		return convert(tables.NewKBWriter(b, tables.Source{Run: passB, RunDate: day}, tables.Options{}), kbDoc(
			`<VULN><QID>6</QID><VULN_TYPE>Information Gathered</VULN_TYPE><SEVERITY_LEVEL>2</SEVERITY_LEVEL><TITLE>DNS Host Name v2</TITLE>`+
				`<CVE_LIST><CVE><ID>CVE-2026-0001</ID><URL>u</URL></CVE><CVE><ID>CVE-2026-0002</ID></CVE></CVE_LIST>`+
				`<CVSS><BASE source="service">5.0</BASE></CVSS><CVSS_V3><BASE>7.5</BASE><VECTOR_STRING>CVSS:3.1/AV:N</VECTOR_STRING></CVSS_V3></VULN>`))
	})
	writePart(t, root, tables.KB, passC, day, "batch-000001", func(b *bytes.Buffer) error {
		return convert(tables.NewKBWriter(b, tables.Source{Run: passC, RunDate: day}, tables.Options{}), kbDoc(
			`<VULN><QID>6</QID><TITLE>not complete</TITLE></VULN>`))
	})
	writePart(t, root, tables.Detections, run, day, "batch-000001", func(b *bytes.Buffer) error {
		return convert(tables.NewDetectionWriter(b, tables.Source{Run: run, RunDate: day}, tables.Options{}),
			`<HOST_LIST_VM_DETECTION_OUTPUT><RESPONSE><HOST_LIST><HOST><ID>1</ID><DETECTION_LIST>`+
				`<DETECTION><QID>6</QID><SEVERITY>1</SEVERITY><STATUS>Active</STATUS></DETECTION>`+
				`<DETECTION><QID>45017</QID><SEVERITY>2</SEVERITY><STATUS>Fixed</STATUS></DETECTION>`+
				`<DETECTION><QID>38173</QID><SEVERITY>3</SEVERITY><STATUS>New</STATUS></DETECTION>`+
				`</DETECTION_LIST></HOST></HOST_LIST></RESPONSE></HOST_LIST_VM_DETECTION_OUTPUT>`)
	})
	writePart(t, root, tables.Hosts, run, day, "page-000001", func(b *bytes.Buffer) error {
		return convert(tables.NewHostWriter(b, tables.Source{Run: run, RunDate: day}, tables.Options{}),
			`<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID>1</ID></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`)
	})
	for _, r := range []tables.RunRow{
		{Run: run, Kind: tables.KindRun, RunDate: day, Before: day, Completed: day},
		{Run: passA, Kind: tables.KindKB, RunDate: day, Before: day, Completed: day},
		{Run: passB, Kind: tables.KindKB, RunDate: day, Before: day, Completed: day},
	} {
		writePart(t, root, tables.Runs, r.Run, day, tables.Runs, func(b *bytes.Buffer) error { return tables.WriteRun(b, r) })
	}

	q := docQueries(t, "duckdb-kb-views", "duckdb-kb-current", "duckdb-current-state", "duckdb-open-detections-kb")
	db := openTables(t, root)
	mustExec(t, db, strings.ReplaceAll(q["duckdb-kb-views"], DocBucket, filepath.ToSlash(root)))
	mustExec(t, db, q["duckdb-current-state"])
	mustExec(t, db, q["duckdb-kb-current"])

	var n, distinct int
	var title, run6 string
	if err := db.QueryRow(`SELECT count(*), count(DISTINCT qid) FROM kb_current`).Scan(&n, &distinct); err != nil || n != 42 || distinct != 42 {
		t.Fatalf("kb_current: %d rows, %d QIDs, %v; want the sample's 42", n, distinct, err)
	}
	if err := db.QueryRow(`SELECT title, run FROM kb_current WHERE qid = 6`).Scan(&title, &run6); err != nil || title != "DNS Host Name v2" || run6 != passB {
		t.Fatalf("QID 6: %q from %s, %v; want the newest complete pass's", title, run6, err)
	}
	if err := db.QueryRow(`SELECT title FROM kb_current WHERE qid = 45017`).Scan(&title); err != nil || title != "Operating System Detected" {
		t.Fatalf("QID 45017: %q, %v; want the full pass's row", title, err)
	}

	rows, err := db.Query(`SELECT CAST(qid AS VARCHAR), coalesce(title, 'NULL'), coalesce(array_to_string(cves, ','), 'NULL'),
		coalesce(CAST(cvss_base AS VARCHAR), 'NULL'), coalesce(CAST(cvss3_base AS VARCHAR), 'NULL'), coalesce(cvss3_vector, 'NULL'),
		CAST(kb_severity AS VARCHAR)
		FROM (` + strings.TrimSuffix(strings.TrimSpace(q["duckdb-open-detections-kb"]), ";") + `)`)
	if err != nil {
		t.Fatalf("%v\n%s", err, q["duckdb-open-detections-kb"])
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var qid, title, cves, base, base3, vector string
		var sev *string
		if err := rows.Scan(&qid, &title, &cves, &base, &base3, &vector, &sev); err != nil {
			t.Fatal(err)
		}
		s := "NULL"
		if sev != nil {
			s = *sev
		}
		got = append(got, strings.Join([]string{qid, title, cves, base, base3, vector, s}, "|"))
	}
	want := []string{
		"38173|NULL|NULL|NULL|NULL|NULL|NULL",
		"6|DNS Host Name v2|CVE-2026-0001,CVE-2026-0002|5.0|7.5|CVSS:3.1/AV:N|2",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("open detections with the KnowledgeBase:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestREADMEQueries: the SQL the README's "Analysing the data" shows is
// docs/queries.md's, which the checks run, block by block.
func TestREADMEQueries(t *testing.T) {
	readme, err := Queries("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := docQueries(t, "duckdb-kb-current", "duckdb-open-detections-kb")
	for _, name := range []string{"duckdb-kb-current", "duckdb-open-detections-kb"} {
		if readme[name] == "" {
			t.Errorf("README.md shows no block marked <!-- query: %s -->", name)
		} else if readme[name] != doc[name] {
			t.Errorf("README.md's %s differs from %s's:\n%s\nwant\n%s", name, queriesDoc, readme[name], doc[name])
		}
	}
	for name := range readme {
		if doc[name] == "" {
			t.Errorf("README.md's block %s is not in %s, where the checks run it", name, queriesDoc)
		}
	}
}
