package qualys

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// wideRangePage is a Host List page of under 200 bytes that names 2^25
// hosts in two ranges.
const wideRangePage = `<?xml version="1.0" encoding="UTF-8" ?><HOST_LIST_OUTPUT><RESPONSE><ID_SET>` +
	`<ID_RANGE>1-16777216</ID_RANGE><ID_RANGE>16777217-33554432</ID_RANGE>` +
	`</ID_SET></RESPONSE></HOST_LIST_OUTPUT>`

// heapGrowth walks the Host List of c until take IDs were yielded,
// sampling the heap in use every 1<<16 IDs, and returns the largest growth
// over the heap in use before the walk.
func heapGrowth(tb testing.TB, c *Client, take int) (growth uint64, got int) {
	tb.Helper()
	runtime.GC()
	var base, m runtime.MemStats
	runtime.ReadMemStats(&base)
	sample := func() {
		runtime.ReadMemStats(&m)
		if m.HeapInuse > base.HeapInuse {
			growth = max(growth, m.HeapInuse-base.HeapInuse)
		}
	}
	for _, err := range c.HostPager(HostListQuery{}, nil).All(context.Background()) {
		if err != nil {
			tb.Fatal(err)
		}
		if got%(1<<16) == 0 {
			sample()
		}
		if got++; got == take {
			break
		}
	}
	sample()
	return growth, got
}

// serve answers every call with body.
func serve(body string) func(w http.ResponseWriter, r *http.Request, form url.Values) {
	return func(w http.ResponseWriter, _ *http.Request, _ url.Values) { io.WriteString(w, body) }
}

// TestHostPagerWideRangesFlat: IDs of a wide ID_RANGE are handed out as
// they are taken, so a tiny page claiming 33.5M hosts leaves the heap flat
// (it grew by 516 MiB before #17.6, all of it before the first ID).
func TestHostPagerWideRangesFlat(t *testing.T) {
	const take = 1 << 21 // far more than any one Read's worth
	c, _ := newFake(t, time.Minute, serve(wideRangePage))
	growth, got := heapGrowth(t, c, take)
	t.Logf("page of %d bytes: %d IDs taken, heap in use grew by at most %d KiB", len(wideRangePage), got, growth>>10)
	if got != take {
		t.Fatalf("%d IDs yielded, want %d", got, take)
	}
	if growth > 16<<20 {
		t.Fatalf("heap grew by %d MiB, want it flat (under 16 MiB)", growth>>20)
	}
}

// TestHostPagerRanges: ranges and single IDs come out in order, across a
// retried page without repeats, and the page's host count includes each
// range's width.
func TestHostPagerRanges(t *testing.T) {
	page := `<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID>3</ID><ID_RANGE>5-8</ID_RANGE><ID>10</ID><ID_RANGE>12-13</ID_RANGE></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`
	calls := 0
	c, _ := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
		calls++
		if calls == 1 {
			// A first answer cut inside the range: IDs up to 6 were handed out.
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, page[:len(`<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID>3</ID><ID_RANGE>5-8</ID_RANGE>`)])
			return
		}
		io.WriteString(w, page)
	})
	store := &pageStore{}
	p := c.HostPager(HostListQuery{}, store.open)
	var ids []uint64
	errs := 0
	for id, err := range p.All(context.Background()) {
		if err != nil {
			errs++
			if errs > 1 {
				t.Fatal(err)
			}
			continue
		}
		ids = append(ids, id)
	}
	if want := []uint64{3, 5, 6, 7, 8, 10, 12, 13}; !slices.Equal(ids, want) || errs != 1 {
		t.Fatalf("ids %v after %d errors, want %v after 1", ids, errs, want)
	}
	if store.hosts[1] != 8 {
		t.Fatalf("page stored with %d hosts, want 8", store.hosts[1])
	}
}

// TestHostPagerRangeOutOfOrder: a range stepping back over an ID already
// handed out is a fault, as a single ID is.
func TestHostPagerRangeOutOfOrder(t *testing.T) {
	c, _ := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, form url.Values) {
		io.WriteString(w, `<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID_RANGE>5-8</ID_RANGE><ID_RANGE>8-9</ID_RANGE></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`)
	})
	var ids []uint64
	for id, err := range c.HostPager(HostListQuery{}, nil).All(context.Background()) {
		if err != nil {
			if len(ids) != 4 {
				t.Fatalf("error %v after %v", err, ids)
			}
			return
		}
		ids = append(ids, id)
	}
	t.Fatalf("no error; ids %v", ids)
}

