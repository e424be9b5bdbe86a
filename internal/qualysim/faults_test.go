package qualysim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestEachFaultAsARawClientSeesIt forces every fault once, on a long body
// (the fault strikes at its offset) and on a one-host body (it strikes
// before the closing tag), and looks at the bytes.
func TestEachFaultAsARawClientSeesIt(t *testing.T) {
	cfg := testConfig()
	cfg.Faults = Faults{StallFor: 150 * time.Millisecond, SlowStartFor: 100 * time.Millisecond, Bandwidth: 8 << 20,
		BodyOffsetMax: 16 << 10}
	f := setup(t, cfg)
	oneHost := strconv.FormatUint(collectIDs(f.sim.Hosts(Filter{}))[0], 10)
	bodies := map[string]struct {
		ep   Endpoint
		path string
		q    func() map[string][]string
	}{
		"long detections": {Detection, detectionPath, func() map[string][]string {
			return form("action", "list", "truncation_limit", "0", "status", "New,Active,Re-Opened,Fixed")
		}},
		"short detections": {Detection, detectionPath, func() map[string][]string {
			return form("action", "list", "ids", oneHost, "status", "New,Active,Re-Opened,Fixed")
		}},
		"host list": {HostList, hostListPath, func() map[string][]string {
			return form("action", "list", "details", "None", "truncation_limit", "0")
		}},
	}
	for name, b := range bodies {
		clean := f.call(t, http.MethodPost, b.path, b.q())
		cleanDoc := parseDoc(t, clean.body)
		closing := []byte("</" + cleanDoc.root + ">")

		for _, tc := range []struct {
			kind  FaultKind
			check func(t *testing.T, a answer, took time.Duration)
		}{
			{Fault500, func(t *testing.T, a answer, _ time.Duration) {
				if a.status != 500 || !bytes.Contains(a.body, []byte("<title>500 Internal Server Error</title>")) {
					t.Errorf("got %d %q", a.status, clip(string(a.body), 100))
				}
			}},
			{Fault503, func(t *testing.T, a answer, _ time.Duration) {
				if a.status != 503 || len(a.body) != 0 {
					t.Errorf("got %d with %d body bytes", a.status, len(a.body))
				}
			}},
			{FaultErrorDoc, func(t *testing.T, a answer, _ time.Duration) {
				d := parseDoc(t, a.body)
				if a.status != 200 || d.root != "SIMPLE_RETURN" || d.code != 1981 {
					t.Errorf("got %d %s %d", a.status, d.root, d.code)
				}
			}},
			{Fault999, func(t *testing.T, a answer, _ time.Duration) {
				d := parseDoc(t, a.body)
				if a.status != 500 || d.root != "GENERIC_RETURN" || d.retNumber != 999 {
					t.Errorf("got %d %s %d", a.status, d.root, d.retNumber)
				}
			}},
			{FaultReset, func(t *testing.T, a answer, _ time.Duration) {
				if a.status != 200 || !errors.Is(a.err, io.ErrUnexpectedEOF) || len(a.body) < 64 || len(a.body) >= len(clean.body) {
					t.Errorf("got %d, err %v, %d of %d bytes", a.status, a.err, len(a.body), len(clean.body))
				}
				if !bytes.HasPrefix(clean.body, a.body) {
					t.Error("the bytes before the reset differ from the clean body")
				}
			}},
			{FaultCut, func(t *testing.T, a answer, _ time.Duration) {
				if a.status != 200 || a.err != nil || len(a.body) < 64 || bytes.Contains(a.body, closing) {
					t.Errorf("got %d, err %v, %d bytes, closing tag present %v", a.status, a.err, len(a.body), bytes.Contains(a.body, closing))
				}
				if !bytes.HasPrefix(clean.body, a.body) {
					t.Error("the bytes before the cut differ from the clean body")
				}
				if _, err := decodeDoc(a.body); err == nil {
					t.Error("a cut body parses")
				}
			}},
			{FaultStall, func(t *testing.T, a answer, took time.Duration) {
				if a.status != 200 || a.err != nil || !bytes.Equal(a.body, clean.body) || took < 150*time.Millisecond {
					t.Errorf("got %d, err %v, same body %v, in %v", a.status, a.err, bytes.Equal(a.body, clean.body), took)
				}
			}},
			{FaultSlowStart, func(t *testing.T, a answer, took time.Duration) {
				if a.status != 200 || !bytes.Equal(a.body, clean.body) || took < 100*time.Millisecond {
					t.Errorf("got %d, same body %v, in %v", a.status, bytes.Equal(a.body, clean.body), took)
				}
			}},
			{FaultBandwidth, func(t *testing.T, a answer, took time.Duration) {
				_, burst := newBandwidth(8 << 20)
				least := time.Duration(float64(len(clean.body)-burst) / float64(8<<20) * float64(time.Second))
				if a.status != 200 || !bytes.Equal(a.body, clean.body) || took < least {
					t.Errorf("got %d, same body %v, %d bytes in %v, want ≥ %v", a.status, bytes.Equal(a.body, clean.body), len(a.body), took, least)
				}
			}},
		} {
			t.Run(name+"/"+string(tc.kind), func(t *testing.T) {
				if err := f.sim.ForceFault(b.ep, tc.kind, 1); err != nil {
					t.Fatal(err)
				}
				before := f.sim.Stats().Endpoints[b.ep]
				start := time.Now()
				a := f.call(t, http.MethodPost, b.path, b.q())
				tc.check(t, a, time.Since(start))
				after := f.sim.Stats().Endpoints[b.ep]
				key, m := "fault/"+string(tc.kind), after.Outcomes
				if tc.kind == FaultSlowStart || tc.kind == FaultBandwidth {
					key, m = string(tc.kind), after.Slowed
				}
				if m[key] != before.Outcomes[key]+before.Slowed[key]+1 {
					t.Errorf("stats did not count %s: %v / %v", key, after.Outcomes, after.Slowed)
				}
				// The fault was used up: the next call is clean.
				if n := f.call(t, http.MethodPost, b.path, b.q()); !bytes.Equal(n.body, clean.body) {
					t.Error("the call after a forced fault is not clean")
				}
			})
		}
	}
}

