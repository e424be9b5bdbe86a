package main

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// call is one detection call as the simulator's listener saw it: from the
// request's arrival to the handler's return (body written, or the call
// refused, cut or abandoned).
type call struct {
	Start, End time.Time
	// IDs is the form's ids; empty for the fleet's probe (a one-host
	// detection call with no ids, see qualys.Client.Probe).
	IDs    string
	Status int
}

func (c call) probe() bool { return c.IDs == "" }

// callLog wraps the simulator's handler and keeps every detection call:
// the simulator's Stats count calls but say neither when nor which batch.
type callLog struct {
	next  http.Handler
	mu    sync.Mutex
	calls []call
}

func (l *callLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, detectionSuffix) {
		l.next.ServeHTTP(w, r)
		return
	}
	c := call{Start: time.Now()}
	// The form is small (ids as ranges); read it here and hand a copy on.
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	if form, err := url.ParseQuery(string(body)); err == nil {
		c.IDs = form.Get("ids")
	}
	sw := &statusWriter{ResponseWriter: w}
	// Deferred so that a call the simulator aborts (panic ErrAbortHandler,
	// the reset fault) is kept too.
	defer func() {
		c.End, c.Status = time.Now(), sw.status
		l.mu.Lock()
		l.calls = append(l.calls, c)
		l.mu.Unlock()
	}()
	l.next.ServeHTTP(sw, r)
}

const detectionSuffix = "/fo/asset/host/vm/detection/"

// take returns the calls kept so far and forgets them.
func (l *callLog) take() []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.calls
	l.calls = nil
	slices.SortFunc(out, func(a, b call) int { return a.Start.Compare(b.Start) })
	return out
}

// statusWriter notes the status; Unwrap keeps the simulator's
// ResponseController (Flush) working through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// interval is [From, To).
type interval struct{ From, To time.Time }

func (i interval) seconds() float64 { return i.To.Sub(i.From).Seconds() }

// overlap is how long c ran inside iv.
func overlap(c call, iv interval) time.Duration {
	from, to := c.Start, c.End
	if iv.From.After(from) {
		from = iv.From
	}
	if iv.To.Before(to) {
		to = iv.To
	}
	return max(to.Sub(from), 0)
}

// busyIn sums every call's time inside the intervals: the fleet's slot
// time spent at the simulator.
func busyIn(calls []call, ivs []interval) time.Duration {
	var d time.Duration
	for _, iv := range ivs {
		for _, c := range calls {
			d += overlap(c, iv)
		}
	}
	return d
}

// firstAtLeast is the first instant at or after from when n calls run at
// once, and whether there is one.
func firstAtLeast(calls []call, from time.Time, n int) (time.Time, bool) {
	type edge struct {
		at time.Time
		d  int
	}
	var edges []edge
	for _, c := range calls {
		if c.End.After(from) {
			edges = append(edges, edge{c.Start, +1}, edge{c.End, -1})
		}
	}
	// Ends before starts at the same instant: a call that ends as the next
	// starts is not two at once.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.d - b.d
	})
	running := 0
	for _, e := range edges {
		running += e.d
		if running >= n {
			if e.at.Before(from) {
				return from, true
			}
			return e.at, true
		}
	}
	return time.Time{}, false
}
