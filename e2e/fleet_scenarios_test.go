package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
)

// The scenarios about decisions the fleet takes as one (issue 15): a pause
// every pod honours, and a lease no partition can stretch.

// 11. A detection outage (503 on every call) held for 25 s (15 s under
// -short) while six single-slot workers share a fleet cap of 2: the fleet
// pauses as one and reports not ready, one pod per probe period probes
// (not one per pod), no batch is charged or dead-lettered (I6), and the run
// completes once the outage ends.
func testOutageSixPods(t *testing.T, b bins) {
	const pods, probeEvery = 6, time.Second
	// Every call starts 400 ms late: calls last, so that the cap is checked
	// at the simulator, and the run outlasts the start of the outage. The
	// probe, a call too, is kept shorter than the probe period: one that
	// outlasts it lets another pod claim the next probe just as the first
	// resumes the fleet, and that probe runs beside the resumed calls.
	sim := startSim(t, b, append(dataset(sized(6000, 4000), 11),
		"--concurrency-limit", "0", "--slow-start", "400ms", "--fault", "slowstart=1")...)
	w := newWorld(t, b, sim, sharedBucket(t))
	w.BatchSize, w.MaxInFlight = 150, 2
	w.Extra = map[string]string{"QFETCH_WORKER_PROBE_EVERY": probeEvery.String()}
	var workers []*workerProc
	for i := range pods {
		workers = append(workers, w.worker(fmt.Sprintf("worker-%d", i+1), 1, ""))
	}
	id := w.plan()
	planned := w.Run(id).BatchesPlanned
	testenv.Eventually(t, time.Minute, func() bool { return w.doneCount(id) >= 2 }, "the first batches stored")

	before := sim.Detection()
	endOutage := sim.Outage(qualysim.Detection, qualysim.Fault503)
	start := time.Now()
	if n := w.doneCount(id); n > planned-4 {
		t.Fatalf("%d of %d batches done when the outage started; the scenario needs queued work", n, planned)
	}
	// The outage lasts a set time: that is the scenario, not a wait for
	// something to happen. Meanwhile, note what each worker reports.
	hold := sized(25*time.Second, 15*time.Second)
	notReady, paused := map[string]bool{}, map[string]bool{}
	var firstPause time.Duration
	for until := time.After(hold); ; {
		select {
		case <-until:
		case <-time.After(200 * time.Millisecond):
			for _, wp := range workers {
				if ready, err := wp.Ready(); err == nil && !ready {
					notReady[wp.Name] = true
				}
				if v, ok := wp.Metric(`qfetch_worker_fleet_paused{kind="outage"}`); ok && v == 1 {
					if len(paused) == 0 {
						firstPause = time.Since(start)
					}
					paused[wp.Name] = true
				}
			}
			continue
		}
		break
	}
	during := sim.Detection()
	doneDuring := w.doneCount(id)
	endOutage()
	ended := time.Now()

	calls := during.Outcomes["fault/503"] - before.Outcomes["fault/503"]
	var probes float64
	for _, wp := range workers {
		v, _ := wp.Metric(`qfetch_worker_fault_probes_total{result="failed"}`)
		probes += v
	}
	t.Logf("outage of %v: %d detection calls answered 503 (%.0f failed probes), the fleet paused %v after the start; %d of %d batches done at its end",
		hold, calls, probes, firstPause.Round(100*time.Millisecond), doneDuring, planned)
	// One probe per period for the fleet, plus the calls that trip the
	// breaker (two failures) and at most one per slot for a batch its pull
	// had already asked for when the pause came. One probe per pod would
	// be six times the periods.
	if limit := int64(hold/probeEvery) + 2 + pods; calls > limit {
		t.Errorf("%d detection calls during an outage of %v; want at most %d (one probe per %v for the whole fleet)", calls, hold, limit, probeEvery)
	}
	// The probe claim lasts a period, so the fleet's probes alone are at
	// most one per period.
	if limit := float64(hold/probeEvery) + 1; probes > limit {
		t.Errorf("%.0f failed probes in an outage of %v; want at most %.0f (one per %v for the whole fleet)", probes, hold, limit, probeEvery)
	}
	if calls < 2 {
		t.Errorf("only %d detection calls met the outage; the scenario proves nothing", calls)
	}
	for _, wp := range workers {
		if !notReady[wp.Name] {
			t.Errorf("worker %s never reported not ready during the outage", wp.Name)
		}
		if !paused[wp.Name] {
			t.Errorf(`worker %s never showed qfetch_worker_fleet_paused{kind="outage"} 1 during the outage`, wp.Name)
		}
	}

	testenv.Eventually(t, time.Minute, func() bool {
		for _, wp := range workers {
			if r, err := wp.Ready(); err != nil || !r {
				return false
			}
		}
		return true
	}, "every worker ready again after the outage")
	testenv.Eventually(t, time.Minute, func() bool { return w.doneCount(id) > doneDuring }, "a batch stored after the outage")
	t.Logf("first batch stored %v after the outage ended", time.Since(ended).Round(100*time.Millisecond))

	w.waitComplete(id, 2*time.Minute)
	fails, err := w.Queue().Failures(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	for batch, n := range fails {
		if n != 0 {
			t.Errorf("batch %s charged %d failures by an outage (I6)", batch, n)
		}
	}
	w.finalChecks(id, time.Time{})
	stillRunning(t, workers)
	w.checkPeak()
	w.noDeadLetters()
}

// 12. A partition between a worker and NATS, fleet cap 1: worker-a's NATS
// connection goes through a proxy frozen while its detection call streams
// slowly. Worker-a cannot renew its lease, so it gives its call up before
// AckWait lets JetStream hand the batch to worker-b: the simulator never
// runs two of the fleet's calls at once (I5). After the thaw, worker-b is
// stopped, and worker-a, not wedged, fetches the rest of the run.
func testPartition(t *testing.T, b bins) {
	const ackWait = 5 * time.Second // the least config.Worker allows is 4 s
	// Every call starts 1 s late so that worker-b, once it has the
	// redelivered batch, has not fetched the whole run before the thaw.
	sim := startSim(t, b, append(dataset(sized(4000, 3000), 12),
		"--concurrency-limit", "0", "--bandwidth", "50000", "--slow-start", "1s", "--fault", "slowstart=1")...)
	w := newWorld(t, b, sim, sharedBucket(t))
	w.BatchSize, w.MaxInFlight = 500, 1
	w.Extra = map[string]string{"QFETCH_WORKER_ACK_WAIT": ackWait.String()}
	id := w.plan()
	planned := w.Run(id).BatchesPlanned

	// Worker-a's first call streams at 50 KB/s: half a minute of body.
	proxy := testenv.NewProxy(t, hostPort(w.nats.port))
	sim.Force(qualysim.Detection, qualysim.FaultBandwidth, 1)
	a := w.workerWith("worker-a", 1, "", "QFETCH_NATS_URL=nats://"+proxy.Addr())
	testenv.Eventually(t, time.Minute, func() bool {
		d := sim.Detection()
		return d.Running == 1 && d.Bytes >= 64<<10
	}, "worker-a streaming a body")
	bw := w.worker("worker-b", 1, "")

	proxy.Freeze()
	frozen := time.Now()
	testenv.Eventually(t, 2*ackWait, func() bool {
		v, _ := a.Metric("qfetch_worker_leases_lost_total")
		return v >= 1
	}, "worker-a giving its call up once its lease lapsed")
	lost := time.Since(frozen)
	testenv.Eventually(t, 30*time.Second, func() bool {
		return sim.Detection().Outcomes["client_gone"] >= 1
	}, "the simulator seeing worker-a's call end")
	testenv.Eventually(t, time.Minute, func() bool { return w.doneCount(id) >= 1 }, "worker-b storing the redelivered batch")
	t.Logf("worker-a gave its call up %v after the freeze; worker-b stored the batch %v after it",
		lost.Round(100*time.Millisecond), time.Since(frozen).Round(100*time.Millisecond))
	if !strings.Contains(a.Log(), "lease lost") {
		t.Errorf("worker-a's log does not say it lost its lease")
	}
	proxy.Thaw()
	thawed := time.Now()
	if err := bw.Stop(); err != nil {
		t.Fatal(err)
	}
	doneAtStop := w.doneCount(id)
	if doneAtStop >= planned {
		t.Fatalf("worker-b fetched the whole run before it was stopped; slow the calls down")
	}

	w.waitComplete(id, 2*time.Minute)
	t.Logf("run complete %v after the thaw; worker-b stopped with %d of %d batches done",
		time.Since(thawed).Round(100*time.Millisecond), doneAtStop, planned)
	got := w.finalChecks(id, time.Time{})
	var byA, redelivered []string
	for _, mb := range got.Manifest.Batches {
		if mb.Worker == "worker-a" {
			byA = append(byA, mb.Batch)
		}
		if mb.Delivery >= 2 {
			redelivered = append(redelivered, mb.Batch+" by "+mb.Worker)
		}
	}
	if len(byA) == 0 {
		t.Errorf("worker-a stored nothing after the thaw: wedged")
	}
	if len(redelivered) == 0 {
		t.Errorf("no batch stored on a redelivery; worker-a's batch should have been")
	}
	t.Logf("batches stored on a redelivery: %v; by worker-a: %d", redelivered, len(byA))
	if r, err := a.Ready(); err != nil || !r {
		t.Errorf("worker-a not ready after the thaw (%v)", err)
	}
	stillRunning(t, []*workerProc{a})
	w.checkPeak()
	w.noDeadLetters()
}
