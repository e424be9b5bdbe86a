package tables

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestKBSampleRows checks by hand the values of the real KnowledgeBase
// answers that break the DTD or come from attributes, CDATA and lists.
func TestKBSampleRows(t *testing.T) {
	file, st := convertKB(t, Options{}, readSample(t, "kb_2vulns_empty-cdata_correlation_threat-intel_demisto-fixture.xml"))
	rows := readRows[KBRow](t, file)
	if st.Rows != 2 || st.Hosts != 2 || len(rows) != 2 {
		t.Fatalf("stats %+v, %d rows; want 2 VULNs, 2 rows", st, len(rows))
	}
	a, b := rows[0], rows[1]
	switch {
	case a.Run != "kb-1" || a.SourceKey != "kb/kb-1/vulns/batch-000001.xml" || a.SchemaVersion != SchemaVersion:
		t.Errorf("source columns %q %q %d", a.Run, a.SourceKey, a.SchemaVersion)
	case a.QID != 10052 || *a.Severity != 3 || a.VulnType != "Vulnerability" || *a.Patchable || !*a.PCIFlag:
		t.Errorf("head %d %v %q %v %v", a.QID, a.Severity, a.VulnType, *a.Patchable, *a.PCIFlag)
	case len(a.CVEs) != 3 || a.CVEs[2] != (KBReference{ID: "CVE-2020-10229"}):
		t.Errorf("CVEs without URL: %+v", a.CVEs)
	case len(a.Exploits) != 2 || a.Exploits[0] != (KBExploit{Source: "nvd", Ref: "CVE-2020-10229"}) || a.Exploits[1] != (KBExploit{Source: "nvd"}):
		t.Errorf("exploits (one with REF only, one all empty): %+v", a.Exploits)
	case len(a.ThreatIntelligence) != 4 || a.ThreatIntelligence[3] != (KBThreatIntel{ID: "15", Text: "Remote_Code_Execution"}):
		t.Errorf("threat intelligence %+v", a.ThreatIntelligence)
	case a.CVSSBase != nil || a.CVSS3Base != nil || a.Malware != nil || a.DiscoveryAuthTypes != nil:
		t.Errorf("absent elements must be NULL: %v %v %v %v", a.CVSSBase, a.CVSS3Base, a.Malware, a.DiscoveryAuthTypes)
	case a.DiscoveryAdditionalInfo != "Exploit Available" || !*a.DiscoveryRemote:
		t.Errorf("discovery %q %v", a.DiscoveryAdditionalInfo, *a.DiscoveryRemote)
	case b.Title != "" || len(b.BugtraqIDs) != 1 || b.BugtraqIDs[0] != "1881" || b.Software[0] != (KBSoftware{Vendor: "cgi"}):
		t.Errorf("empty CDATA is NULL: %q %v %+v", b.Title, b.BugtraqIDs, b.Software)
	case len(b.CVEs) != 1 || b.CVEs[0] != (KBReference{}):
		t.Errorf("an empty CVE is an element of NULLs: %+v", b.CVEs)
	case len(b.Exploits) != 4 || b.Exploits[2] != (KBExploit{Source: "nvd"}) || b.Exploits[3] != (KBExploit{Source: "seebug"}):
		t.Errorf("exploit sources (empty EXPLT, EXPLT_SRC without EXPLT_LIST): %+v", b.Exploits)
	}

	file, _ = convertKB(t, Options{}, readSample(t, "kb_1vuln_details-default_keepalive-comment-in-response_recorded_200.xml"))
	rows = readRows[KBRow](t, file)
	if len(rows) != 1 {
		t.Fatalf("%d rows", len(rows))
	}
	r := rows[0]
	if r.QID != 316760 || r.VulnType != "Vulnerability or Potential Vulnerability" || !strings.Contains(r.Diagnosis, "using &quot;show version&quot; command") ||
		len(r.DiscoveryAuthTypes) != 3 || r.DiscoveryAuthTypes[2] != "WEBLOGIC_VULN" || len(r.VendorReferences) != 1 ||
		!strings.HasPrefix(r.Solution, `<P>Customers are advised to refer to <A HREF="https://tools.cisco.com`) ||
		!r.PublishedDatetime.Equal(ts("2020-10-07T12:11:44Z")) || r.Software[0] != (KBSoftware{Product: "ios_xe", Vendor: "cisco"}) {
		t.Errorf("row %+v", r.kbCols)
	}

	file, st = convertKB(t, Options{RowGroupRows: 5}, readSample(t, "kb_42vulns_details-default_ig-potential-vuln_gzip_recorded_200.xml"))
	rows = readRows[KBRow](t, file)
	if len(rows) != 42 || st.Rows != 42 || st.XMLBytes != 82249 {
		t.Fatalf("%d rows, stats %+v", len(rows), st)
	}
	for i := 1; i < len(rows); i++ {
		if rows[i].QID <= rows[i-1].QID || rows[i].SourceOffset <= rows[i-1].SourceOffset {
			t.Fatalf("rows %d and %d out of order: %d %d", i-1, i, rows[i-1].QID, rows[i].QID)
		}
	}

	file, st = convertKB(t, Options{}, readSample(t, "kb_unknown-id_empty-response_keepalive-after-root_recorded_200.xml"))
	if rows := readRows[KBRow](t, file); len(rows) != 0 || st.Rows != 0 {
		t.Fatalf("no VULN_LIST: %d rows", len(rows))
	}
}

