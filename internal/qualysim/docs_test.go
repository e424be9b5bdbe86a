package qualysim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestEveryDocumentParses stream-decodes one of each document the
// simulator writes, over several seeds and RESULTS sizes, and checks the
// root and the quirks that must be there.
func TestEveryDocumentParses(t *testing.T) {
	for _, cfg := range []Config{
		{Seed: 1, Hosts: 60, ResultsSize: 2000, MeanDetections: 3},
		{Seed: 2, Hosts: 120, IDRanges: true, ResultsSize: Off},
		{Seed: 3, Hosts: 30, MeanDetections: 15, ResultsSize: 100, ZeroDetectionFraction: Off},
	} {
		cfg.RateLimit, cfg.ConcurrencyLimit = 2, 1 // low, to provoke both refusals
		f := setup(t, cfg)
		all := "New,Active,Re-Opened,Fixed"
		type want struct {
			root   string
			status int
		}
		cases := []struct {
			name  string
			path  string
			q     url.Values
			force FaultKind
			edit  func(*http.Request)
			want  want
		}{
			{"rate refusal", hostListPath, form("action", "list"), "", nil, want{"SIMPLE_RETURN", 409}},
			{"hld default", detectionPath, form("action", "list"), "", nil, want{"HOST_LIST_VM_DETECTION_OUTPUT", 200}},
			{"hld everything", detectionPath, form("action", "list", "status", all, "show_igs", "1", "show_reopened_info", "1",
				"truncation_limit", "0"), "", nil, want{"HOST_LIST_VM_DETECTION_OUTPUT", 200}},
			{"hld lean", detectionPath, form("action", "list", "status", all, "show_results", "0", "show_qds", "0",
				"truncation_limit", "5"), "", nil, want{"HOST_LIST_VM_DETECTION_OUTPUT", 200}},
			{"hld empty", detectionPath, form("action", "list", "ids", "1-5"), "", nil, want{"HOST_LIST_VM_DETECTION_OUTPUT", 200}},
			{"host list ids", hostListPath, form("action", "list", "details", "None", "truncation_limit", "10"), "", nil, want{"HOST_LIST_OUTPUT", 200}},
			{"host list basic", hostListPath, form("action", "list", "truncation_limit", "0"), "", nil, want{"HOST_LIST_OUTPUT", 200}},
			{"host list empty", hostListPath, form("action", "list", "vm_processed_after", "2030-01-01"), "", nil, want{"HOST_LIST_OUTPUT", 200}},
			{"bad value", detectionPath, form("action", "list", "ids", "x<&y"), "", nil, want{"SIMPLE_RETURN", 400}},
			{"unknown", detectionPath, form("action", "list", "a<b", "1"), "", nil, want{"SIMPLE_RETURN", 400}},
			{"error doc", detectionPath, form("action", "list"), FaultErrorDoc, nil, want{"SIMPLE_RETURN", 200}},
			{"999", detectionPath, form("action", "list"), Fault999, nil, want{"GENERIC_RETURN", 500}},
			{"bad login", detectionPath, form("action", "list"), "", func(r *http.Request) { r.SetBasicAuth("x", "y") }, want{"SIMPLE_RETURN", 401}},
			{"about", "/msp/about.php", nil, "", nil, want{"ABOUT", 200}},
			{"kb all", kbPath, form("action", "list", "details", "All", "show_qid_change_log", "1", "show_pci_reasons", "1",
				"show_disabled_flag", "1", "show_supported_modules_info", "1", "id_max", "30000"), "", nil, want{kbRoot, 200}},
			{"kb basic", kbPath, form("action", "list", "last_modified_after", "2025-12-20"), "", nil, want{kbRoot, 200}},
			{"kb ids", kbPath, form("action", "list", "details", "None"), "", nil, want{kbRoot, 200}},
			{"kb empty", kbPath, form("action", "list", "ids", "1-5"), "", nil, want{kbRoot, 200}},
			{"kb bad ids", kbPath, form("action", "list", "ids", "abc123"), "", nil, want{"SIMPLE_RETURN", 400}},
		}
		for _, tc := range cases {
			if tc.name == "rate refusal" {
				for range 2 {
					f.call(t, http.MethodPost, hostListPath, form("action", "list", "truncation_limit", "1"))
				}
			}
			if tc.force != "" {
				_ = f.sim.ForceFault(Detection, tc.force, 1)
			}
			var edits []func(*http.Request)
			if tc.edit != nil {
				edits = append(edits, tc.edit)
			}
			a := f.call(t, http.MethodPost, tc.path, tc.q, edits...)
			d := parseDoc(t, a.body)
			if d.root != tc.want.root || a.status != tc.want.status {
				t.Errorf("seed %d %s: %d %s, want %d %s", cfg.Seed, tc.name, a.status, d.root, tc.want.status, tc.want.root)
			}
			if tc.want.status == 200 && tc.want.root != "SIMPLE_RETURN" && tc.want.root != "ABOUT" {
				if !bytes.HasPrefix(a.body, []byte(xmlDecl+"<!DOCTYPE "+d.root+" SYSTEM \"http")) ||
					!bytes.Contains(a.body, []byte("//--> \n<"+d.root+">")) ||
					!bytes.HasSuffix(a.body, []byte(confidNote)) {
					t.Errorf("seed %d %s: declaration, DOCTYPE or comments missing", cfg.Seed, tc.name)
				}
			}
			if strings.HasPrefix(tc.name, "hld everything") {
				for _, quirk := range []string{"<![CDATA[", "<QDS severity=\"", "<RESULTS\n", "<OS>\n", "TIMES_REOPENED"} {
					if cfg.ResultsSize != Off && !bytes.Contains(a.body, []byte(quirk)) {
						t.Errorf("seed %d: no %q in a full detection answer", cfg.Seed, quirk)
					}
				}
				if cfg.ResultsSize > 0 && (!bytes.Contains(a.body, []byte("\t")) || !bytes.Contains(a.body, []byte("&lt;"))) {
					t.Errorf("seed %d: RESULTS without tabs or &lt;", cfg.Seed)
				}
			}
			f.sim.Advance(time.Hour) // a fresh rate window for the next case
		}
	}
}

