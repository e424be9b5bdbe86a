package qualysim

import (
	"math/bits"
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
	if req.details == "Basic" {
		s.writePage(o, req, pg, "HOST_LIST_OUTPUT", "host_list_output.dtd",
			func(o *out, h hostRef) { s.basicHost(o, h) },
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

// hostAttrs are a host's descriptive fields.
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

func (o *out) ip(i int64) {
	i++ // no 10.0.0.0
	o.s("10.")
	o.u(uint64(i>>16) & 255)
	o.s(".")
	o.u(uint64(i>>8) & 255)
	o.s(".")
	o.u(uint64(i) & 255)
}

func (o *out) hostname(a *hostAttrs, id uint64) {
	o.s(a.prefix)
	o.s("-")
	o.u(id)
}

func (o *out) fqdn(a *hostAttrs, id uint64) {
	o.hostname(a, id)
	o.s(".")
	o.s(a.domain)
}

func (o *out) dnsData(a *hostAttrs, id uint64, indent string) {
	o.s(indent)
	o.s("<DNS><![CDATA[")
	o.fqdn(a, id)
	o.s("]]></DNS>\n")
	o.s(indent)
	o.s("<DNS_DATA>\n")
	o.s(indent)
	o.s("  <HOSTNAME><![CDATA[")
	o.hostname(a, id)
	o.s("]]></HOSTNAME>\n")
	o.s(indent)
	o.s("  <DOMAIN><![CDATA[")
	o.s(a.domain)
	o.s("]]></DOMAIN>\n")
	o.s(indent)
	o.s("  <FQDN><![CDATA[")
	o.fqdn(a, id)
	o.s("]]></FQDN>\n")
	o.s(indent)
	o.s("</DNS_DATA>\n")
	if a.windows {
		o.s(indent)
		o.s("<NETBIOS><![CDATA[")
		o.s(netbiosPrefixes[(a.h>>16)%uint64(len(hostPrefixes))])
		o.s("-")
		o.u(id)
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

// basicHost is a Host List HOST with details=Basic.
func (s *Sim) basicHost(o *out, h hostRef) {
	a := s.attrs(h)
	o.hostHead(&a, h)
	o.dnsData(&a, h.id, "        ")
	o.hostOS(&a, false)
	o.scanDates(&a, "LAST_VULN_SCAN_DATETIME")
	o.s("      </HOST>\n")
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
	o.s("        <DETECTION_LIST>\n")

	// Dates shared by every detection of the host, formatted once.
	var lastBuf, scanBuf [20]byte
	d := det{h: h, scan: a.scanEnd, lastTS: appendTime(lastBuf[:0], h.last), scanTS: appendTime(scanBuf[:0], a.scanEnd)}
	sel := &req.filter
	statuses := sel.Statuses
	if statuses == 0 {
		statuses = DefaultStatuses
	}
	n := s.m.ndet(h.i)
	for j := range n {
		d.j, d.key = j, s.m.detKey(h.i, j)
		d.da = s.m.h(sDet, d.key)
		d.typ = s.m.detType(d.da)
		if d.typ == typeInfo && !sel.ShowIGs {
			continue
		}
		d.st = s.m.status(d.key, h.epoch)
		if d.st&statuses == 0 {
			continue
		}
		d.db = s.m.h(sResults, d.key)
		s.detection(o, req, &d)
		if len(o.buf) >= flushAt && !o.flush() {
			return
		}
	}
	o.s("        </DETECTION_LIST>\n      </HOST>\n")
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
	lastTS, scanTS []byte // the host's last processed and last scan times, formatted
}

// detection writes one DETECTION, its elements in DTD order.
func (s *Sim) detection(o *out, req *request, d *det) {
	o.detectionHead(d)
	if req.showResults && s.corpus.mean > 0 {
		o.results(s.corpus.slice(d.db), d.db>>60 == 0)
	}
	first, lastFound := d.found()
	o.s("            <STATUS>")
	o.s(statusNames[bits.TrailingZeros8(uint8(d.st))])
	o.s("</STATUS>\n            <FIRST_FOUND_DATETIME>")
	o.t(first)
	o.s("</FIRST_FOUND_DATETIME>\n            <LAST_FOUND_DATETIME>")
	o.t(lastFound)
	o.s("</LAST_FOUND_DATETIME>\n")
	if d.typ != typeInfo && req.showQDS {
		o.qds(d, req.showFactors)
	}
	o.s("            <TIMES_FOUND>")
	o.i(1 + (lastFound-first)/d.h.sch.period)
	o.s("</TIMES_FOUND>\n            <LAST_TEST_DATETIME>")
	o.b(d.scanTS)
	o.s("</LAST_TEST_DATETIME>\n            <LAST_UPDATE_DATETIME>")
	o.b(d.lastTS)
	o.s("</LAST_UPDATE_DATETIME>\n")
	o.fixHistory(d, first, req.showReopened)
	o.s("            <IS_IGNORED>0</IS_IGNORED>\n            <IS_DISABLED>0</IS_DISABLED>\n")
	if d.typ != typeInfo && (d.da>>28)&7 == 0 {
		o.s("            <AFFECT_RUNNING_KERNEL>1</AFFECT_RUNNING_KERNEL>\n")
	}
	o.s("            <LAST_PROCESSED_DATETIME>")
	o.b(d.lastTS)
	o.s("</LAST_PROCESSED_DATETIME>\n          </DETECTION>\n")
}

// detectionHead opens a DETECTION with what identifies it: ID, QID, type,
// severity and, but for Information Gathered, port and SSL.
func (o *out) detectionHead(d *det) {
	o.s("          <DETECTION>\n            <UNIQUE_VULN_ID>")
	o.u(d.h.id<<16 | uint64(d.j))
	o.s("</UNIQUE_VULN_ID>\n            <QID>")
	if d.typ == typeInfo {
		o.u(45000 + (d.da>>16)%1000)
	} else {
		o.u(10000 + (d.da>>16)%380000)
	}
	o.s("</QID>\n            <TYPE>")
	o.s(typeNames[d.typ])
	o.s("</TYPE>\n            <SEVERITY>")
	o.u(1 + (d.da>>8)%5)
	o.s("</SEVERITY>\n")
	if d.typ == typeInfo {
		return
	}
	port := 0
	if (d.da>>36)&3 != 0 {
		port = commonPorts[(d.da>>40)%uint64(len(commonPorts))]
		o.s("            <PORT>")
		o.u(uint64(port))
		o.s("</PORT>\n            <PROTOCOL>")
		if port == 53 {
			o.s("udp")
		} else {
			o.s("tcp")
		}
		o.s("</PROTOCOL>\n")
	}
	if port == 443 || port == 8443 {
		o.s("            <SSL>1</SSL>\n")
	} else {
		o.s("            <SSL>0</SSL>\n")
	}
}

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
func (o *out) qds(d *det, factors bool) {
	score := 1 + (d.da>>44)%100
	o.s("            <QDS severity=\"")
	o.s(qdsSeverity(score))
	o.s("\">")
	o.u(score)
	o.s("</QDS>\n")
	if !factors {
		return
	}
	o.s("            <QDS_FACTORS>\n              <QDS_FACTOR name=\"CVSS\"><![CDATA[")
	o.u(1 + (d.da>>50)%9)
	o.s(".")
	o.u((d.da >> 54) % 10)
	o.s("]]></QDS_FACTOR>\n              <QDS_FACTOR name=\"CVSS_version\"><![CDATA[v3.x]]></QDS_FACTOR>\n              <QDS_FACTOR name=\"epss\"><![CDATA[0.")
	o.u(10000 + (d.db>>8)%90000)
	o.s("]]></QDS_FACTOR>\n              <QDS_FACTOR name=\"CVSS_vector\"><![CDATA[")
	o.s(cvssVectors[(d.da>>58)%uint64(len(cvssVectors))])
	o.s("]]></QDS_FACTOR>\n            </QDS_FACTORS>\n")
}

// fixHistory writes when the detection was last fixed, if ever, and for a
// reopened one with show_reopened_info, when it was reopened.
func (o *out) fixHistory(d *det, first int64, showReopened bool) {
	scan := d.scan
	var lastFixed int64
	switch {
	case d.st == StatusFixed:
		lastFixed = scan
	case d.st == StatusReopened:
		lastFixed = first + (scan-first)/2
	case (d.db>>4)&7 == 0:
		lastFixed = first + (scan-first)/3
	}
	if lastFixed != 0 {
		o.s("            <LAST_FIXED_DATETIME>")
		o.t(lastFixed)
		o.s("</LAST_FIXED_DATETIME>\n")
	}
	if d.st == StatusReopened && showReopened {
		o.s("            <FIRST_REOPENED_DATETIME>")
		o.t(lastFixed + (scan-lastFixed)/2)
		o.s("</FIRST_REOPENED_DATETIME>\n            <LAST_REOPENED_DATETIME>")
		o.b(d.scanTS)
		o.s("</LAST_REOPENED_DATETIME>\n            <TIMES_REOPENED>")
		o.u(1 + d.db%3)
		o.s("</TIMES_REOPENED>\n")
	}
}
