package fetch_test

// Cold review of issue #15: each test here fails on the code it was
// written against, for the reason its comment gives.

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
)

// hangProbes keeps every probe (a detection call without ids) until the
// client goes away, while on is set: a Qualys front end that accepts the
// call and never answers.
func hangProbes(on *atomic.Bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ids, err := callIDs(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if on.Load() && ids == "" {
				<-r.Context().Done()
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// TestEdgeHungProbesStayUnderTheCap: the probe lease lasts one probe
// period, but nothing bounds the probe call itself (only the client's 10 min
// header timeout). When the probe hangs, the next pod claims the expired
// lease a period later and probes too, and so on: N pods put N probes at
// Qualys at once while the fleet's cap is 1 (I5), and one probe per period
// for the fleet no longer holds.
func TestEdgeHungProbesStayUnderTheCap(t *testing.T) {
	d := &detectionCalls{}
	var hang atomic.Bool
	hang.Store(true)
	o := opts{hosts: 600, batchSize: 100, maxFailures: 10, maxInFlight: 1}
	o.wrap = func(next http.Handler) http.Handler { return d.wrap(hangProbes(&hang)(next)) }
	e := setup(t, o)
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.Fault503, 6); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		e.start(e.pod(fmt.Sprintf("pod-%d", i), "", fetch.Config{Slots: 1}))
	}
	// Three probes: every pod has had a turn at the lease.
	testenv.Eventually(t, 20*time.Second, func() bool { _, p := d.stats(); return len(p) >= 3 }, "the fleet probed fewer than 3 times")
	peak, probes := d.stats()
	hang.Store(false)
	if peak > 1 {
		t.Fatalf("%d detection calls at once (%d probes started, all hung), cap 1 (I5)", peak, len(probes))
	}
}

// TestEdgeGarbledFleetKeyStillPausesAsOne: a garbled value in the
// fleet key (an operator's hand edit, a half-written value of another
// version) makes every read of the fleet state fail as permanent: Fail,
// Pause and Follow all error, the breaker can never trip, every pod charges
// every failure of an outage, and batches are dead-lettered (I6). The
// shared state should heal itself (overwrite a garbled value by CAS on its
// revision), not disable the breaker until an operator purges it.
func TestEdgeGarbledFleetKeyStillPausesAsOne(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 1200, batchSize: 100, maxFailures: 3, maxInFlight: 2}, d)
	kv, err := e.js.KeyValue(t.Context(), ledger.BucketFleet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "fleet", []byte("{garbled")); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.Fault503, 40); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		e.start(e.pod(fmt.Sprintf("pod-%d", i), "", fetch.Config{Slots: 1}))
	}
	testenv.Eventually(t, 90*time.Second, func() bool { return e.done()+len(e.deadLetters()) == len(e.batch) },
		"batches neither done nor dead")
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Fatalf("an outage dead-lettered %d batches with a garbled fleet key (I6): %s", len(dl), dl[0].Reason)
	}
}

// TestEdgeOutageOnTheLastBatchDeadLettersNothing: the breaker trips
// only over two distinct batches, and a spent batch is dead-lettered at its
// next delivery without asking the probe. So when one batch is left (the
// tail of every run) an outage of 503s charges it MaxFailures times and
// dead-letters it (I6: an outage charges no batch); the run can then never
// complete. Before dead-lettering a spent batch whose failures were 5xx or
// transport failures, one probe would tell an outage from a poison batch.
func TestEdgeOutageOnTheLastBatchDeadLettersNothing(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 100, batchSize: 100, maxFailures: 3, maxInFlight: 2}, d)
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.Fault503, 6); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		e.start(e.pod(fmt.Sprintf("pod-%d", i), "", fetch.Config{Slots: 1}))
	}
	testenv.Eventually(t, 60*time.Second, func() bool { return e.done()+len(e.deadLetters()) == len(e.batch) },
		"the batch neither done nor dead")
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Fatalf("an outage of 6 503s dead-lettered the run's last batch (I6): %s", dl[0].Reason)
	}
	e.checkBucket(e.batch)
}

