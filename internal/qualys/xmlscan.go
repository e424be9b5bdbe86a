package qualys

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// xmlScanner is a resumable XML 1.0 well-formedness checker over a stream of
// byte chunks. It never copies character data except the few fields the
// validator captures, and its memory is bounded by the limits below, so a
// body of any size costs the same. It checks structure (one root, balanced
// tags, complete markup, entity references); it does not check that every
// byte is a legal XML character or valid UTF-8: bodies are stored as sent,
// and a stray byte in a RESULTS banner is no sign of a cut or an error page.
//
// Where it differs from encoding/xml it is stricter: one root element with
// only whitespace, comments and PIs around it, one DOCTYPE and no other
// <!declarations>, ASCII names. FuzzValidator holds the full list.
type xmlScanner struct {
	state      uint8
	entRet     uint8 // state to resume after an entity reference
	litNext    uint8 // state after the literal being matched
	litKind    scanKind
	run        uint8 // trailing ']' (text, CDATA), '-' (comments) or '?' (PIs) seen so far
	quote      byte  // the quote of the attribute value or DOCTYPE literal being read
	sawSpace   bool  // whitespace since the element name or the last attribute value
	sawDoctype bool
	rootSeen   bool
	rootDone   bool
	halted     bool // the validator has decided; scan does nothing more

	lit       string
	litIdx    int
	nameStart int // start in names of the name being read
	nameLen   int // attribute name: bytes so far
	colons    int
	cmp       int // end tag: bytes matched against the open element's name
	dtDepth   int
	entLen    int
	ltOff     int64 // stream offset of the last '<' outside content text
	bomLen    int64
	off       int64 // stream offset of the chunk being scanned

	names []byte  // names of the open elements, one after the other
	ends  []int32 // end offset in names of each open element's name
	ctxs  []uint8 // what each open element is to the validator (valCtx*)

	ent [valMaxEntity]byte
	err *scanError

	val valState // what the validator extracts on the way
}

// Structural limits. Qualys documents are 8 levels deep with names under 40
// bytes; the limits only stop a hostile or broken body from costing memory.
const (
	valMaxDepth  = 256
	valMaxName   = 256 // element, attribute and processing-instruction names
	valMaxEntity = 32  // bytes between '&' and ';'
)

// Scanner states.
const (
	scanStText           uint8 = iota // character data: prolog, content or epilog
	scanStLT                          // after '<'
	scanStBang                        // after "<!"
	scanStLiteral                     // matching lit, then litNext
	scanStComment                     // inside "<!--"
	scanStCommentEnd                  // after "--" in a comment: only '>' may follow
	scanStCDATA                       // inside "<![CDATA["
	scanStPITarget                    // after "<?"
	scanStPIBody                      // until "?>"
	scanStDoctypeSpace                // after "<!DOCTYPE"
	scanStDoctype                     // inside a DOCTYPE
	scanStDoctypeLT                   // after '<' inside a DOCTYPE
	scanStDoctypeComment              // inside a comment inside a DOCTYPE
	scanStStartName                   // reading an element name
	scanStTag                         // inside a start tag, after a name or attribute value
	scanStEmpty                       // after '/' in a start tag
	scanStAttrName                    // reading an attribute name
	scanStAttrEq                      // after an attribute name
	scanStAttrQuote                   // after '='
	scanStAttrValue                   // inside a quoted attribute value
	scanStEndName                     // reading an end tag's name
	scanStEndTail                     // after an end tag's name
	scanStEntity                      // after '&'
)

// scanKind sorts faults. The fuzz test uses it to tell faults encoding/xml
// also reports from the ones where this scanner is deliberately stricter.
type scanKind uint8

const (
	scanKindCutShort scanKind = iota + 1 // the body ended inside the document
	scanKindSyntax                       // not XML
	scanKindMismatch                     // an end tag that does not close the open element
	scanKindEntity                       // a bad entity or character reference
	scanKindNoRoot                       // the body ended before any element
	scanKindOutside                      // content, a second root or a DOCTYPE outside its place
	scanKindStrict                       // forbidden by XML 1.0 but passed by encoding/xml
	scanKindLimit                        // a structural limit
	scanKindContent                      // a host ID or WARNING field that Qualys would not send
)

