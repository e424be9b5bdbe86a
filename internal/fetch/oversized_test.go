package fetch_test

import (
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
)

// TestOversizedBatchesStillSplit: every batch of the run stalls (the
// batches are too big for one call) while the login probe passes. Stalls
// are a size signal, not an outage: they are charged whatever else fails,
// so the batches reach SplitAfter and get split.
func TestOversizedBatchesStillSplit(t *testing.T) {
	e := setup(t, opts{hosts: 400, batchSize: 200, maxFailures: 20,
		sim: qualysim.Config{Faults: qualysim.Faults{StallFor: time.Minute}}})
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.FaultStall, 1000); err != nil {
		t.Fatal(err)
	}
	stop := e.start(e.worker(fetch.Config{Slots: 1, SplitAfter: 2}, ""))
	defer stop()
	testenv.Eventually(t, 45*time.Second, func() bool {
		s, err := e.q.Splits(t.Context(), run)
		return err == nil && len(s) > 0
	}, "no batch split: every timeout after the breaker tripped went uncharged")
}
