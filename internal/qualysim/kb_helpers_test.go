package qualysim

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const kbPath = "/api/2.0/fo/knowledge_base/vuln/"

// kbAllForm is qfetch's KnowledgeBase request: details=All and the four
// show_* flags.
const kbAllForm = "action=list&details=All&show_disabled_flag=1&show_qid_change_log=1&show_supported_modules_info=1&show_pci_reasons=1"

// generateKB renders one KnowledgeBase answer of s to form, without HTTP.
func generateKB(t testing.TB, s *Sim, form string) []byte {
	t.Helper()
	ps, err := parseParams(form, nil)
	if err != nil {
		t.Fatal(err)
	}
	req, aerr := parseRequest(epKB, ps)
	if aerr != nil {
		t.Fatalf("%s: %s", form, aerr.text)
	}
	h := &hashSink{}
	o := &out{sink: h}
	s.writeKB(o, req.kb, page{base: "http://127.0.0.1:1", path: kbPath, now: s.clock.Now().Unix()})
	return h.buf.Bytes()
}

// The DTD's structure (qualys-samples/kb_dtd_…), as encoding/xml reads it.
type (
	xKBDoc struct {
		XMLName  xml.Name `xml:"KNOWLEDGE_BASE_VULN_LIST_OUTPUT"`
		Response struct {
			DateTime string   `xml:"DATETIME"`
			Vulns    *[]xVuln `xml:"VULN_LIST>VULN"`
			IDSet    *struct {
				Items []struct {
					XMLName xml.Name
					Text    string `xml:",chardata"`
				} `xml:",any"`
			} `xml:"ID_SET"`
			Warning *struct{} `xml:"WARNING"`
		} `xml:"RESPONSE"`
	}
	xRef struct {
		ID  string `xml:"ID"`
		URL string `xml:"URL"`
	}
	xCVSS struct {
		Base struct {
			Source string `xml:"source,attr"`
			Value  string `xml:",chardata"`
		} `xml:"BASE"`
		Temporal string `xml:"TEMPORAL"`
		Vector   string `xml:"VECTOR_STRING"`
		Version  string `xml:"CVSS3_VERSION"`
	}
	xVuln struct {
		QID       int    `xml:"QID"`
		VulnType  string `xml:"VULN_TYPE"`
		Severity  int    `xml:"SEVERITY_LEVEL"`
		Title     string `xml:"TITLE"`
		Category  string `xml:"CATEGORY"`
		LastMod   string `xml:"LAST_SERVICE_MODIFICATION_DATETIME"`
		Published string `xml:"PUBLISHED_DATETIME"`
		Bugtraq   []xRef `xml:"BUGTRAQ_LIST>BUGTRAQ"`
		Patchable int    `xml:"PATCHABLE"`
		Software  []struct {
			Product string `xml:"PRODUCT"`
			Vendor  string `xml:"VENDOR"`
		} `xml:"SOFTWARE_LIST>SOFTWARE"`
		VendorRefs  []xRef `xml:"VENDOR_REFERENCE_LIST>VENDOR_REFERENCE"`
		CVEs        []xRef `xml:"CVE_LIST>CVE"`
		Diagnosis   string `xml:"DIAGNOSIS"`
		Consequence string `xml:"CONSEQUENCE"`
		Solution    string `xml:"SOLUTION"`
		Exploits    []struct {
			Source string `xml:"SRC_NAME"`
			Ref    string `xml:"EXPLT_LIST>EXPLT>REF"`
			Desc   string `xml:"EXPLT_LIST>EXPLT>DESC"`
			Link   string `xml:"EXPLT_LIST>EXPLT>LINK"`
		} `xml:"CORRELATION>EXPLOITS>EXPLT_SRC"`
		CVSS       *xCVSS   `xml:"CVSS"`
		CVSS3      *xCVSS   `xml:"CVSS_V3"`
		PCIFlag    int      `xml:"PCI_FLAG"`
		PCIReasons []string `xml:"PCI_REASONS>PCI_REASON"`
		Threats    []struct {
			ID   int    `xml:"id,attr"`
			Text string `xml:",chardata"`
		} `xml:"THREAT_INTELLIGENCE>THREAT_INTEL"`
		Modules    string   `xml:"SUPPORTED_MODULES"`
		Remote     int      `xml:"DISCOVERY>REMOTE"`
		AuthTypes  []string `xml:"DISCOVERY>AUTH_TYPE_LIST>AUTH_TYPE"`
		Additional string   `xml:"DISCOVERY>ADDITIONAL_INFO"`
		Disabled   int      `xml:"IS_DISABLED"`
		ChangeLog  []struct {
			Date     string `xml:"CHANGE_DATE"`
			Comments string `xml:"COMMENTS"`
		} `xml:"CHANGE_LOG_LIST>CHANGE_LOG_INFO"`
	}
)

