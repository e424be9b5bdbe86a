package fetch_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
)

// TestForgedWindowOrParamsDeadLettered_review17b: a batch message whose
// window or parameters are not its run's (the run record, written by the
// planner, holds both, and the manifest reports them) passes Validate — the
// parameter names are allowed ones — but must not be fetched: it would
// widen the window (detections since 2000) or hide detections (status=Fixed)
// and write the result under the run's batch key (design.md I7).
func TestForgedWindowOrParamsDeadLettered_review17b(t *testing.T) {
	e := setup(t, opts{hosts: 100, batchSize: 100})
	wider := e.batch[0]
	wider.Number, wider.V = 10, msg.SchemaVersion
	wider.After = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	later := e.batch[0]
	later.Number, later.V = 11, msg.SchemaVersion
	later.Before = wider.Before.Add(24 * time.Hour)
	narrowed := e.batch[0]
	narrowed.Number, narrowed.V = 12, msg.SchemaVersion
	narrowed.Params = url.Values{"status": {"Fixed"}}
	forged := []msg.Batch{wider, later, narrowed}
	for _, b := range forged {
		if err := b.Validate(); err != nil {
			t.Fatalf("the forged batch does not even validate: %v", err)
		}
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		e.publishRaw(data)
	}
	stop := e.start(e.worker(fetch.Config{Slots: 2}, ""))
	testenv.Eventually(t, 30*time.Second, func() bool {
		return len(e.deadLetters())+e.done() >= len(forged)+1 && e.queued() == 0
	}, "forged batches neither dead-lettered nor done")
	stop()
	if n := e.sim.Stats().Endpoints[qualysim.Detection].Requests; n != 1 {
		t.Errorf("%d detection calls, want 1 (the real batch only)", n)
	}
	if n := len(e.deadLetters()); n != len(forged) {
		t.Fatalf("%d dead letters, want %d", n, len(forged))
	}
	for _, dl := range e.deadLetters() {
		if dl.Class != "permanent" || !strings.Contains(dl.Reason, "run") {
			t.Errorf("dead letter %+v", dl)
		}
	}
}
