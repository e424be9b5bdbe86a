// Package qparams owns the Qualys request parameters: the ones qfetch sets
// itself on every request, and the ones an operator may add to each API.
//
// One list serves the configuration check at start, the request forms and
// the check of every batch message a worker receives: a name an operator
// could not configure cannot arrive in a message either (design.md I7).
package qparams

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// owned are set by qfetch on every request (paging, batching, the run
// window, the output shape); any other value would break them, or turn a
// read into something else (action=purge).
var owned = []string{"action", "details", "id_max", "id_min", "ids", "output_format",
	"truncation_limit", "vm_processed_after", "vm_processed_before"}

// hostList are the documented Host List filters and output options
// (qualys-api.md §2.1). Each only narrows which hosts are listed or adds
// elements to them; none writes or deletes anything at Qualys.
var hostList = []string{
	// filters
	"vm_scan_since", "no_vm_scan_since", "vm_scan_date_after", "vm_scan_date_before",
	"vm_auth_scan_date_after", "vm_auth_scan_date_before", "ips", "ag_ids", "ag_titles",
	"network_ids", "os_pattern", "compliance_enabled", "use_tags", "tag_set_by",
	"tag_include_selector", "tag_exclude_selector", "tag_set_include", "tag_set_exclude",
	// output
	"show_tags", "show_asset_id", "host_metadata", "host_metadata_fields", "show_cloud_tags",
	"show_trurisk", "show_ars", "echo_request",
}

// detection are the documented Host List Detection filters and output
// options for an XML answer (qualys-api.md §3.1); the CSV-only ones are
// left out, since qfetch asks for XML.
var detection = []string{
	// output
	"show_results", "show_igs", "show_reopened_info", "show_tags", "show_asset_id", "show_qds",
	"show_qds_factors", "host_metadata", "host_metadata_fields", "show_cloud_tags",
	"cloud_tag_fields", "echo_request",
	// detection filters
	"status", "include_vuln_type", "detection_updated_since", "detection_updated_before",
	"max_days_since_detection_updated", "detection_processed_after", "detection_processed_before",
	"detection_last_tested_since", "detection_last_tested_before", "detection_last_tested_since_days",
	"detection_last_tested_before_days", "include_ignored", "include_disabled",
	"arf_kernel_filter", "arf_service_filter", "arf_config_filter", "active_kernels_only",
	"qds_min", "qds_max",
	// host filters
	"vm_scan_since", "no_vm_scan_since", "max_days_since_last_vm_scan", "vm_scan_date_after",
	"vm_scan_date_before", "vm_auth_scan_date_after", "vm_auth_scan_date_before", "ips", "ipv6",
	"ag_ids", "ag_titles", "network_ids", "os_pattern", "compliance_enabled", "use_tags",
	"tag_set_by", "tag_include_selector", "tag_exclude_selector", "tag_set_include", "tag_set_exclude",
	// QID filters
	"qids", "severities", "filter_superseded_qids", "include_search_list_titles",
	"include_search_list_ids", "exclude_search_list_titles", "exclude_search_list_ids",
}

// kb are the KnowledgeBase output options and filters (qualys-api.md
// §10.2) a pass may send: details and the show_* flags are the pass's own
// request parameters (the planner sets them), the three filters an
// operator's. Each only adds elements to a VULN or narrows which QIDs are
// listed. details is here, not owned: a pass chooses Basic or All and its
// batches carry the choice (CheckKB checks the value).
var kb = []string{
	"details", "show_disabled_flag", "show_qid_change_log", "show_supported_modules_info",
	"show_pci_reasons", "is_patchable", "discovery_method", "discovery_auth_types",
}

// ownedKB are set by qfetch on every KnowledgeBase request: which QIDs
// (ids, the id range, the pass's window) and what the call does.
// ownedKBPrefixes own whole families, so that last_modified_by_service_after
// or a published_ variant Qualys adds later cannot move a pass's window.
var (
	ownedKB         = []string{"action", "id_max", "id_min", "ids"}
	ownedKBPrefixes = []string{"last_modified_", "published_"}
)

// Owned reports whether qfetch sets the parameter name itself on Host List
// and detection requests, in any case: Qualys may read IDS as ids, so IDS
// is as much qfetch's as ids. [OwnedIn] answers for one API.
func Owned(name string) bool {
	return slices.ContainsFunc(owned, func(o string) bool { return strings.EqualFold(o, name) })
}

// OwnedIn reports whether qfetch sets the parameter name itself on api's
// requests, in any case. The KnowledgeBase owns other names than the Host
// List and detections: details is a pass's choice there.
func OwnedIn(api API, name string) bool {
	if api != KnowledgeBase {
		return Owned(name)
	}
	if slices.ContainsFunc(ownedKB, func(o string) bool { return strings.EqualFold(o, name) }) {
		return true
	}
	return slices.ContainsFunc(ownedKBPrefixes, func(p string) bool {
		return len(name) >= len(p) && strings.EqualFold(name[:len(p)], p)
	})
}

