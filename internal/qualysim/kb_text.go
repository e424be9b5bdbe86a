package qualysim

import (
	"strconv"
	"time"
)

// The KnowledgeBase's text: every element's content is appended by one
// function here, which both the writer and the truth call, so the XML and
// KBTruth cannot drift apart. Free text is HTML as Qualys writes it inside
// CDATA (<P>, <BR>, <A HREF=…>, &quot; left literal); none of it holds
// "]]>".

// kbProduct is what a vulnerable product contributes: SOFTWARE_LIST,
// CATEGORY, the vendor reference and the authentication a check uses.
type kbProduct struct {
	vendor, product, name, category string
	ref                             string // vendor reference style: see appendRefID
	url                             string
	auth                            []string
}

var kbProducts = []kbProduct{
	{"microsoft", "windows", "Microsoft Windows", "Windows", "KB", "https://support.microsoft.com/help/", []string{"Windows"}},
	{"microsoft", "office", "Microsoft Office", "Office Application", "KB", "https://support.microsoft.com/help/", []string{"Windows"}},
	{"apache", "http_server", "Apache HTTP Server", "Web server", "Apache HTTP Server Security Advisory", "https://httpd.apache.org/security/vulnerabilities_24.html", []string{"Unix"}},
	{"openssl", "openssl", "OpenSSL", "General remote services", "OpenSSL Security Advisory", "https://www.openssl.org/news/secadv/", []string{"Unix", "Windows"}},
	{"cisco", "ios_xe", "Cisco IOS XE Software", "Cisco", "cisco-sa-", "https://tools.cisco.com/security/center/content/CiscoSecurityAdvisory/", []string{"Unix", "SNMP"}},
	{"oracle", "jdk", "Oracle Java SE", "Local", "Oracle Critical Patch Update", "https://www.oracle.com/security-alerts/", []string{"Windows", "Unix"}},
	{"redhat", "enterprise_linux", "Red Hat Enterprise Linux", "RedHat", "RHSA-", "https://access.redhat.com/errata/", []string{"Unix"}},
	{"canonical", "ubuntu_linux", "Ubuntu Linux", "Ubuntu", "USN-", "https://ubuntu.com/security/notices/", []string{"Unix"}},
	{"vmware", "esxi", "VMware ESXi", "VMware", "VMSA-", "https://www.vmware.com/security/advisories/", []string{"VMware"}},
	{"google", "chrome", "Google Chrome", "Local", "Chrome Stable Channel Update", "https://chromereleases.googleblog.com/", []string{"Windows", "Unix"}},
	{"mozilla", "firefox", "Mozilla Firefox", "Local", "MFSA", "https://www.mozilla.org/security/advisories/", []string{"Windows", "Unix"}},
	{"postgresql", "postgresql", "PostgreSQL", "Database", "PostgreSQL Security Release", "https://www.postgresql.org/support/security/", []string{"Unix", "PostgreSQL"}},
	{"vtenext", "vtenext", "Vtecrm Vtenext", "CGI", "Vtenext Release Notes", "https://www.vtenext.com/", nil},
	{"php", "php", "PHP", "Web server", "PHP ChangeLog", "https://www.php.net/ChangeLog-8.php", []string{"Unix"}},
}

