package qualys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
)

const (
	testHostListPath  = "/api/2.0/fo/asset/host/"
	testDetectionPath = "/api/2.0/fo/asset/host/vm/detection/"
)

// TestFollowWarning: a truncation WARNING steers paging only: the next form
// is ours plus its id_min, or the WARNING is refused.
func TestFollowWarning(t *testing.T) {
	ours := url.Values{"action": {"list"}, "ids": {"5-9"}, "truncation_limit": {"2"}, "status": {"New"}}
	tests := []struct {
		name  string
		url   string
		code  int // 0: 1980
		min   uint64
		class failure.Class // of the error; ClassUnknown: followed
		want  string        // in the error
	}{
		{"genuine", "https://qualysapi.qualys.com" + testDetectionPath + "?action=list&ids=5-9&truncation_limit=2&id_min=7", 0, 7, failure.ClassUnknown, ""},
		{"another host", "https://evil.example" + testDetectionPath + "?id_min=7", 0, 7, failure.ClassUnknown, ""},
		{"no trailing slash", "https://q.example/api/2.0/fo/asset/host/vm/detection?id_min=7", 0, 7, failure.ClassUnknown, ""},
		{"hostile extras ignored", "https://q.example" + testDetectionPath +
			"?action=purge&ids=1-999999999&output_format=CSV&echo_request=1&ID_MIN=1&status=Fixed&id_min=7", 0, 7, failure.ClassUnknown, ""},
		{"undecodable extras ignored", "https://q.example" + testDetectionPath + "?x=%zz&id_min=7", 0, 7, failure.ClassUnknown, ""},
		{"another path", "https://q.example/api/2.0/fo/asset/host/?action=purge&id_min=7", 0, 0, failure.ClassPermanent, `names path "/api/2.0/fo/asset/host/"`},
		{"path escaping up", "https://q.example/api/2.0/fo/asset/host/vm/detection/../../?id_min=7", 0, 0, failure.ClassPermanent, "names path"},
		{"relative", "?id_min=7", 0, 0, failure.ClassPermanent, "names path"},
		{"no id_min", "https://q.example" + testDetectionPath + "?action=list", 0, 0, failure.ClassPermanent, "0 id_min values"},
		{"two id_min", "https://q.example" + testDetectionPath + "?id_min=7&id_min=1", 0, 0, failure.ClassPermanent, "2 id_min values"},
		{"id_min a range", "https://q.example" + testDetectionPath + "?id_min=7-9", 0, 0, failure.ClassPermanent, "not a positive integer"},
		{"id_min zero", "https://q.example" + testDetectionPath + "?id_min=0", 0, 0, failure.ClassPermanent, "not a positive integer"},
		{"id_min signed", "https://q.example" + testDetectionPath + "?id_min=%2B7", 0, 0, failure.ClassPermanent, "not a positive integer"},
		{"id_min overflows", "https://q.example" + testDetectionPath + "?id_min=18446744073709551616", 0, 0, failure.ClassPermanent, "not a positive integer"},
		{"does not advance", "https://q.example" + testDetectionPath + "?id_min=6", 0, 0, failure.ClassRetryable, "does not advance"},
		{"other code", "https://q.example" + testDetectionPath + "?id_min=7", 1234, 0, failure.ClassRetryable, "unexpected WARNING code 1234"},
		{"unreadable", "https://q.example/%zz?id_min=7", 0, 0, failure.ClassRetryable, "unreadable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := tt.code
			if code == 0 {
				code = CodeTruncated
			}
			next, nextMin, err := followWarning(ours, &Warning{Code: code, URL: tt.url}, testDetectionPath, Cursor{IDMin: 5, Last: 6})
			if tt.class == failure.ClassUnknown {
				want := maps.Clone(ours)
				want.Set("id_min", fmt.Sprint(tt.min))
				if err != nil || nextMin != tt.min || next.Encode() != want.Encode() {
					t.Fatalf("got %s, %d, %v; want %s", next.Encode(), nextMin, err, want.Encode())
				}
				return
			}
			if err == nil || failure.ClassOf(err) != tt.class || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (%v), want %v containing %q", err, failure.ClassOf(err), tt.class, tt.want)
			}
			if tt.class == failure.ClassPermanent && !errors.Is(err, ErrWarningRefused) {
				t.Fatalf("err = %v, want ErrWarningRefused", err)
			}
		})
	}
	if ours.Get("id_min") != "" {
		t.Fatal("our form was changed")
	}
}

// hostileWarning is a WARNING whose URL asks for a purge of every host.
func hostileWarning(path string, idMin uint64) string {
	return fmt.Sprintf(`<WARNING><CODE>1980</CODE><TEXT>more</TEXT><URL><![CDATA[https://qualysapi.example.com%s?action=purge&ids=1-999999999&id_min=%d]]></URL></WARNING>`, path, idMin)
}

