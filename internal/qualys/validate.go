package qualys

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/qfetch/qfetch/internal/failure"
)

// ValidatorConfig tells a Validator what it reads and what to expect.
type ValidatorConfig struct {
	Endpoint string // request path, for error messages (APIError.Endpoint)
	Status   int    // HTTP status of the response, for error messages and classification

	// Root is the expected root element, e.g. RootDetections; "" accepts
	// any root that is not an error document.
	Root string

	// OnID, when set, is called with each host ID as soon as its element
	// closes: <root>/RESPONSE/ID_SET/ID, every ID of
	// <root>/RESPONSE/ID_SET/ID_RANGE "a-b", and
	// <root>/RESPONSE/HOST_LIST/HOST/ID. It runs inside Read.
	OnID func(id uint64)

	Limits Limits // limit headers of the response, for classify
	Waits  Waits  // for classify

	// Scrub, if set, cleans text copied from an error body before it goes
	// into an error: a gateway may echo the request's credentials.
	Scrub func(string) string
}

// Summary is what a Validator saw. It is complete once Read has returned
// io.EOF; before that it holds what was read so far.
type Summary struct {
	Root            string
	Bytes           int64
	Hosts           int // host IDs reported through OnID
	Detections      int // DETECTION elements under HOST_LIST/HOST/DETECTION_LIST
	FirstID, LastID uint64
	Warning         *Warning // RESPONSE/WARNING, or nil
}

// Warning is RESPONSE/WARNING: on a truncated page, CODE 1980 and the URL
// of the next page.
type Warning struct {
	Code int
	Text string
	URL  string // whitespace around the CDATA trimmed
}

// ErrMalformed is wrapped (via *MalformedError) by every error about a body
// that is not a whole, well-formed document.
var ErrMalformed = errors.New("malformed XML body")

// ErrUnexpectedRoot is wrapped when a well-formed body is some other
// document than the one asked for.
var ErrUnexpectedRoot = errors.New("unexpected root element")

// MalformedError says what is wrong with a body and where. Offset counts
// bytes from the start of the body; for a body cut short it is its length.
type MalformedError struct {
	Endpoint string // request path
	Status   int    // HTTP status of the response
	Offset   int64
	CutShort bool   // the body ended inside the document
	Reason   string // what is wrong, e.g. "unclosed element in /ROOT/RESPONSE"

	kind scanKind
}

func (e *MalformedError) Error() string {
	if e.CutShort {
		return fmt.Sprintf("qualys%s: body cut short after %d bytes: %s", valWhere(e.Endpoint), e.Offset, e.Reason)
	}
	return fmt.Sprintf("qualys%s: malformed XML at byte %d: %s", valWhere(e.Endpoint), e.Offset, e.Reason)
}

// valWhere is the endpoint part of an error message.
func valWhere(endpoint string) string {
	if endpoint == "" {
		return ""
	}
	return " " + endpoint
}

// Is makes errors.Is(err, ErrMalformed) hold.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// Validator passes a response body through unchanged while checking it, in
// memory that does not depend on the body's size. Its Read returns io.EOF
// only when the body is a whole, well-formed document with the expected
// root; otherwise its last Read returns a classified error instead of
// io.EOF, so that an upload fed from it fails rather than keeping a partial
// object (design.md I2). A body that is a Qualys error document or an HTML
// page ends in classify's verdict on it, even when it is not well-formed.
type Validator struct {
	r   io.Reader
	cfg ValidatorConfig
	s   xmlScanner

	// head holds the body's start while it may be an error document:
	// until the root element is known, or to the end when it is one.
	head      []byte
	errorBody bool  // judge the body by parseErrorDocument at its end
	final     error // io.EOF or the verdict; every later Read returns it
	n         int64 // bytes passed on
}

// NewValidator wraps r.
func NewValidator(r io.Reader, cfg ValidatorConfig) *Validator {
	v := &Validator{r: r, cfg: cfg}
	v.s.val.wantRoot = cfg.Root
	v.s.val.onID = cfg.OnID
	v.s.names = make([]byte, 0, 256)
	v.s.ends = make([]int32, 0, 16)
	v.s.ctxs = make([]uint8, 0, 16)
	return v
}

// Read reads from the wrapped reader into p. Bytes are passed on before
// the verdict: a Read that delivers bytes returns a nil error, and the
// verdict comes with the next one. Errors of the wrapped reader are
// returned as they are.
func (v *Validator) Read(p []byte) (int, error) {
	if v.final != nil {
		return 0, v.final
	}
	n, err := v.r.Read(p)
	if n > 0 {
		v.n += int64(n)
		v.feed(p[:n])
	}
	if err == io.EOF {
		if v.final == nil {
			v.final = v.atEOF()
		}
		err = nil
	}
	if err != nil || n > 0 {
		return n, err
	}
	return 0, v.final
}