// BenchmarkHostPagerWideRanges reports the heap growth while IDs of a tiny
// page with wide ranges are taken (peak-heap-KiB), and the cost per ID.
func BenchmarkHostPagerWideRanges(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serve(wideRangePage)(w, r, nil) }))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL, Username: testUser, Password: testPassword})
	if err != nil {
		b.Fatal(err)
	}
	var growth uint64
	for b.Loop() {
		g, _ := heapGrowth(b, c, 1<<20)
		growth = max(growth, g)
	}
	b.ReportMetric(float64(growth>>10), "peak-heap-KiB")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(1<<20), "ns/ID")
}

// idSeq records a sequence of IDs in constant memory: its length and a
// position-weighted sum.
type idSeq struct {
	n   uint64
	sum uint64
}

func (s *idSeq) add(lo, hi uint64) {
	for id := lo; ; id++ {
		s.n++
		s.sum += id * s.n
		if id == hi {
			return
		}
	}
}

// FuzzValidatorRanges: handing an ID_RANGE to OnRange, or to no hook at
// all, changes nothing but how the IDs arrive: the same IDs in the same
// order, the same summary and the same verdict as OnID taking every ID.
func FuzzValidatorRanges(f *testing.F) {
	for _, s := range []string{
		wideRangePage,
		`<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID> 5 </ID><ID_RANGE>7-9</ID_RANGE><ID_RANGE> 10 - 10 </ID_RANGE></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`,
		`<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID_RANGE>9-7</ID_RANGE></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`,
		`<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID_RANGE>1-16777217</ID_RANGE></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`,
		`<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID_RANGE>18446744073709551614-18446744073709551615</ID_RANGE></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`,
		`<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID_RANGE>0-3</ID_RANGE><ID_RANGE>-</ID_RANGE></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var each, ranged idSeq
		v1 := NewValidator(bytes.NewReader(data), ValidatorConfig{Root: RootHostList, Limits: NoLimits, Waits: DefaultWaits,
			OnID: func(id uint64) { each.add(id, id) }})
		_, err1 := io.Copy(io.Discard, v1)
		v2 := NewValidator(bytes.NewReader(data), ValidatorConfig{Root: RootHostList, Limits: NoLimits, Waits: DefaultWaits,
			OnID: func(id uint64) { ranged.add(id, id) }, OnRange: func(lo, hi uint64) {
				if hi < lo || hi-lo >= valMaxRange {
					t.Fatalf("OnRange(%d, %d)", lo, hi)
				}
				ranged.add(lo, hi)
			}})
		_, err2 := io.Copy(io.Discard, v2)
		if fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("verdicts differ: %v, %v", err1, err2)
		}
		// Without any hook, ranges are only counted.
		v3 := NewValidator(bytes.NewReader(data), ValidatorConfig{Root: RootHostList, Limits: NoLimits, Waits: DefaultWaits})
		if _, err3 := io.Copy(io.Discard, v3); fmt.Sprint(err1) != fmt.Sprint(err3) || !reflect.DeepEqual(v1.Summary(), v3.Summary()) {
			t.Fatalf("without hooks: %v, %+v; with OnID: %v, %+v", err3, v3.Summary(), err1, v1.Summary())
		}
		if each != ranged || !reflect.DeepEqual(v1.Summary(), v2.Summary()) {
			t.Fatalf("IDs %+v, %+v; summaries %+v, %+v", each, ranged, v1.Summary(), v2.Summary())
		}
		if uint64(v1.Summary().Hosts) != each.n {
			t.Fatalf("summary counts %d hosts, %d seen", v1.Summary().Hosts, each.n)
		}
	})
}

// TestValidatorRangesCounted: without OnID, a range is counted, not
// walked: a worker (which passes no hook) reads an answer claiming 2^34
// hosts in a few KiB at once.
func TestValidatorRangesCounted(t *testing.T) {
	var b strings.Builder
	b.WriteString("<" + RootDetections + "><RESPONSE><ID_SET>")
	const n = 1024
	for i := range uint64(n) {
		fmt.Fprintf(&b, "<ID_RANGE>%d-%d</ID_RANGE>", i<<24+1, (i+1)<<24)
	}
	b.WriteString("</ID_SET></RESPONSE></" + RootDetections + ">")
	start := time.Now()
	v := NewValidator(strings.NewReader(b.String()), ValidatorConfig{Root: RootDetections})
	if _, err := io.Copy(io.Discard, v); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %s", took)
	}
	if got := v.Summary(); got.Hosts != n<<24 || got.FirstID != 1 || got.LastID != n<<24 {
		t.Fatalf("summary %+v", got)
	}
}
