package qualys_test

import (
	"context"
	"net/http/httptest"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
)

func simClient(t *testing.T, cfg qualysim.Config) (*qualys.Client, *qualysim.Sim) {
	t.Helper()
	sim := qualysim.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close)
	c, err := qualys.New(qualys.Config{BaseURL: srv.URL, Username: sim.Username(), Password: sim.Password(), IdleTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, sim
}

// TestHostPagerReadsEveryDetailLevel: the IDs of a paged Host List come
// out the same from ID_SET/ID, ID_SET/ID_RANGE (None) and HOST_LIST/HOST/ID
// (Basic, All), whatever else a HOST holds (its DNS_DATA, USER_DEF, ID-like
// ASSET_GROUP_IDS), and each stored page counts its hosts.
func TestHostPagerReadsEveryDetailLevel(t *testing.T) {
	for _, ranges := range []bool{false, true} {
		c, sim := simClient(t, qualysim.Config{Seed: 5, Hosts: 4000, IDRanges: ranges, ConcurrencyLimit: qualysim.Off, RateLimit: qualysim.Off})
		before := sim.Clock().Now().Add(-2 * 24 * time.Hour)
		want := slices.Collect(sim.Hosts(qualysim.Filter{Before: before}))
		if len(want) < 1000 {
			t.Fatalf("window holds %d hosts; want a sizeable one", len(want))
		}
		for _, details := range qualys.HostListDetails {
			p := c.HostPager(qualys.HostListQuery{ProcessedBefore: before, PageSize: 700, Details: details}, nil)
			var got []uint64
			for id, err := range p.All(context.Background()) {
				if err != nil {
					t.Fatalf("details=%s: %v", details, err)
				}
				got = append(got, id)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("details=%s, ranges %v: %d IDs, truth %d (or another order)", details, ranges, len(got), len(want))
			}
			if pages := p.Cursor().Page; pages != (len(want)+699)/700 {
				t.Errorf("details=%s: %d pages for %d hosts", details, pages, len(want))
			}
		}
	}
}

// TestHostPagerDetailedPageFlat: a single Host List page of 60,000 HOSTs
// with details=All (tens of MB) is read with the heap flat: IDs are handed
// out as the page streams, nothing holds the page (I4).
func TestHostPagerDetailedPageFlat(t *testing.T) {
	c, sim := simClient(t, qualysim.Config{Seed: 5, Hosts: 60_000, ConcurrencyLimit: qualysim.Off, RateLimit: qualysim.Off})
	runtime.GC()
	var base, m runtime.MemStats
	runtime.ReadMemStats(&base)
	var growth uint64
	n := 0
	for _, err := range c.HostPager(qualys.HostListQuery{Details: qualys.DetailsAll}, nil).All(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n%4096 == 0 {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > base.HeapInuse {
				growth = max(growth, m.HeapInuse-base.HeapInuse)
			}
		}
	}
	if want := sim.HostCount(time.Time{}); int64(n) != want {
		t.Fatalf("%d IDs, want %d", n, want)
	}
	t.Logf("60,000 hosts, details=All, one page: heap in use grew by at most %d KiB", growth>>10)
	if growth > 16<<20 {
		t.Fatalf("heap grew by %d MiB, want it flat (under 16 MiB)", growth>>20)
	}
}

// countingPage counts the bytes teed to it, as the planner's page writer
// stores them.
type countingPage struct{ n *int64 }

func (c countingPage) Write(p []byte) (int, error) { *c.n += int64(len(p)); return len(p), nil }
func (countingPage) Close(int) error               { return nil }
func (countingPage) Abort(error)                   {}

// BenchmarkHostPagerDetails is the planner's Host List walk over 100,000
// hosts in pages of 100,000 (its defaults) at each detail level: the bytes
// Qualys sends (hostlist-MiB) and the time to read the IDs out of them,
// the simulator generating in the same process.
func BenchmarkHostPagerDetails(b *testing.B) {
	sim := qualysim.New(qualysim.Config{Seed: 1, Hosts: 100_000, ConcurrencyLimit: qualysim.Off, RateLimit: qualysim.Off})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	defer sim.Close()
	c, err := qualys.New(qualys.Config{BaseURL: srv.URL, Username: sim.Username(), Password: sim.Password()})
	if err != nil {
		b.Fatal(err)
	}
	for _, details := range qualys.HostListDetails {
		b.Run(details, func(b *testing.B) {
			var bytes int64
			open := func(context.Context, int) (qualys.PageWriter, error) { return countingPage{&bytes}, nil }
			ids := 0
			for b.Loop() {
				bytes, ids = 0, 0
				for _, err := range c.HostPager(qualys.HostListQuery{PageSize: 100_000, Details: details}, open).All(context.Background()) {
					if err != nil {
						b.Fatal(err)
					}
					ids++
				}
			}
			b.SetBytes(bytes)
			b.ReportMetric(float64(bytes)/(1<<20), "hostlist-MiB")
			b.ReportMetric(float64(bytes)/float64(ids), "B/host")
		})
	}
}
