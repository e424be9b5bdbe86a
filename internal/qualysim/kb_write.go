package qualysim

import "time"

// The KnowledgeBase answer, shaped like the recorded ones
// (qualys-samples/kb_*): declaration, DOCTYPE, the evaluation comment,
// RESPONSE with DATETIME and then VULN_LIST (details Basic, All) or ID_SET
// (None), nothing at all when no QID matches; the evaluation and
// CONFIDENTIAL comments after the root. VULN children come in the DTD's
// order; QIDs ascend whatever order ids names them in, and unknown ones are
// left out.

const (
	kbRoot      = "KNOWLEDGE_BASE_VULN_LIST_OUTPUT"
	kbKeepAlive = "<!-- keep-alive for KNOWLEDGE_BASE_VULN_LIST_OUTPUT  -->\n"
)

// writeKB streams a KnowledgeBase answer and returns the VULNs it wrote.
func (s *Sim) writeKB(o *out, q *KBQuery, pg page) (vulns int64) {
	o.buf = appendDoctype(o.buf, true, kbRoot, pg.base, pg.path, "knowledge_base_vuln_list_output.dtd")
	o.s(evalNote)
	o.s("<" + kbRoot + ">\n  <RESPONSE>\n    <DATETIME>")
	o.t(pg.now)
	o.s("</DATETIME>\n")

	ka := s.kbAt(time.Unix(pg.now, 0))
	lo, hi := q.bounds()
	opened := false
	open := func() {
		if opened {
			return
		}
		opened = true
		if s.cfg.KBKeepAlive {
			o.s(kbKeepAlive)
		}
		if q.Details == "None" {
			o.s("    <ID_SET>\n")
		} else {
			o.s("    <VULN_LIST>\n")
		}
	}
	var run idRun
	ka.eachIn(q.IDs, lo, hi, func(v *kbVals) bool {
		if !q.selects(v) {
			return true
		}
		open()
		vulns++
		if q.Details == "None" {
			run.add(o, v.qid)
		} else {
			o.vuln(v, q)
		}
		return o.more()
	})
	if o.err != nil {
		return vulns
	}
	switch {
	case !opened:
	case q.Details == "None":
		run.flush(o)
		o.s("    </ID_SET>\n")
	default:
		o.s("    </VULN_LIST>\n")
	}
	o.s("  </RESPONSE>\n")
	if !o.closing() {
		return vulns
	}
	o.s("</" + kbRoot + ">\n")
	o.s(evalNote)
	o.s(confidNote)
	if !opened && s.cfg.KBKeepAlive {
		// As recorded on a call that matched nothing: after the root.
		o.s(kbKeepAlive)
	}
	o.flush()
	return vulns
}

// idRun writes an ID_SET: runs of consecutive QIDs as ID_RANGE.
type idRun struct {
	first, last uint64
	pending     bool
}

func (r *idRun) add(o *out, q uint64) {
	if r.pending && q == r.last+1 {
		r.last = q
		return
	}
	r.flush(o)
	r.first, r.last, r.pending = q, q, true
}

func (r *idRun) flush(o *out) {
	if !r.pending {
		return
	}
	if r.first == r.last {
		o.s("      <ID>")
		o.u(r.first)
		o.s("</ID>\n")
	} else {
		o.s("      <ID_RANGE>")
		o.u(r.first)
		o.s("-")
		o.u(r.last)
		o.s("</ID_RANGE>\n")
	}
	r.pending = false
}

func (o *out) cdataOpen(tag string) {
	o.s("<")
	o.s(tag)
	o.s("><![CDATA[")
}

func (o *out) cdataClose(tag string) {
	o.s("]]></")
	o.s(tag)
	o.s(">\n")
}

// cdata writes <tag><![CDATA[text]]></tag> at indent.
func (o *out) cdata(indent, tag, text string) {
	o.s(indent)
	o.cdataOpen(tag)
	o.s(text)
	o.cdataClose(tag)
}

