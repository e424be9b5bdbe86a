package qualysim

import (
	"math"
	"time"
)

// The synthetic subscription. Nothing per host is stored: every property of
// host i (its ID, its processing schedule, its detections) is a hash of
// (seed, i), so ten million hosts cost the same memory as ten.
//
// IDs. Host i's ID grows strictly with i: runs of IDRun consecutive IDs,
// separated by 1 to 2·IDGap−1 missing IDs (mean IDGap). The last
// HighIDFraction of the initial hosts, and every host added later, take IDs
// above 2^32, so both int32 and uint32 truncation show up in a client.
// Because ID(i) is monotonic, "the first host with ID ≥ x" is a binary search
// over i, never a scan.
//
// Processing. Host i is re-processed every P_i seconds (skewed towards one
// day; at most ProcessedSpan) at a fixed phase. Its "last processed" time at
// clock t is the latest such instant ≤ t, so a window [after, before) selects
// a subset, and advancing the clock makes re-processed hosts reappear.
// Hosts added after Start (NewHostsPerDay) are first processed when created.
//
// Detections. Host i has n_i detections (a share of hosts have none; the
// rest follow a Pareto tail with mean about MeanDetections, capped at
// MaxDetections). Detection j's QID, type, severity and port are fixed; its
// status is re-drawn at every processing, so re-processing changes the data.

const day = 86400 // seconds

// Hash streams: one per independent property, so that changing how one
// property is drawn does not shift the others.
const (
	sJitter uint64 = iota + 1
	sPeriod
	sPhase
	sCount
	sHost
	sDet
	sStatus
	sResults
	sFault
	sHostAll // the fields only details=All adds to a host
)

// mix is the splitmix64 finaliser: a bijective, well-distributed 64-bit hash.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

const golden = 0x9e3779b97f4a7c15

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// floorDiv is integer division rounding towards −∞.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// model is the compiled dataset of a Config.
type model struct {
	seed       uint64
	hosts      int64 // initial host count
	newPerDay  int64
	start      int64 // unix seconds: the clock's start
	span       int64 // seconds
	idBase     uint64
	idRun      uint64
	idGap      uint64
	highFrom   int64 // first host index with a high ID
	highBase   uint64
	zeroFrac   float64
	paretoXm   float64
	maxDet     int
	resultsLen int // mean RESULTS length; 0 = no RESULTS
}

// paretoAlpha shapes the detection-count tail: α = 1.5 has a finite mean
// and an infinite variance, the "few hosts with thousands" of real estates.
const paretoAlpha = 1.5

func newModel(c *Config) *model {
	m := &model{
		seed:      c.Seed,
		hosts:     c.Hosts,
		newPerDay: c.NewHostsPerDay,
		start:     c.Start.Unix(),
		span:      int64(c.ProcessedSpan / time.Second),
		idBase:    c.IDBase,
		idRun:     uint64(c.IDRun),
		idGap:     uint64(c.IDGap),
		highBase:  c.HighIDBase,
		zeroFrac:  c.ZeroDetectionFraction,
		maxDet:    c.MaxDetections,
	}
	if c.ResultsSize > 0 {
		m.resultsLen = c.ResultsSize
	}
	m.highFrom = c.Hosts - int64(math.Round(float64(c.Hosts)*c.HighIDFraction))
	m.paretoXm = c.MeanDetections * (paretoAlpha - 1) / paretoAlpha
	return m
}

func (m *model) h(stream, x uint64) uint64 { return mix(m.seed ^ mix(stream*golden+x)) }
func (m *model) h2(stream, x, y uint64) uint64 {
	return mix(m.h(stream, x) ^ (y+1)*golden)
}

// lowIDMax is the largest ID a low host can take; Config.validate keeps the
// high range above it.
func (m *model) lowIDMax() uint64 {
	return m.idBase + (uint64(m.highFrom)/m.idRun+1)*(m.idRun+m.idGap)
}

// id returns host i's ID.
func (m *model) id(i int64) uint64 {
	base, k, salt := m.idBase, uint64(i), uint64(0)
	if i >= m.highFrom {
		base, k, salt = m.highBase, uint64(i-m.highFrom), 1<<63
	}
	b := k / m.idRun
	id := base + b*(m.idRun+m.idGap) + k%m.idRun
	if m.idGap > 0 {
		id += m.h(sJitter, b^salt) % m.idGap
	}
	return id
}

