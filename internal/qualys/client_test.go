package qualys

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
)

const (
	testUser     = "qfetch_user"
	testPassword = "s3cr3t-Pa55word"
)

// fakeQualys records requests and answers them with the test's handler,
// after the checks every Qualys call must pass.
type fakeQualys struct {
	t        *testing.T
	mu       sync.Mutex
	requests []url.Values
	handle   func(w http.ResponseWriter, r *http.Request, form url.Values)
}

func (f *fakeQualys) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		f.t.Errorf("method %s, want POST", r.Method)
	}
	if u, p, ok := r.BasicAuth(); !ok || u != testUser || p != testPassword {
		f.t.Errorf("basic auth missing or wrong")
	}
	if r.Header.Get("X-Requested-With") == "" {
		f.t.Errorf("X-Requested-With missing")
	}
	if err := r.ParseForm(); err != nil {
		f.t.Errorf("form: %v", err)
	}
	if len(r.URL.Query()) != 0 {
		f.t.Errorf("parameters in the URL: %v", r.URL.RawQuery)
	}
	f.mu.Lock()
	f.requests = append(f.requests, r.PostForm)
	f.mu.Unlock()
	f.handle(w, r, r.PostForm)
}

func (f *fakeQualys) forms() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func newFake(t *testing.T, idle time.Duration, handle func(w http.ResponseWriter, r *http.Request, form url.Values)) (*Client, *fakeQualys) {
	t.Helper()
	f := &fakeQualys{t: t, handle: handle}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL, Username: testUser, Password: testPassword, IdleTimeout: idle})
	if err != nil {
		t.Fatal(err)
	}
	return c, f
}

