package qualysim

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"
)

// FaultKind names one way the simulator misbehaves.
type FaultKind string

// Outcome faults replace or break a whole answer; at most one strikes a
// request. The last two only slow an answer down and combine with the others.
const (
	Fault500      FaultKind = "500"      // HTTP 500 with an Apache-style HTML page
	Fault503      FaultKind = "503"      // HTTP 503, empty body (or an HTML page with Faults.HTML503)
	FaultErrorDoc FaultKind = "errordoc" // HTTP 200 carrying a SIMPLE_RETURN error (code Faults.ErrorDocCode)
	Fault999      FaultKind = "999"      // HTTP 500 carrying a well-formed GENERIC_RETURN 999 "Internal error"
	FaultReset    FaultKind = "reset"    // connection aborted mid-body (no chunked terminator)
	FaultStall    FaultKind = "stall"    // body pauses mid-way for Faults.StallFor, then completes
	FaultCut      FaultKind = "cut"      // status 200, body ends cleanly before the closing root tag

	// FaultMaintenance is HTTP 503 carrying a SIMPLE_RETURN 1999 "scheduled
	// maintenance". A maintenance is a window, not a per-call accident, so
	// Spread leaves it out: hold it with Sim.Outage, or force or draw it
	// explicitly.
	FaultMaintenance FaultKind = "maintenance"

	FaultSlowStart FaultKind = "slowstart" // first byte (headers) delayed by Faults.SlowStartFor
	FaultBandwidth FaultKind = "bandwidth" // body paced at Faults.Bandwidth bytes/s (token bucket)
)

// OutcomeFaults lists the per-call outcome faults, the ones Spread shares a
// probability among.
var OutcomeFaults = []FaultKind{Fault500, Fault503, FaultErrorDoc, Fault999, FaultReset, FaultStall, FaultCut}

// outcomeKinds is every outcome fault in draw order. FaultMaintenance comes
// last, so that adding it left the draws of every earlier seed unchanged.
var outcomeKinds = append(slices.Clone(OutcomeFaults), FaultMaintenance)

// AllFaults lists every fault kind.
var AllFaults = append(slices.Clone(outcomeKinds), FaultSlowStart, FaultBandwidth)

func (k FaultKind) midBody() bool { return k == FaultReset || k == FaultStall || k == FaultCut }

// Faults is what may go wrong, on the Host List and Host List Detection
// APIs. Each kind strikes with its own probability, drawn from a hash of
// (seed, API, the API's request number): the same seed and request sequence
// give the same faults. Outcome kinds share one draw, so their
// probabilities must sum to ≤ 1. Sim.ForceFault overrides the draw for the
// next N requests, and Sim.Outage for every request until it ends.
type Faults struct {
	Prob map[FaultKind]float64 // per-request probability of each kind

	StallFor      time.Duration // FaultStall pause; default 30s. A stall ends early when the client goes away
	SlowStartFor  time.Duration // FaultSlowStart delay; default 5s
	Bandwidth     int           // FaultBandwidth pace in bytes/s; default 1 MiB/s
	HTML503       bool          // Fault503 answers with a maintenance HTML page instead of an empty body
	ErrorDocCode  int           // FaultErrorDoc's code; default 1981 ("being processed, try again later")
	BodyOffsetMax int           // mid-body faults strike after 64..BodyOffsetMax body bytes (or before the closing root tag of a shorter body); default 1 MiB

	// StallLaterPages, when above 0, stalls (as FaultStall) every
	// detection call for a later page of a truncated answer (id_min set)
	// whose ids select at least this many hosts, when no other outcome
	// fault struck: a batch too big to page through, whose smaller halves
	// go through. 0: off.
	StallLaterPages int

	// Switches for fleet-wide faults, on every API including about.php.
	AccountExpired bool // HTTP 200, SIMPLE_RETURN 2001 "This account has expired.", no limit headers
	RejectLogins   bool // HTTP 401, SIMPLE_RETURN 2000 "Bad Login/Password" even for the right password
}

func (f Faults) withDefaults() Faults {
	if f.StallFor == 0 {
		f.StallFor = 30 * time.Second
	}
	if f.SlowStartFor == 0 {
		f.SlowStartFor = 5 * time.Second
	}
	if f.Bandwidth == 0 {
		f.Bandwidth = 1 << 20
	}
	if f.ErrorDocCode == 0 {
		f.ErrorDocCode = 1981
	}
	if f.BodyOffsetMax == 0 {
		f.BodyOffsetMax = 1 << 20
	}
	f.Prob = cloneProb(f.Prob)
	return f
}

