package qualysim

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestIDsAscendWithGapsAndHighIDs(t *testing.T) {
	for _, cfg := range []Config{
		{Seed: 1, Hosts: 5000},
		{Seed: 2, Hosts: 5000, IDRun: 1, IDGap: 1},
		{Seed: 3, Hosts: 100, IDGap: Off, HighIDFraction: Off},
		{Seed: 4, Hosts: 10, NewHostsPerDay: 1000},
	} {
		s := New(cfg)
		n := s.HostCount(DefaultStart.Add(10 * 24 * time.Hour))
		var prev uint64
		gaps, high := 0, 0
		for i := range n {
			id := s.HostID(i)
			if i > 0 && id <= prev {
				t.Fatalf("%+v: ID(%d)=%d not above ID(%d)=%d", cfg, i, id, i-1, prev)
			}
			if i > 0 && id > prev+1 {
				gaps++
			}
			if id > 1<<32 {
				high++
			}
			prev = id
		}
		if cfg.IDGap != Off && gaps == 0 {
			t.Errorf("%+v: no gaps between IDs", cfg)
		}
		if cfg.HighIDFraction != Off && high == 0 {
			t.Errorf("%+v: no ID above 2^32", cfg)
		}
		if cfg.HighIDFraction == Off && high != 0 {
			t.Errorf("%+v: %d IDs above 2^32 with HighIDFraction off", cfg, high)
		}
	}
}

func TestLowerBoundMatchesLinearSearch(t *testing.T) {
	s := New(Config{Seed: 9, Hosts: 2000})
	n := s.HostCount(time.Time{})
	r := rand.New(rand.NewPCG(1, 2))
	probes := []uint64{0, 1, s.HostID(0), s.HostID(n - 1), s.HostID(n-1) + 1, 1 << 32, 1<<64 - 1}
	for range 500 {
		i := r.Int64N(n)
		probes = append(probes, s.HostID(i), s.HostID(i)-1, s.HostID(i)+1)
	}
	for _, id := range probes {
		want := int64(0)
		for want < n && s.HostID(want) < id {
			want++
		}
		if got := s.m.lowerBound(id, 0, n); got != want {
			t.Fatalf("lowerBound(%d) = %d, want %d", id, got, want)
		}
	}
}

func TestScheduleLastIsLatestProcessingNotAfterNow(t *testing.T) {
	s := New(Config{Seed: 5, Hosts: 500, NewHostsPerDay: 48})
	for _, at := range []time.Time{DefaultStart, DefaultStart.Add(36 * time.Hour), DefaultStart.Add(-40 * 24 * time.Hour)} {
		now := at.Unix()
		n := s.m.count(now)
		for i := range n {
			sch := s.m.schedule(i)
			last, _ := sch.last(now)
			if last > now || last+sch.period <= now {
				t.Fatalf("host %d at %v: last %d, period %d", i, at, last, sch.period)
			}
			if sch.period > int64(s.cfg.ProcessedSpan/time.Second) {
				t.Fatalf("host %d: period %d beyond the span", i, sch.period)
			}
			if i >= s.cfg.Hosts && last < sch.origin {
				t.Fatalf("new host %d processed at %d before it was created at %d", i, last, sch.origin)
			}
		}
	}
}

func TestNewHostsAppearAboveTheMax(t *testing.T) {
	f := setup(t, Config{Seed: 11, Hosts: 200, NewHostsPerDay: 24, ConcurrencyLimit: Off, RateLimit: Off})
	before := collectIDs(f.sim.Hosts(Filter{}))
	if len(before) != 200 {
		t.Fatalf("%d hosts at start, want 200", len(before))
	}
	f.sim.Advance(12 * time.Hour)
	after := collectIDs(f.sim.Hosts(Filter{}))
	if len(after) != 212 {
		t.Fatalf("%d hosts after 12 h at 24/day, want 212", len(after))
	}
	if !slices.Equal(after[:200], before) || after[200] <= before[199] {
		t.Fatal("new hosts must keep the old IDs and take IDs above them")
	}
	// A new host is processed when created, so a window over the last 12
	// hours holds all of them.
	win := collectIDs(f.sim.HostListTruth(DefaultStart, DefaultStart.Add(12*time.Hour+time.Second)))
	for _, id := range after[200:] {
		if _, ok := slices.BinarySearch(win, id); !ok {
			t.Fatalf("new host %d missing from the window since its creation", id)
		}
	}
}

func TestDetectionCountsAreSkewed(t *testing.T) {
	s := New(Config{Seed: 3, Hosts: 20000})
	zero, total, maxN := 0, 0, 0
	for i := range int64(20000) {
		n := s.m.ndet(i)
		if n == 0 {
			zero++
		}
		total += n
		maxN = max(maxN, n)
	}
	if zero < 1500 || zero > 2500 {
		t.Errorf("%d of 20000 hosts without detections, want about 10%%", zero)
	}
	mean := float64(total) / float64(20000-zero)
	if mean < 8 || mean > 18 {
		t.Errorf("mean detections %.1f, want about 12", mean)
	}
	if maxN < 200 {
		t.Errorf("largest host has %d detections; the tail is not heavy", maxN)
	}
}

func TestAppendTimeMatchesTimeFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	secs := []int64{0, -1, 86399, 86400, 951782400 /* 2000-02-29 */, 4102444799, -62135596800}
	for range 10000 {
		secs = append(secs, r.Int64N(4102444800))
	}
	for _, s := range secs {
		want := time.Unix(s, 0).UTC().Format("2006-01-02T15:04:05Z")
		if got := string(appendTime(nil, s)); got != want {
			t.Fatalf("appendTime(%d) = %s, want %s", s, got, want)
		}
	}
}