// synthKB is a KnowledgeBase answer with every element the kb table reads
// that the real samples lack: CVSS, CVSS_V3, malware, compliance, PCI
// reasons, supported modules, disabled flag, change log, customisation.
const synthKB = `<?xml version="1.0" encoding="UTF-8" ?>
<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><DATETIME>2026-12-04T12:00:00Z</DATETIME><VULN_LIST>
<VULN><QID>38173</QID><VULN_TYPE>Vulnerability</VULN_TYPE><SEVERITY_LEVEL>5</SEVERITY_LEVEL><TITLE>T &amp; t</TITLE>
<DETECTION_INFO>info</DETECTION_INFO>
<LAST_CUSTOMIZATION><DATETIME>2025-01-02T03:04:05Z</DATETIME><USER_LOGIN>ops_x</USER_LOGIN></LAST_CUSTOMIZATION>
<PUBLISHED_DATETIME>2020-01-01T00:00:00Z</PUBLISHED_DATETIME><PATCHABLE>1</PATCHABLE>
<DIAGNOSIS_COMMENT>dc</DIAGNOSIS_COMMENT><CONSEQUENCE_COMMENT>cc</CONSEQUENCE_COMMENT><SOLUTION_COMMENT>sc</SOLUTION_COMMENT>
<COMPLIANCE_LIST><COMPLIANCE><TYPE>PCI</TYPE><SECTION>6.1</SECTION><DESCRIPTION>d</DESCRIPTION></COMPLIANCE></COMPLIANCE_LIST>
<CORRELATION><MALWARE><MW_SRC><SRC_NAME>TrendMicro</SRC_NAME><MW_LIST><MW_INFO><MW_ID>TROJ_X</MW_ID><MW_TYPE>Trojan</MW_TYPE><MW_PLATFORM>Windows</MW_PLATFORM><MW_ALIAS>a</MW_ALIAS><MW_RATING>High</MW_RATING><MW_LINK>http://m</MW_LINK></MW_INFO></MW_LIST></MW_SRC></MALWARE></CORRELATION>
<CVSS><BASE source="service">9.3</BASE><TEMPORAL>6.9</TEMPORAL><VECTOR_STRING>AV:N/AC:M/Au:N/C:C/I:C/A:C</VECTOR_STRING><ACCESS><VECTOR>3</VECTOR><COMPLEXITY>2</COMPLEXITY></ACCESS><IMPACT><CONFIDENTIALITY>3</CONFIDENTIALITY><INTEGRITY>3</INTEGRITY><AVAILABILITY>3</AVAILABILITY></IMPACT><AUTHENTICATION>1</AUTHENTICATION><EXPLOITABILITY>4</EXPLOITABILITY><REMEDIATION_LEVEL>1</REMEDIATION_LEVEL><REPORT_CONFIDENCE>3</REPORT_CONFIDENCE></CVSS>
<CVSS_V3><BASE>8.1</BASE><TEMPORAL>7.1</TEMPORAL><VECTOR_STRING>CVSS:3.1/AV:N</VECTOR_STRING><CVSS3_VERSION>3.1</CVSS3_VERSION><ATTACK><VECTOR>Network</VECTOR><COMPLEXITY>High</COMPLEXITY></ATTACK><IMPACT><CONFIDENTIALITY>High</CONFIDENTIALITY><INTEGRITY>High</INTEGRITY><AVAILABILITY>High</AVAILABILITY></IMPACT><PRIVILEGES_REQUIRED>None</PRIVILEGES_REQUIRED><USER_INTERACTION>None</USER_INTERACTION><SCOPE>Unchanged</SCOPE><EXPLOIT_CODE_MATURITY>Functional</EXPLOIT_CODE_MATURITY><REMEDIATION_LEVEL>Official Fix</REMEDIATION_LEVEL><REPORT_CONFIDENCE>Confirmed</REPORT_CONFIDENCE></CVSS_V3>
<PCI_FLAG>1</PCI_FLAG><AUTOMATIC_PCI_FAIL>0</AUTOMATIC_PCI_FAIL><PCI_REASONS><PCI_REASON>CVSS 4.0 or higher</PCI_REASON></PCI_REASONS>
<SUPPORTED_MODULES>VM, Cloud Agent,</SUPPORTED_MODULES><DISCOVERY><REMOTE>0</REMOTE></DISCOVERY><IS_DISABLED>0</IS_DISABLED>
<CHANGE_LOG_LIST><CHANGE_LOG_INFO><CHANGE_DATE>2024-02-12</CHANGE_DATE><COMMENTS>c1</COMMENTS></CHANGE_LOG_INFO><CHANGE_LOG_INFO><CHANGE_DATE>2024-03-01T10:00:00Z</CHANGE_DATE><COMMENTS>c2</COMMENTS></CHANGE_LOG_INFO></CHANGE_LOG_LIST>
<NEW_ELEMENT><QID>1</QID></NEW_ELEMENT>
</VULN>
<VULN><QID>6</QID><TITLE>second</TITLE><DISCOVERY><REMOTE>1</REMOTE></DISCOVERY></VULN>
</VULN_LIST></RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT>`

