package xmlscan

import "bytes"

// The general path through start and end tags: names and attributes read
// a piece at a time, wherever a chunk ends.

func (s *Scanner) startName(b []byte, i int) int {
	j := i
	for j < len(b) && nameByte[b[j]] {
		j++
	}
	if have := len(s.names) - s.nameStart; have+j-i > MaxName {
		s.fail(KindLimit, i+MaxName-have, "element name longer than %d bytes", MaxName)
		return i
	}
	s.names = append(s.names, b[i:j]...)
	if j == len(b) {
		return j
	}
	var next uint8
	switch c := b[j]; {
	case isSpace[c]:
		next, s.sawSpace = stTag, true
	case c == '>':
		next = stText
	case c == '/':
		next = stEmpty
	default:
		s.badNameByte(j, c, "element name")
		return j
	}
	if !s.push(j) {
		return j
	}
	s.state, s.run = next, 0
	return j + 1
}

// tag reads inside a start tag, between its name or an attribute value
// and the next attribute or the tag's end.
func (s *Scanner) tag(b []byte, i int) int {
	for i < len(b) && isSpace[b[i]] {
		s.sawSpace = true
		i++
	}
	if i == len(b) {
		return i
	}
	switch c := b[i]; {
	case c == '>':
		s.state, s.run = stText, 0
		return i + 1
	case c == '/':
		s.state = stEmpty
		return i + 1
	case !nameStart[c]:
		s.badNameByte(i, c, "attribute name")
	case !s.sawSpace:
		s.fail(KindStrict, i, "no whitespace before attribute")
	default:
		s.state, s.nameLen, s.colons = stAttrName, 0, 0
	}
	return i
}

// emptyEnd reads the '>' of an empty-element tag.
func (s *Scanner) emptyEnd(b []byte, i int) int {
	if b[i] != '>' {
		s.fail(KindSyntax, i, "expected > after / in a start tag")
		return i
	}
	if !s.pop(i) {
		return i
	}
	s.state, s.run = stText, 0
	return i + 1
}

func (s *Scanner) attrName(b []byte, i int) int {
	j := i
	for j < len(b) && nameByte[b[j]] {
		if b[j] == ':' {
			s.colons++
		}
		j++
	}
	if s.nameLen+j-i > MaxName {
		s.fail(KindLimit, i+MaxName-s.nameLen, "attribute name longer than %d bytes", MaxName)
		return i
	}
	s.nameLen += j - i
	if j == len(b) {
		return j
	}
	if s.colons > 1 {
		s.fail(KindSyntax, j, "attribute name with more than one colon")
		return j
	}
	switch c := b[j]; {
	case c == '=':
		s.state = stAttrQuote
	case isSpace[c]:
		s.state = stAttrEq
	default:
		s.badNameByte(j, c, "attribute name")
		return j
	}
	return j + 1
}

// attrEq reads the whitespace between an attribute's name and its '='.
func (s *Scanner) attrEq(b []byte, i int) int {
	for i < len(b) && isSpace[b[i]] {
		i++
	}
	if i == len(b) {
		return i
	}
	if b[i] != '=' {
		s.fail(KindSyntax, i, "attribute without =")
		return i
	}
	s.state = stAttrQuote
	return i + 1
}

// attrQuote reads up to the quote that opens an attribute value.
func (s *Scanner) attrQuote(b []byte, i int) int {
	for i < len(b) && isSpace[b[i]] {
		i++
	}
	if i == len(b) {
		return i
	}
	if c := b[i]; c == '"' || c == '\'' {
		s.state, s.quote = stAttrValue, c
		return i + 1
	}
	s.fail(KindSyntax, i, "unquoted attribute value")
	return i
}

func (s *Scanner) attrValue(b []byte, i int) int {
	for i < len(b) {
		for i < len(b) && !attrStop[b[i]] {
			i++
		}
		if i == len(b) {
			break
		}
		c := b[i]
		if c == '<' {
			s.fail(KindSyntax, i, "< in an attribute value")
			return i
		}
		i++
		if c == '&' {
			s.state, s.entRet, s.entLen = stEntity, stAttrValue, 0
			return i
		}
		if c == s.quote {
			s.state, s.sawSpace = stTag, false
			return i
		}
	}
	return i
}

// endName matches an end tag's name against the open element's, a piece
// at a time.
func (s *Scanner) endName(b []byte, i int) int {
	top := s.names[s.topStart():]
	j := i
	for j < len(b) && nameByte[b[j]] {
		j++
	}
	if s.cmp+j-i > len(top) || !bytes.Equal(b[i:j], top[s.cmp:s.cmp+j-i]) {
		k := 0 // report the first byte that differs, wherever the chunk starts
		for s.cmp+k < len(top) && b[i+k] == top[s.cmp+k] {
			k++
		}
		s.fail(KindMismatch, i+k, "end tag does not match <%s>", top)
		return i
	}
	s.cmp += j - i
	if j == len(b) {
		return j
	}
	if s.cmp != len(top) {
		s.fail(KindMismatch, j, "end tag does not match <%s>", top)
		return j
	}
	switch c := b[j]; {
	case c == '>':
		if !s.pop(j) {
			return j
		}
		s.state, s.run = stText, 0
	case isSpace[c]:
		s.state = stEndTail
	default:
		s.fail(KindSyntax, j, "unexpected byte %q in the end tag of <%s>", c, top)
		return j
	}
	return j + 1
}

// endTail reads the whitespace after an end tag's name and its '>'.
func (s *Scanner) endTail(b []byte, i int) int {
	for i < len(b) && isSpace[b[i]] {
		i++
	}
	if i == len(b) {
		return i
	}
	if b[i] != '>' {
		s.fail(KindSyntax, i, "unexpected byte %q in an end tag", b[i])
		return i
	}
	if !s.pop(i) {
		return i
	}
	s.state, s.run = stText, 0
	return i + 1
}
