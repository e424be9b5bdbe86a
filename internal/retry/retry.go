// Package retry holds the one back-off policy qfetch uses between attempts:
// exponential with jitter and a cap, as a pure function of the attempt.
package retry

import (
	"math/rand/v2"
	"time"
)

// Backoff is the wait before the next try after failure number n
// (1-based): base doubling per failure, capped at maxWait, with full jitter
// over the upper half so that many waiters spread out.
func Backoff(n int, base, maxWait time.Duration) time.Duration {
	d := base << min(max(n-1, 0), 20)
	if d > maxWait || d <= 0 {
		d = maxWait
	}
	return d/2 + rand.N(d/2+1)
}

// Jitter adds up to 10 % to d, so workers told the same wait do not all
// return at the same instant.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + rand.N(d/10+1)
}