func TestKBAllElements(t *testing.T) {
	file, _ := convertKB(t, Options{}, []byte(synthKB))
	rows := readRows[KBRow](t, file)
	if len(rows) != 2 {
		t.Fatalf("%d rows", len(rows))
	}
	r := rows[0]
	switch {
	case r.QID != 38173 || r.Title != "T & t" || r.DetectionInfo != "info" || r.LastCustomizationUser != "ops_x" ||
		!r.LastCustomizationDatetime.Equal(ts("2025-01-02T03:04:05Z")):
		t.Errorf("head %d %q %q %q %v", r.QID, r.Title, r.DetectionInfo, r.LastCustomizationUser, r.LastCustomizationDatetime)
	case r.DiagnosisComment != "dc" || r.ConsequenceComment != "cc" || r.SolutionComment != "sc":
		t.Errorf("comments %q %q %q", r.DiagnosisComment, r.ConsequenceComment, r.SolutionComment)
	case len(r.Compliance) != 1 || r.Compliance[0] != (KBCompliance{Type: "PCI", Section: "6.1", Description: "d"}):
		t.Errorf("compliance %+v", r.Compliance)
	case len(r.Malware) != 1 || r.Malware[0] != (KBMalware{Source: "TrendMicro", ID: "TROJ_X", Type: "Trojan", Platform: "Windows", Alias: "a", Rating: "High", Link: "http://m"}):
		t.Errorf("malware %+v", r.Malware)
	case *r.CVSSBase != 9.3 || r.CVSSBaseSource != "service" || *r.CVSSTemporal != 6.9 || r.CVSSVector != "AV:N/AC:M/Au:N/C:C/I:C/A:C":
		t.Errorf("CVSS %v %q %v %q", *r.CVSSBase, r.CVSSBaseSource, *r.CVSSTemporal, r.CVSSVector)
	case r.kbCVSS != (kbCVSS{CVSSBase: r.CVSSBase, CVSSBaseSource: "service", CVSSTemporal: r.CVSSTemporal, CVSSVector: "AV:N/AC:M/Au:N/C:C/I:C/A:C",
		CVSSAccessVector: "3", CVSSAccessComplexity: "2", CVSSImpactConfidentiality: "3", CVSSImpactIntegrity: "3", CVSSImpactAvailability: "3",
		CVSSAuthentication: "1", CVSSExploitability: "4", CVSSRemediationLevel: "1", CVSSReportConfidence: "3"}):
		t.Errorf("CVSS %+v", r.kbCVSS)
	case *r.CVSS3Base != 8.1 || *r.CVSS3Temporal != 7.1 || r.kbCVSS3 != (kbCVSS3{CVSS3Base: r.CVSS3Base, CVSS3Temporal: r.CVSS3Temporal,
		CVSS3Vector: "CVSS:3.1/AV:N", CVSS3Version: "3.1", CVSS3AttackVector: "Network", CVSS3AttackComplexity: "High",
		CVSS3ImpactConfidentiality: "High", CVSS3ImpactIntegrity: "High", CVSS3ImpactAvailability: "High", CVSS3PrivilegesRequired: "None",
		CVSS3UserInteraction: "None", CVSS3Scope: "Unchanged", CVSS3ExploitCodeMaturity: "Functional", CVSS3RemediationLevel: "Official Fix",
		CVSS3ReportConfidence: "Confirmed"}):
		t.Errorf("CVSS_V3 %+v", r.kbCVSS3)
	case !*r.PCIFlag || *r.AutomaticPCIFail || len(r.PCIReasons) != 1 || r.PCIReasons[0] != "CVSS 4.0 or higher":
		t.Errorf("PCI %v %v %v", *r.PCIFlag, *r.AutomaticPCIFail, r.PCIReasons)
	case strings.Join(r.SupportedModules, "|") != "VM|Cloud Agent" || *r.DiscoveryRemote || *r.IsDisabled:
		t.Errorf("modules %q, remote %v, disabled %v", r.SupportedModules, *r.DiscoveryRemote, *r.IsDisabled)
	case len(r.ChangeLog) != 2 || !r.ChangeLog[0].Date.Equal(ts("2024-02-12T00:00:00Z")) || !r.ChangeLog[1].Date.Equal(ts("2024-03-01T10:00:00Z")) || r.ChangeLog[1].Comments != "c2":
		t.Errorf("change log %+v", r.ChangeLog)
	}
	// The second row reuses the first's room: nothing of it may remain.
	s := rows[1]
	if s.QID != 6 || s.Title != "second" || s.CVSSBase != nil || s.Malware != nil || s.ChangeLog != nil || s.Compliance != nil ||
		s.SupportedModules != nil || s.LastCustomizationUser != "" || !*s.DiscoveryRemote {
		t.Errorf("second row %+v", s.kbCols)
	}
}

