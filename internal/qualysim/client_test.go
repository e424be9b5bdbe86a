package qualysim_test

import (
	"context"
	"errors"
	"io"
	"iter"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
)

// The simulator against the real client: what qfetch will see.

func serve(t *testing.T, cfg qualysim.Config) (*qualysim.Sim, *httptest.Server) {
	t.Helper()
	sim := qualysim.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close)
	return sim, srv
}

func client(t *testing.T, srv *httptest.Server, sim *qualysim.Sim, edit func(*qualys.Config)) *qualys.Client {
	t.Helper()
	cfg := qualys.Config{BaseURL: srv.URL, Username: sim.Username(), Password: sim.Password()}
	if edit != nil {
		edit(&cfg)
	}
	c, err := qualys.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClientPagesEveryHost walks a million-host Host List with the
// client's pager and compares it, ID by ID, with the truth — neither side
// collects the IDs.
func TestClientPagesEveryHost(t *testing.T) {
	hosts := int64(1_000_000)
	if testing.Short() || qualysim.RaceEnabled {
		hosts = 100_000
	}
	sim, srv := serve(t, qualysim.Config{Seed: 21, Hosts: hosts, ConcurrencyLimit: qualysim.Off, RateLimit: qualysim.Off})
	c := client(t, srv, sim, nil)
	for _, tc := range []struct {
		name  string
		after time.Time
		page  int
	}{
		{"all hosts", time.Time{}, 100_000},
		{"last two days", qualysim.DefaultStart.Add(-48 * time.Hour), 30_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, stop := iter.Pull(sim.HostListTruth(tc.after, time.Time{}))
			defer stop()
			var n int64
			for id, err := range c.HostPager(qualys.HostListQuery{ProcessedAfter: tc.after, PageSize: tc.page}, nil).All(context.Background()) {
				if err != nil {
					t.Fatalf("after %d IDs: %v", n, err)
				}
				want, ok := next()
				if !ok || id != want {
					t.Fatalf("ID #%d: got %d, truth %d (%v)", n, id, want, ok)
				}
				n++
			}
			if extra, ok := next(); ok {
				t.Fatalf("pager stopped after %d IDs; the truth goes on with %d", n, extra)
			}
			if tc.after.IsZero() && n != hosts {
				t.Fatalf("%d IDs, want %d", n, hosts)
			}
		})
	}
}

// TestClientPagerRetriesAFaultyPage: a page reset mid-way yields a
// retryable error; continuing the loop re-reads the page without repeats.
func TestClientPagerRetriesAFaultyPage(t *testing.T) {
	sim, srv := serve(t, qualysim.Config{Seed: 4, Hosts: 50_000, ConcurrencyLimit: qualysim.Off, RateLimit: qualysim.Off,
		Faults: qualysim.Faults{BodyOffsetMax: 100_000}})
	c := client(t, srv, sim, nil)
	for _, k := range []qualysim.FaultKind{qualysim.FaultReset, qualysim.FaultCut, qualysim.Fault503} {
		_ = sim.ForceFault(qualysim.HostList, k, 1)
	}
	next, stop := iter.Pull(sim.HostListTruth(time.Time{}, time.Time{}))
	defer stop()
	faults := 0
	for id, err := range c.HostPager(qualys.HostListQuery{PageSize: 20_000}, nil).All(context.Background()) {
		if err != nil {
			if failure.ClassOf(err) != failure.ClassRetryable {
				t.Fatalf("fault classified %v: %v", failure.ClassOf(err), err)
			}
			faults++
			continue
		}
		if want, ok := next(); !ok || id != want {
			t.Fatalf("got %d, truth %d", id, want)
		}
	}
	if _, ok := next(); ok || faults != 3 {
		t.Fatalf("pager ended early or saw %d faults, want 3", faults)
	}
}

