package qualys

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/qualys/xmlscan"
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
	// <root>/RESPONSE/HOST_LIST/HOST/ID. Under the KnowledgeBase root
	// (RootKB) the IDs are QIDs: those of its ID_SET, and
	// <root>/RESPONSE/VULN_LIST/VULN/QID, one per VULN. It runs inside Read.
	OnID func(id uint64)

	// OnRange, when set, is called instead of OnID for an ID_RANGE "a-b",
	// once with its bounds, so that a wide range costs its reader nothing
	// until it takes the IDs (#17.6). Without it OnID sees every ID of the
	// range, one call each; without either, a range is only counted.
	OnRange func(lo, hi uint64)

	Limits Limits // limit headers of the response, for classify
	Waits  Waits  // for classify

	// Scrub, if set, cleans text copied from an error body before it goes
	// into an error: a gateway may echo the request's credentials.
	Scrub func(string) string

	// list narrows which list a KnowledgeBase answer may hold: a batch
	// asked for VULNs, and an ID_SET stored as its answer would hold none
	// while its QIDs counted as fetched; a listing asked for an ID_SET.
	list kbList
}

// kbList is the list a KnowledgeBase answer must hold, if any.
type kbList uint8

const (
	kbAnyList   kbList = iota // either, or none (nothing matched)
	kbVulnList                // VULN_LIST only: the request asked for details
	kbIDSetList               // ID_SET only: the request asked for details=None
)

// Summary is what a Validator saw. It is complete once Read has returned
// io.EOF; before that it holds what was read so far.
type Summary struct {
	Root            string
	Bytes           int64
	Hosts           int // IDs reported through OnID: host IDs, or QIDs under RootKB
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

	kind xmlscan.Kind
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
	s   xmlscan.Scanner
	val valState // the Qualys rules, as the scanner's Handler

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
	v.val.cfg = &v.cfg
	v.val.scan = v.s.Init(&v.val, valErrorRoots)
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
	sum := v.val.sum
	sum.Bytes = v.n
	return sum
}

