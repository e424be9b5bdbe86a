package tables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/qualys/xmlscan"
)

// readChunk is the size of the reads an object is scanned in.
const readChunk = 64 << 10

// Text limits. RESULTS holds a scan's evidence and may be long; everything
// else is short. Past a limit the object is refused rather than cut, so a
// table never holds a silently shortened value.
const (
	maxResults = 16 << 20
	maxText    = 64 << 10
	maxAttrs   = 4 << 10 // the attributes of QDS and QDS_FACTOR
	maxIDRange = 1 << 24 // as the validator's bound on one ID_RANGE
)

// errorRoots are Qualys error documents, refused wherever they appear.
var errorRoots = []string{"SIMPLE_RETURN", "GENERIC_RETURN"}

// malformed is the error of an object that is not the document it should
// be: permanent, since converting it again gives the same answer.
func malformed(key string, se *xmlscan.Error) error {
	what := "malformed at byte"
	if se.Kind == xmlscan.KindCutShort || se.Kind == xmlscan.KindNoRoot {
		what = "cut short at byte"
	}
	return failure.Permanent(fmt.Errorf("%w: %s %s %d: %s", ErrMalformed, key, what, se.Offset, se.Msg))
}

// fault is a content fault found by a handler.
func fault(off int64, format string, args ...any) error {
	return &xmlscan.Error{Kind: xmlscan.KindContent, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// feeder drives an xmlscan.Scanner over one object and reads what the
// scanner does not report: the attributes of an element the handler asks
// for (captureAttrs), taken from the raw bytes after its name.
type feeder struct {
	s        xmlscan.Scanner
	buf      []byte
	chunk    []byte // the chunk being scanned
	chunkOff int64  // its offset in the object
	n        int64  // bytes read

	attrs     []byte // the attributes being captured, up to maxAttrs
	attrOpen  bool   // the start tag goes on in the next chunk
	attrQuote byte   // inside a quoted value
}

// errStopped is what run returns when a hook stopped the scan: the hook's
// owner holds the reason (an error of the writer, not of the XML).
var errStopped = errors.New("tables: scan stopped")

// run scans r to its end for h. Any fault of the XML is returned as
// ErrMalformed.
func (f *feeder) run(ctx context.Context, key string, r io.Reader, h xmlscan.Handler) error {
	if f.buf == nil {
		f.buf = make([]byte, readChunk)
	}
	f.s.Init(h, errorRoots)
	f.n, f.attrOpen, f.attrs = 0, false, f.attrs[:0]
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(f.buf)
		if n > 0 {
			b := f.buf[:n]
			if f.attrOpen {
				f.capture(b)
			}
			f.chunk, f.chunkOff = b, f.n
			f.n += int64(n)
			f.s.Scan(b)
			if e := f.s.Err(); e != nil {
				return malformed(key, e)
			}
			if f.s.Stopped() {
				return errStopped
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("tables: reading %s: %w", key, err)
		}
	}
	f.s.Finish()
	if e := f.s.Err(); e != nil {
		return malformed(key, e)
	}
	return nil
}

// captureAttrs starts reading the attributes of the element whose name
// ends at off.
func (f *feeder) captureAttrs(off int64) {
	f.attrs, f.attrQuote, f.attrOpen = f.attrs[:0], 0, true
	if i := off - f.chunkOff; i >= 0 && i <= int64(len(f.chunk)) {
		f.capture(f.chunk[i:])
	}
}

// capture reads b up to the '>' that ends the start tag.
func (f *feeder) capture(b []byte) {
	for i, c := range b {
		switch {
		case f.attrQuote != 0:
			if c == f.attrQuote {
				f.attrQuote = 0
			}
		case c == '"' || c == '\'':
			f.attrQuote = c
		case c == '>':
			f.attrOpen = false
			f.keep(b[:i])
			return
		}
	}
	f.keep(b)
}

func (f *feeder) keep(b []byte) {
	if room := maxAttrs - len(f.attrs); len(b) > room {
		b = b[:room]
	}
	f.attrs = append(f.attrs, b...)
}

// attr is the value of the attribute name in the captured attributes,
// with its references replaced.
func (f *feeder) attr(name string) ([]byte, bool) {
	a := f.attrs
	for len(a) > 0 {
		a = bytes.TrimLeft(a, " \t\r\n/")
		eq := bytes.IndexByte(a, '=')
		if eq < 0 {
			return nil, false
		}
		n := bytes.TrimRight(a[:eq], " \t\r\n")
		a = bytes.TrimLeft(a[eq+1:], " \t\r\n")
		if len(a) == 0 || a[0] != '"' && a[0] != '\'' {
			return nil, false
		}
		end := bytes.IndexByte(a[1:], a[0])
		if end < 0 {
			return nil, false
		}
		v := a[1 : 1+end]
		a = a[end+2:]
		if string(n) == name {
			return unescape(v), true
		}
	}
	return nil, false
}

// unescape replaces XML's predefined and character references; the
// scanner has checked them.
func unescape(v []byte) []byte {
	if bytes.IndexByte(v, '&') < 0 {
		return v
	}
	out := make([]byte, 0, len(v))
	for len(v) > 0 {
		amp := bytes.IndexByte(v, '&')
		semi := bytes.IndexByte(v[max(amp, 0):], ';')
		if amp < 0 || semi < 0 {
			return append(out, v...)
		}
		out = append(out, v[:amp]...)
		ref := v[amp+1 : amp+semi]
		v = v[amp+semi+1:]
		switch string(ref) {
		case "lt":
			out = append(out, '<')
		case "gt":
			out = append(out, '>')
		case "amp":
			out = append(out, '&')
		case "apos":
			out = append(out, '\'')
		case "quot":
			out = append(out, '"')
		default:
			if len(ref) > 1 && ref[0] == '#' {
				base, digits := 10, ref[1:]
				if digits[0] == 'x' {
					base, digits = 16, digits[1:]
				}
				if r, err := strconv.ParseUint(string(digits), base, 32); err == nil {
					out = fmt.Appendf(out, "%c", rune(r))
				}
			}
		}
	}
	return out
}

// textBuf gathers an element's text up to its limit.
type textBuf struct {
	b     []byte
	limit int
}

func (t *textBuf) start(limit int) { t.b, t.limit = t.b[:0], limit }

func (t *textBuf) add(p []byte, off int64, path func() string) error {
	if len(t.b)+len(p) > t.limit {
		return &xmlscan.Error{Kind: xmlscan.KindLimit, Offset: off, Msg: fmt.Sprintf("text of %s longer than %d bytes", path(), t.limit)}
	}
	t.b = append(t.b, p...)
	return nil
}

// value is the text, whitespace around it trimmed: Qualys puts line breaks
// around some CDATA sections (Elastic's sample). RESULTS is kept whole.
func (t *textBuf) value() []byte { return bytes.Trim(t.b, " \t\r\n") }

// interner gives one string per distinct short value, so that columns
// with few values (status, type, OS…) cost no allocation per row.
type interner map[string]string

const maxInterned = 4096

func (in interner) get(b []byte) string {
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in) < maxInterned && len(b) <= 128 {
		in[s] = s
	}
	return s
}

// Typed values. An empty element is NULL; anything else that does not
// parse is a fault of the object.

// parseQID parses a QID element's text, which must be there: detections
// and KnowledgeBase rows alike are keyed by it.
func parseQID(b []byte, off int64) (int32, error) {
	n, ok, err := parseInt(b, 32, off, "QID")
	if err == nil && !ok {
		err = fault(off, "empty QID")
	}
	return int32(n), err
}

func parseInt(b []byte, bits int, off int64, what string) (int64, bool, error) {
	if len(b) == 0 {
		return 0, false, nil
	}
	neg := b[0] == '-'
	digits := b
	if neg {
		digits = b[1:]
	}
	if len(digits) == 0 || len(digits) > 19 {
		return 0, false, fault(off, "%s %q is not a number", what, b)
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false, fault(off, "%s %q is not a number", what, b)
		}
		n = n*10 + int64(c-'0')
	}
	if n < 0 || bits == 32 && n > 1<<31-1 {
		return 0, false, fault(off, "%s %q is out of range", what, b)
	}
	if neg {
		n = -n
	}
	return n, true, nil
}