// TestClientReadsDetectionsAsTheTruthSays sends batches as a worker would
// and checks hosts and detection counts against the truth.
func TestClientReadsDetectionsAsTheTruthSays(t *testing.T) {
	sim, srv := serve(t, qualysim.Config{Seed: 8, Hosts: 2500, MeanDetections: 4, ResultsSize: 100,
		ConcurrencyLimit: qualysim.Off, RateLimit: qualysim.Off})
	c := client(t, srv, sim, nil)
	after := qualysim.DefaultStart.Add(-5 * 24 * time.Hour)
	var ids []uint64
	for id := range sim.HostListTruth(after, time.Time{}) {
		ids = append(ids, id)
	}
	for start := 0; start < len(ids); start += 1000 {
		batch := ids[start:min(start+1000, len(ids))]
		rs, _ := qualysim.ParseIDs(hostids.Of(batch).String())
		truth := sim.DetectionCounts(qualysim.Filter{IDs: rs, After: after, Statuses: qualysim.AllStatuses})
		truthDets := 0
		for _, n := range truth {
			truthDets += n
		}
		for _, limit := range []int{0, 333} { // the whole batch, and pages by the WARNING
			pager := c.DetectionPager(qualys.DetectionQuery{IDs: batch, ProcessedAfter: after, TruncationLimit: limit})
			var hosts []uint64
			dets, pages := 0, 0
			for !pager.Done() {
				pages++
				resp, err := pager.Open(context.Background(), func(id uint64) { hosts = append(hosts, id) })
				if err != nil {
					t.Fatal(err)
				}
				_, err = io.Copy(io.Discard, resp)
				resp.Close()
				if err != nil {
					t.Fatalf("batch at %d, page %d: %v", start, pages, err)
				}
				dets += resp.Summary().Detections
				if err := pager.Advance(resp); err != nil {
					t.Fatal(err)
				}
			}
			if len(hosts) != len(truth) || dets != truthDets || !slices.IsSorted(hosts) {
				t.Fatalf("batch at %d, limit %d: %d hosts, %d detections; truth %d, %d", start, limit, len(hosts), dets, len(truth), truthDets)
			}
			for _, h := range hosts {
				if _, ok := truth[h]; !ok {
					t.Fatalf("host %d returned but not in the truth", h)
				}
			}
			if limit > 0 && len(truth) > limit && pages < 2 {
				t.Fatalf("limit %d over %d hosts: %d page(s)", limit, len(truth), pages)
			}
		}
	}
}

// TestValidatorAcceptsEveryDocument runs raw simulator answers through the
// client's streaming validator.
func TestValidatorAcceptsEveryDocument(t *testing.T) {
	sim, srv := serve(t, qualysim.Config{Seed: 2, Hosts: 800, IDRanges: true, ResultsSize: 1500,
		ConcurrencyLimit: qualysim.Off, RateLimit: qualysim.Off})
	for _, tc := range []struct {
		path, query, root string
		hosts, dets       int // -1: take from the truth
	}{
		{"/api/2.0/fo/asset/host/", "action=list&details=None&truncation_limit=0", qualys.RootHostList, 800, 0},
		{"/api/2.0/fo/asset/host/", "action=list&details=None&truncation_limit=100&id_min=20", qualys.RootHostList, 100, 0},
		{"/api/2.0/fo/asset/host/", "action=list&truncation_limit=0", qualys.RootHostList, 800, 0},
		{"/api/2.0/fo/asset/host/", "action=list&vm_processed_after=2031-01-01", qualys.RootHostList, 0, 0},
		{"/api/2.0/fo/asset/host/vm/detection/", "action=list&truncation_limit=0&status=New,Active,Re-Opened,Fixed&show_igs=1&show_reopened_info=1", qualys.RootDetections, -1, -1},
		{"/api/2.0/fo/asset/host/vm/detection/", "action=list&ids=1-9", qualys.RootDetections, 0, 0},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path+"?"+tc.query, nil)
		req.SetBasicAuth(sim.Username(), sim.Password())
		req.Header.Set("X-Requested-With", "t")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		v := qualys.NewValidator(resp.Body, qualys.ValidatorConfig{Root: tc.root, OnID: func(uint64) {}})
		_, err = io.Copy(io.Discard, v)
		resp.Body.Close()
		if err != nil {
			t.Errorf("%s?%s: validator: %v", tc.path, tc.query, err)
			continue
		}
		sum := v.Summary()
		if tc.hosts == -1 {
			counts := sim.DetectionCounts(qualysim.Filter{Statuses: qualysim.AllStatuses, ShowIGs: true})
			tc.hosts, tc.dets = len(counts), 0
			for _, n := range counts {
				tc.dets += n
			}
		}
		if sum.Root != tc.root || sum.Hosts != tc.hosts || sum.Detections != tc.dets {
			t.Errorf("%s?%s: summary %+v, want %d hosts, %d detections", tc.path, tc.query, sum, tc.hosts, tc.dets)
		}
	}
}

