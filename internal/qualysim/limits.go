package qualysim

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// limiter enforces one API's concurrency and rate limits (qualys-api.md §6):
// per API, concurrency checked first, a sliding rate window on the
// simulated clock. Refused calls neither run nor count against the window.
type limiter struct {
	concLimit int // ≤ 0: unlimited
	rateLimit int // ≤ 0: off
	window    time.Duration

	mu      sync.Mutex
	running int
	peak    int
	calls   []time.Time // admission times in the window, a ring of rateLimit entries
	head, n int
}

func newLimiter(conc, rate int, window time.Duration) *limiter {
	l := &limiter{concLimit: conc, rateLimit: rate, window: window}
	if rate > 0 {
		l.calls = make([]time.Time, rate)
	}
	return l
}

// verdict is the outcome of an admission check, and the headers to send.
type verdict struct {
	ok            bool
	code          int // 1960 or 1965 when refused
	callsToFinish int
	toWait        int // seconds
	remaining     int
	running       int
	rateLimit     int
	windowSec     int
	concLimit     int
}

// expire drops admissions that left the window (now − window, now].
func (l *limiter) expire(now time.Time) {
	for l.n > 0 && !l.calls[l.head].After(now.Add(-l.window)) {
		l.head = (l.head + 1) % len(l.calls)
		l.n--
	}
}

func (l *limiter) admit(now time.Time) verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := verdict{rateLimit: l.rateLimit, windowSec: int(l.window / time.Second), concLimit: l.concLimit}
	if l.rateLimit > 0 {
		l.expire(now)
	}
	v.remaining = l.rateLimit - l.n
	switch {
	case l.concLimit > 0 && l.running >= l.concLimit:
		v.code = 1960
		v.callsToFinish = l.running - l.concLimit + 1
		v.running = l.running
		return v
	case l.rateLimit > 0 && l.n >= l.rateLimit:
		v.code = 1965
		oldest := l.calls[l.head]
		wait := oldest.Add(l.window).Sub(now)
		v.toWait = max(int((wait+time.Second-1)/time.Second), 1)
		v.running = l.running
		return v
	}
	v.ok = true
	l.running++
	l.peak = max(l.peak, l.running)
	v.running = l.running
	if l.rateLimit > 0 {
		l.calls[(l.head+l.n)%len(l.calls)] = now
		l.n++
		v.remaining = l.rateLimit - l.n
	}
	return v
}

func (l *limiter) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running--
}

func (l *limiter) snapshot(now time.Time) (running, peak, used int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rateLimit > 0 {
		l.expire(now)
	}
	return l.running, l.peak, l.n
}

func (l *limiter) resetPeak() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.peak = l.running
}

// setHeaders writes the limit headers. A disabled limit sends none of its
// headers rather than a number a client could misread as "0 remaining".
func (v verdict) setHeaders(h http.Header) {
	if v.rateLimit > 0 {
		h.Set("X-RateLimit-Limit", strconv.Itoa(v.rateLimit))
		h.Set("X-RateLimit-Window-Sec", strconv.Itoa(v.windowSec))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(max(v.remaining, 0)))
		h.Set("X-RateLimit-ToWait-Sec", strconv.Itoa(v.toWait))
	}
	if v.concLimit > 0 {
		h.Set("X-Concurrency-Limit-Limit", strconv.Itoa(v.concLimit))
		h.Set("X-Concurrency-Limit-Running", strconv.Itoa(v.running))
	}
}

// refusalText is Qualys' wording for a refused call.
func (v verdict) refusalText() string {
	if v.code == 1960 {
		if v.callsToFinish == 1 {
			return "This API cannot be run again until 1 currently running API instance has finished."
		}
		return "This API cannot be run again until " + strconv.Itoa(v.callsToFinish) +
			" currently running API instances have finished."
	}
	s := v.toWait
	return "This API cannot be run again for another " + strconv.Itoa(s/3600) + " hours, " +
		strconv.Itoa(s/60%60) + " minutes and " + strconv.Itoa(s%60) + " seconds."
}