// OwnedNames lists the parameters qfetch sets itself on Host List and
// detection requests, sorted.
func OwnedNames() []string { return slices.Clone(owned) }

// API names the Qualys API a parameter set is for.
type API string

const (
	HostList  API = "Host List"
	Detection API = "Host List Detection"
)

// Allowed lists the parameter names an operator may set for api, sorted.
func Allowed(api API) []string {
	var names []string
	switch api {
	case HostList:
		names = slices.Clone(hostList)
	case Detection:
		names = slices.Clone(detection)
	case KnowledgeBase:
		names = slices.Clone(kb)
	}
	slices.Sort(names)
	return names
}

// ErrNotAllowed is wrapped by every refusal of [Check].
var ErrNotAllowed = errors.New("request parameter not allowed")

// Check refuses the parameters of v an operator may not set for api: a
// name qfetch owns (in any case), a name outside api's allowlist (matched
// exactly: Qualys' names are lower case), and an empty name; for the
// KnowledgeBase also a details other than one Basic or All (see
// [CheckKB]). The error wraps [ErrNotAllowed] and names the parameters,
// never their values; a name from outside is quoted and cut short.
func Check(api API, v url.Values) error {
	var own, other []string
	empty := false
	for k := range v {
		switch {
		case k == "":
			empty = true
		case OwnedIn(api, k):
			own = append(own, k)
		case !slices.Contains(Allowed(api), k):
			other = append(other, k)
		}
	}
	var parts []string
	if empty {
		parts = append(parts, "has a parameter without a name")
	}
	if d, ok := v["details"]; ok && api == KnowledgeBase && !(len(d) == 1 && slices.Contains(kbDetails, d[0])) {
		parts = append(parts, "parameter details must be one of "+strings.Join(kbDetails, ", "))
	}
	if len(own) > 0 {
		parts = append(parts, listed(own, "is set by qfetch and cannot be given here", "are set by qfetch and cannot be given here"))
	}
	if len(other) > 0 {
		parts = append(parts, listed(other, "is not a "+string(api)+" parameter qfetch allows",
			"are not "+string(api)+" parameters qfetch allows"))
	}
	if len(parts) == 0 {
		return nil
	}
	return &Error{Text: strings.Join(parts, "; ")}
}

// CheckDetection is [Check] for Host List Detection requests.
func CheckDetection(v url.Values) error { return Check(Detection, v) }

// CheckHostList is [Check] for Host List requests.
func CheckHostList(v url.Values) error { return Check(HostList, v) }

// Error is a refusal of [Check]; it wraps [ErrNotAllowed].
type Error struct{ Text string }

func (e *Error) Error() string { return e.Text }

func (e *Error) Unwrap() error { return ErrNotAllowed }

// maxListed bounds how many names one message lists: a forged message may
// carry thousands.
const maxListed = 5

// listed renders "parameter a verb1" or "parameters a, b verb".
func listed(names []string, one, many string) string {
	slices.Sort(names)
	shown := make([]string, 0, min(len(names), maxListed))
	for _, n := range names[:min(len(names), maxListed)] {
		shown = append(shown, show(n))
	}
	s := strings.Join(shown, ", ")
	if extra := len(names) - len(shown); extra > 0 {
		s += fmt.Sprintf(" and %d more", extra)
	}
	if len(names) == 1 {
		return "parameter " + s + " " + one
	}
	return "parameters " + s + " " + many
}

// maxShown is the longest name quoted whole; every real one is shorter.
const maxShown = 40

// show renders a name for a message: as it is when it looks like a
// parameter name, else quoted (control characters visible) and cut short.
func show(name string) string {
	plain := len(name) <= maxShown && strings.IndexFunc(name, func(r rune) bool {
		return !(r == '_' || r == '-' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) < 0
	if plain {
		return name
	}
	if len(name) > maxShown {
		return fmt.Sprintf("%q… (%d bytes)", name[:maxShown], len(name))
	}
	return fmt.Sprintf("%q", name)
}

// KnowledgeBase is the KnowledgeBase API (/fo/knowledge_base/vuln/).
const KnowledgeBase API = "KnowledgeBase"

// kbDetails are the details values a KnowledgeBase batch may ask for.
// None is not among them: its answer is an ID_SET, and a batch stored as
// that would hold no VULN while its QIDs counted as known.
var kbDetails = []string{"Basic", "All"}

// CheckKB is [Check] for KnowledgeBase requests: a pass's parameters, a KB
// batch's Params and the operator's extras.
func CheckKB(v url.Values) error { return Check(KnowledgeBase, v) }
