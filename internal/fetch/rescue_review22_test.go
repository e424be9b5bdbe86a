package fetch_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
)

// TestPausedFleetAtTheCapWithAMessageParkRefuses: the fleet is
// paused at its cap of one, and the copy holding the cap is a message the
// stream took (it is within the stream's 1 MiB) but whose retry schedule
// cannot be stored: the schedule's headers push it over the server's max
// payload. freeLostCopies parks it; Park fails; park falls back to a Nak
// without delay, which keeps the slot: the message is redelivered at once,
// pulled again by the next rescue, refused again, for ever. The probe
// never runs, and the fleet never resumes — the deadlock freeLostCopies
// was written to break, now with a tight pull/Nak churn on top.
//
//   - "outage, a lost copy": as TestPausedFleetAtTheCapProbes, with the
//     lost copy a forged message of nearly 1 MiB;
//   - "dead-letter stream broken": no lost worker at all. The forged
//     message must be dead-lettered, the stream is gone, so the fleet pauses
//     (a fault) and the message is parked — which fails the same way, so it
//     is Nak'ed with a delay and holds the cap. The operator repairs the
//     stream; the probe would find it repaired, but never runs.
func TestPausedFleetAtTheCapWithAMessageParkRefuses(t *testing.T) {
	for _, tc := range []struct {
		name      string
		brokenDLQ bool
	}{
		{"outage, a lost copy", false},
		{"dead-letter stream broken", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &detectionCalls{}
			e := setupCalls(t, opts{hosts: 200, batchSize: 100, maxInFlight: 1, ackWait: 2 * time.Second}, d)
			ctx := t.Context()
			// Within the stream's MaxMsgSize and the server's max payload,
			// but not once a schedule's three headers are added.
			big := []byte(`{"v":1,"x":"` + strings.Repeat("a", (1<<20)-64) + `"}`)
			if tc.brokenDLQ {
				if err := e.js.DeleteStream(ctx, msg.StreamDLQ); err != nil {
					t.Fatal(err)
				}
			}
			e.publishRaw(big)
			if !tc.brokenDLQ {
				// A worker pulls the batches ahead of it and the forged
				// message, and dies: the forged message's copy holds the
				// cap of one once its AckWait is over.
				for {
					m, err := e.q.Next(ctx, 5*time.Second)
					if err != nil || m == nil {
						t.Fatalf("the lost worker's pull: %v, %v", m, err)
					}
					if len(m.Data()) > msg.MaxBatchBytes {
						break
					}
					// Behind the forged message: the dead worker did not get
					// to it.
					if err := e.q.Retry(ctx, m, time.Now()); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := e.fleet("test").Pause(ctx, ledger.PauseOutage, "test: an outage"); err != nil {
					t.Fatal(err)
				}
			}
			var workers []*fetch.Worker
			for _, owner := range []string{"pod-0", "pod-1"} {
				if tc.brokenDLQ {
					// Not a pod: a pod's own Setup would bring the stream
					// back before the test needs it gone.
					w := e.workerWith(e.r.NewClient(e.sim.Password()), fetch.Config{Slots: 1}, prometheus.NewRegistry())
					workers = append(workers, w)
					e.start(w)
					continue
				}
				e.start(e.pod(owner, "", fetch.Config{Slots: 1}))
			}
			if tc.brokenDLQ {
				testenv.Eventually(t, 30*time.Second, func() bool {
					st := e.fleetState()
					return st.Pause != nil && st.Pause.Kind == ledger.PauseFault
				}, "the fleet did not pause for the broken dead-letter stream")
				testenv.Eventually(t, 30*time.Second, func() bool {
					for _, w := range workers {
						if w.Ready() == nil {
							return false
						}
					}
					return true
				}, "a worker did not see the fleet's pause")
				// The repair must come once no slot's pull is left, or a
				// slot's late pull would take the message and dead-letter
				// it after the repair: wait for deliveries that only the
				// rescue makes now.
				c0 := delivered(t, e)
				testenv.Eventually(t, 30*time.Second, func() bool { return delivered(t, e) >= c0+10 },
					"the message holding the cap is not delivered again and again")
				// The operator's repair.
				if _, err := msg.Setup(ctx, e.js, e.q.Config()); err != nil {
					t.Fatal(err)
				}
			}
			var last string
			t.Cleanup(func() {
				if t.Failed() {
					t.Log("at the end: " + last)
				}
			})
			testenv.Eventually(t, 60*time.Second, func() bool {
				st, dl, done := e.fleetState(), len(e.deadLetters()), e.done()
				pending, limit, err := e.q.InFlight(ctx)
				_, probes := d.stats()
				last = fmt.Sprintf("%d of %d slots held (%v), pause %v, %d probes, %d dead letters, %d of %d batches done",
					pending, limit, err, st.Pause != nil, len(probes), dl, done, len(e.batch))
				return st.Pause == nil && dl == 1 && done == len(e.batch)
			}, "the fleet paused at its cap of one never probed: the message holding the cap cannot be parked, and is Nak'ed back into the cap")
			if _, probes := d.stats(); len(probes) == 0 {
				t.Fatal("the fleet resumed without a probe")
			}
		})
	}
}

// delivered is how many deliveries the workers consumer has made,
// redeliveries included.
func delivered(t *testing.T, e *env) uint64 {
	t.Helper()
	c, err := e.js.Consumer(t.Context(), msg.StreamBatches, msg.ConsumerWorkers)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return ci.Delivered.Consumer
}
