package finish

import (
	"slices"
	"testing"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
)

// TestHostList: which Host List pages the manifest lists (and so which the
// seal keeps), from the recorded pages and what the prefix stores.
func TestHostList(t *testing.T) {
	const run = "20260110T000000Z-pages"
	page := func(n int) string { return objstore.HostListPageKey("q", run, n) }
	rec := func(n int) objstore.Object {
		return objstore.Object{Key: page(n), Bytes: int64(100 + n), SHA256: "s", Hosts: 7}
	}
	list := func(n int) objstore.Object { return objstore.Object{Key: page(n), Bytes: int64(100 + n)} }
	stored := func(ns ...int) map[string]objstore.Object {
		m := map[string]objstore.Object{objstore.DetectionKey("q", run, 1, 1): {Key: objstore.DetectionKey("q", run, 1, 1), Bytes: 9}}
		for _, n := range ns {
			m[page(n)] = objstore.Object{Key: page(n), Bytes: int64(100 + n), ETag: "e"}
		}
		return m
	}
	tests := []struct {
		name      string
		plannerID string
		pages     []objstore.Object
		stored    map[string]objstore.Object
		want      Objects
	}{
		{"fenced: the recorded pages", "p", []objstore.Object{rec(1), rec(2)}, stored(1, 2), Objects{rec(1), rec(2)}},
		{"fenced: a page beyond the final walk is left out", "p", []objstore.Object{rec(1), rec(2)}, stored(1, 2, 3, 4), Objects{rec(1), rec(2)}},
		{"fenced: an older version's page before the resume is kept", "p", []objstore.Object{rec(2), rec(3)}, stored(1, 2, 3, 4), Objects{list(1), rec(2), rec(3)}},
		{"fenced: a recorded page not stored is listed", "p", []objstore.Object{rec(1), rec(2)}, stored(1), Objects{rec(1), rec(2)}},
		{"fenced: no pages", "p", nil, stored(1), nil},
		{"older: the ledger when whole", "", []objstore.Object{rec(1), rec(2)}, stored(1, 2), Objects{rec(1), rec(2)}},
		{"older: an unrecorded page after them", "", []objstore.Object{rec(1), rec(2)}, stored(1, 2, 3), Objects{rec(1), rec(2), list(3)}},
		{"older: no records", "", nil, stored(1, 2), Objects{list(1), list(2)}},
		{"older: a gap", "", []objstore.Object{rec(2)}, stored(1, 2), Objects{list(1), rec(2)}},
		{"older: a record of other bytes", "", []objstore.Object{{Key: page(1), Bytes: 5, SHA256: "s"}}, stored(1), Objects{list(1)}},
		{"older: a recorded page not stored", "", []objstore.Object{rec(1), rec(2)}, stored(1), Objects{rec(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := hostList("q", ledger.RunRecord{ID: run, PlannerID: tt.plannerID}, tt.pages, tt.stored)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestBatchStem(t *testing.T) {
	for key, want := range map[string]string{
		"q/runs/r/detections/batch-000017.xml":           "batch-000017",
		"q/runs/r/detections/batch-000017-p0002.xml":     "batch-000017",
		"q/runs/r/detections/batch-000017.2.1.xml":       "batch-000017.2.1",
		"q/runs/r/detections/batch-000017.2.1-p0003.xml": "batch-000017.2.1",
		"q/runs/r/detections/batch-a1000000-p0002.xml":   "batch-a1000000",
	} {
		if got := batchStem(key); got != want {
			t.Errorf("batchStem(%s) = %s, want %s", key, got, want)
		}
	}
}

// TestSameObjects: a manifest there is adopted only when it lists the same
// objects, whoever wrote it and whenever.
func TestSameObjects(t *testing.T) {
	o := func(k string, b int64, sha string) objstore.Object {
		return objstore.Object{Key: k, Bytes: b, SHA256: sha}
	}
	base := Manifest{Run: "r", Finisher: "a", HostList: Objects{o("h1", 1, "x")},
		Batches: []ManifestBatch{{Batch: "1", Objects: Objects{o("b1", 2, "y")}}, {Batch: "2", Objects: Objects{o("b2", 3, "z")}}}}
	tests := []struct {
		name   string
		change func(m *Manifest)
		same   bool
	}{
		{"another finisher, time and hosts", func(m *Manifest) { m.Finisher = "b"; m.HostList[0].Hosts = 4; m.Totals.Seconds = 9 }, true},
		{"another sha256", func(m *Manifest) { m.Batches[1].Objects[0].SHA256 = "w" }, false},
		{"another size", func(m *Manifest) { m.HostList[0].Bytes = 7 }, false},
		{"another key", func(m *Manifest) { m.Batches[0].Objects[0].Key = "b9" }, false},
		{"one more object", func(m *Manifest) { m.Batches[0].Objects = append(m.Batches[0].Objects, o("b1p2", 1, "v")) }, false},
		{"a host list page less", func(m *Manifest) { m.HostList = nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := base
			m.HostList = slices.Clone(base.HostList)
			m.Batches = slices.Clone(base.Batches)
			for i := range m.Batches {
				m.Batches[i].Objects = slices.Clone(m.Batches[i].Objects)
			}
			tt.change(&m)
			if got := sameObjects(base, m); got != tt.same {
				t.Fatalf("sameObjects = %v, want %v", got, tt.same)
			}
		})
	}
}