// Summary reports what was read.
func (v *Validator) Summary() Summary {
	sum := v.s.val.sum
	sum.Bytes = v.n
	return sum
}

func (v *Validator) feed(b []byte) {
	if v.errorBody || v.s.halted {
		// The scanner stopped; only the head is still of interest.
		v.keepHead(b)
		return
	}
	v.s.scan(b)
	switch {
	case v.s.val.errRoot:
		v.errorBody = true
		v.keepHead(b)
	case v.s.val.wrongRoot:
		v.final = failure.Retryable(fmt.Errorf("qualys%s: %w %s, want %s", valWhere(v.cfg.Endpoint), ErrUnexpectedRoot, v.s.val.sum.Root, v.cfg.Root))
	case v.s.err != nil && !v.s.rootSeen:
		// Not XML before any element: maybe an HTML page with a
		// lowercase doctype. The head decides at the end.
		v.errorBody = true
		v.keepHead(b)
	case v.s.err != nil:
		v.final = v.malformed(v.s.err)
	case !v.s.rootSeen:
		v.keepHead(b)
	default:
		v.head = nil
	}
}

// keepHead appends to the head up to maxErrorBody; an error document
// larger than that is judged on its head alone, without reading on.
func (v *Validator) keepHead(b []byte) {
	room := maxErrorBody - len(v.head)
	if len(b) > room {
		b = b[:room]
	}
	v.head = append(v.head, b...)
	if v.errorBody && len(v.head) >= maxErrorBody && v.final == nil {
		v.final = v.errorDocument()
	}
}

func (v *Validator) atEOF() error {
	if v.errorBody {
		return v.errorDocument()
	}
	v.s.finish()
	switch {
	case v.s.err != nil && !v.s.rootSeen:
		return v.errorDocument()
	case v.s.err != nil:
		return v.malformed(v.s.err)
	}
	return io.EOF
}

// errorDocument judges a body that is an error document, or nothing
// recognisable at all.
func (v *Validator) errorDocument() error {
	e, ok := parseErrorDocument(v.head)
	switch {
	case ok:
	case v.s.val.errRoot:
		// The scanner saw the root; the lenient parser lost it.
		e = APIError{Root: v.s.val.sum.Root, SecondsToWait: -1, CallsToFinish: -1}
	case v.s.err != nil:
		return v.malformed(v.s.err)
	default:
		return v.malformed(&scanError{kind: scanKindNoRoot, offset: v.n, msg: "no root element"})
	}
	if v.s.val.sum.Root == "" {
		v.s.val.sum.Root = e.Root
	}
	e.Endpoint, e.Status = v.cfg.Endpoint, v.cfg.Status
	if v.cfg.Scrub != nil {
		e.Text = v.cfg.Scrub(e.Text)
	}
	return classify(e, v.cfg.Limits, v.cfg.Waits)
}

func (v *Validator) malformed(se *scanError) error {
	return failure.Retryable(&MalformedError{
		Endpoint: v.cfg.Endpoint,
		Status:   v.cfg.Status,
		Offset:   se.offset,
		CutShort: se.kind == scanKindCutShort || se.kind == scanKindNoRoot,
		Reason:   se.msg,
		kind:     se.kind,
	})
}

// valState is what the scanner extracts for the validator.
type valState struct {
	wantRoot  string
	onID      func(uint64)
	sum       Summary
	errRoot   bool // the root names an error document
	wrongRoot bool

	capt   uint8 // the capture context of the innermost element, or 0
	capMax int
	buf    []byte // captured text of that element
}

// Element contexts: where an open element sits, as far as the validator
// cares. Everything below an uninteresting element is valCtxNone.
const (
	valCtxNone uint8 = iota
	valCtxRoot
	valCtxResponse
	valCtxIDSet
	valCtxHostList
	valCtxHost
	valCtxDetectionList
	valCtxDetection
	valCtxWarning
	valCtxID // contexts from here on capture their text
	valCtxIDRange
	valCtxHostID
	valCtxWarningCode
	valCtxWarningText
	valCtxWarningURL

	valCtxFirstCapture = valCtxID
)

// Capture limits. A WARNING URL repeats the request's parameters, which
// may hold a long ids list, so it gets the most room.
const (
	valMaxIDText      = 64
	valMaxWarningText = 64 << 10
	valMaxWarningURL  = 1 << 20

	// valMaxRange bounds one ID_RANGE, so that a hostile "1-1e18" cannot
	// keep OnID busy forever; it is far above any subscription's host count.
	valMaxRange = 1 << 24
)

