package qualys

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
)

const testKBPath = "/api/2.0/fo/knowledge_base/vuln/"

// kbAnswer renders a KnowledgeBase batch answer holding qids, with a
// WARNING naming next when next > 0.
func kbAnswer(qids []uint64, next uint64) string {
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<KNOWLEDGE_BASE_VULN_LIST_OUTPUT>\n  <RESPONSE>\n    <DATETIME>2026-12-04T10:00:00Z</DATETIME>\n<!-- keep-alive for KNOWLEDGE_BASE_VULN_LIST_OUTPUT  -->\n")
	if len(qids) > 0 {
		b.WriteString("    <VULN_LIST>\n")
		for _, q := range qids {
			fmt.Fprintf(&b, "      <VULN><QID>%d</QID><VULN_TYPE>Vulnerability</VULN_TYPE><TITLE><![CDATA[<P>QID %d</P>]]></TITLE></VULN>\n", q, q)
		}
		b.WriteString("    </VULN_LIST>\n")
	}
	if next > 0 {
		fmt.Fprintf(&b, "    <WARNING><CODE>1980</CODE><TEXT>more</TEXT><URL><![CDATA[https://elsewhere.example%s?action=list&ids=1-999999&id_min=%d]]></URL></WARNING>\n", testKBPath, next)
	}
	b.WriteString("  </RESPONSE>\n</KNOWLEDGE_BASE_VULN_LIST_OUTPUT>\n<!-- keep-alive for KNOWLEDGE_BASE_VULN_LIST_OUTPUT  -->\n")
	return b.String()
}

// kbListing renders a details=None listing: IDs and ranges ("a-b").
func kbListing(items []string, next uint64) string {
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<KNOWLEDGE_BASE_VULN_LIST_OUTPUT>\n  <RESPONSE>\n    <DATETIME>2026-12-04T10:00:00Z</DATETIME>\n")
	if len(items) > 0 {
		b.WriteString("    <ID_SET>\n")
		for _, it := range items {
			if strings.Contains(it, "-") {
				fmt.Fprintf(&b, "      <ID_RANGE>%s</ID_RANGE>\n", it)
			} else {
				fmt.Fprintf(&b, "      <ID>%s</ID>\n", it)
			}
		}
		b.WriteString("    </ID_SET>\n")
	}
	if next > 0 {
		fmt.Fprintf(&b, "    <WARNING><CODE>1980</CODE><TEXT>more</TEXT><URL><![CDATA[https://elsewhere.example%s?action=list&details=None&id_min=%d]]></URL></WARNING>\n", testKBPath, next)
	}
	b.WriteString("  </RESPONSE>\n</KNOWLEDGE_BASE_VULN_LIST_OUTPUT>\n<!-- CONFIDENTIAL AND PROPRIETARY INFORMATION. //-->\n")
	return b.String()
}

// TestKBPagerRequest: a KB batch is one POST to the KnowledgeBase path
// naming every QID, with the batch's parameters and qfetch's own winning.
func TestKBPagerRequest(t *testing.T) {
	tests := []struct {
		name  string
		q     KBQuery
		want  url.Values
		extra []string // names that must not be sent
	}{
		{"default details", KBQuery{IDs: "1-3,5,100000-100002"},
			url.Values{"action": {"list"}, "details": {"All"}, "ids": {"1,2,3,5,100000,100001,100002"}}, nil},
		{"a pass's parameters", KBQuery{IDs: "7", Extra: url.Values{"details": {"Basic"}, "show_disabled_flag": {"1"},
			"show_qid_change_log": {"1"}, "show_supported_modules_info": {"1"}, "show_pci_reasons": {"1"}, "is_patchable": {"1"}}},
			url.Values{"action": {"list"}, "details": {"Basic"}, "ids": {"7"}, "show_disabled_flag": {"1"},
				"show_qid_change_log": {"1"}, "show_supported_modules_info": {"1"}, "show_pci_reasons": {"1"}, "is_patchable": {"1"}}, nil},
		{"Details wins", KBQuery{IDs: "7", Details: "All", Extra: url.Values{"details": {"Basic"}}},
			url.Values{"action": {"list"}, "details": {"All"}, "ids": {"7"}}, nil},
		{"owned extras dropped in any case", KBQuery{IDs: "8-9", Extra: url.Values{"Action": {"purge"}, "IDS": {"1-999999"},
			"id_min": {"1"}, "last_modified_after": {"2000-01-01"}, "Published_Before": {"x"}, "Details": {"None"}, "discovery_method": {"Remote"}}},
			url.Values{"action": {"list"}, "details": {"All"}, "ids": {"8,9"}, "discovery_method": {"Remote"}},
			[]string{"Action", "IDS", "Details", "Published_Before"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			qids := []uint64{5, 7}
			c, f := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
				if r.URL.Path != testKBPath {
					t.Errorf("path %s, want %s", r.URL.Path, testKBPath)
				}
				io.WriteString(w, kbAnswer(qids, 0))
			})
			pages, err := walk(t, c.KBPager(tt.q))
			if err != nil {
				t.Fatal(err)
			}
			if len(pages) != 1 || !slices.Equal(pages[0], qids) {
				t.Fatalf("pages %v, want one with %v", pages, qids)
			}
			forms := f.forms()
			if len(forms) != 1 || forms[0].Encode() != tt.want.Encode() {
				t.Fatalf("forms %v\nwant %s", forms, tt.want.Encode())
			}
		})
	}
}

