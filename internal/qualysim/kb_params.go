package qualysim

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// KnowledgeBase parameters (qualys-api.md §10.2). Every other name is
// refused (1901), as on the other APIs: a filter the model ignored would
// make the truth wrong.
var kbParams = []string{"action", "details", "ids", "id_min", "id_max",
	"last_modified_after", "last_modified_before", "published_after", "published_before",
	"is_patchable", "discovery_method", "discovery_auth_types", "echo_request",
	"show_disabled_flag", "show_qid_change_log", "show_supported_modules_info", "show_pci_reasons"}

// KBQuery is a KnowledgeBase call's selection and output switches, as the
// parameters of the same names set them; the zero value lists every QID
// with details=Basic.
type KBQuery struct {
	IDs          []IDRange // ids; nil: every QID. Sorted and merged, as ParseIDs returns them
	IDMin, IDMax uint64    // id_min, id_max (inclusive); 0: unbounded
	// last_modified_after (inclusive) and last_modified_before (exclusive)
	// on LAST_SERVICE_MODIFICATION_DATETIME, the half-open window the
	// Host List's vm_processed_* use; zero: unbounded.
	ModifiedAfter, ModifiedBefore time.Time
	// published_after (inclusive) and published_before (exclusive).
	PublishedAfter, PublishedBefore time.Time

	Patchable *bool  // is_patchable
	Discovery string // discovery_method: Remote, Authenticated, RemoteOnly, AuthenticatedOnly, RemoteAndAuthenticated
	AuthTypes []string
	Details   string // None, Basic (""), All

	ShowDisabled, ShowChangeLog, ShowModules, ShowPCIReasons bool
}

var kbDiscoveries = []string{"Remote", "Authenticated", "RemoteOnly", "AuthenticatedOnly", "RemoteAndAuthenticated"}

// parseKBRequest validates a KnowledgeBase call, refusing in the order the
// other APIs do: names, action, values.
func parseKBRequest(ps params) (*request, *apiError) {
	var unknown []string
	for _, p := range ps {
		if !slices.Contains(kbParams, p.key) && !slices.Contains(unknown, p.key) {
			unknown = append(unknown, p.key)
		}
	}
	if len(unknown) > 0 {
		return nil, &apiError{400, 1901, "Unrecognized parameter(s): " + clip(strings.Join(unknown, ", "), 300)}
	}
	action, ok := ps.get("action")
	if !ok {
		return nil, &apiError{400, 1903, "Missing required parameter(s): action"}
	}
	if action != "list" {
		return nil, badValue("action", action, "")
	}
	q := &KBQuery{}
	if v, ok := ps.get("ids"); ok {
		rs, err := ParseIDs(v)
		if err != nil {
			return nil, &apiError{400, 1905, err.Error()}
		}
		q.IDs = rs
	}
	const notDate = "expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"
	var patchable, echo bool
	err := cmp.Or(
		optional(ps, "id_min", parsePositive, "not a positive integer", &q.IDMin),
		optional(ps, "id_max", parsePositive, "not a positive integer", &q.IDMax),
		optional(ps, "last_modified_after", ParseDate, notDate, &q.ModifiedAfter),
		optional(ps, "last_modified_before", ParseDate, notDate, &q.ModifiedBefore),
		optional(ps, "published_after", ParseDate, notDate, &q.PublishedAfter),
		optional(ps, "published_before", ParseDate, notDate, &q.PublishedBefore),
		optional(ps, "is_patchable", parseFlag, "expected 0 or 1", &patchable),
		optional(ps, "echo_request", parseFlag, "expected 0 or 1", &echo),
		optional(ps, "show_disabled_flag", parseFlag, "expected 0 or 1", &q.ShowDisabled),
		optional(ps, "show_qid_change_log", parseFlag, "expected 0 or 1", &q.ShowChangeLog),
		optional(ps, "show_supported_modules_info", parseFlag, "expected 0 or 1", &q.ShowModules),
		optional(ps, "show_pci_reasons", parseFlag, "expected 0 or 1", &q.ShowPCIReasons),
	)
	if err != nil {
		return nil, err
	}
	if _, ok := ps.get("is_patchable"); ok {
		q.Patchable = &patchable
	}
	if v, ok := ps.get("discovery_method"); ok {
		if !slices.Contains(kbDiscoveries, v) {
			return nil, badValue("discovery_method", v, "expected one of "+strings.Join(kbDiscoveries, ", "))
		}
		q.Discovery = v
	}
	if v, ok := ps.get("discovery_auth_types"); ok {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t == "" {
				return nil, badValue("discovery_auth_types", v, "empty auth type")
			}
			q.AuthTypes = append(q.AuthTypes, t)
		}
	}
	if v, ok := ps.get("details"); ok {
		if v != "None" && v != "Basic" && v != "All" {
			return nil, badValue("details", v, "expected None, Basic or All")
		}
		q.Details = v
	}
	return &request{ep: epKB, ps: ps, kb: q}, nil
}

// bounds is the QID interval id_min and id_max select.
func (q *KBQuery) bounds() (lo, hi uint64) {
	lo, hi = max(q.IDMin, 1), q.IDMax
	if hi == 0 {
		hi = 1<<64 - 1
	}
	return lo, hi
}

// selects reports whether v passes q's filters other than the QID ones.
func (q *KBQuery) selects(v *kbVals) bool {
	inWindow := func(x int64, after, before time.Time) bool {
		return (after.IsZero() || x >= after.Unix()) && (before.IsZero() || x < before.Unix())
	}
	if !inWindow(v.lastMod, q.ModifiedAfter, q.ModifiedBefore) || !inWindow(v.published, q.PublishedAfter, q.PublishedBefore) {
		return false
	}
	if q.Patchable != nil && *q.Patchable != v.patchable {
		return false
	}
	if q.Discovery == "" && q.AuthTypes == nil {
		return true
	}
	remote, auths := v.remote(), v.authTypes()
	switch q.Discovery {
	case "Remote":
		if !remote {
			return false
		}
	case "Authenticated":
		if auths == nil {
			return false
		}
	case "RemoteOnly":
		if !remote || auths != nil {
			return false
		}
	case "AuthenticatedOnly":
		if remote || auths == nil {
			return false
		}
	case "RemoteAndAuthenticated":
		if !remote || auths == nil {
			return false
		}
	}
	if q.AuthTypes != nil && !slices.ContainsFunc(auths, func(a string) bool { return slices.Contains(q.AuthTypes, a) }) {
		return false
	}
	return true
}
