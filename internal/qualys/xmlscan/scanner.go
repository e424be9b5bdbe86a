// Package xmlscan owns the hand-written streaming XML scanner: a resumable
// well-formedness check over byte chunks that tells a Handler of elements and text.
package xmlscan

import (
	"bytes"
	"errors"
	"fmt"
)

// Handler hears what a Scanner finds. Its hooks run inside Scan. A hook
// that returns an error ends the scan: ErrStop without a fault, an *Error as
// it is, any other error as a KindContent fault at the hook's offset.
type Handler interface {
	// Start is called when an element's name has been read, before its
	// attributes; off is the stream offset of the byte after the name.
	// parent is the Context returned for the enclosing element, Document
	// for the root. The Context returned is the new element's. Below a
	// Skip element, Start is called only for the names the Scanner
	// watches (Init); every other element there is Skip without a call,
	// which keeps the call off the hot path.
	Start(parent Context, name []byte, off int64) (Context, error)

	// Text is called with the character data of the innermost open
	// element while its Context has the WantText bit: text, CDATA and
	// replaced references, in pieces of any size. p is valid only during
	// the call; off is where p starts in the stream (for a reference, its ';').
	Text(ctx Context, p []byte, off int64) error

	// End is called when an element whose Context is not Skip closes;
	// off is the offset of its closing '>'.
	End(ctx Context, off int64) error
}

// Context is what an open element is to the Handler: a value of its
// choosing that the Scanner keeps with the element and hands back, so that
// the Handler needs no stack of its own.
type Context uint8

const (
	Skip     Context = 0    // nothing to the Handler, nor are its children (but watched names)
	Document Context = 0x7F // the parent of the root element
	WantText Context = 0x80 // bit: the Handler wants the element's text
)

// ErrStop, returned by a hook, ends the scan without a fault; Err stays nil.
var ErrStop = errors.New("xmlscan: stop")

// Structural limits. They only stop a hostile or broken body from costing
// memory; real documents are far inside them.
const (
	MaxDepth  = 256
	MaxName   = 256 // element, attribute and processing-instruction names
	MaxEntity = 32  // bytes between '&' and ';'
)

// Kind sorts faults, so that a caller can tell the faults encoding/xml
// also reports from the ones where this scanner is deliberately stricter.
type Kind uint8

const (
	KindCutShort Kind = iota + 1 // the stream ended inside the document
	KindSyntax                   // not XML
	KindMismatch                 // an end tag that does not close the open element
	KindEntity                   // a bad entity or character reference
	KindNoRoot                   // the stream ended before any element
	KindOutside                  // content, a second root or a DOCTYPE outside its place
	KindStrict                   // forbidden by XML 1.0 but passed by encoding/xml
	KindLimit                    // a structural limit, or one of the Handler's
	KindContent                  // the Handler refused what it was told
)

// Error is a fault in the stream: what and where.
type Error struct {
	Kind   Kind
	Offset int64 // bytes from the start of the stream
	Msg    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("xml fault at byte %d: %s", e.Offset, e.Msg)
}

// Scanner is a resumable XML 1.0 well-formedness checker over a stream of
// byte chunks. It never copies character data except what the Handler
// asks for, and its memory is bounded by the limits above, so a stream of
// any size costs the same. It checks structure (one root, balanced tags,
// complete markup, entity references); it does not check that every byte
// is a legal XML character or valid UTF-8.
//
// Where it differs from encoding/xml it is stricter: one root element with
// only whitespace, comments and PIs around it, one DOCTYPE and no other
// <!declarations>, ASCII names. Faults of KindNoRoot, KindOutside,
// KindStrict and KindLimit are the ones encoding/xml does not report.
type Scanner struct {
	h     Handler
	watch []string // names Start hears of even below a Skip element

	state    uint8
	entRet   uint8 // state to resume after an entity reference
	litNext  uint8 // state after the literal being matched
	litKind  Kind
	run      uint8 // trailing ']' (text, CDATA), '-' (comments) or '?' (PIs) seen so far
	quote    byte  // the quote of the attribute value or DOCTYPE literal being read
	sawSpace bool  // whitespace since the element name or the last attribute value
	capt     bool  // the innermost element's Context has WantText

	sawDoctype bool
	rootSeen   bool
	rootDone   bool
	stopped    bool // a hook returned ErrStop

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

	names []byte    // names of the open elements, one after the other
	ends  []int32   // end offset in names of each open element's name
	ctxs  []Context // each open element's Context

	ent [MaxEntity]byte
	err *Error
}

