package qualysim

import (
	"iter"
	"time"
)

// The truth: what the APIs return, computed by the same selection the
// endpoints stream from, so that a test can check a bucket host by host.
// Everything is evaluated at Filter.At, or at the clock's now when that is
// zero; pin At when the clock may move between the run and the check.

// HostListTruth yields, ascending, the IDs a Host List call with this
// processing window returns (all pages together) at the clock's now.
func (s *Sim) HostListTruth(after, before time.Time) iter.Seq[uint64] {
	return s.Hosts(Filter{After: after, Before: before})
}

// Hosts yields, ascending, the host IDs a Host List call with f's
// parameters returns (all pages together). Statuses and ShowIGs play no part.
func (s *Sim) Hosts(f Filter) iter.Seq[uint64] {
	return func(yield func(uint64) bool) {
		sel := f.compile(s.clock.Now(), false)
		s.m.scan(&sel, func(h hostRef) bool { return yield(h.id) })
	}
}

// DetectionTruth yields, ascending, each host a Host List Detection call
// with f's parameters returns (all pages together) and its count of
// DETECTION elements. Hosts without a matching detection are not yielded:
// the API omits them.
func (s *Sim) DetectionTruth(f Filter) iter.Seq2[uint64, int] {
	return func(yield func(uint64, int) bool) {
		sel := f.compile(s.clock.Now(), true)
		s.m.scan(&sel, func(h hostRef) bool {
			return yield(h.id, s.m.matching(h.i, h.epoch, sel.statuses, sel.igs, false))
		})
	}
}

// DetectionCounts collects DetectionTruth into a map. Fine for thousands of
// hosts; iterate DetectionTruth for millions.
func (s *Sim) DetectionCounts(f Filter) map[uint64]int {
	m := map[uint64]int{}
	for id, n := range s.DetectionTruth(f) {
		m[id] = n
	}
	return m
}

// HostCount is the number of hosts in the subscription at t (zero: now).
func (s *Sim) HostCount(t time.Time) int64 {
	if t.IsZero() {
		t = s.clock.Now()
	}
	return s.m.count(t.Unix())
}

// HostID returns the ID of host i (0 ≤ i < HostCount), for tests that
// want particular hosts.
func (s *Sim) HostID(i int64) uint64 { return s.m.id(i) }

// LastProcessed returns when the host with this ID was last processed as of
// t (zero: now), and false if no such host exists then.
func (s *Sim) LastProcessed(id uint64, t time.Time) (time.Time, bool) {
	if t.IsZero() {
		t = s.clock.Now()
	}
	n := s.m.count(t.Unix())
	i := s.m.lowerBound(id, 0, n)
	if i >= n || s.m.id(i) != id {
		return time.Time{}, false
	}
	last, _ := s.m.schedule(i).last(t.Unix())
	return time.Unix(last, 0).UTC(), true
}
