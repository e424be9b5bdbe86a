package xmlscan

import (
	"bytes"
	"unicode/utf8"
)

var (
	dashDash = []byte("--")
	cdataEnd = []byte("]]>")
	piEnd    = []byte("?>")
)

func (s *Scanner) afterLT(b []byte, i int) int {
	c := b[i]
	switch {
	case nameStart[c]:
		if len(s.ends) == 0 && s.rootSeen {
			s.fail(KindOutside, i-1, "second root element")
			return i
		}
		if len(s.ends) >= MaxDepth {
			s.fail(KindLimit, i-1, "elements nested deeper than %d", MaxDepth)
			return i
		}
		s.state, s.nameStart = stStartName, len(s.names)
		return s.startName(b, i)
	case c == '/':
		if len(s.ends) == 0 {
			s.fail(KindMismatch, i-1, "end tag outside the root element")
			return i
		}
		s.state, s.cmp = stEndName, 0
	case c == '?':
		s.state, s.nameStart = stPITarget, len(s.names)
	case c == '!':
		s.state = stBang
	default:
		s.badNameByte(i, c, "element name")
		return i
	}
	return i + 1
}

func (s *Scanner) afterBang(b []byte, i int) int {
	switch b[i] {
	case '-':
		s.setLit("-", stComment, KindSyntax)
	case '[':
		if len(s.ends) == 0 {
			s.fail(KindOutside, i-2, "CDATA section outside the root element")
			return i
		}
		s.setLit("CDATA[", stCDATA, KindSyntax)
	case 'D':
		if s.rootSeen || s.sawDoctype {
			s.fail(KindOutside, i-2, "DOCTYPE after the root element or a second DOCTYPE")
			return i
		}
		s.sawDoctype = true
		s.setLit("OCTYPE", stDoctypeSpace, KindStrict)
	default:
		s.fail(KindStrict, i-2, "unsupported markup declaration <!%c", b[i])
		return i
	}
	return i + 1
}

// setLit makes the scanner match lit next, then go on in state next; a
// byte that differs is a fault of kind.
func (s *Scanner) setLit(lit string, next uint8, kind Kind) {
	s.state, s.lit, s.litIdx, s.litNext, s.litKind = stLiteral, lit, 0, next, kind
}

func (s *Scanner) literal(b []byte, i int) int {
	for ; i < len(b) && s.litIdx < len(s.lit); i++ {
		if b[i] != s.lit[s.litIdx] {
			s.fail(s.litKind, i, "unexpected byte %q in markup", b[i])
			return i
		}
		s.litIdx++
	}
	if s.litIdx == len(s.lit) {
		s.state, s.run = s.litNext, 0
	}
	return i
}

// badNameByte reports a byte that may not follow or start a name. Non-ASCII
// names are valid XML but rare in machine-written documents, so they are
// refused as stricter.
func (s *Scanner) badNameByte(i int, c byte, what string) {
	if c >= utf8.RuneSelf {
		s.fail(KindStrict, i, "non-ASCII byte in an %s", what)
		return
	}
	s.fail(KindSyntax, i, "unexpected byte %q in an %s", c, what)
}

// comment skips to "--"; it may be split across chunks.
func (s *Scanner) comment(b []byte, i int) int {
	if s.run == 1 {
		s.run = 0
		if b[i] == '-' {
			s.state = stCommentEnd
			return i + 1
		}
	}
	k := bytes.Index(b[i:], dashDash)
	if k < 0 {
		if b[len(b)-1] == '-' {
			s.run = 1
		}
		return len(b)
	}
	s.state = stCommentEnd
	return i + k + 2
}

func (s *Scanner) commentEnd(b []byte, i int) int {
	if b[i] != '>' {
		s.fail(KindSyntax, i, `"--" inside a comment`)
		return i
	}
	s.state, s.run = stText, 0
	return i + 1
}