type scanError struct {
	kind   scanKind
	offset int64
	msg    string
}

var (
	scanNameStart  [256]bool // first byte of a name (ASCII only)
	scanNameByte   [256]bool // other bytes of a name
	scanTextStop   [256]bool // bytes that end a run of plain content text
	scanAttrStop   [256]bool // bytes that end a run of plain attribute value
	scanSpace      [256]bool // XML whitespace
	scanEntityByte [256]bool // bytes allowed between '&' and ';'
)

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		letter := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
		digit := '0' <= b && b <= '9'
		scanNameStart[c] = letter || b == '_' || b == ':'
		scanNameByte[c] = scanNameStart[c] || digit || b == '.' || b == '-'
		scanEntityByte[c] = letter || digit || b == '#'
	}
	for _, b := range []byte("<&]>") {
		scanTextStop[b] = true
	}
	for _, b := range []byte("<&\"'") {
		scanAttrStop[b] = true
	}
	for _, b := range []byte(" \t\n\r") {
		scanSpace[b] = true
	}
}

var (
	scanDashDash = []byte("--")
	scanCDATAEnd = []byte("]]>")
	scanPIEnd    = []byte("?>")
)

func (s *xmlScanner) fail(kind scanKind, i int, format string, args ...any) {
	s.err = &scanError{kind: kind, offset: s.off + int64(i), msg: fmt.Sprintf(format, args...)}
}

