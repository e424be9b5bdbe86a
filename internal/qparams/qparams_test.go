package qparams

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestOwned(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"action", true}, {"Action", true}, {"ACTION", true}, {"IDS", true}, {"Ids", true},
		{"id_min", true}, {"ID_MAX", true}, {"Truncation_Limit", true}, {"output_format", true},
		{"details", true}, {"VM_PROCESSED_AFTER", true}, {"vm_processed_before", true},
		{"status", false}, {"idss", false}, {"", false}, {"ids ", false}, {"action\x00", false},
	}
	for _, tt := range tests {
		if got := Owned(tt.name); got != tt.want {
			t.Errorf("Owned(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCheck(t *testing.T) {
	long := strings.Repeat("x", 5000)
	tests := []struct {
		name string
		api  API
		q    string
		want string // "" accepts; else the whole error text
	}{
		{"none", Detection, "", ""},
		{"defaults overridden", Detection, "status=New,Active&show_reopened_info=0&show_igs=1", ""},
		{"host list filters", HostList, "ag_ids=1,2&use_tags=1&tag_set_include=123,456&os_pattern=%5EWin", ""},
		{"owned lower", Detection, "ids=1-5", "parameter ids is set by qfetch and cannot be given here"},
		{"owned any case", Detection, "Action=purge&IDS=1-999999999",
			"parameters Action, IDS are set by qfetch and cannot be given here"},
		{"owned on host list", HostList, "details=All", "parameter details is set by qfetch and cannot be given here"},
		{"unknown", Detection, "foo=1", "parameter foo is not a Host List Detection parameter qfetch allows"},
		{"allowlist is per API", HostList, "status=Fixed", "parameter status is not a Host List parameter qfetch allows"},
		{"allowlist is exact", Detection, "Status=Fixed", "parameter Status is not a Host List Detection parameter qfetch allows"},
		{"both kinds", Detection, "action=purge&b=1&a=2",
			"parameter action is set by qfetch and cannot be given here; parameters a, b are not Host List Detection parameters qfetch allows"},
		{"empty name", HostList, "=1", "has a parameter without a name"},
		{"odd name quoted", Detection, "a%0Ab=1", `parameter "a\nb" is not a Host List Detection parameter qfetch allows`},
		{"long name cut", Detection, long + "=1",
			`parameter "` + long[:40] + `"… (5000 bytes) is not a Host List Detection parameter qfetch allows`},
		{"many names counted", Detection, "a=1&b=1&c=1&d=1&e=1&f=1&g=1",
			"parameters a, b, c, d, e and 2 more are not Host List Detection parameters qfetch allows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := url.ParseQuery(tt.q)
			if err != nil {
				t.Fatal(err)
			}
			err = Check(tt.api, v)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("%v does not wrap ErrNotAllowed", err)
			}
		})
	}
}

// TestListsDisjoint: no allowed name is owned, in any case, and each list
// holds a name once.
func TestListsDisjoint(t *testing.T) {
	for _, api := range []API{HostList, Detection} {
		names := Allowed(api)
		if len(names) == 0 {
			t.Fatalf("%s: empty allowlist", api)
		}
		if len(slices.Compact(slices.Clone(names))) != len(names) {
			t.Errorf("%s: a name is listed twice: %v", api, names)
		}
		for _, n := range names {
			if Owned(n) || n != strings.ToLower(n) {
				t.Errorf("%s: %q is owned or not lower case", api, n)
			}
			if err := Check(api, url.Values{n: {"1"}}); err != nil {
				t.Errorf("%s: %v", api, err)
			}
		}
	}
	for _, n := range OwnedNames() {
		if err := CheckDetection(url.Values{strings.ToUpper(n): {"1"}}); err == nil {
			t.Errorf("%s accepted", strings.ToUpper(n))
		}
		if err := CheckHostList(url.Values{n: {"1"}}); err == nil {
			t.Errorf("%s accepted on the Host List", n)
		}
	}
}