func TestHTML503(t *testing.T) {
	cfg := testConfig()
	cfg.Faults.HTML503 = true
	f := setup(t, cfg)
	_ = f.sim.ForceFault(HostList, Fault503, 1)
	a := f.call(t, http.MethodPost, hostListPath, form("action", "list"))
	if a.status != 503 || !bytes.Contains(a.body, []byte("<title>503 Service Unavailable</title>")) {
		t.Errorf("got %d %q", a.status, a.body)
	}
}

func TestFleetWideSwitches(t *testing.T) {
	cfg := testConfig()
	cfg.RateLimit = 0 // default on: headers expected on normal answers
	f := setup(t, cfg)
	q := form("action", "list", "truncation_limit", "1")

	f.sim.SetAccountExpired(true)
	for _, p := range []string{detectionPath, hostListPath, "/msp/about.php"} {
		a := f.call(t, http.MethodPost, p, q)
		d := parseDoc(t, a.body)
		if a.status != 200 || d.code != 2001 || d.text != "This account has expired." ||
			a.header.Get("X-RateLimit-Limit") != "" || a.header.Get("Content-Type") != "text/xml;charset=UTF-8" {
			t.Errorf("%s with the account expired: %d %d %q %v", p, a.status, d.code, d.text, a.header)
		}
	}
	f.sim.SetAccountExpired(false)
	if a := f.call(t, http.MethodPost, detectionPath, q); a.status != 200 || parseDoc(t, a.body).code != 0 {
		t.Errorf("after switching expiry off: %d", a.status)
	}

	f.sim.SetRejectLogins(true)
	if a := f.call(t, http.MethodPost, detectionPath, q); a.status != 401 || parseDoc(t, a.body).code != 2000 {
		t.Errorf("logins rejected: %d", a.status)
	}
	f.sim.SetRejectLogins(false)
	if a := f.call(t, http.MethodPost, detectionPath, q); a.status != 200 {
		t.Errorf("logins accepted again: %d", a.status)
	}
}

// TestRandomFaultsRepeatWithTheSeed runs the same request sequence against
// two simulators with the same seed and compares what a client saw.
func TestRandomFaultsRepeatWithTheSeed(t *testing.T) {
	run := func() []string {
		cfg := testConfig()
		cfg.Faults = Faults{Prob: Spread(0.6), StallFor: time.Millisecond, BodyOffsetMax: 4096}
		cfg.Faults.Prob[FaultSlowStart] = 0.2
		cfg.Faults.SlowStartFor = time.Millisecond
		f := setup(t, cfg)
		var seen []string
		for i := range 150 {
			a := f.call(t, http.MethodPost, detectionPath, form("action", "list", "truncation_limit", strconv.Itoa(1+i%7)))
			sum := sha256.Sum256(bytes.ReplaceAll(a.body, []byte(f.srv.URL), nil)) // ports differ
			seen = append(seen, strconv.Itoa(a.status)+" "+strconv.FormatBool(a.err == nil)+" "+hex.EncodeToString(sum[:8]))
		}
		return seen
	}
	a, b := run(), run()
	if !slices.Equal(a, b) {
		t.Fatal("same seed and requests, different faults")
	}
	distinct := map[string]bool{}
	for _, s := range a {
		distinct[s[:3]] = true
	}
	if !distinct["200"] || !distinct["500"] || !distinct["503"] {
		t.Errorf("statuses seen: %v", distinct)
	}
}

