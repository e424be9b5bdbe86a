package app

import (
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/config"
)

// TestPlanKBConfig: a pass asks for the details configured (whatever the
// extras say) and QETL's show_* flags unless the operator set them; the
// listing carries the operator's extras alone.
func TestPlanKBConfig(t *testing.T) {
	kb := config.KB{Enabled: true, BatchSize: 500, Details: "Basic", Overlap: time.Hour, Every: 6 * time.Hour, FullEvery: 24 * time.Hour}
	for _, tc := range []struct {
		name       string
		extra      config.Params
		params     url.Values
		listExtras url.Values
	}{
		{"no extras", nil,
			url.Values{"details": {"Basic"}, "show_disabled_flag": {"1"}, "show_qid_change_log": {"1"},
				"show_supported_modules_info": {"1"}, "show_pci_reasons": {"1"}},
			url.Values{}},
		{"extras", config.Params{"is_patchable": {"1"}, "show_pci_reasons": {"0"}, "details": {"All"}},
			url.Values{"details": {"Basic"}, "show_disabled_flag": {"1"}, "show_qid_change_log": {"1"},
				"show_supported_modules_info": {"1"}, "show_pci_reasons": {"0"}, "is_patchable": {"1"}},
			url.Values{"is_patchable": {"1"}, "show_pci_reasons": {"0"}, "details": {"All"}}},
	} {
		got := PlanKBConfig(config.Qualys{KBParams: tc.extra}, kb)
		if !reflect.DeepEqual(got.Params, tc.params) || !reflect.DeepEqual(got.ListParams, tc.listExtras) {
			t.Errorf("%s: params %v list %v\nwant %v list %v", tc.name, got.Params, got.ListParams, tc.params, tc.listExtras)
		}
		if !got.Enabled || got.BatchSize != 500 || got.Overlap != time.Hour || got.Every != 6*time.Hour || got.FullEvery != 24*time.Hour {
			t.Errorf("%s: settings %+v", tc.name, got)
		}
	}
}
