package fetch

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/qualys"
)

func TestDecide(t *testing.T) {
	r := rules{MaxFailures: 5, SplitAfter: 3, BreakAfter: 4, ProbeEvery: 30 * time.Second, MaxBackoff: 2 * time.Minute}
	retryable := failure.ClassRetryable
	outage := streakState{Failures: 4, Spread: true}
	tests := []struct {
		name    string
		a       attempt
		want    verdict // Delay is checked against lo..hi
		lo, hi  time.Duration
		counted bool // joins the outage streak
		charged bool // counts against the batch
	}{
		{name: "stored", a: attempt{Stored: true}, want: verdict{Kind: ack}},
		{name: "our stop hands back uncharged", a: attempt{Class: retryable, Stopping: true, Failures: 9},
			want: verdict{Kind: handBack}},
		{name: "our stop beats back-pressure", a: attempt{Class: failure.ClassBackPressure, Stopping: true, Wait: time.Minute},
			want: verdict{Kind: handBack}},
		{name: "back-pressure waits as told, plus jitter", a: attempt{Class: failure.ClassBackPressure, Wait: 10 * time.Second},
			want: verdict{Kind: delay}, lo: 10 * time.Second, hi: 11 * time.Second},
		{name: "back-pressure never dead-letters", a: attempt{Class: failure.ClassBackPressure, Wait: time.Second, Failures: 99, Streak: outage},
			want: verdict{Kind: delay}, lo: time.Second, hi: 1100 * time.Millisecond},
		{name: "back-pressure without a wait", a: attempt{Class: failure.ClassBackPressure},
			want: verdict{Kind: delay}},
		{name: "fleet-wide pauses", a: attempt{Class: failure.ClassFleetWide, TooBig: true, Failures: 99},
			want: verdict{Kind: pause, Reason: "fleet-wide fault"}, lo: r.ProbeEvery, hi: r.ProbeEvery},
		{name: "permanent dead-letters at once", a: attempt{Class: failure.ClassPermanent},
			want: verdict{Kind: deadLetter, Reason: "permanent failure"}},
		{name: "failures over batches are an outage", a: attempt{Class: retryable, Streak: outage},
			want: verdict{Kind: pause, Reason: "repeated failures across batches"}, lo: r.ProbeEvery, hi: r.ProbeEvery, counted: true},
		{name: "unclassified failures too", a: attempt{Class: failure.ClassUnknown, Streak: outage},
			want: verdict{Kind: pause, Reason: "repeated failures across batches"}, lo: r.ProbeEvery, hi: r.ProbeEvery, counted: true},
		{name: "one batch failing alone is no outage", a: attempt{Class: retryable, Streak: streakState{Failures: 9}, Failures: 2},
			want: verdict{Kind: retryLater, Attempt: 2}, lo: 30 * time.Second, hi: time.Minute, counted: true, charged: true},
		{name: "a streak short of BreakAfter is no outage", a: attempt{Class: retryable, Streak: streakState{Failures: 3, Spread: true}, Failures: 1},
			want: verdict{Kind: retryLater, Attempt: 1}, lo: 15 * time.Second, hi: 30 * time.Second, counted: true, charged: true},
		{name: "an oversized batch is charged whatever the streak", a: attempt{Class: retryable, TooBig: true, CanSplit: true, Streak: outage, Failures: 1},
			want: verdict{Kind: retryLater, Attempt: 1}, lo: 15 * time.Second, hi: 30 * time.Second, charged: true},
		{name: "a failed count retries as the first", a: attempt{Class: retryable},
			want: verdict{Kind: retryLater}, lo: 15 * time.Second, hi: 30 * time.Second, counted: true, charged: true},
		{name: "back-off doubles", a: attempt{Class: retryable, Failures: 3},
			want: verdict{Kind: retryLater, Attempt: 3}, lo: time.Minute, hi: 2 * time.Minute, counted: true, charged: true},
		{name: "back-off is capped", a: attempt{Class: retryable, Failures: 4},
			want: verdict{Kind: retryLater, Attempt: 4}, lo: time.Minute, hi: 2 * time.Minute, counted: true, charged: true},
		{name: "spent retries dead-letter", a: attempt{Class: retryable, Failures: 5},
			want: verdict{Kind: deadLetter, Reason: "5 failed attempts"}, counted: true, charged: true},
		{name: "spent retries dead-letter before a split", a: attempt{Class: retryable, TooBig: true, CanSplit: true, Failures: 6},
			want: verdict{Kind: deadLetter, Reason: "6 failed attempts"}, charged: true},
		{name: "an oversized batch splits after SplitAfter", a: attempt{Class: retryable, TooBig: true, CanSplit: true, Failures: 3},
			want: verdict{Kind: split, Attempt: 3}, lo: time.Minute, hi: 2 * time.Minute, charged: true},
		{name: "not before", a: attempt{Class: retryable, TooBig: true, CanSplit: true, Failures: 2},
			want: verdict{Kind: retryLater, Attempt: 2}, lo: 30 * time.Second, hi: time.Minute, charged: true},
		{name: "one host cannot split", a: attempt{Class: retryable, TooBig: true, Failures: 3},
			want: verdict{Kind: retryLater, Attempt: 3}, lo: time.Minute, hi: 2 * time.Minute, charged: true},
		{name: "only a size failure splits", a: attempt{Class: retryable, CanSplit: true, Failures: 3},
			want: verdict{Kind: retryLater, Attempt: 3}, lo: time.Minute, hi: 2 * time.Minute, counted: true, charged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := counted(tt.a); got != tt.counted {
				t.Errorf("counted = %v, want %v", got, tt.counted)
			}
			if got := charged(tt.a, r); got != tt.charged {
				t.Errorf("charged = %v, want %v", got, tt.charged)
			}
			for range 50 { // the delays carry jitter
				got := decide(tt.a, r)
				if got.Delay < tt.lo || got.Delay > tt.hi {
					t.Fatalf("%v: delay %s, want within [%s, %s]", got.Kind, got.Delay, tt.lo, tt.hi)
				}
				got.Delay = 0
				if got != tt.want {
					t.Fatalf("decide = %+v (%v), want %+v (%v)", got, got.Kind, tt.want, tt.want.Kind)
				}
			}
		})
	}
}

