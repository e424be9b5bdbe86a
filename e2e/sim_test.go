package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
)

// allStatuses is qfetch's default detection status filter; the simulator's
// own default leaves Fixed out, so the truth is asked with it explicitly.
const allStatuses = "New,Active,Re-Opened,Fixed"

// simProc is `qfetch sim` running as a process, driven over /__sim/.
type simProc struct {
	*proc
	t        testing.TB
	URL      string
	User     string
	Password string
	http     *http.Client
}

// startSim runs `qfetch sim` with a frozen clock, no rate limit and args,
// and reads the URL and credentials it prints.
func startSim(t testing.TB, b bins, args ...string) *simProc {
	t.Helper()
	all := append([]string{"sim", "--addr", "127.0.0.1:0", "--frozen-clock", "--rate-limit", "0"}, args...)
	p := startProc(t, "sim", b.QFetch, all, nil)
	s := &simProc{proc: p, t: t, http: &http.Client{Timeout: 60 * time.Second}}
	testenv.Eventually(t, 30*time.Second, func() bool {
		if p.Exited() {
			t.Fatalf("qfetch sim exited at start:\n%s", p.Log())
		}
		vars := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(p.Log()))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "QFETCH_") {
				vars[k] = v
			}
		}
		s.URL, s.User, s.Password = vars["QFETCH_QUALYS_URL"], vars["QFETCH_QUALYS_USERNAME"], vars["QFETCH_QUALYS_PASSWORD"]
		return s.URL != "" && s.User != "" && s.Password != ""
	}, "qfetch sim printing its URL and credentials")
	return s
}

func (s *simProc) do(method, path string, body io.Reader, out any) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatalf("sim %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		s.t.Fatalf("sim %s %s: %s: %s", method, path, resp.Status, b)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		s.t.Fatalf("sim %s %s: %v", method, path, err)
	}
}

// Stats returns /__sim/stats.
func (s *simProc) Stats() qualysim.Stats {
	s.t.Helper()
	var st qualysim.Stats
	s.do(http.MethodGet, "/__sim/stats", nil, &st)
	return st
}

// Detection returns the detection endpoint's stats.
func (s *simProc) Detection() qualysim.EndpointStats {
	s.t.Helper()
	return s.Stats().Endpoints[qualysim.Detection]
}

// ResetStats zeroes the counters; a peak starts again from what runs now.
func (s *simProc) ResetStats() {
	s.t.Helper()
	s.do(http.MethodPost, "/__sim/stats/reset", nil, nil)
}

// Faults returns the fault settings.
func (s *simProc) Faults() qualysim.Faults {
	s.t.Helper()
	var f qualysim.Faults
	s.do(http.MethodGet, "/__sim/faults", nil, &f)
	return f
}

// SetFaults replaces the fault settings.
func (s *simProc) SetFaults(f qualysim.Faults) {
	s.t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		s.t.Fatal(err)
	}
	s.do(http.MethodPut, "/__sim/faults", bytes.NewReader(b), nil)
}

// Force makes the next n calls of ep suffer kind.
func (s *simProc) Force(ep qualysim.Endpoint, kind qualysim.FaultKind, n int) {
	s.t.Helper()
	q := url.Values{"endpoint": {string(ep)}, "kind": {string(kind)}, "n": {strconv.Itoa(n)}}
	s.do(http.MethodPost, "/__sim/faults/force?"+q.Encode(), nil, nil)
}

// Outage makes every call to ep suffer kind from now until end is called
// (qualysim.Sim.Outage, over the control plane): an outage held for a real
// time, as a fleet meets it.
func (s *simProc) Outage(ep qualysim.Endpoint, kind qualysim.FaultKind) (end func()) {
	s.t.Helper()
	var out struct {
		ID int `json:"outage"`
	}
	q := url.Values{"endpoint": {string(ep)}, "kind": {string(kind)}}
	s.do(http.MethodPost, "/__sim/faults/outage?"+q.Encode(), nil, &out)
	return func() {
		s.t.Helper()
		s.do(http.MethodPost, "/__sim/faults/outage/end?id="+strconv.Itoa(out.ID), nil, nil)
	}
}

