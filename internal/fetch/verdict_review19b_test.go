package fetch

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
)

// TestDecideBookkeepingKeepsItsClass: a failure to record a stored batch
// done is let off only while it may pass by itself (a stream between
// leaders). One that says it never will (Held.Done's permanent refusals: a
// result of another batch, a final claim written again) or that is the
// fleet's (JetStream not enabled) is decided by its class as before, not
// retried every ProbeEvery forever, uncharged and so never dead-lettered.
func TestDecideBookkeepingKeepsItsClass(t *testing.T) {
	r := rules{MaxFailures: 5, SplitAfter: 3, ProbeEvery: 30 * time.Second, MaxBackoff: 2 * time.Minute}
	wrap := func(err error) error { // as Worker.record wraps Held.Done's error
		return fmt.Errorf("recording batch 7 done: %w: %w", errBookkeeping, err)
	}
	tests := []struct {
		name string
		err  error
		want kind
	}{
		{"a permanent refusal dead-letters", wrap(failure.Permanent(errors.New("ledger: claim x: result of r.8"))), deadLetter},
		{"a fleet-wide fault pauses", wrap(failure.FleetWide(errors.New("jetstream not enabled"))), pause},
		{"a retryable one waits uncharged", wrap(failure.Retryable(errors.New("nats: timeout"))), retryLater},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := attempt{Class: failure.ClassOf(tt.err), Bookkeeping: errors.Is(tt.err, errBookkeeping), Failures: 1}
			if chargeable(a) {
				t.Errorf("chargeable: a failed bookkeeping is never charged")
			}
			if got := decide(a, r); got.Kind != tt.want {
				t.Fatalf("decide = %+v (%v), want %v", got, got.Kind, tt.want)
			}
		})
	}
}