// TestKBPagerRefuses: a batch that would ask for the whole KnowledgeBase,
// or for IDs where it wants VULNs, is never sent.
func TestKBPagerRefuses(t *testing.T) {
	for _, q := range []KBQuery{{}, {IDs: "abc"}, {IDs: "5-3"}, {IDs: "5", Details: "None"}, {IDs: "5", Extra: url.Values{"details": {"None"}}}} {
		c, f := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
			io.WriteString(w, kbAnswer(nil, 0))
		})
		_, err := walk(t, c.KBPager(q))
		if !errors.Is(err, ErrKBQuery) || failure.ClassOf(err) != failure.ClassPermanent || len(f.forms()) != 0 {
			t.Errorf("%+v: err = %v (%v), %d requests; want a permanent ErrKBQuery and none", q, err, failure.ClassOf(err), len(f.forms()))
		}
	}
}

// TestKBPagerAnswers: what the worker sees for the answers Qualys gives.
func TestKBPagerAnswers(t *testing.T) {
	listing := kbListing([]string{"5"}, 0)
	tests := []struct {
		name   string
		status int
		body   string
		qids   []uint64
		class  failure.Class // ClassUnknown: accepted
		is     error
	}{
		{"unknown QID: empty answer", 200, string(readSample(t, "kb_unknown-id_empty-response_keepalive-after-root_recorded_200.xml")), nil, failure.ClassUnknown, nil},
		{"one VULN", 200, string(readSample(t, "kb_1vuln_details-default_keepalive-comment-in-response_recorded_200.xml")), []uint64{316760}, failure.ClassUnknown, nil},
		{"1905", 400, string(readSample(t, "error_simple-return_1905_kb-bad-ids_recorded_400.xml")), nil, failure.ClassPermanent, nil},
		{"1905 with 200", 200, string(readSample(t, "error_simple-return_1905_kb-bad-ids_recorded_400.xml")), nil, failure.ClassPermanent, nil},
		{"an ID_SET for a batch", 200, listing, nil, failure.ClassRetryable, ErrMalformed},
		{"a detection answer", 200, string(readSample(t, "hld_no-matching-hosts_empty-response_recorded_200.xml")), nil, failure.ClassRetryable, ErrUnexpectedRoot},
		{"cut short", 200, kbAnswer([]uint64{1, 2}, 0)[:200], nil, failure.ClassRetryable, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			pages, err := walk(t, c.KBPager(KBQuery{IDs: "5,316760"}))
			if got := failure.ClassOf(err); got != tt.class {
				t.Fatalf("err = %v (%v), want %v", err, got, tt.class)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
			if tt.class != failure.ClassUnknown {
				return
			}
			if len(pages) != 1 || !slices.Equal(pages[0], tt.qids) {
				t.Fatalf("pages %v, want %v", pages, tt.qids)
			}
		})
	}
}