// startRoot judges the root element and returns its context.
func (s *xmlScanner) startRoot(name []byte) uint8 {
	v := &s.val
	v.sum.Root = string(name)
	switch {
	case v.sum.Root == "SIMPLE_RETURN", v.sum.Root == "GENERIC_RETURN", strings.EqualFold(v.sum.Root, "html"):
		v.errRoot, s.halted = true, true
	case v.wantRoot != "" && v.sum.Root != v.wantRoot:
		v.wrongRoot, s.halted = true, true
	}
	return valCtxRoot
}

func (s *xmlScanner) childCtx(parent uint8, name []byte) uint8 {
	switch parent {
	case valCtxRoot:
		if string(name) == "RESPONSE" {
			return valCtxResponse
		}
	case valCtxResponse:
		switch string(name) {
		case "ID_SET":
			return valCtxIDSet
		case "HOST_LIST":
			return valCtxHostList
		case "WARNING":
			s.val.sum.Warning = &Warning{}
			return valCtxWarning
		}
	case valCtxIDSet:
		switch string(name) {
		case "ID":
			return valCtxID
		case "ID_RANGE":
			return valCtxIDRange
		}
	case valCtxHostList:
		if string(name) == "HOST" {
			return valCtxHost
		}
	case valCtxHost:
		switch string(name) {
		case "ID":
			return valCtxHostID
		case "DETECTION_LIST":
			return valCtxDetectionList
		}
	case valCtxDetectionList:
		if string(name) == "DETECTION" {
			s.val.sum.Detections++
			return valCtxDetection
		}
	case valCtxWarning:
		switch string(name) {
		case "CODE":
			return valCtxWarningCode
		case "TEXT":
			return valCtxWarningText
		case "URL":
			return valCtxWarningURL
		}
	}
	return valCtxNone
}

func (s *xmlScanner) setCapture(ctx uint8) {
	v := &s.val
	if ctx < valCtxFirstCapture {
		v.capt = 0
		return
	}
	v.capt, v.buf = ctx, v.buf[:0]
	switch ctx {
	case valCtxWarningText:
		v.capMax = valMaxWarningText
	case valCtxWarningURL:
		v.capMax = valMaxWarningURL
	default:
		v.capMax = valMaxIDText
	}
}

// capture keeps text of the element being captured. i is where p starts
// in the chunk (negative for bytes held over from the previous one), so
// that a fault is reported at the same byte however the body is chunked.
func (s *xmlScanner) capture(p []byte, i int) bool {
	v := &s.val
	if v.capt == 0 || len(p) == 0 {
		return true
	}
	if len(v.buf)+len(p) > v.capMax {
		s.fail(scanKindLimit, i+v.capMax-len(v.buf), "text of %s longer than %d bytes", s.path(), v.capMax)
		return false
	}
	v.buf = append(v.buf, p...)
	return true
}

// endCapture acts on the text of a captured element that just closed.
func (s *xmlScanner) endCapture(ctx uint8, i int) bool {
	v := &s.val
	text := bytes.Trim(v.buf, " \t\r\n")
	switch ctx {
	case valCtxID, valCtxHostID:
		id, ok := valParseID(text)
		if !ok {
			s.fail(scanKindContent, i, "host ID %q is not a positive integer", text)
			return false
		}
		s.emit(id)
	case valCtxIDRange:
		lo, hi, _ := bytes.Cut(text, []byte("-"))
		a, okA := valParseID(bytes.Trim(lo, " \t\r\n"))
		b, okB := valParseID(bytes.Trim(hi, " \t\r\n"))
		switch {
		case !okA || !okB:
			s.fail(scanKindContent, i, "ID_RANGE %q is not a range of host IDs", text)
			return false
		case b < a:
			s.fail(scanKindContent, i, "ID_RANGE %q runs backwards", text)
			return false
		case b-a >= valMaxRange:
			s.fail(scanKindLimit, i, "ID_RANGE %q holds more than %d IDs", text, valMaxRange)
			return false
		}
		for id := a; ; id++ {
			s.emit(id)
			if id == b {
				break
			}
		}
	case valCtxWarningCode:
		code, ok := valParseID(text)
		if !ok || code > 1<<31 {
			s.fail(scanKindContent, i, "WARNING CODE %q is not a number", text)
			return false
		}
		v.sum.Warning.Code = int(code)
	case valCtxWarningText:
		v.sum.Warning.Text = string(text)
	case valCtxWarningURL:
		v.sum.Warning.URL = string(text)
	}
	v.buf = v.buf[:0]
	return true
}

func (s *xmlScanner) emit(id uint64) {
	v := &s.val
	if v.sum.Hosts == 0 {
		v.sum.FirstID = id
	}
	v.sum.Hosts++
	v.sum.LastID = id
	if v.onID != nil {
		v.onID(id)
	}
}

// valParseID parses a positive decimal integer without sign or spaces.
func valParseID(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, n > 0
}