// cdata reads a CDATA section; "]]>" may be split across chunks.
func (s *Scanner) cdata(b []byte, i int) int {
	for s.run > 0 && i < len(b) {
		c := b[i]
		i++
		switch {
		case c == '>' && s.run == 2:
			s.state, s.run = stText, 0
			return i
		case c == ']':
			if s.run == 2 {
				if !s.text(cdataEnd[:1], i-3) { // the oldest pending ']'
					return i
				}
			} else {
				s.run++
			}
		default:
			if !s.text(cdataEnd[:s.run], i-1-int(s.run)) || !s.text(b[i-1:i], i-1) {
				return i
			}
			s.run = 0
		}
	}
	if i == len(b) {
		return i
	}
	if k := bytes.Index(b[i:], cdataEnd); k >= 0 {
		if !s.text(b[i:i+k], i) {
			return i
		}
		s.state, s.run = stText, 0
		return i + k + 3
	}
	end := len(b)
	for end > i && s.run < 2 && b[end-1] == ']' {
		end--
		s.run++
	}
	s.text(b[i:end], i)
	return len(b)
}

func (s *Scanner) piTarget(b []byte, i int) int {
	if len(s.names) == s.nameStart && !nameStart[b[i]] {
		s.badNameByte(i, b[i], "processing instruction target")
		return i
	}
	j := i
	for j < len(b) && nameByte[b[j]] {
		j++
	}
	if have := len(s.names) - s.nameStart; have+j-i > MaxName {
		s.fail(KindLimit, i+MaxName-have, "processing instruction target longer than %d bytes", MaxName)
		return i
	}
	s.names = append(s.names, b[i:j]...)
	if j == len(b) {
		return j
	}
	target := s.names[s.nameStart:]
	c := b[j]
	switch {
	case !isSpace[c] && c != '?':
		s.fail(KindStrict, j, "no whitespace after the processing instruction target")
		return j
	case string(target) == "xml":
		if s.rootSeen || s.ltOff != s.bomLen {
			s.fail(KindStrict, j, "XML declaration not at the start of the body")
			return j
		}
	case len(target) == 3 && bytes.EqualFold(target, []byte("xml")):
		s.fail(KindStrict, j, "reserved processing instruction target %s", target)
		return j
	}
	s.names = s.names[:s.nameStart]
	s.state, s.run = stPIBody, 0
	if c == '?' {
		s.run = 1
	}
	return j + 1
}

// piBody skips to "?>"; it may be split across chunks.
func (s *Scanner) piBody(b []byte, i int) int {
	if s.run == 1 {
		s.run = 0
		if b[i] == '>' {
			s.state = stText
			return i + 1
		}
	}
	k := bytes.Index(b[i:], piEnd)
	if k < 0 {
		if b[len(b)-1] == '?' {
			s.run = 1
		}
		return len(b)
	}
	s.state, s.run = stText, 0
	return i + k + 2
}

func (s *Scanner) doctypeSpace(b []byte, i int) int {
	if !isSpace[b[i]] {
		s.fail(KindStrict, i, "expected whitespace after <!DOCTYPE")
		return i
	}
	s.state, s.quote, s.dtDepth = stDoctype, 0, 0
	return i + 1
}

// doctype skips a DOCTYPE the way encoding/xml skips directives: quoted
// strings, nested <…> and comments, up to the '>' that closes it. The DTD is
// never fetched or interpreted.
func (s *Scanner) doctype(b []byte, i int) int {
	for ; i < len(b); i++ {
		c := b[i]
		switch s.state {
		case stDoctypeLT: // matching "!--" after '<'
			if c == "!--"[s.litIdx] {
				s.litIdx++
				if s.litIdx == 3 {
					s.state, s.run = stDoctypeComment, 0
				}
				continue
			}
			s.dtDepth++
			s.state = stDoctype
			// c is read again as DOCTYPE content below
		case stDoctypeComment:
			switch {
			case c == '>' && s.run >= 2:
				s.state = stDoctype
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
			s.state, s.litIdx = stDoctypeLT, 0
		case '>':
			if s.dtDepth == 0 {
				s.state = stText
				return i + 1
			}
			s.dtDepth--
		}
	}
	return i
}
