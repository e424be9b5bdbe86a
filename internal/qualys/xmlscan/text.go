package xmlscan

import (
	"bytes"
	"unicode/utf8"
)

var (
	nameStart  [256]bool // first byte of a name (ASCII only)
	nameByte   [256]bool // other bytes of a name
	textStop   [256]bool // bytes that end a run of plain content text
	attrStop   [256]bool // bytes that end a run of plain attribute value
	isSpace    [256]bool // XML whitespace
	entityByte [256]bool // bytes allowed between '&' and ';'
)

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		letter := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
		digit := '0' <= b && b <= '9'
		nameStart[c] = letter || b == '_' || b == ':'
		nameByte[c] = nameStart[c] || digit || b == '.' || b == '-'
		entityByte[c] = letter || digit || b == '#'
	}
	for _, b := range []byte("<&]>") {
		textStop[b] = true
	}
	for _, b := range []byte("<&\"'") {
		attrStop[b] = true
	}
	for _, b := range []byte(" \t\n\r") {
		isSpace[b] = true
	}
}

// content reads character data inside the root element and the plain tags
// between it: the hot loop. It stays until the state changes, the root
// closes or b ends.
func (s *Scanner) content(b []byte, i int) int {
	for i < len(b) {
		j := i
		for j < len(b) && !textStop[b[j]] {
			j++
		}
		if j > i {
			s.run = 0
			if s.capt && !s.text(b[i:j], i) {
				return j
			}
		}
		if j == len(b) {
			return j
		}
		i = j
		switch b[i] {
		case '<':
			k := s.fastTag(b, i)
			if k == i {
				s.state = stLT
				return i + 1
			}
			if s.err != nil || s.stopped || len(s.ends) == 0 {
				return k
			}
			i = k
			continue
		case '&':
			s.state, s.entRet, s.entLen = stEntity, stText, 0
			return i + 1
		case ']':
			if s.run < 2 {
				s.run++
			}
		case '>':
			if s.run >= 2 {
				s.fail(KindSyntax, i, `"]]>" in character data`)
				return i
			}
			s.run = 0
		}
		if s.capt && !s.text(b[i:i+1], i) {
			return i
		}
		i++
	}
	return i
}

// fastTag reads a plain <NAME> or </NAME> that lies whole in b at i, the
// common case, without a trip through the state machine per part. It
// returns i when the tag is anything else, for the general path to read.
func (s *Scanner) fastTag(b []byte, i int) int {
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
	if !nameStart[b[i+1]] || len(s.ends) >= MaxDepth {
		return i
	}
	j := i + 2
	for j < len(b) && nameByte[b[j]] {
		j++
	}
	if j == len(b) || b[j] != '>' || j-i-1 > MaxName {
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
func (s *Scanner) outside(b []byte, i int) int {
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case ' ', '\t', '\n', '\r':
		case '<':
			s.ltOff = s.off + int64(i)
			s.state = stLT
			return i + 1
		default:
			if c == 0xEF && s.off+int64(i) == 0 {
				s.bomLen = 3
				s.setLit("\xBB\xBF", stText, KindOutside)
				return i + 1
			}
			where := "before"
			if s.rootSeen {
				where = "after"
			}
			s.fail(KindOutside, i, "content %s the root element", where)
			return i
		}
	}
	return i
}

// entity reads a reference up to ';' and checks it: one of the five
// predefined names or a character reference to a legal XML character.
func (s *Scanner) entity(b []byte, i int) int {
	for ; i < len(b); i++ {
		c := b[i]
		if c == ';' {
			r, ok := s.entityValue(i)
			if !ok {
				return i
			}
			if s.entRet == stText && s.capt {
				var enc [utf8.UTFMax]byte
				if !s.text(enc[:utf8.EncodeRune(enc[:], r)], i) {
					return i
				}
			}
			s.state, s.run = s.entRet, 0
			return i + 1
		}
		if !entityByte[c] {
			s.fail(KindEntity, i, "unexpected byte %q in an entity reference", c)
			return i
		}
		if s.entLen == len(s.ent) {
			s.fail(KindLimit, i, "entity reference longer than %d bytes", MaxEntity)
			return i
		}
		s.ent[s.entLen] = c
		s.entLen++
	}
	return i
}

func (s *Scanner) entityValue(i int) (rune, bool) {
	e := s.ent[:s.entLen]
	if len(e) == 0 || e[0] != '#' {
		if r, ok := predefined(e); ok {
			return r, true
		}
		s.fail(KindEntity, i, "unknown entity &%s;", e)
		return 0, false
	}
	v, bad := charRef(e[1:])
	if bad != "" {
		s.fail(KindEntity, i, bad, e)
		return 0, false
	}
	switch r := rune(v); {
	case r == 0x9, r == 0xA, r == 0xD, 0x20 <= r && r <= 0xD7FF, 0xE000 <= r && r <= 0xFFFD, r >= 0x10000:
		return r, true
	case 0xD800 <= r && r <= 0xDFFF:
		// encoding/xml turns these into U+FFFD; XML 1.0 forbids them.
		s.fail(KindStrict, i, "character reference &%s; to a surrogate", e)
	default:
		s.fail(KindEntity, i, "character reference &%s; to an illegal character", e)
	}
	return 0, false
}

// predefined is the character one of XML's five entities stands for.
func predefined(name []byte) (rune, bool) {
	switch string(name) {
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
	return 0, false
}

// charRef reads the number of a character reference after its '#': decimal,
// or hexadecimal after 'x'. bad, if not empty, is the format of a message
// saying what is wrong with it.
func charRef(ref []byte) (v uint32, bad string) {
	digits, base := ref, uint32(10)
	if len(digits) > 0 && digits[0] == 'x' {
		digits, base = digits[1:], 16
	}
	if len(digits) == 0 {
		return 0, "empty character reference &%s;"
	}
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
			return 0, "bad character reference &%s;"
		}
		if v = v*base + d; v > utf8.MaxRune {
			return 0, "character reference &%s; out of range"
		}
	}
	return v, ""
}
