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
	o.s(xmlDecl)
	o.s("<!DOCTYPE ")
	o.s(root)
	o.s(" SYSTEM \"")
	o.s(pg.base)
	o.s(pg.path)
	o.s(dtd)
	o.s("\">\n")
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

func (o *out) dnsData(a *hostAttrs, id uint64, indent string) {
	o.s(indent)
	o.s("<DNS><![CDATA[")
	o.hostname(a, id)
	o.s(".")
	o.s(a.domain)
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
	o.hostname(a, id)
	o.s(".")
	o.s(a.domain)
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
	o.s("        <OS><![CDATA[")
	o.s(a.os)
	o.s("]]></OS>\n        <LAST_VULN_SCAN_DATETIME>")
	o.t(a.scanEnd)
	o.s("</LAST_VULN_SCAN_DATETIME>\n        <LAST_VM_SCANNED_DATE>")
	o.t(a.vmScan)
	o.s("</LAST_VM_SCANNED_DATE>\n        <LAST_VM_SCANNED_DURATION>")
	o.i(a.duration)
	o.s("</LAST_VM_SCANNED_DURATION>\n      </HOST>\n")
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
	if (a.h>>32)&7 == 0 {
		// Whitespace around the CDATA, as in Elastic's recorded sample.
		o.s("        <OS>\n          <![CDATA[")
		o.s(a.os)
		o.s("]]>\n        </OS>\n")
	} else {
		o.s("        <OS><![CDATA[")
		o.s(a.os)
		o.s("]]></OS>\n")
	}
	o.dnsData(&a, h.id, "        ")
	o.s("        <LAST_SCAN_DATETIME>")
	o.t(a.scanEnd)
	o.s("</LAST_SCAN_DATETIME>\n        <LAST_VM_SCANNED_DATE>")
	o.t(a.vmScan)
	o.s("</LAST_VM_SCANNED_DATE>\n        <LAST_VM_SCANNED_DURATION>")
	o.i(a.duration)
	o.s("</LAST_VM_SCANNED_DURATION>\n        <DETECTION_LIST>\n")

	// Dates shared by every detection of the host, formatted once.
	var lastBuf, scanBuf [20]byte
	lastTS := appendTime(lastBuf[:0], h.last)
	scanTS := appendTime(scanBuf[:0], a.scanEnd)
	sel := &req.filter
	statuses := sel.Statuses
	if statuses == 0 {
		statuses = DefaultStatuses
	}
	n := s.m.ndet(h.i)
	for j := range n {
		key := s.m.detKey(h.i, j)
		da := s.m.h(sDet, key)
		typ := s.m.detType(da)
		if typ == typeInfo && !sel.ShowIGs {
			continue
		}
		st := s.m.status(key, h.epoch)
		if st&statuses == 0 {
			continue
		}
		s.detection(o, req, h, &a, j, key, da, typ, st, lastTS, scanTS)
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

func (s *Sim) detection(o *out, req *request, h hostRef, a *hostAttrs, j int, key, da uint64, typ int, st StatusSet,
	lastTS, scanTS []byte) {
	db := s.m.h(sResults, key)
	period := h.sch.period
	scan := a.scanEnd

	o.s("          <DETECTION>\n            <UNIQUE_VULN_ID>")
	o.u(h.id<<16 | uint64(j))
	o.s("</UNIQUE_VULN_ID>\n            <QID>")
	if typ == typeInfo {
		o.u(45000 + (da>>16)%1000)
	} else {
		o.u(10000 + (da>>16)%380000)
	}
	o.s("</QID>\n            <TYPE>")
	o.s(typeNames[typ])
	o.s("</TYPE>\n            <SEVERITY>")
	o.u(1 + (da>>8)%5)
	o.s("</SEVERITY>\n")
	if typ != typeInfo {
		port := 0
		if (da>>36)&3 != 0 {
			port = commonPorts[(da>>40)%uint64(len(commonPorts))]
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
	if req.showResults && s.corpus.mean > 0 {
		if db>>60 == 0 {
			// A newline inside the start tag, as in the JupiterOne fixture.
			o.s("            <RESULTS\n            ><![CDATA[")
		} else {
			o.s("            <RESULTS><![CDATA[")
		}
		o.b(s.corpus.slice(db))
		o.s("]]></RESULTS>\n")
	}
	o.s("            <STATUS>")
	o.s(statusNames[bits.TrailingZeros8(uint8(st))])
	o.s("</STATUS>\n            <FIRST_FOUND_DATETIME>")

	first := scan - int64((db>>20)%(400*day))
	if st == StatusNew {
		first = scan - int64((db>>20)%uint64(period))
	}
	lastFound := scan
	if st == StatusFixed {
		lastFound = max(scan-period, first)
	}
	o.t(first)
	o.s("</FIRST_FOUND_DATETIME>\n            <LAST_FOUND_DATETIME>")
	o.t(lastFound)
	o.s("</LAST_FOUND_DATETIME>\n")
	if typ != typeInfo && req.showQDS {
		score := 1 + (da>>44)%100
		o.s("            <QDS severity=\"")
		o.s(qdsSeverity(score))
		o.s("\">")
		o.u(score)
		o.s("</QDS>\n")
		if req.showFactors {
			o.s("            <QDS_FACTORS>\n              <QDS_FACTOR name=\"CVSS\"><![CDATA[")
			o.u(1 + (da>>50)%9)
			o.s(".")
			o.u((da >> 54) % 10)
			o.s("]]></QDS_FACTOR>\n              <QDS_FACTOR name=\"CVSS_version\"><![CDATA[v3.x]]></QDS_FACTOR>\n              <QDS_FACTOR name=\"epss\"><![CDATA[0.")
			o.u(10000 + (db>>8)%90000)
			o.s("]]></QDS_FACTOR>\n              <QDS_FACTOR name=\"CVSS_vector\"><![CDATA[")
			o.s(cvssVectors[(da>>58)%uint64(len(cvssVectors))])
			o.s("]]></QDS_FACTOR>\n            </QDS_FACTORS>\n")
		}
	}
	o.s("            <TIMES_FOUND>")
	o.i(1 + (lastFound-first)/period)
	o.s("</TIMES_FOUND>\n            <LAST_TEST_DATETIME>")
	o.b(scanTS)
	o.s("</LAST_TEST_DATETIME>\n            <LAST_UPDATE_DATETIME>")
	o.b(lastTS)
	o.s("</LAST_UPDATE_DATETIME>\n")

	var lastFixed int64
	switch {
	case st == StatusFixed:
		lastFixed = scan
	case st == StatusReopened:
		lastFixed = first + (scan-first)/2
	case (db>>4)&7 == 0:
		lastFixed = first + (scan-first)/3
	}
	if lastFixed != 0 {
		o.s("            <LAST_FIXED_DATETIME>")
		o.t(lastFixed)
		o.s("</LAST_FIXED_DATETIME>\n")
	}
	if st == StatusReopened && req.showReopened {
		o.s("            <FIRST_REOPENED_DATETIME>")
		o.t(lastFixed + (scan-lastFixed)/2)
		o.s("</FIRST_REOPENED_DATETIME>\n            <LAST_REOPENED_DATETIME>")
		o.b(scanTS)
		o.s("</LAST_REOPENED_DATETIME>\n            <TIMES_REOPENED>")
		o.u(1 + db%3)
		o.s("</TIMES_REOPENED>\n")
	}
	o.s("            <IS_IGNORED>0</IS_IGNORED>\n            <IS_DISABLED>0</IS_DISABLED>\n")
	if typ != typeInfo && (da>>28)&7 == 0 {
		o.s("            <AFFECT_RUNNING_KERNEL>1</AFFECT_RUNNING_KERNEL>\n")
	}
	o.s("            <LAST_PROCESSED_DATETIME>")
	o.b(lastTS)
	o.s("</LAST_PROCESSED_DATETIME>\n          </DETECTION>\n")
}
