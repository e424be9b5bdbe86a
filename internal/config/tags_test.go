package config

import (
	"net/url"
	"testing"
)

// TestShowTagsExtra: QUALYS_SHOW_TAGS adds show_tags=1 to both APIs'
// extra parameters, keeps the operator's, and changes nothing when off.
func TestShowTagsExtra(t *testing.T) {
	hl, det := Params{"ag_ids": {"1,2"}}, Params{"status": {"New"}}
	for _, tc := range []struct {
		name         string
		q            Qualys
		wantHL, want url.Values
	}{
		{"off", Qualys{HostListParams: hl, DetectionParams: det},
			url.Values{"ag_ids": {"1,2"}}, url.Values{"status": {"New"}}},
		{"on", Qualys{HostListParams: hl, DetectionParams: det, ShowTags: true},
			url.Values{"ag_ids": {"1,2"}, "show_tags": {"1"}}, url.Values{"status": {"New"}, "show_tags": {"1"}}},
		{"on without extras", Qualys{ShowTags: true}, url.Values{"show_tags": {"1"}}, url.Values{"show_tags": {"1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.q.HostListExtra(); got.Encode() != tc.wantHL.Encode() {
				t.Errorf("HostListExtra = %s, want %s", got.Encode(), tc.wantHL.Encode())
			}
			if got := tc.q.DetectionExtra(); got.Encode() != tc.want.Encode() {
				t.Errorf("DetectionExtra = %s, want %s", got.Encode(), tc.want.Encode())
			}
		})
	}
	if _, ok := hl["show_tags"]; ok {
		t.Error("HostListExtra changed the configured parameters")
	}
}