// parseKB decodes a KnowledgeBase answer into the DTD's structure and
// checks what the structs cannot: children in the DTD's order.
func parseKB(t testing.TB, body []byte) xKBDoc {
	t.Helper()
	var d xKBDoc
	if err := xml.Unmarshal(body, &d); err != nil {
		t.Fatalf("KB answer does not parse: %v\n%s", err, clip(string(body), 3000))
	}
	if err := checkKBOrder(body); err != nil {
		t.Fatalf("KB answer: %v", err)
	}
	return d
}

// kbOrder is the DTD's child order of the elements with element content.
var kbOrder = map[string][]string{
	"KNOWLEDGE_BASE_VULN_LIST_OUTPUT": {"REQUEST", "RESPONSE"},
	"RESPONSE":                        {"DATETIME", "VULN_LIST", "ID_SET", "WARNING"},
	"VULN": {"QID", "VULN_TYPE", "SEVERITY_LEVEL", "TITLE", "CATEGORY", "DETECTION_INFO",
		"LAST_CUSTOMIZATION", "LAST_SERVICE_MODIFICATION_DATETIME", "PUBLISHED_DATETIME",
		"BUGTRAQ_LIST", "PATCHABLE", "SOFTWARE_LIST", "VENDOR_REFERENCE_LIST", "CVE_LIST",
		"DIAGNOSIS", "DIAGNOSIS_COMMENT", "CONSEQUENCE", "CONSEQUENCE_COMMENT",
		"SOLUTION", "SOLUTION_COMMENT", "COMPLIANCE_LIST", "CORRELATION", "CVSS", "CVSS_V3", "PCI_FLAG",
		"AUTOMATIC_PCI_FAIL", "PCI_REASONS", "THREAT_INTELLIGENCE", "SUPPORTED_MODULES", "DISCOVERY",
		"IS_DISABLED", "CHANGE_LOG_LIST"},
	"BUGTRAQ":          {"ID", "URL"},
	"VENDOR_REFERENCE": {"ID", "URL"},
	"CVE":              {"ID", "URL"},
	"SOFTWARE":         {"PRODUCT", "VENDOR"},
	"CORRELATION":      {"EXPLOITS", "MALWARE"},
	"EXPLT_SRC":        {"SRC_NAME", "EXPLT_LIST"},
	"EXPLT":            {"REF", "DESC", "LINK"},
	"CVSS": {"BASE", "TEMPORAL", "VECTOR_STRING", "ACCESS", "IMPACT", "AUTHENTICATION",
		"EXPLOITABILITY", "REMEDIATION_LEVEL", "REPORT_CONFIDENCE"},
	"CVSS_V3": {"BASE", "TEMPORAL", "VECTOR_STRING", "CVSS3_VERSION", "ATTACK", "IMPACT",
		"PRIVILEGES_REQUIRED", "USER_INTERACTION", "SCOPE", "EXPLOIT_CODE_MATURITY",
		"REMEDIATION_LEVEL", "REPORT_CONFIDENCE"},
	"DISCOVERY":       {"REMOTE", "AUTH_TYPE_LIST", "ADDITIONAL_INFO"},
	"CHANGE_LOG_INFO": {"CHANGE_DATE", "COMMENTS"},
}

// kbRequired are the children the DTD requires.
var kbRequired = map[string][]string{
	"VULN":      {"QID", "VULN_TYPE", "SEVERITY_LEVEL", "TITLE", "PUBLISHED_DATETIME", "PATCHABLE", "DISCOVERY"},
	"RESPONSE":  {"DATETIME"},
	"DISCOVERY": {"REMOTE"},
}

func checkKBOrder(body []byte) error {
	type frame struct {
		name string
		last int
		seen []string
	}
	var stack []frame
	dec := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			name := tk.Name.Local
			if n := len(stack); n > 0 {
				p := &stack[n-1]
				if order, ok := kbOrder[p.name]; ok {
					i := slices.Index(order, name)
					if i < 0 || i < p.last || (i == p.last && p.last >= 0 && slices.Contains(p.seen, name)) {
						return fmt.Errorf("%s: child %s out of the DTD's order after %v", p.name, name, p.seen)
					}
					p.last = i
					p.seen = append(p.seen, name)
				}
			}
			stack = append(stack, frame{name: name, last: -1})
		case xml.EndElement:
			f := stack[len(stack)-1]
			for _, r := range kbRequired[f.name] {
				if !slices.Contains(f.seen, r) {
					return fmt.Errorf("%s without %s", f.name, r)
				}
			}
			stack = stack[:len(stack)-1]
		}
	}
}

