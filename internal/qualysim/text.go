package qualysim

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// Text building blocks for generated XML. The hot path appends
// precomputed bytes and integers to one reusable buffer: no fmt, no
// per-element allocation.

// appendTime appends unix second t as YYYY-MM-DDTHH:MM:SSZ (UTC), the only
// date form Qualys writes. time.Time.AppendFormat is five times slower, and
// every detection carries several dates.
func appendTime(b []byte, t int64) []byte {
	days := floorDiv(t, day)
	secs := t - days*day
	// Civil date from days since 1970-01-01 (H. Hinnant, "chrono-compatible
	// low-level date algorithms").
	z := days + 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if mp >= 10 {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	b = append(b,
		byte('0'+y/1000%10), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-',
		byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+secs/36000), byte('0'+secs/3600%10), ':',
		byte('0'+secs/600%6), byte('0'+secs/60%10), ':',
		byte('0'+secs%60/10), byte('0'+secs%10), 'Z')
	return b
}

// corpus is the pool RESULTS texts are cut from: realistic scanner output
// with tabs, newlines and HTML entities that Qualys leaves escaped inside
// CDATA (&lt; &quot; &apos;). It holds no ']' at all, so no slice of it can
// close a CDATA section early.
type corpus struct {
	text   []byte
	starts []int32 // offsets of line starts usable for a slice of maxLen
	mean   int
}

func newCorpus(seed uint64, mean int) *corpus {
	c := &corpus{mean: mean}
	if mean <= 0 {
		return c
	}
	maxLen := maxResultLen(mean)
	size := max(256<<10, 8*maxLen)
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	var b strings.Builder
	b.Grow(size + 4096)
	var starts []int32
	for b.Len() < size {
		starts = append(starts, int32(b.Len()))
		resultLine(&b, r)
	}
	c.text = []byte(b.String())
	for _, s := range starts {
		if int(s)+maxLen <= len(c.text) {
			c.starts = append(c.starts, s)
		}
	}
	return c
}

// maxResultLen bounds one RESULTS text: lengths are drawn in
// [mean/4, 7·mean/4), which has the requested mean.
func maxResultLen(mean int) int { return mean/4 + 3*mean/2 + 1 }

// slice returns the RESULTS text for hash h.
func (c *corpus) slice(h uint64) []byte {
	if c.mean <= 0 {
		return nil
	}
	n := c.mean/4 + int((h>>32)%uint64(3*c.mean/2+1))
	s := int(c.starts[(h&0xffffffff)%uint64(len(c.starts))])
	return c.text[s : s+n]
}