// Init readies s to scan a new stream for h and returns s. Start hears of
// an element named in watch wherever it is, even below a Skip element.
func (s *Scanner) Init(h Handler, watch []string) *Scanner {
	*s = Scanner{
		h:     h,
		watch: watch,
		names: make([]byte, 0, 256),
		ends:  make([]int32, 0, 16),
		ctxs:  make([]Context, 0, 16),
	}
	return s
}

// Err is the fault found, or nil.
func (s *Scanner) Err() *Error { return s.err }

// Stopped reports whether a hook stopped the scan.
func (s *Scanner) Stopped() bool { return s.stopped }

// RootSeen reports whether the root element has opened.
func (s *Scanner) RootSeen() bool { return s.rootSeen }

// Scanner states.
const (
	stText           uint8 = iota // character data: prolog, content or epilog
	stLT                          // after '<'
	stBang                        // after "<!"
	stLiteral                     // matching lit, then litNext
	stComment                     // inside "<!--"
	stCommentEnd                  // after "--" in a comment: only '>' may follow
	stCDATA                       // inside "<![CDATA["
	stPITarget                    // after "<?"
	stPIBody                      // until "?>"
	stDoctypeSpace                // after "<!DOCTYPE"
	stDoctype                     // inside a DOCTYPE
	stDoctypeLT                   // after '<' inside a DOCTYPE
	stDoctypeComment              // inside a comment inside a DOCTYPE
	stStartName                   // reading an element name
	stTag                         // inside a start tag, after a name or attribute value
	stEmpty                       // after '/' in a start tag
	stAttrName                    // reading an attribute name
	stAttrEq                      // after an attribute name
	stAttrQuote                   // after '='
	stAttrValue                   // inside a quoted attribute value
	stEndName                     // reading an end tag's name
	stEndTail                     // after an end tag's name
	stEntity                      // after '&'
)

// Scan checks the next chunk of the stream. It stops at the first fault
// (Err) or when a hook stops it. Each state's method reads from b[i:] and
// returns where it stopped.
func (s *Scanner) Scan(b []byte) {
	i := 0
	for i < len(b) && s.err == nil && !s.stopped {
		switch s.state {
		case stText:
			if len(s.ends) == 0 {
				i = s.outside(b, i)
			} else {
				i = s.content(b, i)
			}
		case stLT:
			i = s.afterLT(b, i)
		case stBang:
			i = s.afterBang(b, i)
		case stLiteral:
			i = s.literal(b, i)
		case stComment:
			i = s.comment(b, i)
		case stCommentEnd:
			i = s.commentEnd(b, i)
		case stCDATA:
			i = s.cdata(b, i)
		case stPITarget:
			i = s.piTarget(b, i)
		case stPIBody:
			i = s.piBody(b, i)
		case stDoctypeSpace:
			i = s.doctypeSpace(b, i)
		case stDoctype, stDoctypeLT, stDoctypeComment:
			i = s.doctype(b, i)
		case stStartName:
			i = s.startName(b, i)
		case stTag:
			i = s.tag(b, i)
		case stEmpty:
			i = s.emptyEnd(b, i)
		case stAttrName:
			i = s.attrName(b, i)
		case stAttrEq:
			i = s.attrEq(b, i)
		case stAttrQuote:
			i = s.attrQuote(b, i)
		case stAttrValue:
			i = s.attrValue(b, i)
		case stEndName:
			i = s.endName(b, i)
		case stEndTail:
			i = s.endTail(b, i)
		case stEntity:
			i = s.entity(b, i)
		}
	}
	s.off += int64(len(b))
}

// Finish judges the end of the stream.
func (s *Scanner) Finish() {
	if s.err != nil || s.stopped {
		return
	}
	i := 0 // offsets are relative to s.off, which is now the stream's length
	switch {
	case s.state == stText && len(s.ends) == 0 && s.rootDone:
		return
	case s.state == stText && len(s.ends) == 0 && !s.rootSeen:
		s.fail(KindNoRoot, i, "no root element")
		return
	}
	where := unfinished(s.state)
	if len(s.ends) > 0 {
		s.fail(KindCutShort, i, "%s in %s", where, s.Path())
		return
	}
	s.fail(KindCutShort, i, "%s outside the root element", where)
}

