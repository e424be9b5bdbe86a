package tables

import (
	"bytes"
	"io"
	"strconv"
	"time"

	"github.com/qfetch/qfetch/internal/qualys/xmlscan"
)

// rootKB is the KnowledgeBase API's document.
const rootKB = "KNOWLEDGE_BASE_VULN_LIST_OUTPUT"

// maxKBText bounds the KnowledgeBase's long texts (DIAGNOSIS, SOLUTION…:
// HTML in CDATA); every other element keeps maxText.
const maxKBText = 1 << 20

// KBWriter writes one Parquet file of the kb table from KnowledgeBase
// answers (details=Basic or All) added to it: one row per VULN. An answer
// with details=None (an ID_SET) gives no rows.
type KBWriter struct{ tableWriter[KBRow] }

// NewKBWriter starts a kb file on w.
func NewKBWriter(w io.Writer, src Source, opt Options) *KBWriter {
	k := &KBWriter{}
	p := &kbParser{}
	k.init(w, KB, src, opt, p, &p.scanBase)
	p.sink = &k.sink
	return k
}

// Contexts of the KnowledgeBase elements that hold others. They follow the
// host and detection ones: the parsers share ctxRoot and ctxResponse.
const (
	kVulnList = ctxIDSet + 1 + iota
	kVuln
	kLastCust
	kBugtraqList
	kBugtraq
	kSoftwareList
	kSoftware
	kVendorRefList
	kVendorRef
	kCVEList
	kCVE
	kComplianceList
	kCompliance
	kCorrelation
	kExploits
	kExplSrc
	kExplList
	kExpl
	kMalware
	kMwSrc
	kMwList
	kMwInfo
	kCVSS
	kCVSSAccess
	kCVSSImpact
	kCVSS3
	kCVSS3Attack
	kCVSS3Impact
	kPCIReasons
	kThreatIntel
	kDiscovery
	kAuthTypes
	kChangeLog
	kChangeLogInfo
)

// Contexts of the KnowledgeBase elements whose text becomes a column. They
// may share values with the detection parser's: only kbParser sees them.
const (
	kQID = xmlscan.WantText | (iota + 1)
	kVulnType
	kSeverity
	kTitle
	kCategory
	kDetectionInfo
	kLastCustDatetime
	kLastCustUser
	kLastServiceMod
	kPublished
	kBugtraqID
	kPatchable
	kProduct
	kVendor
	kVendorRefID
	kVendorRefURL
	kCVEID
	kCVEURL
	kDiagnosis
	kDiagnosisComment
	kConsequence
	kConsequenceComment
	kSolution
	kSolutionComment
	kComplianceType
	kComplianceSection
	kComplianceDesc
	kExplSrcName
	kExplRef
	kExplDesc
	kExplLink
	kMwSrcName
	kMwID
	kMwType
	kMwPlatform
	kMwAlias
	kMwRating
	kMwLink
	kCVSSBase
	kCVSSTemporal
	kCVSSVector
	kCVSSAccessVector
	kCVSSAccessComplexity
	kCVSSImpactC
	kCVSSImpactI
	kCVSSImpactA
	kCVSSAuthentication
	kCVSSExploitability
	kCVSSRemediation
	kCVSSReportConfidence
	kCVSS3Base
	kCVSS3Temporal
	kCVSS3Vector
	kCVSS3Version
	kCVSS3AttackVector
	kCVSS3AttackComplexity
	kCVSS3ImpactC
	kCVSS3ImpactI
	kCVSS3ImpactA
	kCVSS3Privileges
	kCVSS3UserInteraction
	kCVSS3Scope
	kCVSS3ExploitMaturity
	kCVSS3Remediation
	kCVSS3ReportConfidence
	kPCIFlag
	kPCIFail
	kPCIReason
	kThreatIntelItem
	kSupportedModules
	kRemote
	kAuthType
	kAdditionalInfo
	kDisabled
	kChangeDate
	kChangeComments
)