func (v *Validator) feed(b []byte) {
	if v.errorBody || v.s.Stopped() {
		// The scanner stopped; only the head is still of interest.
		v.keepHead(b)
		return
	}
	v.s.Scan(b)
	switch err := v.s.Err(); {
	case v.s.Stopped() && valErrorRoot(v.val.sum.Root):
		v.errorBody = true
		v.keepHead(b)
	case v.s.Stopped():
		v.final = failure.Retryable(fmt.Errorf("qualys%s: %w %s, want %s", valWhere(v.cfg.Endpoint), ErrUnexpectedRoot, v.val.sum.Root, v.cfg.Root))
	case err != nil && !v.s.RootSeen():
		// Not XML before any element: maybe an HTML page with a
		// lowercase doctype. The head decides at the end.
		v.errorBody = true
		v.keepHead(b)
	case err != nil:
		v.final = v.malformed(err)
	case !v.s.RootSeen():
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
	v.s.Finish()
	switch err := v.s.Err(); {
	case err != nil && !v.s.RootSeen():
		return v.errorDocument()
	case err != nil:
		return v.malformed(err)
	}
	return io.EOF
}

// errorDocument judges a body that is an error document, or nothing
// recognisable at all.
func (v *Validator) errorDocument() error {
	e, ok := parseErrorDocument(v.head)
	switch {
	case ok:
	case v.s.Stopped():
		// The scanner saw an error document's root (a wrong root ends
		// the body before it gets here); the lenient parser lost it.
		e = APIError{Root: v.val.sum.Root, SecondsToWait: -1, CallsToFinish: -1}
	case v.s.Err() != nil:
		return v.malformed(v.s.Err())
	default:
		return v.malformed(&xmlscan.Error{Kind: xmlscan.KindNoRoot, Offset: v.n, Msg: "no root element"})
	}
	if v.val.sum.Root == "" {
		v.val.sum.Root = e.Root
	}
	e.Endpoint, e.Status = v.cfg.Endpoint, v.cfg.Status
	if v.cfg.Scrub != nil {
		e.Text = v.cfg.Scrub(e.Text)
	}
	return classify(e, v.cfg.Limits, v.cfg.Waits)
}

func (v *Validator) malformed(se *xmlscan.Error) error {
	return failure.Retryable(&MalformedError{
		Endpoint: v.cfg.Endpoint,
		Status:   v.cfg.Status,
		Offset:   se.Offset,
		CutShort: se.Kind == xmlscan.KindCutShort || se.Kind == xmlscan.KindNoRoot,
		Reason:   se.Msg,
		kind:     se.Kind,
	})
}

// valState is the Qualys side of validation: the scanner's Handler, which
// judges the root, refuses an error document inside it, and reads the
// host IDs and the WARNING on the way.
type valState struct {
	cfg  *ValidatorConfig // Root and OnID; the Validator's own
	scan *xmlscan.Scanner // for the path of the open elements in faults
	sum  Summary
	buf  []byte // text of the element being read
	kb   bool   // the root is RootKB: IDs are QIDs
	qid  bool   // the open VULN has had its QID
}

// valErrorRoots are the roots of Qualys error documents, which the
// validator must hear of wherever they are.
var valErrorRoots = []string{"SIMPLE_RETURN", "GENERIC_RETURN"}

// Element contexts: where an open element sits, as far as the validator
// cares. Everything else, DETECTION and all below it included, is
// xmlscan.Skip: the scanner does not call Start there but for an error
// document's root.
const (
	valCtxRoot xmlscan.Context = iota + 1
	valCtxResponse
	valCtxIDSet
	valCtxHostList
	valCtxHost
	valCtxDetectionList
	valCtxWarning
	valCtxKBRoot     // RootKB
	valCtxKBResponse // RootKB/RESPONSE
	valCtxVulnList
	valCtxVuln

	// Contexts whose text the validator reads.
	valCtxID = iota + 1 | xmlscan.WantText
	valCtxIDRange
	valCtxHostID
	valCtxWarningCode
	valCtxWarningText
	valCtxWarningURL
	valCtxQID
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

// valFault is a fault the validator finds in what the scanner hands it.
func valFault(kind xmlscan.Kind, off int64, format string, args ...any) error {
	return &xmlscan.Error{Kind: kind, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// Start implements xmlscan.Handler: it judges the root, refuses an error
// document inside it, and names the elements whose text the validator
// reads. It is one switch, not a chain of calls: it runs for every
// element that is not below a Skip one.
func (v *valState) Start(parent xmlscan.Context, name []byte, off int64) (xmlscan.Context, error) {
	if parent == xmlscan.Document {
		return v.startRoot(name)
	}
	if string(name) == "SIMPLE_RETURN" || string(name) == "GENERIC_RETURN" {
		// An error document inside the answer (I2): whatever came
		// before it, the answer is not whole.
		return xmlscan.Skip, valFault(xmlscan.KindSyntax, off, "error document %s inside %s", name, v.sum.Root)
	}
	ctx := xmlscan.Skip
	switch parent {
	case valCtxRoot:
		if string(name) == "RESPONSE" {
			ctx = valCtxResponse
		}
	case valCtxResponse:
		switch string(name) {
		case "ID_SET":
			ctx = valCtxIDSet
		case "HOST_LIST":
			ctx = valCtxHostList
		case "WARNING":
			v.sum.Warning = &Warning{}
			ctx = valCtxWarning
		}
	case valCtxIDSet:
		switch string(name) {
		case "ID":
			ctx = valCtxID
		case "ID_RANGE":
			ctx = valCtxIDRange
		}
	case valCtxHostList:
		if string(name) == "HOST" {
			ctx = valCtxHost
		}
	case valCtxHost:
		switch string(name) {
		case "ID":
			ctx = valCtxHostID
		case "DETECTION_LIST":
			ctx = valCtxDetectionList
		}
	case valCtxDetectionList:
		if string(name) == "DETECTION" {
			v.sum.Detections++
		}
	case valCtxKBRoot:
		if string(name) == "RESPONSE" {
			ctx = valCtxKBResponse
		}
	case valCtxKBResponse:
		switch string(name) {
		case "VULN_LIST":
			if v.cfg.list == kbIDSetList {
				return xmlscan.Skip, valFault(xmlscan.KindContent, off, "VULN_LIST in the answer to a details=None listing")
			}
			ctx = valCtxVulnList
		case "ID_SET":
			if v.cfg.list == kbVulnList {
				return xmlscan.Skip, valFault(xmlscan.KindContent, off, "ID_SET in the answer to a request for VULN details")
			}
			ctx = valCtxIDSet
		case "WARNING":
			v.sum.Warning = &Warning{}
			ctx = valCtxWarning
		}
	case valCtxVulnList:
		if string(name) == "VULN" {
			v.qid = false
			ctx = valCtxVuln
		}
	case valCtxVuln:
		if string(name) == "QID" {
			if v.qid {
				return xmlscan.Skip, valFault(xmlscan.KindContent, off, "VULN with a second QID")
			}
			ctx = valCtxQID
		}
	case valCtxWarning:
		switch string(name) {
		case "CODE":
			ctx = valCtxWarningCode
		case "TEXT":
			ctx = valCtxWarningText
		case "URL":
			ctx = valCtxWarningURL
		}
	}
	if ctx&xmlscan.WantText != 0 {
		v.buf = v.buf[:0]
	}
	return ctx, nil
}

// startRoot judges the root element; the scan goes on only for the
// expected document. The Validator tells the two reasons to stop apart by
// the root's name.
func (v *valState) startRoot(name []byte) (xmlscan.Context, error) {
	v.sum.Root = string(name)
	if valErrorRoot(v.sum.Root) || v.cfg.Root != "" && v.sum.Root != v.cfg.Root {
		return xmlscan.Skip, xmlscan.ErrStop
	}
	if v.sum.Root == RootKB {
		// Its own contexts, so that a KB answer's lists are read only
		// under its root and a detection answer's only under theirs.
		v.kb = true
		return valCtxKBRoot, nil
	}
	return valCtxRoot, nil
}

// valErrorRoot reports whether root names an error document: Qualys' own
// or an HTML page.
func valErrorRoot(root string) bool {
	return root == "SIMPLE_RETURN" || root == "GENERIC_RETURN" || strings.EqualFold(root, "html")
}

// Text implements xmlscan.Handler: it keeps the text of the element being
// read, up to that element's limit.
func (v *valState) Text(ctx xmlscan.Context, p []byte, off int64) error {
	limit := valMaxIDText
	switch ctx {
	case valCtxWarningText:
		limit = valMaxWarningText
	case valCtxWarningURL:
		limit = valMaxWarningURL
	}
	if len(v.buf)+len(p) > limit {
		return valFault(xmlscan.KindLimit, off+int64(limit-len(v.buf)), "text of %s longer than %d bytes", v.scan.Path(), limit)
	}
	v.buf = append(v.buf, p...)
	return nil
}

// End implements xmlscan.Handler: it acts on the text of an element that
// was read.
func (v *valState) End(ctx xmlscan.Context, off int64) error {
	if ctx&xmlscan.WantText == 0 {
		if ctx == valCtxVuln && !v.qid {
			// A VULN nobody can name cannot be told apart from a QID
			// not asked for, nor stored under one.
			return valFault(xmlscan.KindContent, off, "VULN without a QID")
		}
		return nil
	}
	text := bytes.Trim(v.buf, " \t\r\n")
	switch ctx {
	case valCtxID, valCtxHostID, valCtxQID:
		id, ok := valParseID(text)
		if !ok {
			return valFault(xmlscan.KindContent, off, "%s %q is not a positive integer", v.idName(), text)
		}
		v.qid = true
		v.emit(id)
	case valCtxIDRange:
		if err := v.emitRange(text, off); err != nil {
			return err
		}
	case valCtxWarningCode:
		code, ok := valParseID(text)
		if !ok || code > 1<<31 {
			return valFault(xmlscan.KindContent, off, "WARNING CODE %q is not a number", text)
		}
		v.sum.Warning.Code = int(code)
	case valCtxWarningText:
		v.sum.Warning.Text = string(text)
	case valCtxWarningURL:
		v.sum.Warning.URL = string(text)
	}
	v.buf = v.buf[:0]
	return nil
}

// emitRange emits every ID of an ID_RANGE "a-b".
func (v *valState) emitRange(text []byte, off int64) error {
	lo, hi, _ := bytes.Cut(text, []byte("-"))
	a, okA := valParseID(bytes.Trim(lo, " \t\r\n"))
	b, okB := valParseID(bytes.Trim(hi, " \t\r\n"))
	switch {
	case !okA || !okB:
		return valFault(xmlscan.KindContent, off, "ID_RANGE %q is not a range of %ss", text, v.idName())
	case b < a:
		return valFault(xmlscan.KindContent, off, "ID_RANGE %q runs backwards", text)
	case b-a >= valMaxRange:
		return valFault(xmlscan.KindLimit, off, "ID_RANGE %q holds more than %d IDs", text, valMaxRange)
	}
	if v.cfg.OnRange != nil || v.cfg.OnID == nil {
		// Counted, not walked: a range costs the same whatever its width.
		if v.sum.Hosts == 0 {
			v.sum.FirstID = a
		}
		v.sum.Hosts += int(b-a) + 1
		v.sum.LastID = b
		if v.cfg.OnRange != nil {
			v.cfg.OnRange(a, b)
		}
		return nil
	}
	for id := a; ; id++ {
		v.emit(id)
		if id == b {
			return nil
		}
	}
}

// idName names the IDs of the answer, for faults.
func (v *valState) idName() string {
	if v.kb {
		return "QID"
	}
	return "host ID"
}

func (v *valState) emit(id uint64) {
	if v.sum.Hosts == 0 {
		v.sum.FirstID = id
	}
	v.sum.Hosts++
	v.sum.LastID = id
	if v.cfg.OnID != nil {
		v.cfg.OnID(id)
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
