package qualysim

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"time"
)

// The KnowledgeBase. Like the hosts, every QID's content is a hash of
// (seed, QID, modification epoch); what is stored is only which QIDs exist
// and from when they are visible, so that the KB covers exactly the QIDs
// the detections use plus unused ones.
//
// Membership. The KB at Start holds every QID a detection of an initial
// host uses (any status, Information Gathered included) and, to make up
// Config.KBQIDs, QIDs nobody detects, drawn below kbNewBase. A host added
// after Start (NewHostsPerDay) brings the QIDs of its detections that the
// KB does not hold yet: they become visible when the host is created, before
// any of its detections can be seen. Config.KBNewPerDay more QIDs, which no
// detection uses, are published per simulated day from kbNewBase+1 upwards.
//
// Time. A QID has a PUBLISHED_DATETIME and then a modification every
// period (30 days to two years: about 0.4% of the KB a day) at a fixed phase:
// LAST_SERVICE_MODIFICATION_DATETIME at time t is the last modification
// ≤ t, and each modification (an epoch) changes some content (temporal
// CVSS, patchable, threat intelligence, solution, change log). Late-visible
// QIDs: half of the QIDs new hosts bring and a quarter of the published
// ones carry a PUBLISHED (and so last-modified) time 1-10 days before they
// become visible, so an incremental last_modified_after pass that ran in
// between misses them: the case qfetch's backfill of detected QIDs covers.

const (
	// kbNewBase: QIDs below it are detection QIDs or the KB's unused ones
	// at Start; kbNewBase+k is the k-th QID published after Start.
	kbNewBase = 700000
	// kbAlways marks a QID visible from before Start.
	kbAlways = math.MinInt64
)

// Hash streams of the KnowledgeBase, apart from model.go's list so that
// neither shifts the other.
const (
	sKBExtra uint64 = 0x4b42_0000 + iota
	sKBTime
	sKBAttr
	sKBText
	sKBEpoch
)

// detQID is the QID of a detection with attribute hash da and type typ:
// detValues' formula, repeated here so that the detection writer stays as
// it is; TestKBCoversDetections fails if the two ever part.
func detQID(typ int, da uint64) uint64 {
	if typ == typeInfo {
		return 45000 + (da>>16)%1000
	}
	return 10000 + (da>>16)%380000
}

// kbModel is the KB's membership, built on first use.
type kbModel struct {
	m         *model
	target    int64 // Config.KBQIDs; 0: used + 1000
	newPerDay int64

	mu      sync.Mutex
	base    []uint64 // bit set of the QIDs visible from before Start; read-only once built
	taken   []uint64 // base and brought QIDs: written under mu only
	brought []kbBrought
	scanned int64 // hosts whose detections base and brought account for
	used    int64 // QIDs the initial hosts' detections use
}

// kbBrought is a QID a host added after Start brought into the KB, visible
// from the host's creation. The slice only grows, ordered by from, so a
// call reads a prefix of it without the lock.
type kbBrought struct {
	qid  uint64
	from int64
}

func newKBModel(m *model, c *Config) *kbModel {
	k := &kbModel{m: m, target: c.KBQIDs}
	if c.KBNewPerDay > 0 {
		k.newPerDay = c.KBNewPerDay
	}
	return k
}

func bit(set []uint64, q uint64) bool { return set[q>>6]&(1<<(q&63)) != 0 }
func setBit(set []uint64, q uint64)   { set[q>>6] |= 1 << (q & 63) }

// state returns the base set and the brought QIDs, accounting for every
// host that exists at t. Hosts are scanned once, in index order, so a QID's
// visibility is the creation of the first host using it whatever order the
// calls come in.
func (k *kbModel) state(t int64) (base []uint64, brought []kbBrought) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.base == nil {
		k.initBase()
	}
	for n := k.m.count(t); k.scanned < n; k.scanned++ {
		from := k.m.schedule(k.scanned).origin
		k.useHost(k.scanned, func(q uint64) {
			setBit(k.taken, q)
			k.brought = append(k.brought, kbBrought{q, from})
		})
	}
	return k.base, k.brought
}

