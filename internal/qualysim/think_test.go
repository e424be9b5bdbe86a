package qualysim

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestThinkTime(t *testing.T) {
	const (
		overhead = 10 * time.Millisecond
		per      = time.Millisecond
	)
	cfg := testConfig() // 300 hosts
	cfg.Overhead, cfg.PerHostCost = overhead, per
	s := New(cfg)
	id := func(i int64) string { return strconv.FormatUint(s.HostID(i), 10) }
	var ten []string
	for i := range int64(10) {
		ten = append(ten, id(i))
	}
	// IDs come in runs with gaps between: the one after a run's last is
	// never a host.
	missing := strconv.FormatUint(s.HostID(2)+1, 10)

	huge := testConfig()
	huge.Hosts, huge.PerHostCost = 1_000_000, time.Second

	for _, tc := range []struct {
		name  string
		cfg   *Config // nil: cfg
		ep    endpoint
		form  string
		hosts int64 // PerHostCost is charged for this many
	}{
		{name: "host list pays the overhead only", ep: epHostList, form: "ids=" + strings.Join(ten, ",")},
		{name: "id list", ep: epDetection, form: "ids=" + strings.Join(ten, ","), hosts: 10},
		{name: "range counts hosts, not its width", ep: epDetection, form: "ids=" + id(0) + "-" + id(9), hosts: 10},
		{name: "repeated ids count once", ep: epDetection, form: "ids=" + id(0) + "," + id(0) + "," + id(1), hosts: 2},
		{name: "an id no host has", ep: epDetection, form: "ids=" + missing},
		{name: "everything, no truncation", ep: epDetection, form: "truncation_limit=0", hosts: 300},
		{name: "default truncation above the hosts", ep: epDetection, form: "", hosts: 300},
		{name: "truncation_limit caps", ep: epDetection, form: "truncation_limit=50", hosts: 50},
		{name: "id_min", ep: epDetection, form: "truncation_limit=0&id_min=" + id(100), hosts: 200},
		{name: "id_max cuts a range", ep: epDetection, form: "ids=" + id(0) + "-" + id(99) + "&id_max=" + id(49), hosts: 50},
		{name: "id_min past the last host", ep: epDetection, form: "id_min=" + strconv.FormatUint(s.HostID(299)+1, 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := overhead + time.Duration(tc.hosts)*per
			if got := thinkFor(t, s, tc.ep, tc.form); got != want {
				t.Errorf("thinkTime = %v, want %v (%d hosts)", got, want, tc.hosts)
			}
		})
	}

	t.Run("no per-host cost", func(t *testing.T) {
		c := cfg
		c.PerHostCost = 0
		s := New(c)
		if got := thinkFor(t, s, epDetection, "truncation_limit=0"); got != overhead {
			t.Errorf("thinkTime = %v, want the overhead %v", got, overhead)
		}
	})
	t.Run("capped", func(t *testing.T) {
		s := New(huge)
		if got := thinkFor(t, s, epDetection, "truncation_limit=0"); got != maxThink {
			t.Errorf("thinkTime over 1M hosts at 1s each = %v, want the cap %v", got, maxThink)
		}
	})
}

// thinkFor is s's think-time for an action=list call with the extra form.
func thinkFor(t *testing.T, s *Sim, ep endpoint, extra string) time.Duration {
	t.Helper()
	ps, err := parseParams("action=list&"+extra, nil)
	if err != nil {
		t.Fatal(err)
	}
	req, aerr := parseRequest(ep, ps)
	if aerr != nil {
		t.Fatal(aerr.text)
	}
	return s.thinkTime(req, s.Clock().Now())
}

// TestPerHostCostDelaysFirstByte: the think-time is served, before the
// headers, and grows with the batch.
func TestPerHostCostDelaysFirstByte(t *testing.T) {
	const per = 5 * time.Millisecond
	cfg := testConfig()
	cfg.PerHostCost = per
	f := setup(t, cfg)
	var ids []string
	for i := range int64(40) {
		ids = append(ids, strconv.FormatUint(f.sim.HostID(i), 10))
	}
	start := time.Now()
	a := f.call(t, http.MethodPost, detectionPath, form("action", "list", "ids", strings.Join(ids, ",")))
	// A lower bound only: a loaded machine is slower, never faster.
	if took, want := time.Since(start), 40*per; a.status != http.StatusOK || took < want {
		t.Fatalf("40-host call: status %d after %v, want 200 after ≥ %v", a.status, took, want)
	}
}