// TestEdgeHoldStopsPullsAlreadyWaiting: the fleet's hold (and pause)
// gates only the issuing of a pull. A pull request already waiting at the
// server (PullWait, 5 s by default) when the hold is recorded is answered
// as soon as a slot frees, and handle starts the call without looking at
// the fleet state again: here a 1965 asks the fleet to wait 3 s, and a call
// starts about 2 s into the wait, when a slow batch elsewhere acks. The
// fix: re-check the fleet state after Next returns a message (hand it back
// with Retry at the hold's end / a probe period, uncharged), or pull with
// a wait no longer than the watch's reaction time.
func TestEdgeHoldStopsPullsAlreadyWaiting(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 1500, batchSize: 100, maxFailures: 3, maxInFlight: 2}, d)
	var (
		mu        sync.Mutex
		starts    []time.Time
		refusedAt time.Time
	)
	d.mu.Lock()
	d.answer = func(ids string) (int, http.Header, string) {
		if ids == "" {
			return 0, nil, ""
		}
		mu.Lock()
		starts = append(starts, time.Now())
		n := len(starts)
		if n == 2 {
			refusedAt = time.Now()
		}
		mu.Unlock()
		switch n {
		case 1: // a slow batch: it acks well inside the hold
			time.Sleep(1500 * time.Millisecond) // the simulated call's duration, not synchronisation
		case 2:
			h := http.Header{"X-Ratelimit-Towait-Sec": {"3"}, "Content-Type": {"application/xml"}}
			// The document's SECONDS_TO_WAIT wins over the header: both say 3.
			return http.StatusConflict, h, strings.NewReplacer("<VALUE>2</VALUE>", "<VALUE>3</VALUE>",
				"another 2 seconds", "another 3 seconds").Replace(rateLimitDoc)
		}
		return 0, nil, ""
	}
	d.mu.Unlock()
	for i := range 4 {
		e.start(e.pod(fmt.Sprintf("pod-%d", i), "", fetch.Config{Slots: 1, PullWait: 5 * time.Second}))
	}
	testenv.Eventually(t, 60*time.Second, func() bool { return e.done() == len(e.batch) }, "batches not all done")
	mu.Lock()
	defer mu.Unlock()
	from, to := refusedAt.Add(500*time.Millisecond), refusedAt.Add(3*time.Second)
	for _, s := range starts {
		if s.After(from) && s.Before(to) {
			t.Fatalf("a batch call started %s after a 1965 that asked the fleet to wait 3 s", s.Sub(refusedAt).Round(time.Millisecond))
		}
	}
}

// TestEdgeLeaseUsesTheServersAckWait: a worker times its lease by the
// AckWait of its own configuration, not by the consumer's. When an operator
// shortens QFETCH_ACK_WAIT (here 10 s → 2 s), the new pods' Setup brings the
// consumer to 2 s while the pods still running believe 10 s: a partitioned
// old pod keeps its Qualys call for 8 s, and the server hands the batch to
// a new pod after 2 s — two calls at once with a cap of one (I5). The lease
// should be timed by the consumer's AckWait as the server has it (read at
// each delivery, or refreshed with InFlight's consumer info), taking the
// shorter of the two.
func TestEdgeLeaseUsesTheServersAckWait(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 200, batchSize: 100, maxInFlight: 1, ackWait: 10 * time.Second}, d)
	held := d.holdOnce(e.batch[0])
	proxy := testenv.NewProxy(t, strings.TrimPrefix(e.r.NATSURL, "nats://"))
	old := e.podAckWait("pod-old", "nats://"+proxy.Addr(), 10*time.Second, fetch.Config{Slots: 1})
	// The rollout: the new pod's Setup shortens the consumer's AckWait.
	fresh := e.podAckWait("pod-new", "", 2*time.Second, fetch.Config{Slots: 1})
	e.start(old)
	testenv.Eventually(t, 10*time.Second, held.Load, "the old pod's call never started")
	proxy.Freeze()
	e.start(fresh)
	testenv.Eventually(t, 30*time.Second, func() bool { return e.done() == len(e.batch) }, "batches not done by the new pod")
	proxy.Thaw()
	if peak, _ := d.stats(); peak > 1 {
		t.Fatalf("%d detection calls at once through a partition after AckWait was shortened, cap 1 (I5)", peak)
	}
}