func setInt32(p **int32, storage *int32, b []byte, off int64, what string) error {
	n, ok, err := parseInt(b, 32, off, what)
	if ok {
		*storage, *p = int32(n), storage
	}
	return err
}

func setInt64(p **int64, storage *int64, b []byte, off int64, what string) error {
	n, ok, err := parseInt(b, 64, off, what)
	if ok {
		*storage, *p = n, storage
	}
	return err
}

func setBool(p **bool, storage *bool, b []byte, off int64, what string) error {
	switch string(b) {
	case "":
		return nil
	case "0", "false":
		*storage = false
	case "1", "true":
		*storage = true
	default:
		return fault(off, "%s %q is not 0 or 1", what, b)
	}
	*p = storage
	return nil
}

// setTime reads Qualys' times, "2023-07-03T06:51:41Z", by hand (the common
// case), or as RFC 3339.
func setTime(t *time.Time, b []byte, off int64, what string) error {
	if len(b) == 0 {
		return nil
	}
	if v, ok := fastTime(b); ok {
		*t = v
		return nil
	}
	v, err := time.Parse(time.RFC3339, string(b))
	if err != nil {
		return fault(off, "%s %q is not a time", what, b)
	}
	*t = v.UTC()
	return nil
}

func fastTime(b []byte) (time.Time, bool) {
	if len(b) != 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[19] != 'Z' {
		return time.Time{}, false
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range b[i : i+n] {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	y, mo, d, h, mi, s := num(0, 4), num(5, 2), num(8, 2), num(11, 2), num(14, 2), num(17, 2)
	if y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 59 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mo), d, h, mi, s, 0, time.UTC)
	if t.Day() != d { // 31 February and the like: let time.Parse refuse it
		return time.Time{}, false
	}
	return t, true
}

// envelope places an element of the frame both tables' documents share:
// an error document fails the part, the root must be root, and RESPONSE
// sits under it. ok is false below RESPONSE, where each parser places the
// element itself.
func envelope(parent xmlscan.Context, name []byte, off int64, root string) (ctx xmlscan.Context, ok bool, err error) {
	if string(name) == "SIMPLE_RETURN" || string(name) == "GENERIC_RETURN" {
		return xmlscan.Skip, true, fault(off, "error document %s", name)
	}
	switch parent {
	case xmlscan.Document:
		if string(name) != root {
			return xmlscan.Skip, true, fault(off, "root element %s, want %s", name, root)
		}
		return ctxRoot, true, nil
	case ctxRoot:
		if string(name) == "RESPONSE" {
			return ctxResponse, true, nil
		}
		return xmlscan.Skip, true, nil
	}
	return xmlscan.Skip, false, nil
}
