package qualys

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
)

// APIError is what Qualys (or a proxy in front of it) said about a failed
// call. It never holds credentials: it is built from the response alone.
type APIError struct {
	Endpoint string // request path, e.g. /api/2.0/fo/asset/host/vm/detection/
	Status   int    // HTTP status; 0 when the error was found in a streamed body
	Code     int    // Qualys error code; 0 when the body carried none
	Text     string // Qualys' text, or an HTML page's title
	Root     string // SIMPLE_RETURN, GENERIC_RETURN, html, or "" when the body was not a document

	// SecondsToWait and CallsToFinish come from the ITEM_LIST of 1965 and
	// 1960 answers; -1 when absent.
	SecondsToWait int
	CallsToFinish int
}

func (e APIError) Error() string {
	var b strings.Builder
	b.WriteString("qualys ")
	if e.Endpoint != "" {
		b.WriteString(e.Endpoint)
		b.WriteString(": ")
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, "HTTP %d", e.Status)
	} else {
		b.WriteString("error document in body")
	}
	if e.Code != 0 {
		fmt.Fprintf(&b, ", code %d", e.Code)
	}
	if e.Text != "" {
		b.WriteString(": ")
		b.WriteString(e.Text)
	}
	return b.String()
}

// ErrMaintenance is matched (errors.Is) by a 1999 "scheduled maintenance"
// answer, whether it came as an HTTP error document or inside a 200 body.
// Its class stays back-pressure; the sentinel lets the fleet tell a
// maintenance window, which it waits out as one, from a busy slot.
var ErrMaintenance = errors.New("qualys scheduled maintenance (1999)")

// Is makes errors.Is(err, ErrMaintenance) hold for a 1999 answer.
func (e APIError) Is(target error) bool { return target == ErrMaintenance && e.Code == codeMaintenance }

// Qualys error codes qfetch decides on (qualys-api.md §5.3).
const (
	CodeTruncated        = 1980 // WARNING on a truncated page, not an error
	codeBlocked          = 1920
	codeConcurrencyLimit = 1960
	codeRateLimit        = 1965
	codeInProgress       = 1981
	codeInternal         = 999
	codeMaintenance      = 1999
)

// codeClass is the retry classification as data: a code decides the class
// before the HTTP status does, because Qualys sends error documents with
// HTTP 200 too.
var codeClass = map[int]failure.Class{
	1901: failure.ClassPermanent, // unrecognized parameter
	1903: failure.ClassPermanent, // missing required parameter
	1904: failure.ClassPermanent, // only one of these parameters
	1905: failure.ClassPermanent, // invalid parameter value
	1907: failure.ClassPermanent, // unsupported combination
	1908: failure.ClassPermanent, // method incompatible with parameter
	1922: failure.ClassPermanent, // at least one of these parameters

	codeBlocked:          failure.ClassBackPressure,
	codeConcurrencyLimit: failure.ClassBackPressure,
	codeRateLimit:        failure.ClassBackPressure,
	codeMaintenance:      failure.ClassBackPressure, // maintenance: wait, never dead-letter

	codeInternal:   failure.ClassRetryable,
	codeInProgress: failure.ClassRetryable,

	2000: failure.ClassFleetWide, // bad login/password, no API access, wrong platform
	2001: failure.ClassFleetWide, // account expired
	2002: failure.ClassFleetWide, // account inactive
	2003: failure.ClassFleetWide, // registration not completed
	2011: failure.ClassFleetWide, // SecureID required
	2012: failure.ClassFleetWide, // licence does not allow this API
}

// statusClass decides when the body names no known code.
func statusClass(status int) failure.Class {
	switch {
	case status == http.StatusUnauthorized, status == http.StatusForbidden,
		status == http.StatusNotFound, status == http.StatusProxyAuthRequired,
		status >= 300 && status < 400:
		// Wrong credentials, no API access, or a base URL that is not a
		// Qualys API server (a redirect, a 404): every call of every
		// worker fails alike.
		return failure.ClassFleetWide
	case status == http.StatusConflict, status == http.StatusTooManyRequests:
		return failure.ClassBackPressure
	case status == http.StatusRequestTimeout, status >= 500:
		return failure.ClassRetryable
	case status >= 400:
		return failure.ClassPermanent
	default:
		// An error document with 200 and a code we do not know: another
		// attempt is cheap, and delivery limits end a hopeless one.
		return failure.ClassRetryable
	}
}

// Waits are the delays used when Qualys asks for back-pressure without
// saying how long.
type Waits struct {
	Concurrency time.Duration // 1960/1920 or a 409 without details
	RateLimit   time.Duration // 1965 without SECONDS_TO_WAIT or X-RateLimit-ToWait-Sec
	Maintenance time.Duration // 1999 scheduled maintenance
}

// DefaultWaits follow what the vendor's and peers' clients do
// (qualys-api.md §6.3): a short wait for a busy slot, a long one otherwise.
var DefaultWaits = Waits{
	Concurrency: 10 * time.Second,
	RateLimit:   5 * time.Minute,
	Maintenance: 15 * time.Minute,
}

// MaxToldWait bounds a wait Qualys names: its rate windows are an hour, a
// day at most (qualys-api.md §6); a longer or garbled number — one that
// would overflow a Duration, or hold the whole fleet for weeks — is not
// believed.
const MaxToldWait = 24 * time.Hour

