package retry

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		n      int
		base   time.Duration
		max    time.Duration
		lo, hi time.Duration
	}{
		{1, 30 * time.Second, 10 * time.Minute, 15 * time.Second, 30 * time.Second},
		{2, 30 * time.Second, 10 * time.Minute, 30 * time.Second, time.Minute},
		{5, 30 * time.Second, 10 * time.Minute, 4 * time.Minute, 8 * time.Minute},
		{6, 30 * time.Second, 10 * time.Minute, 5 * time.Minute, 10 * time.Minute},
		{1000, 30 * time.Second, 10 * time.Minute, 5 * time.Minute, 10 * time.Minute},
		{0, time.Second, time.Minute, 500 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		for range 200 {
			if d := Backoff(tt.n, tt.base, tt.max); d < tt.lo || d > tt.hi {
				t.Fatalf("Backoff(%d, %s, %s) = %s, want within [%s, %s]", tt.n, tt.base, tt.max, d, tt.lo, tt.hi)
			}
		}
	}
}

func TestJitter(t *testing.T) {
	if Jitter(0) != 0 || Jitter(-time.Second) != 0 {
		t.Fatal("jitter of nothing is nothing")
	}
	for range 200 {
		if d := Jitter(10 * time.Second); d < 10*time.Second || d > 11*time.Second {
			t.Fatalf("Jitter(10s) = %s", d)
		}
	}
}
