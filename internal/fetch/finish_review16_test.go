package fetch_test

import (
	"context"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/testenv"
)

// TestRedeliveredLastBatchFinishesRun: the copy that stored a run's last
// batch made its claim done and died before its done record (Held.Done
// says the next copy writes it), or after the record but before the ack
// and TryFinish. The redelivered copy finds the claim done, writes the
// record and acks — and must then try to finish the run, as the copy it
// replaces would have: nobody else is left to (before issue 16 the
// redelivery fetched again and finished). Today the ErrBatchDone path acks
// without TryFinish, so the run stays open, every batch done, until some
// planner pass happens to look at it.
func TestRedeliveredLastBatchFinishesRun(t *testing.T) {
	for _, tc := range []struct {
		name     string
		noRecord bool // died between the claim and the done record
	}{
		{"died before the done record", true},
		{"died before the ack", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, opts{hosts: 100, batchSize: 100})
			b := e.batch[0]
			e.setRun(ledger.RunRecord{ID: run, After: e.after, Before: e.before,
				State: ledger.RunFetching, PlanningComplete: true, BatchesPlanned: 1, HostsPlanned: b.Hosts})
			// The dead pod's work: the claim made done (nothing stored, so
			// the seal has nothing to check), as the batch's first delivery.
			h, err := e.q.TakeBatch(t.Context(), run, b.Key(), ledger.Copy{Worker: "dead-pod", Seq: 1, Delivery: 1},
				objstore.Upload{}, func(context.Context, objstore.Upload) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Done(t.Context(), ledger.BatchResult{Run: run, Batch: b.Key(), HostsRequested: b.Hosts,
				Worker: "dead-pod", At: time.Now().UTC()}); err != nil {
				t.Fatal(err)
			}
			if tc.noRecord {
				kv, err := e.js.KeyValue(t.Context(), ledger.BucketRuns)
				if err != nil {
					t.Fatal(err)
				}
				if err := kv.Delete(t.Context(), run+".done."+b.Key()); err != nil {
					t.Fatal(err)
				}
			}
			// The batch message was never acked: it comes back to a live pod.
			e.start(e.sealedPod("pod-b", "", e.r.Store, fetch.Config{Slots: 1}))
			testenv.Eventually(t, 20*time.Second, func() bool { return e.queued() == 0 }, "the redelivered copy was not acked")
			testenv.Eventually(t, 10*time.Second, func() bool {
				r, err := e.q.GetRun(t.Context(), run)
				return err == nil && r.State == ledger.RunComplete
			}, "every batch is done and acked, but nobody finished the run")
		})
	}
}

// TestBatchOfUnknownRunClaimsNothing: a batch message naming a run that
// has no record (forged, misrouted, or a run ID still in the future: run
// IDs sort by time) is fetched and stored today, and its claim made done.
// When a run of that ID is opened later, its planner's batch of the same
// number finds the claim done and is acked without a call: the run
// completes with the forged batch's objects instead of its own hosts (I1,
// I7: a queue message widened what qfetch writes).
func TestBatchOfUnknownRunClaimsNothing(t *testing.T) {
	e := setup(t, opts{hosts: 100, batchSize: 100, noRun: true})
	b := e.batch[0] // published for run, which has no record
	stop := e.start(e.worker(fetch.Config{Slots: 1}, ""))
	testenv.Eventually(t, 20*time.Second, func() bool { return e.queued() == 0 }, "the message was never settled")
	stop()
	c, ok, err := e.q.GetClaim(t.Context(), run, b.Key())
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		t.Errorf("a batch of a run without a record holds claim %+v: the run's own batch %s will be acked unfetched", c, b.Key())
	}
	for o, err := range e.store.List(t.Context(), objstore.RunPrefix("qualys", run)) {
		if err != nil {
			t.Fatal(err)
		}
		t.Errorf("%s stored for a run that does not exist", o.Key)
	}
}
