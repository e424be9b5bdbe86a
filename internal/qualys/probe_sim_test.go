package qualys_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
)

// probeSim is a simulator behind a server that records the form of every
// detection call.
type probeSim struct {
	sim    *qualysim.Sim
	client *qualys.Client
	mu     sync.Mutex
	forms  []url.Values
}

func newProbeSim(t *testing.T, cfg qualysim.Config) *probeSim {
	t.Helper()
	p := &probeSim{sim: qualysim.New(cfg)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/2.0/fo/asset/host/vm/detection/" {
			b, err := io.ReadAll(r.Body)
			form, perr := url.ParseQuery(string(b))
			if err != nil || perr != nil {
				t.Errorf("request body: %v, %v", err, perr)
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			p.mu.Lock()
			p.forms = append(p.forms, form)
			p.mu.Unlock()
		}
		p.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(p.sim.Close)
	c, err := qualys.New(qualys.Config{BaseURL: srv.URL, Username: p.sim.Username(), Password: p.sim.Password(), IdleTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p.client = c
	return p
}

func (p *probeSim) lastForm(t *testing.T) url.Values {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.forms) == 0 {
		t.Fatal("no detection call reached the simulator")
	}
	return p.forms[len(p.forms)-1]
}

func probeConfig() qualysim.Config {
	return qualysim.Config{Seed: 3, Hosts: 200, MeanDetections: 3, ResultsSize: 40, RateLimit: qualysim.Off}
}

// TestProbeHealthy: one detection call for one host, no ids, read whole;
// the limit headers come back.
func TestProbeHealthy(t *testing.T) {
	p := newProbeSim(t, probeConfig())
	lim, err := p.client.Probe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if lim.ConcurrencyLimit != 2 {
		t.Errorf("limits = %+v", lim)
	}
	form := p.lastForm(t)
	if _, ok := form["ids"]; ok {
		t.Errorf("the probe names ids: %q", form.Get("ids"))
	}
	if form.Get("truncation_limit") != "1" || form.Get("action") != "list" {
		t.Errorf("probe form %v", form)
	}
	st := p.sim.Stats().Endpoints
	if st[qualysim.Detection].Outcomes["ok"] != 1 || st[qualysim.About].Requests != 0 {
		t.Errorf("simulator saw %v / about %d", st[qualysim.Detection].Outcomes, st[qualysim.About].Requests)
	}
}

// TestProbeWithoutAbout is the case 5: where about.php answers 404,
// Check fails fleet-wide but the probe passes, because it asks what the
// real work asks.
func TestProbeWithoutAbout(t *testing.T) {
	cfg := probeConfig()
	cfg.NoAbout = true
	p := newProbeSim(t, cfg)
	if _, err := p.client.Check(t.Context()); err == nil {
		t.Fatal("Check passed without about.php")
	}
	if _, err := p.client.Probe(t.Context()); err != nil {
		t.Fatalf("probe failed where detection calls work: %v", err)
	}
}

// TestProbeFailures: the probe's error has the class a real call's would.
func TestProbeFailures(t *testing.T) {
	force := func(k qualysim.FaultKind) func(*testing.T, *probeSim) {
		return func(t *testing.T, p *probeSim) {
			if err := p.sim.ForceFault(qualysim.Detection, k, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name  string
		cfg   func(*qualysim.Config)
		setup func(*testing.T, *probeSim)
		class failure.Class
		wait  time.Duration // checked when not 0
		is    error
	}{
		{"401 logins rejected", nil, func(_ *testing.T, p *probeSim) { p.sim.SetRejectLogins(true) }, failure.ClassFleetWide, 0, nil},
		{"account expired", nil, func(_ *testing.T, p *probeSim) { p.sim.SetAccountExpired(true) }, failure.ClassFleetWide, 0, nil},
		{"503", nil, force(qualysim.Fault503), failure.ClassRetryable, 0, nil},
		{"1999 maintenance", nil, force(qualysim.FaultMaintenance), failure.ClassBackPressure, qualys.DefaultWaits.Maintenance, qualys.ErrMaintenance},
		{"cut body", nil, force(qualysim.FaultCut), failure.ClassRetryable, 0, qualys.ErrMalformed},
		{"409/1965 rate limit", func(c *qualysim.Config) { c.RateLimit = 1 }, func(t *testing.T, p *probeSim) {
			if _, err := p.client.Probe(t.Context()); err != nil {
				t.Fatalf("first probe: %v", err)
			}
		}, failure.ClassBackPressure, time.Hour, nil},
		{"409/1960 concurrency", func(c *qualysim.Config) { c.ConcurrencyLimit = 1; c.Faults.StallFor = time.Hour }, func(t *testing.T, p *probeSim) {
			// A call that stalls mid-body holds the only slot.
			force(qualysim.FaultStall)(t, p)
			form := qualys.DetectionQuery{}.Form()
			form.Del("ids")
			resp, err := p.client.Detections(t.Context(), form, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { resp.Close() })
		}, failure.ClassBackPressure, qualys.DefaultWaits.Concurrency, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := probeConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			p := newProbeSim(t, cfg)
			tt.setup(t, p)
			_, err := p.client.Probe(t.Context())
			if got := failure.ClassOf(err); got != tt.class {
				t.Fatalf("class = %v, want %v: %v", got, tt.class, err)
			}
			if tt.wait != 0 && failure.WaitOf(err) != tt.wait {
				t.Fatalf("wait = %v, want %v", failure.WaitOf(err), tt.wait)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("%v is not %v", err, tt.is)
			}
			if got := errors.Is(err, qualys.ErrMaintenance); got != (tt.is == qualys.ErrMaintenance) {
				t.Fatalf("errors.Is(ErrMaintenance) = %v: %v", got, err)
			}
		})
	}
}
