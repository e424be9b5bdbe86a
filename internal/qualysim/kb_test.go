package qualysim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// kbConfig is small: encoding/xml is slow, tenfold under -race.
func kbConfig() Config {
	c := testConfig()
	c.Hosts, c.KBQIDs = 100, 600
	return c
}

func TestKBParams(t *testing.T) {
	day1 := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	yes := true
	for _, tc := range []struct {
		name string
		form string
		want *KBQuery
		code int
		text string
	}{
		{"defaults", "action=list", &KBQuery{}, 0, ""},
		{"details", "action=list&details=All", &KBQuery{Details: "All"}, 0, ""},
		{"details none", "action=list&details=None", &KBQuery{Details: "None"}, 0, ""},
		{"ids list and ranges", "action=list&ids=9,5-7,1", &KBQuery{IDs: []IDRange{{1, 1}, {5, 7}, {9, 9}}}, 0, ""},
		{"bounds", "action=list&id_min=10&id_max=20", &KBQuery{IDMin: 10, IDMax: 20}, 0, ""},
		{"windows", "action=list&last_modified_after=2025-12-01&last_modified_before=2025-12-01T00:00:00Z&published_after=2025-12-01&published_before=2025-12-01",
			&KBQuery{ModifiedAfter: day1, ModifiedBefore: day1, PublishedAfter: day1, PublishedBefore: day1}, 0, ""},
		{"show flags", "action=list&show_disabled_flag=1&show_qid_change_log=1&show_supported_modules_info=1&show_pci_reasons=1",
			&KBQuery{ShowDisabled: true, ShowChangeLog: true, ShowModules: true, ShowPCIReasons: true}, 0, ""},
		{"show flags off", "action=list&show_disabled_flag=0&echo_request=1", &KBQuery{}, 0, ""},
		{"discovery", "action=list&is_patchable=1&discovery_method=RemoteOnly&discovery_auth_types=Unix,SNMP",
			&KBQuery{Patchable: &yes, Discovery: "RemoteOnly", AuthTypes: []string{"Unix", "SNMP"}}, 0, ""},
		{"recorded bad ids", "action=list&ids=abc123", nil, 1905,
			"parameter ids has invalid value: abc123 (neither a positive integer nor a range: abc123)"},
		{"unknown", "action=list&truncation_limit=10&qids=5", nil, 1901, "Unrecognized parameter(s): truncation_limit, qids"},
		{"host parameter", "action=list&vm_processed_after=2025-01-01", nil, 1901, "Unrecognized parameter(s): vm_processed_after"},
		{"no action", "details=All", nil, 1903, "Missing required parameter(s): action"},
		{"other action", "action=show", nil, 1905, "parameter action has invalid value: show"},
		{"bad details", "action=list&details=Full", nil, 1905, "parameter details has invalid value: Full (expected None, Basic or All)"},
		{"bad date", "action=list&last_modified_after=yesterday", nil, 1905,
			"parameter last_modified_after has invalid value: yesterday (expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)"},
		{"bad flag", "action=list&show_pci_reasons=yes", nil, 1905, "parameter show_pci_reasons has invalid value: yes (expected 0 or 1)"},
		{"bad id_min", "action=list&id_min=0", nil, 1905, "parameter id_min has invalid value: 0 (not a positive integer)"},
		{"bad discovery", "action=list&discovery_method=Local", nil, 1905,
			"parameter discovery_method has invalid value: Local (expected one of Remote, Authenticated, RemoteOnly, AuthenticatedOnly, RemoteAndAuthenticated)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := parseParams(tc.form, nil)
			if err != nil {
				t.Fatal(err)
			}
			req, aerr := parseRequest(epKB, ps)
			if tc.want == nil {
				if aerr == nil || aerr.code != tc.code || aerr.text != tc.text || aerr.status != 400 {
					t.Fatalf("got %+v, want 400/%d %q", aerr, tc.code, tc.text)
				}
				return
			}
			if aerr != nil {
				t.Fatalf("refused: %s", aerr.text)
			}
			if !reflect.DeepEqual(req.kb, tc.want) {
				t.Errorf("got %+v, want %+v", req.kb, tc.want)
			}
		})
	}
}