// scan checks the next chunk of the body. It stops at the first fault
// (s.err) or when the validator halts it.
func (s *xmlScanner) scan(b []byte) {
	i := 0
	for i < len(b) && s.err == nil && !s.halted {
		switch s.state {
		case scanStText:
			if len(s.ends) == 0 {
				i = s.outside(b, i)
				continue
			}
			// The hot loop: content text between tags.
			j := i
			for j < len(b) && !scanTextStop[b[j]] {
				j++
			}
			if j > i {
				s.run = 0
				if s.val.capt != 0 && !s.capture(b[i:j], i) {
					return
				}
			}
			i = j
			if i == len(b) {
				continue
			}
			switch b[i] {
			case '<':
				if k := s.fastTag(b, i); k > i {
					i = k
					continue
				}
				s.state = scanStLT
			case '&':
				s.state, s.entRet, s.entLen = scanStEntity, scanStText, 0
			case ']':
				if s.run < 2 {
					s.run++
				}
				if s.val.capt != 0 && !s.capture(b[i:i+1], i) {
					return
				}
			case '>':
				if s.run >= 2 {
					s.fail(scanKindSyntax, i, `"]]>" in character data`)
					return
				}
				s.run = 0
				if s.val.capt != 0 && !s.capture(b[i:i+1], i) {
					return
				}
			}
			i++

		case scanStLT:
			i = s.afterLT(b, i)

		case scanStBang:
			i = s.afterBang(b, i)

		case scanStLiteral:
			for ; i < len(b) && s.litIdx < len(s.lit); i++ {
				if b[i] != s.lit[s.litIdx] {
					s.fail(s.litKind, i, "unexpected byte %q in markup", b[i])
					return
				}
				s.litIdx++
			}
			if s.litIdx == len(s.lit) {
				s.state, s.run = s.litNext, 0
			}

		case scanStComment:
			if s.run == 1 {
				s.run = 0
				if b[i] == '-' {
					s.state = scanStCommentEnd
					i++
					continue
				}
			}
			k := bytes.Index(b[i:], scanDashDash)
			if k < 0 {
				if b[len(b)-1] == '-' {
					s.run = 1
				}
				i = len(b)
				continue
			}
			i += k + 2
			s.state = scanStCommentEnd

		case scanStCommentEnd:
			if b[i] != '>' {
				s.fail(scanKindSyntax, i, `"--" inside a comment`)
				return
			}
			s.state, s.run = scanStText, 0
			i++

		case scanStCDATA:
			i = s.cdata(b, i)

		case scanStPITarget:
			i = s.piTarget(b, i)

		case scanStPIBody:
			if s.run == 1 {
				s.run = 0
				if b[i] == '>' {
					s.state = scanStText
					i++
					continue
				}
			}
			k := bytes.Index(b[i:], scanPIEnd)
			if k < 0 {
				if b[len(b)-1] == '?' {
					s.run = 1
				}
				i = len(b)
				continue
			}
			i += k + 2
			s.state, s.run = scanStText, 0

		case scanStDoctypeSpace:
			if !scanSpace[b[i]] {
				s.fail(scanKindStrict, i, "expected whitespace after <!DOCTYPE")
				return
			}
			s.state, s.quote, s.dtDepth = scanStDoctype, 0, 0
			i++

		case scanStDoctype, scanStDoctypeLT, scanStDoctypeComment:
			i = s.doctype(b, i)

		case scanStStartName:
			j := i
			for j < len(b) && scanNameByte[b[j]] {
				j++
			}
			if have := len(s.names) - s.nameStart; have+j-i > valMaxName {
				s.fail(scanKindLimit, i+valMaxName-have, "element name longer than %d bytes", valMaxName)
				return
			}
			s.names = append(s.names, b[i:j]...)
			i = j
			if i == len(b) {
				continue
			}
			var next uint8
			switch c := b[i]; {
			case scanSpace[c]:
				next, s.sawSpace = scanStTag, true
			case c == '>':
				next = scanStText
			case c == '/':
				next = scanStEmpty
			default:
				s.badNameByte(i, c, "element name")
				return
			}
			if !s.push(i) {
				return
			}
			s.state, s.run = next, 0
			i++

		case scanStTag:
			for i < len(b) && scanSpace[b[i]] {
				s.sawSpace = true
				i++
			}
			if i == len(b) {
				continue
			}
			switch c := b[i]; {
			case c == '>':
				s.state, s.run = scanStText, 0
				i++
			case c == '/':
				s.state = scanStEmpty
				i++
			case scanNameStart[c]:
				if !s.sawSpace {
					s.fail(scanKindStrict, i, "no whitespace before attribute")
					return
				}
				s.state, s.nameLen, s.colons = scanStAttrName, 0, 0
			default:
				s.badNameByte(i, c, "attribute name")
				return
			}

		case scanStEmpty:
			if b[i] != '>' {
				s.fail(scanKindSyntax, i, "expected > after / in a start tag")
				return
			}
			if !s.pop(i) {
				return
			}
			s.state, s.run = scanStText, 0
			i++

		case scanStAttrName:
			j := i
			for j < len(b) && scanNameByte[b[j]] {
				if b[j] == ':' {
					s.colons++
				}
				j++
			}
			if s.nameLen+j-i > valMaxName {
				s.fail(scanKindLimit, i+valMaxName-s.nameLen, "attribute name longer than %d bytes", valMaxName)
				return
			}
			s.nameLen += j - i
			i = j
			if i == len(b) {
				continue
			}
			if s.colons > 1 {
				s.fail(scanKindSyntax, i, "attribute name with more than one colon")
				return
			}
			switch c := b[i]; {
			case c == '=':
				s.state = scanStAttrQuote
			case scanSpace[c]:
				s.state = scanStAttrEq
			default:
				s.badNameByte(i, c, "attribute name")
				return
			}
			i++

		case scanStAttrEq:
			for i < len(b) && scanSpace[b[i]] {
				i++
			}
			if i == len(b) {
				continue
			}
			if b[i] != '=' {
				s.fail(scanKindSyntax, i, "attribute without =")
				return
			}
			s.state = scanStAttrQuote
			i++

		case scanStAttrQuote:
			for i < len(b) && scanSpace[b[i]] {
				i++
			}
			if i == len(b) {
				continue
			}
			if c := b[i]; c == '"' || c == '\'' {
				s.state, s.quote = scanStAttrValue, c
				i++
				continue
			}
			s.fail(scanKindSyntax, i, "unquoted attribute value")
			return

		case scanStAttrValue:
			for i < len(b) {
				for i < len(b) && !scanAttrStop[b[i]] {
					i++
				}
				if i == len(b) {
					break
				}
				c := b[i]
				if c == '<' {
					s.fail(scanKindSyntax, i, "< in an attribute value")
					return
				}
				i++
				if c == '&' {
					s.state, s.entRet, s.entLen = scanStEntity, scanStAttrValue, 0
					break
				}
				if c == s.quote {
					s.state, s.sawSpace = scanStTag, false
					break
				}
			}

		case scanStEndName:
			top := s.names[s.topStart():]
			j := i
			for j < len(b) && scanNameByte[b[j]] {
				j++
			}
			if s.cmp+j-i > len(top) || !bytes.Equal(b[i:j], top[s.cmp:s.cmp+j-i]) {
				k := 0 // report the first byte that differs, wherever the chunk starts
				for s.cmp+k < len(top) && b[i+k] == top[s.cmp+k] {
					k++
				}
				s.fail(scanKindMismatch, i+k, "end tag does not match <%s>", top)
				return
			}
			s.cmp += j - i
			i = j
			if i == len(b) {
				continue
			}
			if s.cmp != len(top) {
				s.fail(scanKindMismatch, i, "end tag does not match <%s>", top)
				return
			}
			switch c := b[i]; {
			case c == '>':
				if !s.pop(i) {
					return
				}
				s.state, s.run = scanStText, 0
			case scanSpace[c]:
				s.state = scanStEndTail
			default:
				s.fail(scanKindSyntax, i, "unexpected byte %q in the end tag of <%s>", c, top)
				return
			}
			i++

		case scanStEndTail:
			for i < len(b) && scanSpace[b[i]] {
				i++
			}
			if i == len(b) {
				continue
			}
			if b[i] != '>' {
				s.fail(scanKindSyntax, i, "unexpected byte %q in an end tag", b[i])
				return
			}
			if !s.pop(i) {
				return
			}
			s.state, s.run = scanStText, 0
			i++

		case scanStEntity:
			i = s.entity(b, i)
		}
	}
	s.off += int64(len(b))
}

