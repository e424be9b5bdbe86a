package qualysim

import (
	"encoding/json"
	"net/url"
	"reflect"
	"testing"
	"time"
)

// TestKBTruthRowsAndLateOverHTTP: rows=1 and late_after= give a test in
// another process KBSelect's VULNs and KBLate, as the Go API does.
func TestKBTruthRowsAndLateOverHTTP(t *testing.T) {
	cfg := kbConfig()
	cfg.NewHostsPerDay = 50
	f := setup(t, cfg)
	after := f.sim.clock.Now()
	f.sim.Advance(72 * time.Hour)
	q := url.Values{"kind": {"kb"}, "details": {"All"}, "show_disabled_flag": {"1"}, "show_qid_change_log": {"1"},
		"show_supported_modules_info": {"1"}, "show_pci_reasons": {"1"}, "rows": {"1"},
		"late_after": {after.Format(time.RFC3339)}}
	resp, err := f.srv.Client().Get(f.srv.URL + "/__sim/truth?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Count int         `json:"count"`
		Vulns []KBVuln    `json:"vulns"`
		Late  []KBLateQID `json:"late"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := f.sim.KBTruth(time.Time{})
	if got.Count != len(want) || !reflect.DeepEqual(got.Vulns, want) {
		t.Errorf("rows over HTTP: %d VULNs (count %d), want %d equal to KBTruth", len(got.Vulns), got.Count, len(want))
	}
	wantLate := f.sim.KBLate(after, time.Time{})
	if len(wantLate) == 0 {
		t.Fatal("no late-visible QID after 3 days; the check proves nothing")
	}
	if !reflect.DeepEqual(got.Late, wantLate) {
		t.Errorf("late over HTTP: %v, want %v", got.Late, wantLate)
	}
}