// TestKBDocumentMatchesTruth: qfetch's request over the whole KB parses
// into the DTD's structure, sorted, each QID once, every field equal to the
// truth.
func TestKBDocumentMatchesTruth(t *testing.T) {
	seeds := []uint64{1, 2}
	if RaceEnabled {
		seeds = seeds[:1] // encoding/xml is tenfold slower under -race
	}
	for _, seed := range seeds {
		cfg := kbConfig()
		cfg.Seed = seed
		f := setup(t, cfg)
		a := f.call(t, http.MethodPost, kbPath, mustQuery(t, kbAllForm))
		if a.status != 200 || a.header.Get("Content-Type") != "application/xml" {
			t.Fatalf("status %d %s", a.status, a.header.Get("Content-Type"))
		}
		checkKBFrame(t, a.body)
		d := parseKB(t, a.body)
		if d.Response.DateTime != "2026-01-01T00:00:00Z" || d.Response.Vulns == nil {
			t.Fatalf("response: %+v", d.Response.DateTime)
		}
		truth := f.sim.KBTruth(time.Time{})
		got := d.qids(t)
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatal("QIDs not ascending or repeated")
		}
		if len(got) != len(truth) {
			t.Fatalf("seed %d: %d VULNs, truth %d", seed, len(got), len(truth))
		}
		for i, x := range *d.Response.Vulns {
			if v := x.truth(t); !reflect.DeepEqual(v, truth[i]) {
				t.Fatalf("seed %d QID %d:\n got %+v\nwant %+v", seed, x.QID, v, truth[i])
			}
		}
		checkKBVariety(t, truth)

		// Basic, as KBSelect says: no text, no vectors, no show_* elements.
		a = f.call(t, http.MethodPost, kbPath, form("action", "list", "id_max", "200000"))
		d = parseKB(t, a.body)
		var basic []KBVuln
		f.sim.KBSelect(time.Time{}, &KBQuery{IDMax: 200000}, func(v KBVuln) bool { basic = append(basic, v); return true })
		if d.Response.Vulns == nil || len(*d.Response.Vulns) != len(basic) {
			t.Fatalf("seed %d Basic: VULN count differs from KBSelect (%d)", seed, len(basic))
		}
		for i, x := range *d.Response.Vulns {
			v := x.truth(t)
			if !reflect.DeepEqual(v, basic[i]) || v.Solution != "" || v.ChangeLog != nil || (v.CVSS != nil && v.CVSS.Vector != "") {
				t.Fatalf("seed %d Basic QID %d:\n got %+v\nwant %+v", seed, x.QID, v, basic[i])
			}
		}
	}
}

// checkKBFrame checks the document's frame against the recorded samples.
func checkKBFrame(t *testing.T, body []byte) {
	t.Helper()
	if !bytes.HasPrefix(body, []byte(xmlDecl+"<!DOCTYPE "+kbRoot+" SYSTEM \"http")) ||
		!bytes.Contains(body, []byte("/api/2.0/fo/knowledge_base/vuln/knowledge_base_vuln_list_output.dtd\">\n"+evalNote+"<"+kbRoot+">\n  <RESPONSE>\n    <DATETIME>")) ||
		!bytes.HasSuffix(body, []byte("</"+kbRoot+">\n"+evalNote+confidNote)) {
		t.Errorf("declaration, DOCTYPE or comments missing:\n%s", clip(string(body), 500))
	}
}

// checkKBVariety: the optional elements vary as on Qualys.
func checkKBVariety(t *testing.T, vs []KBVuln) {
	t.Helper()
	count := map[string]int{}
	for _, v := range vs {
		for k, on := range map[string]bool{
			"no cvss": v.CVSS == nil, "cvss": v.CVSS != nil, "cvss3": v.CVSS3 != nil, "no cve": len(v.CVEs) == 0,
			"cves>1": len(v.CVEs) > 1, "vendor": v.VendorRefs != nil, "bugtraq": v.Bugtraq != nil, "software": v.Software != nil,
			"threat": v.ThreatIntel != nil, "changelog": v.ChangeLog != nil, "patchable": v.Patchable, "unpatched": !v.Patchable,
			"pci": v.PCIFlag, "pci reasons": v.PCIReasons != nil, "disabled": v.Disabled, "exploits": v.Exploits != nil,
			"ig": v.VulnType == "Information Gathered", "potential": v.VulnType == "Potential Vulnerability",
			"html": strings.Contains(v.Solution, "<A HREF="), "entity": strings.Contains(v.Diagnosis, "&quot;"),
			"source": v.CVSS != nil && v.CVSS.BaseSource == "service",
		} {
			if on {
				count[k]++
			}
		}
	}
	for _, k := range []string{"no cvss", "cvss", "cvss3", "no cve", "cves>1", "vendor", "bugtraq", "software", "threat",
		"changelog", "patchable", "unpatched", "pci", "pci reasons", "disabled", "exploits", "ig", "potential", "html", "entity", "source"} {
		if count[k] == 0 {
			t.Errorf("no VULN with %s among %d", k, len(vs))
		}
	}
}

