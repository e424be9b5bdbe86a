package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/qualysim"
)

// The checker must be able to fail: these tests hold its parts to the
// simulator's own truth and to broken input.

func TestCountDetectionsMatchesTruth(t *testing.T) {
	sim := qualysim.New(qualysim.Config{Seed: 11, Hosts: 400, RateLimit: qualysim.Off, ConcurrencyLimit: qualysim.Off})
	defer sim.Close()
	form := url.Values{"action": {"list"}, "status": {allStatuses}, "truncation_limit": {"0"}, "show_igs": {"1"}}
	req := httptest.NewRequest(http.MethodPost, "/api/2.0/fo/asset/host/vm/detection/", strings.NewReader(form.Encode()))
	req.SetBasicAuth(sim.Username(), sim.Password())
	req.Header.Set("X-Requested-With", "qfetch-e2e")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	sim.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("simulator answered %d: %.300s", rec.Code, rec.Body.String())
	}
	doc := rec.Body.Bytes()

	hosts, err := countDetections(doc)
	if err != nil {
		t.Fatal(err)
	}
	statuses, err := qualysim.ParseStatuses(allStatuses)
	if err != nil {
		t.Fatal(err)
	}
	want := sim.DetectionCounts(qualysim.Filter{Statuses: statuses, ShowIGs: true})
	if len(hosts) != len(want) || len(want) < 100 {
		t.Fatalf("counted %d hosts, truth %d", len(hosts), len(want))
	}
	for _, h := range hosts {
		if want[h.id] != h.n {
			t.Fatalf("host %d: counted %d detections, truth %d", h.id, h.n, want[h.id])
		}
	}

	for _, bad := range [][]byte{doc[:len(doc)/2], doc[:len(doc)-10]} {
		if _, err := countDetections(bad); err == nil {
			t.Errorf("a document cut at %d of %d bytes was counted without error", len(bad), len(doc))
		}
	}
}

// errorsTB records Errorf calls instead of failing the test.
type errorsTB struct {
	testing.TB
	errs []string
}

func (e *errorsTB) Helper() {}
func (e *errorsTB) Errorf(format string, args ...any) {
	e.errs = append(e.errs, fmt.Sprintf(format, args...))
}

func TestCheckBatchKeys(t *testing.T) {
	tests := []struct {
		keys    []string
		planned int
		ok      bool
	}{
		{[]string{"1", "2", "3"}, 3, true},
		{[]string{"1", "2.1", "2.2", "3"}, 3, true},
		{[]string{"1", "2.1", "2.2.1", "2.2.2"}, 2, true},
		{[]string{"1", "2"}, 3, false},               // batch 3 missing
		{[]string{"1", "2.1"}, 2, false},             // half of batch 2 missing
		{[]string{"1", "2", "2.1", "2.2"}, 2, false}, // batch 2 stored whole and split
		{[]string{"1", "1", "2"}, 2, false},          // batch 1 twice
		{[]string{"1", "2", "4"}, 2, false},          // a batch nobody planned
	}
	for _, tt := range tests {
		rec := &errorsTB{TB: t}
		checkBatchKeys(rec, "r", tt.keys, tt.planned)
		if ok := len(rec.errs) == 0; ok != tt.ok {
			t.Errorf("keys %v of %d planned: ok = %v, want %v (%v)", tt.keys, tt.planned, ok, tt.ok, rec.errs)
		}
	}
}

func TestPageOf(t *testing.T) {
	tests := []struct {
		key  string
		want int
	}{
		{"qualys/runs/r1/detections/batch-000001.xml", 1},
		{"qualys/runs/r1/detections/batch-000001-p0002.xml", 2},
		{"qualys/runs/r1/detections/batch-000017.2.1.xml", 1},
		{"qualys/runs/r1/detections/batch-000017.2.1-p0013.xml", 13},
		{"qualys/runs/r-p1/detections/batch-a1000000-pa10000.xml", 10000},
		{"qualys/runs/r-p1/detections/batch-a1000000.xml", 1},
	}
	for _, tt := range tests {
		if got := pageOf(tt.key); got != tt.want {
			t.Errorf("pageOf(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
}
