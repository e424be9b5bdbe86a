package qualysim

import (
	"net/http"
	"net/url"
	"time"
)

// The KnowledgeBase truth: what the KB holds at a time, from the same
// values and append functions the writer uses. A VULN's fields are what a
// details=All call with the four show_* flags set to 1 writes (qfetch's
// request); Basic leaves out Diagnosis, Consequence, Solution, Exploits and
// the CVSS vectors.

// KBVuln is one VULN. Text is as it stands inside the CDATA (HTML and
// entities such as &quot; literal). An absent optional element is a nil
// slice, a nil pointer or "".
type KBVuln struct {
	QID          int
	VulnType     string // Vulnerability, Potential Vulnerability, Information Gathered, Vulnerability or Potential Vulnerability
	Severity     int    // SEVERITY_LEVEL 1-5
	Title        string
	Category     string
	LastModified time.Time // LAST_SERVICE_MODIFICATION_DATETIME
	Published    time.Time // PUBLISHED_DATETIME
	Bugtraq      []KBRef   // BUGTRAQ_LIST
	Patchable    bool
	Software     []KBSoftware // SOFTWARE_LIST
	VendorRefs   []KBRef      // VENDOR_REFERENCE_LIST
	CVEs         []KBRef      // CVE_LIST
	Diagnosis    string
	Consequence  string
	Solution     string
	Exploits     []KBExploit // CORRELATION/EXPLOITS: one EXPLT per source
	CVSS         *KBCVSS     // CVSS (v2); nil: absent
	CVSS3        *KBCVSS     // CVSS_V3; nil: absent
	PCIFlag      bool
	PCIReasons   []string        // PCI_REASONS (show_pci_reasons=1)
	ThreatIntel  []KBThreatIntel // THREAT_INTELLIGENCE in document order
	// SupportedModules is SUPPORTED_MODULES (show_supported_modules_info=1).
	SupportedModules string
	Remote           bool     // DISCOVERY/REMOTE
	AuthTypes        []string // DISCOVERY/AUTH_TYPE_LIST
	AdditionalInfo   string   // DISCOVERY/ADDITIONAL_INFO
	Disabled         bool     // IS_DISABLED (show_disabled_flag=1)
	ChangeLog        []KBChange
}

// KBRef is an ID and URL pair (CVE, vendor reference, Bugtraq).
type KBRef struct{ ID, URL string }

// KBSoftware is one SOFTWARE.
type KBSoftware struct{ Product, Vendor string }

// KBExploit is one EXPLT_SRC with its one EXPLT.
type KBExploit struct{ Source, Ref, Desc, Link string }

// KBCVSS is CVSS or CVSS_V3: scores as written ("7.5").
type KBCVSS struct {
	Base       string
	BaseSource string // BASE's source attribute; "" when absent
	Temporal   string
	Vector     string // VECTOR_STRING (details=All)
	Version    string // CVSS3_VERSION, CVSS_V3 only (details=All)
}

// KBThreatIntel is one THREAT_INTEL: its id attribute and text.
type KBThreatIntel struct {
	ID   int
	Text string
}

// KBChange is one CHANGE_LOG_INFO.
type KBChange struct {
	Date     time.Time
	Comments string
}

// CVEIDs lists the CVE IDs, in document order.
func (v *KBVuln) CVEIDs() []string {
	var ids []string
	for _, c := range v.CVEs {
		ids = append(ids, c.ID)
	}
	return ids
}

// KBTruth returns the VULNs the KnowledgeBase holds at at (zero: the
// clock's now), ascending by QID: what a details=All listing of every QID
// at that time returns.
func (s *Sim) KBTruth(at time.Time) []KBVuln {
	var out []KBVuln
	all := &KBQuery{Details: "All", ShowDisabled: true, ShowChangeLog: true, ShowModules: true, ShowPCIReasons: true}
	s.KBSelect(at, all, func(v KBVuln) bool {
		out = append(out, v)
		return true
	})
	return out
}

