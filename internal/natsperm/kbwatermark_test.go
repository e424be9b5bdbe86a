package natsperm_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/testrun"
)

// The KnowledgeBase watermark is the planner's alone: it advances it, and
// a worker's, the exporter's or an operator's credential cannot write it
// (a forged one would skip the QIDs changed in between, as for runs).
func TestOnlyThePlannerMovesTheKBWatermark(t *testing.T) {
	n := testrun.StartSecureNATS(t)
	var log syncBuf
	var planner app.JetStream
	for _, r := range []natsperm.Role{natsperm.Planner, natsperm.Worker} {
		_, js := conn(t, n, r, &log)
		q, err := app.Queue(t.Context(), js, n.Config(r), config.Fleet{MaxInFlight: 2}, 0, appRole[r])
		if err != nil {
			t.Fatalf("%s sets up: %v\nlog:\n%s", r, err, log.String())
		}
		if r == natsperm.Planner {
			planner = q
		}
	}
	wm := ledger.Watermark{Time: time.Now().UTC(), Run: "kb-20260110T000000Z-abcdef", By: "planner", At: time.Now().UTC()}
	if moved, err := planner.AdvanceKBWatermark(t.Context(), wm); err != nil || !moved {
		t.Fatalf("planner advances the KB watermark: %v, %v\nlog:\n%s", moved, err, log.String())
	}
	later := wm
	later.Time, later.By = wm.Time.Add(time.Hour), "attacker"
	for _, r := range []natsperm.Role{natsperm.Worker, natsperm.Exporter, natsperm.Operator} {
		refused(t, n, r, "advance the KB watermark", func(ctx context.Context, q app.JetStream, _ jetstream.JetStream) error {
			_, err := q.AdvanceKBWatermark(ctx, later)
			return err
		})
	}
}
