package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
)

// The cluster scenarios (issue #19): a run on a three-node JetStream
// cluster, every stream and bucket at R3, survives the loss of a node as it
// happens in production: the node that leads the batch stream crashes, the
// servers are restarted one after the other for an upgrade, the planner
// crashes while the node that led the run records is away. Each ends with
// the checks of the single-server scenarios: host by host against the
// simulator's truth (no host twice, no batch lost), no dead letter, the
// workers never restarted.
//
// Every detection call starts late (a slowstart fault on every call) so
// that a run lasts: the node is lost while batches are in flight and more
// are queued, and the fleet cap's peak is measurable (checkPeak).

// clusterLeaderWait bounds a JetStream leader election on a loaded machine.
const clusterLeaderWait = time.Minute

// clusterHealthyWait bounds a restarted node's catch-up until /healthz says
// every stream on it is current.
const clusterHealthyWait = 2 * time.Minute

// clusterWorkers starts n worker processes of slots fetch slots each.
func clusterWorkers(w *world, n, slots int) []*workerProc {
	w.t.Helper()
	var out []*workerProc
	for i := range n {
		out = append(out, w.worker(fmt.Sprintf("worker-%d", i+1), slots, ""))
	}
	return out
}

// streamLeader is the node that leads stream now, once it has a leader.
func (w *world) streamLeader(stream string) int {
	w.t.Helper()
	i, err := w.cluster.WaitStreamLeader(stream, clusterLeaderWait)
	if err != nil {
		w.t.Fatalf("leader of %s: %v", stream, err)
	}
	return i
}

// newLeader waits until stream is led by a node other than old (which is
// down) and returns it: the cluster has failed over.
func (w *world) newLeader(stream string, old int) int {
	w.t.Helper()
	var leader int
	testenv.EventuallyOK(w.t, clusterLeaderWait, func() error {
		i, err := w.cluster.WaitStreamLeader(stream, clusterLeaderWait/4)
		if err != nil {
			return err
		}
		if i == old {
			return fmt.Errorf("%s still reported led by node %d, which is down", stream, old)
		}
		leader = i
		return nil
	}, "a new leader of %s after node %d went down", stream, old)
	return leader
}

// doneNow is how many batch results run id has, read until a read
// succeeds: doneCount's 0 while NATS is away would make "more done than
// before" true at once, and the figures logged wrong.
func (w *world) doneNow(id string) int {
	w.t.Helper()
	var n int
	testenv.EventuallyOK(w.t, clusterLeaderWait, func() error {
		var err error
		n, err = w.Queue().CountDone(w.t.Context(), id)
		return err
	}, "counting the batches done of run %s", id)
	return n
}

// restartNode starts node i again and waits until the whole cluster is
// healthy (the node caught up with every stream).
func (w *world) restartNode(i int) {
	w.t.Helper()
	if err := w.cluster.StartNode(i); err != nil {
		w.t.Fatalf("restarting node %d: %v", i, err)
	}
	if err := w.cluster.WaitHealthy(clusterHealthyWait); err != nil {
		w.t.Fatalf("the cluster after node %d came back: %v", i, err)
	}
}

// logFailures logs the batches of run id charged a failure. A node lost
// while quorum holds is an outage of NATS, which D2 and I6 say is not the
// batch's fault; the invariants for these scenarios are the ones
// the checks assert, so this is a figure for the report.
func (w *world) logFailures(id string) {
	w.t.Helper()
	fails, err := w.Queue().Failures(w.t.Context(), id)
	if err != nil {
		w.t.Errorf("failure counts of run %s: %v", id, err)
		return
	}
	charged := map[string]int{}
	for batch, n := range fails {
		if n != 0 {
			charged[batch] = n
		}
	}
	w.t.Logf("run %s: batches charged a failure: %v", id, charged)
}

