package qualysim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// probeForm is the fleet probe's request: one host, no ids, the default
// output options of a real detection call.
func probeForm() url.Values {
	return form("action", "list", "output_format", "XML", "truncation_limit", "1",
		"status", "New,Active,Re-Opened,Fixed", "show_reopened_info", "1")
}

// TestOneHostWithoutIDs: a detection call naming no ids with
// truncation_limit=1 answers the subscription's first host with detections
// and a WARNING whose URL leads to the second.
func TestOneHostWithoutIDs(t *testing.T) {
	f := setup(t, testConfig())
	var want []uint64
	for id := range f.sim.DetectionTruth(Filter{Statuses: AllStatuses}) {
		if want = append(want, id); len(want) == 2 {
			break
		}
	}
	if len(want) < 2 {
		t.Fatal("subscription too small")
	}
	a := f.call(t, http.MethodPost, detectionPath, probeForm())
	d := parseDoc(t, a.body)
	if a.status != 200 || d.root != "HOST_LIST_VM_DETECTION_OUTPUT" || len(d.hosts) != 1 || d.hosts[0] != want[0] {
		t.Fatalf("got %d %s hosts %v, want [%d]", a.status, d.root, d.hosts, want[0])
	}
	if d.warnCode != 1980 || !strings.Contains(d.warnURL, "id_min=") || strings.Contains(d.warnURL, "ids=") {
		t.Fatalf("warning %d %q", d.warnCode, d.warnURL)
	}
	if next := parseDoc(t, f.getURL(t, d.warnURL).body); len(next.hosts) != 1 || next.hosts[0] != want[1] {
		t.Fatalf("next page hosts %v, want [%d]", next.hosts, want[1])
	}
}

// TestNoAbout: with NoAbout, about.php is a plain 404 that Qualys never
// saw; the API paths answer as before.
func TestNoAbout(t *testing.T) {
	for _, noAbout := range []bool{false, true} {
		cfg := testConfig()
		cfg.NoAbout = noAbout
		f := setup(t, cfg)
		a := f.call(t, http.MethodPost, "/msp/about.php", nil)
		wantStatus, wantCalls := 200, int64(1)
		if noAbout {
			wantStatus, wantCalls = 404, 0
		}
		if a.status != wantStatus || f.sim.Stats().Endpoints[About].Requests != wantCalls {
			t.Errorf("NoAbout %v: about.php answered %d, %d calls counted; want %d, %d",
				noAbout, a.status, f.sim.Stats().Endpoints[About].Requests, wantStatus, wantCalls)
		}
		if a := f.call(t, http.MethodPost, detectionPath, probeForm()); a.status != 200 {
			t.Errorf("NoAbout %v: detection answered %d", noAbout, a.status)
		}
	}
}

// TestMaintenanceFault: HTTP 503 with SIMPLE_RETURN 1999 and the limit
// headers, counted as fault/maintenance; never part of Spread.
func TestMaintenanceFault(t *testing.T) {
	cfg := testConfig()
	cfg.RateLimit = 0 // default on: its headers are expected
	f := setup(t, cfg)
	for _, ep := range []struct {
		ep   Endpoint
		path string
	}{{Detection, detectionPath}, {HostList, hostListPath}} {
		if err := f.sim.ForceFault(ep.ep, FaultMaintenance, 1); err != nil {
			t.Fatal(err)
		}
		a := f.call(t, http.MethodPost, ep.path, form("action", "list", "truncation_limit", "1"))
		d := parseDoc(t, a.body)
		if a.status != 503 || d.root != "SIMPLE_RETURN" || d.code != 1999 || !strings.Contains(d.text, "scheduled maintenance") ||
			a.header.Get("X-RateLimit-Limit") == "" {
			t.Errorf("%s: got %d %s %d %q %v", ep.ep, a.status, d.root, d.code, d.text, a.header)
		}
		if n := f.sim.Stats().Endpoints[ep.ep].Outcomes["fault/maintenance"]; n != 1 {
			t.Errorf("%s: fault/maintenance counted %d times", ep.ep, n)
		}
		if a := f.call(t, http.MethodPost, ep.path, form("action", "list", "truncation_limit", "1")); a.status != 200 {
			t.Errorf("%s: the call after a forced maintenance answered %d", ep.ep, a.status)
		}
	}
	if _, ok := Spread(0.5)[FaultMaintenance]; ok {
		t.Error("Spread includes maintenance")
	}
}