var (
	pkgNames = []string{"openssl", "openssl-libs", "kernel", "kernel-headers", "glibc", "bash", "curl",
		"libcurl", "sudo", "openssh-server", "python3", "nss", "libxml2", "systemd", "polkit", "expat",
		"linux-image-5.15.0-91-generic", "linux-aws-tools-4.4.0", "tzdata", "zlib"}
	headerNames = []string{"Server", "X-Powered-By", "Content-Type", "Cache-Control", "Set-Cookie",
		"Strict-Transport-Security", "Report-To", "Via"}
	servers = []string{"Apache/2.4.29 (Ubuntu)", "nginx/1.18.0", "Microsoft-IIS/10.0",
		"Apache-Coyote/1.1", "lighttpd/1.4.55", "cloudflare"}
	regKeys = []string{`HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion`,
		`HKLM\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL\Protocols\TLS 1.0\Server`,
		`HKLM\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU`,
		`HKLM\SOFTWARE\Microsoft\.NETFramework\v4.0.30319`}
	files = []string{`%windir%\System32\ntoskrnl.exe`, `%windir%\System32\win32k.sys`,
		`%ProgramFiles%\Java\jre1.8.0_201\bin\java.exe`, `/usr/lib64/libssl.so.1.0.2k`,
		`/opt/app/lib/log4j-core-2.14.1.jar`, `C:\Program Files\Mozilla Firefox\firefox.exe`}
	ciphers = []string{"RC4-MD5", "DES-CBC3-SHA", "AES128-SHA", "ECDHE-RSA-AES256-GCM-SHA384",
		"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "EDH-RSA-DES-CBC3-SHA"}
)

// resultLine writes one or a few lines of scanner-like text.
func resultLine(b *strings.Builder, r *rand.Rand) {
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	ver := func() string {
		return strconv.Itoa(r.IntN(10)) + "." + strconv.Itoa(r.IntN(30)) + "." + strconv.Itoa(r.IntN(200)) +
			"-" + strconv.Itoa(r.IntN(40)) + ".el" + strconv.Itoa(7+r.IntN(3))
	}
	switch r.IntN(9) {
	case 0:
		b.WriteString("Package\tInstalled Version\tRequired Version\n")
		for range 1 + r.IntN(4) {
			b.WriteString(pick(pkgNames) + "\t" + ver() + "\t" + ver() + "\n")
		}
	case 1:
		b.WriteString(pick(headerNames) + ": " + pick(servers) + "\n")
	case 2:
		b.WriteString("NEL: {&quot;report_to&quot;:&quot;https:\\/\\/a.example.net\\/report\\/v3?s=" +
			strconv.FormatUint(r.Uint64(), 36) + "&quot;,&quot;max_age&quot;:604800}\n")
	case 3:
		b.WriteString("&lt;html&gt;&lt;head&gt;&lt;title&gt;Index of /" + pick(pkgNames) +
			"&lt;/title&gt;&lt;/head&gt;&lt;body&gt;&lt;h1&gt;It works!&lt;/h1&gt;&lt;/body&gt;&lt;/html&gt;\n")
	case 4:
		b.WriteString(pick(regKeys) + " CurrentBuild = " + strconv.Itoa(10000+r.IntN(12000)) + "\n")
	case 5:
		b.WriteString(pick(files) + "  Version is  " + strconv.Itoa(r.IntN(20)) + "." + strconv.Itoa(r.IntN(10)) +
			"." + strconv.Itoa(r.IntN(30000)) + "." + strconv.Itoa(r.IntN(9999)) + "#\n")
	case 6:
		b.WriteString("CIPHER\tKEY-EXCHANGE\tAUTHENTICATION\tMAC\tENCRYPTION(KEY-STRENGTH)\tGRADE\n" +
			pick(ciphers) + "\tRSA\tRSA\tSHA1\t3DES(168)\tMEDIUM\n")
	case 7:
		b.WriteString("Certificate #0 CN=host-" + strconv.Itoa(r.IntN(9999)) + ".corp.example doesn&apos;t resolve\n")
	default:
		b.WriteString("GET / HTTP/1.0\nHost: " + strconv.Itoa(10+r.IntN(200)) + "." + strconv.Itoa(r.IntN(255)) +
			".0.1\n\nHTTP/1.1 200 OK\nDate: Tue, 16 May 2023 15:11:34 GMT\nConnection: close\n\n")
	}
}

// Host attribute pools.
var (
	osNames = []string{"Windows 2016/2019/10", "Windows 2008 R2 Enterprise Service Pack1", "Windows 11 Pro",
		"Windows Server 2022 Datacenter", "Red Hat Enterprise Linux 8.9", "Ubuntu Linux 22.04",
		"CentOS Linux 7.9.2009", "Amazon Linux 2", "Debian Linux 12", "Linux 3.13", "macOS 14.2",
		"Cisco IOS 15.2"}
	trackingMethods = []string{"IP", "IP", "IP", "IP", "IP", "DNS", "DNS", "AGENT", "AGENT", "NETBIOS", "EC2", "IP"}
	hostPrefixes    = []string{"ws", "srv", "db", "web", "app", "dc", "lb", "k8s-node", "vm", "lap"}
	netbiosPrefixes = []string{"WS", "SRV", "DB", "WEB", "APP", "DC", "LB", "K8S-NODE", "VM", "LAP"}
	domains         = []string{"corp.example.com", "prod.example.net", "dmz.example.org", "lab.example"}
	commonPorts     = []int{443, 80, 22, 3389, 445, 135, 8080, 8443, 25, 53, 1433, 3306, 5432, 139}
	cvssVectors     = []string{"AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "AV:N/AC:L/PR:L/UI:N/S:C/C:N/I:N/A:H",
		"AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", "AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:N"}
)