// fastTag reads a plain <NAME> or </NAME> that lies whole in b at i, the
// common case, without a trip through the state machine per part. It
// returns i when the tag is anything else, for the general path to read.
func (s *xmlScanner) fastTag(b []byte, i int) int {
	if i+1 >= len(b) {
		return i
	}
	if b[i+1] == '/' {
		top := s.names[s.topStart():]
		end := i + 2 + len(top)
		if end >= len(b) || b[end] != '>' || !bytes.Equal(b[i+2:end], top) {
			return i
		}
		if s.pop(end) {
			s.run = 0
		}
		return end + 1
	}
	if !scanNameStart[b[i+1]] || len(s.ends) >= valMaxDepth {
		return i
	}
	j := i + 2
	for j < len(b) && scanNameByte[b[j]] {
		j++
	}
	if j == len(b) || b[j] != '>' || j-i-1 > valMaxName {
		return i
	}
	s.nameStart = len(s.names)
	s.names = append(s.names, b[i+1:j]...)
	if s.push(j) {
		s.run = 0
	}
	return j + 1
}

// outside reads between markup before and after the root element, where
// only whitespace may appear (and a byte-order mark at the very start).
func (s *xmlScanner) outside(b []byte, i int) int {
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case ' ', '\t', '\n', '\r':
		case '<':
			s.ltOff = s.off + int64(i)
			s.state = scanStLT
			return i + 1
		default:
			if c == 0xEF && s.off+int64(i) == 0 {
				s.bomLen = 3
				s.setLit("\xBB\xBF", scanStText, scanKindOutside)
				return i + 1
			}
			where := "before"
			if s.rootSeen {
				where = "after"
			}
			s.fail(scanKindOutside, i, "content %s the root element", where)
			return i
		}
	}
	return i
}

func (s *xmlScanner) setLit(lit string, next uint8, kind scanKind) {
	s.state, s.lit, s.litIdx, s.litNext, s.litKind = scanStLiteral, lit, 0, next, kind
}