func mustQuery(t testing.TB, s string) url.Values {
	t.Helper()
	v, err := url.ParseQuery(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestKBParameterOverHTTP checks each parameter's selection against the
// truth, over GET and POST.
func TestKBParameterOverHTTP(t *testing.T) {
	f := setup(t, kbConfig())
	f.sim.Advance(20 * 24 * time.Hour)
	now := f.sim.Clock().Now()
	all := f.sim.KBQIDs(time.Time{})
	if len(all) < 550 {
		t.Fatalf("KB of %d QIDs, want about 600", len(all))
	}
	pick := all[len(all)/3]
	before := now.Add(-5 * 24 * time.Hour)
	pubCut := time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
	sel := func(q KBQuery) []int {
		var ids []int
		f.sim.KBSelect(time.Time{}, &q, func(v KBVuln) bool { ids = append(ids, v.QID); return true })
		return ids
	}
	yes, no := true, false
	for _, tc := range []struct {
		name string
		form string
		want []int
	}{
		{"everything", "action=list&details=Basic", all},
		{"ids out of order, unknown omitted", "action=list&ids=" + strconv.Itoa(all[7]) + ",3," + strconv.Itoa(all[2]) + ",699999",
			[]int{all[2], all[7]}},
		{"ids range", "action=list&ids=" + strconv.Itoa(all[10]) + "-" + strconv.Itoa(all[20]), all[10:21]},
		{"id_min id_max", "action=list&id_min=" + strconv.Itoa(pick) + "&id_max=" + strconv.Itoa(all[len(all)/3+50]),
			all[len(all)/3 : len(all)/3+51]},
		{"last_modified_after", "action=list&last_modified_after=" + before.Format(time.RFC3339), f.sim.KBChanged(before, time.Time{})},
		{"last_modified_before", "action=list&last_modified_before=" + before.Format(time.RFC3339),
			sel(KBQuery{ModifiedBefore: before})},
		{"published_after", "action=list&published_after=2015-01-01", sel(KBQuery{PublishedAfter: pubCut})},
		{"published_before", "action=list&published_before=2015-01-01", sel(KBQuery{PublishedBefore: pubCut})},
		{"is_patchable=1", "action=list&is_patchable=1", sel(KBQuery{Patchable: &yes})},
		{"is_patchable=0", "action=list&is_patchable=0", sel(KBQuery{Patchable: &no})},
		{"discovery", "action=list&discovery_method=AuthenticatedOnly&discovery_auth_types=Windows",
			sel(KBQuery{Discovery: "AuthenticatedOnly", AuthTypes: []string{"Windows"}})},
		{"no match", "action=list&ids=3", nil},
	} {
		// encoding/xml is slow: VULNs by POST, the ID_SET by GET.
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			for _, details := range []string{"Basic", "None"} {
				if (method == http.MethodGet) != (details == "None") {
					continue
				}
				form := strings.Replace(tc.form, "details=Basic", "", 1) + "&details=" + details
				a := f.call(t, method, kbPath, mustQuery(t, form))
				if a.status != 200 {
					t.Fatalf("%s %s: %d %s", tc.name, method, a.status, a.body)
				}
				// The documents' structure is checked elsewhere; a scan is
				// enough for the QIDs and far cheaper under -race.
				if got := scanKBQIDs(t, a.body); !slices.Equal(got, tc.want) {
					t.Errorf("%s %s details=%s: %d QIDs, want %d", tc.name, method, details, len(got), len(tc.want))
				}
				hasList := bytes.Contains(a.body, []byte("<VULN_LIST>")) || bytes.Contains(a.body, []byte("<ID_SET>"))
				if tc.want == nil && hasList {
					t.Errorf("%s: no match must leave RESPONSE with DATETIME only", tc.name)
				}
				if tc.want != nil && (details == "None") != bytes.Contains(a.body, []byte("<ID_SET>")) {
					t.Errorf("%s details=%s: ID_SET or VULN_LIST missing", tc.name, details)
				}
			}
		}
		if len(tc.want) == 0 && tc.name != "no match" {
			t.Errorf("%s selects nothing: a weak case", tc.name)
		}
	}

	// details and show_* switch elements on and off.
	for _, tc := range []struct {
		form      string
		has, hasn []string
	}{
		{"action=list&details=Basic", []string{"<CVSS>", "<TEMPORAL>"}, []string{"<DIAGNOSIS>", "<VECTOR_STRING>", "<IS_DISABLED>",
			"<CHANGE_LOG_LIST>", "<SUPPORTED_MODULES>", "<PCI_REASONS>", "<CORRELATION>"}},
		{"action=list&details=All", []string{"<DIAGNOSIS>", "<CONSEQUENCE>", "<SOLUTION>", "<VECTOR_STRING>", "<CORRELATION>", "<CVSS3_VERSION>"},
			[]string{"<IS_DISABLED>", "<CHANGE_LOG_LIST>"}},
		{"action=list&show_disabled_flag=1", []string{"<IS_DISABLED>1</IS_DISABLED>", "<IS_DISABLED>0</IS_DISABLED>"}, nil},
		{"action=list&show_qid_change_log=1", []string{"<CHANGE_LOG_LIST>", "<CHANGE_DATE>"}, nil},
		{"action=list&show_supported_modules_info=1", []string{"<SUPPORTED_MODULES>"}, nil},
		{"action=list&show_pci_reasons=1", []string{"<PCI_REASONS>", "<PCI_REASON>"}, nil},
		{"action=list&details=None", []string{"<ID_SET>", "<ID_RANGE>"}, []string{"<VULN"}},
	} {
		a := f.call(t, http.MethodPost, kbPath, mustQuery(t, tc.form+"&id_max=150000"))
		parseKB(t, a.body)
		for _, s := range tc.has {
			if !bytes.Contains(a.body, []byte(s)) {
				t.Errorf("%s: no %s", tc.form, s)
			}
		}
		for _, s := range tc.hasn {
			if bytes.Contains(a.body, []byte(s)) {
				t.Errorf("%s: %s present", tc.form, s)
			}
		}
	}

	// Refusals are SIMPLE_RETURN documents, the recorded 1905 without the
	// XML declaration.
	a := f.call(t, http.MethodPost, kbPath, form("action", "list", "ids", "abc123"))
	d := parseDoc(t, a.body)
	if a.status != 400 || d.code != 1905 || bytes.HasPrefix(a.body, []byte("<?xml")) ||
		d.text != "parameter ids has invalid value: abc123 (neither a positive integer nor a range: abc123)" {
		t.Errorf("bad ids: %d %s", a.status, a.body)
	}
	a = f.call(t, http.MethodPost, kbPath, form("action", "list", "truncation_limit", "5"))
	if d := parseDoc(t, a.body); a.status != 400 || d.code != 1901 {
		t.Errorf("unknown parameter: %d %s", a.status, a.body)
	}
	for _, v := range []string{"3.0", "4.0", "5.0"} {
		if a := f.call(t, http.MethodPost, "/api/"+v+"/fo/knowledge_base/vuln/", form("action", "list", "ids", "3")); a.status != 200 {
			t.Errorf("version %s: %d", v, a.status)
		}
	}
}

func TestKBKeepAlive(t *testing.T) {
	cfg := kbConfig()
	cfg.KBKeepAlive = true
	s := New(cfg)
	defer s.Close()
	body := generateKB(t, s, "action=list&id_max=20000")
	if !bytes.Contains(body, []byte("</DATETIME>\n"+kbKeepAlive+"    <VULN_LIST>")) {
		t.Errorf("no keep-alive inside RESPONSE:\n%s", clip(string(body), 600))
	}
	empty := generateKB(t, s, "action=list&ids=3")
	if !bytes.HasSuffix(empty, []byte(confidNote+kbKeepAlive)) {
		t.Errorf("no keep-alive after the root:\n%s", empty)
	}
	parseKB(t, body)
	parseKB(t, empty)
}

func TestKBDeterministic(t *testing.T) {
	gen := func(seed uint64) []byte {
		cfg := kbConfig()
		cfg.Seed = seed
		s := New(cfg)
		defer s.Close()
		s.Advance(3 * 24 * time.Hour)
		return generateKB(t, s, kbAllForm)
	}
	a, b := gen(5), gen(5)
	if !bytes.Equal(a, b) {
		t.Fatal("same seed, different bytes")
	}
	if bytes.Equal(a, gen(6)) {
		t.Fatal("different seeds, same bytes")
	}
	// The membership does not depend on the order of the calls.
	cfg := kbConfig()
	cfg.NewHostsPerDay = 20
	s1, s2 := New(cfg), New(cfg)
	defer s1.Close()
	defer s2.Close()
	late := DefaultStart.Add(10 * 24 * time.Hour)
	s1.KBQIDs(late)
	s1.KBQIDs(DefaultStart.Add(24 * time.Hour))
	s2.KBQIDs(DefaultStart.Add(24 * time.Hour))
	if !reflect.DeepEqual(s1.KBTruth(late), s2.KBTruth(late)) {
		t.Fatal("KB at a time depends on the calls before")
	}
}

// TestKBChangesWithClock: advancing the clock modifies and publishes
// QIDs; a last_modified_after listing returns exactly KBChanged.
func TestKBChangesWithClock(t *testing.T) {
	f := setup(t, kbConfig())
	t0 := f.sim.Clock().Now()
	before := f.sim.KBTruth(t0)
	byQID := map[int]KBVuln{}
	for _, v := range before {
		byQID[v.QID] = v
		if v.LastModified.After(t0) || v.Published.After(t0) {
			t.Fatalf("QID %d modified in the future", v.QID)
		}
	}
	for _, d := range []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
		at := f.sim.Advance(d)
		changed := f.sim.KBChanged(t0, time.Time{})
		if len(changed) == 0 && d >= 24*time.Hour {
			t.Fatalf("+%v: nothing changed", d)
		}
		a := f.call(t, http.MethodPost, kbPath, mustQuery(t, kbAllForm+"&last_modified_after="+t0.Format(time.RFC3339)))
		doc := parseKB(t, a.body)
		if got := doc.qids(t); !slices.Equal(got, changed) {
			t.Fatalf("+%v: listing %v, KBChanged %v", d, got, changed)
		}
		var modified, published int
		var vulns []xVuln
		if doc.Response.Vulns != nil {
			vulns = *doc.Response.Vulns
		}
		for _, x := range vulns {
			v := x.truth(t)
			if v.LastModified.Before(t0) || v.LastModified.After(at) {
				t.Errorf("QID %d last modified %v, outside [%v, %v]", v.QID, v.LastModified, t0, at)
			}
			old, ok := byQID[v.QID]
			switch {
			case !ok:
				published++
			case old.LastModified.Equal(v.LastModified) || reflect.DeepEqual(old.ChangeLog, v.ChangeLog):
				t.Errorf("QID %d: modified without a new time or content", v.QID)
			default:
				modified++
			}
		}
		if d >= 24*time.Hour && (modified == 0 || published == 0) {
			t.Errorf("+%v: %d modified, %d published", d, modified, published)
		}
		t.Logf("+%v: %d modified, %d published of %d", d, modified, published, len(before))
	}
	// Unchanged QIDs are unchanged.
	for _, v := range f.sim.KBTruth(time.Time{}) {
		if old, ok := byQID[v.QID]; ok && !v.LastModified.After(t0) && !reflect.DeepEqual(old, v) {
			t.Fatalf("QID %d changed without a modification", v.QID)
		}
	}
}