// TestKBPagerFollowsWarning: a KB WARNING (allowed by the DTD, never seen)
// is followed like a detection one: our form plus its id_min.
func TestKBPagerFollowsWarning(t *testing.T) {
	c, f := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
		if form.Get("id_min") == "" {
			io.WriteString(w, kbAnswer([]uint64{3, 4}, 9))
			return
		}
		io.WriteString(w, kbAnswer([]uint64{9}, 0))
	})
	p := c.KBPager(KBQuery{IDs: "3-4,9"})
	pages, err := walk(t, p)
	if err != nil || len(pages) != 2 || !slices.Equal(pages[0], []uint64{3, 4}) || !slices.Equal(pages[1], []uint64{9}) {
		t.Fatalf("pages %v, err %v", pages, err)
	}
	forms := f.forms()
	want := maps.Clone(forms[0])
	want.Set("id_min", "9")
	if forms[0].Get("ids") != "3,4,9" || forms[1].Encode() != want.Encode() {
		t.Fatalf("requests %s then %s; want the second %s", forms[0].Encode(), forms[1].Encode(), want.Encode())
	}
	if cur := p.Cursor(); cur.Page != 2 || cur.IDMin != 9 {
		t.Fatalf("cursor %+v", cur)
	}
}

// TestQIDPager: the listing asks for details=None from the pass's
// last_modified_after, with the operator's filters and without output
// options; pages are teed whole, IDs come ascending, ranges expanded.
func TestQIDPager(t *testing.T) {
	pages := []string{kbListing([]string{"6", "100-103"}, 200), kbListing([]string{"200", "300-301"}, 0)}
	c, f := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
		if r.URL.Path != testKBPath {
			t.Errorf("path %s", r.URL.Path)
		}
		switch form.Get("id_min") {
		case "":
			io.WriteString(w, pages[0])
		case "200":
			io.WriteString(w, pages[1])
		default:
			t.Errorf("id_min %q", form.Get("id_min"))
			w.WriteHeader(500)
		}
	})
	store := &pageStore{}
	after := time.Date(2026, 12, 3, 9, 0, 0, 0, time.FixedZone("x", 3600))
	p := c.QIDPager(KBListQuery{ModifiedAfter: after, Extra: url.Values{
		"details": {"All"}, "show_qid_change_log": {"1"}, "SHOW_PCI_REASONS": {"1"}, "is_patchable": {"1"},
		"discovery_auth_types": {"Unix"}, "ids": {"1"}, "last_modified_before": {"x"}, "Action": {"purge"},
	}}, store.open)
	var got []uint64
	for id, err := range p.All(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	if want := []uint64{6, 100, 101, 102, 103, 200, 300, 301}; !slices.Equal(got, want) {
		t.Fatalf("QIDs %v, want %v", got, want)
	}
	if !p.Done() || p.Cursor() != (Cursor{Page: 2, IDMin: 200, Last: 301}) {
		t.Fatalf("done %v, cursor %+v", p.Done(), p.Cursor())
	}
	if store.pages[1] != pages[0] || store.pages[2] != pages[1] || !maps.Equal(store.hosts, map[int]int{1: 5, 2: 3}) || store.aborted != 0 {
		t.Fatalf("stored %d pages (whole: %v, %v), hosts %v, aborted %d", len(store.pages),
			store.pages[1] == pages[0], store.pages[2] == pages[1], store.hosts, store.aborted)
	}
	forms := f.forms()
	want := url.Values{"action": {"list"}, "details": {"None"}, "last_modified_after": {"2026-12-03T08:00:00Z"},
		"is_patchable": {"1"}, "discovery_auth_types": {"Unix"}}
	if len(forms) != 2 || forms[0].Encode() != want.Encode() {
		t.Fatalf("first request %v\nwant %s", forms, want.Encode())
	}
	want.Set("id_min", "200")
	if forms[1].Encode() != want.Encode() {
		t.Fatalf("second request %s\nwant %s", forms[1].Encode(), want.Encode())
	}
}

// TestQIDPagerFull: a zero ModifiedAfter lists the whole KnowledgeBase,
// and an empty KnowledgeBase lists nothing in one page.
func TestQIDPagerFull(t *testing.T) {
	c, f := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
		io.WriteString(w, kbListing(nil, 0))
	})
	store := &pageStore{}
	p := c.QIDPager(KBListQuery{}, store.open)
	for _, err := range p.All(t.Context()) {
		t.Fatalf("yielded (%v)", err)
	}
	want := url.Values{"action": {"list"}, "details": {"None"}}
	if forms := f.forms(); len(forms) != 1 || forms[0].Encode() != want.Encode() || !p.Done() || store.hosts[1] != 0 || len(store.pages) != 1 {
		t.Fatalf("requests %v, done %v, stored %v", forms, p.Done(), store.hosts)
	}
}