// waitCompleteOrExplain is waitComplete that, when the run does not
// complete, says where it stands before failing (see explainStall).
func (w *world) waitCompleteOrExplain(id string, timeout time.Duration, workers []*workerProc) {
	w.t.Helper()
	complete := func() bool {
		r, err := w.Queue().GetRun(w.t.Context(), id)
		return err == nil && r.State == ledger.RunComplete
	}
	if !pollUntil(timeout, time.Second, complete) {
		w.explainStall(id, workers)
		w.t.Fatalf("run %s not complete after %v", id, timeout)
	}
}

// waitDoneOrExplain waits until run id has at least n batches done, and
// says where the fleet stands before failing if it has not after timeout.
func (w *world) waitDoneOrExplain(id string, n int, timeout time.Duration, workers []*workerProc, what string) {
	w.t.Helper()
	if !pollUntil(timeout, time.Second, func() bool { return w.doneCount(id) >= n }) {
		w.explainStall(id, workers)
		w.t.Fatalf("not true after %v: %s", timeout, what)
	}
}

// explainStall logs where a run that stopped moving stands: the workers
// consumer's state and leader, each worker's readiness and non-zero
// figures, and the lines of its log about pauses and probes, so that a
// fleet wedged after a failover is told apart from a slow one.
func (w *world) explainStall(id string, workers []*workerProc) {
	w.t.Helper()
	w.t.Logf("run %s: %d batches done", id, w.doneCount(id))
	ctx, cancel := context.WithTimeout(w.t.Context(), 10*time.Second)
	defer cancel()
	if c, err := w.js.Consumer(ctx, msg.StreamBatches, msg.ConsumerWorkers); err != nil {
		w.t.Logf("consumer %s: %v", msg.ConsumerWorkers, err)
	} else if info, err := c.Info(ctx); err != nil {
		w.t.Logf("consumer %s info: %v", msg.ConsumerWorkers, err)
	} else {
		b, _ := json.Marshal(struct {
			Delivered, AckFloor     jetstream.SequenceInfo
			AckPending, Redelivered int
			Waiting                 int
			Pending                 uint64
			Cluster                 *jetstream.ClusterInfo
			MaxAckPending           int
		}{info.Delivered, info.AckFloor, info.NumAckPending, info.NumRedelivered, info.NumWaiting, info.NumPending, info.Cluster, info.Config.MaxAckPending})
		w.t.Logf("consumer %s: %s", msg.ConsumerWorkers, b)
	}
	for _, wp := range workers {
		ready, err := wp.Ready()
		var figures []string
		for name, v := range wp.Metrics() {
			if v != 0 && strings.HasPrefix(name, "qfetch_worker_") && !strings.Contains(name, "_bucket{") {
				figures = append(figures, fmt.Sprintf("%s=%g", name, v))
			}
		}
		slices.Sort(figures)
		w.t.Logf("worker %s: ready %v (%v); %s", wp.Name, ready, err, strings.Join(figures, " "))
		for line := range strings.Lines(wp.Log()) {
			if strings.Contains(line, "paus") || strings.Contains(line, "probe") || strings.Contains(line, "resum") {
				w.t.Logf("worker %s: %s", wp.Name, strings.TrimSpace(line))
			}
		}
	}
}

// clusterChecks are the checks every cluster scenario ends with.
func (w *world) clusterChecks(id string, workers []*workerProc) runContent {
	w.t.Helper()
	got := w.finalChecks(id, time.Time{})
	w.noDeadLetters()
	stillRunning(w.t, workers)
	w.checkPeak()
	w.logFailures(id)
	return got
}