// detectedQIDs lists the QIDs of every detection at at.
func detectedQIDs(s *Sim, at time.Time) map[int]bool {
	used := map[int]bool{}
	for _, hd := range s.DetectionRows(Filter{Statuses: AllStatuses, ShowIGs: true, At: at}) {
		for _, d := range hd.Detections {
			used[d.QID] = true
		}
	}
	return used
}

// TestKBCoversDetections: every QID a detection uses at t is in the KB at
// t, with hosts added over time, and the late-visible QIDs they bring are
// what an incremental pass misses.
func TestKBCoversDetections(t *testing.T) {
	cfg := testConfig()
	cfg.NewHostsPerDay = 30
	f := setup(t, cfg)
	t0 := f.sim.Clock().Now()
	check := func(at time.Time) {
		t.Helper()
		kb := map[int]bool{}
		for _, q := range f.sim.KBQIDs(at) {
			kb[q] = true
		}
		used := detectedQIDs(f.sim, at)
		for q := range used {
			if !kb[q] {
				t.Fatalf("%v: detected QID %d not in the KB", at, q)
			}
		}
		if len(kb) <= len(used) {
			t.Errorf("%v: KB of %d QIDs has no unused ones (%d used)", at, len(kb), len(used))
		}
	}
	check(t0)
	// A full pass at t0, then an incremental one at t2 from t0 − 1h.
	full := f.sim.KBQIDs(t0)
	t2 := f.sim.Advance(3 * 24 * time.Hour)
	check(t2)
	after := t0.Add(-time.Hour)
	incr := f.sim.KBChanged(after, time.Time{})
	late := f.sim.KBLate(after, time.Time{})
	used := detectedQIDs(f.sim, t2)
	var detectedLate int
	for _, l := range late {
		if slices.Contains(full, l.QID) || slices.Contains(incr, l.QID) {
			t.Errorf("late QID %d in a listing", l.QID)
		}
		if !l.Visible.After(after) || !l.LastModified.Before(after) {
			t.Errorf("late QID %+v", l)
		}
		if from, ok := f.sim.KBVisibleFrom(l.QID, time.Time{}); !ok || !from.Equal(l.Visible) {
			t.Errorf("KBVisibleFrom(%d) = %v %v, want %v", l.QID, from, ok, l.Visible)
		}
		if l.Detected {
			detectedLate++
			if !used[l.QID] {
				t.Errorf("late QID %d marked detected, no detection uses it", l.QID)
			}
			// No detection used it before it became visible.
			if detectedQIDs(f.sim, l.Visible.Add(-time.Second))[l.QID] {
				t.Errorf("QID %d detected before it is visible", l.QID)
			}
		}
	}
	if detectedLate == 0 {
		t.Fatalf("no detected late-visible QID among %d late", len(late))
	}
	// Full ∪ incremental misses exactly the late ones among what the KB holds.
	have := map[int]bool{}
	for _, q := range slices.Concat(full, incr) {
		have[q] = true
	}
	var missed []int
	for _, q := range f.sim.KBQIDs(time.Time{}) {
		if !have[q] {
			missed = append(missed, q)
		}
	}
	var lateIDs []int
	for _, l := range late {
		lateIDs = append(lateIDs, l.QID)
	}
	if !slices.Equal(missed, lateIDs) {
		t.Errorf("missed %v, late %v", missed, lateIDs)
	}
	if _, ok := f.sim.KBVisibleFrom(full[0], time.Time{}); !ok {
		t.Error("KBVisibleFrom: a QID of the KB at Start unknown")
	}
	if _, ok := f.sim.KBVisibleFrom(3, time.Time{}); ok && !slices.Contains(full, 3) {
		t.Error("KBVisibleFrom: QID 3 known")
	}
}

