package failure

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestClassOf(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name  string
		err   error
		class Class
		wait  time.Duration
		wraps bool // err wraps base through a classification
	}{
		{"nil", nil, ClassUnknown, 0, false},
		{"plain", base, ClassUnknown, 0, false},
		{"retryable", Retryable(base), ClassRetryable, 0, true},
		{"back-pressure", BackPressure(time.Minute, base), ClassBackPressure, time.Minute, true},
		{"fleet-wide", FleetWide(base), ClassFleetWide, 0, true},
		{"permanent", Permanent(base), ClassPermanent, 0, true},
		{"wrapped keeps its class", fmt.Errorf("batch 7: %w", Permanent(base)), ClassPermanent, 0, true},
		{"outermost class wins", FleetWide(fmt.Errorf("ctx: %w", Retryable(base))), ClassFleetWide, 0, true},
		{"deadline is retryable", fmt.Errorf("call: %w", context.DeadlineExceeded), ClassRetryable, 0, false},
		{"cancel is the caller's", fmt.Errorf("call: %w", context.Canceled), ClassUnknown, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClassOf(tt.err); got != tt.class {
				t.Fatalf("ClassOf = %v, want %v", got, tt.class)
			}
			if got := WaitOf(tt.err); got != tt.wait {
				t.Fatalf("WaitOf = %v, want %v", got, tt.wait)
			}
			var e *Error
			if tt.wraps && (!errors.As(tt.err, &e) || e.Class != tt.class) {
				t.Fatalf("errors.As(%v, *Error) does not give class %v", tt.err, tt.class)
			}
			if tt.wraps && !errors.Is(tt.err, base) {
				t.Fatal("the cause is lost")
			}
		})
	}
	if Retryable(nil) != nil {
		t.Fatal("classifying nil must stay nil")
	}
	if ClassOf(Retryable(base)) == ClassPermanent {
		t.Fatal("a retryable error classified permanent")
	}
}