// kbIssues are the kinds of flaw: a title's tail and the sentences that
// describe it.
var kbIssues = []struct{ title, how, impact string }{
	{"Remote Code Execution Vulnerability", "a flaw in request parsing lets a remote attacker run arbitrary code",
		"Successful exploitation could allow a remote attacker to execute arbitrary code on the target system.<P>"},
	{"Denial of Service (DoS) Vulnerability", "crafted input makes the service stop responding",
		"Successful exploitation could cause a denial of service condition.<P>"},
	{"Privilege Escalation Vulnerability", "a local user can gain root or SYSTEM privileges",
		"A local attacker could gain elevated privileges on the affected system.<P>"},
	{"Information Disclosure Vulnerability", "sensitive memory contents can be read by an unauthenticated attacker",
		"Successful exploitation could allow an attacker to obtain sensitive information.<P>"},
	{"Multiple Security Vulnerabilities", "several memory corruption and logic flaws were fixed",
		"Successful exploitation could allow an attacker to compromise the confidentiality, integrity and availability of the system."},
	{"Buffer Overflow Vulnerability", "a carefully crafted request body can cause a buffer overflow in the &quot;multipart&quot; parser",
		"Successful exploitation could allow a remote attacker to trigger a buffer overflow and execute arbitrary code.<P>\n"},
	{"Cross-Site Scripting (XSS) Vulnerability", "user-supplied data is echoed in an HTML response without encoding",
		"An attacker could run script in a victim's browser in the context of the affected site."},
	{"Server Side Request Forgery (SSRF) Vulnerability", "a crafted uri-path makes the server forward the request to a host the attacker chooses",
		"Successful exploitation could allow a remote attacker to make the server initiate requests to arbitrary systems.<P>\n"},
	{"Command Injection Vulnerability", "an authenticated user can inject a command that runs with root privileges",
		" A successful exploit could allow the attacker to execute commands with root privileges.<P>"},
	{"Security Feature Bypass Vulnerability", "a check of the &quot;Mark of the Web&quot; can be bypassed",
		"An attacker could bypass a security feature and run untrusted content."},
	{"&quot;Zero-Click&quot; Remote Code Execution Vulnerability", "no user interaction is needed to trigger the flaw",
		"Successful exploitation could allow a remote attacker to take control of the system."},
}

// kbIGs are Information Gathered checks: title, diagnosis.
var kbIGs = []struct{ title, diag string }{
	{"DNS Host Name", "The fully qualified domain name of this host, if it was obtained from a DNS server, is displayed in the RESULT section."},
	{"Operating System Detected", "Several different techniques can be used to identify the operating system (OS) running on a host.\n<P>\n1) <B>TCP/IP Fingerprint</B>: the OS version is among those listed below, according to this &quot;fingerprinting&quot; technique. \n<P>\n2) <B>SNMP</B>: &quot;MIB_II.system.sysDescr&quot; names the operating system.\n"},
	{"Host Scan Time - Scanner", "The Host Scan Time is the period of time it takes the scanning engine to perform the vulnerability assessment of a single target host. \n<P>"},
	{"Open TCP Services List", "The port scanner enables unauthorized users with the appropriate tools to draw a map of all services on this host that can be accessed from the Internet."},
	{"Traceroute", "Traceroute describes the path in realtime from the scanner to the remote host being contacted. It reports the IP addresses of all the routers in between."},
	{"Firewall Detected", "A packet filter or firewall was detected between the scanner and the host. It filters traffic on <B>some</B> ports."},
	{"Installed Applications Enumerated From Windows Installer", "The list of installed applications is read from the Windows Installer database."},
	{"SSL Server Information Retrieval", "The following is a list of supported SSL ciphers.<BR>Note: If a cipher is included in this list it means that it was possible to establish a SSL connection using that cipher."},
}

var (
	kbThreats = [...]string{1: "Zero_Day", 2: "Exploit_Public", 3: "Active_Attacks", 4: "High_Lateral_Movement",
		5: "Easy_Exploit", 6: "High_Data_Loss", 7: "Denial_of_Service", 8: "No_Patch", 9: "Malware", 10: "Exploit_Kit",
		11: "Wormable", 12: "Predicted_High_Risk", 13: "Privilege_Escalation", 14: "Unauthenticated_Exploitation",
		15: "Remote_Code_Execution", 16: "Ransomware", 17: "Solorigate_Sunburst", 18: "Cisa_Known_Exploited_Vulns"}
	kbModules = []string{"VM", "VM, CA-Windows Agent", "VM, CA-Linux Agent, CA-Mac Agent",
		"VM, CA-Windows Agent, CA-Linux Agent", "CA-Windows Agent"}
	kbPCIReasons = []string{"The QID has a severity level of 4 or 5 assigned",
		"The QID has a CVSS base score of 4.0 or higher", "The vulnerability is remotely exploitable",
		"The QID is associated with a PCI DSS requirement on insecure services"}
	kbChanges = []string{"Solution updated.", "CVSS scores updated.", "Detection logic updated to cover newly released versions.",
		"Threat intelligence updated.", "Vendor references added.", "Title updated to include the CVE IDs."}
	kbExploitSrcs = []string{"The Exploit-DB", "Metasploit", "nvd", "Packet Storm"}
)