// kbChildren places each element the kb table reads by its parent's
// context; any other element is skipped, whatever the DTD says (the real
// answers break it: see docs/tables.md).
var kbChildren = map[xmlscan.Context]map[string]xmlscan.Context{
	ctxResponse: {"VULN_LIST": kVulnList},
	kVulnList:   {"VULN": kVuln},
	kVuln: {
		"QID": kQID, "VULN_TYPE": kVulnType, "SEVERITY_LEVEL": kSeverity, "TITLE": kTitle,
		"CATEGORY": kCategory, "DETECTION_INFO": kDetectionInfo, "LAST_CUSTOMIZATION": kLastCust,
		"LAST_SERVICE_MODIFICATION_DATETIME": kLastServiceMod, "PUBLISHED_DATETIME": kPublished,
		"BUGTRAQ_LIST": kBugtraqList, "PATCHABLE": kPatchable, "SOFTWARE_LIST": kSoftwareList,
		"VENDOR_REFERENCE_LIST": kVendorRefList, "CVE_LIST": kCVEList,
		"DIAGNOSIS": kDiagnosis, "DIAGNOSIS_COMMENT": kDiagnosisComment,
		"CONSEQUENCE": kConsequence, "CONSEQUENCE_COMMENT": kConsequenceComment,
		"SOLUTION": kSolution, "SOLUTION_COMMENT": kSolutionComment,
		"COMPLIANCE_LIST": kComplianceList, "CORRELATION": kCorrelation,
		"CVSS": kCVSS, "CVSS_V3": kCVSS3, "PCI_FLAG": kPCIFlag, "AUTOMATIC_PCI_FAIL": kPCIFail,
		"PCI_REASONS": kPCIReasons, "THREAT_INTELLIGENCE": kThreatIntel,
		"SUPPORTED_MODULES": kSupportedModules, "DISCOVERY": kDiscovery,
		"IS_DISABLED": kDisabled, "CHANGE_LOG_LIST": kChangeLog,
	},
	kLastCust:       {"DATETIME": kLastCustDatetime, "USER_LOGIN": kLastCustUser},
	kBugtraqList:    {"BUGTRAQ": kBugtraq},
	kBugtraq:        {"ID": kBugtraqID},
	kSoftwareList:   {"SOFTWARE": kSoftware},
	kSoftware:       {"PRODUCT": kProduct, "VENDOR": kVendor},
	kVendorRefList:  {"VENDOR_REFERENCE": kVendorRef},
	kVendorRef:      {"ID": kVendorRefID, "URL": kVendorRefURL},
	kCVEList:        {"CVE": kCVE},
	kCVE:            {"ID": kCVEID, "URL": kCVEURL},
	kComplianceList: {"COMPLIANCE": kCompliance},
	kCompliance:     {"TYPE": kComplianceType, "SECTION": kComplianceSection, "DESCRIPTION": kComplianceDesc},
	kCorrelation:    {"EXPLOITS": kExploits, "MALWARE": kMalware},
	kExploits:       {"EXPLT_SRC": kExplSrc},
	kExplSrc:        {"SRC_NAME": kExplSrcName, "EXPLT_LIST": kExplList, "EXPLT": kExpl},
	kExplList:       {"EXPLT": kExpl},
	kExpl:           {"REF": kExplRef, "DESC": kExplDesc, "LINK": kExplLink},
	kMalware:        {"MW_SRC": kMwSrc},
	kMwSrc:          {"SRC_NAME": kMwSrcName, "MW_LIST": kMwList, "MW_INFO": kMwInfo},
	kMwList:         {"MW_INFO": kMwInfo},
	kMwInfo: {"MW_ID": kMwID, "MW_TYPE": kMwType, "MW_PLATFORM": kMwPlatform, "MW_ALIAS": kMwAlias,
		"MW_RATING": kMwRating, "MW_LINK": kMwLink},
	kCVSS: {"BASE": kCVSSBase, "TEMPORAL": kCVSSTemporal, "VECTOR_STRING": kCVSSVector,
		"ACCESS": kCVSSAccess, "IMPACT": kCVSSImpact, "AUTHENTICATION": kCVSSAuthentication,
		"EXPLOITABILITY": kCVSSExploitability, "REMEDIATION_LEVEL": kCVSSRemediation,
		"REPORT_CONFIDENCE": kCVSSReportConfidence},
	kCVSSAccess: {"VECTOR": kCVSSAccessVector, "COMPLEXITY": kCVSSAccessComplexity},
	kCVSSImpact: {"CONFIDENTIALITY": kCVSSImpactC, "INTEGRITY": kCVSSImpactI, "AVAILABILITY": kCVSSImpactA},
	kCVSS3: {"BASE": kCVSS3Base, "TEMPORAL": kCVSS3Temporal, "VECTOR_STRING": kCVSS3Vector,
		"CVSS3_VERSION": kCVSS3Version, "ATTACK": kCVSS3Attack, "IMPACT": kCVSS3Impact,
		"PRIVILEGES_REQUIRED": kCVSS3Privileges, "USER_INTERACTION": kCVSS3UserInteraction,
		"SCOPE": kCVSS3Scope, "EXPLOIT_CODE_MATURITY": kCVSS3ExploitMaturity,
		"REMEDIATION_LEVEL": kCVSS3Remediation, "REPORT_CONFIDENCE": kCVSS3ReportConfidence},
	kCVSS3Attack:   {"VECTOR": kCVSS3AttackVector, "COMPLEXITY": kCVSS3AttackComplexity},
	kCVSS3Impact:   {"CONFIDENTIALITY": kCVSS3ImpactC, "INTEGRITY": kCVSS3ImpactI, "AVAILABILITY": kCVSS3ImpactA},
	kPCIReasons:    {"PCI_REASON": kPCIReason},
	kThreatIntel:   {"THREAT_INTEL": kThreatIntelItem},
	kDiscovery:     {"REMOTE": kRemote, "AUTH_TYPE_LIST": kAuthTypes, "ADDITIONAL_INFO": kAdditionalInfo},
	kAuthTypes:     {"AUTH_TYPE": kAuthType},
	kChangeLog:     {"CHANGE_LOG_INFO": kChangeLogInfo},
	kChangeLogInfo: {"CHANGE_DATE": kChangeDate, "COMMENTS": kChangeComments},
}

