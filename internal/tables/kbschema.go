package tables

import "time"

// KB is the kb table: one row per QID per KnowledgeBase pass.
const KB = "kb"

// KBSoftware is one element of the software column: SOFTWARE_LIST/SOFTWARE.
type KBSoftware struct {
	Product string `parquet:"product,optional"`
	Vendor  string `parquet:"vendor,optional,dict"`
}

// KBReference is one element of the vendor_references and cves columns:
// an ID and its URL (a CVE without URL is allowed: URL NULL).
type KBReference struct {
	ID  string `parquet:"id,optional"`
	URL string `parquet:"url,optional"`
}

// KBCompliance is one element of the compliance column: COMPLIANCE_LIST/COMPLIANCE.
type KBCompliance struct {
	Type        string `parquet:"type,optional,dict"`
	Section     string `parquet:"section,optional"`
	Description string `parquet:"description,optional"`
}

// KBExploit is one element of the exploits column: one
// CORRELATION/EXPLOITS/EXPLT_SRC/EXPLT_LIST/EXPLT with its source's name
// (an EXPLT_SRC without any EXPLT gives one element with the source alone).
type KBExploit struct {
	Source      string `parquet:"source,optional,dict"`
	Ref         string `parquet:"ref,optional"`
	Description string `parquet:"description,optional"`
	Link        string `parquet:"link,optional"`
}

// KBMalware is one element of the malware column: one
// CORRELATION/MALWARE/MW_SRC/MW_LIST/MW_INFO with its source's name, as
// exploits.
type KBMalware struct {
	Source   string `parquet:"source,optional,dict"`
	ID       string `parquet:"id,optional"`
	Type     string `parquet:"type,optional,dict"`
	Platform string `parquet:"platform,optional"`
	Alias    string `parquet:"alias,optional"`
	Rating   string `parquet:"rating,optional,dict"`
	Link     string `parquet:"link,optional"`
}

// KBThreatIntel is one element of the threat_intelligence column:
// THREAT_INTELLIGENCE/THREAT_INTEL, its id attribute and its text.
type KBThreatIntel struct {
	ID   string `parquet:"id,optional,dict"`
	Text string `parquet:"text,optional,dict"`
}

// KBChange is one element of the change_log column:
// CHANGE_LOG_LIST/CHANGE_LOG_INFO. Date is a pointer: parquet-go v0.32 writes an optional time.Time inside
// a list's struct as NULL.
type KBChange struct {
	Date     *time.Time `parquet:"date,optional,timestamp(millisecond)"`
	Comments string     `parquet:"comments,optional"`
}

// kbCVSS are the CVSS (v2) columns: scores as numbers, the rest as sent.
type kbCVSS struct {
	CVSSBase                  *float64 `parquet:"cvss_base,optional"`
	CVSSBaseSource            string   `parquet:"cvss_base_source,optional,dict"`
	CVSSTemporal              *float64 `parquet:"cvss_temporal,optional"`
	CVSSVector                string   `parquet:"cvss_vector,optional,dict"`
	CVSSAccessVector          string   `parquet:"cvss_access_vector,optional,dict"`
	CVSSAccessComplexity      string   `parquet:"cvss_access_complexity,optional,dict"`
	CVSSImpactConfidentiality string   `parquet:"cvss_impact_confidentiality,optional,dict"`
	CVSSImpactIntegrity       string   `parquet:"cvss_impact_integrity,optional,dict"`
	CVSSImpactAvailability    string   `parquet:"cvss_impact_availability,optional,dict"`
	CVSSAuthentication        string   `parquet:"cvss_authentication,optional,dict"`
	CVSSExploitability        string   `parquet:"cvss_exploitability,optional,dict"`
	CVSSRemediationLevel      string   `parquet:"cvss_remediation_level,optional,dict"`
	CVSSReportConfidence      string   `parquet:"cvss_report_confidence,optional,dict"`
}

