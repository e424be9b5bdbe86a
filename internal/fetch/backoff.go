package fetch

import (
	"math/rand/v2"
	"time"
)

// Backoff is the wait before the next try after failure number n (1-based):
// 30 s doubling, full jitter over the upper half, capped. It starts at 30 s
// because Qualys' own scripts wait 30 + 2^n s: a 5xx there is rarely gone
// in a second, and every early retry spends a call of the rate limit.
func Backoff(n int, maxWait time.Duration) time.Duration {
	d := 30 * time.Second << min(max(n-1, 0), 16)
	if d > maxWait || d <= 0 {
		d = maxWait
	}
	return d/2 + rand.N(d/2+1)
}

// jitter adds up to 10 %, so workers told the same wait do not all return
// at the same instant.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + rand.N(d/10+1)
}
