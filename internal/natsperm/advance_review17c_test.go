package natsperm_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/testrun"
)

// review17c: the planner's Advancer trusts what a worker credential can
// write. A worker may write run records (the finisher) and objects under
// runs/ (_SUCCESS), so it can make a run the planner never cut, or the
// planner's own still-fetching run, look complete: the planner then moves
// the watermark over hosts never fetched (I1), which #17 says a worker's
// credential must not be able to do.
func advanceSetup(t *testing.T) (planner, worker app.JetStream, wjs jetstream.JetStream, store *objstore.Dir, firstAfter, now time.Time) {
	t.Helper()
	n := testrun.StartSecureNATS(t)
	var log syncBuf
	qs := map[natsperm.Role]app.JetStream{}
	for _, r := range []natsperm.Role{natsperm.Planner, natsperm.Worker} {
		_, js := conn(t, n, r, &log)
		q, err := app.Queue(t.Context(), js, n.Config(r), config.Fleet{MaxInFlight: 2}, 0, appRole[r])
		if err != nil {
			t.Fatalf("%s sets up: %v\nlog:\n%s", r, err, log.String())
		}
		qs[r] = q
		if r == natsperm.Worker {
			wjs = js
		}
	}
	store, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now = time.Now().UTC().Truncate(time.Second)
	return qs[natsperm.Planner], qs[natsperm.Worker], wjs, store, now.Add(-48 * time.Hour), now
}

func advance(t *testing.T, planner app.JetStream, store *objstore.Dir, firstAfter, now time.Time) (ledger.Watermark, string) {
	t.Helper()
	var log syncBuf
	a := plan.Advancer{Ledger: planner.Ledger, Store: store, Prefix: testrun.Prefix, FirstAfter: firstAfter,
		By: "planner", Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(&log, nil))}
	wm, err := a.Advance(t.Context())
	if err != nil && !strings.Contains(err.Error(), "no watermark") {
		t.Logf("advance: %v", err)
	}
	return wm, log.String()
}

func TestWorkerForgedRunMovesWatermark_review17c(t *testing.T) {
	planner, worker, _, store, firstAfter, now := advanceSetup(t)
	ctx := t.Context()
	// A run no planner opened: no Host List page, no batch, nothing fetched.
	id := now.Add(-time.Hour).Format("20060102T150405Z") + "-forged"
	if _, err := worker.CreateRun(ctx, ledger.RunRecord{ID: id, After: firstAfter, Before: now.Add(-time.Hour),
		State: ledger.RunComplete}); err != nil {
		t.Fatalf("worker writes a run record: %v", err)
	}
	if _, err := store.Put(ctx, objstore.SuccessKey(testrun.Prefix, id), strings.NewReader(""), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if wm, log := advance(t, planner, store, firstAfter, now); wm.Run == id {
		t.Fatalf("the planner moved the watermark to %v over run %s, which only a worker's credential wrote "+
			"(no Host List page, no batch): the hosts of [%v, %v) are never fetched (I1)\nlog:\n%s",
			wm.Time, id, firstAfter, wm.Time, log)
	}
}