// toldWait is secs seconds, at most MaxToldWait, computed without overflow.
func toldWait(secs int) time.Duration {
	if secs >= int(MaxToldWait/time.Second) {
		return MaxToldWait
	}
	return time.Duration(secs) * time.Second
}

// classify attaches the failure class, and for back-pressure the wait, to e.
func classify(e APIError, lim Limits, w Waits) error {
	class, known := codeClass[e.Code]
	if !known {
		class = statusClass(e.Status)
	}
	if class != failure.ClassBackPressure {
		return wrapClass(class, e)
	}
	var wait time.Duration
	switch {
	case e.SecondsToWait > 0:
		wait = toldWait(e.SecondsToWait)
	case lim.ToWaitSec > 0:
		wait = toldWait(lim.ToWaitSec)
	case e.Code == codeRateLimit:
		wait = w.RateLimit
	case e.Code == codeMaintenance:
		wait = w.Maintenance
	default:
		wait = w.Concurrency
	}
	return failure.BackPressure(wait, e)
}

func wrapClass(c failure.Class, err error) error {
	switch c {
	case failure.ClassPermanent:
		return failure.Permanent(err)
	case failure.ClassFleetWide:
		return failure.FleetWide(err)
	default:
		return failure.Retryable(err)
	}
}

// maxErrorBody bounds how much of an error answer is read: error documents
// are a few hundred bytes, and a proxy's page is not worth more.
const maxErrorBody = 64 << 10

// readErrorBody reads at most maxErrorBody bytes of an error answer.
func readErrorBody(r io.Reader) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, maxErrorBody))
	return b
}

// parseErrorDocument reads a Qualys error document (SIMPLE_RETURN or
// GENERIC_RETURN, with or without declaration, DOCTYPE and comments) or an
// HTML page. ok is false when raw is none of these. It never fails on a
// document that is not well-formed: it keeps what it read before the fault,
// because Qualys' own documented 999 sample is not well-formed.
func parseErrorDocument(raw []byte) (e APIError, ok bool) {
	e = APIError{SecondsToWait: -1, CallsToFinish: -1}
	d := xml.NewDecoder(bytes.NewReader(raw))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity

	var path []string
	var itemKey string
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name := t.Name.Local
			if len(path) == 0 {
				switch {
				case name == "SIMPLE_RETURN", name == "GENERIC_RETURN":
					e.Root = name
				case strings.EqualFold(name, "html"):
					e.Root = "html"
				default:
					return e, false
				}
			}
			path = append(path, name)
			if name == "RETURN" && e.Root == "GENERIC_RETURN" {
				for _, a := range t.Attr {
					if a.Name.Local == "number" {
						e.Code, _ = strconv.Atoi(strings.TrimSpace(a.Value))
					}
				}
			}
		case xml.EndElement:
			if len(path) > 0 {
				path = path[:len(path)-1]
			}
		case xml.CharData:
			if len(path) == 0 {
				continue
			}
			text := strings.TrimSpace(string(t))
			if text == "" {
				continue
			}
			switch leaf := path[len(path)-1]; {
			case e.Root == "SIMPLE_RETURN" && leaf == "CODE":
				e.Code, _ = strconv.Atoi(text)
			case e.Root == "SIMPLE_RETURN" && leaf == "TEXT", e.Root == "GENERIC_RETURN" && leaf == "RETURN":
				e.Text += text
			case e.Root == "SIMPLE_RETURN" && leaf == "KEY":
				itemKey = text
			case e.Root == "SIMPLE_RETURN" && leaf == "VALUE":
				n, err := strconv.Atoi(text)
				if err != nil {
					break
				}
				switch itemKey {
				case "SECONDS_TO_WAIT":
					e.SecondsToWait = n
				case "CALLS_TO_FINISH":
					e.CallsToFinish = n
				}
			case e.Root == "html" && (strings.EqualFold(leaf, "title") || strings.EqualFold(leaf, "h1")) && e.Text == "":
				e.Text = text
			}
		}
	}
	if e.Root == "" {
		return e, false
	}
	if e.Root == "GENERIC_RETURN" && e.Code == 0 {
		// The decoder may have stopped before RETURN in a malformed
		// document; the code is what matters for the decision.
		e.Code = scanNumberAttr(raw)
		if e.Text == "" {
			e.Text = scanElementText(raw, "RETURN")
		}
	}
	e.Text = clip(e.Text, 512)
	return e, true
}

// scanNumberAttr finds number="N" in a GENERIC_RETURN the decoder gave up on.
func scanNumberAttr(raw []byte) int {
	_, after, ok := bytes.Cut(raw, []byte(`number="`))
	if !ok {
		return 0
	}
	end := bytes.IndexByte(after, '"')
	if end < 0 {
		return 0
	}
	n, _ := strconv.Atoi(string(after[:end]))
	return n
}

// scanElementText returns the text of the first <name …>text</name>.
func scanElementText(raw []byte, name string) string {
	i := bytes.Index(raw, []byte("<"+name))
	if i < 0 {
		return ""
	}
	rest := raw[i:]
	gt := bytes.IndexByte(rest, '>')
	if gt < 0 {
		return ""
	}
	rest = rest[gt+1:]
	end := bytes.IndexByte(rest, '<')
	if end < 0 {
		return ""
	}
	return strings.TrimSpace(string(rest[:end]))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
