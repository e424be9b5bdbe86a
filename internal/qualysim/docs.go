package qualysim

import (
	"encoding/xml"
	"strconv"
	"strings"
)

// Small documents: errors, refusals, ABOUT. They are built whole (a few
// hundred bytes) and shaped like the recorded ones in
// ../shared/qualys-samples.

const (
	xmlDecl    = "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n"
	evalNote   = "<!-- This report was generated with an evaluation version of Qualys //--> \n"
	confidNote = "<!-- CONFIDENTIAL AND PROPRIETARY INFORMATION. Qualys provides the QualysGuard Service \"As Is,\" without any warranty of any kind. Qualys makes no warranty that the information contained in this report is complete or error-free. Copyright 2026, Qualys, Inc. //--> \n"
)

func escapeText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// appendDoctype starts a document: the XML declaration when decl, then a
// DOCTYPE for root whose DTD is at the concatenation of dtdURL.
func appendDoctype(b []byte, decl bool, root string, dtdURL ...string) []byte {
	if decl {
		b = append(b, xmlDecl...)
	}
	b = append(b, "<!DOCTYPE "...)
	b = append(b, root...)
	b = append(b, " SYSTEM \""...)
	for _, part := range dtdURL {
		b = append(b, part...)
	}
	return append(b, "\">\n"...)
}

// item is one ITEM of a SIMPLE_RETURN's ITEM_LIST.
type item struct{ key, value string }

// simpleReturn is the v2 error document. decl=false leaves out the XML
// declaration, as the recorded 400/1905 answer does.
func simpleReturn(base string, now int64, code int, text string, items []item, decl bool) []byte {
	b := appendDoctype(make([]byte, 0, 512), decl, "SIMPLE_RETURN", base, "/api/2.0/simple_return.dtd")
	b = append(b, "<SIMPLE_RETURN>\n  <RESPONSE>\n    <DATETIME>"...)
	b = appendTime(b, now)
	b = append(b, "</DATETIME>\n    <CODE>"...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, "</CODE>\n    <TEXT>"...)
	b = append(b, escapeText(text)...)
	b = append(b, "</TEXT>\n"...)
	if len(items) > 0 {
		b = append(b, "    <ITEM_LIST>\n"...)
		for _, it := range items {
			b = append(b, "      <ITEM>\n        <KEY>"...)
			b = append(b, escapeText(it.key)...)
			b = append(b, "</KEY>\n        <VALUE>"...)
			b = append(b, escapeText(it.value)...)
			b = append(b, "</VALUE>\n      </ITEM>\n"...)
		}
		b = append(b, "    </ITEM_LIST>\n"...)
	}
	b = append(b, "  </RESPONSE>\n</SIMPLE_RETURN>\n"...)
	return b
}

// genericReturn is the legacy error shape Qualys uses for internal errors
// (999), in its well-formed variant, with the incident signature comment.
func genericReturn(base, user string, now int64, code int, text string, signature uint64) []byte {
	b := appendDoctype(make([]byte, 0, 512), true, "GENERIC_RETURN", base, "/generic_return.dtd")
	b = append(b, "<GENERIC_RETURN>\n <API name=\"index.php\" username=\""...)
	b = append(b, escapeText(user)...)
	b = append(b, "\" at=\""...)
	b = appendTime(b, now)
	b = append(b, "\"/>\n <RETURN status=\"FAILED\" number=\""...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, "\">"...)
	b = append(b, escapeText(text)...)
	b = append(b, "</RETURN>\n</GENERIC_RETURN>\n<!-- Incident signature: "...)
	b = strconv.AppendUint(b, signature, 16)
	b = append(b, " //-->\n"...)
	return b
}

// aboutDoc answers /msp/about.php, the credential check of several clients.
func aboutDoc(base string) []byte {
	return append(appendDoctype(nil, true, "ABOUT", base, "/about.dtd"), "<ABOUT>\n"+
		"  <API-VERSION MAJOR=\"2\" MINOR=\"0\"/>\n"+
		"  <WEB-VERSION>10.38.2.0-1 (qualysim)</WEB-VERSION>\n"+
		"  <SCANNER-VERSION>13.2.27-1</SCANNER-VERSION>\n"+
		"  <VULNSIGS-VERSION>2.6.300-2</VULNSIGS-VERSION>\n"+
		"</ABOUT>\n"...)
}

const html500 = `<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">
<html><head>
<title>500 Internal Server Error</title>
</head><body>
<h1>Internal Server Error</h1>
<p>The server encountered an internal error or
misconfiguration and was unable to complete
your request.</p>
</body></html>
`

const html503 = `<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">
<html><head>
<title>503 Service Unavailable</title>
</head><body>
<h1>Service Unavailable</h1>
<p>The server is temporarily unable to service your
request due to maintenance downtime or capacity
problems. Please try again later.</p>
</body></html>
`