// Account sets one of the account switches (expired, reject_logins).
func (s *simProc) Account(key string, on bool) {
	s.t.Helper()
	v := "0"
	if on {
		v = "1"
	}
	s.do(http.MethodPost, "/__sim/account?"+key+"="+v, nil, nil)
}

// Clock returns the simulated time.
func (s *simProc) Clock() time.Time {
	s.t.Helper()
	var c struct {
		Now time.Time `json:"now"`
	}
	s.do(http.MethodGet, "/__sim/clock", nil, &c)
	return c.Now
}

// SetClock moves the simulated time to at and returns it as the simulator
// reads it (whole seconds).
func (s *simProc) SetClock(at time.Time) time.Time {
	s.t.Helper()
	var c struct {
		Now time.Time `json:"now"`
	}
	s.do(http.MethodPost, "/__sim/clock?set="+url.QueryEscape(at.UTC().Format(time.RFC3339)), nil, &c)
	return c.Now
}

// window is a run's processing window, and the simulated time its calls
// were answered at.
type window struct {
	After, Before time.Time
	At            time.Time // zero: the simulator's clock now
}

func (w window) query(kind string) url.Values {
	q := url.Values{"kind": {kind}}
	if !w.After.IsZero() {
		q.Set("vm_processed_after", qualys.FormatTime(w.After))
	}
	if !w.Before.IsZero() {
		q.Set("vm_processed_before", qualys.FormatTime(w.Before))
	}
	if !w.At.IsZero() {
		q.Set("at", w.At.UTC().Format(time.RFC3339))
	}
	if kind == "detection" {
		q.Set("status", allStatuses)
	}
	return q
}

// HostTruth is what a Host List walk over w returns, ascending.
func (s *simProc) HostTruth(w window) []uint64 {
	s.t.Helper()
	var out struct {
		IDs   []uint64 `json:"ids"`
		Hosts int      `json:"hosts"`
	}
	s.do(http.MethodGet, "/__sim/truth?"+w.query("hostlist").Encode(), nil, &out)
	if len(out.IDs) != out.Hosts {
		s.t.Fatalf("sim truth: %d ids, hosts %d", len(out.IDs), out.Hosts)
	}
	return out.IDs
}

// DetectionTruth is, per host, how many DETECTION elements the detection
// calls over w return (with qfetch's default statuses); hosts without any
// are absent, as the API leaves them out.
func (s *simProc) DetectionTruth(w window) map[uint64]int {
	s.t.Helper()
	var out struct {
		Counts     [][2]uint64 `json:"counts"`
		Hosts      int         `json:"hosts"`
		Detections int         `json:"detections"`
	}
	s.do(http.MethodGet, "/__sim/truth?"+w.query("detection").Encode(), nil, &out)
	m := make(map[uint64]int, len(out.Counts))
	total := 0
	for _, c := range out.Counts {
		m[c[0]] = int(c[1])
		total += int(c[1])
	}
	if len(m) != out.Hosts || total != out.Detections {
		s.t.Fatalf("sim truth: %d hosts (%d), %d detections (%d)", len(m), out.Hosts, total, out.Detections)
	}
	return m
}

// holdCall opens a detection call for ids as another client of the same
// subscription would, and returns once the simulator runs it; the call stays
// open (the test reads nothing) until release is called.
func (s *simProc) holdCall(ids string) (release func()) {
	s.t.Helper()
	form := url.Values{"action": {"list"}, "ids": {ids}, "truncation_limit": {"0"}, "status": {allStatuses}}
	req, err := http.NewRequest(http.MethodPost, s.URL+"/api/2.0/fo/asset/host/vm/detection/", strings.NewReader(form.Encode()))
	if err != nil {
		s.t.Fatal(err)
	}
	req.SetBasicAuth(s.User, s.Password)
	req.Header.Set("X-Requested-With", "qfetch-e2e")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		s.t.Fatalf("foreign call: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s.t.Fatalf("foreign call: %s: %.300s", resp.Status, b)
	}
	return func() { resp.Body.Close() }
}

func (s *simProc) String() string { return fmt.Sprintf("sim at %s", s.URL) }