// answerToWait answers every call for the batch starting at first with a
// 409 whose X-RateLimit-ToWait-Sec is toWait, the rest as the simulator.
func answerToWait(d *detectionCalls, first, toWait string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.answer = func(ids string) (int, http.Header, string) {
		if f, _, _ := strings.Cut(ids, ","); f != first {
			return 0, nil, ""
		}
		h := http.Header{"X-Ratelimit-Towait-Sec": {toWait}, "Content-Type": {"application/xml"}}
		return http.StatusConflict, h, strings.Replace(rateLimitDoc, "<VALUE>2</VALUE>", "<VALUE>"+toWait+"</VALUE>", 1)
	}
}

// fleetState reads the fleet key as it is now.
func (e *env) fleetState() ledger.FleetState {
	e.t.Helper()
	st, err := e.fleet("test").State(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// fleet is the fleet's record as the process called owner records in it.
func (e *env) fleet(owner string) *ledger.Fleet {
	e.t.Helper()
	l, err := ledger.Open(e.t.Context(), e.js)
	if err != nil {
		e.t.Fatal(err)
	}
	return l.Fleet(owner)
}

// TestEdgeHugeToWaitIsNoWait: a wait told in seconds is multiplied
// into a time.Duration unchecked; 10^10 s (an odd or hostile answer)
// overflows to a negative wait, the hold is dropped as already over and the
// batch is rescheduled at once: the fleet hammers Qualys with the call it
// was told to stop making. Parse the wait with a bound (see also
// TestEdgeToldWaitIsBounded).
func TestEdgeHugeToWaitIsNoWait(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 300, batchSize: 100, maxFailures: 3, maxInFlight: 1}, d)
	first := firstRange(e.batch[0])
	answerToWait(d, first, "10000000000")
	e.start(e.pod("pod-0", "", fetch.Config{Slots: 1}))
	testenv.Eventually(t, 20*time.Second, func() bool {
		return !e.fleetState().HoldUntil.IsZero() || d.calls(first) >= 5
	}, "neither a hold nor repeated calls")
	if n := d.calls(first); n > 1 {
		t.Fatalf("told to wait 10^10 s, the fleet called again %d times within seconds (hold %v)", n-1, e.fleetState().HoldUntil)
	}
}

// TestEdgeToldWaitIsBounded: a wait Qualys (or a gateway in front of
// it) tells is now the whole fleet's, stored in QFETCH_FLEET so that it
// outlives every pod's restart: one answer with ToWait 10^7 s holds every
// pod for 115 days, and nothing but a hand edit of the KV ends it. A told
// wait needs a ceiling (a day, or the rate window of X-RateLimit-Window-Sec)
// and an operator command to lift a hold.
func TestEdgeToldWaitIsBounded(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 300, batchSize: 100, maxFailures: 3, maxInFlight: 1}, d)
	answerToWait(d, firstRange(e.batch[0]), "10000000")
	e.start(e.pod("pod-0", "", fetch.Config{Slots: 1}))
	testenv.Eventually(t, 20*time.Second, func() bool { return !e.fleetState().HoldUntil.IsZero() }, "no hold")
	if until := e.fleetState().HoldUntil; time.Until(until) > 24*time.Hour {
		t.Fatalf("one 409 holds the whole fleet for %s", time.Until(until).Round(time.Hour))
	}
}

