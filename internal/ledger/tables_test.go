package ledger

import (
	"testing"

	"github.com/qfetch/qfetch/internal/objstore"
)

// A part recorded again with the same content is no error and no new key;
// other content replaces it; the count is the number of parts.
func TestTableParts(t *testing.T) {
	e := setup(t, Config{})
	p := TablePart{Run: "r1", Kind: "detections", Item: "17.2", Key: "qualys/tables/x.parquet", Rows: 10, Bytes: 100}
	for range 2 {
		if err := e.l.RecordTablePart(e.Ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	h := TablePart{Run: "r1", Kind: "hosts", Item: "3", Key: "qualys/tables/y.parquet", Rows: 5, Bytes: 50}
	if err := e.l.RecordTablePart(e.Ctx, h); err != nil {
		t.Fatal(err)
	}
	p.Rows = 11
	if err := e.l.RecordTablePart(e.Ctx, p); err != nil {
		t.Fatal(err)
	}
	if n, err := e.l.CountTableParts(e.Ctx, "r1"); err != nil || n != 2 {
		t.Fatalf("count %d, %v; want 2", n, err)
	}
	parts, err := e.l.TableParts(e.Ctx, "r1")
	if err != nil || len(parts) != 2 {
		t.Fatalf("parts %+v, %v", parts, err)
	}
	for _, got := range parts {
		if got != p && got != h {
			t.Errorf("part %+v", got)
		}
	}
	for _, bad := range []TablePart{
		{Run: "r1", Kind: "runs", Item: "1"},
		{Run: "r1", Kind: "hosts", Item: "0"},
		{Run: "r.1", Kind: "hosts", Item: "1"},
		{Run: "r1", Kind: "detections", Item: "*"},
	} {
		if err := e.l.RecordTablePart(e.Ctx, bad); err == nil {
			t.Errorf("recorded %+v", bad)
		}
	}
}

func TestDoneBatchAndPage(t *testing.T) {
	e := setup(t, Config{})
	r := BatchResult{Run: "r1", Batch: "2.1", Objects: []objstore.Object{{Key: "k", Bytes: 3}}}
	if err := e.l.MarkDone(e.Ctx, r); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := e.l.DoneBatch(e.Ctx, "r1", "2.1"); err != nil || !ok || got.Objects[0].Key != "k" {
		t.Fatalf("done batch %+v, %v, %v", got, ok, err)
	}
	if _, ok, err := e.l.DoneBatch(e.Ctx, "r1", "2.2"); err != nil || ok {
		t.Fatalf("missing batch: %v, %v", ok, err)
	}
	if err := e.l.MarkPage(e.Ctx, "r1", 4, objstore.Object{Key: "p4"}); err != nil {
		t.Fatal(err)
	}
	if o, ok, err := e.l.Page(e.Ctx, "r1", 4); err != nil || !ok || o.Key != "p4" {
		t.Fatalf("page %+v, %v, %v", o, ok, err)
	}
	if _, ok, err := e.l.Page(e.Ctx, "r1", 5); err != nil || ok {
		t.Fatalf("missing page: %v, %v", ok, err)
	}
}

func TestPageNumber(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want int
	}{
		{"qualys/runs/r1/hostlist/page-000017.xml", 17},
		{"runs/r1/hostlist/page-a1000000.xml", 1000000},
		{"runs/r1/hostlist/page-000000.xml", 0},
		{"runs/r1/detections/batch-000001.xml", 0},
		{"runs/r1/hostlist/page-x.xml", 0},
		{"runs/r1/hostlist/page-000001.json", 0},
	} {
		got, ok := PageNumber(tc.key)
		if got != tc.want || ok != (tc.want > 0) {
			t.Errorf("PageNumber(%q) = %d, %v; want %d", tc.key, got, ok, tc.want)
		}
	}
}