// TestMillionHostPaging pages the Host List of a million hosts, 100,000 per
// page, and checks every ID arrives once, in order, while nothing holds
// them: the client scans IDs off the wire and keeps only the last.
func TestMillionHostPaging(t *testing.T) {
	hosts := int64(1_000_000)
	if testing.Short() || RaceEnabled {
		hosts = 100_000
	}
	f := setup(t, Config{Seed: 5, Hosts: hosts, ConcurrencyLimit: Off, RateLimit: Off})
	next := f.srv.URL + hostListPath + "?action=list&details=None&truncation_limit=100000"
	var count int64
	var last uint64
	pages := 0
	for next != "" {
		pages++
		req, _ := http.NewRequest(http.MethodGet, next, nil)
		req.SetBasicAuth(f.sim.Username(), f.sim.Password())
		req.Header.Set("X-Requested-With", "t")
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		next = ""
		sc := newIDScanner(resp.Body)
		for sc.next() {
			switch sc.kind {
			case "ID":
				id, err := strconv.ParseUint(sc.text, 10, 64)
				if err != nil || id <= last {
					t.Fatalf("page %d: ID %q after %d", pages, sc.text, last)
				}
				last = id
				count++
			case "URL":
				next = strings.TrimSuffix(strings.TrimPrefix(sc.text, "<![CDATA["), "]]>")
			}
		}
		resp.Body.Close()
		if sc.err != nil {
			t.Fatal(sc.err)
		}
	}
	if count != hosts || pages != int(hosts/100_000) || last != f.sim.HostID(hosts-1) {
		t.Fatalf("%d IDs in %d pages, last %d; want %d, %d, %d", count, pages, last, hosts, hosts/100000, f.sim.HostID(hosts-1))
	}
}

// idScanner finds <ID>…</ID> and <URL>…</URL> in a stream without
// building the document, as a streaming client would.
type idScanner struct {
	r          io.Reader
	buf        []byte
	start, end int
	kind, text string
	err        error
}

func newIDScanner(r io.Reader) *idScanner { return &idScanner{r: r, buf: make([]byte, 64<<10)} }

func (s *idScanner) next() bool {
	for {
		window := s.buf[s.start:s.end]
		for _, tag := range []string{"ID", "URL"} {
			open, closeTag := "<"+tag+">", "</"+tag+">"
			if i := bytes.Index(window, []byte(open)); i >= 0 {
				if j := bytes.Index(window[i:], []byte(closeTag)); j >= 0 {
					s.kind, s.text = tag, string(window[i+len(open):i+j])
					s.start += i + j + len(closeTag)
					return true
				}
			}
		}
		// Keep the unfinished tail, read more.
		s.end = copy(s.buf, window)
		s.start = 0
		if s.end == len(s.buf) {
			s.buf = append(s.buf, make([]byte, len(s.buf))...)
		}
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err != nil && n == 0 {
			if err != io.EOF {
				s.err = err
			}
			return false
		}
	}
}

