package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/testenv"
)

// c4. Quorum lost: two of the cluster's three nodes go down mid-run. It is
// a fleet-wide fault (I6): every worker stops pulling and reports not
// ready, with qfetch_worker_jetstream_unavailable at 1; a planner started
// meanwhile exits 3. The nodes come back: every worker is ready again
// without a restart, and the run completes exactly, host by host, with no
// failure charged to any batch and no dead letter.
func testClusterQuorumLoss(t *testing.T, b bins) {
	const pods = 3
	// Calls start 400 ms late, so the run outlasts the start of the loss.
	sim := startSim(t, b, append(dataset(sized(6000, 3000), 19),
		"--concurrency-limit", "0", "--slow-start", "400ms", "--fault", "slowstart=1")...)
	w := newClusterWorld(t, b, sim, sharedBucket(t))
	w.BatchSize, w.MaxInFlight = 150, 2
	var workers []*workerProc
	for i := range pods {
		workers = append(workers, w.worker(fmt.Sprintf("worker-%d", i+1), 1, ""))
	}
	id := w.plan()
	planned := w.Run(id).BatchesPlanned
	testenv.Eventually(t, 2*time.Minute, func() bool { return w.doneCount(id) >= 2 }, "the first batches stored")
	if n := w.doneCount(id); n > planned-4 {
		t.Fatalf("%d of %d batches done when the quorum went; the scenario needs queued work", n, planned)
	}

	// A worker still in its start checks on a loaded machine (it waits
	// for the planner's buckets) reports not ready when the quorum goes,
	// but serves no worker gauges yet: the gauge is asked of the started.
	started := map[string]bool{}
	for _, wp := range workers {
		if ready, err := wp.Ready(); err == nil && ready {
			started[wp.Name] = true
		}
	}
	if len(started) == 0 {
		t.Fatal("no worker ready when the quorum was to go; the scenario would prove nothing")
	}
	for _, i := range []int{1, 2} {
		if err := w.cluster.KillNode(i); err != nil {
			t.Fatalf("killing node %d: %v", i, err)
		}
	}
	lost := time.Now()
	testenv.EventuallyOK(t, 2*time.Minute, func() error {
		for _, wp := range workers {
			if ready, err := wp.Ready(); err != nil || ready {
				return fmt.Errorf("worker %s ready=%v (%v)", wp.Name, ready, err)
			}
			if !started[wp.Name] {
				continue
			}
			if v, ok := wp.Metric("qfetch_worker_jetstream_unavailable"); !ok || v != 1 {
				return fmt.Errorf("worker %s: qfetch_worker_jetstream_unavailable = %v (%v)", wp.Name, v, ok)
			}
		}
		return nil
	}, "every worker not ready, showing JetStream unavailable")
	t.Logf("every worker paused %v after the quorum loss", time.Since(lost).Round(100*time.Millisecond))

	// A planner pass started now fails fleet-wide.
	w.planner("").Wait(3*time.Minute, 3)

	for _, i := range []int{1, 2} {
		if err := w.cluster.StartNode(i); err != nil {
			t.Fatalf("restarting node %d: %v", i, err)
		}
	}
	back := time.Now()
	testenv.EventuallyOK(t, 2*time.Minute, func() error {
		for _, wp := range workers {
			if ready, err := wp.Ready(); err != nil || !ready {
				return fmt.Errorf("worker %s ready=%v (%v)", wp.Name, ready, err)
			}
			if v, ok := wp.Metric("qfetch_worker_jetstream_unavailable"); !ok || v != 0 {
				return fmt.Errorf("worker %s: qfetch_worker_jetstream_unavailable = %v (%v)", wp.Name, v, ok)
			}
		}
		return nil
	}, "every worker ready again once the quorum is back")
	t.Logf("every worker ready %v after the nodes came back", time.Since(back).Round(100*time.Millisecond))

	w.waitComplete(id, 3*time.Minute)
	fails, err := w.Queue().Failures(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	for batch, n := range fails {
		if n != 0 {
			t.Errorf("batch %s charged %d failures by the quorum loss (I6)", batch, n)
		}
	}
	w.finalChecks(id, time.Time{})
	stillRunning(t, workers)
	w.noDeadLetters()
}