// kbParser is the xmlscan.Handler that turns a KnowledgeBase answer into
// rows: one per RESPONSE/VULN_LIST/VULN, written as the VULN closes.
type kbParser struct {
	scanBase
	sink   *sink[KBRow]
	cur    *KBRow
	sawQID bool
	text   textBuf
	in     interner
	// The EXPLT_SRC or MW_SRC being read: its name, and where its
	// elements start in the row's list.
	srcName  string
	srcFirst int
}

func (p *kbParser) Start(parent xmlscan.Context, name []byte, off int64) (xmlscan.Context, error) {
	if ctx, ok, err := envelope(parent, name, off, rootKB); ok {
		return ctx, err
	}
	ctx := kbChildren[parent][string(name)]
	if ctx == xmlscan.Skip {
		return ctx, nil
	}
	r := p.cur
	switch ctx {
	case kVuln:
		p.startVuln(off - int64(len(name)) - 1)
		p.units++
	case kSoftware:
		r.Software = append(r.Software, KBSoftware{})
	case kVendorRef:
		r.VendorReferences = append(r.VendorReferences, KBReference{})
	case kCVE:
		r.CVEs = append(r.CVEs, KBReference{})
	case kCompliance:
		r.Compliance = append(r.Compliance, KBCompliance{})
	case kExplSrc:
		p.srcName, p.srcFirst = "", len(r.Exploits)
	case kExpl:
		r.Exploits = append(r.Exploits, KBExploit{})
	case kMwSrc:
		p.srcName, p.srcFirst = "", len(r.Malware)
	case kMwInfo:
		r.Malware = append(r.Malware, KBMalware{})
	case kChangeLogInfo:
		r.ChangeLog = append(r.ChangeLog, KBChange{})
	case kCVSSBase, kCVSS3Base, kThreatIntelItem:
		p.f.captureAttrs(off)
	}
	if ctx&xmlscan.WantText != 0 {
		limit := maxText
		switch ctx {
		case kDiagnosis, kDiagnosisComment, kConsequence, kConsequenceComment, kSolution, kSolutionComment:
			limit = maxKBText
		}
		p.text.start(limit)
	}
	return ctx, nil
}