func TestControlPlane(t *testing.T) {
	f := setup(t, testConfig())
	getJSON := func(method, path string, body io.Reader, v any) int {
		t.Helper()
		req, _ := http.NewRequest(method, f.srv.URL+path, body)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil && resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
		}
		return resp.StatusCode
	}

	// Truth over HTTP equals the Go truth.
	var hl struct {
		IDs   []uint64 `json:"ids"`
		Hosts int      `json:"hosts"`
	}
	getJSON("GET", "/__sim/truth?kind=hostlist&vm_processed_after=2025-12-30", nil, &hl)
	after, _ := ParseDate("2025-12-30")
	if want := collectIDs(f.sim.HostListTruth(after, time.Time{})); !slices.Equal(hl.IDs, want) || hl.Hosts != len(want) {
		t.Errorf("hostlist truth over HTTP: %d IDs, want %d", len(hl.IDs), len(want))
	}
	var dt struct {
		Counts     [][2]uint64 `json:"counts"`
		Hosts      int         `json:"hosts"`
		Detections int         `json:"detections"`
	}
	getJSON("GET", "/__sim/truth?kind=detection&status=New,Active,Re-Opened,Fixed&show_igs=1", nil, &dt)
	want := f.sim.DetectionCounts(Filter{Statuses: AllStatuses, ShowIGs: true})
	sum := 0
	for _, c := range dt.Counts {
		if want[c[0]] != int(c[1]) {
			t.Errorf("host %d: %d detections over HTTP, %d in Go", c[0], c[1], want[c[0]])
		}
		sum += int(c[1])
	}
	if len(dt.Counts) != len(want) || dt.Hosts != len(want) || dt.Detections != sum {
		t.Errorf("detection truth over HTTP: %d hosts, want %d", dt.Hosts, len(want))
	}
	var cnt struct {
		IDs   []uint64 `json:"ids"`
		Hosts int      `json:"hosts"`
	}
	getJSON("GET", "/__sim/truth?count_only=1", nil, &cnt)
	if cnt.IDs != nil || cnt.Hosts != 300 {
		t.Errorf("count_only: %+v", cnt)
	}
	if code := getJSON("GET", "/__sim/truth?kind=detection&ids=abc", nil, nil); code != 400 {
		t.Errorf("bad truth query: %d", code)
	}

	// Clock.
	var clk struct {
		Now time.Time `json:"now"`
	}
	getJSON("POST", "/__sim/clock?advance=36h", nil, &clk)
	if !clk.Now.Equal(DefaultStart.Add(36*time.Hour)) || !f.sim.Clock().Now().Equal(clk.Now) {
		t.Errorf("clock after advance: %v", clk.Now)
	}
	getJSON("POST", "/__sim/clock?set=2026-03-01T00:00:00Z", nil, &clk)
	if clk.Now.Format(time.RFC3339) != "2026-03-01T00:00:00Z" {
		t.Errorf("clock after set: %v", clk.Now)
	}

	// Faults: set, force, account switches.
	body := `{"prob":{"500":0.25},"stall_for":"2s","html_503":true}`
	var fl Faults
	if code := getJSON("PUT", "/__sim/faults", strings.NewReader(body), &fl); code != 200 ||
		fl.Prob[Fault500] != 0.25 || fl.StallFor != 2*time.Second || !fl.HTML503 || fl.ErrorDocCode != 1981 {
		t.Errorf("PUT faults: %d %+v", code, fl)
	}
	if code := getJSON("PUT", "/__sim/faults", strings.NewReader(`{"prob":{"500":2}}`), nil); code != 400 {
		t.Errorf("PUT bad faults: %d", code)
	}
	if code := getJSON("POST", "/__sim/faults/force?endpoint=hostlist&kind=503&n=1", nil, nil); code != 200 {
		t.Errorf("force: %d", code)
	}
	if a := f.call(t, http.MethodPost, hostListPath, form("action", "list")); a.status != 503 {
		t.Errorf("forced over HTTP: %d", a.status)
	}
	if code := getJSON("POST", "/__sim/faults/force?endpoint=about&kind=503", nil, nil); code != 400 {
		t.Errorf("force on about.php: %d", code)
	}
	getJSON("POST", "/__sim/account?expired=1", nil, nil)
	if a := f.call(t, http.MethodPost, detectionPath, form("action", "list")); parseDoc(t, a.body).code != 2001 {
		t.Error("account expired over HTTP did not take")
	}
	getJSON("POST", "/__sim/account?expired=0", nil, nil)

	// Stats and reset.
	var st Stats
	getJSON("GET", "/__sim/stats", nil, &st)
	if st.Endpoints[HostList].Outcomes["fault/503"] != 1 || st.Endpoints[Detection].Outcomes["200/2001"] != 1 {
		t.Errorf("stats: %+v", st.Endpoints)
	}
	getJSON("POST", "/__sim/stats/reset", nil, &st)
	if st.Endpoints[HostList].Requests != 0 || st.Endpoints[HostList].Bytes != 0 {
		t.Errorf("stats after reset: %+v", st.Endpoints[HostList])
	}
	var cfg map[string]any
	getJSON("GET", "/__sim/config", nil, &cfg)
	if cfg["hosts"] != float64(300) || cfg["password"] != nil {
		t.Errorf("config: %v", cfg)
	}
}