func (s *xmlScanner) afterLT(b []byte, i int) int {
	c := b[i]
	switch {
	case scanNameStart[c]:
		if len(s.ends) == 0 && s.rootSeen {
			s.fail(scanKindOutside, i-1, "second root element")
			return i
		}
		if len(s.ends) >= valMaxDepth {
			s.fail(scanKindLimit, i-1, "elements nested deeper than %d", valMaxDepth)
			return i
		}
		s.state, s.nameStart = scanStStartName, len(s.names)
		return i // the name loop reads c
	case c == '/':
		if len(s.ends) == 0 {
			s.fail(scanKindMismatch, i-1, "end tag outside the root element")
			return i
		}
		s.state, s.cmp = scanStEndName, 0
	case c == '?':
		s.state, s.nameStart = scanStPITarget, len(s.names)
	case c == '!':
		s.state = scanStBang
	default:
		s.badNameByte(i, c, "element name")
		return i
	}
	return i + 1
}

func (s *xmlScanner) afterBang(b []byte, i int) int {
	switch b[i] {
	case '-':
		s.setLit("-", scanStComment, scanKindSyntax)
	case '[':
		if len(s.ends) == 0 {
			s.fail(scanKindOutside, i-2, "CDATA section outside the root element")
			return i
		}
		s.setLit("CDATA[", scanStCDATA, scanKindSyntax)
	case 'D':
		if s.rootSeen || s.sawDoctype {
			s.fail(scanKindOutside, i-2, "DOCTYPE after the root element or a second DOCTYPE")
			return i
		}
		s.sawDoctype = true
		s.setLit("OCTYPE", scanStDoctypeSpace, scanKindStrict)
	default:
		s.fail(scanKindStrict, i-2, "unsupported markup declaration <!%c", b[i])
		return i
	}
	return i + 1
}

// badNameByte reports a byte that may not follow or start a name. Non-ASCII
// names are valid XML but never Qualys', so they are refused as stricter.
func (s *xmlScanner) badNameByte(i int, c byte, what string) {
	if c >= utf8.RuneSelf {
		s.fail(scanKindStrict, i, "non-ASCII byte in an %s", what)
		return
	}
	s.fail(scanKindSyntax, i, "unexpected byte %q in an %s", c, what)
}

// cdata reads a CDATA section; "]]>" may be split across chunks.
func (s *xmlScanner) cdata(b []byte, i int) int {
	for s.run > 0 && i < len(b) {
		c := b[i]
		i++
		switch {
		case c == '>' && s.run == 2:
			s.state, s.run = scanStText, 0
			return i
		case c == ']':
			if s.run == 2 {
				if !s.capture(scanCDATAEnd[:1], i-3) { // the oldest pending ']'
					return i
				}
			} else {
				s.run++
			}
		default:
			if !s.capture(scanCDATAEnd[:s.run], i-1-int(s.run)) || !s.capture(b[i-1:i], i-1) {
				return i
			}
			s.run = 0
		}
	}
	if i == len(b) {
		return i
	}
	if k := bytes.Index(b[i:], scanCDATAEnd); k >= 0 {
		if !s.capture(b[i:i+k], i) {
			return i
		}
		s.state, s.run = scanStText, 0
		return i + k + 3
	}
	end := len(b)
	for end > i && s.run < 2 && b[end-1] == ']' {
		end--
		s.run++
	}
	s.capture(b[i:end], i)
	return len(b)
}

func (s *xmlScanner) piTarget(b []byte, i int) int {
	if len(s.names) == s.nameStart && !scanNameStart[b[i]] {
		s.badNameByte(i, b[i], "processing instruction target")
		return i
	}
	j := i
	for j < len(b) && scanNameByte[b[j]] {
		j++
	}
	if have := len(s.names) - s.nameStart; have+j-i > valMaxName {
		s.fail(scanKindLimit, i+valMaxName-have, "processing instruction target longer than %d bytes", valMaxName)
		return i
	}
	s.names = append(s.names, b[i:j]...)
	if j == len(b) {
		return j
	}
	target := s.names[s.nameStart:]
	c := b[j]
	switch {
	case !scanSpace[c] && c != '?':
		s.fail(scanKindStrict, j, "no whitespace after the processing instruction target")
		return j
	case string(target) == "xml":
		if s.rootSeen || s.ltOff != s.bomLen {
			s.fail(scanKindStrict, j, "XML declaration not at the start of the body")
			return j
		}
	case len(target) == 3 && bytes.EqualFold(target, []byte("xml")):
		s.fail(scanKindStrict, j, "reserved processing instruction target %s", target)
		return j
	}
	s.names = s.names[:s.nameStart]
	s.state, s.run = scanStPIBody, 0
	if c == '?' {
		s.run = 1
	}
	return j + 1
}