func cloneProb(m map[FaultKind]float64) map[FaultKind]float64 {
	out := make(map[FaultKind]float64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (f Faults) validate() error {
	sum := 0.0
	for k, p := range f.Prob {
		if !slices.Contains(AllFaults, k) {
			return fmt.Errorf("qualysim: unknown fault kind %q (known: %v)", k, AllFaults)
		}
		if p < 0 || p > 1 {
			return fmt.Errorf("qualysim: fault %s probability %v is outside [0, 1]", k, p)
		}
		if slices.Contains(outcomeKinds, k) {
			sum += p
		}
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("qualysim: outcome fault probabilities sum to %v > 1", sum)
	}
	if f.Bandwidth < 0 || f.BodyOffsetMax < 0 || f.StallFor < 0 || f.SlowStartFor < 0 || f.StallLaterPages < 0 {
		return fmt.Errorf("qualysim: fault durations and sizes must be ≥ 0")
	}
	return nil
}

// Spread returns fault probabilities in which the outcome kinds share p
// equally: the meaning of `qfetch sim --faults p`.
func Spread(p float64) map[FaultKind]float64 {
	m := map[FaultKind]float64{}
	for _, k := range OutcomeFaults {
		m[k] = p / float64(len(OutcomeFaults))
	}
	return m
}

// faultsJSON is Faults on the wire (/__sim/faults): durations as Go
// duration strings.
type faultsJSON struct {
	Prob           map[FaultKind]float64 `json:"prob"`
	StallFor       string                `json:"stall_for,omitempty"`
	SlowStartFor   string                `json:"slow_start_for,omitempty"`
	Bandwidth      int                   `json:"bandwidth,omitempty"`
	HTML503        bool                  `json:"html_503"`
	ErrorDocCode   int                   `json:"error_doc_code,omitempty"`
	BodyOffsetMax  int                   `json:"body_offset_max,omitempty"`
	StallLater     int                   `json:"stall_later_pages,omitempty"`
	AccountExpired bool                  `json:"account_expired"`
	RejectLogins   bool                  `json:"reject_logins"`
}

// MarshalJSON writes durations as strings ("30s").
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{
		Prob: f.Prob, StallFor: f.StallFor.String(), SlowStartFor: f.SlowStartFor.String(),
		Bandwidth: f.Bandwidth, HTML503: f.HTML503, ErrorDocCode: f.ErrorDocCode, BodyOffsetMax: f.BodyOffsetMax,
		StallLater: f.StallLaterPages, AccountExpired: f.AccountExpired, RejectLogins: f.RejectLogins,
	})
}

// UnmarshalJSON reads what MarshalJSON writes; absent fields stay zero
// (that is, default).
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	out := Faults{Prob: j.Prob, Bandwidth: j.Bandwidth, HTML503: j.HTML503, ErrorDocCode: j.ErrorDocCode,
		BodyOffsetMax: j.BodyOffsetMax, StallLaterPages: j.StallLater, AccountExpired: j.AccountExpired, RejectLogins: j.RejectLogins}
	for _, d := range []struct {
		s   string
		dst *time.Duration
	}{{j.StallFor, &out.StallFor}, {j.SlowStartFor, &out.SlowStartFor}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return err
		}
		*d.dst = v
	}
	*f = out
	return nil
}

// plan is the faults chosen for one request.
type plan struct {
	outcome   FaultKind     // "" or an outcome fault
	slowStart time.Duration // 0 or the delay
	bandwidth int           // 0 or bytes/s
	offset    int64         // where a mid-body fault strikes
	seq       uint64
	cfg       Faults
}

type forced struct {
	kind FaultKind
	n    int
}

// outage is a fault every call to one API meets until it ends.
type outage struct {
	ep   endpoint
	kind FaultKind
}

// faultState holds the fault settings and the per-API request counters the
// draws hash.
type faultState struct {
	mu      sync.Mutex
	cfg     Faults
	forced  [numEndpoints][]forced
	seq     [numEndpoints]uint64
	outages map[int]outage // by id, ids ascending in start order
	lastID  int
}