func (k *kbModel) initBase() {
	base := make([]uint64, kbNewBase/64+1)
	for i := range k.m.hosts {
		k.useHost(i, func(q uint64) {
			if !bit(base, q) {
				setBit(base, q)
				k.used++
			}
		})
	}
	target := k.target
	if target == 0 {
		target = k.used + 1000
	}
	if extra, cand := target-k.used, int64(kbNewBase-1)-k.used; extra > 0 && cand > 0 {
		p := float64(extra) / float64(cand)
		for q := uint64(1); q < kbNewBase; q++ {
			if !bit(base, q) && unit(k.m.h(sKBExtra, q)) < p {
				setBit(base, q)
			}
		}
	}
	k.base, k.taken = base, slices.Clone(base)
	k.scanned = k.m.hosts
}

// useHost calls use with each QID host i's detections use that is not
// taken yet.
func (k *kbModel) useHost(i int64, use func(uint64)) {
	for j := range k.m.ndet(i) {
		da := k.m.h(sDet, k.m.detKey(i, j))
		if q := detQID(k.m.detType(da), da); k.taken == nil || !bit(k.taken, q) {
			use(q)
		}
	}
}

// published counts the QIDs published after Start by t.
func (k *kbModel) published(t int64) int64 {
	if k.newPerDay <= 0 || t <= k.m.start {
		return 0
	}
	return (t - k.m.start) * k.newPerDay / day
}

// publishedAt is when QID kbNewBase+n becomes visible: exactly when
// published() first counts it.
func (k *kbModel) publishedAt(n int64) int64 {
	return k.m.start + (n*day+k.newPerDay-1)/k.newPerDay
}

// kbVals is one VULN at one time: the choices every element is written
// from, computed once. The writer and the truth (KBTruth) both read them.
type kbVals struct {
	qid       uint64
	a, x      uint64 // attribute and text hashes, fixed
	e         uint64 // hash of the epoch: what modifications change
	visible   int64
	published int64
	m0        int64 // first modification
	period    int64
	epoch     int64 // modifications ≤ t
	lastMod   int64
	kind      int // kbTypes index
	sev       uint64
	prod      int // kbProducts index; -1 for Information Gathered
	patchable bool
	disabled  bool
	pci       bool
	cvss      int // kbCVSS2 index; -1 absent
	cvss3     int // kbCVSS3 index; -1 absent
	nCVE      int
	late      bool
}

// Vuln types as Qualys names them (J1 recordings).
var kbTypes = [...]string{"Vulnerability", "Potential Vulnerability", "Information Gathered",
	"Vulnerability or Potential Vulnerability"}

const kbInfo = 2

