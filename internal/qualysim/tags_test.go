package qualysim

import (
	"bytes"
	"encoding/xml"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestTagsAreWhatIsServed: with show_tags=1 both APIs serve each HOST's
// TAGS, equal to the truth (HostRows, DetectionRows with ShowTags), in the
// DTD's place; without it neither serves any and the truth has none.
func TestTagsAreWhatIsServed(t *testing.T) {
	f := setup(t, testConfig())
	for _, tc := range []struct {
		name    string
		path    string
		details string // Host List only
		show    bool
		// before and after are the HOST children TAGS must follow and
		// precede (qualys-api.md §2.2, §3.3).
		before, after string
	}{
		{"host list Basic", hostListPath, "Basic", true, "OS", "LAST_VULN_SCAN_DATETIME"},
		{"host list All", hostListPath, "All", true, "FIRST_FOUND_DATE", "LAST_VULN_SCAN_DATETIME"},
		{"detections", detectionPath, "", true, "LAST_VM_SCANNED_DURATION", "DETECTION_LIST"},
		{"host list without show_tags", hostListPath, "All", false, "", ""},
		{"detections without show_tags", detectionPath, "", false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := form("action", "list", "truncation_limit", "0")
			if tc.details != "" {
				q.Set("details", tc.details)
			}
			if tc.show {
				q.Set("show_tags", "1")
			}
			a := f.call(t, http.MethodPost, tc.path, q)
			if a.status != 200 {
				t.Fatalf("status %d", a.status)
			}
			served := decodeHosts(t, a.body)
			var want [][]Tag
			if tc.path == hostListPath {
				for h := range f.sim.HostRows(Filter{HostDetails: tc.details, ShowTags: tc.show}) {
					want = append(want, h.Tags)
				}
			} else {
				for _, hd := range f.sim.DetectionRows(Filter{ShowTags: tc.show}) {
					want = append(want, hd.Host.Tags)
				}
			}
			if len(want) != len(served) || len(want) < 100 {
				t.Fatalf("%d hosts served, %d in the truth", len(served), len(want))
			}
			counts := map[int]int{}
			names := map[string]bool{}
			for i, x := range served {
				if !reflect.DeepEqual(x.Tags, want[i]) {
					t.Fatalf("host %d: served tags %+v, truth %+v", x.ID, x.Tags, want[i])
				}
				counts[len(x.Tags)]++
				for _, tg := range x.Tags {
					names[tg.Name] = true
				}
			}
			if !tc.show {
				if counts[0] != len(served) || bytes.Contains(a.body, []byte("<TAGS>")) {
					t.Fatalf("tags without show_tags: %v", counts)
				}
				return
			}
			for n := range 4 {
				if counts[n] == 0 {
					t.Errorf("no host with %d tags among %d: %v", n, len(served), counts)
				}
			}
			if !names["Business Units: R&D <Lab>"] || !names["Owner &amp; Team: SecOps"] {
				t.Errorf("the CDATA names with & and < were not served: %v", names)
			}
			checkTagsPlace(t, a.body, tc.before, tc.after)
		})
	}
}

// TestTagsFixedPerHost: a host's tags are the same in both APIs and on
// every call, and a catalogue tag keeps its ID across hosts.
func TestTagsFixedPerHost(t *testing.T) {
	f := setup(t, testConfig())
	list := map[uint64][]Tag{}
	for h := range f.sim.HostRows(Filter{ShowTags: true}) {
		list[h.ID] = h.Tags
	}
	ids := map[string]uint64{}
	n := 0
	for id, hd := range f.sim.DetectionRows(Filter{ShowTags: true}) {
		if !reflect.DeepEqual(hd.Host.Tags, list[id]) {
			t.Fatalf("host %d: detection tags %+v, Host List tags %+v", id, hd.Host.Tags, list[id])
		}
		for _, tg := range hd.Host.Tags {
			if prev, ok := ids[tg.Name]; ok && prev != tg.ID {
				t.Fatalf("tag %q has IDs %d and %d", tg.Name, prev, tg.ID)
			}
			ids[tg.Name] = tg.ID
		}
		n++
	}
	if n == 0 || len(ids) < len(tagCatalogue)/2 {
		t.Fatalf("%d hosts, %d distinct tags", n, len(ids))
	}
}

// checkTagsPlace checks that in every HOST of body that has TAGS, the
// child before it is before (or a later one of the same run of optional
// elements) and the one after it is after.
func checkTagsPlace(t *testing.T, body []byte, before, after string) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(body))
	var path, children []string
	seen := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			if len(path) > 0 && path[len(path)-1] == "HOST" {
				children = append(children, tk.Name.Local)
			}
			path = append(path, tk.Name.Local)
		case xml.EndElement:
			path = path[:len(path)-1]
			if tk.Name.Local != "HOST" {
				continue
			}
			if i := slices.Index(children, "TAGS"); i >= 0 {
				seen++
				if i == 0 || i+1 >= len(children) || children[i+1] != after ||
					slices.Index(children, before) > i || slices.Index(children, before) < 0 {
					t.Fatalf("HOST children %s: TAGS not after %s and before %s", strings.Join(children, ","), before, after)
				}
			}
			children = children[:0]
		}
	}
	if seen == 0 {
		t.Fatal("no HOST with TAGS")
	}
}