// c1. The node leading the batch stream is killed with SIGKILL once a
// quarter of the batches are done, and kept down while more complete on
// the two others (the stream and the consumer fail over); then it is
// started again on its store and catches up. The run completes exactly.
func testClusterLeaderKilled(t *testing.T, b bins) {
	start := time.Now()
	sim := startSim(t, b, append(dataset(sized(8000, 6000), 21),
		"--concurrency-limit", "0", "--slow-start", "700ms", "--fault", "slowstart=1")...)
	w := newClusterWorld(t, b, sim, sharedBucket(t))
	w.BatchSize = 200
	workers := clusterWorkers(w, 3, 2)
	id := w.plan()
	planned := w.Run(id).BatchesPlanned
	testenv.Eventually(t, 2*time.Minute, func() bool { return w.doneCount(id) >= planned/4 }, "a quarter of the batches done")

	leader := w.streamLeader(msg.StreamBatches)
	doneAtKill := w.doneNow(id)
	if err := w.cluster.KillNode(leader); err != nil {
		t.Fatalf("killing node %d: %v", leader, err)
	}
	killed := time.Now()
	next := w.newLeader(msg.StreamBatches, leader)
	t.Logf("killed node %d (leader of %s) with %d of %d batches done; node %d leads it %v later",
		leader, msg.StreamBatches, doneAtKill, planned, next, time.Since(killed).Round(100*time.Millisecond))
	more := min(doneAtKill+planned/4, planned)
	w.waitDoneOrExplain(id, more, 2*time.Minute, workers, fmt.Sprintf("%d batches done while node %d is down", more, leader))
	doneDown := w.doneNow(id)
	if doneDown >= planned {
		t.Logf("the run's batches were all done before node %d came back", leader)
	}
	w.restartNode(leader)
	t.Logf("node %d down %v; %d of %d batches done when it came back", leader,
		time.Since(killed).Round(100*time.Millisecond), doneDown, planned)

	w.waitCompleteOrExplain(id, 3*time.Minute, workers)
	t.Logf("run complete %v after the start", time.Since(start).Round(time.Millisecond))
	w.clusterChecks(id, workers)
}

// c2. A rolling restart of the three servers during a run, as an upgrade
// does it: each node in turn is stopped gracefully, the fleet carries on
// with the two others until a batch more is done, and it is started again
// and the cluster is healthy before the next one goes.
func testClusterRollingRestart(t *testing.T, b bins) {
	start := time.Now()
	sim := startSim(t, b, append(dataset(sized(8000, 6000), 22),
		"--concurrency-limit", "0", "--slow-start", "1s", "--fault", "slowstart=1")...)
	w := newClusterWorld(t, b, sim, sharedBucket(t))
	w.BatchSize = 200
	workers := clusterWorkers(w, 3, 2)
	id := w.plan()
	planned := w.Run(id).BatchesPlanned
	testenv.Eventually(t, 2*time.Minute, func() bool { return w.doneCount(id) >= 2 }, "the first batches done")

	for i := range w.cluster.Nodes {
		before := w.doneNow(id)
		if before >= planned {
			t.Fatalf("the run was done before node %d was restarted; the rolling restart must happen mid-run (slow the calls down)", i)
		}
		stopped := time.Now()
		if err := w.cluster.StopNode(i); err != nil {
			t.Fatalf("stopping node %d: %v", i, err)
		}
		w.waitDoneOrExplain(id, before+1, 2*time.Minute, workers, fmt.Sprintf("a batch done while node %d is down", i))
		w.restartNode(i)
		t.Logf("node %d restarted: down for %v, batches done %d -> %d of %d", i,
			time.Since(stopped).Round(100*time.Millisecond), before, w.doneNow(id), planned)
	}

	w.waitCompleteOrExplain(id, 3*time.Minute, workers)
	t.Logf("run complete %v after the start", time.Since(start).Round(time.Millisecond))
	w.clusterChecks(id, workers)
}

