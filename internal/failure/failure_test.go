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
		is    error
	}{
		{"nil", nil, ClassUnknown, 0, nil},
		{"plain", base, ClassUnknown, 0, nil},
		{"retryable", Retryable(base), ClassRetryable, 0, ErrRetryable},
		{"back-pressure", BackPressure(time.Minute, base), ClassBackPressure, time.Minute, ErrBackPressure},
		{"fleet-wide", FleetWide(base), ClassFleetWide, 0, ErrFleetWide},
		{"permanent", Permanent(base), ClassPermanent, 0, ErrPermanent},
		{"wrapped keeps its class", fmt.Errorf("batch 7: %w", Permanent(base)), ClassPermanent, 0, ErrPermanent},
		{"outermost class wins", FleetWide(fmt.Errorf("ctx: %w", Retryable(base))), ClassFleetWide, 0, ErrFleetWide},
		{"deadline is retryable", fmt.Errorf("call: %w", context.DeadlineExceeded), ClassRetryable, 0, nil},
		{"cancel is the caller's", fmt.Errorf("call: %w", context.Canceled), ClassUnknown, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClassOf(tt.err); got != tt.class {
				t.Fatalf("ClassOf = %v, want %v", got, tt.class)
			}
			if got := WaitOf(tt.err); got != tt.wait {
				t.Fatalf("WaitOf = %v, want %v", got, tt.wait)
			}
			if tt.is != nil && !errors.Is(tt.err, tt.is) {
				t.Fatalf("errors.Is(%v, %v) = false", tt.err, tt.is)
			}
			if tt.is != nil && !errors.Is(tt.err, base) {
				t.Fatal("the cause is lost")
			}
		})
	}
	if Retryable(nil) != nil {
		t.Fatal("classifying nil must stay nil")
	}
	if errors.Is(Retryable(base), ErrPermanent) {
		t.Fatal("a retryable error matched ErrPermanent")
	}
}