// startVuln readies the next row; its lists keep the room of the row it
// reuses.
func (p *kbParser) startVuln(off int64) {
	if p.in == nil {
		p.in = interner{}
	}
	r := p.sink.next()
	old := r.kbCols
	*r = KBRow{sourceCols: p.src}
	r.SourceOffset = off
	r.BugtraqIDs = old.BugtraqIDs[:0]
	r.Software = old.Software[:0]
	r.VendorReferences = old.VendorReferences[:0]
	r.CVEs = old.CVEs[:0]
	r.Compliance = old.Compliance[:0]
	r.Exploits = old.Exploits[:0]
	r.Malware = old.Malware[:0]
	r.PCIReasons = old.PCIReasons[:0]
	r.ThreatIntelligence = old.ThreatIntelligence[:0]
	r.SupportedModules = old.SupportedModules[:0]
	r.DiscoveryAuthTypes = old.DiscoveryAuthTypes[:0]
	r.ChangeLog = old.ChangeLog[:0]
	p.cur, p.sawQID = r, false
}

func (p *kbParser) Text(_ xmlscan.Context, b []byte, off int64) error {
	return p.text.add(b, off, p.f.s.Path)
}

func (p *kbParser) End(ctx xmlscan.Context, off int64) error {
	r := p.cur
	switch ctx {
	case kVuln:
		return p.endVuln(off)
	case kExplSrc:
		if len(r.Exploits) == p.srcFirst {
			r.Exploits = append(r.Exploits, KBExploit{})
		}
		for i := p.srcFirst; i < len(r.Exploits); i++ {
			r.Exploits[i].Source = p.srcName
		}
		return nil
	case kMwSrc:
		if len(r.Malware) == p.srcFirst {
			r.Malware = append(r.Malware, KBMalware{})
		}
		for i := p.srcFirst; i < len(r.Malware); i++ {
			r.Malware[i].Source = p.srcName
		}
		return nil
	}
	if ctx&xmlscan.WantText == 0 {
		return nil
	}
	return p.set(ctx, p.text.value(), off)
}

func (p *kbParser) endVuln(off int64) error {
	r := p.cur
	if !p.sawQID {
		return fault(off, "VULN without a QID")
	}
	size := len(r.Title) + len(r.DetectionInfo) + len(r.Diagnosis) + len(r.DiagnosisComment) +
		len(r.Consequence) + len(r.ConsequenceComment) + len(r.Solution) + len(r.SolutionComment) +
		len(r.DiscoveryAdditionalInfo) + 64*(len(r.BugtraqIDs)+len(r.Software)+len(r.VendorReferences)+
		len(r.CVEs)+len(r.Exploits)+len(r.Malware)+len(r.PCIReasons)+len(r.ThreatIntelligence)+
		len(r.SupportedModules)+len(r.DiscoveryAuthTypes)+len(r.ChangeLog))
	for _, c := range r.Compliance {
		size += len(c.Description) + len(c.Section)
	}
	for _, c := range r.ChangeLog {
		size += len(c.Comments)
	}
	// An absent list is NULL, not an empty one.
	nilIfEmpty(&r.BugtraqIDs)
	nilIfEmpty(&r.Software)
	nilIfEmpty(&r.VendorReferences)
	nilIfEmpty(&r.CVEs)
	nilIfEmpty(&r.Compliance)
	nilIfEmpty(&r.Exploits)
	nilIfEmpty(&r.Malware)
	nilIfEmpty(&r.PCIReasons)
	nilIfEmpty(&r.ThreatIntelligence)
	nilIfEmpty(&r.SupportedModules)
	nilIfEmpty(&r.DiscoveryAuthTypes)
	nilIfEmpty(&r.ChangeLog)
	r.link()
	return p.committed(p.sink.commit(size))
}

func nilIfEmpty[T any](s *[]T) {
	if len(*s) == 0 {
		*s = nil
	}
}

// last is the list's element being read; a text outside one (no list
// element was opened) has none.
func last[T any](s []T) *T {
	if len(s) == 0 {
		return new(T)
	}
	return &s[len(s)-1]
}