// TestHostPagerHostileWarning: the planner's next Host List request is its
// own plus id_min, whatever the WARNING URL asks; one naming another path
// ends the walk with a permanent error and no second request.
func TestHostPagerHostileWarning(t *testing.T) {
	for _, tt := range []struct {
		name, path string
		requests   int
	}{
		{"same path", testHostListPath, 2},
		{"another path", testDetectionPath, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, f := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
				if r.URL.Path != testHostListPath || form.Get("action") != "list" || form.Has("ids") {
					t.Errorf("request %s %s", r.URL.Path, form.Encode())
				}
				if form.Get("id_min") == "" {
					io.WriteString(w, `<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID>5</ID></ID_SET>`+hostileWarning(tt.path, 6)+`</RESPONSE></HOST_LIST_OUTPUT>`)
					return
				}
				io.WriteString(w, `<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID>6</ID></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`)
			})
			var ids []uint64
			var err error
			for id, e := range c.HostPager(HostListQuery{PageSize: 1}, nil).All(context.Background()) {
				if e != nil {
					err = e
					break
				}
				ids = append(ids, id)
			}
			forms := f.forms()
			if len(forms) != tt.requests {
				t.Fatalf("%d requests, want %d", len(forms), tt.requests)
			}
			if tt.requests == 1 {
				if failure.ClassOf(err) != failure.ClassPermanent || !errors.Is(err, ErrWarningRefused) {
					t.Fatalf("err = %v (%v), want a permanent ErrWarningRefused", err, failure.ClassOf(err))
				}
				return
			}
			want := maps.Clone(forms[0])
			want.Set("id_min", "6")
			if err != nil || len(ids) != 2 || forms[1].Encode() != want.Encode() {
				t.Fatalf("ids %v, err %v; second request %s, want %s", ids, err, forms[1].Encode(), want.Encode())
			}
		})
	}
}

// TestDetectionPagerHostileWarning: the same on the worker's side: the
// batch's ids and action stay ours.
func TestDetectionPagerHostileWarning(t *testing.T) {
	for _, tt := range []struct {
		name, path string
		requests   int
	}{
		{"same path", testDetectionPath, 2},
		{"another path", testHostListPath, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, f := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
				if r.URL.Path != testDetectionPath || form.Get("action") != "list" || form.Get("ids") != "5-7" {
					t.Errorf("request %s %s", r.URL.Path, form.Encode())
				}
				if form.Get("id_min") == "" {
					io.WriteString(w, `<HOST_LIST_VM_DETECTION_OUTPUT><RESPONSE><HOST_LIST><HOST><ID>5</ID></HOST></HOST_LIST>`+
						hostileWarning(tt.path, 6)+`</RESPONSE></HOST_LIST_VM_DETECTION_OUTPUT>`)
					return
				}
				io.WriteString(w, `<HOST_LIST_VM_DETECTION_OUTPUT><RESPONSE><HOST_LIST><HOST><ID>6</ID></HOST><HOST><ID>7</ID></HOST></HOST_LIST></RESPONSE></HOST_LIST_VM_DETECTION_OUTPUT>`)
			})
			q := DetectionQuery{IDs: []uint64{5, 6, 7}, TruncationLimit: 1}
			pages, err := walk(t, c.DetectionPager(q))
			forms := f.forms()
			if len(forms) != tt.requests {
				t.Fatalf("%d requests, want %d", len(forms), tt.requests)
			}
			if tt.requests == 1 {
				if failure.ClassOf(err) != failure.ClassPermanent || !errors.Is(err, ErrWarningRefused) {
					t.Fatalf("err = %v (%v), want a permanent ErrWarningRefused", err, failure.ClassOf(err))
				}
				return
			}
			want := q.Form()
			want.Set("id_min", "6")
			if err != nil || len(pages) != 2 || forms[1].Encode() != want.Encode() {
				t.Fatalf("pages %v, err %v; second request %s, want %s", pages, err, forms[1].Encode(), want.Encode())
			}
		})
	}
}

// FuzzFollowWarning: whatever the WARNING URL says, the next form is ours
// with id_min set to a positive integer above the cursor, or there is an
// error.
func FuzzFollowWarning(f *testing.F) {
	for _, s := range []string{
		"https://qualysapi.qualys.com" + testDetectionPath + "?action=list&id_min=7",
		"https://q.example" + testDetectionPath + "?action=purge&ids=1-999999999&id_min=8",
		"https://q.example" + testDetectionPath + "?id_min=7&id_min=9",
		"https://q.example" + testHostListPath + "?id_min=7",
		"https://q.example" + testDetectionPath + "?id_min=%37;ids=1",
		"//h" + testDetectionPath + "?id_min=7#x",
		"?id_min=7",
	} {
		f.Add(s)
	}
	ours := url.Values{"action": {"list"}, "ids": {"5-9"}, "status": {"New"}}
	f.Fuzz(func(t *testing.T, raw string) {
		cur := Cursor{IDMin: 5, Last: 6}
		next, nextMin, err := followWarning(ours, &Warning{Code: CodeTruncated, URL: raw}, testDetectionPath, cur)
		if err != nil {
			if c := failure.ClassOf(err); c != failure.ClassPermanent && c != failure.ClassRetryable {
				t.Fatalf("err %v of class %v", err, c)
			}
			return
		}
		if nextMin <= cur.Last {
			t.Fatalf("id_min %d does not advance past %d", nextMin, cur.Last)
		}
		want := maps.Clone(ours)
		want.Set("id_min", fmt.Sprint(nextMin))
		if next.Encode() != want.Encode() {
			t.Fatalf("next %s, want %s", next.Encode(), want.Encode())
		}
	})
}