// TestQIDPagerResume: a walk resumed from a cursor asks for its page from
// its id_min, tees it under its number and yields nothing up to Last; a
// page that fails is retried whole without repeating a QID.
func TestQIDPagerResume(t *testing.T) {
	calls := 0
	c, f := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
		calls++
		if calls == 1 {
			w.WriteHeader(503)
			return
		}
		if calls == 2 {
			page := kbListing([]string{"200-202", "300"}, 0)
			io.WriteString(w, page[:strings.Index(page, "<ID>300")])
			return
		}
		io.WriteString(w, kbListing([]string{"200-202", "300"}, 0))
	})
	store := &pageStore{}
	p := c.QIDPager(KBListQuery{Resume: Cursor{Page: 2, IDMin: 200, Last: 201}}, store.open)
	var got []uint64
	var errs []error
	for id, err := range p.All(t.Context()) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, id)
	}
	if !slices.Equal(got, []uint64{202, 300}) || len(errs) != 2 {
		t.Fatalf("QIDs %v, errors %v; want [202 300] after two errors", got, errs)
	}
	for _, err := range errs {
		if failure.ClassOf(err) != failure.ClassRetryable || !strings.Contains(err.Error(), "kb qid list page 2") {
			t.Errorf("err = %v (%v)", err, failure.ClassOf(err))
		}
	}
	forms := f.forms()
	for _, form := range forms {
		if form.Get("id_min") != "200" || form.Get("details") != "None" {
			t.Errorf("request %s", form.Encode())
		}
	}
	if len(forms) != 3 || len(store.pages) != 1 || store.pages[2] == "" || store.aborted != 2 {
		t.Fatalf("%d requests, pages %v, aborted %d", len(forms), slices.Collect(maps.Keys(store.pages)), store.aborted)
	}
}

// TestQIDPagerRefusesVulns: a listing answered with VULN details (details
// ignored) is refused rather than teed as a listing page.
func TestQIDPagerRefusesVulns(t *testing.T) {
	c, _ := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
		io.WriteString(w, kbAnswer([]uint64{5}, 0))
	})
	store := &pageStore{}
	for id, err := range c.QIDPager(KBListQuery{}, store.open).All(t.Context()) {
		if !errors.Is(err, ErrMalformed) || id != 0 {
			t.Fatalf("yielded %d, %v; want a malformed answer", id, err)
		}
		break
	}
	if store.aborted != 1 || len(store.pages) != 0 {
		t.Fatalf("aborted %d, stored %d", store.aborted, len(store.pages))
	}
}

// TestKBGzip: the client lets the transport ask for gzip, so a
// KnowledgeBase answer sent gzip'd (as the 2022 recording was) reaches the
// validator, and the stored object, as XML; a gzip stream cut short is a
// retryable error, never a whole answer.
func TestKBGzip(t *testing.T) {
	body := readSample(t, "kb_42vulns_details-default_ig-potential-vuln_gzip_recorded_200.xml")
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(body)
	zw.Close()
	for _, cut := range []bool{false, true} {
		t.Run("cut="+strconv.FormatBool(cut), func(t *testing.T) {
			var accept []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				accept = r.Header.Values("Accept-Encoding")
				w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
				w.Header().Set("Content-Encoding", "gzip")
				w.Header().Set("Connection", "close")
				z := zipped.Bytes()
				if cut {
					z = z[:len(z)/2]
				}
				w.Header().Set("Content-Length", strconv.Itoa(len(z)))
				w.Write(z)
			}))
			defer srv.Close()
			c, err := New(Config{BaseURL: srv.URL, Username: testUser, Password: testPassword})
			if err != nil {
				t.Fatal(err)
			}
			p := c.KBPager(KBQuery{IDs: "6,45017"})
			var qids []uint64
			resp, err := p.Open(t.Context(), func(id uint64) { qids = append(qids, id) })
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp)
			resp.Close()
			if len(accept) != 1 || !strings.Contains(accept[0], "gzip") {
				t.Fatalf("Accept-Encoding %q, want gzip asked for", accept)
			}
			if cut {
				if err == nil || failure.ClassOf(err) != failure.ClassRetryable {
					t.Fatalf("cut gzip stream: err = %v (%v), want retryable", err, failure.ClassOf(err))
				}
				return
			}
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("err %v; %d bytes out, want the %d of the decompressed sample", err, len(got), len(body))
			}
			if !slices.Equal(qids, kb42QIDs) || resp.Summary().Hosts != 42 {
				t.Fatalf("QIDs %v", qids)
			}
		})
	}
}