func (p *kbParser) set(f xmlscan.Context, v []byte, off int64) error {
	r, in := p.cur, p.in
	switch f {
	case kQID:
		var err error
		r.QID, err = parseQID(v, off)
		p.sawQID = err == nil
		return err
	case kVulnType:
		r.VulnType = in.get(v)
	case kSeverity:
		return setInt32(&r.Severity, &r.severity, v, off, "SEVERITY_LEVEL")
	case kTitle:
		r.Title = string(v)
	case kCategory:
		r.Category = in.get(v)
	case kDetectionInfo:
		r.DetectionInfo = string(v)
	case kLastCustDatetime:
		return setTime(&r.LastCustomizationDatetime, v, off, "LAST_CUSTOMIZATION/DATETIME")
	case kLastCustUser:
		r.LastCustomizationUser = in.get(v)
	case kLastServiceMod:
		return setTime(&r.LastServiceModificationDatetime, v, off, "LAST_SERVICE_MODIFICATION_DATETIME")
	case kPublished:
		return setTime(&r.PublishedDatetime, v, off, "PUBLISHED_DATETIME")
	case kBugtraqID:
		if len(v) > 0 {
			r.BugtraqIDs = append(r.BugtraqIDs, string(v))
		}
	case kPatchable:
		return setBool(&r.Patchable, &r.patchable, v, off, "PATCHABLE")
	case kProduct:
		last(r.Software).Product = in.get(v)
	case kVendor:
		last(r.Software).Vendor = in.get(v)
	case kVendorRefID:
		last(r.VendorReferences).ID = string(v)
	case kVendorRefURL:
		last(r.VendorReferences).URL = string(v)
	case kCVEID:
		last(r.CVEs).ID = string(v)
	case kCVEURL:
		last(r.CVEs).URL = string(v)
	case kDiagnosis:
		r.Diagnosis = string(v)
	case kDiagnosisComment:
		r.DiagnosisComment = string(v)
	case kConsequence:
		r.Consequence = string(v)
	case kConsequenceComment:
		r.ConsequenceComment = string(v)
	case kSolution:
		r.Solution = string(v)
	case kSolutionComment:
		r.SolutionComment = string(v)
	case kComplianceType:
		last(r.Compliance).Type = in.get(v)
	case kComplianceSection:
		last(r.Compliance).Section = string(v)
	case kComplianceDesc:
		last(r.Compliance).Description = string(v)
	case kExplSrcName, kMwSrcName:
		p.srcName = in.get(v)
	case kExplRef:
		last(r.Exploits).Ref = string(v)
	case kExplDesc:
		last(r.Exploits).Description = string(v)
	case kExplLink:
		last(r.Exploits).Link = string(v)
	case kMwID:
		last(r.Malware).ID = string(v)
	case kMwType:
		last(r.Malware).Type = in.get(v)
	case kMwPlatform:
		last(r.Malware).Platform = in.get(v)
	case kMwAlias:
		last(r.Malware).Alias = string(v)
	case kMwRating:
		last(r.Malware).Rating = in.get(v)
	case kMwLink:
		last(r.Malware).Link = string(v)
	case kCVSSBase:
		if src, ok := p.f.attr("source"); ok {
			r.CVSSBaseSource = in.get(src)
		}
		return setFloat(&r.CVSSBase, &r.cvssBase, v, off, "CVSS/BASE")
	case kCVSSTemporal:
		return setFloat(&r.CVSSTemporal, &r.cvssTemporal, v, off, "CVSS/TEMPORAL")
	case kCVSS3Base:
		if src, ok := p.f.attr("source"); ok {
			r.CVSS3BaseSource = in.get(src)
		}
		return setFloat(&r.CVSS3Base, &r.cvss3Base, v, off, "CVSS_V3/BASE")
	case kCVSS3Temporal:
		return setFloat(&r.CVSS3Temporal, &r.cvss3Temp, v, off, "CVSS_V3/TEMPORAL")
	case kPCIFlag:
		return setBool(&r.PCIFlag, &r.pciFlag, v, off, "PCI_FLAG")
	case kPCIFail:
		return setBool(&r.AutomaticPCIFail, &r.pciFail, v, off, "AUTOMATIC_PCI_FAIL")
	case kPCIReason:
		if len(v) > 0 {
			r.PCIReasons = append(r.PCIReasons, string(v))
		}
	case kThreatIntelItem:
		id, _ := p.f.attr("id")
		r.ThreatIntelligence = append(r.ThreatIntelligence, KBThreatIntel{ID: in.get(id), Text: in.get(v)})
	case kSupportedModules:
		for m := range bytes.SplitSeq(v, []byte(",")) {
			if m = bytes.TrimSpace(m); len(m) > 0 {
				r.SupportedModules = append(r.SupportedModules, in.get(m))
			}
		}
	case kRemote:
		return setBool(&r.DiscoveryRemote, &r.remote, v, off, "DISCOVERY/REMOTE")
	case kAuthType:
		if len(v) > 0 {
			r.DiscoveryAuthTypes = append(r.DiscoveryAuthTypes, in.get(v))
		}
	case kAdditionalInfo:
		r.DiscoveryAdditionalInfo = in.get(v)
	case kDisabled:
		return setBool(&r.IsDisabled, &r.disabled, v, off, "IS_DISABLED")
	case kChangeDate:
		var t time.Time
		if err := setDate(&t, v, off, "CHANGE_LOG_INFO/CHANGE_DATE"); err != nil || t.IsZero() {
			return err
		}
		last(r.ChangeLog).Date = &t
	case kChangeComments:
		last(r.ChangeLog).Comments = string(v)
	default:
		p.setString(f, in.get(v))
	}
	return nil
}