// hostListPage renders a details=None page holding ids, truncated with a
// WARNING pointing at next when next > 0.
func hostListPage(ids []uint64, next uint64, extraParams string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE HOST_LIST_OUTPUT SYSTEM "https://qualysapi.example/api/2.0/fo/asset/host/host_list_output.dtd">
<HOST_LIST_OUTPUT>
  <RESPONSE>
    <DATETIME>2026-11-24T10:00:00Z</DATETIME>
`)
	if len(ids) > 0 {
		b.WriteString("    <ID_SET>\n")
		for _, id := range ids {
			fmt.Fprintf(&b, "      <ID>%d</ID>\n", id)
		}
		b.WriteString("    </ID_SET>\n")
	}
	if next > 0 {
		fmt.Fprintf(&b, `    <WARNING>
      <CODE>1980</CODE>
      <TEXT>%d record limit exceeded. Use URL to get next batch of results.</TEXT>
      <URL><![CDATA[
https://elsewhere.example/api/2.0/fo/asset/host/?action=list&details=None%s&id_min=%d
]]></URL>
    </WARNING>
`, len(ids), extraParams, next)
	}
	b.WriteString("  </RESPONSE>\n</HOST_LIST_OUTPUT>\n<!-- CONFIDENTIAL AND PROPRIETARY INFORMATION. //-->\n")
	return b.String()
}

// pageWriter is a PageWriter that keeps committed pages in memory.
type pageWriter struct {
	store *pageStore
	page  int
	buf   bytes.Buffer
}

type pageStore struct {
	mu      sync.Mutex
	pages   map[int]string
	hosts   map[int]int
	aborted int
}

func (s *pageStore) open(_ context.Context, page int) (PageWriter, error) {
	return &pageWriter{store: s, page: page}, nil
}

func (w *pageWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }
func (w *pageWriter) Close(hosts int) error {
	w.store.mu.Lock()
	defer w.store.mu.Unlock()
	if w.store.pages == nil {
		w.store.pages, w.store.hosts = map[int]string{}, map[int]int{}
	}
	w.store.pages[w.page] = w.buf.String()
	w.store.hosts[w.page] = hosts
	return nil
}
func (w *pageWriter) Abort(error) {
	w.store.mu.Lock()
	w.store.aborted++
	w.store.mu.Unlock()
}

func TestHostPagerThreePages(t *testing.T) {
	all := []uint64{101, 102, 103, 250, 251, 9000, 1 << 32, 1<<32 + 7}
	pages := [][]uint64{all[:3], all[3:6], all[6:]}
	c, f := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
		switch form.Get("id_min") {
		case "":
			io.WriteString(w, hostListPage(pages[0], pages[1][0], "&truncation_limit=3&ag_ids=42"))
		case strconv.FormatUint(pages[1][0], 10):
			io.WriteString(w, hostListPage(pages[1], pages[2][0], "&truncation_limit=3&ag_ids=42&added_by_qualys=1"))
		case strconv.FormatUint(pages[2][0], 10):
			io.WriteString(w, hostListPage(pages[2], 0, ""))
		default:
			t.Errorf("unexpected id_min %q", form.Get("id_min"))
			w.WriteHeader(500)
		}
	})
	store := &pageStore{}
	after := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	before := time.Date(2026, 11, 24, 6, 30, 0, 0, time.UTC)
	p := c.HostPager(HostListQuery{ProcessedAfter: after, ProcessedBefore: before, PageSize: 3, Details: DetailsNone,
		Extra: url.Values{"ag_ids": {"42"}, "truncation_limit": {"99"}}}, store.open)

	var got []uint64
	for id, err := range p.All(context.Background()) {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		got = append(got, id)
	}
	if !slices.Equal(got, all) {
		t.Fatalf("ids = %v, want %v", got, all)
	}
	if !p.Done() || p.Cursor().Page != 3 || p.Cursor().Last != all[len(all)-1] {
		t.Fatalf("cursor = %+v, done %v", p.Cursor(), p.Done())
	}
	// Each stored page is closed with the number of hosts it holds.
	if !maps.Equal(store.hosts, map[int]int{1: 3, 2: 3, 3: 2}) {
		t.Fatalf("hosts per stored page %v, want 3, 3, 2", store.hosts)
	}

	forms := f.forms()
	if len(forms) != 3 {
		t.Fatalf("%d requests, want 3", len(forms))
	}
	first := forms[0]
	for k, want := range map[string]string{
		"action": "list", "details": "None", "truncation_limit": "3", "ag_ids": "42",
		"vm_processed_after": "2026-11-01T00:00:00Z", "vm_processed_before": "2026-11-24T06:30:00Z",
	} {
		if got := first.Get(k); got != want {
			t.Errorf("first request %s = %q, want %q", k, got, want)
		}
	}
	// Only the URL's id_min is taken (#17.4): its extra parameter never
	// arrives, and each later request is the first one plus id_min.
	for n, f := range forms[1:] {
		want := maps.Clone(first)
		want.Set("id_min", strconv.FormatUint(pages[n+1][0], 10))
		if f.Encode() != want.Encode() {
			t.Errorf("request %d = %s, want %s", n+2, f.Encode(), want.Encode())
		}
	}

	if len(store.pages) != 3 || store.aborted != 0 {
		t.Fatalf("pages stored %d, aborted %d", len(store.pages), store.aborted)
	}
	for n, ids := range pages {
		if store.pages[n+1] != hostListPage(ids, pageNext(pages, n), pageExtra(n)) {
			t.Errorf("page %d stored bytes differ from what was served", n+1)
		}
	}
}

func pageNext(pages [][]uint64, n int) uint64 {
	if n+1 < len(pages) {
		return pages[n+1][0]
	}
	return 0
}

func pageExtra(n int) string {
	return [...]string{"&truncation_limit=3&ag_ids=42", "&truncation_limit=3&ag_ids=42&added_by_qualys=1", ""}[n]
}

func TestHostPagerIDRange(t *testing.T) {
	c, _ := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
		io.WriteString(w, `<HOST_LIST_OUTPUT><RESPONSE><DATETIME>2026-11-24T10:00:00Z</DATETIME>
<ID_SET><ID>5</ID><ID_RANGE>7-10</ID_RANGE><ID> 12 </ID><ID_RANGE>4294967296-4294967297</ID_RANGE></ID_SET>
</RESPONSE></HOST_LIST_OUTPUT>`)
	})
	var got []uint64
	for id, err := range c.HostPager(HostListQuery{}, nil).All(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	want := []uint64{5, 7, 8, 9, 10, 12, 4294967296, 4294967297}
	if !slices.Equal(got, want) {
		t.Fatalf("ids = %v, want %v", got, want)
	}
}

// TestHostPagerRetryAfterCut: a page cut short after some IDs is retried
// from its start; the tee gets the whole page and no ID comes twice.
func TestHostPagerRetryAfterCut(t *testing.T) {
	full := hostListPage([]uint64{1, 2, 3, 4, 5, 6}, 0, "")
	calls := 0
	c, _ := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
		calls++
		if calls == 1 {
			cut := strings.Index(full, "<ID>5</ID>")
			io.WriteString(w, full[:cut])
			return
		}
		io.WriteString(w, full)
	})
	store := &pageStore{}
	var got []uint64
	var errs []error
	for id, err := range c.HostPager(HostListQuery{}, store.open).All(context.Background()) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, id)
	}
	if !slices.Equal(got, []uint64{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("ids = %v", got)
	}
	if len(errs) != 1 || failure.ClassOf(errs[0]) != failure.ClassRetryable {
		t.Fatalf("errors = %v, want one retryable", errs)
	}
	if store.aborted != 1 || store.pages[1] != full {
		t.Fatalf("aborted %d, page 1 whole: %v", store.aborted, store.pages[1] == full)
	}
}

func TestHostPagerStopsOnBreak(t *testing.T) {
	c, f := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
		io.WriteString(w, hostListPage([]uint64{1, 2, 3}, 4, ""))
	})
	store := &pageStore{}
	n := 0
	for _, err := range c.HostPager(HostListQuery{}, store.open).All(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n == 2 {
			break
		}
	}
	if len(f.forms()) != 1 || store.aborted != 1 || len(store.pages) != 0 {
		t.Fatalf("requests %d, aborted %d, stored %d", len(f.forms()), store.aborted, len(store.pages))
	}
}

func TestHostPagerWarningMustAdvance(t *testing.T) {
	c, _ := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
		io.WriteString(w, hostListPage([]uint64{10, 11}, 11, ""))
	})
	for _, err := range c.HostPager(HostListQuery{}, nil).All(context.Background()) {
		if err != nil {
			if failure.ClassOf(err) != failure.ClassRetryable || !strings.Contains(err.Error(), "does not advance") {
				t.Fatalf("err = %v", err)
			}
			return
		}
	}
	t.Fatal("no error for a WARNING that does not advance")
}

func TestDetectionsRequest(t *testing.T) {
	body := readSample(t, "hld_2hosts_8det_entities-in-cdata_tabs_demisto-fixture.xml")
	c, f := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
		w.Header().Set("X-RateLimit-Limit", "300")
		w.Header().Set("X-RateLimit-Remaining", "299")
		w.Header().Set("X-Concurrency-Limit-Limit", "2")
		w.Header().Set("X-Concurrency-Limit-Running", "1")
		w.Write(body)
	})
	q := DetectionQuery{
		IDs:             []uint64{9, 3, 4, 5, 11},
		ProcessedBefore: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC),
		Extra:           url.Values{"show_igs": {"1"}, "status": {"New,Active"}, "ids": {"1-1000000"}},
	}
	var seen []uint64
	resp, err := c.Detections(context.Background(), q.Form(), func(id uint64) { seen = append(seen, id) })
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	got, err := io.ReadAll(resp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Fatal("body changed in transit")
	}
	if resp.Limits.RateLimit != 300 || resp.Limits.ConcurrencyRunning != 1 || resp.Limits.ToWaitSec != -1 {
		t.Errorf("limits = %+v", resp.Limits)
	}
	if s := resp.Summary(); s.Hosts != 2 || len(seen) != 2 || s.Warning != nil {
		t.Errorf("summary = %+v, seen %v", s, seen)
	}
	form := f.forms()[0]
	for k, want := range map[string]string{
		"action": "list", "ids": "3-5,9,11", "output_format": "XML", "truncation_limit": "0",
		"status": "New,Active", "show_reopened_info": "1", "show_igs": "1",
		"vm_processed_before": "2026-11-24T00:00:00Z", "vm_processed_after": "",
	} {
		if got := form.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

// TestSamplesThroughClient serves every sample with its recorded status and
// checks the outcome its SOURCES.md row implies.
func TestSamplesThroughClient(t *testing.T) {
	tests := []struct {
		file   string
		status int
		class  failure.Class // ClassUnknown: success
		code   int
		hosts  int
	}{
		{"hostlist_details-none_idset_recorded_200.xml", 200, failure.ClassUnknown, 0, 1},
		{"hostlist_details-none_empty_recorded_200.xml", 200, failure.ClassUnknown, 0, 0},
		{"hld_no-matching-hosts_empty-response_recorded_200.xml", 200, failure.ClassUnknown, 0, 0},
		{"hld_1host_3det_multiline-cdata_jupiterone-fixture.xml", 200, failure.ClassUnknown, 0, 1},
		{"hld_2hosts_8det_entities-in-cdata_tabs_demisto-fixture.xml", 200, failure.ClassUnknown, 0, 2},
		{"hld_1host_qds_unique-vuln-id_warning-truncated_elastic-fixture.xml", 200, failure.ClassUnknown, 0, 1},
		{"error_simple-return_1905_bad-ids_recorded_400.xml", 400, failure.ClassPermanent, 1905, 0},
		{"error_simple-return_1960_concurrency-limit_mock_409.xml", 409, failure.ClassBackPressure, 1960, 0},
		{"error_simple-return_1965_rate-limit_mock_409.xml", 409, failure.ClassBackPressure, 1965, 0},
		{"error_simple-return_2001_account-expired_recorded_200.xml", 200, failure.ClassFleetWide, 2001, 0},
		{"error_generic-return_999_internal-error_vendor-doc-example_NOT-well-formed.xml", 200, failure.ClassRetryable, 999, 0},
		{"error_generic-return_999_internal-error_vendor-doc-example_NOT-well-formed.xml", 500, failure.ClassRetryable, 999, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d_%s", tt.status, tt.file), func(t *testing.T) {
			body := readSample(t, tt.file)
			c, _ := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(tt.status)
				w.Write(body)
			})
			root := RootDetections
			if strings.HasPrefix(tt.file, "hostlist") {
				root = RootHostList
			}
			resp, err := c.post(context.Background(), "/api/2.0/fo/asset/host/vm/detection/", url.Values{"action": {"list"}}, root, nil, nil)
			if err == nil {
				var got []byte
				got, err = io.ReadAll(resp)
				resp.Close()
				if err == nil && !bytes.Equal(got, body) {
					t.Fatal("body changed in transit")
				}
				if err == nil && resp.Summary().Hosts != tt.hosts {
					t.Fatalf("hosts = %d, want %d", resp.Summary().Hosts, tt.hosts)
				}
			}
			if got := failure.ClassOf(err); got != tt.class {
				t.Fatalf("class = %v, want %v (err %v)", got, tt.class, err)
			}
			if tt.class == failure.ClassUnknown {
				return
			}
			var api APIError
			if !errors.As(err, &api) || api.Code != tt.code {
				t.Fatalf("APIError code: %v", err)
			}
			if api.Endpoint == "" {
				t.Fatalf("error does not name the endpoint: %v", err)
			}
		})
	}
}

// TestFaults covers what a proxy, a network or Qualys can do to one call.
func TestFaults(t *testing.T) {
	hld := readSample(t, "hld_2hosts_8det_entities-in-cdata_tabs_demisto-fixture.xml")
	hijack := func(w http.ResponseWriter) {
		// Send a chunk, then drop the connection: a reset mid-body.
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(200)
		w.Write(hld[:len(hld)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	tests := []struct {
		name   string
		handle func(w http.ResponseWriter, r *http.Request)
		class  failure.Class
		wait   time.Duration
		is     error
	}{
		{"body cut short with 200", func(w http.ResponseWriter, r *http.Request) {
			w.Write(hld[:len(hld)-200])
		}, failure.ClassRetryable, 0, ErrMalformed},
		{"empty 200", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
		}, failure.ClassRetryable, 0, ErrMalformed},
		{"reset mid-body", func(w http.ResponseWriter, r *http.Request) { hijack(w) },
			failure.ClassRetryable, 0, nil},
		{"stall longer than the idle timeout", func(w http.ResponseWriter, r *http.Request) {
			w.Write(hld[:1000])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, failure.ClassRetryable, 0, ErrIdleTimeout},
		{"409 concurrency with headers", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Concurrency-Limit-Limit", "2")
			w.Header().Set("X-Concurrency-Limit-Running", "3")
			w.WriteHeader(409)
			w.Write(readSample(t, "error_simple-return_1960_concurrency-limit_mock_409.xml"))
		}, failure.ClassBackPressure, DefaultWaits.Concurrency, nil},
		{"409 rate limit, SECONDS_TO_WAIT wins", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-RateLimit-ToWait-Sec", "30")
			w.WriteHeader(409)
			w.Write(readSample(t, "error_simple-return_1965_rate-limit_mock_409.xml"))
		}, failure.ClassBackPressure, 68928 * time.Second, nil},
		{"409 rate limit, header only", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-RateLimit-Limit", "300")
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-ToWait-Sec", "42")
			w.WriteHeader(409)
			io.WriteString(w, `<SIMPLE_RETURN><RESPONSE><DATETIME>2026-11-24T00:00:00Z</DATETIME><CODE>1965</CODE><TEXT>later</TEXT></RESPONSE></SIMPLE_RETURN>`)
		}, failure.ClassBackPressure, 42 * time.Second, nil},
		{"409 with no body or headers", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(409)
		}, failure.ClassBackPressure, DefaultWaits.Concurrency, nil},
		{"HTML page from a proxy with 502", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			io.WriteString(w, "<html><head><title>502 Bad Gateway</title></head><body>upstream</body></html>")
		}, failure.ClassRetryable, 0, nil},
		{"HTML maintenance page with 200", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html><head><title>Maintenance</title></head><body>back soon</body></html>")
		}, failure.ClassRetryable, 0, nil},
		{"401 plain text", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(401)
			io.WriteString(w, "Unauthorized")
		}, failure.ClassFleetWide, 0, nil},
		{"redirect to a login page", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://login.example/", http.StatusFound)
		}, failure.ClassFleetWide, 0, nil},
		{"wrong root", func(w http.ResponseWriter, r *http.Request) {
			w.Write(readSample(t, "hostlist_details-none_idset_recorded_200.xml"))
		}, failure.ClassRetryable, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newFake(t, 300*time.Millisecond, func(w http.ResponseWriter, r *http.Request, _ url.Values) { tt.handle(w, r) })
			resp, err := c.Detections(context.Background(), DetectionQuery{IDs: []uint64{1}}.Form(), nil)
			if err == nil {
				_, err = io.Copy(io.Discard, resp)
				resp.Close()
			}
			if err == nil {
				t.Fatal("no error")
			}
			if got := failure.ClassOf(err); got != tt.class {
				t.Fatalf("class = %v, want %v: %v", got, tt.class, err)
			}
			if got := failure.WaitOf(err); got != tt.wait {
				t.Fatalf("wait = %v, want %v", got, tt.wait)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("error %v is not %v", err, tt.is)
			}
			if strings.Contains(err.Error(), testPassword) || strings.Contains(fmt.Sprintf("%+v", err), testPassword) {
				t.Fatalf("password in error: %v", err)
			}
		})
	}
}

// TestCallerCancelIsNotAFault: a context the caller cancels is reported as
// such, unclassified, not as a Qualys fault.
func TestCallerCancelIsNotAFault(t *testing.T) {
	started := make(chan struct{})
	c, _ := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, _ url.Values) {
		w.Write([]byte("<HOST_LIST_VM_DETECTION_OUTPUT>"))
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancelCause(context.Background())
	resp, err := c.Detections(ctx, DetectionQuery{IDs: []uint64{1}}.Form(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	stop := errors.New("shutting down")
	go func() {
		<-started
		cancel(stop)
	}()
	_, err = io.Copy(io.Discard, resp)
	if !errors.Is(err, stop) || failure.ClassOf(err) != failure.ClassUnknown {
		t.Fatalf("err = %v (class %v), want the caller's cause, unclassified", err, failure.ClassOf(err))
	}
}

func TestConnectionRefusedIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close()
	c, err := New(Config{BaseURL: base, Username: testUser, Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Detections(context.Background(), DetectionQuery{IDs: []uint64{1}}.Form(), nil)
	if failure.ClassOf(err) != failure.ClassRetryable {
		t.Fatalf("err = %v (class %v)", err, failure.ClassOf(err))
	}
}

func TestUnknownCertificateIsFleetWide(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL, Username: testUser, Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Detections(context.Background(), DetectionQuery{IDs: []uint64{1}}.Form(), nil)
	if failure.ClassOf(err) != failure.ClassFleetWide {
		t.Fatalf("err = %v (class %v)", err, failure.ClassOf(err))
	}
}

func TestExtraCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(readSample(t, "hld_no-matching-hosts_empty-response_recorded_200.xml"))
	}))
	defer srv.Close()
	var pem bytes.Buffer
	for _, der := range srv.TLS.Certificates[0].Certificate {
		pem.WriteString("-----BEGIN CERTIFICATE-----\n")
		pem.WriteString(wrap64(der))
		pem.WriteString("-----END CERTIFICATE-----\n")
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{BaseURL: srv.URL, Username: testUser, Password: testPassword, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Detections(context.Background(), DetectionQuery{IDs: []uint64{1}}.Form(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	if _, err := io.Copy(io.Discard, resp); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no scheme", Config{BaseURL: "qualysapi.example", Username: "u", Password: "p"}},
		{"credentials in URL", Config{BaseURL: "https://u:" + testPassword + "@qualysapi.example", Username: "u", Password: "p"}},
		{"no password", Config{BaseURL: "https://qualysapi.example", Username: "u"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Fatalf("password in error: %v", err)
			}
		})
	}
}

func wrap64(der []byte) string {
	s := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	b.WriteString(s + "\n")
	return b.String()
}
