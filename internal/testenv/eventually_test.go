package testenv_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/testenv"
)

// fakeTB records how a helper ended a test instead of ending this one.
type fakeTB struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (f *fakeTB) Helper()      {}
func (f *fakeTB) Name() string { return "TestFake" }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls fn with a fakeTB on its own goroutine, as Goexit needs.
func run(fn func(testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

func TestEventually(t *testing.T) {
	tests := []struct {
		name       string
		trueAfter  int64 // calls; 0 = never
		wantFailed bool
		wantMsg    string
	}{
		{name: "true at once", trueAfter: 1},
		{name: "true after a few polls", trueAfter: 5},
		{name: "never true", wantFailed: true, wantMsg: "waiting for 42 widgets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int64
			cond := func() bool {
				n := calls.Add(1)
				return tt.trueAfter > 0 && n >= tt.trueAfter
			}
			f := run(func(tb testing.TB) {
				testenv.Eventually(tb, 200*time.Millisecond, cond, "waiting for %d widgets", 42)
			})
			if f.failed != tt.wantFailed {
				t.Fatalf("failed = %v, want %v (msg %q)", f.failed, tt.wantFailed, f.msg)
			}
			if !strings.Contains(f.msg, tt.wantMsg) {
				t.Fatalf("message %q lacks %q", f.msg, tt.wantMsg)
			}
			if tt.trueAfter > 0 && calls.Load() != tt.trueAfter {
				t.Fatalf("cond called %d times, want %d", calls.Load(), tt.trueAfter)
			}
			if tt.wantFailed && calls.Load() < 2 {
				t.Fatalf("cond called %d times before giving up; it was not polled", calls.Load())
			}
		})
	}
}

func TestEventuallyOKReportsLastError(t *testing.T) {
	var n atomic.Int64
	f := run(func(tb testing.TB) {
		testenv.EventuallyOK(tb, 100*time.Millisecond, func() error {
			return fmt.Errorf("attempt %d: %w", n.Add(1), errors.New("not yet"))
		}, "bucket ready")
	})
	if !f.failed {
		t.Fatal("EventuallyOK did not fail")
	}
	want := fmt.Sprintf("attempt %d: not yet", n.Load())
	if !strings.Contains(f.msg, want) || !strings.Contains(f.msg, "bucket ready") {
		t.Fatalf("message %q lacks %q or the caller's text", f.msg, want)
	}

	f = run(func(tb testing.TB) {
		testenv.EventuallyOK(tb, time.Second, func() error { return nil })
	})
	if f.failed {
		t.Fatalf("EventuallyOK failed on a nil error: %s", f.msg)
	}
}

func TestMissingBinary(t *testing.T) {
	tests := []struct {
		ci          string
		wantFailed  bool
		wantSkipped bool
	}{
		{ci: "true", wantFailed: true},
		{ci: "", wantSkipped: true},
		{ci: "false", wantSkipped: true},
	}
	for _, tt := range tests {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			f := run(func(tb testing.TB) { testenv.Binary(tb, "qfetch-no-such-tool") })
			if f.failed != tt.wantFailed || f.skipped != tt.wantSkipped {
				t.Fatalf("failed, skipped = %v, %v; want %v, %v", f.failed, f.skipped, tt.wantFailed, tt.wantSkipped)
			}
			if !strings.Contains(f.msg, "scripts/install-tools") {
				t.Fatalf("message %q does not say how to install", f.msg)
			}
		})
	}
}