// setString sets the CVSS columns that are text as sent.
func (p *kbParser) setString(f xmlscan.Context, s string) {
	c2, c3 := &p.cur.kbCVSS, &p.cur.kbCVSS3
	switch f {
	case kCVSSVector:
		c2.CVSSVector = s
	case kCVSSAccessVector:
		c2.CVSSAccessVector = s
	case kCVSSAccessComplexity:
		c2.CVSSAccessComplexity = s
	case kCVSSImpactC:
		c2.CVSSImpactConfidentiality = s
	case kCVSSImpactI:
		c2.CVSSImpactIntegrity = s
	case kCVSSImpactA:
		c2.CVSSImpactAvailability = s
	case kCVSSAuthentication:
		c2.CVSSAuthentication = s
	case kCVSSExploitability:
		c2.CVSSExploitability = s
	case kCVSSRemediation:
		c2.CVSSRemediationLevel = s
	case kCVSSReportConfidence:
		c2.CVSSReportConfidence = s
	case kCVSS3Vector:
		c3.CVSS3Vector = s
	case kCVSS3Version:
		c3.CVSS3Version = s
	case kCVSS3AttackVector:
		c3.CVSS3AttackVector = s
	case kCVSS3AttackComplexity:
		c3.CVSS3AttackComplexity = s
	case kCVSS3ImpactC:
		c3.CVSS3ImpactConfidentiality = s
	case kCVSS3ImpactI:
		c3.CVSS3ImpactIntegrity = s
	case kCVSS3ImpactA:
		c3.CVSS3ImpactAvailability = s
	case kCVSS3Privileges:
		c3.CVSS3PrivilegesRequired = s
	case kCVSS3UserInteraction:
		c3.CVSS3UserInteraction = s
	case kCVSS3Scope:
		c3.CVSS3Scope = s
	case kCVSS3ExploitMaturity:
		c3.CVSS3ExploitCodeMaturity = s
	case kCVSS3Remediation:
		c3.CVSS3RemediationLevel = s
	case kCVSS3ReportConfidence:
		c3.CVSS3ReportConfidence = s
	}
}

// setFloat reads a score ("7.5"); an empty element is NULL.
func setFloat(p **float64, storage *float64, b []byte, off int64, what string) error {
	if len(b) == 0 {
		return nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil || v != v {
		return fault(off, "%s %q is not a number", what, b)
	}
	*storage, *p = v, storage
	return nil
}

// setDate reads a time as setTime does, or a day ("2024-02-12", midnight
// UTC).
func setDate(t *time.Time, b []byte, off int64, what string) error {
	if len(b) == len(time.DateOnly) {
		if v, err := time.Parse(time.DateOnly, string(b)); err == nil {
			*t = v
			return nil
		}
	}
	return setTime(t, b, off, what)
}