func TestCorpusCannotCloseCDATA(t *testing.T) {
	c := newCorpus(42, 400)
	if bytes.ContainsRune(c.text, ']') {
		t.Fatal("corpus holds ']'")
	}
	for _, want := range []string{"\t", "\n", "&lt;", "&quot;", "&apos;"} {
		if !bytes.Contains(c.text, []byte(want)) {
			t.Errorf("corpus lacks %q", want)
		}
	}
	var sum int
	for i := range uint64(10000) {
		sum += len(c.slice(mix(i)))
	}
	if mean := sum / 10000; mean < 350 || mean > 450 {
		t.Errorf("mean RESULTS length %d, want about 400", mean)
	}
}

func TestParseIDs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []IDRange
		err  bool
	}{
		{in: "5", want: []IDRange{{5, 5}}},
		{in: "9,1-3,2,4, 7-8", want: []IDRange{{1, 4}, {7, 9}}},
		{in: "4294967296-4294967300", want: []IDRange{{1 << 32, 1<<32 + 4}}},
		{in: "abc123", err: true},
		{in: "0", err: true},
		{in: "", err: true},
		{in: "1,", err: true},
		{in: "5-3", err: true},
		{in: "1-2-3", err: true},
		{in: "-4", err: true},
		{in: "+4", err: true},
		{in: "18446744073709551616", err: true},
	} {
		got, err := ParseIDs(tc.in)
		if (err != nil) != tc.err || (!tc.err && !slices.Equal(got, tc.want)) {
			t.Errorf("ParseIDs(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	_, err := ParseIDs("abc123")
	if want := "parameter ids has invalid value: abc123 (neither a positive integer nor a range: abc123)"; err == nil || err.Error() != want {
		t.Errorf("error text %q, want the recorded Qualys text %q", err, want)
	}
}

func FuzzParseIDs(f *testing.F) {
	for _, s := range []string{"1", "1-5,7", "abc", "3-1", "1,,2", " 4 , 9-10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseIDs(s)
		if err != nil {
			return
		}
		for i, r := range rs {
			if r.First == 0 || r.First > r.Last {
				t.Fatalf("bad range %v from %q", r, s)
			}
			if i > 0 && r.First <= rs[i-1].Last+1 {
				t.Fatalf("ranges %v not sorted and merged from %q", rs, s)
			}
		}
	})
}

func TestFaultDrawsAreSeededAndSpread(t *testing.T) {
	draws := func(seed uint64) []FaultKind {
		s := New(Config{Seed: seed, Faults: Faults{Prob: Spread(0.35)}})
		var ks []FaultKind
		for range 2000 {
			ks = append(ks, s.faults.decide(s.m, epDetection).outcome)
		}
		return ks
	}
	a, b, c := draws(1), draws(1), draws(2)
	if !slices.Equal(a, b) {
		t.Fatal("same seed, different fault sequence")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds, same fault sequence")
	}
	counts := map[FaultKind]int{}
	for _, k := range a {
		counts[k]++
	}
	if n := 2000 - counts[""]; n < 600 || n > 800 {
		t.Errorf("%d faults in 2000 draws at p=0.35", n)
	}
	for _, k := range OutcomeFaults {
		if counts[k] < 50 {
			t.Errorf("fault %s drawn %d times in 2000, want about 100", k, counts[k])
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Hosts: -1},
		{MaxDetections: 70000},
		{IDRun: -2},
		{Faults: Faults{Prob: map[FaultKind]float64{"500": 0.7, "reset": 0.5}}},
		{Faults: Faults{Prob: map[FaultKind]float64{"boom": 0.1}}},
		{Hosts: 1 << 30, IDGap: 100}, // low IDs would run into the high range
		{Overhead: -time.Second},
		{PerHostCost: -time.Millisecond},
		{PerHostCost: 2 * time.Second},
	} {
		if c.Validate() == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}

// bufSink keeps what is written.
type bufSink struct{ bytes.Buffer }

func (b *bufSink) write(p []byte) error { b.Write(p); return nil }
func (b *bufSink) beforeClose() error   { return nil }

// FuzzRequest: whatever the query, parsing never panics, and a request
// that is accepted yields a well-formed document (no parameter can break
// the WARNING URL's CDATA).
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		"action=list&details=None&truncation_limit=3",
		"action=list&truncation_limit=2&show_tags=]]>&ids=1-99999999999",
		"action=list&status=Fixed&show_igs=1&truncation_limit=1&id_min=10000050",
		"action=list&vm_processed_after=2025-12-31T10:00:00Z&echo_request=1&truncation_limit=1",
		"action=list&ids=abc&%zz",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	s := New(Config{Seed: 1, Hosts: 40, MeanDetections: 2, ResultsSize: 50})
	f.Fuzz(func(t *testing.T, raw string, detections bool) {
		ps, err := parseParams(raw, nil)
		if err != nil {
			return
		}
		ep := epHostList
		if detections {
			ep = epDetection
		}
		req, aerr := parseRequest(ep, ps)
		if aerr != nil {
			if aerr.code == 0 || simpleReturn("http://x", 0, aerr.code, aerr.text, nil, false) == nil {
				t.Fatal("refusal without a code")
			}
			if _, err := decodeDoc(simpleReturn("http://x", 0, aerr.code, aerr.text, nil, true)); err != nil {
				t.Fatalf("refusal document does not parse: %v", err)
			}
			return
		}
		sink := &bufSink{}
		o := &out{sink: sink}
		pg := page{base: "http://127.0.0.1:1", path: detectionPath, now: DefaultStart.Unix()}
		if detections {
			s.writeDetections(o, req, pg)
		} else {
			s.writeHostList(o, req, pg)
		}
		if _, err := decodeDoc(sink.Bytes()); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
	})
}