// TestOutage: every call meets the outage's fault until it ends, whatever
// the count; forced faults wait for its end; the newest outage decides.
func TestOutage(t *testing.T) {
	f := setup(t, testConfig())
	q := probeForm()
	status := func(path string) int { return f.call(t, http.MethodPost, path, q).status }

	if err := f.sim.ForceFault(Detection, Fault500, 1); err != nil {
		t.Fatal(err)
	}
	end := f.sim.Outage(Detection, Fault503)
	for i := range 5 {
		if got := status(detectionPath); got != 503 {
			t.Fatalf("call %d during the outage: %d", i, got)
		}
	}
	if got := f.call(t, http.MethodPost, hostListPath, form("action", "list", "truncation_limit", "1")).status; got != 200 {
		t.Fatalf("host list during a detection outage: %d", got)
	}
	endMaint := f.sim.Outage(Detection, FaultMaintenance)
	if a := f.call(t, http.MethodPost, detectionPath, q); a.status != 503 || parseDoc(t, a.body).code != 1999 {
		t.Fatalf("newest outage does not decide: %d %s", a.status, a.body)
	}
	endMaint()
	if got := status(detectionPath); got != 503 {
		t.Fatalf("after the newer outage ended: %d, want the older one's 503", got)
	}
	end()
	end() // idempotent
	if got := status(detectionPath); got != 500 {
		t.Fatalf("the forced fault after the outage: %d, want 500", got)
	}
	if got := status(detectionPath); got != 200 {
		t.Fatalf("after the outage: %d", got)
	}
	if n := f.sim.Stats().Endpoints[Detection].Outcomes["fault/503"]; n != 6 {
		t.Errorf("fault/503 counted %d times, want 6", n)
	}

	for _, bad := range []struct {
		ep   Endpoint
		kind FaultKind
	}{{About, Fault503}, {Detection, "boom"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Outage(%s, %s) did not panic", bad.ep, bad.kind)
				}
			}()
			f.sim.Outage(bad.ep, bad.kind)
		}()
	}
}

// TestOutageSlowsWithoutOutcome: a slow-start outage delays every call and
// leaves the answer whole.
func TestOutageSlowsWithoutOutcome(t *testing.T) {
	cfg := testConfig()
	cfg.Faults.SlowStartFor = 50 * time.Millisecond
	f := setup(t, cfg)
	defer f.sim.Outage(Detection, FaultSlowStart)()
	for range 2 {
		start := time.Now()
		if a := f.call(t, http.MethodPost, detectionPath, probeForm()); a.status != 200 || time.Since(start) < 50*time.Millisecond {
			t.Fatalf("got %d in %v", a.status, time.Since(start))
		}
	}
	if n := f.sim.Stats().Endpoints[Detection].Slowed["slowstart"]; n != 2 {
		t.Errorf("slowed %d calls, want 2", n)
	}
}

// TestOutageControl: the HTTP control starts and ends outages, by id, all
// at once, or after a real time.
func TestOutageControl(t *testing.T) {
	f := setup(t, testConfig())
	post := func(path string, v any) int {
		t.Helper()
		resp, err := f.srv.Client().Post(f.srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil && resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode
	}
	status := func() int { return f.call(t, http.MethodPost, detectionPath, probeForm()).status }

	var started struct{ Outage int }
	if code := post("/__sim/faults/outage?endpoint=detection&kind=maintenance", &started); code != 200 || started.Outage == 0 {
		t.Fatalf("start: %d %+v", code, started)
	}
	if got := status(); got != 503 {
		t.Fatalf("during the outage: %d", got)
	}
	var ended struct{ Ended int }
	if post("/__sim/faults/outage/end?id="+strconv.Itoa(started.Outage), &ended); ended.Ended != 1 || status() != 200 {
		t.Fatalf("end by id: %+v", ended)
	}

	post("/__sim/faults/outage?endpoint=detection&kind=503", nil)
	post("/__sim/faults/outage?endpoint=detection&kind=500", nil)
	if post("/__sim/faults/outage/end", &ended); ended.Ended != 2 || status() != 200 {
		t.Fatalf("end all: %+v", ended)
	}

	post("/__sim/faults/outage?endpoint=detection&kind=503&for=100ms", nil)
	if got := status(); got != 503 {
		t.Fatalf("during a timed outage: %d", got)
	}
	eventually(t, "the timed outage to end", func() bool { return status() == 200 })

	for _, bad := range []string{
		"/__sim/faults/outage?endpoint=about&kind=503",
		"/__sim/faults/outage?endpoint=detection&kind=boom",
		"/__sim/faults/outage?endpoint=detection&kind=503&for=soon",
		"/__sim/faults/outage/end?id=x",
	} {
		if code := post(bad, nil); code != 400 {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
}

// TestPeakRunningWithoutConcurrencyLimit: with the limit off, the stats
// still count calls running at once, so that tests can check a fleet cap.
func TestPeakRunningWithoutConcurrencyLimit(t *testing.T) {
	cfg := testConfig() // ConcurrencyLimit: Off
	cfg.Faults.StallFor = time.Hour
	f := setup(t, cfg)
	release := holdCalls(t, f, 3)
	st := f.sim.Stats().Endpoints[Detection]
	if st.Running != 3 || st.PeakRunning != 3 {
		t.Fatalf("running %d, peak %d; want 3, 3", st.Running, st.PeakRunning)
	}
	release()
	if st := f.sim.Stats().Endpoints[Detection]; st.Running != 0 || st.PeakRunning != 3 {
		t.Fatalf("after release: running %d, peak %d; want 0, 3", st.Running, st.PeakRunning)
	}
}
