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
	r := rules{MaxFailures: 5, SplitAfter: 3, ProbeEvery: 30 * time.Second, MaxBackoff: 2 * time.Minute}
	retryable := failure.ClassRetryable
	tests := []struct {
		name      string
		a         attempt
		want      verdict // Delay is checked against lo..hi
		lo, hi    time.Duration
		streaked  bool // joins the fleet's streak
		chargable bool // counts against the batch
	}{
		{name: "stored", a: attempt{Stored: true}, want: verdict{Kind: ack}},
		{name: "our stop hands back uncharged", a: attempt{Class: retryable, Stopping: true, Failures: 9},
			want: verdict{Kind: handBack}},
		{name: "our stop beats back-pressure", a: attempt{Class: failure.ClassBackPressure, Stopping: true, Wait: time.Minute},
			want: verdict{Kind: handBack}},
		{name: "a lost lease abandons uncharged", a: attempt{Class: retryable, LeaseLost: true, Failures: 9},
			want: verdict{Kind: abandon}},
		{name: "a lost lease beats a fleet-wide fault", a: attempt{Class: failure.ClassFleetWide, LeaseLost: true},
			want: verdict{Kind: abandon}},
		{name: "back-pressure holds the fleet as told, plus jitter", a: attempt{Class: failure.ClassBackPressure, Wait: 10 * time.Second},
			want: verdict{Kind: hold}, lo: 10 * time.Second, hi: 11 * time.Second},
		{name: "back-pressure never dead-letters", a: attempt{Class: failure.ClassBackPressure, Wait: time.Second, Failures: 99},
			want: verdict{Kind: hold}, lo: time.Second, hi: 1100 * time.Millisecond},
		{name: "back-pressure without a wait", a: attempt{Class: failure.ClassBackPressure},
			want: verdict{Kind: hold}},
		{name: "maintenance pauses the fleet and probes", a: attempt{Class: failure.ClassBackPressure, Maintenance: true, Wait: 15 * time.Minute},
			want: verdict{Kind: pause, Pause: pauseMaintenance, Reason: "Qualys scheduled maintenance"}, lo: r.ProbeEvery, hi: r.ProbeEvery},
		{name: "fleet-wide pauses", a: attempt{Class: failure.ClassFleetWide, TooBig: true, Failures: 99},
			want: verdict{Kind: pause, Pause: pauseFault, Reason: "fleet-wide fault"}, lo: r.ProbeEvery, hi: r.ProbeEvery},
		{name: "JetStream unavailable waits uncharged and pauses no fleet", a: attempt{Class: failure.ClassFleetWide, Unavailable: true, Failures: 9},
			want: verdict{Kind: retryLater, Reason: "JetStream is unavailable"}, lo: r.ProbeEvery, hi: r.ProbeEvery},
		{name: "JetStream unavailable beats a retryable class", a: attempt{Class: retryable, Unavailable: true, Failures: 1},
			want: verdict{Kind: retryLater, Reason: "JetStream is unavailable"}, lo: r.ProbeEvery, hi: r.ProbeEvery},
		{name: "a stored batch whose bookkeeping failed waits uncharged", a: attempt{Class: retryable, Bookkeeping: true, Failures: 1},
			want: verdict{Kind: retryLater, Reason: "recording the stored batch failed"}, lo: r.ProbeEvery, hi: r.ProbeEvery},
		{name: "permanent dead-letters at once", a: attempt{Class: failure.ClassPermanent},
			want: verdict{Kind: deadLetter, Reason: "permanent failure"}},
		{name: "a failure during a fleet pause waits it out uncharged", a: attempt{Class: retryable, Paused: true, Failures: 4},
			want: verdict{Kind: retryLater, Reason: "the fleet is paused"}, lo: r.ProbeEvery, hi: r.ProbeEvery},
		{name: "unclassified failures are retried", a: attempt{Class: failure.ClassUnknown, Failures: 1},
			want: verdict{Kind: retryLater, Attempt: 1}, lo: 15 * time.Second, hi: 30 * time.Second, streaked: true, chargable: true},
		{name: "the failure that trips the breaker retries as any other", a: attempt{Class: retryable, Tripped: true, Failures: 2},
			want: verdict{Kind: retryLater, Attempt: 2}, lo: 30 * time.Second, hi: time.Minute, streaked: true, chargable: true},
		{name: "an oversized batch is charged, and joins the streak (a stalling Qualys looks the same)", a: attempt{Class: retryable, TooBig: true, CanSplit: true, Failures: 1},
			want: verdict{Kind: retryLater, Attempt: 1}, lo: 15 * time.Second, hi: 30 * time.Second, streaked: true, chargable: true},
		{name: "a failed count retries as the first", a: attempt{Class: retryable},
			want: verdict{Kind: retryLater}, lo: 15 * time.Second, hi: 30 * time.Second, streaked: true, chargable: true},
		{name: "back-off doubles", a: attempt{Class: retryable, Failures: 3},
			want: verdict{Kind: retryLater, Attempt: 3}, lo: time.Minute, hi: 2 * time.Minute, streaked: true, chargable: true},
		{name: "back-off is capped", a: attempt{Class: retryable, Failures: 4},
			want: verdict{Kind: retryLater, Attempt: 4}, lo: time.Minute, hi: 2 * time.Minute, streaked: true, chargable: true},
		{name: "spent retries wait for their next delivery to dead-letter", a: attempt{Class: retryable, Failures: 5},
			want: verdict{Kind: retryLater, Attempt: 5}, lo: time.Minute, hi: 2 * time.Minute, streaked: true, chargable: true},
		{name: "a spent oversized batch does not split", a: attempt{Class: retryable, TooBig: true, CanSplit: true, Failures: 6},
			want: verdict{Kind: retryLater, Attempt: 6}, lo: time.Minute, hi: 2 * time.Minute, streaked: true, chargable: true},
		{name: "an oversized batch splits after SplitAfter", a: attempt{Class: retryable, TooBig: true, CanSplit: true, Failures: 3},
			want: verdict{Kind: split, Attempt: 3}, lo: time.Minute, hi: 2 * time.Minute, streaked: true, chargable: true},
		{name: "not before", a: attempt{Class: retryable, TooBig: true, CanSplit: true, Failures: 2},
			want: verdict{Kind: retryLater, Attempt: 2}, lo: 30 * time.Second, hi: time.Minute, streaked: true, chargable: true},
		{name: "one host cannot split", a: attempt{Class: retryable, TooBig: true, Failures: 3},
			want: verdict{Kind: retryLater, Attempt: 3}, lo: time.Minute, hi: 2 * time.Minute, streaked: true, chargable: true},
		{name: "only a size failure splits", a: attempt{Class: retryable, CanSplit: true, Failures: 3},
			want: verdict{Kind: retryLater, Attempt: 3}, lo: time.Minute, hi: 2 * time.Minute, streaked: true, chargable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := streaked(tt.a); got != tt.streaked {
				t.Errorf("streaked = %v, want %v", got, tt.streaked)
			}
			if got := chargeable(tt.a); got != tt.chargable {
				t.Errorf("chargeable = %v, want %v", got, tt.chargable)
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

func TestSpent(t *testing.T) {
	r := rules{MaxFailures: 3}
	for n, want := range map[int]bool{0: false, 2: false, 3: true, 4: true} {
		if got := spent(n, r); got != want {
			t.Errorf("spent(%d) = %v, want %v", n, got, want)
		}
	}
	if spent(99, rules{}) {
		t.Error("no limit configured: nothing is spent")
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