// TestCloseEndsStallsAndAnswersGoOn: Close (server shutdown) releases a
// stalled body, which then completes, and later calls are served.
func TestCloseEndsStallsAndAnswersGoOn(t *testing.T) {
	cfg := testConfig()
	cfg.Faults.StallFor = time.Hour
	f := setup(t, cfg)
	q := form("action", "list", "truncation_limit", "0")
	clean := f.call(t, http.MethodPost, detectionPath, q)
	_ = f.sim.ForceFault(Detection, FaultStall, 1)
	got := make(chan answer, 1)
	go func() {
		a, err := f.tryCall(t.Context(), http.MethodPost, detectionPath, q.Encode())
		if err != nil {
			a.err = err
		}
		got <- a
	}()
	eventually(t, "the call to stall", func() bool { return f.sim.stalling.Load() == 1 })
	f.sim.Close()
	a := <-got
	if a.status != 200 || a.err != nil || !bytes.Equal(a.body, clean.body) {
		t.Errorf("stalled call after Close: %d, %v, whole body %v", a.status, a.err, bytes.Equal(a.body, clean.body))
	}
	if b := f.call(t, http.MethodPost, detectionPath, q); !bytes.Equal(b.body, clean.body) {
		t.Error("a call after Close is not served whole")
	}
}

// TestStallLaterPages: Faults.StallLaterPages stalls only a later page
// (id_min set) of a call whose ids select enough hosts, so that a batch
// too big to page through can be split into halves that go through; it
// travels through /__sim/faults like the other settings.
func TestStallLaterPages(t *testing.T) {
	const stall, least = 150 * time.Millisecond, 60
	f := setup(t, testConfig())
	ids := collectIDs(f.sim.Hosts(Filter{}))
	list := func(n int) string {
		var s []string
		for _, id := range ids[:n] {
			s = append(s, strconv.FormatUint(id, 10))
		}
		return strings.Join(s, ",")
	}
	later := strconv.FormatUint(ids[10], 10)
	tests := []struct {
		name      string
		setting   int
		ids       string // "": no ids, the whole subscription
		idMin     string
		wantStall bool
	}{
		{"first page of a big batch", least, list(100), "", false},
		{"later page of a big batch", least, list(100), later, true},
		{"later page of a batch of exactly the least", least, list(least), later, true},
		{"later page of a small batch", least, list(least - 1), later, false},
		{"later page without ids", least, "", later, true},
		{"later page, setting off", 0, list(100), later, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := f.sim.SetFaults(Faults{StallFor: stall, StallLaterPages: tt.setting}); err != nil {
				t.Fatal(err)
			}
			q := form("action", "list", "truncation_limit", "5", "status", "New,Active,Re-Opened,Fixed")
			if tt.ids != "" {
				q.Set("ids", tt.ids)
			}
			if tt.idMin != "" {
				q.Set("id_min", tt.idMin)
			}
			before := f.sim.Stats().Endpoints[Detection].Outcomes["fault/stall"]
			start := time.Now()
			a := f.call(t, http.MethodPost, detectionPath, q)
			took := time.Since(start)
			stalled := f.sim.Stats().Endpoints[Detection].Outcomes["fault/stall"] - before
			if d := parseDoc(t, a.body); a.status != 200 || a.err != nil || d.warnURL == "" {
				t.Fatalf("got %d, err %v, WARNING URL %q; want a whole truncated page", a.status, a.err, d.warnURL)
			}
			if want := map[bool]int64{true: 1, false: 0}[tt.wantStall]; stalled != want {
				t.Errorf("%d stalls counted, want %d", stalled, want)
			}
			if tt.wantStall && took < stall {
				t.Errorf("a stalled call took %v, less than the stall %v", took, stall)
			}
		})
	}

	in := Faults{StallLaterPages: least}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Faults
	if err := json.Unmarshal(b, &out); err != nil || out.StallLaterPages != least {
		t.Errorf("JSON round trip: %s gives %+v, %v", b, out, err)
	}
	if err := f.sim.SetFaults(Faults{StallLaterPages: -1}); err == nil {
		t.Error("a negative StallLaterPages was accepted")
	}
}
