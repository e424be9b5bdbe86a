package natsperm

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// RefusedError is NATS refusing this process a subject: its credentials do
// not allow the operation. Whatever was asked on that subject never
// happened; the request that needed it times out, since the server answers
// a refusal only with an asynchronous -ERR.
type RefusedError struct {
	Op      string // "publish to", "subscribe to" or "publish with the reply"
	Subject string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("NATS refused this process to %s %q: its credentials do not allow it "+
		"(is the right role's NATS user configured? see natsperm.For)", e.Op, e.Subject)
}

// Is makes a refusal match nats.ErrPermissionViolation.
func (e *RefusedError) Is(target error) bool { return target == nats.ErrPermissionViolation }

// Operation names the JetStream operation a refused subject stands for,
// for the log line an operator reads: "create stream QFETCH_BATCHES",
// "write key watermark of bucket QFETCH_STATE", "publish on
// qfetch.batch.<run>".
func (e *RefusedError) Operation() string {
	s := e.Subject
	if rest, ok := strings.CutPrefix(s, "$JS.API."); ok {
		return apiOperation(rest)
	}
	if rest, ok := strings.CutPrefix(s, "$KV."); ok {
		bucket, key, _ := strings.Cut(rest, ".")
		return fmt.Sprintf("write key %s of bucket %s", key, bucket)
	}
	if strings.HasPrefix(s, "$JS.ACK.") {
		return "acknowledge a message"
	}
	return e.Op + " " + s
}

// apiOperation names a JetStream API request by its subject after
// $JS.API.: "CONSUMER.CREATE.S.C.filter" is "create consumer C on stream S".
func apiOperation(rest string) string {
	t := strings.Split(rest, ".")
	switch {
	case len(t) >= 4 && t[0] == "CONSUMER":
		return fmt.Sprintf("%s consumer %s on stream %s", strings.ToLower(t[1]), t[3], t[2])
	case len(t) >= 4 && t[0] == "STREAM" && t[1] == "MSG":
		return fmt.Sprintf("%s a message of stream %s", strings.ToLower(t[2]), t[3])
	case len(t) >= 3 && t[0] == "STREAM":
		return fmt.Sprintf("%s stream %s", strings.ToLower(t[1]), t[2])
	case len(t) >= 3 && t[0] == "DIRECT":
		return "read a message of stream " + t[2]
	}
	return "JetStream API request " + rest
}

// Refusal reads a refusal out of an error the NATS client reported (to its
// error handler): nil when err is no permission violation.
//
// The server says which subject it refused only in the text of its -ERR
// line ("Permissions Violation for Publish to \"subject\""); nats.go wraps
// that text in nats.ErrPermissionViolation and has no field for it (it
// reads the text itself, for subscriptions). This is the one place qfetch
// reads the server's text.
func Refusal(err error) *RefusedError {
	if err == nil || !errors.Is(err, nats.ErrPermissionViolation) {
		return nil
	}
	var re *RefusedError
	if errors.As(err, &re) {
		return re
	}
	text := err.Error()
	for _, op := range []struct{ server, ours string }{
		{"for Publish with Reply of ", "publish with the reply"},
		{"for Publish to ", "publish to"},
		{"for Subscription to ", "subscribe to"},
	} {
		if _, rest, ok := strings.Cut(text, op.server); ok {
			subject := rest
			if s, _, ok := strings.Cut(strings.TrimPrefix(rest, `"`), `"`); ok {
				subject = s
			}
			return &RefusedError{Op: op.ours, Subject: subject}
		}
	}
	return &RefusedError{Op: "use", Subject: "(a subject the server did not name)"}
}

// Refusals are the refusals one connection met, kept for whoever sees the
// request that needed the refused subject fail. Safe for concurrent use.
type Refusals struct {
	mu   sync.Mutex
	seen []*RefusedError
}

// Note records err if it is a refusal; it returns the refusal and whether
// its subject is new (log it once, not per retry).
func (r *Refusals) Note(err error) (*RefusedError, bool) {
	re := Refusal(err)
	if re == nil {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.seen {
		if *s == *re {
			return re, false
		}
	}
	r.seen = append(r.seen, re)
	return re, true
}

// Err is every refusal met so far, joined; nil when none.
func (r *Refusals) Err() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	errs := make([]error, len(r.seen))
	for i, s := range r.seen {
		errs[i] = s
	}
	return errors.Join(errs...)
}