// TestKBFaultsLimitsStats: KB calls suffer the same faults, limits and
// outages as the other APIs, on their own counters, and Stats count them.
func TestKBFaultsLimitsStats(t *testing.T) {
	cfg := kbConfig()
	cfg.ConcurrencyLimit, cfg.RateLimit = 1, 3
	f := setup(t, cfg)
	q := form("action", "list", "id_max", "20000")
	if err := f.sim.ForceFault(KB, Fault500, 1); err != nil {
		t.Fatal(err)
	}
	if a := f.call(t, http.MethodPost, kbPath, q); a.status != 500 {
		t.Errorf("forced 500: %d", a.status)
	}
	if a := f.call(t, http.MethodPost, kbPath, q); a.status != 200 || a.header.Get("X-RateLimit-Remaining") == "" {
		t.Errorf("after the fault: %d %v", a.status, a.header)
	}
	end := f.sim.Outage(KB, FaultMaintenance)
	if a := f.call(t, http.MethodPost, kbPath, q); a.status != 503 || parseDoc(t, a.body).code != 1999 {
		t.Errorf("outage: %d", a.status)
	}
	end()
	// The rate limit counts KB calls apart from the Host List's.
	if a := f.call(t, http.MethodPost, kbPath, q); a.status != 409 || parseDoc(t, a.body).code != 1965 {
		t.Errorf("4th KB call in the window: %d", a.status)
	}
	if a := f.call(t, http.MethodPost, hostListPath, form("action", "list")); a.status != 200 {
		t.Errorf("Host List after KB calls: %d", a.status)
	}
	st := f.sim.Stats().Endpoints[KB]
	want := int64(len(f.sim.KBQIDs(time.Time{})))
	var inRange int64
	for _, id := range f.sim.KBQIDs(time.Time{}) {
		if id <= 20000 {
			inRange++
		}
	}
	if st.Requests != 4 || st.Outcomes["ok"] != 1 || st.Outcomes["fault/500"] != 1 || st.Outcomes["409/1965"] != 1 ||
		st.VULNs != inRange || st.Bytes == 0 {
		t.Errorf("KB stats: %+v (want %d VULNs of %d)", st, inRange, want)
	}
	if hl := f.sim.Stats().Endpoints[HostList]; hl.VULNs != 0 || hl.Requests != 1 {
		t.Errorf("Host List stats: %+v", hl)
	}
	f.sim.ResetStats()
	if st := f.sim.Stats().Endpoints[KB]; st.VULNs != 0 || st.Requests != 0 {
		t.Errorf("after reset: %+v", st)
	}
}