// KBSelect calls yield with each VULN a KnowledgeBase call with q returns
// at at (zero: now), ascending, until yield returns false. Fields the
// call's details and show_* switches leave out are left empty. For
// details=None the call returns the QIDs of the same VULNs.
func (s *Sim) KBSelect(at time.Time, q *KBQuery, yield func(KBVuln) bool) {
	if at.IsZero() {
		at = s.clock.Now()
	}
	ka := s.kbAt(at)
	lo, hi := q.bounds()
	ka.eachIn(q.IDs, lo, hi, func(v *kbVals) bool {
		if !q.selects(v) {
			return true
		}
		return yield(v.truth(q))
	})
}

// KBQIDs returns the QIDs the KnowledgeBase holds at at (zero: now),
// ascending: a details=None listing.
func (s *Sim) KBQIDs(at time.Time) []int {
	return s.kbIDs(at, &KBQuery{})
}

// KBChanged returns, ascending, the QIDs a last_modified_after=after
// listing returns at at (zero: now): those whose
// LAST_SERVICE_MODIFICATION_DATETIME is ≥ after.
func (s *Sim) KBChanged(after, at time.Time) []int {
	return s.kbIDs(at, &KBQuery{ModifiedAfter: after})
}

func (s *Sim) kbIDs(at time.Time, q *KBQuery) []int {
	if at.IsZero() {
		at = s.clock.Now()
	}
	var ids []int
	ka := s.kbAt(at)
	lo, hi := q.bounds()
	ka.eachIn(q.IDs, lo, hi, func(v *kbVals) bool {
		if q.selects(v) {
			ids = append(ids, int(v.qid))
		}
		return true
	})
	return ids
}

// KBLateQID is a QID that became visible after a time while its
// LAST_SERVICE_MODIFICATION_DATETIME stays before it.
type KBLateQID struct {
	QID          int
	Visible      time.Time // when the KB started returning it
	LastModified time.Time // at the time asked about
	// Detected: a detection uses it (a host added after Start brought it).
	Detected bool
}

// KBLate returns, ascending, the QIDs visible at at (zero: now) that were
// not visible at after and whose last modification at at is before after:
// the QIDs an incremental pass with last_modified_after=after, run at at,
// misses although a full pass at after did not have them either. The
// detected ones are what qfetch's backfill must fetch.
func (s *Sim) KBLate(after, at time.Time) []KBLateQID {
	if at.IsZero() {
		at = s.clock.Now()
	}
	var out []KBLateQID
	ka := s.kbAt(at)
	ka.each(1, 1<<64-1, func(v *kbVals) bool {
		if v.visible != kbAlways && v.visible > after.Unix() && v.lastMod < after.Unix() {
			out = append(out, KBLateQID{QID: int(v.qid), Visible: time.Unix(v.visible, 0).UTC(),
				LastModified: time.Unix(v.lastMod, 0).UTC(), Detected: v.qid < kbNewBase})
		}
		return true
	})
	return out
}

// KBVisibleFrom returns when the KB starts returning qid, as known at at
// (zero: now; QIDs that hosts added later bring are not known before
// then): zero time and true for a QID there before Start, false for a QID
// it does not hold.
func (s *Sim) KBVisibleFrom(qid int, at time.Time) (time.Time, bool) {
	if at.IsZero() {
		at = s.clock.Now()
	}
	if qid <= 0 {
		return time.Time{}, false
	}
	q := uint64(qid)
	if q > kbNewBase {
		if s.kb.newPerDay <= 0 {
			return time.Time{}, false
		}
		return time.Unix(s.kb.publishedAt(int64(q-kbNewBase)), 0).UTC(), true
	}
	base, brought := s.kb.state(at.Unix())
	if q < kbNewBase && bit(base, q) {
		return time.Time{}, true
	}
	for _, b := range brought {
		if b.qid == q {
			return time.Unix(b.from, 0).UTC(), true
		}
	}
	return time.Time{}, false
}