// kbCVSSEntry is a base vector and its score in tenths.
type kbCVSSEntry struct {
	vector string
	base   int
}

// Base vectors with their published scores (NVD calculators).
var (
	kbCVSS2 = []kbCVSSEntry{{"AV:N/AC:L/Au:N/C:P/I:P/A:P", 75}, {"AV:N/AC:M/Au:N/C:P/I:P/A:P", 68},
		{"AV:N/AC:L/Au:N/C:C/I:C/A:C", 100}, {"AV:N/AC:M/Au:N/C:N/I:P/A:N", 43}, {"AV:N/AC:L/Au:N/C:P/I:N/A:N", 50},
		{"AV:L/AC:L/Au:N/C:C/I:C/A:C", 72}, {"AV:N/AC:M/Au:N/C:C/I:C/A:C", 93}, {"AV:N/AC:L/Au:S/C:P/I:P/A:P", 65},
		{"AV:N/AC:L/Au:N/C:N/I:N/A:P", 50}, {"AV:L/AC:L/Au:N/C:P/I:N/A:N", 21}, {"AV:N/AC:H/Au:N/C:P/I:N/A:N", 26}}
	kbCVSS3 = []kbCVSSEntry{{"AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 98}, {"AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 61},
		{"AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 78}, {"AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 75},
		{"AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 75}, {"AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H", 81},
		{"AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 88}, {"AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 100},
		{"AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 88}, {"AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N", 53},
		{"AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 55}, {"AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:N", 42}}
)

// Temporal metrics: exploit maturity grows with the QID's modifications;
// the remediation level follows patchable. Factors in thousandths.
var (
	kbE2      = [...]string{"U", "POC", "F", "H"}
	kbE2f     = [...]int64{850, 900, 950, 1000}
	kbE3      = [...]string{"U", "P", "F", "H"}
	kbE3f     = [...]int64{910, 940, 970, 1000}
	kbRL2     = [2]string{"U", "OF"}
	kbRL2f    = [2]int64{1000, 870}
	kbRL3     = [2]string{"U", "O"}
	kbRL3f    = [2]int64{1000, 950}
	kbIGCount = uint64(len(kbIGs))
)

func (v *kbVals) maturity() int { return int(min(v.epoch, 3)) }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// appendTenths appends a score in tenths as Qualys writes it: "7.5", "10.0".
func appendTenths(b []byte, n int64) []byte {
	b = strconv.AppendInt(b, n/10, 10)
	return append(b, '.', byte('0'+n%10))
}

// cvssTemporal is the temporal score in tenths: CVSS v2 rounds to the
// nearest tenth, v3 rounds up.
func (v *kbVals) cvssTemporal(v3 bool) int64 {
	e, rl := kbE2f[v.maturity()], kbRL2f[b2i(v.patchable)]
	base := int64(kbCVSS2[max(v.cvss, 0)].base)
	if v3 {
		e, rl = kbE3f[v.maturity()], kbRL3f[b2i(v.patchable)]
		base = int64(kbCVSS3[max(v.cvss3, 0)].base)
	}
	x := base * e * rl * 1000 // tenths × 10^9, report confidence C = 1
	if v3 {
		return (x + 1e9 - 1) / 1e9
	}
	return (x + 5e8) / 1e9
}

func (v *kbVals) appendCVSSVector(b []byte, v3 bool) []byte {
	if v3 {
		b = append(b, "CVSS:3.1/"...)
		b = append(b, kbCVSS3[v.cvss3].vector...)
		b = append(b, "/E:"...)
		b = append(b, kbE3[v.maturity()]...)
		b = append(b, "/RL:"...)
		b = append(b, kbRL3[b2i(v.patchable)]...)
		return append(b, "/RC:C"...)
	}
	b = append(b, "CVSS:2.0/"...)
	b = append(b, kbCVSS2[v.cvss].vector...)
	b = append(b, "/E:"...)
	b = append(b, kbE2[v.maturity()]...)
	b = append(b, "/RL:"...)
	b = append(b, kbRL2[b2i(v.patchable)]...)
	return append(b, "/RC:C"...)
}

// baseSource reports whether BASE carries source="service".
func (v *kbVals) baseSource() bool { return v.a>>62&1 == 1 }

func (v *kbVals) product() *kbProduct { return &kbProducts[v.prod] }

func (v *kbVals) year() int { return time.Unix(v.published, 0).UTC().Year() }

// appendCVE appends the ID of CVE i.
func (v *kbVals) appendCVE(b []byte, i int) []byte {
	h := mix(v.x ^ uint64(i+1)*golden)
	b = append(b, "CVE-"...)
	b = strconv.AppendInt(b, int64(v.year()-int(h%2)), 10)
	b = append(b, '-')
	return strconv.AppendUint(b, 1000+(h>>8)%49000, 10)
}

func (v *kbVals) appendCVEURL(b []byte, i int) []byte {
	b = append(b, "http://cve.mitre.org/cgi-bin/cvename.cgi?name="...)
	return v.appendCVE(b, i)
}

func (v *kbVals) nBugtraq() int {
	if v.kind == kbInfo || v.x>>40%100 >= 15 {
		return 0
	}
	return 1 + int(v.x>>48%2)
}

func (v *kbVals) appendBugtraqID(b []byte, i int) []byte {
	return strconv.AppendUint(b, 1000+mix(v.x^uint64(i+7)*golden)%110000, 10)
}

func (v *kbVals) appendBugtraqURL(b []byte, i int) []byte {
	return v.appendBugtraqID(append(b, "http://www.securityfocus.com/bid/"...), i)
}

// nSoftware is the SOFTWARE count: none for some, the product and more
// of the vendor's for others.
func (v *kbVals) nSoftware() int {
	if v.kind == kbInfo {
		return int(v.x >> 20 % 2)
	}
	return int(v.x >> 22 % 4)
}

func (v *kbVals) software(i int) (product, vendor string) {
	if v.kind == kbInfo {
		return "None", "multi-vendor"
	}
	p := v.product()
	if i == 0 {
		return p.product, p.vendor
	}
	return "None", p.vendor
}

func (v *kbVals) nVendorRefs() int {
	if v.kind == kbInfo || v.x>>24%2 == 0 {
		return 0
	}
	return 1 + int(v.x>>26%2)
}

// appendRefID appends vendor reference i's ID in the vendor's style.
func (v *kbVals) appendRefID(b []byte, i int) []byte {
	p := v.product()
	h := mix(v.x ^ uint64(i+101)*golden)
	y := int64(v.year())
	switch p.ref {
	case "KB":
		return strconv.AppendUint(append(b, "KB"...), 4000000+h%1000000, 10)
	case "cisco-sa-":
		b = append(b, "cisco-sa-"...)
		b = append(b, p.product...)
		b = append(b, '-')
		return strconv.AppendUint(b, h%(1<<40), 36)
	case "RHSA-":
		b = strconv.AppendInt(append(b, "RHSA-"...), y, 10)
		return strconv.AppendUint(append(b, ':'), 1000+h%9000, 10)
	case "USN-":
		b = strconv.AppendUint(append(b, "USN-"...), 4000+h%3000, 10)
		return append(b, "-1"...)
	case "VMSA-":
		b = strconv.AppendInt(append(b, "VMSA-"...), y, 10)
		return strconv.AppendUint(append(b, "-00"...), 10+h%90, 10)
	case "MFSA":
		b = strconv.AppendInt(append(b, "MFSA "...), y, 10)
		return strconv.AppendUint(append(b, '-'), 10+h%50, 10)
	}
	return append(b, p.ref...)
}

func (v *kbVals) appendRefURL(b []byte, i int) []byte {
	p := v.product()
	b = append(b, p.url...)
	switch p.ref {
	case "KB", "cisco-sa-", "RHSA-", "USN-", "VMSA-":
		return v.appendRefID(b, i)
	}
	return b
}

func (v *kbVals) issue() int { return int(v.x >> 30 % uint64(len(kbIssues))) }
func (v *kbVals) ig() int    { return int(v.x >> 30 % kbIGCount) }

// appendTitle appends TITLE: the product and the flaw, with the first CVE
// or vendor reference in brackets, as Qualys titles read.
func (v *kbVals) appendTitle(b []byte) []byte {
	if v.kind == kbInfo {
		return append(b, kbIGs[v.ig()].title...)
	}
	b = append(b, v.product().name...)
	b = append(b, ' ')
	b = append(b, kbIssues[v.issue()].title...)
	switch {
	case v.nCVE > 0:
		b = v.appendCVE(append(b, " ("...), 0)
		b = append(b, ')')
	case v.nVendorRefs() > 0:
		b = v.appendRefID(append(b, " ("...), 0)
		b = append(b, ')')
	}
	return b
}

func (v *kbVals) category() string {
	if v.kind == kbInfo {
		return "Information gathering"
	}
	return v.product().category
}

func (v *kbVals) appendVersion(b []byte) []byte {
	b = strconv.AppendUint(b, 1+v.x>>34%9, 10)
	b = strconv.AppendUint(append(b, '.'), v.x>>38%20, 10)
	return strconv.AppendUint(append(b, '.'), v.x>>42%60, 10)
}

func (v *kbVals) appendDiagnosis(b []byte) []byte {
	if v.kind == kbInfo {
		return append(b, kbIGs[v.ig()].diag...)
	}
	p, is := v.product(), &kbIssues[v.issue()]
	b = append(b, p.name...)
	b = append(b, " is widely deployed software.<P>\n\nOn affected versions of "...)
	b = append(b, p.name...)
	b = append(b, ", "...)
	b = append(b, is.how...)
	b = append(b, ".<P>\n\nAffected Versions:<BR>\n"...)
	b = append(b, p.name...)
	b = append(b, ' ')
	b = v.appendVersion(b)
	b = append(b, " and earlier<P>\n\nQID Detection Logic (Authenticated):<BR>\nThe check matches the version of &quot;"...)
	b = append(b, p.product...)
	b = append(b, "&quot; reported on the host.<P>"...)
	return b
}

func (v *kbVals) appendConsequence(b []byte) []byte {
	if v.kind == kbInfo {
		return append(b, "Not  applicable."...)
	}
	return append(b, kbIssues[v.issue()].impact...)
}

func (v *kbVals) appendSolution(b []byte) []byte {
	if v.kind == kbInfo {
		return append(b, "Not  applicable."...)
	}
	p := v.product()
	if !v.patchable {
		b = append(b, "There are no vendor-supplied patches available at this time. Restrict access to "...)
		b = append(b, p.name...)
		b = append(b, " until a fix is released.<P>"...)
	} else {
		b = append(b, "Customers are advised to upgrade to the latest version of "...)
		b = append(b, p.name...)
		b = append(b, ". For more information refer to <A HREF=\""...)
		b = append(b, p.url...)
		b = append(b, "\" TARGET=\"_blank\">"...)
		b = append(b, p.ref...)
		b = append(b, "</A>\n<P>Patch:<BR>\nFollowing are links for downloading patches to fix the vulnerabilities:\n<P> <A HREF=\""...)
		b = append(b, p.url...)
		b = append(b, "\" TARGET=\"_blank\">"...)
		b = append(b, p.name...)
		b = append(b, " Security Advisory</A>"...)
	}
	if v.epoch > 0 {
		b = append(b, "<P>Advisory revision "...)
		b = strconv.AppendInt(b, v.epoch, 10)
		b = append(b, '.')
	}
	return b
}

// nExploits is the count of EXPLT_SRC under CORRELATION (details=All).
func (v *kbVals) nExploits() int {
	if v.kind == kbInfo || v.nCVE == 0 || v.x>>44%4 != 0 {
		return 0
	}
	return 1 + int(v.x>>46%2)
}

func (v *kbVals) exploitSrc(i int) string {
	return kbExploitSrcs[(int(v.x>>50%4)+i)%len(kbExploitSrcs)]
}

func (v *kbVals) appendExploitDesc(b []byte) []byte {
	b = append(b, v.product().name...)
	b = append(b, ' ')
	b = v.appendVersion(b)
	return append(b, " - Exploit"...)
}

func (v *kbVals) appendExploitLink(b []byte, i int) []byte {
	b = append(b, "https://www.exploit-db.com/exploits/"...)
	return strconv.AppendUint(b, 10000+mix(v.x^uint64(i+201)*golden)%40000, 10)
}

// threats is the THREAT_INTEL ids as a bit set: drawn for some QIDs, with
// Exploit_Public arriving in a modification and No_Patch while unpatched.
func (v *kbVals) threats() uint32 {
	if v.kind == kbInfo {
		return 0
	}
	var set uint32
	if v.a>>56%10 < 4 {
		h := mix(v.a ^ 0x7e)
		for range 1 + h%4 {
			h = mix(h)
			set |= 1 << (1 + h%18)
		}
	}
	if v.epoch > 0 && v.e&6 == 0 {
		set |= 1 << 2
	}
	if !v.patchable {
		set |= 1 << 8
	} else {
		set &^= 1 << 8
	}
	return set
}

func (v *kbVals) nPCIReasons() int {
	if !v.pci {
		return 0
	}
	return 1 + int(v.x>>52%2)
}

func (v *kbVals) pciReason(i int) string {
	return kbPCIReasons[(int(v.x>>54%4)+i)%len(kbPCIReasons)]
}

func (v *kbVals) modules() string { return kbModules[v.x>>56%uint64(len(kbModules))] }

func (v *kbVals) remote() bool { return v.kind == kbInfo || v.a>>60&1 == 0 }

func (v *kbVals) authTypes() []string {
	if v.kind == kbInfo {
		if v.x>>58%2 == 0 {
			return []string{"Unix", "Windows"}
		}
		return nil
	}
	if v.a>>61&1 == 0 && v.remote() {
		return nil
	}
	return v.product().auth
}

func (v *kbVals) additionalInfo(threats uint32) string {
	patch, exploit := v.patchable, threats&(1<<2) != 0
	switch {
	case patch && exploit:
		return "Patch Available, Exploit Available"
	case patch:
		return "Patch Available"
	case exploit:
		return "Exploit Available"
	}
	return ""
}

// changeLog is the range of modification epochs CHANGE_LOG_LIST lists:
// the last three.
func (v *kbVals) changeLog() (from, to int64) { return max(1, v.epoch-2), v.epoch }

func (v *kbVals) changeDate(e int64) int64 { return v.m0 + (e-1)*v.period }

func (v *kbVals) changeComment(e int64) string {
	return kbChanges[mix(v.x^uint64(e)*golden)%uint64(len(kbChanges))]
}
