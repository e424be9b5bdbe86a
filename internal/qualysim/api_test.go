package qualysim

import (
	"crypto/sha256"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSameRequestSameBytes(t *testing.T) {
	f := setup(t, testConfig())
	g := setup(t, testConfig()) // another server, same seed
	q := form("action", "list", "truncation_limit", "50", "show_igs", "1", "status", "New,Active,Re-Opened,Fixed",
		"show_reopened_info", "1", "vm_processed_after", "2025-12-20")
	sum := func(a answer) [32]byte {
		if a.status != 200 || a.err != nil {
			t.Fatalf("status %d err %v", a.status, a.err)
		}
		return sha256.Sum256(a.body)
	}
	first := f.call(t, http.MethodPost, detectionPath, q)
	if len(first.body) < 20_000 {
		t.Fatalf("body of %d bytes; want a sizeable one", len(first.body))
	}
	h := sum(first)
	if got := sum(f.call(t, http.MethodPost, detectionPath, q)); got != h {
		t.Error("same POST twice, different bytes")
	}
	if got := sum(f.call(t, http.MethodGet, detectionPath, q)); got != h {
		t.Error("GET and POST of the same parameters, different bytes")
	}
	// The URLs inside differ by port only.
	other := g.call(t, http.MethodPost, detectionPath, q)
	if strings.ReplaceAll(string(other.body), g.srv.URL, f.srv.URL) != string(first.body) {
		t.Error("another simulator with the same seed serves different data")
	}
	f.sim.Advance(time.Second)
	if got := sum(f.call(t, http.MethodPost, detectionPath, q)); got == h {
		t.Error("the clock moved, yet DATETIME did not change")
	}
}

func TestWindowSelectsWhatTheTruthSays(t *testing.T) {
	f := setup(t, testConfig())
	day := 24 * time.Hour
	for _, w := range []struct{ after, before string }{
		{"2025-12-31", "2026-01-01"},
		{"2025-12-20T06:00:00Z", "2025-12-28T18:30:00Z"},
		{"2025-12-31T23:00:00Z", ""},
		{"", "2025-12-10"},
		{"", ""},
	} {
		q := form("action", "list", "details", "None", "truncation_limit", "0")
		var fl Filter
		if w.after != "" {
			q.Set("vm_processed_after", w.after)
			fl.After, _ = ParseDate(w.after)
		}
		if w.before != "" {
			q.Set("vm_processed_before", w.before)
			fl.Before, _ = ParseDate(w.before)
		}
		a := f.call(t, http.MethodPost, hostListPath, q)
		got := parseDoc(t, a.body).ids

		// An independent oracle: every host's last processing time.
		var want []uint64
		now := f.sim.Clock().Now()
		for i := range f.sim.HostCount(now) {
			id := f.sim.HostID(i)
			last, _ := f.sim.LastProcessed(id, now)
			if (fl.After.IsZero() || !last.Before(fl.After)) && (fl.Before.IsZero() || last.Before(fl.Before)) {
				want = append(want, id)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("window %v: Host List has %d IDs, the oracle %d", w, len(got), len(want))
		}
		if truth := collectIDs(f.sim.Hosts(fl)); !slices.Equal(truth, want) {
			t.Errorf("window %v: Hosts truth has %d IDs, the oracle %d", w, len(truth), len(want))
		}
		if w.after != "" && w.before != "" && (len(want) == 0 || len(want) == int(f.sim.HostCount(now))) {
			t.Errorf("window %v selects %d of %d hosts; want a proper subset", w, len(want), f.sim.HostCount(now))
		}

		// Detections over the same window: the hosts and counts the truth
		// names, each with a LAST_PROCESSED_DATETIME inside the window.
		q.Del("details")
		q.Set("status", "New,Active,Re-Opened,Fixed")
		d := parseDoc(t, f.call(t, http.MethodPost, detectionPath, q).body)
		fl.Statuses = AllStatuses
		truth := f.sim.DetectionCounts(fl)
		if !maps.Equal(d.dets, truth) {
			t.Errorf("window %v: detection counts differ from the truth (%d vs %d hosts)", w, len(d.dets), len(truth))
		}
		for id, ts := range d.processed {
			p, _ := ParseDate(ts)
			if (!fl.After.IsZero() && p.Before(fl.After)) || (!fl.Before.IsZero() && !p.Before(fl.Before)) {
				t.Errorf("host %d processed %s, outside window %v", id, ts, w)
			}
		}
	}

	// Advancing the clock a day re-processes hosts: the new day's window
	// holds hosts that were also in the previous day's.
	prevDay := collectIDs(f.sim.HostListTruth(DefaultStart.Add(-day), DefaultStart))
	f.sim.Advance(day)
	nextDay := collectIDs(f.sim.HostListTruth(DefaultStart, DefaultStart.Add(day)))
	both := 0
	for _, id := range nextDay {
		if _, ok := slices.BinarySearch(prevDay, id); ok {
			both++
		}
	}
	if len(nextDay) == 0 || both == 0 || both == len(nextDay) {
		t.Errorf("next day: %d hosts, %d of them re-processed from the day before; want some of each", len(nextDay), both)
	}
}

func TestStatusFilter(t *testing.T) {
	f := setup(t, testConfig())
	base := form("action", "list", "truncation_limit", "0")
	for _, tc := range []struct {
		status string // "" = parameter absent
		want   StatusSet
	}{
		{"", DefaultStatuses},
		{"Fixed", StatusFixed},
		{"New,Active,Re-Opened,Fixed", AllStatuses},
		{"Re-Opened", StatusReopened},
	} {
		q := maps.Clone(base)
		if tc.status != "" {
			q.Set("status", tc.status)
		}
		d := parseDoc(t, f.call(t, http.MethodPost, detectionPath, q).body)
		for st, n := range d.statuses {
			set, _ := ParseStatuses(st)
			if set&tc.want == 0 {
				t.Errorf("status=%q: %d detections with status %s", tc.status, n, st)
			}
		}
		for _, name := range strings.Split(tc.want.String(), ",") {
			if d.statuses[name] == 0 {
				t.Errorf("status=%q: no %s detection at all", tc.status, name)
			}
		}
		if truth := f.sim.DetectionCounts(Filter{Statuses: tc.want}); !maps.Equal(d.dets, truth) {
			t.Errorf("status=%q: counts differ from the truth", tc.status)
		}
		if d.types["Info"] != 0 {
			t.Errorf("status=%q: Info detections without show_igs", tc.status)
		}
	}
	d := parseDoc(t, f.call(t, http.MethodPost, detectionPath, form("action", "list", "truncation_limit", "0", "show_igs", "1")).body)
	if d.types["Info"] == 0 {
		t.Error("show_igs=1 shows no Info detection")
	}
	if !maps.Equal(d.dets, f.sim.DetectionCounts(Filter{ShowIGs: true})) {
		t.Error("show_igs=1: counts differ from the truth")
	}
}

func TestHostsWithoutMatchingDetectionsAreOmitted(t *testing.T) {
	f := setup(t, testConfig())
	all := collectIDs(f.sim.Hosts(Filter{}))
	withDets := f.sim.DetectionCounts(Filter{Statuses: AllStatuses, ShowIGs: true})
	withDefault := f.sim.DetectionCounts(Filter{})
	var none, onlyHidden []uint64 // no detection at all; only Fixed or Info ones
	for _, id := range all {
		_, any := withDets[id]
		_, visible := withDefault[id]
		switch {
		case !any:
			none = append(none, id)
		case !visible:
			onlyHidden = append(onlyHidden, id)
		}
	}
	if len(none) == 0 || len(onlyHidden) == 0 {
		t.Fatalf("dataset lacks hosts to omit: %d without detections, %d with only hidden ones", len(none), len(onlyHidden))
	}
	for name, id := range map[string]uint64{"no detections": none[0], "only Fixed/Info": onlyHidden[0], "unknown id": 123} {
		a := f.call(t, http.MethodPost, detectionPath, form("action", "list", "ids", strconv.FormatUint(id, 10)))
		d := parseDoc(t, a.body)
		if a.status != 200 || d.root != "HOST_LIST_VM_DETECTION_OUTPUT" || d.hasList || d.datetime == "" || d.warnURL != "" {
			t.Errorf("%s (%d): want a RESPONSE with only DATETIME, got status %d:\n%s", name, id, a.status, a.body)
		}
	}
	// A batch mixing them returns only the hosts with matching detections.
	ids := []string{strconv.FormatUint(none[0], 10), strconv.FormatUint(onlyHidden[0], 10)}
	var visible []uint64
	for id := range withDefault {
		visible = append(visible, id)
	}
	slices.Sort(visible)
	for _, id := range visible[:5] {
		ids = append(ids, strconv.FormatUint(id, 10))
	}
	d := parseDoc(t, f.call(t, http.MethodPost, detectionPath, form("action", "list", "ids", strings.Join(ids, ","))).body)
	if !slices.Equal(d.hosts, visible[:5]) {
		t.Errorf("mixed batch returned %v, want %v", d.hosts, visible[:5])
	}
}

func TestIDsListsAndRanges(t *testing.T) {
	f := setup(t, testConfig())
	all := collectIDs(f.sim.Hosts(Filter{}))
	// Unsorted, overlapping, ranges spanning gaps, an ID that does not exist.
	spec := strings.Join([]string{
		strconv.FormatUint(all[200], 10),
		strconv.FormatUint(all[10], 10) + "-" + strconv.FormatUint(all[40], 10),
		strconv.FormatUint(all[30], 10) + "-" + strconv.FormatUint(all[50], 10),
		strconv.FormatUint(all[299]+5, 10),
		strconv.FormatUint(all[290], 10) + "-" + strconv.FormatUint(all[299], 10), // high IDs
	}, ",")
	rs, err := ParseIDs(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 300 || all[290] < 1<<32 {
		t.Fatalf("want 300 hosts, the top ones above 2^32; got %d", len(all))
	}
	want := slices.Concat(all[10:51], all[200:201], all[290:300])
	if got := collectIDs(f.sim.Hosts(Filter{IDs: rs})); !slices.Equal(got, want) {
		t.Fatalf("Hosts(ids) = %v, want %v", got, want)
	}
	d := parseDoc(t, f.call(t, http.MethodPost, hostListPath, form("action", "list", "details", "None", "ids", spec)).body)
	if !slices.Equal(d.ids, want) {
		t.Errorf("Host List ids: got %v, want %v", d.ids, want)
	}
	fl := Filter{IDs: rs, Statuses: AllStatuses}
	d = parseDoc(t, f.call(t, http.MethodPost, detectionPath, form("action", "list", "ids", spec, "status", "New,Active,Re-Opened,Fixed")).body)
	if !maps.Equal(d.dets, f.sim.DetectionCounts(fl)) || !slices.IsSorted(d.hosts) {
		t.Errorf("HLD ids: hosts %v differ from the truth or are not ascending", d.hosts)
	}
	// id_min and id_max narrow an ids list.
	d = parseDoc(t, f.call(t, http.MethodPost, hostListPath, form("action", "list", "details", "None", "ids", spec,
		"id_min", strconv.FormatUint(all[20], 10), "id_max", strconv.FormatUint(all[200], 10))).body)
	if !slices.Equal(d.ids, slices.Concat(all[20:51], all[200:201])) {
		t.Errorf("ids with id_min/id_max: got %v", d.ids)
	}
}

func TestPagingFollowsWarningURL(t *testing.T) {
	for _, ranges := range []bool{false, true} {
		cfg := testConfig()
		cfg.IDRanges = ranges
		f := setup(t, cfg)
		all := collectIDs(f.sim.Hosts(Filter{}))

		// Host List: every ID once, in order, pages of exactly the limit.
		docs := f.pageAll(t, hostListPath, form("action", "list", "details", "None", "truncation_limit", "70"))
		var got []uint64
		for i, d := range docs {
			got = append(got, d.ids...)
			n := len(d.ids)
			last := i == len(docs)-1
			if (!last && n != 70) || (last && n > 70) {
				t.Errorf("ranges=%v page %d holds %d IDs", ranges, i+1, n)
			}
			if !last {
				if d.warnCode != 1980 || d.warnText != "70 record limit exceeded. Use URL to get next batch of results." {
					t.Errorf("page %d WARNING %d %q", i+1, d.warnCode, d.warnText)
				}
				u, _ := url.Parse(d.warnURL)
				if next := u.Query().Get("id_min"); next != strconv.FormatUint(docs[i+1].ids[0], 10) {
					t.Errorf("page %d: id_min=%s, the next page starts at %d", i+1, next, docs[i+1].ids[0])
				}
				if u.Query().Get("details") != "None" || u.Query().Get("truncation_limit") != "70" || u.Path != hostListPath {
					t.Errorf("page %d: WARNING URL lost the request: %s", i+1, d.warnURL)
				}
			}
		}
		if !slices.Equal(got, all) {
			t.Errorf("ranges=%v: paging yielded %d IDs, want all %d in order", ranges, len(got), len(all))
		}
		if ranges && docs[0].idRanges == 0 {
			t.Error("IDRanges set, yet no ID_RANGE was written")
		}
		if !ranges && docs[0].idRanges != 0 {
			t.Error("ID_RANGE written without IDRanges")
		}
	}

	// Detections: pages of hosts, all detections of a host on one page.
	f := setup(t, testConfig())
	q := form("action", "list", "truncation_limit", "23", "status", "New,Active,Re-Opened,Fixed", "show_igs", "1",
		"vm_processed_after", "2025-12-15")
	docs := f.pageAll(t, detectionPath, q)
	merged := map[uint64]int{}
	var order []uint64
	for _, d := range docs {
		order = append(order, d.hosts...)
		for id, n := range d.dets {
			if _, dup := merged[id]; dup {
				t.Errorf("host %d on two pages", id)
			}
			merged[id] = n
		}
	}
	after, _ := ParseDate("2025-12-15")
	truth := f.sim.DetectionCounts(Filter{After: after, Statuses: AllStatuses, ShowIGs: true})
	if len(docs) < 3 || !maps.Equal(merged, truth) || !slices.IsSorted(order) {
		t.Errorf("%d pages, %d hosts (truth %d), sorted %v", len(docs), len(merged), len(truth), slices.IsSorted(order))
	}
	u, _ := url.Parse(docs[0].warnURL)
	for k, v := range q {
		if u.Query().Get(k) != v[0] {
			t.Errorf("WARNING URL dropped %s=%s: %s", k, v[0], docs[0].warnURL)
		}
	}
}

func TestRefusals(t *testing.T) {
	f := setup(t, testConfig())
	noXRW := func(r *http.Request) { r.Header.Del("X-Requested-With") }
	badPass := func(r *http.Request) { r.SetBasicAuth(f.sim.Username(), "wrong") }
	noAuth := func(r *http.Request) { r.Header.Del("Authorization") }
	for _, tc := range []struct {
		name   string
		path   string
		q      url.Values
		edit   func(*http.Request)
		status int
		code   int
		text   string
	}{
		{"no credentials", detectionPath, form("action", "list"), noAuth, 401, 2000, "Bad Login/Password"},
		{"wrong password", hostListPath, form("action", "list"), badPass, 401, 2000, "Bad Login/Password"},
		{"no X-Requested-With", detectionPath, form("action", "list"), noXRW, 400, 1903, ""},
		{"unknown parameter", detectionPath, form("action", "list", "bogus", "1"), nil, 400, 1901, "Unrecognized parameter(s): bogus"},
		{"unmodelled filter", detectionPath, form("action", "list", "qids", "6"), nil, 400, 1901, ""},
		{"no action", hostListPath, form("details", "None"), nil, 400, 1903, "Missing required parameter(s): action"},
		{"bad action", hostListPath, form("action", "get"), nil, 400, 1905, ""},
		{"bad ids", detectionPath, form("action", "list", "ids", "abc123"), nil, 400, 1905,
			"parameter ids has invalid value: abc123 (neither a positive integer nor a range: abc123)"},
		{"id_min zero", hostListPath, form("action", "list", "id_min", "0"), nil, 400, 1905, ""},
		{"negative truncation", detectionPath, form("action", "list", "truncation_limit", "-1"), nil, 400, 1905, ""},
		{"bad date", detectionPath, form("action", "list", "vm_processed_after", "yesterday"), nil, 400, 1905, ""},
		{"bad status", detectionPath, form("action", "list", "status", "Closed"), nil, 400, 1905, ""},
		{"bad bool", detectionPath, form("action", "list", "show_igs", "yes"), nil, 400, 1905, ""},
		{"details All/AGs", hostListPath, form("action", "list", "details", "All/AGs"), nil, 400, 1905,
			"parameter details has invalid value: All/AGs (the simulator serves None, Basic and All)"},
		{"CSV", detectionPath, form("action", "list", "output_format", "CSV"), nil, 400, 1905, ""},
		{"status on Host List", hostListPath, form("action", "list", "status", "Fixed"), nil, 400, 1901, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var edits []func(*http.Request)
			if tc.edit != nil {
				edits = append(edits, tc.edit)
			}
			a := f.call(t, http.MethodPost, tc.path, tc.q, edits...)
			d := parseDoc(t, a.body)
			if a.status != tc.status || d.root != "SIMPLE_RETURN" || d.code != tc.code || (tc.text != "" && d.text != tc.text) {
				t.Errorf("got %d %s %d %q, want %d SIMPLE_RETURN %d %q", a.status, d.root, d.code, d.text, tc.status, tc.code, tc.text)
			}
			if tc.status == 400 && a.header.Get("X-RateLimit-Limit") == "" && f.sim.cfg.RateLimit > 0 {
				t.Error("400 answer without limit headers")
			}
			if tc.status == 401 && a.header.Get("X-Concurrency-Limit-Limit") != "" {
				t.Error("401 answer with limit headers")
			}
		})
	}
	// Accepted-and-ignored parameters change nothing.
	plain := f.call(t, http.MethodPost, detectionPath, form("action", "list", "truncation_limit", "20"))
	q := form("action", "list", "truncation_limit", "20", "show_tags", "1", "show_asset_id", "1",
		"active_kernels_only", "1", "include_ignored", "1", "arf_kernel_filter", "1", "output_format", "XML")
	noisy := f.call(t, http.MethodPost, detectionPath, q)
	pd, nd := parseDoc(t, plain.body), parseDoc(t, noisy.body)
	if noisy.status != 200 || !maps.Equal(pd.dets, nd.dets) {
		t.Errorf("ignored parameters changed the answer: status %d", noisy.status)
	}
	// Other versions and paths.
	for _, v := range []string{"3.0", "4.0", "5.0"} {
		a := f.call(t, http.MethodGet, "/api/"+v+"/fo/asset/host/vm/detection/", form("action", "list", "truncation_limit", "1"))
		if a.status != 200 || parseDoc(t, a.body).root != "HOST_LIST_VM_DETECTION_OUTPUT" {
			t.Errorf("version %s: status %d", v, a.status)
		}
	}
	if a := f.call(t, http.MethodGet, "/api/2.0/fo/asset/host", form("action", "list")); a.status != 404 {
		t.Errorf("path without the trailing slash: status %d, want 404", a.status)
	}
	if a := f.call(t, http.MethodPut, detectionPath, form("action", "list")); a.status != 405 {
		t.Errorf("PUT: status %d, want 405", a.status)
	}
	a := f.call(t, http.MethodGet, "/msp/about.php", nil, noXRW)
	if d := parseDoc(t, a.body); a.status != 200 || d.root != "ABOUT" {
		t.Errorf("about.php: %d %s", a.status, d.root)
	}
	if a := f.call(t, http.MethodGet, "/msp/about.php", nil, badPass); a.status != 401 {
		t.Errorf("about.php with a wrong password: %d", a.status)
	}
}

func TestHeadersAndBasicDetails(t *testing.T) {
	cfg := testConfig()
	cfg.ConcurrencyLimit, cfg.RateLimit = 0, 0 // the defaults: 2 and 300/h
	f := setup(t, cfg)
	a := f.call(t, http.MethodGet, hostListPath, form("action", "list", "truncation_limit", "3"))
	want := map[string]string{
		"Content-Type": "application/xml", "X-RateLimit-Limit": "300", "X-RateLimit-Window-Sec": "3600",
		"X-RateLimit-Remaining": "299", "X-RateLimit-ToWait-Sec": "0",
		"X-Concurrency-Limit-Limit": "2", "X-Concurrency-Limit-Running": "1",
	}
	for k, v := range want {
		if got := a.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	d := parseDoc(t, a.body)
	if len(d.hosts) != 3 || d.root != "HOST_LIST_OUTPUT" {
		t.Errorf("details=Basic (the default): %d HOSTs, root %s", len(d.hosts), d.root)
	}
	// Chunked, as Qualys streams: no Content-Length.
	resp, err := f.srv.Client().Do(func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, f.srv.URL+hostListPath+"?action=list&details=None", nil)
		r.SetBasicAuth(f.sim.Username(), f.sim.Password())
		r.Header.Set("X-Requested-With", "t")
		return r
	}())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("transfer encoding %v, want chunked", resp.TransferEncoding)
	}
}