// vuln writes one VULN, its children in the DTD's order.
func (o *out) vuln(v *kbVals, q *KBQuery) {
	all := q.Details == "All"
	o.s("      <VULN>\n        <QID>")
	o.u(v.qid)
	o.s("</QID>\n        <VULN_TYPE>")
	o.s(kbTypes[v.kind])
	o.s("</VULN_TYPE>\n        <SEVERITY_LEVEL>")
	o.u(v.sev)
	o.s("</SEVERITY_LEVEL>\n        ")
	o.cdataOpen("TITLE")
	o.buf = v.appendTitle(o.buf)
	o.cdataClose("TITLE")
	o.s("        <CATEGORY>")
	o.s(v.category())
	o.s("</CATEGORY>\n        <LAST_SERVICE_MODIFICATION_DATETIME>")
	o.t(v.lastMod)
	o.s("</LAST_SERVICE_MODIFICATION_DATETIME>\n        <PUBLISHED_DATETIME>")
	o.t(v.published)
	o.s("</PUBLISHED_DATETIME>\n")
	if n := v.nBugtraq(); n > 0 {
		o.s("        <BUGTRAQ_LIST>\n")
		for i := range n {
			o.s("          <BUGTRAQ>\n            ")
			o.cdataOpen("ID")
			o.buf = v.appendBugtraqID(o.buf, i)
			o.cdataClose("ID")
			o.s("            ")
			o.cdataOpen("URL")
			o.buf = v.appendBugtraqURL(o.buf, i)
			o.cdataClose("URL")
			o.s("          </BUGTRAQ>\n")
		}
		o.s("        </BUGTRAQ_LIST>\n")
	}
	o.s("        <PATCHABLE>")
	o.i(int64(b2i(v.patchable)))
	o.s("</PATCHABLE>\n")
	if n := v.nSoftware(); n > 0 {
		o.s("        <SOFTWARE_LIST>\n")
		for i := range n {
			p, vendor := v.software(i)
			o.s("          <SOFTWARE>\n")
			o.cdata("            ", "PRODUCT", p)
			o.cdata("            ", "VENDOR", vendor)
			o.s("          </SOFTWARE>\n")
		}
		o.s("        </SOFTWARE_LIST>\n")
	}
	if n := v.nVendorRefs(); n > 0 {
		o.s("        <VENDOR_REFERENCE_LIST>\n")
		for i := range n {
			o.s("          <VENDOR_REFERENCE>\n            ")
			o.cdataOpen("ID")
			o.buf = v.appendRefID(o.buf, i)
			o.cdataClose("ID")
			o.s("            ")
			o.cdataOpen("URL")
			o.buf = v.appendRefURL(o.buf, i)
			o.cdataClose("URL")
			o.s("          </VENDOR_REFERENCE>\n")
		}
		o.s("        </VENDOR_REFERENCE_LIST>\n")
	}
	if v.nCVE > 0 {
		o.s("        <CVE_LIST>\n")
		for i := range v.nCVE {
			o.s("          <CVE>\n            ")
			o.cdataOpen("ID")
			o.buf = v.appendCVE(o.buf, i)
			o.cdataClose("ID")
			o.s("            ")
			o.cdataOpen("URL")
			o.buf = v.appendCVEURL(o.buf, i)
			o.cdataClose("URL")
			o.s("          </CVE>\n")
		}
		o.s("        </CVE_LIST>\n")
	}
	if all {
		o.s("        ")
		o.cdataOpen("DIAGNOSIS")
		o.buf = v.appendDiagnosis(o.buf)
		o.cdataClose("DIAGNOSIS")
		o.s("        ")
		o.cdataOpen("CONSEQUENCE")
		o.buf = v.appendConsequence(o.buf)
		o.cdataClose("CONSEQUENCE")
		o.s("        ")
		o.cdataOpen("SOLUTION")
		o.buf = v.appendSolution(o.buf)
		o.cdataClose("SOLUTION")
		if n := v.nExploits(); n > 0 {
			o.exploits(v, n)
		}
	}
	if v.cvss >= 0 {
		o.cvss(v, false, all)
	}
	if v.cvss3 >= 0 {
		o.cvss(v, true, all)
	}
	o.s("        <PCI_FLAG>")
	o.i(int64(b2i(v.pci)))
	o.s("</PCI_FLAG>\n")
	if n := v.nPCIReasons(); n > 0 && q.ShowPCIReasons {
		o.s("        <PCI_REASONS>\n")
		for i := range n {
			o.s("          <PCI_REASON>")
			o.s(v.pciReason(i))
			o.s("</PCI_REASON>\n")
		}
		o.s("        </PCI_REASONS>\n")
	}
	threats := v.threats()
	if threats != 0 {
		o.s("        <THREAT_INTELLIGENCE>\n")
		for id := range kbThreats {
			if threats&(1<<id) == 0 {
				continue
			}
			o.s("          <THREAT_INTEL id=\"")
			o.i(int64(id))
			o.s("\"><![CDATA[")
			o.s(kbThreats[id])
			o.s("]]></THREAT_INTEL>\n")
		}
		o.s("        </THREAT_INTELLIGENCE>\n")
	}
	if q.ShowModules {
		o.s("        <SUPPORTED_MODULES>")
		o.s(v.modules())
		o.s("</SUPPORTED_MODULES>\n")
	}
	o.s("        <DISCOVERY>\n          <REMOTE>")
	o.i(int64(b2i(v.remote())))
	o.s("</REMOTE>\n")
	if auths := v.authTypes(); auths != nil {
		o.s("          <AUTH_TYPE_LIST>\n")
		for _, a := range auths {
			o.s("            <AUTH_TYPE>")
			o.s(a)
			o.s("</AUTH_TYPE>\n")
		}
		o.s("          </AUTH_TYPE_LIST>\n")
	}
	if info := v.additionalInfo(threats); info != "" {
		o.s("          <ADDITIONAL_INFO>")
		o.s(info)
		o.s("</ADDITIONAL_INFO>\n")
	}
	o.s("        </DISCOVERY>\n")
	if q.ShowDisabled {
		o.s("        <IS_DISABLED>")
		o.i(int64(b2i(v.disabled)))
		o.s("</IS_DISABLED>\n")
	}
	if from, to := v.changeLog(); q.ShowChangeLog && to >= from {
		o.s("        <CHANGE_LOG_LIST>\n")
		for e := from; e <= to; e++ {
			o.s("          <CHANGE_LOG_INFO>\n            <CHANGE_DATE>")
			o.t(v.changeDate(e))
			o.s("</CHANGE_DATE>\n")
			o.cdata("            ", "COMMENTS", v.changeComment(e))
			o.s("          </CHANGE_LOG_INFO>\n")
		}
		o.s("        </CHANGE_LOG_LIST>\n")
	}
	o.s("      </VULN>\n")
}