// unfinished names what a stream that ends in state st leaves open.
func unfinished(st uint8) string {
	switch st {
	case stText:
		return "unclosed element"
	case stComment, stCommentEnd:
		return "unclosed comment"
	case stCDATA:
		return "unclosed CDATA section"
	case stPITarget, stPIBody:
		return "unclosed processing instruction"
	case stDoctypeSpace, stDoctype, stDoctypeLT, stDoctypeComment:
		return "unclosed DOCTYPE"
	case stStartName, stTag, stEmpty, stAttrName, stAttrEq, stAttrQuote, stAttrValue:
		return "unclosed start tag"
	case stEndName, stEndTail:
		return "unclosed end tag"
	case stEntity:
		return "unfinished entity reference"
	}
	return "unfinished markup"
}

// Path names the open elements, innermost last, for error messages.
func (s *Scanner) Path() string {
	var b []byte
	start := 0
	for _, end := range s.ends {
		b = append(b, '/')
		b = append(b, s.names[start:end]...)
		start = int(end)
	}
	return string(b)
}

// fail records a fault at b[i] of the chunk being scanned.
func (s *Scanner) fail(kind Kind, i int, format string, args ...any) {
	s.err = &Error{Kind: kind, Offset: s.off + int64(i), Msg: fmt.Sprintf(format, args...)}
}

// hookFailed ends the scan on a hook's error; i is the hook's offset in
// the chunk.
func (s *Scanner) hookFailed(err error, i int) {
	if errors.Is(err, ErrStop) {
		s.stopped = true
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Kind: KindContent, Offset: s.off + int64(i), Msg: err.Error()}
	}
	s.err = e
}

func (s *Scanner) topStart() int {
	if n := len(s.ends); n >= 2 {
		return int(s.ends[n-2])
	}
	return 0
}

// push opens the element whose name was just read; i is the byte after it.
func (s *Scanner) push(i int) bool {
	name := s.names[s.nameStart:]
	if k := bytes.IndexByte(name, ':'); k >= 0 && bytes.IndexByte(name[k+1:], ':') >= 0 {
		s.fail(KindSyntax, i, "element name with more than one colon")
		return false
	}
	parent := Document
	if n := len(s.ctxs); n > 0 {
		parent = s.ctxs[n-1]
	} else {
		s.rootSeen = true
	}
	ctx := Skip
	if parent != Skip || s.watched(name) {
		c, err := s.h.Start(parent, name, s.off+int64(i))
		if err != nil {
			s.hookFailed(err, i)
			return false
		}
		ctx = c
	}
	s.ends = append(s.ends, int32(len(s.names)))
	s.ctxs = append(s.ctxs, ctx)
	s.capt = ctx&WantText != 0
	return true
}

func (s *Scanner) watched(name []byte) bool {
	for _, w := range s.watch {
		if string(name) == w {
			return true
		}
	}
	return false
}

// pop closes the innermost element; i is the offset of its closing '>'.
func (s *Scanner) pop(i int) bool {
	n := len(s.ends) - 1
	ctx := s.ctxs[n]
	s.names = s.names[:s.topStart()]
	s.ends, s.ctxs = s.ends[:n], s.ctxs[:n]
	if n == 0 {
		s.rootDone = true
	}
	s.capt = n > 0 && s.ctxs[n-1]&WantText != 0
	if ctx == Skip {
		return true
	}
	if err := s.h.End(ctx, s.off+int64(i)); err != nil {
		s.hookFailed(err, i)
		return false
	}
	return true
}

// text hands p, which starts at b[i] of the chunk (before it for bytes
// held over from the last one), to the Handler if it wants it.
func (s *Scanner) text(p []byte, i int) bool {
	if !s.capt || len(p) == 0 {
		return true
	}
	return s.passText(p, i)
}

func (s *Scanner) passText(p []byte, i int) bool {
	if err := s.h.Text(s.ctxs[len(s.ctxs)-1], p, s.off+int64(i)); err != nil {
		s.hookFailed(err, i)
		return false
	}
	return true
}