// kbCVSS3 are the CVSS_V3 columns.
type kbCVSS3 struct {
	CVSS3Base                  *float64 `parquet:"cvss3_base,optional"`
	CVSS3BaseSource            string   `parquet:"cvss3_base_source,optional,dict"`
	CVSS3Temporal              *float64 `parquet:"cvss3_temporal,optional"`
	CVSS3Vector                string   `parquet:"cvss3_vector,optional,dict"`
	CVSS3Version               string   `parquet:"cvss3_version,optional,dict"`
	CVSS3AttackVector          string   `parquet:"cvss3_attack_vector,optional,dict"`
	CVSS3AttackComplexity      string   `parquet:"cvss3_attack_complexity,optional,dict"`
	CVSS3ImpactConfidentiality string   `parquet:"cvss3_impact_confidentiality,optional,dict"`
	CVSS3ImpactIntegrity       string   `parquet:"cvss3_impact_integrity,optional,dict"`
	CVSS3ImpactAvailability    string   `parquet:"cvss3_impact_availability,optional,dict"`
	CVSS3PrivilegesRequired    string   `parquet:"cvss3_privileges_required,optional,dict"`
	CVSS3UserInteraction       string   `parquet:"cvss3_user_interaction,optional,dict"`
	CVSS3Scope                 string   `parquet:"cvss3_scope,optional,dict"`
	CVSS3ExploitCodeMaturity   string   `parquet:"cvss3_exploit_code_maturity,optional,dict"`
	CVSS3RemediationLevel      string   `parquet:"cvss3_remediation_level,optional,dict"`
	CVSS3ReportConfidence      string   `parquet:"cvss3_report_confidence,optional,dict"`
}

// kbCols are VULN's columns.
type kbCols struct {
	QID                             int32          `parquet:"qid"`
	VulnType                        string         `parquet:"vuln_type,optional,dict"`
	Severity                        *int32         `parquet:"severity,optional"`
	Title                           string         `parquet:"title,optional"`
	Category                        string         `parquet:"category,optional,dict"`
	DetectionInfo                   string         `parquet:"detection_info,optional"`
	LastCustomizationDatetime       time.Time      `parquet:"last_customization_datetime,optional,timestamp(millisecond)"`
	LastCustomizationUser           string         `parquet:"last_customization_user,optional,dict"`
	LastServiceModificationDatetime time.Time      `parquet:"last_service_modification_datetime,optional,timestamp(millisecond)"`
	PublishedDatetime               time.Time      `parquet:"published_datetime,optional,timestamp(millisecond)"`
	Patchable                       *bool          `parquet:"patchable,optional"`
	BugtraqIDs                      []string       `parquet:"bugtraq_ids,optional,list"`
	Software                        []KBSoftware   `parquet:"software,optional,list"`
	VendorReferences                []KBReference  `parquet:"vendor_references,optional,list"`
	CVEs                            []KBReference  `parquet:"cves,optional,list"`
	Diagnosis                       string         `parquet:"diagnosis,optional"`
	DiagnosisComment                string         `parquet:"diagnosis_comment,optional"`
	Consequence                     string         `parquet:"consequence,optional"`
	ConsequenceComment              string         `parquet:"consequence_comment,optional"`
	Solution                        string         `parquet:"solution,optional"`
	SolutionComment                 string         `parquet:"solution_comment,optional"`
	Compliance                      []KBCompliance `parquet:"compliance,optional,list"`
	Exploits                        []KBExploit    `parquet:"exploits,optional,list"`
	Malware                         []KBMalware    `parquet:"malware,optional,list"`
	kbCVSS
	kbCVSS3
	PCIFlag                 *bool           `parquet:"pci_flag,optional"`
	AutomaticPCIFail        *bool           `parquet:"automatic_pci_fail,optional"`
	PCIReasons              []string        `parquet:"pci_reasons,optional,list"`
	ThreatIntelligence      []KBThreatIntel `parquet:"threat_intelligence,optional,list"`
	SupportedModules        []string        `parquet:"supported_modules,optional,list"`
	DiscoveryRemote         *bool           `parquet:"discovery_remote,optional"`
	DiscoveryAuthTypes      []string        `parquet:"discovery_auth_types,optional,list"`
	DiscoveryAdditionalInfo string          `parquet:"discovery_additional_info,optional"`
	IsDisabled              *bool           `parquet:"is_disabled,optional"`
	ChangeLog               []KBChange      `parquet:"change_log,optional,list"`

	severity                                      int32
	cvssBase, cvssTemporal, cvss3Base, cvss3Temp  float64
	patchable, pciFlag, pciFail, remote, disabled bool
}

// KBRow is one row of the kb table: a QID as one KnowledgeBase pass got it.
type KBRow struct {
	sourceCols
	kbCols
}

// link points r's number columns at r's own storage (see hostCols.link).
func (r *kbCols) link() {
	relink(&r.Severity, &r.severity)
	relink(&r.CVSSBase, &r.cvssBase)
	relink(&r.CVSSTemporal, &r.cvssTemporal)
	relink(&r.CVSS3Base, &r.cvss3Base)
	relink(&r.CVSS3Temporal, &r.cvss3Temp)
	relink(&r.Patchable, &r.patchable)
	relink(&r.PCIFlag, &r.pciFlag)
	relink(&r.AutomaticPCIFail, &r.pciFail)
	relink(&r.DiscoveryRemote, &r.remote)
	relink(&r.IsDisabled, &r.disabled)
}
