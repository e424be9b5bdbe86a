package fetch_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
)

// TestBrokenDeadLetterStreamPausesTheFleet: with QFETCH_DLQ gone, no
// message can be dead-lettered, whichever it is: that is the fleet's fault,
// not a message's (I6). Two messages that must be dead-lettered at fleet cap
// 2 used to be Nak'ed with a delay, each holding a slot for ever, and the
// fleet's probe, which waits for a free slot, never ran. Now the fleet
// pauses as one (a fault: every worker not ready, the fault gauge up), the
// messages are parked off the queue (no slot held), no batch is charged,
// and once the stream is back the probe resumes the fleet, the messages
// are dead-lettered and the run's batches fetched.
func TestBrokenDeadLetterStreamPausesTheFleet(t *testing.T) {
	e := setup(t, opts{hosts: 600, batchSize: 100, maxInFlight: 2})
	ctx := t.Context()
	if err := e.js.DeleteStream(ctx, msg.StreamDLQ); err != nil {
		t.Fatal(err)
	}
	if err := e.q.CheckDeadLetters(ctx); !errors.Is(err, msg.ErrDeadLettersBroken) {
		t.Fatalf("CheckDeadLetters without the stream: %v", err)
	}
	// Undecodable, so dead-lettered at their first delivery, without a call.
	e.publishRaw([]byte("not a batch 1"))
	e.publishRaw([]byte("not a batch 2"))

	var workers []*fetch.Worker
	var regs []*prometheus.Registry
	for range 3 {
		reg := prometheus.NewRegistry()
		w := e.workerWith(e.r.NewClient(e.sim.Password()), fetch.Config{Slots: 2}, reg)
		workers, regs = append(workers, w), append(regs, reg)
		e.start(w)
	}
	fleet := e.q.Fleet("test")
	testenv.Eventually(t, 30*time.Second, func() bool {
		st, err := fleet.State(ctx)
		return err == nil && st.Pause != nil
	}, "the fleet did not pause although no message can be dead-lettered")
	st, err := fleet.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pause.Kind != ledger.PauseFault || !strings.Contains(st.Pause.Reason, "dead-letter") {
		t.Fatalf("pause %+v: want a fault naming the dead-letter stream", st.Pause)
	}
	// Paused as one: every worker not ready (not wedged: no message is to
	// blame), and the fault alert's gauge up in each.
	testenv.Eventually(t, 30*time.Second, func() bool {
		for i, w := range workers {
			if err := w.Ready(); err == nil || errors.Is(err, fetch.ErrWedged) ||
				gauge(t, regs[i], "qfetch_worker_fleet_fault") != 1 {
				return false
			}
		}
		return true
	}, "a worker is ready, wedged, or shows no fault while the fleet is paused")
	// The messages wait off the queue: no slot is held, so the probe runs.
	testenv.Eventually(t, 30*time.Second, func() bool {
		pending, _, err := e.q.InFlight(ctx)
		return err == nil && pending == 0
	}, "slots are still held while the fleet is paused")
	for _, b := range e.batch {
		if n, err := e.q.FailureCount(ctx, run, b.Key()); err != nil || n != 0 {
			t.Fatalf("batch %s charged %d failures (%v) for the dead-letter stream's fault", b.Key(), n, err)
		}
	}

	// The operator's fix (or the next planner's setup): the stream is back.
	if _, err := msg.Setup(ctx, e.js, e.q.Config()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, func() bool {
		st, err := fleet.State(ctx)
		return err == nil && st.Pause == nil && len(e.deadLetters()) == 2 && e.done() == len(e.batch) && e.queued() == 0
	}, "the fleet did not resume, dead-letter both messages and fetch the run once the stream was back")
	for i, w := range workers {
		if err := w.Ready(); err != nil {
			t.Errorf("worker %d not ready after the repair: %v", i, err)
		}
		if g := gauge(t, regs[i], "qfetch_worker_wedged"); g != 0 {
			t.Errorf("worker %d: qfetch_worker_wedged = %v", i, g)
		}
	}
	for _, b := range e.batch {
		if n, err := e.q.FailureCount(ctx, run, b.Key()); err != nil || n != 0 {
			t.Errorf("batch %s charged %d failures (%v)", b.Key(), n, err)
		}
	}
}
