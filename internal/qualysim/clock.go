package qualysim

import (
	"sync"
	"time"
)

// Clock is the simulated time: what "now" means for DATETIME, for which
// hosts have been processed, and for the rate-limit window. A frozen clock
// moves only when told to, so tests advance a day instead of waiting one; a
// ticking clock also follows the wall clock, for interactive use. Real-time
// behaviour (stalls, slow first byte, bandwidth) never uses it.
type Clock struct {
	mu      sync.Mutex
	base    time.Time // simulated time at wallRef
	wallRef time.Time
	ticking bool
}

// NewClock returns a clock reading start; ticking makes it advance with the
// wall clock as well.
func NewClock(start time.Time, ticking bool) *Clock {
	return &Clock{base: start.UTC(), wallRef: time.Now(), ticking: ticking}
}

// Now returns the simulated time, to the second (Qualys dates have no
// fraction, and whole seconds keep answers byte-identical).
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *Clock) nowLocked() time.Time {
	t := c.base
	if c.ticking {
		t = t.Add(time.Since(c.wallRef))
	}
	return t.Truncate(time.Second)
}

// Advance moves the clock forward by d (backward if d < 0).
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base = c.base.Add(d)
	return c.nowLocked()
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base, c.wallRef = t.UTC(), time.Now()
}

// Ticking reports whether the clock follows the wall clock.
func (c *Clock) Ticking() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ticking
}
