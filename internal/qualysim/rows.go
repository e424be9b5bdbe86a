package qualysim

import (
	"iter"
	"time"
)

// The row truth: every value the simulator writes for a host and its
// detections, typed, for tests that check a converted table (the analyst
// tables, #20) against the model rather than against qfetch's own reading
// of the XML. The values come from the structures the writers write from
// (hostAttrs, allAttrs, detVals) and are rendered by the same append
// functions, so the truth and the XML cannot drift apart.
//
// Times are UTC to the second, as Qualys writes them. An optional element
// is a nil pointer (or nil slice) when the simulator leaves it out. The
// simulator never writes IPV6, ASSET_ID, NETWORK_ID, FQDN on a detection,
// QG_HOSTID outside details=All, or tags without show_tags=1: those
// columns stay null.

// HostFields is one HOST: what a Host List call writes with details=Basic
// or All (HostRows), or what a Host List Detection call writes before the
// DETECTION_LIST (DetectionRows; the All-only fields are then nil).
type HostFields struct {
	ID             uint64
	IP             string
	TrackingMethod string  // IP, DNS, NETBIOS, AGENT or EC2
	DNS            string  // DNS; also DNS_DATA/FQDN
	Hostname       string  // DNS_DATA/HOSTNAME
	Domain         string  // DNS_DATA/DOMAIN
	NetBIOS        *string // NETBIOS: Windows hosts only
	OS             string
	// LastScan is LAST_VULN_SCAN_DATETIME on the Host List and
	// LAST_SCAN_DATETIME on a detection HOST: the same instant.
	LastScan              time.Time
	LastVMScanned         time.Time // LAST_VM_SCANNED_DATE
	LastVMScannedDuration int       // LAST_VM_SCANNED_DURATION, seconds

	// Only with details=All on the Host List.
	QGHostID                  *string    // QG_HOSTID: agent-tracked hosts
	FirstFound                *time.Time // FIRST_FOUND_DATE
	LastVMAuthScanned         *time.Time // LAST_VM_AUTH_SCANNED_DATE
	LastVMAuthScannedDuration *int       // LAST_VM_AUTH_SCANNED_DURATION, seconds
	Comments                  *string    // COMMENTS (CDATA: tabs, newlines, & and <)
	UserDef1                  *string    // USER_DEF/VALUE_1
	AssetGroupIDs             []uint64   // ASSET_GROUP_IDS, a comma list in the XML

	// Tags are TAGS/TAG in document order, with show_tags=1 on either
	// API (Filter.ShowTags); nil without it or for a host without a tag.
	Tags []Tag
}

// HostDetections is one HOST of a Host List Detection answer: its fields
// and its DETECTION elements in document order.
type HostDetections struct {
	Host       HostFields
	Detections []DetectionTruth
}

// DetectionTruth is one DETECTION, every element the simulator writes.
type DetectionTruth struct {
	UniqueVulnID uint64
	QID          int
	Type         string // Confirmed, Potential or Info
	Severity     int    // 1-5
	Port         *int   // PORT; absent for Info and portless findings
	Protocol     *string
	SSL          *bool   // SSL; absent for Info
	Results      *string // RESULTS (CDATA text as written); absent with show_results=0
	Status       string  // New, Active, Fixed or Re-Opened
	FirstFound   time.Time
	LastFound    time.Time
	QDS          *int        // QDS; absent for Info and with show_qds=0
	QDSSeverity  string      // QDS's severity attribute: LOW, MEDIUM, HIGH, CRITICAL; "" without QDS
	QDSFactors   []QDSFactor // QDS_FACTORS in document order; nil without them
	TimesFound   int
	LastTest     time.Time
	LastUpdate   time.Time
	LastFixed    *time.Time
	// Reopened detections with show_reopened_info=1 only.
	FirstReopened *time.Time
	LastReopened  *time.Time
	TimesReopened *int
	IsIgnored     bool
	IsDisabled    bool
	// AffectRunningKernel is written only as 1; nil when absent.
	AffectRunningKernel *bool
	LastProcessed       time.Time
}

// QDSFactor is one QDS_FACTOR: its name attribute and its text.
type QDSFactor struct{ Name, Value string }

// HostRows yields, ascending, each HOST a Host List call with f's
// parameters returns (all pages together), with details f.HostDetails
// ("" is Basic; None yields the IDs alone).
func (s *Sim) HostRows(f Filter) iter.Seq[HostFields] {
	return func(yield func(HostFields) bool) {
		sel := f.compile(s.clock.Now(), false)
		s.m.scan(&sel, func(h hostRef) bool {
			if f.HostDetails == "None" {
				return yield(HostFields{ID: h.id})
			}
			a := s.attrs(h)
			hf := hostFields(&a, h)
			if f.HostDetails == "All" {
				x := s.allAttrs(&a, h)
				hf.addAll(&a, &x)
			}
			if f.ShowTags {
				hf.Tags = s.hostTags(h)
			}
			return yield(hf)
		})
	}
}