// doctype skips a DOCTYPE the way encoding/xml skips directives: quoted
// strings, nested <…> and comments, up to the '>' that closes it. The DTD is
// never fetched or interpreted.
func (s *xmlScanner) doctype(b []byte, i int) int {
	for ; i < len(b); i++ {
		c := b[i]
		switch s.state {
		case scanStDoctypeLT: // matching "!--" after '<'
			if c == "!--"[s.litIdx] {
				s.litIdx++
				if s.litIdx == 3 {
					s.state, s.run = scanStDoctypeComment, 0
				}
				continue
			}
			s.dtDepth++
			s.state = scanStDoctype
			// c is read again as DOCTYPE content below
		case scanStDoctypeComment:
			switch {
			case c == '>' && s.run >= 2:
				s.state = scanStDoctype
			case c == '-':
				if s.run < 2 {
					s.run++
				}
			default:
				s.run = 0
			}
			continue
		}
		if s.quote != 0 {
			if c == s.quote {
				s.quote = 0
			}
			continue
		}
		switch c {
		case '"', '\'':
			s.quote = c
		case '<':
			s.state, s.litIdx = scanStDoctypeLT, 0
		case '>':
			if s.dtDepth == 0 {
				s.state = scanStText
				return i + 1
			}
			s.dtDepth--
		}
	}
	return i
}

// entity reads a reference up to ';' and checks it: one of the five
// predefined names or a character reference to a legal XML character.
func (s *xmlScanner) entity(b []byte, i int) int {
	for ; i < len(b); i++ {
		c := b[i]
		if c == ';' {
			r, ok := s.entityValue(i)
			if !ok {
				return i
			}
			if s.entRet == scanStText && s.val.capt != 0 {
				var enc [utf8.UTFMax]byte
				if !s.capture(enc[:utf8.EncodeRune(enc[:], r)], i) {
					return i
				}
			}
			s.state, s.run = s.entRet, 0
			return i + 1
		}
		if !scanEntityByte[c] {
			s.fail(scanKindEntity, i, "unexpected byte %q in an entity reference", c)
			return i
		}
		if s.entLen == len(s.ent) {
			s.fail(scanKindLimit, i, "entity reference longer than %d bytes", valMaxEntity)
			return i
		}
		s.ent[s.entLen] = c
		s.entLen++
	}
	return i
}

