package runstat

import (
	"math"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/ledger"
)

// TestBytesRoundsIntoNextUnit: a size that rounds up to 1024 of a unit is
// one of the next unit, as every other size tool prints it; and the
// extremes do not wrap.
func TestBytesRoundsIntoNextUnit(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{1<<20 - 1, "1.0 MiB"},
		{1<<20 - 51, "1.0 MiB"},
		{1<<20 - 52, "1023.9 KiB"},
		{1<<30 - 1, "1.0 GiB"},
		{-(1<<20 - 1), "-1.0 MiB"},
		{math.MaxInt64, "8.0 EiB"},
		{math.MinInt64, "-8.0 EiB"},
	} {
		if got := Bytes(tc.n); got != tc.want {
			t.Errorf("Bytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestActionCountsDeadLetters: the action of a run with one dead letter
// says "1 batch", as every other count (#18.8), not "1 batch(es)".
func TestActionCountsDeadLetters(t *testing.T) {
	for n, want := range map[int]string{1: "1 batch dead-lettered", 3: "3 batches dead-lettered"} {
		got := action(Status{Run: "r1", State: ledger.RunFailed, DeadLetters: n})
		if !strings.HasPrefix(got, want+":") {
			t.Errorf("action with %d dead letters: %q, want it to start %q", n, got, want)
		}
	}
}