// TestClientClassifiesEachFault: every misbehaviour lands in the class the
// foundation issue assigns it.
func TestClientClassifiesEachFault(t *testing.T) {
	type setupFn func(sim *qualysim.Sim, base string) (release func())
	force := func(k qualysim.FaultKind) setupFn {
		return func(sim *qualysim.Sim, _ string) func() {
			_ = sim.ForceFault(qualysim.Detection, k, 1)
			return func() {}
		}
	}
	for _, tc := range []struct {
		name  string
		cfg   func(*qualysim.Config)
		setup setupFn
		ccfg  func(*qualys.Config)
		extra url.Values
		want  failure.Class
		wait  time.Duration // back-pressure wait, when it is known
		is    error         // a sentinel the error must wrap, if any
	}{
		{name: "500", setup: force(qualysim.Fault500), want: failure.ClassRetryable},
		{name: "503", setup: force(qualysim.Fault503), want: failure.ClassRetryable},
		{name: "503 html", cfg: func(c *qualysim.Config) { c.Faults.HTML503 = true }, setup: force(qualysim.Fault503), want: failure.ClassRetryable},
		{name: "999", setup: force(qualysim.Fault999), want: failure.ClassRetryable},
		{name: "200 error doc", setup: force(qualysim.FaultErrorDoc), want: failure.ClassRetryable},
		{name: "reset", setup: force(qualysim.FaultReset), want: failure.ClassRetryable},
		{name: "cut", setup: force(qualysim.FaultCut), want: failure.ClassRetryable, is: qualys.ErrMalformed},
		{name: "stall", setup: force(qualysim.FaultStall), ccfg: func(c *qualys.Config) { c.IdleTimeout = 300 * time.Millisecond },
			want: failure.ClassRetryable, is: qualys.ErrIdleTimeout},
		{name: "409 concurrency", cfg: func(c *qualysim.Config) { c.ConcurrencyLimit = 1 },
			setup: holdOne, want: failure.ClassBackPressure},
		{name: "409 rate", cfg: func(c *qualysim.Config) { c.RateLimit = 1 },
			setup: func(sim *qualysim.Sim, base string) func() { useOne(sim, base); return func() {} }, want: failure.ClassBackPressure, wait: time.Hour},
		{name: "2001 account expired", setup: func(sim *qualysim.Sim, _ string) func() { sim.SetAccountExpired(true); return func() {} },
			want: failure.ClassFleetWide},
		{name: "401 bad login", ccfg: func(c *qualys.Config) { c.Password = "wrong" }, want: failure.ClassFleetWide},
		{name: "401 logins rejected", setup: func(sim *qualysim.Sim, _ string) func() { sim.SetRejectLogins(true); return func() {} },
			want: failure.ClassFleetWide},
		{name: "1905 bad value", extra: url.Values{"status": {"Closed"}}, want: failure.ClassPermanent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := qualysim.Config{Seed: 6, Hosts: 3000, ConcurrencyLimit: qualysim.Off, RateLimit: qualysim.Off,
				Faults: qualysim.Faults{StallFor: time.Hour, BodyOffsetMax: 32 << 10}}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			sim, srv := serve(t, cfg)
			if tc.setup != nil {
				release := tc.setup(sim, srv.URL)
				defer release()
			}
			c := client(t, srv, sim, tc.ccfg)
			var ids []uint64
			for id := range sim.Hosts(qualysim.Filter{}) {
				ids = append(ids, id)
			}
			err := fetch(c, qualys.DetectionQuery{IDs: ids, Extra: tc.extra})
			if err == nil {
				t.Fatal("no error")
			}
			if got := failure.ClassOf(err); got != tc.want {
				t.Fatalf("class %v, want %v: %v", got, tc.want, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error does not wrap %v: %v", tc.is, err)
			}
			if tc.wait > 0 && failure.WaitOf(err) != tc.wait {
				t.Errorf("wait %v, want %v", failure.WaitOf(err), tc.wait)
			}
		})
	}
}

func fetch(c *qualys.Client, q qualys.DetectionQuery) error {
	resp, err := c.Detections(context.Background(), q.Form(), nil)
	if err != nil {
		return err
	}
	defer resp.Close()
	_, err = io.Copy(io.Discard, resp)
	return err
}

// holdOne keeps one detection call running (stalled) until released.
func holdOne(sim *qualysim.Sim, base string) func() {
	_ = sim.ForceFault(qualysim.Detection, qualysim.FaultStall, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/2.0/fo/asset/host/vm/detection/",
			strings.NewReader("action=list&truncation_limit=0"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Requested-With", "t")
		req.SetBasicAuth(sim.Username(), sim.Password())
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	// Poll the live counter: the call runs once admitted.
	deadline := time.Now().Add(10 * time.Second)
	for sim.Running(qualysim.Detection) < 1 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	return func() { cancel(); <-done }
}

// useOne spends the detection API's rate window of one call.
func useOne(sim *qualysim.Sim, base string) {
	req, _ := http.NewRequest(http.MethodGet, base+"/api/2.0/fo/asset/host/vm/detection/?action=list&ids=1", nil)
	req.Header.Set("X-Requested-With", "t")
	req.SetBasicAuth(sim.Username(), sim.Password())
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