// truth renders v as KBTruth does, leaving out what q's switches leave out.
func (v *kbVals) truth(q *KBQuery) KBVuln {
	all := q.Details == "All"
	str := func(f func([]byte) []byte) string { return string(f(nil)) }
	k := KBVuln{
		QID: int(v.qid), VulnType: kbTypes[v.kind], Severity: int(v.sev),
		Title: str(v.appendTitle), Category: v.category(),
		LastModified: time.Unix(v.lastMod, 0).UTC(), Published: time.Unix(v.published, 0).UTC(),
		Patchable: v.patchable, PCIFlag: v.pci, Remote: v.remote(), AuthTypes: v.authTypes(),
	}
	for i := range v.nBugtraq() {
		k.Bugtraq = append(k.Bugtraq, KBRef{string(v.appendBugtraqID(nil, i)), string(v.appendBugtraqURL(nil, i))})
	}
	for i := range v.nSoftware() {
		p, vendor := v.software(i)
		k.Software = append(k.Software, KBSoftware{p, vendor})
	}
	for i := range v.nVendorRefs() {
		k.VendorRefs = append(k.VendorRefs, KBRef{string(v.appendRefID(nil, i)), string(v.appendRefURL(nil, i))})
	}
	for i := range v.nCVE {
		k.CVEs = append(k.CVEs, KBRef{string(v.appendCVE(nil, i)), string(v.appendCVEURL(nil, i))})
	}
	if all {
		k.Diagnosis, k.Consequence, k.Solution = str(v.appendDiagnosis), str(v.appendConsequence), str(v.appendSolution)
		for i := range v.nExploits() {
			k.Exploits = append(k.Exploits, KBExploit{Source: v.exploitSrc(i), Ref: string(v.appendCVE(nil, 0)),
				Desc: str(v.appendExploitDesc), Link: string(v.appendExploitLink(nil, i))})
		}
	}
	cvss := func(v3 bool, base int) *KBCVSS {
		c := &KBCVSS{Base: string(appendTenths(nil, int64(base))), Temporal: string(appendTenths(nil, v.cvssTemporal(v3)))}
		if v.baseSource() {
			c.BaseSource = "service"
		}
		if all {
			c.Vector = string(v.appendCVSSVector(nil, v3))
			if v3 {
				c.Version = "3.1"
			}
		}
		return c
	}
	if v.cvss >= 0 {
		k.CVSS = cvss(false, kbCVSS2[v.cvss].base)
	}
	if v.cvss3 >= 0 {
		k.CVSS3 = cvss(true, kbCVSS3[v.cvss3].base)
	}
	if q.ShowPCIReasons {
		for i := range v.nPCIReasons() {
			k.PCIReasons = append(k.PCIReasons, v.pciReason(i))
		}
	}
	threats := v.threats()
	for id := range kbThreats {
		if threats&(1<<id) != 0 {
			k.ThreatIntel = append(k.ThreatIntel, KBThreatIntel{id, kbThreats[id]})
		}
	}
	if q.ShowModules {
		k.SupportedModules = v.modules()
	}
	k.AdditionalInfo = v.additionalInfo(threats)
	if q.ShowDisabled {
		k.Disabled = v.disabled
	}
	if from, to := v.changeLog(); q.ShowChangeLog {
		for e := from; e <= to; e++ {
			k.ChangeLog = append(k.ChangeLog, KBChange{time.Unix(v.changeDate(e), 0).UTC(), v.changeComment(e)})
		}
	}
	return k
}

// serveKBTruth answers /__sim/truth?kind=kb.
func (s *Sim) serveKBTruth(w http.ResponseWriter, q *KBQuery, at time.Time, countOnly bool, ctl url.Values) {
	ids := s.kbIDs(at, q)
	v := map[string]any{"kind": KB, "at": at.UTC().Format(time.RFC3339), "count": len(ids)}
	if !countOnly {
		v["qids"] = ids
	}
	if ctl.Get("rows") == "1" {
		vulns := []KBVuln{}
		s.KBSelect(at, q, func(k KBVuln) bool {
			vulns = append(vulns, k)
			return true
		})
		v["vulns"] = vulns
	}
	if la := ctl.Get("late_after"); la != "" {
		after, err := time.Parse(time.RFC3339, la)
		if err != nil {
			http.Error(w, "late_after: "+err.Error(), http.StatusBadRequest)
			return
		}
		late := s.KBLate(after, at)
		if late == nil {
			late = []KBLateQID{}
		}
		v["late"] = late
	}
	writeJSON(w, v)
}