func TestKBMalformed(t *testing.T) {
	for name, doc := range map[string]string{
		"no QID":         `<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><VULN_LIST><VULN><TITLE>x</TITLE></VULN></VULN_LIST></RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT>`,
		"bad score":      `<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><VULN_LIST><VULN><QID>1</QID><CVSS><BASE>high</BASE></CVSS></VULN></VULN_LIST></RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT>`,
		"bad flag":       `<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><VULN_LIST><VULN><QID>1</QID><PATCHABLE>yes</PATCHABLE></VULN></VULN_LIST></RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT>`,
		"other document": `<HOST_LIST_OUTPUT><RESPONSE/></HOST_LIST_OUTPUT>`,
		"error document": `<?xml version="1.0" encoding="UTF-8" ?><SIMPLE_RETURN><RESPONSE><CODE>1905</CODE><TEXT>parameter ids has invalid value</TEXT></RESPONSE></SIMPLE_RETURN>`,
		"cut short":      synthKB[:len(synthKB)/2],
	} {
		t.Run(name, func(t *testing.T) {
			fuzzAdd[KBRow](t, []byte(doc), 0, addKB)
			err := NewKBWriter(io.Discard, Source{Run: "kb-1"}, Options{}).Add(context.Background(), "k", strings.NewReader(doc))
			if err == nil {
				t.Fatal("converted")
			}
		})
	}
}

func addKB(w io.Writer, r io.Reader) (Stats, error) {
	k := NewKBWriter(w, Source{Run: "kb-1"}, Options{RowGroupRows: 3})
	if err := k.Add(context.Background(), "k", r); err != nil {
		return Stats{}, err
	}
	return k.Close()
}

func FuzzKB(f *testing.F) {
	fuzzSeeds(f, "kb_", synthKB,
		`<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><VULN_LIST><VULN><QID>2</QID><CVSS><BASE source="s`,
		`<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><VULN_LIST><VULN><QID>2</QID><THREAT_INTELLIGENCE><THREAT_INTEL id='&#x41;&lt;'>v</THREAT_INTEL></THREAT_INTELLIGENCE><SOFTWARE_LIST><PRODUCT>p</PRODUCT></SOFTWARE_LIST></VULN></VULN_LIST></RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT>`,
		`<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><ID_SET><ID>5</ID></ID_SET></RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT>`)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzAdd[KBRow](t, data, chunk, addKB)
	})
}