// qids lists the QIDs of a parsed answer: VULNs, or the ID_SET expanded.
func (d *xKBDoc) qids(t testing.TB) []int {
	t.Helper()
	var ids []int
	if d.Response.Vulns != nil {
		for _, v := range *d.Response.Vulns {
			ids = append(ids, v.QID)
		}
	}
	if d.Response.IDSet != nil {
		for _, it := range d.Response.IDSet.Items {
			switch it.XMLName.Local {
			case "ID":
				n, err := strconv.Atoi(it.Text)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, n)
			case "ID_RANGE":
				var a, b int
				if _, err := fmt.Sscanf(it.Text, "%d-%d", &a, &b); err != nil || a >= b {
					t.Fatalf("bad ID_RANGE %q", it.Text)
				}
				for q := a; q <= b; q++ {
					ids = append(ids, q)
				}
			default:
				t.Fatalf("ID_SET holds %s", it.XMLName.Local)
			}
		}
	}
	return ids
}

// truth converts a parsed VULN into the truth's form.
func (x *xVuln) truth(t testing.TB) KBVuln {
	t.Helper()
	tm := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatalf("QID %d: bad time %q", x.QID, s)
		}
		return v
	}
	refs := func(rs []xRef) []KBRef {
		var out []KBRef
		for _, r := range rs {
			out = append(out, KBRef(r))
		}
		return out
	}
	cvss := func(c *xCVSS) *KBCVSS {
		if c == nil {
			return nil
		}
		return &KBCVSS{Base: c.Base.Value, BaseSource: c.Base.Source, Temporal: c.Temporal, Vector: c.Vector, Version: c.Version}
	}
	v := KBVuln{QID: x.QID, VulnType: x.VulnType, Severity: x.Severity, Title: x.Title, Category: x.Category,
		LastModified: tm(x.LastMod), Published: tm(x.Published), Bugtraq: refs(x.Bugtraq), Patchable: x.Patchable == 1,
		VendorRefs: refs(x.VendorRefs), CVEs: refs(x.CVEs), Diagnosis: x.Diagnosis, Consequence: x.Consequence,
		Solution: x.Solution, CVSS: cvss(x.CVSS), CVSS3: cvss(x.CVSS3), PCIFlag: x.PCIFlag == 1,
		PCIReasons: x.PCIReasons, SupportedModules: x.Modules, Remote: x.Remote == 1, AuthTypes: x.AuthTypes,
		AdditionalInfo: x.Additional, Disabled: x.Disabled == 1}
	for _, s := range x.Software {
		v.Software = append(v.Software, KBSoftware{s.Product, s.Vendor})
	}
	for _, e := range x.Exploits {
		v.Exploits = append(v.Exploits, KBExploit(e))
	}
	for _, ti := range x.Threats {
		v.ThreatIntel = append(v.ThreatIntel, KBThreatIntel(ti))
	}
	for _, c := range x.ChangeLog {
		v.ChangeLog = append(v.ChangeLog, KBChange{tm(c.Date), c.Comments})
	}
	return v
}

var kbIDPattern = regexp.MustCompile(`<(QID|ID|ID_RANGE)>([0-9-]+)</`)

// scanKBQIDs lists the QIDs of a KB answer (VULN QIDs or the ID_SET
// expanded) by pattern, without parsing the document.
func scanKBQIDs(t testing.TB, body []byte) []int {
	t.Helper()
	var ids []int
	for _, m := range kbIDPattern.FindAllSubmatch(body, -1) {
		a, b, isRange := strings.Cut(string(m[2]), "-")
		lo, err1 := strconv.Atoi(a)
		hi, err2 := lo, error(nil)
		if isRange {
			hi, err2 = strconv.Atoi(b)
		}
		if err1 != nil || err2 != nil || (string(m[1]) == "ID_RANGE") != isRange {
			t.Fatalf("bad %s %s", m[1], m[2])
		}
		for q := lo; q <= hi; q++ {
			ids = append(ids, q)
		}
	}
	return ids
}