func (s *faultState) startOutage(ep endpoint, kind FaultKind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outages == nil {
		s.outages = map[int]outage{}
	}
	s.lastID++
	s.outages[s.lastID] = outage{ep, kind}
	return s.lastID
}

// endOutage ends outage id, or every outage when id is 0, and reports
// how many it ended.
func (s *faultState) endOutage(id int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.outages)
	if id == 0 {
		clear(s.outages)
		return n
	}
	delete(s.outages, id)
	return n - len(s.outages)
}

// outageOf reports the newest outage of a kind want accepts on ep. Call it
// with mu held.
func (s *faultState) outageOf(ep endpoint, want func(FaultKind) bool) (FaultKind, bool) {
	best, kind := 0, FaultKind("")
	for id, o := range s.outages {
		if o.ep == ep && want(o.kind) && id > best {
			best, kind = id, o.kind
		}
	}
	return kind, best > 0
}

func (s *faultState) get() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cfg
	c.Prob = cloneProb(c.Prob)
	return c
}

func (s *faultState) set(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = f.withDefaults()
}

func (s *faultState) force(ep endpoint, kind FaultKind, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		return
	}
	s.forced[ep] = append(s.forced[ep], forced{kind, n})
}

func (s *faultState) clearForced() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.forced {
		s.forced[i] = nil
	}
}

// takeForced consumes one forced occurrence of the first queued kind
// accepted by want.
func (s *faultState) takeForced(ep endpoint, want func(FaultKind) bool) (FaultKind, bool) {
	q := s.forced[ep]
	for i := range q {
		if want(q[i].kind) {
			k := q[i].kind
			if q[i].n--; q[i].n == 0 {
				s.forced[ep] = slices.Delete(q, i, i+1)
			}
			return k, true
		}
	}
	return "", false
}

// decide draws the faults of the next request on ep.
func (s *faultState) decide(m *model, ep endpoint) plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := s.seq[ep]
	s.seq[ep]++
	p := plan{seq: seq, cfg: s.cfg}
	draw := func(salt uint64) float64 { return unit(m.h2(sFault, uint64(ep)<<56^seq, salt)) }

	isOutcome := func(k FaultKind) bool { return slices.Contains(outcomeKinds, k) }
	is := func(kind FaultKind) func(FaultKind) bool { return func(k FaultKind) bool { return k == kind } }
	// An outage holds the API whatever is queued: forced faults wait for
	// its end.
	if k, ok := s.outageOf(ep, isOutcome); ok {
		p.outcome = k
	} else if k, ok := s.takeForced(ep, isOutcome); ok {
		p.outcome = k
	} else {
		u, acc := draw(1), 0.0
		for _, k := range outcomeKinds {
			acc += s.cfg.Prob[k]
			if u < acc {
				p.outcome = k
				break
			}
		}
	}
	if _, ok := s.outageOf(ep, is(FaultSlowStart)); ok {
		p.slowStart = s.cfg.SlowStartFor
	} else if _, ok := s.takeForced(ep, is(FaultSlowStart)); ok || draw(2) < s.cfg.Prob[FaultSlowStart] {
		p.slowStart = s.cfg.SlowStartFor
	}
	if _, ok := s.outageOf(ep, is(FaultBandwidth)); ok {
		p.bandwidth = s.cfg.Bandwidth
	} else if _, ok := s.takeForced(ep, is(FaultBandwidth)); ok || draw(3) < s.cfg.Prob[FaultBandwidth] {
		p.bandwidth = s.cfg.Bandwidth
	}
	lo := int64(64)
	hi := max(int64(s.cfg.BodyOffsetMax), lo)
	p.offset = lo + int64(m.h2(sFault, uint64(ep)<<56^seq, 4)%uint64(hi-lo+1))
	return p
}

// stallsLaterPage reports whether p's settings stall req as a later page of
// a batch of at least Faults.StallLaterPages hosts. The batch's size is what
// its ids select, id_min aside: the same for each of its pages.
func (s *Sim) stallsLaterPage(req *request, p plan, now time.Time) bool {
	least := p.cfg.StallLaterPages
	if least <= 0 || p.outcome != "" || req.ep != epDetection || req.filter.IDMin == 0 {
		return false
	}
	q := req.filter.compile(now, true)
	q.idMin = 0
	return s.m.requested(&q) >= int64(least)
}