// TestKBMidBodyFaults: a cut KB answer is not counted as served.
func TestKBMidBodyFaults(t *testing.T) {
	f := setup(t, kbConfig())
	if err := f.sim.ForceFault(KB, FaultCut, 1); err != nil {
		t.Fatal(err)
	}
	a := f.call(t, http.MethodPost, kbPath, mustQuery(t, kbAllForm))
	if a.status != 200 || bytes.HasSuffix(a.body, []byte(confidNote)) {
		t.Fatalf("cut: %d, %d bytes, complete", a.status, len(a.body))
	}
	if st := f.sim.Stats().Endpoints[KB]; st.VULNs != 0 || st.Outcomes["fault/cut"] != 1 {
		t.Errorf("stats after a cut: %+v", st)
	}
}

func TestKBTruthOverHTTP(t *testing.T) {
	f := setup(t, kbConfig())
	f.sim.Advance(48 * time.Hour)
	after := DefaultStart.Add(-24 * time.Hour)
	resp, err := f.srv.Client().Get(f.srv.URL + "/__sim/truth?kind=kb&last_modified_after=" + after.Format(time.RFC3339))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Kind  string `json:"kind"`
		QIDs  []int  `json:"qids"`
		Count int    `json:"count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := f.sim.KBChanged(after, time.Time{})
	if got.Kind != "kb" || !slices.Equal(got.QIDs, want) || got.Count != len(want) || len(want) == 0 {
		t.Errorf("truth over HTTP: %s %d QIDs, want %d", got.Kind, got.Count, len(want))
	}
}

func TestKBCVSSTemporal(t *testing.T) {
	for _, tc := range []struct {
		v3        bool
		idx       int
		epoch     int64
		patchable bool
		want      string
		vector    string
	}{
		{false, 0, 0, true, "5.5", "CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P/E:U/RL:OF/RC:C"}, // 7.5 × 0.85 × 0.87 = 5.546
		{false, 2, 5, false, "10.0", "CVSS:2.0/AV:N/AC:L/Au:N/C:C/I:C/A:C/E:H/RL:U/RC:C"},
		{true, 0, 0, true, "8.5", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C"},  // 9.8 × 0.91 × 0.95 = 8.47, rounded up
		{true, 9, 2, false, "5.2", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N/E:F/RL:U/RC:C"}, // 5.3 × 0.97 = 5.141, rounded up
	} {
		v := kbVals{epoch: tc.epoch, patchable: tc.patchable, cvss: tc.idx, cvss3: tc.idx}
		if got := string(appendTenths(nil, v.cvssTemporal(tc.v3))); got != tc.want {
			t.Errorf("%+v: temporal %s, want %s", tc, got, tc.want)
		}
		if got := string(v.appendCVSSVector(nil, tc.v3)); got != tc.vector {
			t.Errorf("%+v: vector %s", tc, got)
		}
	}
}
