package qualys

import (
	"net/http"
	"strconv"
	"strings"
)

// Limits are the rate and concurrency limit headers of one response
// (qualys-api.md §6.1). A field is -1 when its header was absent: Qualys
// leaves them off some error answers, and a worker must not mistake "absent"
// for "zero remaining".
type Limits struct {
	RateLimit          int // X-RateLimit-Limit: calls allowed per window
	RateWindowSec      int // X-RateLimit-Window-Sec
	RateRemaining      int // X-RateLimit-Remaining
	ToWaitSec          int // X-RateLimit-ToWait-Sec: 0 unless blocked
	ConcurrencyLimit   int // X-Concurrency-Limit-Limit
	ConcurrencyRunning int // X-Concurrency-Limit-Running, this call included
}

// NoLimits is a Limits with every header absent.
var NoLimits = Limits{-1, -1, -1, -1, -1, -1}

// ParseLimits reads the limit headers; absent or malformed ones are -1.
func ParseLimits(h http.Header) Limits {
	get := func(name string) int {
		v := strings.TrimSpace(h.Get(name))
		if v == "" {
			return -1
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return -1
		}
		return n
	}
	return Limits{
		RateLimit:          get("X-RateLimit-Limit"),
		RateWindowSec:      get("X-RateLimit-Window-Sec"),
		RateRemaining:      get("X-RateLimit-Remaining"),
		ToWaitSec:          get("X-RateLimit-ToWait-Sec"),
		ConcurrencyLimit:   get("X-Concurrency-Limit-Limit"),
		ConcurrencyRunning: get("X-Concurrency-Limit-Running"),
	}
}
