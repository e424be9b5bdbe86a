package ledger

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/objstore"
)

// TestTakeBatchForgedFinalClaim: a final claim of run r1's batch 3 whose
// value names another run's batch (a forged or garbled KV value) must not
// make a copy of r1's batch record anything for that other run: settled
// rewrites c.Result / c.Split as they are, so r2's batch 7 is recorded done
// (or split) without anyone fetching it, and r2 can complete with its hosts
// missing (I1).
func TestTakeBatchForgedFinalClaim(t *testing.T) {
	t.Parallel()
	me := Copy{Worker: "b", Seq: 7, Delivery: 2}
	for _, c := range []struct {
		name  string
		claim Claim
		key   string // the record that must not appear
	}{{
		name: "done for another run",
		claim: Claim{Run: "r1", Batch: "3", State: ClaimDone, Holder: Copy{Worker: "x", Seq: 1},
			Result: &BatchResult{Run: "r2", Batch: "7", HostsRequested: 100}},
		key: "r2.done.7",
	}, {
		name: "done for another batch of the run",
		claim: Claim{Run: "r1", Batch: "3", State: ClaimDone, Holder: Copy{Worker: "x", Seq: 1},
			Result: &BatchResult{Run: "r1", Batch: "8", HostsRequested: 100}},
		key: "r1.done.8",
	}, {
		name: "split for another run",
		claim: Claim{Run: "r2", Batch: "3", State: ClaimSplit, Holder: Copy{Worker: "x", Seq: 1},
			Split: &Split{Batch: "9", Halves: [2]string{"9.1", "9.2"}}},
		key: "r2.split.9",
	}} {
		t.Run(c.name, func(t *testing.T) {
			e := setup(t, Config{})
			data, err := json.Marshal(c.claim)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.l.runs.Put(e.Ctx, "r1.claim.3", data); err != nil {
				t.Fatal(err)
			}
			_, err = e.l.TakeBatch(e.Ctx, "r1", "3", me, objstore.Upload{}, noAbort(t))
			t.Logf("TakeBatch: %v", err)
			if _, gerr := e.l.runs.Get(e.Ctx, c.key); gerr == nil {
				t.Errorf("a claim of r1 batch 3 wrote %s: another batch's record, from a value nobody checked", c.key)
			}
		})
	}
}

// TestTakeBatchForgedUploadsOfAnotherRun: a claim of r1's batch 3 listing
// uploads outside r1's prefix (another run's page being streamed) makes
// TakeBatch abort them: a forged KV value reaches into another run, whose
// copy then takes the abort for a takeover (ErrUploadGone) and yields.
func TestTakeBatchForgedUploadsOfAnotherRun(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	other := objstore.Upload{Key: "runs/r2/detections/batch-000001.xml", ID: "id-r2"}
	data, err := json.Marshal(Claim{Run: "r1", Batch: "3", State: ClaimFetching,
		Holder: Copy{Worker: "x", Seq: 1}, Uploads: []objstore.Upload{other}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.runs.Put(e.Ctx, "r1.claim.3", data); err != nil {
		t.Fatal(err)
	}
	var ab aborts
	if _, err := e.l.TakeBatch(context.Background(), "r1", "3", Copy{Worker: "b", Seq: 7, Delivery: 1}, objstore.Upload{}, ab.abort); err != nil {
		t.Logf("TakeBatch: %v", err)
	}
	for _, u := range ab.list() {
		if !strings.Contains(u.Key, "/r1/") {
			t.Errorf("taking r1's batch 3 aborted %v, an upload of another run", u)
		}
	}
}

// TestTakeBatchGarbledClaimWithUploads: a claim value that does not decode
// as this version's Claim (a garbled write, or a newer version's claim whose
// field changed type during a rolling upgrade) may still list uploads that
// a live holder is streaming into. TakeBatch takes it over "like an absent
// one", aborting nothing, so the holder's upload stays open: it completes
// after this copy's Done, and after _SUCCESS, over the sealed object (I8).
// Taking it over must either abort what the value lists or refuse.
func TestTakeBatchGarbledClaimWithUploads(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	live := objstore.Upload{Key: "runs/r1/detections/batch-000003.xml", ID: "id-live"}
	value := `{"run":"r1","batch":"3","state":"fetching","holder":{"worker":"x","seq":"9","delivery":1},` +
		`"uploads":[{"key":"` + live.Key + `","id":"` + live.ID + `"}]}`
	if _, err := e.l.runs.Put(e.Ctx, "r1.claim.3", []byte(value)); err != nil {
		t.Fatal(err)
	}
	var ab aborts
	h, err := e.l.TakeBatch(context.Background(), "r1", "3", Copy{Worker: "b", Seq: 7, Delivery: 1}, objstore.Upload{}, ab.abort)
	if err == nil && h != nil && len(ab.list()) == 0 {
		t.Fatalf("took over a claim listing open upload %v without aborting it: its holder can still land it", live)
	}
}
