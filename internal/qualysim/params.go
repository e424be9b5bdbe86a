package qualysim

import (
	"cmp"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// IDRange is an inclusive range of host IDs; a single ID has First == Last.
type IDRange struct{ First, Last uint64 }

// ParseIDs reads an ids parameter (comma-separated IDs and a-b ranges) into
// sorted, merged ranges, so that membership of a 10,000-ID batch is a walk,
// not a set. The error text is Qualys' 1905 wording.
func ParseIDs(s string) ([]IDRange, error) {
	var rs []IDRange
	for tok := range strings.SplitSeq(s, ",") {
		tok = strings.TrimSpace(tok)
		a, b, isRange := strings.Cut(tok, "-")
		first, err1 := parsePositive(a)
		last, err2 := first, error(nil)
		if isRange {
			last, err2 = parsePositive(b)
		}
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("parameter ids has invalid value: %s (neither a positive integer nor a range: %s)", clip(s, 200), clip(tok, 60))
		}
		if first > last {
			return nil, fmt.Errorf("parameter ids has invalid value: %s (invalid range: %s)", clip(s, 200), clip(tok, 60))
		}
		rs = append(rs, IDRange{first, last})
	}
	return mergeRanges(rs), nil
}

func parsePositive(s string) (uint64, error) {
	if s == "" || s[0] == '+' {
		return 0, strconv.ErrSyntax
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err == nil && v == 0 {
		err = strconv.ErrRange
	}
	return v, err
}

func mergeRanges(rs []IDRange) []IDRange {
	slices.SortFunc(rs, func(a, b IDRange) int { return cmp.Compare(a.First, b.First) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && (r.First <= out[n-1].Last || r.First-1 == out[n-1].Last) {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// ParseDate reads a vm_processed_after/_before value: YYYY-MM-DD or
// YYYY-MM-DDTHH:MM:SSZ, UTC.
func ParseDate(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04:05Z", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a date in YYYY-MM-DD[THH:MM:SSZ] form")
}

// ParseStatuses reads a status parameter: a comma list of New, Active,
// Fixed, Re-Opened.
func ParseStatuses(s string) (StatusSet, error) {
	var set StatusSet
	for tok := range strings.SplitSeq(s, ",") {
		i := slices.Index(statusNames[:], strings.TrimSpace(tok))
		if i < 0 {
			return 0, fmt.Errorf("unknown status %q", tok)
		}
		set |= 1 << i
	}
	return set, nil
}

// String lists the statuses as the status parameter spells them.
func (s StatusSet) String() string {
	var names []string
	for i, n := range statusNames {
		if s&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, ",")
}

// param is one name=value pair as received, in order: the WARNING URL
// repeats the request's parameters in the order and encoding they came in.
type param struct{ key, val, raw string }

type params []param

// parseParams appends the pairs of an application/x-www-form-urlencoded
// string.
func parseParams(raw string, into params) (params, error) {
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return into, fmt.Errorf("malformed parameter encoding: %s", clip(pair, 60))
		}
		into = append(into, param{key: key, val: val, raw: pair})
	}
	return into, nil
}

// get returns the last value of key: Qualys keeps the last of repeated
// parameters (qualys-api.md §1.2).
func (ps params) get(key string) (string, bool) {
	for i := len(ps) - 1; i >= 0; i-- {
		if ps[i].key == key {
			return ps[i].val, true
		}
	}
	return "", false
}

// Parameters the simulator understands, per API. Every other real Qualys
// parameter is rejected as unknown (1901), because silently ignoring a
// filter the model does not implement would make the truth wrong.
var (
	commonParams = []string{"action", "ids", "id_min", "id_max", "truncation_limit",
		"vm_processed_after", "vm_processed_before", "show_tags"}
	hostListParams  = []string{"details"}
	detectionParams = []string{"status", "show_reopened_info", "show_results", "show_igs", "output_format",
		"show_qds", "show_qds_factors"}

	// Accepted and ignored: they shape output the simulator does not
	// model, or filter on attributes every simulated detection passes
	// (nothing is ignored, disabled or superseded; every kernel detection
	// affects the running kernel).
	ignoredBool = []string{"echo_request", "show_asset_id", "show_cloud_tags", "show_trurisk",
		"show_ars", "include_ignored", "include_disabled", "filter_superseded_qids",
		"suppress_duplicated_data_from_csv"}
	ignoredAny = []string{"host_metadata", "host_metadata_fields", "cloud_tag_fields", "active_kernels_only",
		"arf_kernel_filter", "arf_service_filter", "arf_config_filter"}
)

// IgnoredParams lists the real Qualys parameters the simulator accepts and
// ignores.
func IgnoredParams() []string { return slices.Concat(ignoredBool, ignoredAny) }

// request is a validated API call.
type request struct {
	ep           endpoint
	ps           params
	filter       Filter
	limit        int // hosts per page; 0 = all
	details      string
	showResults  bool
	showReopened bool
	showQDS      bool
	showFactors  bool
	kb           *KBQuery // a KnowledgeBase call's query
}

// outOpts are the call's output switches.
func (r *request) outOpts() outOpts {
	return outOpts{results: r.showResults, reopened: r.showReopened, qds: r.showQDS, factors: r.showFactors}
}

// apiError is a refusal written as a SIMPLE_RETURN.
type apiError struct {
	status int
	code   int
	text   string
}

func badValue(key, val string, why string) *apiError {
	t := "parameter " + key + " has invalid value: " + clip(val, 200)
	if why != "" {
		t += " (" + why + ")"
	}
	return &apiError{status: 400, code: 1905, text: t}
}

// parseRequest validates ps for ep. Each step returns the first refusal in
// the order Qualys checks: names, action, selection, flags, output.
func parseRequest(ep endpoint, ps params) (*request, *apiError) {
	if ep == epKB {
		return parseKBRequest(ps)
	}
	if err := checkNames(ep, ps); err != nil {
		return nil, err
	}
	req := &request{ep: ep, ps: ps, limit: 1000, details: "Basic", showResults: true, showQDS: true, showFactors: true}
	req.filter.Statuses = DefaultStatuses
	for _, parse := range []func(*request) *apiError{parseSelection, parseFlags, parseOutput} {
		if err := parse(req); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// checkNames refuses a parameter ep does not know (1901) and a missing or
// other action than list.
func checkNames(ep endpoint, ps params) *apiError {
	known := slices.Concat(commonParams, ignoredBool, ignoredAny)
	if ep == epHostList {
		known = append(known, hostListParams...)
	} else {
		known = append(known, detectionParams...)
	}
	var unknown []string
	for _, p := range ps {
		if !slices.Contains(known, p.key) && !slices.Contains(unknown, p.key) {
			unknown = append(unknown, p.key)
		}
	}
	if len(unknown) > 0 {
		return &apiError{400, 1901, "Unrecognized parameter(s): " + clip(strings.Join(unknown, ", "), 300)}
	}
	action, ok := ps.get("action")
	if !ok {
		return &apiError{400, 1903, "Missing required parameter(s): action"}
	}
	if action != "list" {
		return badValue("action", action, "")
	}
	return nil
}

// parseSelection reads which hosts the call selects: ids, the ID bounds,
// the page size and the processed-time window.
func parseSelection(req *request) *apiError {
	ps, f := req.ps, &req.filter
	if v, ok := ps.get("ids"); ok {
		rs, err := ParseIDs(v)
		if err != nil {
			return &apiError{400, 1905, err.Error()}
		}
		f.IDs = rs
	}
	// cmp.Or keeps the first refusal, in order; the parses after it only
	// write into req, which a refusal discards.
	const notDate = "expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"
	return cmp.Or(
		optional(ps, "id_min", parsePositive, "not a positive integer", &f.IDMin),
		optional(ps, "id_max", parsePositive, "not a positive integer", &f.IDMax),
		optional(ps, "truncation_limit", parseLimit, "not a non-negative integer", &req.limit),
		optional(ps, "vm_processed_after", ParseDate, notDate, &f.After),
		optional(ps, "vm_processed_before", ParseDate, notDate, &f.Before),
	)
}

// parseFlags reads the 0/1 parameters: the ignored ones are checked too,
// and a detection call's output switches are set.
func parseFlags(req *request) *apiError {
	type flag struct {
		key string
		dst *bool
	}
	var flags []flag
	for _, k := range ignoredBool {
		flags = append(flags, flag{k, new(bool)})
	}
	flags = append(flags, flag{"show_tags", &req.filter.ShowTags})
	if req.ep == epDetection {
		flags = append(flags,
			flag{"show_reopened_info", &req.showReopened},
			flag{"show_results", &req.showResults},
			flag{"show_igs", &req.filter.ShowIGs},
			flag{"show_qds", &req.showQDS},
			flag{"show_qds_factors", &req.showFactors})
	}
	for _, fl := range flags {
		if err := optional(req.ps, fl.key, parseFlag, "expected 0 or 1", fl.dst); err != nil {
			return err
		}
	}
	return nil
}

// parseOutput reads what the answer holds: details on the Host List, the
// statuses and format on detections.
func parseOutput(req *request) *apiError {
	ps := req.ps
	if req.ep == epHostList {
		if v, ok := ps.get("details"); ok {
			if v != "None" && v != "Basic" && v != "All" {
				return badValue("details", v, "the simulator serves None, Basic and All")
			}
			req.details = v
		}
		return nil
	}
	if err := optional(ps, "status", ParseStatuses, "", &req.filter.Statuses); err != nil {
		return err
	}
	if v, ok := ps.get("output_format"); ok && v != "XML" {
		return badValue("output_format", v, "the simulator serves XML only")
	}
	return nil
}

// optional sets *dst from key's value when the call has key; a value parse
// rejects is refused as invalid (1905), saying why.
func optional[T any](ps params, key string, parse func(string) (T, error), why string, dst *T) *apiError {
	v, ok := ps.get(key)
	if !ok {
		return nil
	}
	x, err := parse(v)
	if err != nil {
		return badValue(key, v, why)
	}
	*dst = x
	return nil
}

// parseLimit reads truncation_limit: 0 (no limit) or a page size.
func parseLimit(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 31)
	return int(n), err
}

// parseFlag reads a 0/1 switch.
func parseFlag(s string) (bool, error) {
	switch s {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, strconv.ErrSyntax
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Filter selects hosts (Host List) or hosts with matching detections (Host
// List Detection), exactly as the API parameters of the same names do.
type Filter struct {
	IDs          []IDRange // ids; nil: every host. Sorted and merged, as ParseIDs returns them
	IDMin, IDMax uint64    // id_min, id_max (inclusive); 0: unbounded
	// vm_processed_after (inclusive) and vm_processed_before (exclusive),
	// the half-open window qfetch plans with; zero: unbounded.
	After, Before time.Time
	Statuses      StatusSet // status; 0 means DefaultStatuses (detections only)
	ShowIGs       bool      // show_igs: count Information Gathered detections
	At            time.Time // evaluate at this simulated time; zero: the clock's now

	// Output switches of a detection call (DetectionRows); they select
	// nothing. The zero values are what the simulator does when the
	// parameter is not sent.
	ShowReopened bool // show_reopened_info=1 (qfetch sends it)
	NoResults    bool // show_results=0
	NoQDS        bool // show_qds=0
	NoQDSFactors bool // show_qds_factors=0

	// HostDetails is a Host List call's details (HostRows): "" or Basic,
	// All, None.
	HostDetails string
	// ShowTags is show_tags=1 on either API: each HOST's TAGS.
	ShowTags bool
}

func (f *Filter) outOpts() outOpts {
	return outOpts{results: !f.NoResults, reopened: f.ShowReopened, qds: !f.NoQDS, factors: !f.NoQDSFactors}
}

// selector is a Filter compiled for one scan.
type selector struct {
	ranges        []IDRange
	idMin, idMax  uint64
	after, before int64
	statuses      StatusSet
	igs           bool
	now           int64
	detections    bool // omit hosts without a matching detection (HLD)
}

func (f Filter) compile(now time.Time, detections bool) selector {
	s := selector{ranges: f.IDs, idMin: f.IDMin, idMax: f.IDMax, after: math.MinInt64, before: math.MaxInt64,
		statuses: f.Statuses, igs: f.ShowIGs, now: now.Unix(), detections: detections}
	if !f.At.IsZero() {
		s.now = f.At.Unix()
	}
	if s.idMax == 0 {
		s.idMax = math.MaxUint64
	}
	if !f.After.IsZero() {
		s.after = f.After.Unix()
	}
	if !f.Before.IsZero() {
		s.before = f.Before.Unix()
	}
	if s.statuses == 0 {
		s.statuses = DefaultStatuses
	}
	return s
}

// hostRef is one selected host.
type hostRef struct {
	i     int64
	id    uint64
	last  int64 // last processed
	epoch int64
	sch   sched
}

// requested counts the hosts q's ID bounds (ids, id_min, id_max) select,
// before the window and detection filters: what a call asks Qualys to look
// at. Binary searches only, so a 10M-host range costs no walk.
func (m *model) requested(q *selector) int64 {
	n := m.count(q.now)
	// between counts the hosts with lo ≤ ID ≤ hi, searching from index from.
	between := func(lo, hi uint64, from int64) (count, next int64) {
		i := m.lowerBound(lo, from, n)
		j := n
		if hi < math.MaxUint64 {
			j = m.lowerBound(hi+1, i, n)
		}
		return j - i, j
	}
	if q.ranges == nil {
		c, _ := between(q.idMin, q.idMax, 0)
		return c
	}
	var total, i int64
	for _, r := range q.ranges {
		lo, hi := max(r.First, q.idMin), min(r.Last, q.idMax)
		if lo > hi {
			continue
		}
		var c int64
		c, i = between(lo, hi, i)
		total += c
	}
	return total
}

// scan calls yield for every selected host in ascending ID order until it
// returns false. Candidates come from a binary search to id_min (or to each
// ids range), never from a scan starting at host 0.
func (m *model) scan(q *selector, yield func(hostRef) bool) {
	n := m.count(q.now)
	visit := func(i int64, id uint64) bool {
		sch := m.schedule(i)
		last, epoch := sch.last(q.now)
		if last < q.after || last >= q.before {
			return true
		}
		if q.detections && m.matching(i, epoch, q.statuses, q.igs, true) == 0 {
			return true
		}
		return yield(hostRef{i: i, id: id, last: last, epoch: epoch, sch: sch})
	}
	if q.ranges == nil {
		for i := m.lowerBound(q.idMin, 0, n); i < n; i++ {
			id := m.id(i)
			if id > q.idMax || !visit(i, id) {
				return
			}
		}
		return
	}
	var i int64
	for _, r := range q.ranges {
		lo, hi := max(r.First, q.idMin), min(r.Last, q.idMax)
		if lo > hi {
			continue
		}
		i = m.lowerBound(lo, i, n)
		for ; i < n; i++ {
			id := m.id(i)
			if id > hi {
				break
			}
			if !visit(i, id) {
				return
			}
		}
	}
}