// vals computes QID q's values at t; visible is when q becomes visible
// (kbAlways: before Start).
func (k *kbModel) vals(q uint64, visible, t int64) kbVals {
	m := k.m
	v := kbVals{qid: q, a: m.h(sKBAttr, q), x: m.h(sKBText, q), visible: visible}
	th := m.h(sKBTime, q)
	const year = 365 * day
	switch {
	case visible == kbAlways:
		u := unit(th)
		v.published = m.start - 30*day - int64(u*u*20*year)
	case q < kbNewBase:
		v.late = th>>60&1 == 0 // half of the QIDs new hosts bring
	default:
		v.late = th>>60&3 == 0 // a quarter of the published ones
	}
	if visible != kbAlways {
		v.published = visible
		if v.late {
			v.published -= day + int64(th>>32%uint64(9*day))
		}
	}
	u := unit(m.h(sKBTime, q^1<<62))
	v.period = 30*day + int64(u*730*day)
	v.m0 = v.published + int64(th%uint64(v.period))
	if v.late {
		// The first modification comes after the QID is visible, so it
		// stays late-visible until a real change.
		v.m0 = max(v.m0, visible+day)
	}
	v.lastMod = v.published
	if t >= v.m0 {
		v.epoch = (t-v.m0)/v.period + 1
		v.lastMod = v.m0 + (v.epoch-1)*v.period
	}
	v.e = m.h2(sKBEpoch, q, uint64(v.epoch))

	a := v.a
	switch {
	case q < 10000 || (q >= 45000 && q < 46000):
		v.kind, v.prod = kbInfo, -1
		v.sev = 1 + a%2
	default:
		switch b := a & 0xff; {
		case b < 170:
			v.kind = 0
		case b < 230:
			v.kind = 1
		default:
			v.kind = 3
		}
		v.sev = 1 + (a>>8)%5
		v.prod = int((a >> 12) % uint64(len(kbProducts)))
	}
	v.disabled = (a>>20)%50 == 0
	v.cvss, v.cvss3 = -1, -1
	if v.kind != kbInfo {
		v.patchable = (a>>26)&3 != 0 || (v.epoch >= 2 && v.e&1 == 0)
		v.pci = v.sev >= 3 && (a>>28)&7 != 0
		if (a>>32)%100 >= 15 {
			v.cvss = int((a >> 40) % uint64(len(kbCVSS2)))
		}
		if (a>>34)%100 < 60 {
			v.cvss3 = int((a >> 46) % uint64(len(kbCVSS3)))
		}
		if (a>>52)%10 >= 3 {
			v.nCVE = 1 + int((a>>56)%6)
		}
	}
	return v
}

// kbAt is the KB as of one time, for one call: the membership read once,
// so that a long answer holds no lock.
type kbAt struct {
	k    *kbModel
	base []uint64
	news []kbBrought // brought QIDs visible at t, by QID
	t    int64
}

func (s *Sim) kbAt(t time.Time) kbAt {
	u := t.Unix()
	base, brought := s.kb.state(u)
	var news []kbBrought
	for _, b := range brought {
		if b.from <= u {
			news = append(news, b)
		}
	}
	slices.SortFunc(news, func(a, b kbBrought) int { return cmp.Compare(a.qid, b.qid) })
	return kbAt{k: s.kb, base: base, news: news, t: u}
}

// each calls yield with the values of every QID visible in [lo, hi],
// ascending, until it returns false; it reports whether it ran to the end.
func (ka *kbAt) each(lo, hi uint64, yield func(*kbVals) bool) bool {
	lo = max(lo, 1)
	var v kbVals
	emit := func(q uint64, from int64) bool {
		v = ka.k.vals(q, from, ka.t)
		return yield(&v)
	}
	n, _ := slices.BinarySearchFunc(ka.news, lo, func(b kbBrought, q uint64) int { return cmp.Compare(b.qid, q) })
	for q := lo; q <= hi && q < kbNewBase; q++ {
		for n < len(ka.news) && ka.news[n].qid < q {
			n++
		}
		switch {
		case bit(ka.base, q):
			if !emit(q, kbAlways) {
				return false
			}
		case n < len(ka.news) && ka.news[n].qid == q:
			if !emit(q, ka.news[n].from) {
				return false
			}
		}
	}
	last := uint64(kbNewBase) + uint64(ka.k.published(ka.t))
	for q := max(lo, kbNewBase+1); q <= min(hi, last); q++ {
		if !emit(q, ka.k.publishedAt(int64(q-kbNewBase))) {
			return false
		}
	}
	return true
}

// eachIn is each over sorted, merged ranges (nil: everything) within
// [lo, hi].
func (ka *kbAt) eachIn(rs []IDRange, lo, hi uint64, yield func(*kbVals) bool) {
	if rs == nil {
		ka.each(lo, hi, yield)
		return
	}
	for _, r := range rs {
		a, b := max(r.First, lo), min(r.Last, hi)
		if a <= b && !ka.each(a, b, yield) {
			return
		}
	}
}
