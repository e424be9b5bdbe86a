package testenv

import (
	"fmt"
	"testing"
	"time"
)

// pollEvery is short so that a test waits little past the moment its
// condition turns true, and long enough not to spin a core.
const pollEvery = 10 * time.Millisecond

// Eventually polls cond until it returns true and fails the test if that has
// not happened within timeout. msgAndArgs is an optional fmt format and its
// arguments, saying what was awaited. Call it from the test's goroutine.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msgAndArgs ...any) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("testenv.Eventually: not true after %v: %s", timeout, message(msgAndArgs))
	}
}

// EventuallyOK polls f until it returns nil and fails the test, with the last
// error, if that has not happened within timeout.
func EventuallyOK(t testing.TB, timeout time.Duration, f func() error, msgAndArgs ...any) {
	t.Helper()
	var last error
	if !poll(timeout, func() bool { last = f(); return last == nil }) {
		t.Fatalf("testenv.EventuallyOK: still failing after %v: %s: last error: %v", timeout, message(msgAndArgs), last)
	}
}

// poll checks cond at once, then every pollEvery, and once more at or after
// the deadline, so a slow cond still gets its last chance.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		<-tick.C
	}
}

func message(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return "condition"
	}
	if format, ok := msgAndArgs[0].(string); ok {
		return fmt.Sprintf(format, msgAndArgs[1:]...)
	}
	return fmt.Sprint(msgAndArgs...)
}