// count is the number of hosts that exist at clock t.
func (m *model) count(t int64) int64 {
	if m.newPerDay <= 0 || t <= m.start {
		return m.hosts
	}
	return m.hosts + (t-m.start)*m.newPerDay/day
}

// lowerBound is the first host index < n whose ID is ≥ id (n if none).
func (m *model) lowerBound(id uint64, lo, n int64) int64 {
	hi := n
	for lo < hi {
		mid := int64(uint64(lo+hi) >> 1)
		if m.id(mid) < id {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// sched is a host's processing schedule.
type sched struct {
	origin int64 // one processing instant; the others are origin + k·period
	period int64
}

func (m *model) schedule(i int64) sched {
	minP := min(int64(day), m.span)
	u := unit(m.h(sPeriod, uint64(i)))
	p := max(minP+int64(float64(m.span-minP)*u*u*u), 1)
	if i >= m.hosts {
		// Added after Start: first processed when created, and created
		// exactly when count() first includes it.
		n := i - m.hosts + 1
		return sched{origin: m.start + (n*day+m.newPerDay-1)/m.newPerDay, period: p}
	}
	phase := int64(m.h(sPhase, uint64(i)) % uint64(p))
	return sched{origin: m.start - m.span + phase, period: p}
}

// last returns the last processing instant ≤ t and its epoch number, which
// seeds the statuses drawn at that processing.
func (s sched) last(t int64) (at int64, epoch int64) {
	k := floorDiv(t-s.origin, s.period)
	return s.origin + k*s.period, k
}

// ndet is host i's detection count.
func (m *model) ndet(i int64) int {
	u := unit(m.h(sCount, uint64(i)))
	if u < m.zeroFrac {
		return 0
	}
	v := (u - m.zeroFrac) / (1 - m.zeroFrac) // uniform in [0, 1)
	n := math.Ceil(m.paretoXm * math.Pow(1-v, -1/paretoAlpha))
	if n < 1 {
		n = 1
	}
	if n > float64(m.maxDet) {
		return m.maxDet
	}
	return int(n)
}

// Detection types and statuses as bits, so a filter is one AND.
const (
	typeConfirmed = iota
	typePotential
	typeInfo
)

// StatusSet is a set of detection statuses, as the status parameter names them.
type StatusSet uint8

const (
	StatusNew StatusSet = 1 << iota
	StatusActive
	StatusFixed
	StatusReopened

	// DefaultStatuses is what Qualys returns when status is not given:
	// everything but Fixed.
	DefaultStatuses = StatusNew | StatusActive | StatusReopened
	// AllStatuses is what qfetch asks for.
	AllStatuses = DefaultStatuses | StatusFixed
)

var statusNames = [...]string{"New", "Active", "Fixed", "Re-Opened"}

// detType returns the type of detection j of host i.
func (m *model) detKey(i int64, j int) uint64 { return uint64(i)<<16 | uint64(j) }

func (m *model) detType(a uint64) int {
	switch b := a & 0xff; {
	case b < 64:
		return typeInfo
	case b < 90:
		return typePotential
	default:
		return typeConfirmed
	}
}

// status draws detection (i, j)'s status at processing epoch k.
func (m *model) status(key uint64, epoch int64) StatusSet {
	switch b := m.h2(sStatus, key, uint64(epoch)) & 0xff; {
	case b < 20:
		return StatusNew
	case b < 32:
		return StatusReopened
	case b < 80:
		return StatusFixed
	default:
		return StatusActive
	}
}

// matching counts host i's detections that pass statuses (and Info only
// with igs) at processing epoch k. stopAtOne serves the HLD omission test,
// which only asks "any?".
func (m *model) matching(i int64, epoch int64, statuses StatusSet, igs bool, stopAtOne bool) int {
	n := m.ndet(i)
	c := 0
	for j := range n {
		key := m.detKey(i, j)
		if !igs && m.detType(m.h(sDet, key)) == typeInfo {
			continue
		}
		if m.status(key, epoch)&statuses == 0 {
			continue
		}
		c++
		if stopAtOne {
			return c
		}
	}
	return c
}