// exploits writes CORRELATION/EXPLOITS with n sources.
func (o *out) exploits(v *kbVals, n int) {
	o.s("        <CORRELATION>\n          <EXPLOITS>\n")
	for i := range n {
		o.s("            <EXPLT_SRC>\n")
		o.cdata("              ", "SRC_NAME", v.exploitSrc(i))
		o.s("              <EXPLT_LIST>\n                <EXPLT>\n                  ")
		o.cdataOpen("REF")
		o.buf = v.appendCVE(o.buf, 0)
		o.cdataClose("REF")
		o.s("                  ")
		o.cdataOpen("DESC")
		o.buf = v.appendExploitDesc(o.buf)
		o.cdataClose("DESC")
		o.s("                  ")
		o.cdataOpen("LINK")
		o.buf = v.appendExploitLink(o.buf, i)
		o.cdataClose("LINK")
		o.s("                </EXPLT>\n              </EXPLT_LIST>\n            </EXPLT_SRC>\n")
	}
	o.s("          </EXPLOITS>\n        </CORRELATION>\n")
}

// cvss writes CVSS (v2) or CVSS_V3: BASE and TEMPORAL always, the vector
// with details=All.
func (o *out) cvss(v *kbVals, v3, all bool) {
	tag, base := "CVSS", kbCVSS2[max(v.cvss, 0)].base
	if v3 {
		tag, base = "CVSS_V3", kbCVSS3[max(v.cvss3, 0)].base
	}
	o.s("        <")
	o.s(tag)
	o.s(">\n          <BASE")
	if v.baseSource() {
		o.s(" source=\"service\"")
	}
	o.s(">")
	o.buf = appendTenths(o.buf, int64(base))
	o.s("</BASE>\n          <TEMPORAL>")
	o.buf = appendTenths(o.buf, v.cvssTemporal(v3))
	o.s("</TEMPORAL>\n")
	if all {
		o.s("          <VECTOR_STRING>")
		o.buf = v.appendCVSSVector(o.buf, v3)
		o.s("</VECTOR_STRING>\n")
		if v3 {
			o.s("          <CVSS3_VERSION>3.1</CVSS3_VERSION>\n")
		}
	}
	o.s("        </")
	o.s(tag)
	o.s(">\n")
}
