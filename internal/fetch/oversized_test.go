package fetch_test

import (
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/testenv"
)

// TestOversizedBatchesStillSplit: every batch of the run stalls (the
// batches are too big for one call) while the fleet's one-host probe
// passes. The stalls trip the breaker, but the probe passing says they are
// the batches' own: their charges stand, so the batches reach SplitAfter
// and get split.
func TestOversizedBatchesStillSplit(t *testing.T) {
	d := &detectionCalls{stall: func(string) bool { return true }}
	e := setupCalls(t, opts{hosts: 400, batchSize: 200, maxFailures: 20}, d)
	stop := e.start(e.worker(fetch.Config{Slots: 1, SplitAfter: 2}, ""))
	defer stop()
	testenv.Eventually(t, 45*time.Second, func() bool {
		s, err := e.q.Splits(t.Context(), run)
		return err == nil && len(s) > 0
	}, "no batch split: every timeout after the breaker tripped went uncharged")
}
