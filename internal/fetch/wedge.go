package fetch

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
)

// ErrWedged is wrapped by [Worker.Ready] while a batch message this worker
// must dead-letter cannot be: it comes back, and would come back for ever,
// so the worker reports it instead of looking healthy.
var ErrWedged = errors.New("wedged: a batch message cannot be dead-lettered")

// deadLetterTries is how many failed dead-letterings of one message, with
// NATS answering otherwise, wedge the worker.
const deadLetterTries = 3

// wedgeBackoff multiplies ProbeEvery into the wait of a message whose
// dead-lettering keeps failing: the longest a probe waits, so the message
// is tried again now and then (an operator's fix ends the wedge by itself)
// but never in a tight loop.
const wedgeBackoff = 16

// wedges counts this worker's failed dead-letterings per message. A message
// that failed deadLetterTries times wedges the worker until it is
// dead-lettered, or until it has not been seen for two waits (another
// worker or an operator took care of it).
type wedges struct {
	now func() time.Time
	ttl time.Duration

	mu     sync.Mutex
	failed map[string]*wedgeEntry
}

type wedgeEntry struct {
	tries int
	last  time.Time
	err   error
}

func newWedges(now func() time.Time, ttl time.Duration) *wedges {
	return &wedges{now: now, ttl: ttl, failed: map[string]*wedgeEntry{}}
}

// fail records a failed dead-lettering of key and returns its tries so far.
func (ws *wedges) fail(key string, err error) int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.expire()
	e := ws.failed[key]
	if e == nil {
		e = &wedgeEntry{}
		ws.failed[key] = e
	}
	e.tries++
	e.last, e.err = ws.now(), err
	return e.tries
}

// done forgets key: it was dead-lettered.
func (ws *wedges) done(key string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	delete(ws.failed, key)
}

// wedged returns how many messages wedge the worker, and the last error.
func (ws *wedges) wedged() (int, error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.expire()
	n, last := 0, error(nil)
	var at time.Time
	for _, e := range ws.failed {
		if e.tries >= deadLetterTries {
			n++
			if e.last.After(at) {
				at, last = e.last, e.err
			}
		}
	}
	return n, last
}

func (ws *wedges) expire() {
	for k, e := range ws.failed {
		if ws.now().Sub(e.last) > ws.ttl {
			delete(ws.failed, k)
		}
	}
}

// err is Ready's error while the worker is wedged: classed permanent (no
// retry of the batch fixes it; an operator must look) and wrapping
// ErrWedged.
func (ws *wedges) err() error {
	n, last := ws.wedged()
	if n == 0 {
		return nil
	}
	return failure.Permanent(&wedgedError{fmt.Errorf("%w: %d message(s) failed %d tries; last error: %s",
		ErrWedged, n, deadLetterTries, errText(last))})
}

// wedgedError names its readiness state, for /readyz (app.Stater).
type wedgedError struct{ err error }

func (e *wedgedError) Error() string { return e.err.Error() }

func (e *wedgedError) Unwrap() error { return e.err }

// ReadyState is the /readyz state word of a wedged worker.
func (e *wedgedError) ReadyState() string { return "wedged" }

// wedgeKey names m's batch across its deliveries: its Msg-Id (a retry's
// copy has the batch's), else its stream sequence.
func wedgeKey(m jetstream.Msg) string {
	if id := m.Headers().Get(jetstream.MsgIDHeader); id != "" {
		return id
	}
	if b, err := msg.Decode(m.Data()); err == nil {
		return b.MsgID()
	}
	if md, err := m.Metadata(); err == nil {
		return "seq:" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	return "subject:" + m.Subject()
}
