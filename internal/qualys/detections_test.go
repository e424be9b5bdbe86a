package qualys

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
)

// detectionPage renders a detection answer holding ids, truncated with a
// WARNING of code (1980 unless set) pointing at next when next > 0.
func detectionPage(ids []uint64, next uint64, code int) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8" ?>
<HOST_LIST_VM_DETECTION_OUTPUT>
  <RESPONSE>
    <DATETIME>2026-11-24T10:00:00Z</DATETIME>
    <HOST_LIST>
`)
	for _, id := range ids {
		fmt.Fprintf(&b, "      <HOST><ID>%d</ID><DETECTION_LIST><DETECTION><QID>38170</QID></DETECTION></DETECTION_LIST></HOST>\n", id)
	}
	b.WriteString("    </HOST_LIST>\n")
	if next > 0 {
		if code == 0 {
			code = CodeTruncated
		}
		fmt.Fprintf(&b, `    <WARNING>
      <CODE>%d</CODE>
      <TEXT>%d record limit exceeded. Use URL to get next batch of results.</TEXT>
      <URL><![CDATA[
https://elsewhere.example/api/2.0/fo/asset/host/vm/detection/?action=list&truncation_limit=2&ids=1-3,50&id_min=%d
]]></URL>
    </WARNING>
`, code, len(ids), next)
	}
	b.WriteString("  </RESPONSE>\n</HOST_LIST_VM_DETECTION_OUTPUT>\n")
	return b.String()
}

// pagedDetections serves ids two by two, as Qualys does with
// truncation_limit=2: each page's WARNING names the next page's first ID.
func pagedDetections(ids []uint64, code int) func(w http.ResponseWriter, r *http.Request, form url.Values) {
	return func(w http.ResponseWriter, _ *http.Request, form url.Values) {
		from := 0
		if s := form.Get("id_min"); s != "" {
			min, _ := strconv.ParseUint(s, 10, 64)
			from = slices.IndexFunc(ids, func(id uint64) bool { return id >= min })
		}
		to := min(from+2, len(ids))
		var next uint64
		if to < len(ids) {
			next = ids[to]
		}
		io.WriteString(w, detectionPage(ids[from:to], next, code))
	}
}

// walk reads every page of p, as a worker does, and returns the IDs per page.
func walk(t *testing.T, p *DetectionPager) ([][]uint64, error) {
	t.Helper()
	var pages [][]uint64
	for !p.Done() {
		if got := p.Cursor().Page; got != len(pages)+1 {
			t.Fatalf("cursor at page %d, want %d", got, len(pages)+1)
		}
		var ids []uint64
		resp, err := p.Open(t.Context(), func(id uint64) { ids = append(ids, id) })
		if err != nil {
			return pages, err
		}
		_, err = io.Copy(io.Discard, resp)
		resp.Close()
		if err != nil {
			return pages, err
		}
		pages = append(pages, ids)
		if err := p.Advance(resp); err != nil {
			return pages, err
		}
	}
	return pages, nil
}

func TestDetectionPagerFollowsWarnings(t *testing.T) {
	ids := []uint64{1, 2, 3, 50}
	c, f := newFake(t, time.Minute, pagedDetections(ids, 0))
	q := DetectionQuery{IDs: ids, TruncationLimit: 2}
	pages, err := walk(t, c.DetectionPager(q))
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]uint64{{1, 2}, {3, 50}}; !slices.EqualFunc(pages, want, slices.Equal) {
		t.Fatalf("pages %v, want %v", pages, want)
	}
	forms := f.forms()
	form := q.Form()
	if len(forms) != 2 || forms[0].Get("id_min") != "" || forms[0].Encode() != form.Encode() {
		t.Fatalf("first request %v, want %v", forms[0], form)
	}
	// The next request is our own plus the WARNING URL's id_min, and
	// nothing else of the URL.
	next := forms[1]
	want := maps.Clone(form)
	want.Set("id_min", "3")
	if next.Encode() != want.Encode() || next.Get("ids") != "1-3,50" {
		t.Fatalf("next = %v, want %v", next, want)
	}
	if form.Get("id_min") != "" {
		t.Fatal("the original form was changed")
	}
}

func TestDetectionPagerFaults(t *testing.T) {
	tests := []struct {
		name     string
		code     int // WARNING code; 0: 1980
		maxPages int
		pages    int // read before the error
		want     string
	}{
		{"non-1980 warning", 1234, maxDetectionPages, 1, "unexpected WARNING code 1234"},
		{"past the page limit", 0, 2, 2, "more than 2 truncated pages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newFake(t, time.Minute, pagedDetections([]uint64{1, 2, 3, 50, 60, 70}, tt.code))
			p := c.DetectionPager(DetectionQuery{IDs: []uint64{1, 2, 3, 50, 60, 70}, TruncationLimit: 2})
			p.maxPages = tt.maxPages
			pages, err := walk(t, p)
			if failure.ClassOf(err) != failure.ClassRetryable || !strings.Contains(fmt.Sprint(err), tt.want) {
				t.Fatalf("err = %v (%v), want a retryable %q", err, failure.ClassOf(err), tt.want)
			}
			if len(pages) != tt.pages || p.Done() {
				t.Fatalf("%d pages read, done %v; want %d, not done", len(pages), p.Done(), tt.pages)
			}
		})
	}
}

// TestDetectionPagerWantsWholePages: a page's WARNING comes at its end, so
// a page not read whole must not pass for the last one.
func TestDetectionPagerWantsWholePages(t *testing.T) {
	c, _ := newFake(t, time.Minute, pagedDetections([]uint64{1, 2, 3}, 0))
	p := c.DetectionPager(DetectionQuery{IDs: []uint64{1, 2, 3}, TruncationLimit: 2})
	resp, err := p.Open(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Close()
	if err := p.Advance(resp); err == nil || p.Done() {
		t.Fatalf("advanced past an unread page: err %v, done %v", err, p.Done())
	}
}