// DetectionRows yields, ascending by host ID, each host a Host List
// Detection call with f's parameters returns (all pages together): its
// fields and its detections, shaped by f's output switches as the call's
// show_* parameters shape them. Hosts without a matching detection are not
// yielded: the API omits them.
func (s *Sim) DetectionRows(f Filter) iter.Seq2[uint64, HostDetections] {
	return func(yield func(uint64, HostDetections) bool) {
		sel := f.compile(s.clock.Now(), true)
		opts := f.outOpts()
		s.m.scan(&sel, func(h hostRef) bool {
			a := s.attrs(h)
			hd := HostDetections{Host: hostFields(&a, h)}
			if f.ShowTags {
				hd.Host.Tags = s.hostTags(h)
			}
			var it detIter
			var v detVals
			s.startDetections(&it, h, &a, &f)
			for s.nextDetection(&it) {
				s.detValues(opts, &it.d, &v)
				hd.Detections = append(hd.Detections, v.truth(&it.d))
			}
			return yield(h.id, hd)
		})
	}
}

func utc(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

func ptr[T any](v T) *T { return &v }

// hostFields is what both APIs write of a host.
func hostFields(a *hostAttrs, h hostRef) HostFields {
	var b []byte
	str := func(app func([]byte) []byte) string {
		b = app(b[:0])
		return string(b)
	}
	hf := HostFields{
		ID:                    h.id,
		IP:                    str(func(b []byte) []byte { return appendIP(b, h.i) }),
		TrackingMethod:        a.tracking,
		DNS:                   str(func(b []byte) []byte { return appendFQDN(b, a, h.id) }),
		Hostname:              str(func(b []byte) []byte { return appendHostname(b, a, h.id) }),
		Domain:                a.domain,
		OS:                    a.os,
		LastScan:              utc(a.scanEnd),
		LastVMScanned:         utc(a.vmScan),
		LastVMScannedDuration: int(a.duration),
	}
	if a.windows {
		hf.NetBIOS = ptr(str(func(b []byte) []byte { return appendNetBIOS(b, a, h.id) }))
	}
	return hf
}

// addAll sets the fields details=All adds.
func (hf *HostFields) addAll(a *hostAttrs, x *allAttrs) {
	if x.qgHostID {
		hf.QGHostID = ptr(string(appendQGHostID(nil, a)))
	}
	hf.FirstFound = ptr(utc(x.firstFound))
	if x.authScan != 0 {
		hf.LastVMAuthScanned = ptr(utc(x.authScan))
		hf.LastVMAuthScannedDuration = ptr(int(x.authDuration))
	}
	if x.comments {
		hf.Comments = ptr(string(appendComments(nil, a)))
	}
	hf.UserDef1 = ptr(string(appendUserDef(nil, x)))
	hf.AssetGroupIDs = []uint64{x.groups[0]}
	if x.groups[1] != 0 {
		hf.AssetGroupIDs = append(hf.AssetGroupIDs, x.groups[1])
	}
}

// truth is detection d's row.
func (v *detVals) truth(d *det) DetectionTruth {
	t := DetectionTruth{
		UniqueVulnID:  v.uvid,
		QID:           int(v.qid),
		Type:          typeNames[d.typ],
		Severity:      int(v.sev),
		Status:        statusName(d.st),
		FirstFound:    utc(v.first),
		LastFound:     utc(v.last),
		TimesFound:    int(v.timesFound),
		LastTest:      utc(d.scan),
		LastUpdate:    utc(d.h.last),
		LastProcessed: utc(d.h.last),
	}
	if d.typ != typeInfo {
		if v.port != 0 {
			t.Port, t.Protocol = ptr(int(v.port)), ptr(protocol(v.port))
		}
		t.SSL = ptr(ssl(v.port))
	}
	if v.hasResults {
		t.Results = ptr(string(v.results))
	}
	if v.qds != 0 {
		t.QDS, t.QDSSeverity = ptr(int(v.qds)), qdsSeverity(v.qds)
		if v.factors {
			t.QDSFactors = make([]QDSFactor, len(qdsFactorNames))
			for k, name := range qdsFactorNames {
				t.QDSFactors[k] = QDSFactor{name, string(v.appendFactor(nil, k))}
			}
		}
	}
	if v.lastFixed != 0 {
		t.LastFixed = ptr(utc(v.lastFixed))
	}
	if v.reopened {
		t.FirstReopened, t.LastReopened = ptr(utc(v.firstReopened)), ptr(utc(d.scan))
		t.TimesReopened = ptr(int(v.timesReopened))
	}
	if v.kernel {
		t.AffectRunningKernel = ptr(true)
	}
	return t
}