// TestAttemptFromError: the error's chain gives the verdict's inputs.
func TestAttemptFromError(t *testing.T) {
	base := errors.New("boom")
	stopped, stop := context.WithCancelCause(context.Background())
	stop(errGraceOver)
	timeout := &timeoutErr{}
	tests := []struct {
		name     string
		ctx      context.Context
		err      error
		stopping bool
		tooBig   bool
	}{
		{"plain", context.Background(), base, false, false},
		{"idle timeout", context.Background(), fmt.Errorf("page 1: %w", qualys.ErrIdleTimeout), false, true},
		{"deadline", context.Background(), context.DeadlineExceeded, false, true},
		{"too large", context.Background(), failure.Retryable(fmt.Errorf("%w: 414", qualys.ErrTooLarge)), false, true},
		{"a net timeout", context.Background(), fmt.Errorf("read: %w", timeout), false, true},
		{"cancelled, but not by us", context.Background(), context.Canceled, false, false},
		{"our grace is over", stopped, fmt.Errorf("put: %w", errGraceOver), true, false},
		{"our stop cancelled it", stopped, fmt.Errorf("put: %w", context.Canceled), true, false},
		{"a failure of its own while stopping", stopped, base, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stopping(tt.ctx, tt.err); got != tt.stopping {
				t.Errorf("stopping = %v, want %v", got, tt.stopping)
			}
			if got := tooBig(tt.err); got != tt.tooBig {
				t.Errorf("tooBig = %v, want %v", got, tt.tooBig)
			}
		})
	}
}

type timeoutErr struct{}

func (*timeoutErr) Error() string { return "i/o timeout" }
func (*timeoutErr) Timeout() bool { return true }

func TestStreak(t *testing.T) {
	var s streak
	steps := []struct {
		key  string
		want streakState
	}{
		{"r/1", streakState{1, false}},
		{"r/1", streakState{2, false}},
		{"r/2", streakState{3, true}},
		{"r/1", streakState{4, true}},
	}
	for i, st := range steps {
		if got := s.fail(st.key); got != st.want {
			t.Fatalf("step %d: fail(%s) = %+v, want %+v", i, st.key, got, st.want)
		}
	}
	s.reset()
	if got := s.fail("r/2"); got != (streakState{1, false}) {
		t.Fatalf("after a success: %+v", got)
	}
}
