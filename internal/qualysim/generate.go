package qualysim

import (
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// The two streamed documents. Shapes follow qualys-api.md §2.2 and §3.2–3.3
// and the recorded samples: declaration, DOCTYPE with a remote DTD, comments
// around the root, CDATA for free text (tabs, newlines and &lt;-style
// entities inside), QDS with a severity attribute, detections in DTD order,
// and now and then a newline inside a start tag or whitespace around a
// CDATA section, as real answers have.

// page is what one document needs beyond the request.
type page struct {
	base string // scheme://host[:port] for the DOCTYPE and WARNING URL
	path string // request path, kept in the WARNING URL
	now  int64
}

// writePage streams the selected hosts of req, at most req.limit, then the
// truncation WARNING when more remain. emit writes one host.
func (s *Sim) writePage(o *out, req *request, pg page, root, dtd string, emit func(o *out, h hostRef), open string, end func(*out)) {
	o.buf = appendDoctype(o.buf, true, root, pg.base, pg.path, dtd)
	o.s(evalNote)
	o.s("<")
	o.s(root)
	o.s(">\n  <RESPONSE>\n    <DATETIME>")
	o.t(pg.now)
	o.s("</DATETIME>\n")

	sel := req.filter.compile(time.Unix(pg.now, 0), req.ep == epDetection)
	count, opened := 0, false
	var next uint64
	more := false
	s.m.scan(&sel, func(h hostRef) bool {
		if req.limit > 0 && count == req.limit {
			next, more = h.id, true
			return false
		}
		if !opened {
			o.s(open)
			opened = true
		}
		emit(o, h)
		count++
		return o.more()
	})
	if o.err != nil {
		return
	}
	if opened {
		end(o)
	}
	if more {
		o.s("    <WARNING>\n      <CODE>1980</CODE>\n      <TEXT>")
		o.i(int64(req.limit))
		o.s(" record limit exceeded. Use URL to get next batch of results.</TEXT>\n      <URL><![CDATA[")
		appendWarningURL(o, pg, req.ps, next)
		o.s("]]></URL>\n    </WARNING>\n")
	}
	o.s("  </RESPONSE>\n")
	if !o.closing() {
		return
	}
	o.s("</")
	o.s(root)
	o.s(">\n")
	o.s(evalNote)
	o.s(confidNote)
	o.flush()
}

// appendWarningURL writes the next page's URL: the request's parameters in
// their order and encoding, id_min replaced. ']' is escaped so that no
// parameter can end the CDATA section.
func appendWarningURL(o *out, pg page, ps params, next uint64) {
	o.s(pg.base)
	o.s(pg.path)
	o.s("?")
	for _, p := range ps {
		if p.key == "id_min" {
			continue
		}
		o.s(strings.ReplaceAll(p.raw, "]", "%5D"))
		o.s("&")
	}
	o.s("id_min=")
	o.u(next)
}

// writeHostList streams a Host List answer.
func (s *Sim) writeHostList(o *out, req *request, pg page) {
	if req.details != "None" {
		all := req.details == "All"
		s.writePage(o, req, pg, "HOST_LIST_OUTPUT", "host_list_output.dtd",
			func(o *out, h hostRef) { s.listHost(o, h, all, req.filter.ShowTags) },
			"    <HOST_LIST>\n", closeTag("    </HOST_LIST>\n"))
		return
	}
	if !s.cfg.IDRanges {
		s.writePage(o, req, pg, "HOST_LIST_OUTPUT", "host_list_output.dtd",
			func(o *out, h hostRef) {
				o.s("      <ID>")
				o.u(h.id)
				o.s("</ID>\n")
			},
			"    <ID_SET>\n", closeTag("    </ID_SET>\n"))
		return
	}
	// Runs of consecutive IDs become one ID_RANGE. A run is written when
	// it breaks, so the last one goes out with the closing tag.
	var first, last uint64
	pending := false
	flushRun := func(o *out) {
		if !pending {
			return
		}
		if first == last {
			o.s("      <ID>")
			o.u(first)
			o.s("</ID>\n")
		} else {
			o.s("      <ID_RANGE>")
			o.u(first)
			o.s("-")
			o.u(last)
			o.s("</ID_RANGE>\n")
		}
		pending = false
	}
	s.writePage(o, req, pg, "HOST_LIST_OUTPUT", "host_list_output.dtd",
		func(o *out, h hostRef) {
			if pending && h.id == last+1 {
				last = h.id
				return
			}
			flushRun(o)
			first, last, pending = h.id, h.id, true
		},
		"    <ID_SET>\n", func(o *out) {
			flushRun(o)
			o.s("    </ID_SET>\n")
		})
}

func closeTag(tag string) func(*out) { return func(o *out) { o.s(tag) } }

// hostAttrs are a host's descriptive fields: the values both the writers
// and the truth (HostFields) take, computed once per host.
type hostAttrs struct {
	h        uint64
	tracking string
	os       string
	prefix   string
	domain   string
	windows  bool
	scanEnd  int64 // LAST_SCAN_DATETIME
	vmScan   int64 // LAST_VM_SCANNED_DATE
	duration int64
}

func (s *Sim) attrs(h hostRef) hostAttrs {
	hh := s.m.h(sHost, uint64(h.i))
	a := hostAttrs{
		h:        hh,
		tracking: trackingMethods[hh%uint64(len(trackingMethods))],
		os:       osNames[(hh>>8)%uint64(len(osNames))],
		prefix:   hostPrefixes[(hh>>16)%uint64(len(hostPrefixes))],
		domain:   domains[(hh>>24)%uint64(len(domains))],
		duration: 60 + int64((hh>>48)%3000),
	}
	a.windows = strings.HasPrefix(a.os, "Windows")
	a.scanEnd = h.last - 30 - int64((hh>>40)%1800)
	a.vmScan = a.scanEnd - 90
	return a
}

// allAttrs are the fields only details=All adds to a Host List HOST, in
// DTD order; zero means the element is absent.
type allAttrs struct {
	qgHostID     bool  // QG_HOSTID: agent-tracked hosts
	firstFound   int64 // FIRST_FOUND_DATE
	authScan     int64 // LAST_VM_AUTH_SCANNED_DATE
	authDuration int64 // LAST_VM_AUTH_SCANNED_DURATION
	comments     bool  // COMMENTS
	userDef      uint64
	groups       [2]uint64 // ASSET_GROUP_IDS; groups[1] == 0: one group
}

func (s *Sim) allAttrs(a *hostAttrs, h hostRef) allAttrs {
	g := s.m.h(sHostAll, uint64(h.i))
	x := allAttrs{
		qgHostID:   a.tracking == "AGENT",
		firstFound: min(h.sch.origin-int64(g%(400*day)), a.scanEnd),
		comments:   (g>>32)&3 == 0,
		userDef:    100 + (g>>36)%900,
		groups:     [2]uint64{1000 + (g>>48)%40},
	}
	if h.i >= s.m.hosts {
		x.firstFound = min(h.sch.origin, a.scanEnd) // created when first processed
	}
	if (g>>34)&1 == 0 {
		x.authScan, x.authDuration = a.vmScan, a.duration/2+10
	}
	if (g>>40)&1 == 0 {
		x.groups[1] = 1040 + (g>>56)%40
	}
	return x
}

// Host fields as text: one code path for the XML and the truth.

func appendIP(b []byte, i int64) []byte {
	i++ // no 10.0.0.0
	b = append(b, "10."...)
	b = strconv.AppendUint(b, uint64(i>>16)&255, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(i>>8)&255, 10)
	b = append(b, '.')
	return strconv.AppendUint(b, uint64(i)&255, 10)
}

func appendHostname(b []byte, a *hostAttrs, id uint64) []byte {
	b = append(b, a.prefix...)
	b = append(b, '-')
	return strconv.AppendUint(b, id, 10)
}

func appendFQDN(b []byte, a *hostAttrs, id uint64) []byte {
	b = appendHostname(b, a, id)
	b = append(b, '.')
	return append(b, a.domain...)
}

// appendNetBIOS is a Windows host's NETBIOS name; others have none.
func appendNetBIOS(b []byte, a *hostAttrs, id uint64) []byte {
	b = append(b, netbiosPrefixes[(a.h>>16)%uint64(len(hostPrefixes))]...)
	b = append(b, '-')
	return strconv.AppendUint(b, id, 10)
}

// appendQGHostID is an agent host's QG_HOSTID, UUID-shaped.
func appendQGHostID(b []byte, a *hostAttrs) []byte {
	const hex = "0123456789abcdef"
	x, y := a.h, mix(a.h)
	for k := range 32 {
		if k == 8 || k == 12 || k == 16 || k == 20 {
			b = append(b, '-')
		}
		v := x
		if k >= 16 {
			v = y
		}
		b = append(b, hex[(v>>(4*(k%16)))&15])
	}
	return b
}

func appendComments(b []byte, a *hostAttrs) []byte {
	b = append(b, "Owner: team-"...)
	b = append(b, a.prefix...)
	return append(b, "\n\tpatch window: Sunday 02:00 & 04:00 <UTC>"...)
}

func appendUserDef(b []byte, x *allAttrs) []byte {
	b = append(b, "cost-center-"...)
	return strconv.AppendUint(b, x.userDef, 10)
}

func appendGroups(b []byte, x *allAttrs) []byte {
	b = strconv.AppendUint(b, x.groups[0], 10)
	if x.groups[1] != 0 {
		b = append(b, ',')
		b = strconv.AppendUint(b, x.groups[1], 10)
	}
	return b
}

func (o *out) ip(i int64) { o.buf = appendIP(o.buf, i) }

func (o *out) dnsData(a *hostAttrs, id uint64, indent string) {
	o.s(indent)
	o.s("<DNS><![CDATA[")
	o.buf = appendFQDN(o.buf, a, id)
	o.s("]]></DNS>\n")
	o.s(indent)
	o.s("<DNS_DATA>\n")
	o.s(indent)
	o.s("  <HOSTNAME><![CDATA[")
	o.buf = appendHostname(o.buf, a, id)
	o.s("]]></HOSTNAME>\n")
	o.s(indent)
	o.s("  <DOMAIN><![CDATA[")
	o.s(a.domain)
	o.s("]]></DOMAIN>\n")
	o.s(indent)
	o.s("  <FQDN><![CDATA[")
	o.buf = appendFQDN(o.buf, a, id)
	o.s("]]></FQDN>\n")
	o.s(indent)
	o.s("</DNS_DATA>\n")
	if a.windows {
		o.s(indent)
		o.s("<NETBIOS><![CDATA[")
		o.buf = appendNetBIOS(o.buf, a, id)
		o.s("]]></NETBIOS>\n")
	}
}

// hostHead opens a HOST with the elements both APIs start it with.
func (o *out) hostHead(a *hostAttrs, h hostRef) {
	o.s("      <HOST>\n        <ID>")
	o.u(h.id)
	o.s("</ID>\n        <IP>")
	o.ip(h.i)
	o.s("</IP>\n        <TRACKING_METHOD>")
	o.s(a.tracking)
	o.s("</TRACKING_METHOD>\n")
}

// listHost is a Host List HOST with details=Basic or, with all, All;
// tags adds its TAGS (show_tags=1).
func (s *Sim) listHost(o *out, h hostRef, all, tags bool) {
	a := s.attrs(h)
	o.hostHead(&a, h)
	o.dnsData(&a, h.id, "        ")
	o.hostOS(&a, false)
	if !all {
		if tags {
			s.writeTags(o, h)
		}
		o.scanDates(&a, "LAST_VULN_SCAN_DATETIME")
		o.s("      </HOST>\n")
		return
	}
	x := s.allAttrs(&a, h)
	if x.qgHostID {
		o.s("        <QG_HOSTID><![CDATA[")
		o.buf = appendQGHostID(o.buf, &a)
		o.s("]]></QG_HOSTID>\n")
	}
	o.s("        <FIRST_FOUND_DATE>")
	o.t(x.firstFound)
	o.s("</FIRST_FOUND_DATE>\n")
	if tags {
		s.writeTags(o, h)
	}
	o.scanDates(&a, "LAST_VULN_SCAN_DATETIME")
	if x.authScan != 0 {
		o.s("        <LAST_VM_AUTH_SCANNED_DATE>")
		o.t(x.authScan)
		o.s("</LAST_VM_AUTH_SCANNED_DATE>\n        <LAST_VM_AUTH_SCANNED_DURATION>")
		o.i(x.authDuration)
		o.s("</LAST_VM_AUTH_SCANNED_DURATION>\n")
	}
	if x.comments {
		o.s("        <COMMENTS><![CDATA[")
		o.buf = appendComments(o.buf, &a)
		o.s("]]></COMMENTS>\n")
	}
	o.s("        <USER_DEF>\n          <VALUE_1><![CDATA[")
	o.buf = appendUserDef(o.buf, &x)
	o.s("]]></VALUE_1>\n        </USER_DEF>\n        <ASSET_GROUP_IDS>")
	o.buf = appendGroups(o.buf, &x)
	o.s("</ASSET_GROUP_IDS>\n      </HOST>\n")
}

// hostOS writes a HOST's OS; spaced puts whitespace around the CDATA, as in
// Elastic's recorded sample.
func (o *out) hostOS(a *hostAttrs, spaced bool) {
	if spaced {
		o.s("        <OS>\n          <![CDATA[")
		o.s(a.os)
		o.s("]]>\n        </OS>\n")
		return
	}
	o.s("        <OS><![CDATA[")
	o.s(a.os)
	o.s("]]></OS>\n")
}

// scanDates writes the last scan's time, date and duration, which both APIs
// give a HOST; they name the first element differently.
func (o *out) scanDates(a *hostAttrs, scanTag string) {
	o.s("        <")
	o.s(scanTag)
	o.s(">")
	o.t(a.scanEnd)
	o.s("</")
	o.s(scanTag)
	o.s(">\n        <LAST_VM_SCANNED_DATE>")
	o.t(a.vmScan)
	o.s("</LAST_VM_SCANNED_DATE>\n        <LAST_VM_SCANNED_DURATION>")
	o.i(a.duration)
	o.s("</LAST_VM_SCANNED_DURATION>\n")
}

// writeDetections streams a Host List Detection answer.
func (s *Sim) writeDetections(o *out, req *request, pg page) {
	s.writePage(o, req, pg, "HOST_LIST_VM_DETECTION_OUTPUT", "dtd/output.dtd",
		func(o *out, h hostRef) { s.detectionHost(o, req, h) },
		"    <HOST_LIST>\n", closeTag("    </HOST_LIST>\n"))
}

func (s *Sim) detectionHost(o *out, req *request, h hostRef) {
	a := s.attrs(h)
	o.hostHead(&a, h)
	o.hostOS(&a, (a.h>>32)&7 == 0)
	o.dnsData(&a, h.id, "        ")
	o.scanDates(&a, "LAST_SCAN_DATETIME")
	if req.filter.ShowTags {
		s.writeTags(o, h)
	}
	o.s("        <DETECTION_LIST>\n")
	opts := req.outOpts()
	var it detIter
	var v detVals
	s.startDetections(&it, h, &a, &req.filter)
	for s.nextDetection(&it) {
		s.detValues(opts, &it.d, &v)
		o.detection(&it.d, &v)
		if len(o.buf) >= flushAt && !o.flush() {
			return
		}
	}
	o.s("        </DETECTION_LIST>\n      </HOST>\n")
}

// detIter walks a host's detections that a filter's statuses and show_igs
// select, in order: the writer and the truth both walk them here. It is a
// value on the caller's stack, not a callback, so that the hot path
// allocates nothing.
type detIter struct {
	d        det
	j, n     int
	statuses StatusSet
	igs      bool
}

func (s *Sim) startDetections(it *detIter, h hostRef, a *hostAttrs, f *Filter) {
	// Dates shared by every detection of the host, formatted once.
	it.d = det{h: h, scan: a.scanEnd}
	appendTime(it.d.lastTS[:0], h.last)
	appendTime(it.d.scanTS[:0], a.scanEnd)
	it.j, it.n = 0, s.m.ndet(h.i)
	it.statuses, it.igs = f.Statuses, f.ShowIGs
	if it.statuses == 0 {
		it.statuses = DefaultStatuses
	}
}

// nextDetection moves it.d to the next selected detection; false at the end.
func (s *Sim) nextDetection(it *detIter) bool {
	d := &it.d
	for ; it.j < it.n; it.j++ {
		d.j, d.key = it.j, s.m.detKey(d.h.i, it.j)
		d.da = s.m.h(sDet, d.key)
		d.typ = s.m.detType(d.da)
		if d.typ == typeInfo && !it.igs {
			continue
		}
		d.st = s.m.status(d.key, d.h.epoch)
		if d.st&it.statuses == 0 {
			continue
		}
		d.db = s.m.h(sResults, d.key)
		it.j++
		return true
	}
	return false
}

var typeNames = [...]string{"Confirmed", "Potential", "Info"}

func qdsSeverity(score uint64) string {
	switch {
	case score < 40:
		return "LOW"
	case score < 70:
		return "MEDIUM"
	case score < 90:
		return "HIGH"
	}
	return "CRITICAL"
}

// det is one detection being written: its place on the host, its hashes
// (da: attributes, db: results and dates), type and status, and the host's
// dates it shares with its siblings.
type det struct {
	h              hostRef
	scan           int64 // the host's last scan
	j              int
	key, da, db    uint64
	typ            int
	st             StatusSet
	lastTS, scanTS [20]byte // the host's last processed and last scan times, formatted
}

// outOpts are a detection call's output switches.
type outOpts struct {
	results, reopened, qds, factors bool
}

// detVals is one DETECTION's values, computed once: the writer writes
// them, the truth (DetectionTruth) returns them. Zero marks an absent
// optional element.
type detVals struct {
	uvid, qid, sev uint64
	port           uint64 // PORT and PROTOCOL; 0: neither
	hasResults     bool   // RESULTS
	results        []byte
	resultsNL      bool   // a newline inside RESULTS' start tag
	first, last    int64  // FIRST_FOUND_DATETIME, LAST_FOUND_DATETIME
	qds            uint64 // QDS; 0: absent (with its factors)
	factors        bool   // QDS_FACTORS
	cvss, cvssTen  uint64 // QDS_FACTOR CVSS: cvss.cvssTen
	epss           uint64 // QDS_FACTOR epss: 0.epss
	vector         string // QDS_FACTOR CVSS_vector
	timesFound     int64
	lastFixed      int64 // LAST_FIXED_DATETIME; 0: absent
	reopened       bool  // FIRST/LAST_REOPENED_DATETIME and TIMES_REOPENED
	firstReopened  int64
	timesReopened  uint64
	kernel         bool // AFFECT_RUNNING_KERNEL
}

// detValues computes detection d's values under opts into v.
func (s *Sim) detValues(opts outOpts, d *det, v *detVals) {
	*v = detVals{uvid: d.h.id<<16 | uint64(d.j), sev: 1 + (d.da>>8)%5}
	if d.typ == typeInfo {
		v.qid = 45000 + (d.da>>16)%1000
	} else {
		v.qid = 10000 + (d.da>>16)%380000
		if (d.da>>36)&3 != 0 {
			v.port = uint64(commonPorts[(d.da>>40)%uint64(len(commonPorts))])
		}
	}
	if opts.results && s.corpus.mean > 0 {
		v.hasResults, v.results, v.resultsNL = true, s.corpus.slice(d.db), d.db>>60 == 0
	}
	v.first, v.last = d.found()
	if d.typ != typeInfo && opts.qds {
		v.qds = 1 + (d.da>>44)%100
		if opts.factors {
			v.factors = true
			v.cvss, v.cvssTen = 1+(d.da>>50)%9, (d.da>>54)%10
			v.epss = 10000 + (d.db>>8)%90000
			v.vector = cvssVectors[(d.da>>58)%uint64(len(cvssVectors))]
		}
	}
	v.timesFound = 1 + (v.last-v.first)/d.h.sch.period
	scan := d.scan
	switch {
	case d.st == StatusFixed:
		v.lastFixed = scan
	case d.st == StatusReopened:
		v.lastFixed = v.first + (scan-v.first)/2
	case (d.db>>4)&7 == 0:
		v.lastFixed = v.first + (scan-v.first)/3
	}
	if d.st == StatusReopened && opts.reopened {
		v.reopened = true
		v.firstReopened = v.lastFixed + (scan-v.lastFixed)/2
		v.timesReopened = 1 + d.db%3
	}
	v.kernel = d.typ != typeInfo && (d.da>>28)&7 == 0
}

// detection writes one DETECTION, its elements in DTD order.
func (o *out) detection(d *det, v *detVals) {
	o.s("          <DETECTION>\n            <UNIQUE_VULN_ID>")
	o.u(v.uvid)
	o.s("</UNIQUE_VULN_ID>\n            <QID>")
	o.u(v.qid)
	o.s("</QID>\n            <TYPE>")
	o.s(typeNames[d.typ])
	o.s("</TYPE>\n            <SEVERITY>")
	o.u(v.sev)
	o.s("</SEVERITY>\n")
	if d.typ != typeInfo {
		// Information Gathered has neither port nor SSL.
		if v.port != 0 {
			o.s("            <PORT>")
			o.u(v.port)
			o.s("</PORT>\n            <PROTOCOL>")
			o.s(protocol(v.port))
			o.s("</PROTOCOL>\n")
		}
		if ssl(v.port) {
			o.s("            <SSL>1</SSL>\n")
		} else {
			o.s("            <SSL>0</SSL>\n")
		}
	}
	if v.hasResults {
		o.results(v.results, v.resultsNL)
	}
	o.s("            <STATUS>")
	o.s(statusName(d.st))
	o.s("</STATUS>\n            <FIRST_FOUND_DATETIME>")
	o.t(v.first)
	o.s("</FIRST_FOUND_DATETIME>\n            <LAST_FOUND_DATETIME>")
	o.t(v.last)
	o.s("</LAST_FOUND_DATETIME>\n")
	if v.qds != 0 {
		o.qds(v)
	}
	o.s("            <TIMES_FOUND>")
	o.i(v.timesFound)
	o.s("</TIMES_FOUND>\n            <LAST_TEST_DATETIME>")
	o.b(d.scanTS[:])
	o.s("</LAST_TEST_DATETIME>\n            <LAST_UPDATE_DATETIME>")
	o.b(d.lastTS[:])
	o.s("</LAST_UPDATE_DATETIME>\n")
	if v.lastFixed != 0 {
		o.s("            <LAST_FIXED_DATETIME>")
		o.t(v.lastFixed)
		o.s("</LAST_FIXED_DATETIME>\n")
	}
	if v.reopened {
		o.s("            <FIRST_REOPENED_DATETIME>")
		o.t(v.firstReopened)
		o.s("</FIRST_REOPENED_DATETIME>\n            <LAST_REOPENED_DATETIME>")
		o.b(d.scanTS[:])
		o.s("</LAST_REOPENED_DATETIME>\n            <TIMES_REOPENED>")
		o.u(v.timesReopened)
		o.s("</TIMES_REOPENED>\n")
	}
	o.s("            <IS_IGNORED>0</IS_IGNORED>\n            <IS_DISABLED>0</IS_DISABLED>\n")
	if v.kernel {
		o.s("            <AFFECT_RUNNING_KERNEL>1</AFFECT_RUNNING_KERNEL>\n")
	}
	o.s("            <LAST_PROCESSED_DATETIME>")
	o.b(d.lastTS[:])
	o.s("</LAST_PROCESSED_DATETIME>\n          </DETECTION>\n")
}

// statusName names a single status.
func statusName(st StatusSet) string { return statusNames[bits.TrailingZeros8(uint8(st))] }

func protocol(port uint64) string {
	if port == 53 {
		return "udp"
	}
	return "tcp"
}

func ssl(port uint64) bool { return port == 443 || port == 8443 }

// results writes RESULTS; newlineInTag breaks the start tag, as in the
// JupiterOne fixture.
func (o *out) results(text []byte, newlineInTag bool) {
	if newlineInTag {
		o.s("            <RESULTS\n            ><![CDATA[")
	} else {
		o.s("            <RESULTS><![CDATA[")
	}
	o.b(text)
	o.s("]]></RESULTS>\n")
}

// found is when the detection was first and last found: a New one first
// within the host's last scan period, a Fixed one last a period before the
// last scan.
func (d *det) found() (first, last int64) {
	period := d.h.sch.period
	first = d.scan - int64((d.db>>20)%(400*day))
	if d.st == StatusNew {
		first = d.scan - int64((d.db>>20)%uint64(period))
	}
	last = d.scan
	if d.st == StatusFixed {
		last = max(d.scan-period, first)
	}
	return first, last
}

// qds writes the QDS score and, with factors, the QDS_FACTORS behind it.
func (o *out) qds(v *detVals) {
	o.s("            <QDS severity=\"")
	o.s(qdsSeverity(v.qds))
	o.s("\">")
	o.u(v.qds)
	o.s("</QDS>\n")
	if !v.factors {
		return
	}
	o.s("            <QDS_FACTORS>\n")
	for k := range qdsFactorNames {
		o.s("              <QDS_FACTOR name=\"")
		o.s(qdsFactorNames[k])
		o.s("\"><![CDATA[")
		o.buf = v.appendFactor(o.buf, k)
		o.s("]]></QDS_FACTOR>\n")
	}
	o.s("            </QDS_FACTORS>\n")
}

// qdsFactorNames are the QDS_FACTOR names, in the order they are written.
var qdsFactorNames = [...]string{"CVSS", "CVSS_version", "epss", "CVSS_vector"}

// appendFactor appends the value of QDS factor k (qdsFactorNames).
func (v *detVals) appendFactor(b []byte, k int) []byte {
	switch k {
	case 0:
		b = strconv.AppendUint(b, v.cvss, 10)
		b = append(b, '.')
		return strconv.AppendUint(b, v.cvssTen, 10)
	case 1:
		return append(b, "v3.x"...)
	case 2:
		b = append(b, "0."...)
		return strconv.AppendUint(b, v.epss, 10)
	}
	return append(b, v.vector...)
}
