package qualysim

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// holdCalls starts n detection calls that the stall fault keeps running
// until release is called; it returns once the simulator counts them.
func holdCalls(t *testing.T, f *fixture, n int) (release func()) {
	t.Helper()
	if err := f.sim.ForceFault(Detection, FaultStall, n); err != nil {
		t.Fatal(err)
	}
	before, stalling := f.sim.Running(Detection), f.sim.stalling.Load()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.srv.URL+detectionPath,
				strings.NewReader("action=list&truncation_limit=0"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Requested-With", "t")
			req.SetBasicAuth(f.sim.Username(), f.sim.Password())
			resp, err := f.srv.Client().Do(req)
			if err != nil {
				return // cancelled before the headers: fine, release() was called
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	eventually(t, "the held calls to stall", func() bool {
		return f.sim.Running(Detection) == before+n && f.sim.stalling.Load() == stalling+int64(n)
	})
	return func() {
		cancel()
		wg.Wait()
		// The client going away ends the stall; the call stops running.
		eventually(t, "the held calls to end", func() bool { return f.sim.Running(Detection) == before })
	}
}

func TestConcurrencyLimit(t *testing.T) {
	cfg := testConfig()
	cfg.ConcurrencyLimit = 2
	cfg.Faults.StallFor = time.Hour
	f := setup(t, cfg)
	release := holdCalls(t, f, 2)

	a := f.call(t, http.MethodPost, detectionPath, form("action", "list", "truncation_limit", "1"))
	d := parseDoc(t, a.body)
	if a.status != 409 || d.code != 1960 || d.items["CALLS_TO_FINISH"] != "1" ||
		d.text != "This API cannot be run again until 1 currently running API instance has finished." {
		t.Errorf("third call: %d, code %d, items %v, %q", a.status, d.code, d.items, d.text)
	}
	if a.header.Get("X-Concurrency-Limit-Limit") != "2" || a.header.Get("X-Concurrency-Limit-Running") != "2" {
		t.Errorf("409 headers: %v", a.header)
	}
	// Limits are per API: the Host List is free.
	if b := f.call(t, http.MethodPost, hostListPath, form("action", "list", "truncation_limit", "1")); b.status != 200 ||
		b.header.Get("X-Concurrency-Limit-Running") != "1" {
		t.Errorf("Host List while detections are full: %d, running %s", b.status, b.header.Get("X-Concurrency-Limit-Running"))
	}
	release()
	if a := f.call(t, http.MethodPost, detectionPath, form("action", "list", "truncation_limit", "1")); a.status != 200 {
		t.Errorf("after the held calls ended: %d", a.status)
	}
	st := f.sim.Stats().Endpoints[Detection]
	if st.PeakRunning != 2 || st.Outcomes["409/1960"] != 1 || st.Outcomes["fault/stall"] != 2 || st.Running != 0 {
		t.Errorf("stats: %+v", st)
	}
}

func TestRateLimitOnTheSimulatedClock(t *testing.T) {
	cfg := testConfig()
	cfg.RateLimit, cfg.RateWindow = 3, time.Hour
	f := setup(t, cfg)
	q := form("action", "list", "details", "None", "truncation_limit", "1")
	for i, remaining := range []string{"2", "1", "0"} {
		a := f.call(t, http.MethodGet, hostListPath, q)
		if a.status != 200 || a.header.Get("X-RateLimit-Remaining") != remaining || a.header.Get("X-RateLimit-Limit") != "3" {
			t.Fatalf("call %d: %d, remaining %s", i+1, a.status, a.header.Get("X-RateLimit-Remaining"))
		}
	}
	refused := func(wait string) {
		t.Helper()
		a := f.call(t, http.MethodGet, hostListPath, q)
		d := parseDoc(t, a.body)
		if a.status != 409 || d.code != 1965 || d.items["SECONDS_TO_WAIT"] != wait || a.header.Get("X-RateLimit-ToWait-Sec") != wait ||
			a.header.Get("X-RateLimit-Remaining") != "0" {
			t.Fatalf("want 409/1965 waiting %s s; got %d, code %d, items %v, headers %v", wait, a.status, d.code, d.items, a.header)
		}
	}
	refused("3600")
	if a := f.call(t, http.MethodGet, detectionPath, form("action", "list", "truncation_limit", "1")); a.status != 200 {
		t.Errorf("detections refused while only the Host List's window is full: %d", a.status)
	}
	f.sim.Advance(30*time.Minute + 15*time.Second)
	refused("1785")
	f.sim.Advance(29*time.Minute + 45*time.Second)
	if a := f.call(t, http.MethodGet, hostListPath, q); a.status != 200 || a.header.Get("X-RateLimit-Remaining") != "2" {
		t.Errorf("after the window slid: %d, remaining %s", a.status, a.header.Get("X-RateLimit-Remaining"))
	}
	if st := f.sim.Stats().Endpoints[HostList]; st.Outcomes["409/1965"] != 2 || st.Outcomes["ok"] != 4 || st.RateUsed != 1 {
		t.Errorf("stats: %+v", st)
	}
}

func TestConcurrencyIsCheckedBeforeRate(t *testing.T) {
	cfg := testConfig()
	cfg.ConcurrencyLimit, cfg.RateLimit = 1, 1
	cfg.Faults.StallFor = time.Hour
	f := setup(t, cfg)
	release := holdCalls(t, f, 1)
	defer release()
	a := f.call(t, http.MethodPost, detectionPath, form("action", "list"))
	if d := parseDoc(t, a.body); a.status != 409 || d.code != 1960 {
		t.Errorf("both limits reached: %d code %d, want 1960", a.status, d.code)
	}
}

func TestDisabledLimitsSendNoHeaders(t *testing.T) {
	f := setup(t, testConfig())
	a := f.call(t, http.MethodPost, detectionPath, form("action", "list", "truncation_limit", "1"))
	for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-Concurrency-Limit-Limit"} {
		if a.header.Get(h) != "" {
			t.Errorf("%s sent with the limit off", h)
		}
	}
}
