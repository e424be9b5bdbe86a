package fetch_test

// Cold review of issue #15: each test here fails on the code it was
// written against, for the reason its comment gives.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body))
			if on.Load() && form.Get("ids") == "" && r.URL.Query().Get("ids") == "" {
				<-r.Context().Done()
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// TestReview15HungProbesStayUnderTheCap: the probe lease lasts one probe
// period, but nothing bounds the probe call itself (only the client's 10 min
// header timeout). When the probe hangs, the next pod claims the expired
// lease a period later and probes too, and so on: N pods put N probes at
// Qualys at once while the fleet's cap is 1 (I5), and one probe per period
// for the fleet no longer holds.
func TestReview15HungProbesStayUnderTheCap(t *testing.T) {
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

// TestReview15GarbledFleetKeyStillPausesAsOne: a garbled value in the
// fleet key (an operator's hand edit, a half-written value of another
// version) makes every read of the fleet state fail as permanent: Fail,
// Pause and Follow all error, the breaker can never trip, every pod charges
// every failure of an outage, and batches are dead-lettered (I6). The
// shared state should heal itself (overwrite a garbled value by CAS on its
// revision), not disable the breaker until an operator purges it.
func TestReview15GarbledFleetKeyStillPausesAsOne(t *testing.T) {
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

// TestReview15OutageOnTheLastBatchDeadLettersNothing: the breaker trips
// only over two distinct batches, and a spent batch is dead-lettered at its
// next delivery without asking the probe. So when one batch is left (the
// tail of every run) an outage of 503s charges it MaxFailures times and
// dead-letters it (I6: an outage charges no batch); the run can then never
// complete. Before dead-lettering a spent batch whose failures were 5xx or
// transport failures, one probe would tell an outage from a poison batch.
func TestReview15OutageOnTheLastBatchDeadLettersNothing(t *testing.T) {
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