func (s *xmlScanner) entityValue(i int) (rune, bool) {
	e := s.ent[:s.entLen]
	if len(e) == 0 || e[0] != '#' {
		switch string(e) {
		case "lt":
			return '<', true
		case "gt":
			return '>', true
		case "amp":
			return '&', true
		case "apos":
			return '\'', true
		case "quot":
			return '"', true
		}
		s.fail(scanKindEntity, i, "unknown entity &%s;", e)
		return 0, false
	}
	digits, base := e[1:], uint32(10)
	if len(digits) > 0 && digits[0] == 'x' {
		digits, base = digits[1:], 16
	}
	if len(digits) == 0 {
		s.fail(scanKindEntity, i, "empty character reference &%s;", e)
		return 0, false
	}
	var v uint32
	for _, c := range digits {
		var d uint32
		switch {
		case '0' <= c && c <= '9':
			d = uint32(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = uint32(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = uint32(c-'A') + 10
		default:
			s.fail(scanKindEntity, i, "bad character reference &%s;", e)
			return 0, false
		}
		if v = v*base + d; v > utf8.MaxRune {
			s.fail(scanKindEntity, i, "character reference &%s; out of range", e)
			return 0, false
		}
	}
	switch r := rune(v); {
	case r == 0x9, r == 0xA, r == 0xD, 0x20 <= r && r <= 0xD7FF, 0xE000 <= r && r <= 0xFFFD, r >= 0x10000:
		return r, true
	case 0xD800 <= r && r <= 0xDFFF:
		// encoding/xml turns these into U+FFFD; XML 1.0 forbids them.
		s.fail(scanKindStrict, i, "character reference &%s; to a surrogate", e)
	default:
		s.fail(scanKindEntity, i, "character reference &%s; to an illegal character", e)
	}
	return 0, false
}

func (s *xmlScanner) topStart() int {
	if n := len(s.ends); n >= 2 {
		return int(s.ends[n-2])
	}
	return 0
}

// push opens the element whose name was just read; i is the byte after it.
func (s *xmlScanner) push(i int) bool {
	name := s.names[s.nameStart:]
	if k := bytes.IndexByte(name, ':'); k >= 0 && bytes.IndexByte(name[k+1:], ':') >= 0 {
		s.fail(scanKindSyntax, i, "element name with more than one colon")
		return false
	}
	var ctx uint8
	if len(s.ends) == 0 {
		s.rootSeen = true
		ctx = s.startRoot(name)
		if s.halted {
			return false
		}
	} else {
		if string(name) == "SIMPLE_RETURN" || string(name) == "GENERIC_RETURN" {
			// An error document inside the answer (I2): whatever came
			// before it, the answer is not whole.
			s.fail(scanKindSyntax, i, "error document %s inside %s", name, s.val.sum.Root)
			return false
		}
		if parent := s.ctxs[len(s.ctxs)-1]; parent != valCtxNone {
			ctx = s.childCtx(parent, name)
		}
	}
	s.ends = append(s.ends, int32(len(s.names)))
	s.ctxs = append(s.ctxs, ctx)
	s.setCapture(ctx)
	return true
}

// pop closes the innermost element; i is the offset of its closing '>'.
func (s *xmlScanner) pop(i int) bool {
	n := len(s.ends) - 1
	ctx := s.ctxs[n]
	s.names = s.names[:s.topStart()]
	s.ends, s.ctxs = s.ends[:n], s.ctxs[:n]
	if n == 0 {
		s.rootDone = true
	}
	if ctx >= valCtxFirstCapture && !s.endCapture(ctx, i) {
		return false
	}
	s.val.capt = 0
	if n > 0 && s.ctxs[n-1] >= valCtxFirstCapture {
		s.val.capt = s.ctxs[n-1]
	}
	return true
}

// finish judges the end of the body.
func (s *xmlScanner) finish() {
	if s.err != nil || s.halted {
		return
	}
	i := 0 // offsets are relative to s.off, which is now the body length
	switch {
	case s.state == scanStText && len(s.ends) == 0 && s.rootDone:
		return
	case s.state == scanStText && len(s.ends) == 0 && !s.rootSeen:
		s.fail(scanKindNoRoot, i, "no root element")
		return
	}
	var where string
	switch s.state {
	case scanStText:
		where = "unclosed element"
	case scanStComment, scanStCommentEnd:
		where = "unclosed comment"
	case scanStCDATA:
		where = "unclosed CDATA section"
	case scanStPITarget, scanStPIBody:
		where = "unclosed processing instruction"
	case scanStDoctypeSpace, scanStDoctype, scanStDoctypeLT, scanStDoctypeComment:
		where = "unclosed DOCTYPE"
	case scanStStartName, scanStTag, scanStEmpty, scanStAttrName, scanStAttrEq, scanStAttrQuote, scanStAttrValue:
		where = "unclosed start tag"
	case scanStEndName, scanStEndTail:
		where = "unclosed end tag"
	case scanStEntity:
		where = "unfinished entity reference"
	default:
		where = "unfinished markup"
	}
	if len(s.ends) > 0 {
		s.fail(scanKindCutShort, i, "%s in %s", where, s.path())
		return
	}
	s.fail(scanKindCutShort, i, "%s outside the root element", where)
}

// path names the open elements, innermost last, for error messages.
func (s *xmlScanner) path() string {
	var b []byte
	start := 0
	for _, end := range s.ends {
		b = append(b, '/')
		b = append(b, s.names[start:end]...)
		start = int(end)
	}
	return string(b)
}
