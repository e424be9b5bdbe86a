package qualysim

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats is what the simulator has served since it started (or since
// ResetStats).
type Stats struct {
	Clock     time.Time                  `json:"clock"`
	Endpoints map[Endpoint]EndpointStats `json:"endpoints"`
}

// EndpointStats counts one API's calls.
type EndpointStats struct {
	Requests int64 `json:"requests"`
	// Outcomes counts calls by how they ended: "ok" (a complete document),
	// "client_gone" (the client left mid-body), "<status>/<code>" for a
	// refusal or error document (e.g. "409/1960", "400/1905", "401/2000",
	// "200/2001"), "fault/<kind>" for an injected outcome fault.
	Outcomes map[string]int64 `json:"outcomes"`
	// Slowed counts calls slowed by FaultSlowStart or FaultBandwidth.
	Slowed map[string]int64 `json:"slowed,omitempty"`
	Bytes  int64            `json:"bytes"` // body bytes written
	// VULNs counts the VULN elements of the KnowledgeBase answers that
	// were written whole (details Basic or All; an ID_SET counts none).
	VULNs int64 `json:"vulns,omitempty"`
	// Running is the number of calls running now; PeakRunning the most
	// ever running at once. A call runs from admission until its body is
	// written or its client has gone.
	Running     int `json:"running"`
	PeakRunning int `json:"peak_running"`
	RateUsed    int `json:"rate_used"` // admissions inside the current rate window
}

type epStats struct {
	bytes    atomic.Int64
	vulns    atomic.Int64
	mu       sync.Mutex
	requests int64
	outcomes map[string]int64
	slowed   map[string]int64
}

func (s *epStats) record(outcome string, slowed ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if s.outcomes == nil {
		s.outcomes = map[string]int64{}
	}
	s.outcomes[outcome]++
	for _, k := range slowed {
		if s.slowed == nil {
			s.slowed = map[string]int64{}
		}
		s.slowed[k]++
	}
}

func (s *epStats) snapshot() EndpointStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := EndpointStats{Requests: s.requests, Bytes: s.bytes.Load(), VULNs: s.vulns.Load(), Outcomes: map[string]int64{}}
	for k, v := range s.outcomes {
		e.Outcomes[k] = v
	}
	if len(s.slowed) > 0 {
		e.Slowed = map[string]int64{}
		for k, v := range s.slowed {
			e.Slowed[k] = v
		}
	}
	return e
}

func (s *epStats) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests, s.outcomes, s.slowed = 0, nil, nil
	s.bytes.Store(0)
	s.vulns.Store(0)
}
