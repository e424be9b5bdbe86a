package qparams

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestCheckKB(t *testing.T) {
	tests := []struct {
		name string
		q    string
		want string // "" accepts; else the whole error text
	}{
		{"none", "", ""},
		{"a pass's parameters", "details=All&show_disabled_flag=1&show_qid_change_log=1&show_supported_modules_info=1&show_pci_reasons=1", ""},
		{"Basic", "details=Basic", ""},
		{"operator filters", "is_patchable=1&discovery_method=RemoteAndAuthenticated&discovery_auth_types=Unix,SNMP", ""},
		{"details None", "details=None", "parameter details must be one of Basic, All"},
		{"details twice", "details=All&details=Basic", "parameter details must be one of Basic, All"},
		{"details in another case", "details=all", "parameter details must be one of Basic, All"},
		{"owned", "ids=1-5&id_min=1&ID_MAX=9&Action=purge",
			"parameters Action, ID_MAX, id_min, ids are set by qfetch and cannot be given here"},
		{"window owned", "last_modified_after=2020-01-01&published_before=2021-01-01",
			"parameters last_modified_after, published_before are set by qfetch and cannot be given here"},
		{"window families owned", "LAST_MODIFIED_BY_SERVICE_AFTER=x&last_modified_by_user_before=x&Published_After=x",
			"parameters LAST_MODIFIED_BY_SERVICE_AFTER, Published_After, last_modified_by_user_before are set by qfetch and cannot be given here"},
		{"Details in another case", "Details=All", "parameter Details is not a KnowledgeBase parameter qfetch allows"},
		{"detection parameters", "status=Fixed&truncation_limit=0",
			"parameters status, truncation_limit are not KnowledgeBase parameters qfetch allows"},
		{"empty name", "=1", "has a parameter without a name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := url.ParseQuery(tt.q)
			if err != nil {
				t.Fatal(err)
			}
			err = CheckKB(v)
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

// TestOwnedPerAPI: details is the KnowledgeBase pass's, and stays qfetch's
// on the Host List and detections; the KB window is qfetch's in any case.
func TestOwnedPerAPI(t *testing.T) {
	tests := []struct {
		api  API
		name string
		want bool
	}{
		{HostList, "details", true}, {Detection, "Details", true}, {KnowledgeBase, "details", false},
		{KnowledgeBase, "IDS", true}, {KnowledgeBase, "id_min", true}, {KnowledgeBase, "Action", true},
		{KnowledgeBase, "last_modified_after", true}, {KnowledgeBase, "PUBLISHED_BEFORE", true},
		{KnowledgeBase, "last_modified_", true}, {KnowledgeBase, "last_modified", false},
		{KnowledgeBase, "truncation_limit", false}, {HostList, "last_modified_after", false},
		{KnowledgeBase, "ıds", false}, {KnowledgeBase, "", false},
	}
	for _, tt := range tests {
		if got := OwnedIn(tt.api, tt.name); got != tt.want {
			t.Errorf("OwnedIn(%s, %q) = %v, want %v", tt.api, tt.name, got, tt.want)
		}
	}
	// The Host List and detection checks are unchanged by the KB's details.
	for _, check := range []func(url.Values) error{CheckHostList, CheckDetection} {
		if err := check(url.Values{"details": {"All"}}); err == nil || !strings.Contains(err.Error(), "set by qfetch") {
			t.Errorf("details: %v", err)
		}
	}
}

// TestKBAllowlist: exactly the plan's names, none owned, each accepted.
func TestKBAllowlist(t *testing.T) {
	want := []string{"details", "discovery_auth_types", "discovery_method", "is_patchable",
		"show_disabled_flag", "show_pci_reasons", "show_qid_change_log", "show_supported_modules_info"}
	if got := Allowed(KnowledgeBase); !slices.Equal(got, want) {
		t.Fatalf("Allowed(KnowledgeBase) = %v\nwant %v", got, want)
	}
	for _, n := range want {
		if OwnedIn(KnowledgeBase, n) {
			t.Errorf("%s is owned", n)
		}
		v := url.Values{n: {"1"}}
		if n == "details" {
			v = url.Values{n: {"All"}}
		}
		if err := CheckKB(v); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	for _, n := range []string{"ids", "id_min", "id_max", "action", "last_modified_after", "last_modified_before", "published_after", "published_before"} {
		if err := CheckKB(url.Values{n: {"1"}}); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("%s accepted: %v", n, err)
		}
	}
}