// TestEdgeOddProbeAnswerNeverWedgesTheFleet: after a short outage
// trips the breaker, the probe (and only the probe: a detection call
// without ids) is answered 200 with an error document whose code qfetch
// does not know — as a platform that refuses an id-less detection request
// with a parameter code missing from codeClass would. An unknown code in a
// 200 is classed retryable, probeConfirms takes it as proof of the outage,
// and the fleet stays paused for good while every batch call would
// succeed: issue case 5 through another door. An outage pause should be
// confirmed only by what an outage looks like (5xx, transport, timeout,
// 1999), or the breaker should go half-open after some periods and let one
// real call decide.
func TestEdgeOddProbeAnswerNeverWedgesTheFleet(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 600, batchSize: 100, maxFailures: 5}, d)
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.Fault503, 4); err != nil {
		t.Fatal(err)
	}
	const odd = `<?xml version="1.0" encoding="UTF-8" ?>
<SIMPLE_RETURN><RESPONSE><DATETIME>2026-01-10T00:00:00Z</DATETIME><CODE>1913</CODE>
<TEXT>Request without ids is not supported on this platform.</TEXT></RESPONSE></SIMPLE_RETURN>
`
	d.mu.Lock()
	d.answer = func(ids string) (int, http.Header, string) {
		if ids == "" {
			return http.StatusOK, http.Header{"Content-Type": {"text/xml"}}, odd
		}
		return 0, nil, ""
	}
	d.mu.Unlock()
	for i := range 2 {
		e.start(e.pod(fmt.Sprintf("pod-%d", i), "", fetch.Config{Slots: 1}))
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		_, probes := d.stats()
		return e.done() == len(e.batch) || len(probes) >= 50
	}, "neither done nor probed")
	if _, probes := d.stats(); e.done() != len(e.batch) {
		st := e.fleetState()
		t.Fatalf("%d of %d batches done, fleet still paused (%v) after %d probes answered with an unknown code in a 200",
			e.done(), len(e.batch), st.Pause != nil, len(probes))
	}
}

// TestEdgeStallOutageDeadLettersNothing: Qualys hangs — every call's
// body stalls (an overloaded front end, a gateway holding connections) for
// nine calls in a row. A stall is taken as "this batch is too big" and
// never joins the fleet's streak, so the breaker never trips, every stall
// is charged to its batch, and the outage dead-letters the queue (I6). The
// streak could take stalls too: the probe (one host, tiny) tells a batch
// that is too big (probe passes, charges stand, split goes on) from a
// fleet that hangs (probe stalls too, charges forgiven).
func TestEdgeStallOutageDeadLettersNothing(t *testing.T) {
	d := &detectionCalls{}
	o := opts{hosts: 300, batchSize: 100, maxFailures: 3, maxInFlight: 2}
	o.sim.Faults.StallFor = time.Minute
	e := setupCalls(t, o, d)
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.FaultStall, 9); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		e.start(e.pod(fmt.Sprintf("pod-%d", i), "", fetch.Config{Slots: 1}))
	}
	testenv.Eventually(t, 90*time.Second, func() bool { return e.done()+len(e.deadLetters()) == len(e.batch) },
		"batches neither done nor dead")
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Fatalf("an outage of 9 stalled calls dead-lettered %d of %d batches (I6): %s", len(dl), len(e.batch), dl[0].Reason)
	}
}

// TestEdgeProbeHonoursTheHold: the fleet is held (Qualys told it to
// wait 3 s) and paused (a 1999 arrived meanwhile). The probe claims and
// calls at once, inside the wait it was told: probes ignore HoldUntil. A
// probe is a detection call like any other; it should wait for the hold.
func TestEdgeProbeHonoursTheHold(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 200, batchSize: 100, maxFailures: 3}, d)
	f := e.fleet("another-pod")
	held := time.Now()
	if err := f.Hold(t.Context(), held.Add(3*time.Second), "1965: wait 3 s"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Pause(t.Context(), ledger.PauseMaintenance, "1999"); err != nil {
		t.Fatal(err)
	}
	e.start(e.pod("pod-0", "", fetch.Config{Slots: 1}))
	testenv.Eventually(t, 30*time.Second, func() bool { return e.done() == len(e.batch) }, "batches not done")
	_, probes := d.stats()
	for _, p := range probes {
		if p.Before(held.Add(3 * time.Second)) {
			t.Fatalf("a probe called Qualys %s into a 3 s wait Qualys told the fleet", p.Sub(held).Round(time.Millisecond))
		}
	}
}