// c3. The planner killed with SIGKILL mid-planning while the node that led
// the run records (the KV bucket's stream) is down; the node comes back,
// and the next planner pass resumes the same run from its write-ahead
// progress. Host List pages are small and every call starts late, so that
// planning lasts many pages.
func testClusterPlannerKVLeaderDown(t *testing.T, b bins) {
	start := time.Now()
	sim := startSim(t, b, append(dataset(sized(5000, 4000), 23),
		"--concurrency-limit", "0", "--slow-start", "700ms", "--fault", "slowstart=1")...)
	w := newClusterWorld(t, b, sim, sharedBucket(t))
	w.BatchSize, w.PageSize = 200, 200
	w.Queue() // the streams and buckets, R3, before their leader is looked up
	workers := clusterWorkers(w, 3, 2)

	runs := "KV_" + ledger.BucketRuns
	leader := w.streamLeader(runs)
	if err := w.cluster.KillNode(leader); err != nil {
		t.Fatalf("killing node %d: %v", leader, err)
	}
	killed := time.Now()
	next := w.newLeader(runs, leader)
	t.Logf("killed node %d (leader of %s); node %d leads it %v later", leader, runs, next, time.Since(killed).Round(100*time.Millisecond))
	// The node led more than the runs' bucket: the planner starts once the
	// batch stream and the workers consumer answer again too. (A planner
	// started while the consumer was still electing a leader exited 1 at
	// its set-up, "read consumer workers: context deadline exceeded": the
	// quorum-loss work (D2) is to make that a fleet-wide fault it waits
	// out or exits 3 for; this scenario is the kill mid-planning.)
	w.streamLeader(msg.StreamBatches)
	testenv.EventuallyOK(t, clusterLeaderWait, func() error {
		_, _, err := w.Queue().InFlight(t.Context())
		return err
	}, "the workers consumer answering after node %d went down", leader)

	p := w.planner("")
	var id string
	setupRetries := 0
	testenv.Eventually(t, 2*time.Minute, func() bool {
		if p.Exited() {
			code, _ := p.ExitCode(time.Second)
			// A planner whose set-up meets the cluster still electing
			// leaders (a JetStream request timing out) exits 1 before it
			// opens a run; its CronJob runs it again. Do the same, a few
			// times: the scenario is a planner killed mid-planning.
			if ids, err := w.Queue().RunIDs(t.Context()); code == 1 && err == nil && len(ids) == 0 && setupRetries < 5 {
				setupRetries++
				t.Logf("the planner exited 1 before opening a run (%d), started again:\n%s", setupRetries, p.tail(logTail))
				p = w.planner("")
				return false
			}
			t.Fatalf("the planner exited (code %d) before it was killed, with node %d down:\n%s", code, leader, p.tail(logTail))
		}
		ids, err := w.Queue().RunIDs(t.Context())
		if err != nil || len(ids) == 0 {
			return false
		}
		r, err := w.Queue().GetRun(t.Context(), ids[len(ids)-1])
		if err != nil {
			return false
		}
		id = r.ID
		return r.Progress.Batches >= 2
	}, "the planner publishing its first batches with node %d down", leader)
	p.Kill()
	rec, err := w.Queue().GetRun(t.Context(), id)
	if err != nil {
		t.Fatalf("run %s after the planner was killed: %v", id, err)
	}
	if rec.PlanningComplete {
		t.Fatalf("the planner finished before it was killed; page more slowly")
	}
	t.Logf("planner killed with run %s at %d batches published (%d hosts)", id, rec.Progress.Batches, rec.Progress.End.Hosts)

	w.restartNode(leader)
	t.Logf("node %d down %v", leader, time.Since(killed).Round(100*time.Millisecond))
	waitFor(t, time.Minute, 100*time.Millisecond, w.plannerLockFree, "the killed planner's lock expiring")
	if got := w.plan(); got != id {
		t.Fatalf("the next planner pass planned run %s; want the killed planner's run %s resumed", got, id)
	}
	if ids := w.runIDs(); len(ids) != 1 {
		t.Errorf("run records %v; want the one run, resumed", ids)
	}

	w.waitCompleteOrExplain(id, 3*time.Minute, workers)
	t.Logf("run complete %v after the start", time.Since(start).Round(time.Millisecond))
	w.clusterChecks(id, workers)
}
