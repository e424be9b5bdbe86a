package config

import (
	"fmt"
	"net/url"
	"slices"
)

// showTags is the Qualys parameter QUALYS_SHOW_TAGS sets.
const showTags = "show_tags"

// HostListExtra is what the planner adds to each Host List request:
// HostListParams, and show_tags=1 with ShowTags.
func (q Qualys) HostListExtra() url.Values { return q.withTags(q.HostListParams.Values()) }

// DetectionExtra is what each detection request of a new run adds (the
// run record keeps it): DetectionParams, and show_tags=1 with ShowTags.
func (q Qualys) DetectionExtra() url.Values { return q.withTags(q.DetectionParams.Values()) }

func (q Qualys) withTags(v url.Values) url.Values {
	if q.ShowTags {
		v.Set(showTags, "1")
	}
	return v
}

// checkShowTags refuses a show_tags in the extra parameters that says
// otherwise than ShowTags: one of the two would be ignored.
func (q Qualys) checkShowTags() error {
	if !q.ShowTags {
		return nil
	}
	for _, p := range []struct {
		name string
		v    Params
	}{{"QUALYS_HOSTLIST_PARAMS", q.HostListParams}, {"QUALYS_DETECTION_PARAMS", q.DetectionParams}} {
		if i := slices.IndexFunc(p.v[showTags], func(s string) bool { return s != "1" }); i >= 0 {
			return fmt.Errorf("is true, but %s sets %s=%s; leave show_tags out of it", p.name, showTags, p.v[showTags][i])
		}
	}
	return nil
}
